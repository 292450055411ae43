// Provider fidelity: the real Key Vault service's recorded answers
// (../shared/azure-recordings) are served back over HTTPS on 127.0.0.1, host
// rewritten, to the real Azure provider (agent/providers/azure.ts), both ways
// it reads: without a proxy, Sidekey's own Get Secret (azure-keyvault.ts) and
// token exchange (azure-token.ts); behind a proxy (HTTPS_PROXY, a CONNECT
// proxy here), @azure/keyvault-secrets and @azure/identity's
// WorkloadIdentityCredential configured as the agent configures them. The
// access token comes from the fake Entra endpoint. It checks the provider code
// and the SDK options, not the stand-in: get latest, get by version, versions
// paging (nextLink, the SDK's), not found, disabled, forbidden (the RBAC and
// access-policy bodies quoted in INDEX.md), and a bad token; then the Sidekey
// codes and messages, the same both ways, and that no secret value reaches an
// error, a log line of the agent or of the Azure SDK.
//
// The playback server is ours: @azure-tools/test-recorder plays these files
// back only through the test-proxy, a .NET binary that its tooling downloads
// from GitHub releases, which cannot be fetched here. A request without Authorization gets the recording's own 401
// challenge; every other request must match, by method and path, the next
// entry of the scenario's script and gets that entry's recorded answer.
import t from 'tap'
import { createServer } from 'node:https'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { AzureLogger, setLogLevel } from '@azure/logger'
import { useServers } from '../helpers/testenv.js'
import { startConnectProxy } from '../helpers/connect-proxy.js'
import { recording, recordingsDir, header, entraIdentity, type RecordedEntry, type Recording } from '../helpers/azure-recordings.js'
import { AzureProvider, createAzureProvider } from '../../agent/providers/azure.js'
import { parseRef } from '../../core/reference.js'
import { read, syncFrom } from '../helpers/provider.js'
import { SidekeyError } from '../../core/errors.js'

let recs: Record<string, Recording>
try {
  recs = Object.fromEntries(['go/TestCRUD.json', 'go/TestListSecretVersions.json', 'js/recording_can_get_a_secret_non_existing.json',
    'js/recording_can_retrieve_all_versions_of_a_secret_by_page.json', 'js/recording_cant_get_a_disabled_secret.json',
    'js/recording_updatesecretproperties_roundtrips_contenttype.json'].map((f) => [f, recording(f)]))
} catch (err) {
  t.fail((err as Error).message)
  recs = {}
}

interface Checks { same: (found: unknown, wanted: unknown, message: string) => unknown, equal: (found: unknown, wanted: unknown, message: string) => unknown }

if (Object.keys(recs).length > 0) {
  const rec = (f: string): Recording => recs[f] as Recording
  // Bodies not in any recording (test identities are always authorized): the real ones INDEX.md quotes.
  const index = readFileSync(join(recordingsDir(), 'INDEX.md'), 'utf8')
  const quoted = (label: string): string => {
    const m = new RegExp(`${label}: 403 \`(\\{.*?\\}\\}\\})\``).exec(index)
    if (m === null) throw new Error(`INDEX.md: no "${label}" body`)
    return m[1] as string
  }
  const rbacBody = quoted('RBAC deny')
  const policyBody = quoted('Access-policy deny')
  const badToken = /Bad token: 401 `Unauthorized` "(AKV10022: [^"]+)"/.exec(index)?.[1]
  if (badToken === undefined) throw new Error('INDEX.md: no bad-token message')

  const { aad } = await useServers(t, ['aad'])
  const work = mkdtempSync(join(tmpdir(), 'sidekey-azure-playback-'))
  t.teardown(() => { rmSync(work, { recursive: true, force: true }) })
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem')], { stdio: 'ignore' })
  const caFile = join(work, 'ca.pem')
  writeFileSync(caFile, readFileSync(join(work, 'cert.pem'), 'utf8') + '\n' + aad.ca)

  // The tenant the recorded challenge names: the credential's tenant must be it.
  const challenge = rec('go/TestCRUD.json').entries[0] as RecordedEntry
  const tenant = /\/([0-9a-f-]{36})"/.exec(header(challenge.ResponseHeaders, 'www-authenticate') ?? '')?.[1] as string
  const identity = entraIdentity(aad, tenant)
  const tokenFile = join(work, 'token')
  writeFileSync(tokenFile, identity.assertion())

  // The playback server.
  let script: RecordedEntry[] = []
  let challengeEntry: RecordedEntry = challenge
  const mismatches: string[] = []
  const server = createServer({ key: readFileSync(join(work, 'key.pem')), cert: readFileSync(join(work, 'cert.pem')) }, (req, res) => {
    req.resume()
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname
      // Key Vault challenges any request that carries no token, whatever its method and path.
      const challenged = req.headers.authorization === undefined
      const entry = challenged ? challengeEntry : script.shift()
      if (entry === undefined || (!challenged && (entry.RequestMethod !== req.method || new URL(entry.RequestUri).pathname !== path))) {
        mismatches.push(`${req.method ?? ''} ${path}: the script expected ${entry === undefined ? 'no request' : `${entry.RequestMethod} ${new URL(entry.RequestUri).pathname}`}`)
        res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify({ error: { code: 'PlaybackMismatch', message: 'unexpected request' } }))
        return
      }
      const headers: Record<string, string> = {}
      for (const k of ['Content-Type', 'WWW-Authenticate', 'Cache-Control', 'x-ms-keyvault-service-version']) {
        const v = header(entry.ResponseHeaders, k)
        if (v !== undefined) headers[k] = v
      }
      const body = entry.ResponseBody === null || entry.ResponseBody === undefined
        ? ''
        : (typeof entry.ResponseBody === 'string' ? entry.ResponseBody : JSON.stringify(entry.ResponseBody)).replace(/https:\/\/[A-Za-z0-9_-]+\.vault\.azure\.net(:443)?/g, origin)
      res.writeHead(entry.StatusCode, headers).end(body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`

  // Every log line: the agent's (pino) and the Azure SDK's (@azure/logger, verbose).
  const logLines: string[] = []
  const logger = pino({ level: 'debug' }, new Writable({ write (chunk: Buffer, _enc, cb) { logLines.push(chunk.toString('utf8')); cb() } }))
  setLogLevel('verbose')
  AzureLogger.log = (...args: unknown[]) => { logLines.push(args.map(String).join(' ')) }
  t.teardown(() => { setLogLevel() })

  const errors: SidekeyError[] = []
  // Every provider made is closed at the end (its clients' connections, its token exchange's).
  const made: AzureProvider[] = []
  t.teardown(async () => { await Promise.all(made.map(async (p) => await p.close())) })
  const provider = (over: Record<string, unknown> = {}): AzureProvider => {
    const p = createAzureProvider({
      type: 'azure', vaultUrl: origin, tenantId: tenant, clientId: identity.clientId, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true, timeout: '5s', ...over,
    } as never, { storeName: 'azure', logger, maxValueBytes: 1 << 20 }) as AzureProvider
    made.push(p)
    return p
  }
  const failure = async (p: Promise<unknown>): Promise<SidekeyError> => {
    try {
      await p
    } catch (err) {
      if (!(err instanceof SidekeyError)) throw err
      errors.push(err)
      logger.warn({ err: { code: err.code, message: err.message, details: err.details } }, 'fetch failed')
      return err
    }
    throw new Error('expected the fetch to fail')
  }
  const play = (file: string, indexes: number[], challengeIndex = 0): void => {
    const r = rec(file)
    challengeEntry = r.entries[challengeIndex] as RecordedEntry
    script = indexes.map((i) => r.entries[i] as RecordedEntry)
    mismatches.length = 0
  }
  const played = (t: Checks): void => {
    t.same(mismatches, [], 'every request matched the recorded script')
    t.equal(script.length, 0, 'every recorded answer was asked for')
  }
  const recorded = (file: string, i: number): { name: string, version: string, value: string } => {
    const e = rec(file).entries[i] as RecordedEntry
    const b = e.ResponseBody as { id: string, value: string }
    const [, , name, version] = new URL(b.id).pathname.split('/')
    return { name: name as string, version: version as string, value: b.value }
  }
  const text = (r: { data: unknown }): string => {
    const d = r.data as { kind: string, bytes?: Buffer }
    return d.kind === 'bytes' ? (d.bytes as Buffer).toString('utf8') : JSON.stringify(d)
  }

  const forbidden = (body: string): RecordedEntry => {
    const disabled = rec('js/recording_cant_get_a_disabled_secret.json').entries[2] as RecordedEntry
    return { ...disabled, ResponseBody: JSON.parse(body) as unknown }
  }
  // The two ways the provider reads (see the header): the same answers, the same requests, the same results.
  const proxy = await startConnectProxy(t)
  const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy'] as const
  const saved = Object.fromEntries(PROXY_VARS.map((k) => [k, process.env[k]]))
  const setProxy = (url: string | undefined): void => {
    for (const k of PROXY_VARS) delete process.env[k]
    if (url !== undefined) process.env.HTTPS_PROXY = url
  }
  t.teardown(() => { for (const k of PROXY_VARS) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k] } })
  for (const way of [{ label: 'own client', proxy: undefined }, { label: 'SDK behind a proxy', proxy: proxy.url }]) {
    setProxy(way.proxy)
    const tunnelsBefore = proxy.tunnels.length
    await t.test(`${way.label}: get latest (api-version 2026-03-01-preview and 2025-07-01 answers)`, async (t) => {
      for (const [file, i] of [['go/TestCRUD.json', 2], ['js/recording_updatesecretproperties_roundtrips_contenttype.json', 3]] as const) {
        play(file, [i])
        const want = recorded(file, i)
        const r = await read(provider(), parseRef(`azure:${want.name}`))
        t.equal(text(r), want.value, `${file}: the recorded value`)
        t.equal(r.version, want.version, `${file}: the version id of the recorded id`)
        played(t)
      }
    })

    await t.test(`${way.label}: get by version`, async (t) => {
      const file = 'js/recording_can_retrieve_all_versions_of_a_secret_by_page.json'
      play(file, [5])
      const want = recorded(file, 5)
      const p = provider()
      t.equal(await syncFrom(p, parseRef(`azure:${want.name}@${want.version}`), want.version), 'unchanged', 'a pinned version in hand needs no request (the script has no answer for one)')
      const r = await read(p, parseRef(`azure:${want.name}@${want.version}`))
      t.equal(text(r), want.value)
      t.equal(r.version, want.version)
      played(t)
    })

    await t.test(`${way.label}: not found: 404 SecretNotFound`, async (t) => {
      const file = 'js/recording_can_get_a_secret_non_existing.json'
      play(file, [1])
      const name = new URL(rec(file).entries[1]?.RequestUri ?? '').pathname.split('/')[2] as string
      const err = await failure(read(provider(), parseRef(`azure:${name}`)))
      t.equal(err.code, 'SIDEKEY_E_NOT_FOUND')
      t.equal(err.message, `azure:${name}: Key Vault ${origin} has no secret ${name} (SecretNotFound)`)
      played(t)
    })

    await t.test(`${way.label}: disabled: 403 Forbidden / SecretDisabled`, async (t) => {
      const file = 'js/recording_cant_get_a_disabled_secret.json'
      play(file, [2])
      const name = recorded(file, 1).name
      const err = await failure(read(provider(), parseRef(`azure:${name}`)))
      t.equal(err.code, 'SIDEKEY_E_NOT_FOUND', 'a disabled secret is not a permission problem')
      t.equal(err.message, `azure:${name}: Key Vault ${origin} has secret ${name} disabled (Forbidden/SecretDisabled); enable it in the vault or pin an enabled version with @<version>`)
      t.equal(err.details.innerError, 'SecretDisabled')
      played(t)
    })

    await t.test(`${way.label}: forbidden: Azure RBAC deny (ForbiddenByRbac)`, async (t) => {
      play('js/recording_cant_get_a_disabled_secret.json', [])
      script = [forbidden(rbacBody)]
      const name = recorded('js/recording_cant_get_a_disabled_secret.json', 1).name
      const err = await failure(read(provider(), parseRef(`azure:${name}`)))
      t.equal(err.code, 'SIDEKEY_E_DENIED')
      t.equal(err.message, `azure:${name}: Key Vault ${origin} denied reading ${name} (Forbidden/ForbiddenByRbac): the vault uses Azure RBAC; assign the identity (client id ${identity.clientId}) the "Key Vault Secrets User" role on the vault or on the secret`)
      played(t)
    })

    await t.test(`${way.label}: forbidden: access-policy deny (AccessDenied)`, async (t) => {
      play('js/recording_cant_get_a_disabled_secret.json', [])
      script = [forbidden(policyBody)]
      const name = recorded('js/recording_cant_get_a_disabled_secret.json', 1).name
      const err = await failure(read(provider(), parseRef(`azure:${name}`)))
      t.equal(err.code, 'SIDEKEY_E_DENIED')
      t.equal(err.message, `azure:${name}: Key Vault ${origin} denied reading ${name} (Forbidden/AccessDenied): the vault uses access policies; give the identity (client id ${identity.clientId}) the Get permission on secrets in an access policy`)
      played(t)
    })

    await t.test(`${way.label}: bad token: 401 AKV10022 after the challenge`, async (t) => {
      const file = 'js/recording_can_get_a_secret_non_existing.json'
      play(file, [])
      const c = rec(file).entries[0] as RecordedEntry
      script = [{ ...c, RequestMethod: 'GET', ResponseBody: { error: { code: 'Unauthorized', message: badToken } } }]
      const name = new URL(c.RequestUri).pathname.split('/')[2] as string
      const err = await failure(read(provider(), parseRef(`azure:${name}`)))
      t.equal(err.code, 'SIDEKEY_E_AUTH')
      t.equal(err.message, `azure:${name}: Key Vault ${origin} rejected the access token (Unauthorized: AKV10022: Invalid audience); check tenantId and clientId, and that the vault belongs to that tenant`)
      played(t)
    })

    await t.test(`${way.label}: a challenge for a resource the vault's host is not under (verification on): refused before any token`, async (t) => {
      const file = 'js/recording_can_get_a_secret_non_existing.json'
      play(file, [])
      const name = new URL(rec(file).entries[1]?.RequestUri ?? '').pathname.split('/')[2] as string
      const err = await failure(read(provider({ disableChallengeResourceVerification: false }), parseRef(`azure:${name}`)))
      t.equal(err.code, 'SIDEKEY_E_AUTH')
      t.equal(err.message, `azure:${name}: Key Vault ${origin} answered with a challenge for the resource vault.azure.net, which its host 127.0.0.1 does not belong to; check vaultUrl or vaultDomain, or set config.stores.azure.disableChallengeResourceVerification for a vault behind another name (a private endpoint, an emulator)`)
      played(t)
    })

    await t.test(`${way.label}: the requests went ${way.proxy === undefined ? 'straight to the vault' : 'through the proxy'}`, async (t) => {
      const tunnels = proxy.tunnels.slice(tunnelsBefore)
      if (way.proxy === undefined) t.same(tunnels, [], 'no tunnel')
      else t.ok(tunnels.includes(new URL(origin).host), `the vault through the proxy: ${tunnels.join(', ')}`)
    })
  }
  setProxy(undefined)

  await t.test('versions paging: the SDK as the provider configures it follows nextLink; each listed version is fetched by pin', async (t) => {
    const file = 'js/recording_can_retrieve_all_versions_of_a_secret_by_page.json'
    play(file, [4, 5, 6, 7, 8, 9])
    const name = recorded(file, 5).name
    const p = provider()
    // The provider's own SecretClient (credential, TLS, retry options): it has no listing of its own.
    const client = await (p as unknown as { client (url: string): Promise<import('@azure/keyvault-secrets').SecretClient> }).client(origin)
    const seen: Array<{ version: string, value: string }> = []
    for await (const page of client.listPropertiesOfSecretVersions(name).byPage({ maxPageSize: 1 })) {
      for (const item of page) {
        const r = await read(p, parseRef(`azure:${name}@${String(item.version)}`))
        seen.push({ version: String(item.version), value: text(r) })
      }
    }
    t.same(seen, [5, 7, 9].map((i) => { const w = recorded(file, i); return { version: w.version, value: w.value } }), 'three pages of one version each, in the recorded order, each value by its version')
    played(t)

    const go = 'go/TestListSecretVersions.json'
    play(go, [4])
    const items = []
    for await (const item of (await (provider() as unknown as { client (url: string): Promise<import('@azure/keyvault-secrets').SecretClient> }).client(origin)).listPropertiesOfSecretVersions(recorded(go, 1).name)) items.push(item.version)
    t.same(items, (rec(go).entries[4]?.ResponseBody as { value: Array<{ id: string }> }).value.map((v) => v.id.split('/').at(-1)), `${go}: one page of three versions (nextLink null)`)
    played(t)
  })

  await t.test('no secret value in any error or log line', async (t) => {
    const values = new Set<string>()
    for (const r of Object.values(recs)) {
      for (const e of r.entries) {
        for (const b of [e.ResponseBody, e.RequestBody]) {
          const v = (b as { value?: unknown } | null)?.value
          if (typeof v === 'string' && v !== '') values.add(v)
        }
      }
    }
    t.ok(values.size >= 5, `${values.size} recorded secret values to look for`)
    t.ok(errors.length >= 5 && logLines.length > 0, `${errors.length} errors and ${logLines.length} log lines`)
    const texts = [...errors.map((e) => `${e.message} ${JSON.stringify(e.details)}`), ...logLines]
    t.same(texts.filter((l) => [...values].some((v) => l.includes(v))), [], 'none carries a value')
  })
}
