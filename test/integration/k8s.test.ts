// Kubernetes Secrets backend against a real kube-apiserver (RBAC on): the
// agent reads with a service-account token minted by the API server, watches
// each Secret, and RBAC decides what it may read.
import t from 'tap'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { useServers } from '../helpers/testenv.js'
import { K8sProvider, createK8sProvider } from '../../agent/providers/k8s.js'
import { parseRef } from '../../core/reference.js'
import { read, syncFrom, meter } from '../helpers/provider.js'
import { startRelay, startHarness, eventually, WAIT, trackProviders, errorCollector, outageRoundTrip } from './backend-harness.js'

const { kube } = await useServers(t, ['kube'])
const relay = await startRelay(t, kube.port)
const server = `https://127.0.0.1:${relay.port}`
const work = mkdtempSync(join(tmpdir(), 'sidekey-k8s-'))
const NS = 'sidekey-k8s'

const V1 = 'sk-k8s-value-one-11aa'
const V2 = 'sk-k8s-value-two-22bb'
const V3 = 'sk-k8s-value-three-33cc'
const VALUES = [V1, V2, V3]
const b64 = (s: string): string => Buffer.from(s).toString('base64')

async function putSecret (name: string, data: Record<string, string>): Promise<string> {
  const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) }
  const r = await kube.request<{ metadata: { resourceVersion: string } }>('PUT', `/api/v1/namespaces/${NS}/secrets/${name}`, body)
  if (r.status === 404) return (await kube.must<{ metadata: { resourceVersion: string } }>('POST', `/api/v1/namespaces/${NS}/secrets`, body)).metadata.resourceVersion
  if (r.status >= 300) throw new Error(`PUT secret ${name}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.metadata.resourceVersion
}

await kube.ensureNamespace(NS)
await kube.createServiceAccount(NS, 'reader')
await kube.createServiceAccount(NS, 'nobody')
await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'secret-reader' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }] })
await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'reader' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secret-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: NS }] })
const readerToken = join(work, 'reader-token')
writeFileSync(readerToken, await kube.tokenRequest({ namespace: NS, serviceAccount: 'reader', audiences: [kube.serviceAccountIssuer], expirationSeconds: 3600 }))
const nobodyToken = join(work, 'nobody-token')
writeFileSync(nobodyToken, await kube.tokenRequest({ namespace: NS, serviceAccount: 'nobody', audiences: [kube.serviceAccountIssuer], expirationSeconds: 3600 }))
const wrongAudience = join(work, 'wrong-audience')
writeFileSync(wrongAudience, await kube.tokenRequest({ namespace: NS, serviceAccount: 'reader', audiences: ['vault'], expirationSeconds: 3600 }))

const ctx = { storeName: 'k8s', logger: pino({ level: 'silent' }), maxValueBytes: 1 << 20 }
const storeConfig = { type: 'k8s' as const, server, tokenFile: readerToken, caFile: kube.caFile, namespace: NS }
const provider = trackProviders(t, (over: Record<string, unknown> = {}, c: typeof ctx & { meter?: ReturnType<typeof meter> } = ctx): K8sProvider => createK8sProvider({ ...storeConfig, ...over } as never, c) as K8sProvider)

const { code, errors } = errorCollector()

t.test('provider: read a map of decoded values, resourceVersion, a pinned version', async (t) => {
  const rv = await putSecret('openai', { api_key: V1, org: 'org-1' })
  const p = provider()
  const r = await read(p, parseRef('k8s:openai'))
  t.same(r.data, { kind: 'map', map: { api_key: V1, org: 'org-1' } })
  t.equal(r.version, rv)
  t.equal(await syncFrom(p, parseRef(`k8s:${NS}/openai`), rv), 'unchanged', 'namespace/name form')
  const rv2 = await putSecret('openai', { api_key: V2, org: 'org-1' })
  t.equal(await syncFrom(p, parseRef('k8s:openai'), rv), rv2, 'resourceVersion follows an update')
  t.equal(await syncFrom(p, parseRef('k8s:openai'), rv2), 'unchanged')
  t.equal(await code(read(p, parseRef(`k8s:openai@${rv}`))), 'SIDEKEY_E_NOT_FOUND', 'Kubernetes keeps no history: an old pin is not found')
  t.equal((await read(p, parseRef(`k8s:openai@${rv2}`))).version, rv2)
})

t.test('provider: a binary field is a clear error, not corrupted text', async (t) => {
  const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'keystore' }, data: { 'ks.p12': Buffer.from([0x30, 0x82, 0xff, 0xfe, 0x00, 0x01]).toString('base64') } }
  await kube.must('POST', `/api/v1/namespaces/${NS}/secrets`, body)
  t.equal(await code(read(provider(), parseRef('k8s:keystore#ks.p12'))), 'SIDEKEY_E_FORMAT')
  t.match(errors[errors.length - 2], /field "ks\.p12" of the Secret is binary/)
})

t.test('provider: the watch pushes changes and serves checks without requests', async (t) => {
  await putSecret('watched', { k: V1 })
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const ref = parseRef('k8s:watched')
  let changes = 0
  const stop = p.watch(ref, () => { changes++ })
  t.teardown(stop)
  await eventually(() => changes >= 1, 'the initial watch event', WAIT)
  m.counts.delete('get')
  const seen = changes
  const rv = await putSecret('watched', { k: V2 })
  await eventually(() => changes > seen, 'a pushed change', WAIT)
  const r = await read(p, ref)
  t.equal(r.version, rv, 'a sync sees the new resourceVersion')
  t.equal((r.data as { map: Record<string, string> }).map.k, V2)
  t.equal(await syncFrom(p, ref, rv), 'unchanged', 'and answers unchanged for it')
  t.equal(m.counts.get('get'), undefined, 'no GET while the watch is live')

  // Cut the connection: the watch reconnects with backoff and resyncs.
  const before = changes
  relay.cut()
  await eventually(async () => await code(syncFrom(p, ref, rv)) === 'SIDEKEY_E_UNAVAILABLE', 'the watch to notice', WAIT)
  t.pass('disconnected: the cached copy is dropped and the check falls back to GET, which fails')
  const rv3 = await putSecret('watched', { k: V3 })
  relay.restore()
  await eventually(async () => changes > before && await syncFrom(p, ref, rv3) === 'unchanged', 'the watch to reconnect and resync', WAIT)
  t.equal(((await read(p, ref)).data as { map: Record<string, string> }).map.k, V3, 'the change made during the outage arrives')
})

t.test('provider: missing, denied by RBAC, bad credential', async (t) => {
  const p = provider()
  t.equal(await code(read(p, parseRef('k8s:nope'))), 'SIDEKEY_E_NOT_FOUND')
  t.equal(await code(read(provider({ tokenFile: nobodyToken }), parseRef('k8s:openai'))), 'SIDEKEY_E_DENIED', 'a service account without a Role')
  t.equal(await code(read(p, parseRef('k8s:kube-system/some-secret'))), 'SIDEKEY_E_DENIED', 'another namespace')
  t.equal(await code(read(provider({ tokenFile: wrongAudience }), parseRef('k8s:openai'))), 'SIDEKEY_E_AUTH', 'a token for another audience (401)')
  t.equal(await code(read(p, parseRef('k8s:Not_A_Name'))), 'SIDEKEY_E_NOT_FOUND', 'not a DNS name')
})

t.test('agent: a change is pushed by the watch (long before the 30s refresh) to file, HTTP, gRPC and onChange once', async (t) => {
  await putSecret('agent', { api_key: V1 })
  const h = await startHarness(t, { refresh: '30s', stores: { k8s: storeConfig }, secrets: [{ name: 'key', ref: 'k8s:agent#api_key' }] })
  await h.agent.synced
  t.equal(h.file('key'), V1)
  const before = h.events.length
  const rv = await putSecret('agent', { api_key: V3 })
  await eventually(() => h.file('key') === V3, 'the file to rotate via the watch', { ...WAIT, ms: 10_000 })
  t.equal((await h.get('key')).body, V3)
  await eventually(() => h.events.slice(before).some((e) => e.name === 'key' && e.kind === 'CHANGED' && e.version === rv), 'a gRPC CHANGED event', WAIT)
  await eventually(() => h.notifications.length >= 1, 'onChange', WAIT)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.equal(h.notifications.length, 1, 'onChange fired exactly once')
  t.notMatch(h.logs.join('\n'), V3, 'the value is never logged')
})

interface AuditEvent { verb: string, stage: string, requestURI: string, user: { username: string }, objectRef?: { name?: string, namespace?: string } }

t.test('agent: steady state costs the API server no request per interval (counted in its audit log)', async (t) => {
  await putSecret('steady', { k: V1 })
  const h = await startHarness(t, { refresh: '1s', stores: { k8s: storeConfig }, secrets: [{ name: 'k', ref: 'k8s:steady#k' }] })
  await h.agent.synced
  // The reader's requests on this Secret: get by name, or list/watch with a field selector on it.
  const requests = (): AuditEvent[] => readFileSync(kube.auditLog, 'utf8').split('\n').filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditEvent)
    .filter((e) => e.user.username === `system:serviceaccount:${NS}:reader` && e.objectRef?.namespace === NS &&
      (e.objectRef.name === 'steady' || e.requestURI.includes('metadata.name%3Dsteady')))
  await eventually(() => requests().some((e) => e.verb === 'watch'), 'the watch to be open', WAIT)
  const before = requests().length
  await new Promise((resolve) => setTimeout(resolve, 5000)) // five 1s refresh intervals
  const during = requests().slice(before).map((e) => `${e.verb} ${e.stage}`)
  t.same(during, [], 'no get, list or new watch over five intervals: checks are answered from the watch')
  t.equal((await h.get('k')).body, V1)
  t.notMatch(readFileSync(kube.auditLog, 'utf8'), V1, 'the audit log holds no value (Metadata level)')
})

t.test('agent: outage keeps serving the last good value, /metrics counts errors, recovery', async (t) => {
  await putSecret('outage', { k: V1 })
  const h = await startHarness(t, { refresh: '1s', stores: { k8s: storeConfig }, secrets: [{ name: 'k', ref: 'k8s:outage#k' }] })
  await h.agent.synced
  await outageRoundTrip(t, h, { store: 'k8s', relay, before: V1, after: V2, writeDuringOutage: async () => await putSecret('outage', { k: V2 }) })
})

t.test('no error message or detail carries a value', async (t) => {
  t.ok(errors.length > 0)
  const leaked = errors.filter((m) => VALUES.some((v) => m.includes(v)))
  t.same(leaked, [], `none of ${errors.length} error texts contains a value`)
})
