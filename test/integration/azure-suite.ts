// The Azure Key Vault backend suite, run against a Key Vault server given by
// the caller: lowkey-vault (azure.test.ts) or the protocol stand-in
// (azure-standin.test.ts). Workload identity is real end to end: a
// service-account token minted by the real kube-apiserver (audience
// api://AzureADTokenExchange) is exchanged at the fake Entra token endpoint,
// which checks issuer, subject, audience and signature.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { execFileSync } from 'node:child_process'
import { pino } from 'pino'
import type { TAP } from 'tap'
import type { KubeInfo, AadInfo } from '../helpers/testenv.js'
import { AzureProvider, createAzureProvider } from '../../agent/providers/azure.js'
import { parseRef } from '../../core/reference.js'
import { read, syncFrom, meter } from '../helpers/provider.js'
import { startRelay, startHarness, eventually, WAIT, trackProviders, errorCollector, outageRoundTrip } from './backend-harness.js'

export interface KeyVaultUnderTest {
  /** Port of the Key Vault server on 127.0.0.1 (the suite puts a relay in front of it). */
  readonly port: number
  /** PEM that verifies its TLS certificate (for a certificate naming localhost). */
  readonly ca: string
  /** Writes a new version; returns its version id. */
  set (name: string, value: string): Promise<string>
  /** When the server itself enforces permissions: the name of a secret the identity may not read. */
  readonly deniedSecret?: string
  /** Request log (method, path) when the server keeps one, for the steady-state count. */
  requests? (): Array<{ method: string, path: string }>
}

type T = TAP

// The stand-in lives in test/helpers/keyvault-standin.ts; re-exported for the suites.
export { startKeyVaultStandin, TENANT } from '../helpers/keyvault-standin.js'
import { TENANT } from '../helpers/keyvault-standin.js'

export async function azureSuite (t: T, kv: KeyVaultUnderTest, kube: KubeInfo, aad: AadInfo, label: string): Promise<void> {
const work = mkdtempSync(join(tmpdir(), 'sidekey-azure-'))
const relay = await startRelay(t, kv.port)
const vaultUrl = `https://localhost:${relay.port}`
const caFile = join(work, 'ca.pem')
writeFileSync(caFile, kv.ca + '\n' + aad.ca)
const NS = `sidekey-azure-${label}`
const CLIENT = label === 'lowkey' ? 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee' : 'aaaaaaaa-bbbb-cccc-dddd-ffffffffffff'
await kube.ensureNamespace(NS)
await kube.createServiceAccount(NS, 'app')
aad.addApp({
  tenantId: TENANT,
  clientId: CLIENT,
  federatedCredentials: [{ issuer: kube.serviceAccountIssuer, subject: `system:serviceaccount:${NS}:app`, issuerPublicKeys: [readFileSync(kube.serviceAccountKeyFile, 'utf8')] }],
})
const tokenFile = join(work, 'azure-token')
writeFileSync(tokenFile, await kube.tokenRequest({ namespace: NS, serviceAccount: 'app', audiences: ['api://AzureADTokenExchange'], expirationSeconds: 3600 }))
const wrongAudience = join(work, 'wrong-audience')
writeFileSync(wrongAudience, await kube.tokenRequest({ namespace: NS, serviceAccount: 'app', audiences: ['vault'], expirationSeconds: 3600 }))

const set = async (name: string, value: string): Promise<string> => await kv.set(name, value)
const V1 = 'sk-azure-value-one-aa11'
const V2 = 'sk-azure-value-two-bb22'
const V3 = 'sk-azure-value-three-cc33'
const VALUES = [V1, V2, V3]

const ctx = { storeName: 'azure', logger: pino({ level: 'silent' }), maxValueBytes: 1 << 20 }
const storeConfig = { type: 'azure' as const, vaultUrl, tenantId: TENANT, clientId: CLIENT, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true, timeout: '3s' }
const provider = trackProviders(t, (over: Record<string, unknown> = {}, c: typeof ctx & { meter?: ReturnType<typeof meter> } = ctx): AzureProvider => createAzureProvider({ ...storeConfig, ...over } as never, c) as AzureProvider)

const { code, errors } = errorCollector()
const mapOf = (r: { data: unknown }): Record<string, string> => (r.data as { map: Record<string, string> }).map

await t.test('provider: workload identity, read, JSON map, version pin, version check', async (t) => {
  const s1 = await kv.set('openai-key', JSON.stringify({ api_key: V1, org: 'org-1' }))
  await set('plain', 'plain-azure-text')
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const ref = parseRef('azure:openai-key')
  const tokensBefore = aad.issued.length
  const r1 = await read(p, ref)
  t.same(r1.data, { kind: 'map', map: { api_key: V1, org: 'org-1' } }, 'a JSON value is a map, so #key works')
  t.equal(r1.version, s1)
  t.equal(aad.issued.length, tokensBefore + 1, 'one token exchange at the fake Entra endpoint')
  t.equal(aad.issued.at(-1)?.subject, `system:serviceaccount:${NS}:app`)
  t.same((await read(p, parseRef('azure:plain'))).data, { kind: 'bytes', bytes: Buffer.from('plain-azure-text') })

  const s2 = await kv.set('openai-key', JSON.stringify({ api_key: V2, org: 'org-1' }))
  m.counts.delete('getSecret')
  const r2 = await p.sync(ref, { version: s1 })
  t.ok(r2.changed, 'a sync sees the new version')
  if (r2.changed) {
    t.equal(r2.version, s2, 'the new version id')
    t.equal(mapOf(r2).api_key, V2, 'and its value, from the same answer')
  }
  t.equal(m.counts.get('getSecret'), 1, 'one sync = one getSecret')
  t.equal(await syncFrom(p, ref, s2), 'unchanged')
  t.equal(m.counts.get('getSecret'), 2, 'unchanged: still one getSecret per sync')
  const pinned = parseRef(`azure:openai-key@${s1}`)
  t.equal(await syncFrom(p, pinned, s1), 'unchanged', 'a pinned version in hand is unchanged')
  t.equal(m.counts.get('getSecret'), 2, 'and needs no request')
  t.equal(mapOf(await read(p, pinned)).api_key, V1, 'the pinned version keeps the old value')
  t.equal(mapOf(await read(p, parseRef(`azure:${vaultUrl}/secrets/openai-key/${s1}`))).api_key, V1, 'a full secret URL with a version')
  t.equal(aad.issued.length, tokensBefore + 1, 'the access token is cached')
})

await t.test('provider: missing secret or version, bad credentials', async (t) => {
  const p = provider()
  t.equal(await code(read(p, parseRef('azure:no-such-secret'))), 'SIDEKEY_E_NOT_FOUND')
  t.equal(await code(read(p, parseRef('azure:openai-key@00000000000000000000000000000000'))), 'SIDEKEY_E_NOT_FOUND', 'no such version')
  t.equal(await code(read(provider({ tokenFile: wrongAudience }), parseRef('azure:openai-key'))), 'SIDEKEY_E_AUTH', 'a token for another audience is refused by Entra')
  t.equal(await code(read(provider({ clientId: 'ffffffff-0000-0000-0000-000000000000' }), parseRef('azure:openai-key'))), 'SIDEKEY_E_AUTH', 'an unknown client id')
  t.equal(await code(read(provider({ tokenFile: join(work, 'missing') }), parseRef('azure:openai-key'))), 'SIDEKEY_E_AUTH', 'no token file')
})

await t.test('provider: a 403 from Key Vault is SIDEKEY_E_DENIED', async (t) => {
  if (kv.deniedSecret !== undefined) {
    await kv.set(kv.deniedSecret, 'denied-value-dd44')
    t.equal(await code(read(provider(), parseRef(`azure:${kv.deniedSecret}`))), 'SIDEKEY_E_DENIED', 'the server refuses this identity the secret')
    return
  }
  // lowkey-vault has no access policies or RBAC: a stand-in answers exactly what Key Vault answers.
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-deny-'))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' })
  const denyServer = createHttpsServer({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) }, (req, res) => {
    if (req.headers.authorization === undefined) {
      res.writeHead(401, { 'www-authenticate': `Bearer authorization="${aad.authorityHost}/${TENANT}", resource="https://vault.azure.net"` }).end()
      return
    }
    res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'Forbidden', message: 'The user, group or application does not have secrets get permission on key vault.', innererror: { code: 'ForbiddenByRbac' } } }))
  })
  await new Promise<void>((resolve) => denyServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { denyServer.closeAllConnections(); denyServer.close() })
  const bundle = join(dir, 'bundle.pem')
  writeFileSync(bundle, readFileSync(join(dir, 'c.pem'), 'utf8') + '\n' + aad.ca)
  const port = (denyServer.address() as AddressInfo).port
  t.equal(await code(read(provider({ vaultUrl: `https://localhost:${port}`, caFile: bundle }), parseRef('azure:openai-key'))), 'SIDEKEY_E_DENIED')
})

await t.test('agent: rotation reaches file, HTTP, gRPC Watch and onChange once', async (t) => {
  await set('agent-key', V1)
  const h = await startHarness(t, { refresh: '1s', stores: { azure: storeConfig }, secrets: [{ name: 'key', ref: 'azure:agent-key' }] })
  await h.agent.synced
  t.equal(h.file('key'), V1)
  const before = h.events.length
  const s = await kv.set('agent-key', V3)
  await eventually(() => h.file('key') === V3, 'the file to rotate', WAIT)
  t.equal((await h.get('key')).body, V3)
  await eventually(() => h.events.slice(before).some((e) => e.name === 'key' && e.kind === 'CHANGED' && e.version === s), 'a gRPC CHANGED event', WAIT)
  await eventually(() => h.notifications.length >= 1, 'onChange', WAIT)
  await new Promise((resolve) => setTimeout(resolve, 2500))
  t.equal(h.notifications.length, 1, 'onChange fired exactly once')
  t.notMatch(h.logs.join('\n'), V3, 'the value is never logged')
})

await t.test('agent: outage keeps serving the last good value, /metrics counts errors, recovery', async (t) => {
  await set('outage', V1)
  const h = await startHarness(t, { refresh: '1s', stores: { azure: storeConfig }, secrets: [{ name: 'k', ref: 'azure:outage' }] })
  await h.agent.synced
  await outageRoundTrip(t, h, { store: 'azure', relay, before: V1, after: V2, writeDuringOutage: async () => await set('outage', V2) })
})

await t.test('steady state: one request per secret per interval (Key Vault has no metadata-only check)', async (t) => {
  if (kv.requests === undefined) { t.pass('this server keeps no request log; see docs/backends.md'); return }
  await set('load-a', 'a')
  await set('load-b', 'b')
  const h = await startHarness(t, { refresh: '1s', stores: { azure: storeConfig }, secrets: [{ name: 'a', ref: 'azure:load-a' }, { name: 'a2', ref: 'azure:load-a', format: 'json' }, { name: 'b', ref: 'azure:load-b' }] })
  await h.agent.synced
  const skip = kv.requests().length
  const start = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const elapsed = Date.now() - start
  const reqs = kv.requests().slice(skip)
  const intervals = Math.ceil(elapsed / 1000) + 1
  for (const name of ['load-a', 'load-b']) {
    const n = reqs.filter((r) => r.path === `/secrets/${name}` || r.path === `/secrets/${name}/`).length
    t.ok(n >= 2 && n <= intervals, `${name}: ${n} GETs in ${elapsed} ms at a 1s interval (at most ${intervals})`)
  }
})

await t.test('no error message or detail carries a value', async (t) => {
  t.ok(errors.length > 0)
  const leaked = errors.filter((m) => VALUES.some((v) => m.includes(v)))
  t.same(leaked, [], `none of ${errors.length} error texts contains a value`)
})
}
