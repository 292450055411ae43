// Vault backend against a real OpenBao (dev server with a file audit device)
// and a real kube-apiserver: the agent logs in with a service-account token
// minted by the API server (TokenRequest, audience "vault") and OpenBao
// reviews it with TokenReview. Request counts come from OpenBao's audit log.
import t from 'tap'
import { getEventListeners } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { pino } from 'pino'
import { useServers } from '../helpers/testenv.js'
import { VaultProvider, createVaultProvider } from '../../agent/providers/vault.js'
import { FRESH_MS, MIN_WASTE_KEYS } from '../../agent/providers/vault-kv-lists.js'
import { parseRef } from '../../core/reference.js'
import { read, syncFrom, meter } from '../helpers/provider.js'
import { startAuditedOpenBao, auditRequests, startRelay, startHarness, eventually, WAIT, trackProviders, errorCollector, outageRoundTrip } from './backend-harness.js'

const { kube } = await useServers(t, ['kube'])
const bao = await startAuditedOpenBao(t)
const relay = await startRelay(t, bao.port)
const relayed = `http://127.0.0.1:${relay.port}`
const work = mkdtempSync(join(tmpdir(), 'sidekey-vault-'))

async function api (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<any> {
  const r = await fetch(`${bao.addr}/v1/${path}`, { method, headers: { 'x-vault-token': bao.rootToken, ...headers }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  const text = await r.text()
  if (r.status >= 300) throw new Error(`openbao ${method} ${path}: ${r.status} ${text.slice(0, 300)}`)
  return text === '' ? {} : JSON.parse(text)
}

const V1 = 'sk-vault-value-one-1a2b'
const V2 = 'sk-vault-value-two-3c4d'
const V3 = 'sk-vault-value-three-5e6f'
const DENIED = 'sk-vault-denied-7a8b'
const VALUES = [V1, V2, V3, DENIED, 'kv1-value-9c0d']

// ---- Kubernetes side: a reviewer for OpenBao, and the app's service account ----
const NS = 'sidekey-vault'
await kube.ensureNamespace(NS)
await kube.createServiceAccount(NS, 'vault-reviewer')
await kube.bindClusterRole('sidekey-vault-reviewer', 'system:auth-delegator', NS, 'vault-reviewer')
await kube.createServiceAccount(NS, 'app')
await kube.createServiceAccount(NS, 'stranger')
const reviewerJwt = await kube.tokenRequest({ namespace: NS, serviceAccount: 'vault-reviewer', audiences: [kube.serviceAccountIssuer], expirationSeconds: 7200 })
const appToken = join(work, 'app-token')
writeFileSync(appToken, await kube.tokenRequest({ namespace: NS, serviceAccount: 'app', audiences: ['vault'], expirationSeconds: 3600 }))
const wrongAudience = join(work, 'wrong-audience-token')
writeFileSync(wrongAudience, await kube.tokenRequest({ namespace: NS, serviceAccount: 'app', audiences: ['not-vault'], expirationSeconds: 3600 }))
const strangerToken = join(work, 'stranger-token')
writeFileSync(strangerToken, await kube.tokenRequest({ namespace: NS, serviceAccount: 'stranger', audiences: ['vault'], expirationSeconds: 3600 }))

// ---- OpenBao side ----
await api('POST', 'sys/auth/k8s', { type: 'kubernetes' })
await api('POST', 'auth/k8s/config', { kubernetes_host: kube.server, kubernetes_ca_cert: kube.ca, token_reviewer_jwt: reviewerJwt, disable_local_ca_jwt: true })
await api('PUT', 'sys/policies/acl/app-read', {
  policy: `
path "secret/data/app/*" { capabilities = ["read"] }
path "secret/metadata/app/*" { capabilities = ["read"] }
path "secret/data/nometa/*" { capabilities = ["read"] }
path "secret/data/many/*" { capabilities = ["read"] }
path "secret/metadata/many/*" { capabilities = ["read"] }
path "secret/detailed-metadata/many*" { capabilities = ["list"] }
path "secret/data/crowd/*" { capabilities = ["read"] }
path "secret/metadata/crowd/*" { capabilities = ["read"] }
path "secret/detailed-metadata/crowd*" { capabilities = ["list"] }
path "secret/data/busy/*" { capabilities = ["read"] }
path "secret/metadata/busy/*" { capabilities = ["read"] }
path "secret/detailed-metadata/busy*" { capabilities = ["list"] }
path "kv1/app/*" { capabilities = ["read"] }
path "pki/issue/web" { capabilities = ["update"] }
`,
})
const role = (ttl: string): Record<string, unknown> => ({ bound_service_account_names: ['app'], bound_service_account_namespaces: [NS], audience: 'vault', token_policies: ['app-read'], token_ttl: ttl, token_max_ttl: '24h' })
await api('POST', 'auth/k8s/role/app', role('1h'))
await api('POST', 'auth/k8s/role/short', role('6s'))
await api('POST', 'sys/mounts/kv1', { type: 'kv', options: { version: '1' } })
await api('POST', 'sys/mounts/pki', { type: 'pki', config: { max_lease_ttl: '87600h' } })
await api('POST', 'pki/root/generate/internal', { common_name: 'sidekey-test-ca', ttl: '8760h' })
await api('POST', 'pki/roles/web', { allowed_domains: 'example.com', allow_subdomains: true, max_ttl: '1h' })
await api('POST', 'secret/data/app/openai', { data: { api_key: V1, org: 'org-1' } })
await api('POST', 'secret/data/denied/x', { data: { api_key: DENIED } })
await api('POST', 'secret/data/nometa/x', { data: { k: V1 } })
await api('POST', 'kv1/app/conf', { token: 'kv1-value-9c0d', ttl: '1h' })

const ctx = { storeName: 'vault', logger: pino({ level: 'silent' }), maxValueBytes: 1 << 20 }
const storeConfig = { type: 'vault' as const, address: relayed, role: 'app', authMount: 'k8s', tokenFile: appToken, timeout: '2s' }
const provider = trackProviders(t, (over: Record<string, unknown> = {}, c: typeof ctx & { meter?: ReturnType<typeof meter> } = ctx): VaultProvider => createVaultProvider({ ...storeConfig, ...over } as never, c) as VaultProvider)

const { code, errors } = errorCollector()
const mapOf = (r: { data: unknown }): Record<string, string> => (r.data as { map: Record<string, string> }).map

t.test('provider: Kubernetes login, KV v2 read, metadata check, version pin', async (t) => {
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const ref = parseRef('vault:secret/data/app/openai')
  const r1 = await read(p, ref)
  t.same(r1.data, { kind: 'map', map: { api_key: V1, org: 'org-1' } }, 'the whole KV secret as a map (#key picks from it)')
  t.equal(r1.version, '1')
  m.counts.clear()
  t.equal(await syncFrom(p, ref, '1'), 'unchanged')
  t.same([...m.counts], [['GET secret/metadata/app/openai', 1]], 'a sync with the current version: one metadata GET, no value read')
  await api('POST', 'secret/data/app/openai', { data: { api_key: V2, org: 'org-1' } })
  m.counts.clear()
  const r2 = await p.sync(ref, { version: '1' })
  t.ok(r2.changed, 'a sync after a write answers with the new data')
  if (r2.changed) {
    t.equal(r2.version, '2', 'current_version follows a write')
    t.equal(mapOf(r2).api_key, V2)
  }
  t.same([...m.counts], [['GET secret/metadata/app/openai', 1], ['GET secret/data/app/openai', 1]], 'metadata GET, then one value read')
  const pinned = parseRef('vault:secret/data/app/openai@1')
  m.counts.clear()
  t.equal(await syncFrom(p, pinned, '1'), 'unchanged')
  t.equal(m.counts.size, 0, 'a pinned KV version is immutable: no request')
  t.equal(mapOf(await read(p, pinned)).api_key, V1, '@1 reads version 1')
  t.equal(p.auth.stats.logins, 1, 'one login for all of it')
  // kvVersion 2 accepts the short form
  t.equal(mapOf(await read(provider({ kvVersion: 2 }), parseRef('vault:secret/app/openai'))).api_key, V2)
})

t.test('provider: the checks of one folder are one listing (OpenBao detailed-metadata), a value read only on change', async (t) => {
  for (const n of ['a', 'b', 'c']) await api('POST', `secret/data/many/${n}`, { data: { k: `${V3}-${n}` } })
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const refs = ['a', 'b', 'c'].map((n) => parseRef(`vault:secret/data/many/${n}`))
  const first = await Promise.all(refs.map(async (r) => await read(p, r)))
  t.same(first.map((r) => r.version), ['1', '1', '1'])
  m.counts.clear()
  t.same(await Promise.all(refs.map(async (r) => await syncFrom(p, r, '1'))), ['unchanged', 'unchanged', 'unchanged'])
  t.same([...m.counts], [['LIST secret/detailed-metadata/many/', 1]], 'three checks due together: one LIST, no metadata GET, no value read')
  await api('POST', 'secret/data/many/b', { data: { k: V2 } })
  // a listing answers only the checks of its own wake-up (FRESH_MS after it arrived), not later ones
  await new Promise((resolve) => setTimeout(resolve, FRESH_MS + 50))
  m.counts.clear()
  const again = await Promise.all(refs.map(async (r) => await p.sync(r, { version: '1' })))
  t.same(again.map((r) => r.changed ? r.version : 'unchanged'), ['unchanged', '2', 'unchanged'], 'the write is seen by the next listing')
  t.equal(again[1]?.changed === true ? mapOf(again[1]).k : undefined, V2)
  t.same([...m.counts], [['LIST secret/detailed-metadata/many/', 1], ['GET secret/data/many/b', 1]], 'one LIST, then the one changed value')
  t.equal(p.auth.stats.logins, 1)
  // the refresher hands every sync one long-lived signal: a call must not leave its abort listener on it
  const ac = new AbortController()
  await new Promise((resolve) => setTimeout(resolve, FRESH_MS + 50))
  for (let round = 0; round < 3; round++) await Promise.all(refs.map(async (r) => await p.sync(r, { version: '1' }, ac.signal)))
  t.ok(getEventListeners(ac.signal, 'abort').length <= 1, 'at most the last call\'s listener, about to go')
  await eventually(() => getEventListeners(ac.signal, 'abort').length === 0, 'no abort listener left on the signal after the calls', WAIT)
  t.pass('no abort listener left on the signal after the calls')
})

t.test('provider: a folder the policy may not list, or mostly of other keys, is checked one secret at a time', async (t) => {
  // app/ has read on data and metadata, no list on detailed-metadata
  for (const n of ['pair-1', 'pair-2']) await api('POST', `secret/data/app/${n}`, { data: { k: V1 } })
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const refs = ['pair-1', 'pair-2'].map((n) => parseRef(`vault:secret/data/app/${n}`))
  for (const r of refs) await read(p, r)
  m.counts.clear()
  t.same(await Promise.all(refs.map(async (r) => await syncFrom(p, r, '1'))), ['unchanged', 'unchanged'])
  t.same([...m.counts].sort(), [['GET secret/metadata/app/pair-1', 1], ['GET secret/metadata/app/pair-2', 1], ['LIST secret/detailed-metadata/app/', 1]], 'the denied LIST is tried once; each check reads its metadata')
  m.counts.clear()
  await new Promise((resolve) => setTimeout(resolve, FRESH_MS + 50))
  t.same(await Promise.all(refs.map(async (r) => await syncFrom(p, r, '1'))), ['unchanged', 'unchanged'])
  t.same([...m.counts].sort(), [['GET secret/metadata/app/pair-1', 1], ['GET secret/metadata/app/pair-2', 1]], 'and never again')
  t.equal(p.auth.stats.logins, 1, 'a denied listing is no reason to log in again')

  // crowd/ holds many more keys than the two read here
  for (let i = 0; i < MIN_WASTE_KEYS + 1; i += 20) await Promise.all(Array.from({ length: Math.min(20, MIN_WASTE_KEYS + 1 - i) }, async (_, j) => await api('POST', `secret/data/crowd/k${i + j}`, { data: { k: 'x' } })))
  const crowd = ['k0', 'k1'].map((n) => parseRef(`vault:secret/data/crowd/${n}`))
  for (const r of crowd) await read(p, r)
  m.counts.clear()
  t.same(await Promise.all(crowd.map(async (r) => await syncFrom(p, r, '1'))), ['unchanged', 'unchanged'], 'the first listing still answers')
  t.same([...m.counts], [['LIST secret/detailed-metadata/crowd/', 1]])
  m.counts.clear()
  await new Promise((resolve) => setTimeout(resolve, FRESH_MS + 50))
  t.same(await Promise.all(crowd.map(async (r) => await syncFrom(p, r, '1'))), ['unchanged', 'unchanged'])
  t.same([...m.counts].sort(), [['GET secret/metadata/crowd/k0', 1], ['GET secret/metadata/crowd/k1', 1]], `a listing of ${MIN_WASTE_KEYS + 1} keys for 2 secrets is not asked again`)
})

t.test('provider: a listing denied to a token that has since expired is tried again after the new login', async (t) => {
  for (const n of ['a', 'b', 'c']) await api('POST', `secret/data/many/${n}`, { data: { k: `${V3}-${n}` } })
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const refs = ['a', 'b', 'c'].map((n) => parseRef(`vault:secret/data/many/${n}`))
  const versions = (await Promise.all(refs.map(async (r) => await read(p, r)))).map((r) => r.version)
  // The token is revoked (as one past its TTL): Vault answers 403 to it, as to a missing grant.
  await api('POST', 'auth/token/revoke', { token: p.auth.currentToken })
  m.counts.clear()
  t.same(await Promise.all(refs.map(async (r, i) => await syncFrom(p, r, versions[i] as string))), ['unchanged', 'unchanged', 'unchanged'], 'the checks go through after one new login')
  t.equal(p.auth.stats.logins, 2)
  t.equal(m.counts.get('LIST secret/detailed-metadata/many/'), 1, 'the listing was denied once')
  m.counts.clear()
  await new Promise((resolve) => setTimeout(resolve, FRESH_MS + 50))
  t.same(await Promise.all(refs.map(async (r, i) => await syncFrom(p, r, versions[i] as string))), ['unchanged', 'unchanged', 'unchanged'])
  t.same([...m.counts], [['LIST secret/detailed-metadata/many/', 1]], 'with the new token the folder is listed again: one request for three checks')
  t.equal(p.auth.stats.logins, 2)
})

t.test('provider: a busy or unreachable server fails the checks a listing answers with one request, not one each', async (t) => {
  for (const n of ['a', 'b', 'c']) await api('POST', `secret/data/busy/${n}`, { data: { k: V1 } })
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const refs = ['a', 'b', 'c'].map((n) => parseRef(`vault:secret/data/busy/${n}`))
  for (const r of refs) await read(p, r)
  // OpenBao's own rate limit: one listing of busy/ an hour, used up here.
  await api('POST', 'sys/quotas/rate-limit/sidekey-busy', { path: 'secret/detailed-metadata/busy', rate: 1, interval: '1h' })
  t.teardown(async () => { await api('DELETE', 'sys/quotas/rate-limit/sidekey-busy') })
  await api('LIST', 'secret/detailed-metadata/busy/')
  m.counts.clear()
  const busy = await Promise.allSettled(refs.map(async (r) => await p.sync(r, { version: '1' })))
  t.same(busy.map((r) => r.status === 'rejected' ? (r.reason as { code?: string }).code : 'fulfilled'), ['SIDEKEY_E_UNAVAILABLE', 'SIDEKEY_E_UNAVAILABLE', 'SIDEKEY_E_UNAVAILABLE'], 'a 429 on the listing fails each check as unavailable (the refresher backs off)')
  t.match(busy[0]?.status === 'rejected' ? String((busy[0].reason as Error).message) : '', /HTTP 429/)
  t.same([...m.counts], [['LIST secret/detailed-metadata/busy/', 1]], 'one request: no metadata GET per secret on a rate-limited server')

  await new Promise((resolve) => setTimeout(resolve, FRESH_MS + 50))
  await api('DELETE', 'sys/quotas/rate-limit/sidekey-busy')
  relay.cut()
  try {
    m.counts.clear()
    const down = await Promise.allSettled(refs.map(async (r) => await p.sync(r, { version: '1' })))
    t.same(down.map((r) => r.status === 'rejected' ? (r.reason as { code?: string }).code : 'fulfilled'), ['SIDEKEY_E_UNAVAILABLE', 'SIDEKEY_E_UNAVAILABLE', 'SIDEKEY_E_UNAVAILABLE'])
    t.same([...m.counts], [['LIST secret/detailed-metadata/busy/', 1]], 'an unreachable server: one attempt for the three checks')
  } finally {
    relay.restore()
  }
  await new Promise((resolve) => setTimeout(resolve, FRESH_MS + 50))
  m.counts.clear()
  t.same(await Promise.all(refs.map(async (r) => await syncFrom(p, r, '1'))), ['unchanged', 'unchanged', 'unchanged'], 'back: the listing answers again')
  t.same([...m.counts], [['LIST secret/detailed-metadata/busy/', 1]])
})

t.test('provider: KV v1 (no metadata: a sync reads the value once and compares)', async (t) => {
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const ref = parseRef('vault:kv1/app/conf')
  const r = await read(p, ref)
  t.same(mapOf(r), { token: 'kv1-value-9c0d', ttl: '1h' })
  t.equal(r.expiresAt, undefined, 'a KV v1 ttl is a hint, not a lease')
  m.counts.clear()
  t.equal(await syncFrom(p, ref, r.version), 'unchanged', 'the same content: unchanged')
  t.same([...m.counts], [['GET kv1/app/conf', 1]], 'one sync = one request')
  await api('POST', 'kv1/app/conf', { token: 'kv1-value-9c0d', ttl: '2h' })
  m.counts.clear()
  const v2 = await syncFrom(p, ref, r.version)
  t.not(v2, 'unchanged', 'a write changes the content version')
  t.not(v2, r.version)
  t.same([...m.counts], [['GET kv1/app/conf', 1]], 'and still one request')
  await api('POST', 'kv1/app/conf', { token: 'kv1-value-9c0d', ttl: '1h' })
})

t.test('provider: policy without metadata falls back to reading the value', async (t) => {
  const p = provider()
  const ref = parseRef('vault:secret/data/nometa/x')
  const r = await read(p, ref)
  t.equal(r.version, '1')
  t.equal(mapOf(r).k, V1)
  t.equal(await syncFrom(p, ref, '1'), 'unchanged', 'the metadata 403 is not an error: the value read answers')
})

t.test('provider: PKI issue is a write-style read with the certificate expiry as expiresAt', async (t) => {
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const ref = parseRef('vault:pki/issue/web?common_name=app.example.com&ttl=90s')
  const r = await read(p, ref)
  const mp = mapOf(r)
  const cert = new X509Certificate(mp.certificate as string)
  t.match(cert.subject, /CN=app\.example\.com/)
  t.ok(mp.private_key?.includes('PRIVATE KEY'))
  t.equal(r.version, mp.serial_number, 'the serial number is the version')
  t.equal(r.expiresAt, Date.parse(cert.validTo), 'expiresAt is the certificate notAfter')
  m.counts.clear()
  const again = await p.sync(ref, { version: r.version, ...(r.expiresAt !== undefined ? { expiresAt: r.expiresAt } : {}) })
  t.same(again, { changed: false, expiresAt: r.expiresAt }, 'before 2/3 of its life a sync answers unchanged')
  t.equal(m.counts.size, 0, 'with no request')
})

t.test('provider: missing, denied, bad credentials', async (t) => {
  const p = provider()
  t.equal(await code(read(p, parseRef('vault:secret/data/app/nope'))), 'SIDEKEY_E_NOT_FOUND')
  t.equal(await code(syncFrom(p, parseRef('vault:secret/data/app/nope'), '1')), 'SIDEKEY_E_NOT_FOUND')
  t.equal(await code(read(p, parseRef('vault:secret/data/app/openai@99'))), 'SIDEKEY_E_NOT_FOUND', 'no such version')
  t.equal(await code(read(p, parseRef('vault:kv1/app/nope'))), 'SIDEKEY_E_NOT_FOUND')
  const before = p.auth.stats.logins
  t.equal(await code(read(p, parseRef('vault:secret/data/denied/x'))), 'SIDEKEY_E_DENIED', 'the policy has no read on it')
  t.equal(p.auth.stats.logins, before + 1, 'a 403 logs in again once')
  t.equal(await code(read(p, parseRef('vault:secret/data/denied/x'))), 'SIDEKEY_E_DENIED')
  t.equal(p.auth.stats.logins, before + 1, 'and not again for the next denial')
  t.equal(await code(read(p, parseRef('vault:pki/issue/web?common_name=evil.other.org'))), 'SIDEKEY_E_BACKEND', 'PKI refuses a name outside the role (400)')
  t.equal(await code(read(provider({ tokenFile: wrongAudience }), parseRef('vault:secret/data/app/openai'))), 'SIDEKEY_E_AUTH', 'token with the wrong audience')
  t.equal(await code(read(provider({ tokenFile: strangerToken }), parseRef('vault:secret/data/app/openai'))), 'SIDEKEY_E_AUTH', 'service account not bound to the role')
  t.equal(await code(read(provider({ role: 'nosuchrole' }), parseRef('vault:secret/data/app/openai'))), 'SIDEKEY_E_AUTH', 'unknown role')
  t.equal(await code(read(provider({ tokenFile: join(work, 'missing') }), parseRef('vault:secret/data/app/openai'))), 'SIDEKEY_E_AUTH', 'no token file')
  process.env.SIDEKEY_TEST_BAD_VAULT_TOKEN = 's.not-a-real-token'
  t.equal(await code(read(provider({ tokenEnv: 'SIDEKEY_TEST_BAD_VAULT_TOKEN', role: undefined }), parseRef('vault:secret/data/app/openai'))), 'SIDEKEY_E_AUTH', 'a bad static token')
  process.env.SIDEKEY_TEST_ROOT_VAULT_TOKEN = bao.rootToken
  t.equal(mapOf(await read(provider({ tokenEnv: 'SIDEKEY_TEST_ROOT_VAULT_TOKEN', role: undefined }), parseRef('vault:secret/data/denied/x'))).api_key, DENIED, 'a static token (local development) works')
})

t.test('provider: token renewed at 2/3 of its TTL, no second login', async (t) => {
  const p = provider({ role: 'short' })
  t.teardown(async () => { await p.close() }) // its renewals must not show up in the steady-state count below
  await read(p, parseRef('vault:secret/data/app/openai'))
  await eventually(() => p.auth.stats.renewals >= 2, 'two renewals', { ...WAIT, everyMs: 200 })
  t.equal(p.auth.stats.logins, 1, 'one login per token lifetime')
  t.equal(mapOf(await read(p, parseRef('vault:secret/data/app/openai'))).api_key, V2, 'the renewed token still reads')
})

t.test('provider: Vault namespace header', async (t) => {
  await api('POST', 'sys/namespaces/team-a', {})
  await api('POST', 'sys/mounts/kv', { type: 'kv', options: { version: '2' } }, { 'x-vault-namespace': 'team-a' })
  await api('POST', 'kv/data/x', { data: { k: 'in-namespace' } }, { 'x-vault-namespace': 'team-a' })
  process.env.SIDEKEY_TEST_ROOT_VAULT_TOKEN = bao.rootToken
  const p = provider({ tokenEnv: 'SIDEKEY_TEST_ROOT_VAULT_TOKEN', role: undefined, namespace: 'team-a' })
  t.equal(mapOf(await read(p, parseRef('vault:kv/data/x'))).k, 'in-namespace')
  t.equal(await code(read(provider({ tokenEnv: 'SIDEKEY_TEST_ROOT_VAULT_TOKEN', role: undefined }), parseRef('vault:kv/data/x'))), 'SIDEKEY_E_NOT_FOUND', 'not visible from the root namespace')
})

t.test('provider: TLS with caFile and tlsServerName (an OpenBao -dev-tls server)', async (t) => {
  const tls = await startAuditedOpenBao(t, { tls: true })
  const { readFileSync, existsSync } = await import('node:fs')
  t.ok(existsSync(tls.caFile as string), 'the dev server wrote its CA')
  const { request } = await import('node:https')
  await new Promise<void>((resolve, reject) => {
    const req = request(`${tls.addr}/v1/secret/data/tls`, { method: 'POST', ca: readFileSync(tls.caFile as string), headers: { 'x-vault-token': tls.rootToken } }, (res) => { res.resume(); res.on('end', resolve) })
    req.on('error', reject)
    req.end(JSON.stringify({ data: { k: 'over-tls' } }))
  })
  process.env.SIDEKEY_TEST_ROOT_VAULT_TOKEN = tls.rootToken
  const base = { tokenEnv: 'SIDEKEY_TEST_ROOT_VAULT_TOKEN', role: undefined, address: tls.addr }
  t.equal(mapOf(await read(provider({ ...base, caFile: tls.caFile }), parseRef('vault:secret/data/tls'))).k, 'over-tls', 'trusted through caFile')
  t.equal(mapOf(await read(provider({ ...base, address: `https://localhost:${tls.port}`, caFile: tls.caFile, tlsServerName: 'localhost' }), parseRef('vault:secret/data/tls'))).k, 'over-tls', 'with an explicit server name')
  t.equal(await code(read(provider(base), parseRef('vault:secret/data/tls'))), 'SIDEKEY_E_UNAVAILABLE', 'without the CA the TLS handshake fails')
  t.equal(await code(read(provider({ ...base, caFile: tls.caFile, tlsServerName: 'not-the-vault.example' }), parseRef('vault:secret/data/tls'))), 'SIDEKEY_E_UNAVAILABLE', 'a server name the certificate does not carry fails')
})

t.test('provider: a dynamic credential (OpenBao kubernetes secrets engine) returns its lease as version and expiresAt', async (t) => {
  await kube.createServiceAccount(NS, 'vault-engine')
  await kube.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'sidekey-token-creator' }, rules: [{ apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] }, { apiGroups: [''], resources: ['serviceaccounts'], verbs: ['get'] }] })
  await kube.bindClusterRole('sidekey-vault-engine', 'sidekey-token-creator', NS, 'vault-engine')
  const engineJwt = await kube.tokenRequest({ namespace: NS, serviceAccount: 'vault-engine', audiences: [kube.serviceAccountIssuer], expirationSeconds: 7200 })
  await api('POST', 'sys/mounts/kubernetes', { type: 'kubernetes' })
  await api('POST', 'kubernetes/config', { kubernetes_host: kube.server, kubernetes_ca_cert: kube.ca, service_account_jwt: engineJwt, disable_local_ca_jwt: true })
  await api('POST', 'kubernetes/roles/app-creds', { allowed_kubernetes_namespaces: [NS], service_account_name: 'app', token_default_ttl: '10m', token_max_ttl: '1h' })
  await api('PUT', 'sys/policies/acl/app-creds', { policy: 'path "kubernetes/creds/app-creds" { capabilities = ["update"] }\npath "sys/leases/renew" { capabilities = ["update"] }' })
  await api('POST', 'auth/k8s/role/creds', { bound_service_account_names: ['app'], bound_service_account_namespaces: [NS], audience: 'vault', token_policies: ['app-read', 'app-creds'], token_ttl: '1h' })
  const lm = meter()
  const p = provider({ role: 'creds' }, { ...ctx, meter: lm })
  const ref = parseRef(`vault:kubernetes/creds/app-creds?kubernetes_namespace=${NS}`)
  const r1 = await read(p, ref)
  t.match(r1.version, /^kubernetes\/creds\/app-creds\//, 'the lease id is the version')
  t.ok(r1.expiresAt !== undefined && r1.expiresAt > Date.now(), 'expiresAt from the lease duration')
  const m = mapOf(r1)
  t.equal(m.service_account_name, 'app')
  t.ok((m.service_account_token ?? '').split('.').length === 3, 'a service-account JWT')
  const have = { version: r1.version, expiresAt: r1.expiresAt as number }
  lm.counts.clear()
  const early = await p.sync(ref, have)
  t.same(early, { changed: false, expiresAt: r1.expiresAt }, 'before 2/3 of the lease a sync answers unchanged')
  t.equal(lm.counts.size, 0, 'without asking OpenBao')
  // A sync at renewal time (the clock moved past 2/3 of the 10-minute lease):
  // a renewable lease keeps its version; a non-renewable one is read anew.
  const realNow = Date.now
  const shift = ((r1.expiresAt as number) - realNow()) * 3 / 4
  Date.now = () => realNow() + shift
  let r2
  try { r2 = await p.sync(ref, have) } finally { Date.now = realNow }
  const raw = await api('POST', 'kubernetes/creds/app-creds', { kubernetes_namespace: NS })
  t.ok(r2.expiresAt !== undefined, 'still a lease')
  if (raw.renewable === true) {
    t.equal(r2.changed, false, 'a renewable lease is renewed: same credential, same version')
    t.ok((r2.expiresAt as number) >= (r1.expiresAt as number), 'with a new expiry')
  } else {
    t.ok(r2.changed && r2.version !== r1.version, 'a lease the engine does not renew is replaced by a new credential')
  }
})

t.test('agent: rotation reaches file, HTTP, gRPC Watch and onChange once', async (t) => {
  await api('POST', 'secret/data/app/agent', { data: { api_key: V1, org: 'o' } })
  const h = await startHarness(t, {
    refresh: '1s',
    stores: { vault: storeConfig },
    secrets: [{ name: 'openai-key', ref: 'vault:secret/data/app/agent#api_key' }, { name: 'openai.json', ref: 'vault:secret/data/app/agent', format: 'json' }],
  })
  await h.agent.synced
  t.equal(h.file('openai-key'), V1)
  t.same(JSON.parse(h.file('openai.json') ?? '{}'), { api_key: V1, org: 'o' })
  const before = h.events.length
  await api('POST', 'secret/data/app/agent', { data: { api_key: V3, org: 'o' } })
  await eventually(() => h.file('openai-key') === V3, 'the file to rotate', WAIT)
  const g = await h.get('openai-key')
  t.equal(g.body, V3)
  t.equal(g.etag?.replace(/"/g, ''), '2', 'ETag is the KV version')
  await eventually(() => h.events.slice(before).some((e) => e.name === 'openai-key' && e.kind === 'CHANGED' && e.version === '2'), 'a gRPC CHANGED event', WAIT)
  await eventually(() => h.notifications.length >= 1, 'onChange', WAIT)
  await new Promise((resolve) => setTimeout(resolve, 2500))
  t.equal(h.notifications.length, 1, 'onChange fired exactly once')
  t.notMatch(h.logs.join('\n'), V3, 'the value is never logged')
})

t.test('agent: a PKI certificate is fetched again at about 2/3 of its lifetime', async (t) => {
  const h = await startHarness(t, {
    refresh: '30s',
    stores: { vault: storeConfig },
    secrets: [{ name: 'tls.crt', ref: 'vault:pki/issue/web?common_name=svc.example.com&ttl=6s#certificate' }],
  })
  await h.agent.synced
  const first = h.file('tls.crt') as string
  t.ok(first.includes('BEGIN CERTIFICATE'))
  await eventually(() => h.file('tls.crt') !== first, 'a new certificate before the old one expires', { ...WAIT, ms: 20_000 })
  const serial1 = new X509Certificate(first).serialNumber
  const serial2 = new X509Certificate(h.file('tls.crt') as string).serialNumber
  t.not(serial2, serial1, 'a new certificate (new serial) without any write in OpenBao and long before the 30s refresh')
  await eventually(() => h.notifications.length >= 1, 'onChange for the new certificate', WAIT)
})

t.test('agent: outage keeps serving the last good value, /metrics counts errors, recovery', async (t) => {
  await api('POST', 'secret/data/app/outage', { data: { k: V1 } })
  const h = await startHarness(t, { refresh: '1s', stores: { vault: storeConfig }, secrets: [{ name: 'k', ref: 'vault:secret/data/app/outage#k' }] })
  await h.agent.synced
  await outageRoundTrip(t, h, { store: 'vault', relay, before: V1, after: V2, writeDuringOutage: async () => await api('POST', 'secret/data/app/outage', { data: { k: V2 } }) })
})

t.test('steady state: one metadata read per secret per interval, no value read, no login (OpenBao audit log)', async (t) => {
  await api('POST', 'secret/data/app/load-a', { data: { x: 'a' } })
  await api('POST', 'secret/data/app/load-b', { data: { y: 'b' } })
  const h = await startHarness(t, {
    refresh: '1s',
    stores: { vault: storeConfig },
    secrets: [{ name: 'a1', ref: 'vault:secret/data/app/load-a#x' }, { name: 'a2', ref: 'vault:secret/data/app/load-a', format: 'json' }, { name: 'b', ref: 'vault:secret/data/app/load-b#y' }],
  })
  await h.agent.synced
  const skip = auditRequests(bao.auditLog).length
  const start = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const elapsed = Date.now() - start
  const reqs = auditRequests(bao.auditLog).slice(skip)
  const intervals = Math.ceil(elapsed / 1000) + 1
  for (const name of ['load-a', 'load-b']) {
    const meta = reqs.filter((r) => r.path === `secret/metadata/app/${name}`).length
    t.ok(meta >= 2 && meta <= intervals, `${name}: ${meta} metadata reads in ${elapsed} ms at a 1s interval (at most ${intervals})`)
    t.equal(reqs.filter((r) => r.path === `secret/data/app/${name}`).length, 0, `${name}: no value read while nothing changed`)
  }
  t.same(reqs.filter((r) => r.path.startsWith('auth/')), [], 'no login or renewal in steady state')
})

t.test('no error message or detail carries a value', async (t) => {
  t.ok(errors.length > 0)
  const leaked = errors.filter((m) => VALUES.some((v) => m.includes(v)))
  t.same(leaked, [], `none of ${errors.length} error texts contains a value`)
})
