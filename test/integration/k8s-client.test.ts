// The Kubernetes store reaches the API server through the agent's own HTTP pools:
// with server/tokenFile/caFile (or in-cluster settings) it never loads
// @kubernetes/client-node, whose import alone costs an agent about 40 MiB of RSS
// (every API model of the generated client). Only a kubeconfig loads it, to read it.
// A resolve hook records every module of the library this process resolves.
// Over HTTPS many watches are HTTP/2 streams on a few connections, not a TLS
// connection each (~100 KiB of OpenSSL buffers apiece); a few (at most 4
// Secrets) are HTTP/1.1 connections, on the GET pool's TLS context too.
import t from 'tap'
import { createRequire, register, syncBuiltinESMExports } from 'node:module'
import { MessageChannel } from 'node:worker_threads'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { useServers } from '../helpers/testenv.js'
import { parseRef } from '../../core/reference.js'
import { eventually, startRelay, WAIT } from './backend-harness.js'

const loaded: string[] = []
const { port1, port2 } = new MessageChannel()
port1.on('message', (url: string) => { loaded.push(url) })
port1.unref()
register('data:text/javascript,' + encodeURIComponent(`
let port
export function initialize (data) { port = data.port }
export async function resolve (specifier, context, next) {
  const r = await next(specifier, context)
  if (r.url.includes('/@kubernetes/client-node/')) port.postMessage(r.url)
  return r
}`), { data: { port: port2 }, transferList: [port2] })

const { kube } = await useServers(t, ['kube'])
const NS = 'sidekey-k8s-client'
await kube.ensureNamespace(NS)
await kube.createServiceAccount(NS, 'reader')
await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'secret-reader' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }] })
await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'reader' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secret-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: NS }] })
await kube.request('POST', `/api/v1/namespaces/${NS}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'one' }, data: { k: Buffer.from('k8s-client-value-7f3a').toString('base64') } })
const work = mkdtempSync(join(tmpdir(), 'sidekey-k8s-client-'))
const tokenFile = join(work, 'token')
writeFileSync(tokenFile, await kube.tokenRequest({ namespace: NS, serviceAccount: 'reader', audiences: [kube.serviceAccountIssuer], expirationSeconds: 3600 }))
const ctx = { storeName: 'k8s', logger: pino({ level: 'silent' }), maxValueBytes: 1 << 20 }
const { createK8sProvider } = await import('../../agent/providers/k8s.js')
const ref = parseRef('k8s:one#k')
const settle = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 200)) } // the hook's messages

await t.test('server/tokenFile/caFile: read and watch without loading @kubernetes/client-node', async (t) => {
  const p = createK8sProvider({ type: 'k8s', server: kube.server, tokenFile, caFile: kube.caFile, namespace: NS }, ctx)
  t.teardown(async () => { await p.close?.() })
  const r = await p.sync(ref, undefined)
  t.ok(r.changed && r.data.kind === 'map' && r.data.map.k === 'k8s-client-value-7f3a', 'the value, over the agent\'s own pool')
  let events = 0
  const stop = p.watch?.(ref, () => { events++ })
  t.teardown(() => stop?.())
  await eventually(() => events >= 1, 'the watch\'s first event', WAIT)
  await settle()
  t.same(loaded, [], 'no module of @kubernetes/client-node was loaded')
})

await t.test('a kubeconfig is read with @kubernetes/client-node (the hook sees the library)', async (t) => {
  const p = createK8sProvider({ type: 'k8s', kubeconfig: kube.kubeconfig, namespace: NS }, ctx)
  t.teardown(async () => { await p.close?.() })
  const r = await p.sync(ref, undefined)
  t.ok(r.changed && r.data.kind === 'map' && r.data.map.k === 'k8s-client-value-7f3a', 'the value, with the kubeconfig\'s client certificate')
  await settle()
  t.ok(loaded.length > 0, 'the library was loaded for the kubeconfig')
})

for (const [timings, via] of [[{}, 'HTTP/1.1'], [{ h1WatchSecrets: 0 }, 'HTTP/2']] as const) {
await t.test(`one TLS context for the GETs and the ${via} watches: the CA is parsed once`, async (t) => {
  // Every context node makes goes through tls.createSecureContext (the ESM binding follows the module object).
  const tls = createRequire(import.meta.url)('node:tls') as { createSecureContext: (...a: unknown[]) => unknown }
  const create = tls.createSecureContext
  let made = 0
  tls.createSecureContext = (...a: unknown[]) => { made++; return create(...a) }
  syncBuiltinESMExports()
  t.teardown(() => { tls.createSecureContext = create; syncBuiltinESMExports() })
  const p = createK8sProvider({ type: 'k8s', server: kube.server, tokenFile, caFile: kube.caFile, namespace: NS }, ctx, timings)
  t.teardown(async () => { await p.close?.() })
  const r = await p.sync(ref, undefined)
  t.ok(r.changed, 'a GET')
  let events = 0
  const stop = p.watch?.(ref, () => { events++ })
  t.teardown(() => stop?.())
  await eventually(() => events >= 1, 'the watch\'s first event', WAIT)
  t.equal(made, 1, `one context for the GET pool and the ${via} watches`)
})
}

await t.test('150 watches share HTTP/2 connections (at most 100 streams each)', async (t) => {
  const N = 150
  for (let i = 0; i < N; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, N - i) }, async (_, j) => await kube.request('POST', `/api/v1/namespaces/${NS}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: `w${i + j}` }, data: { k: Buffer.from(`v${i + j}`).toString('base64') } })))
  }
  const relay = await startRelay(t, kube.port)
  const p = createK8sProvider({ type: 'k8s', server: `https://127.0.0.1:${relay.port}`, tokenFile, caFile: kube.caFile, namespace: NS }, ctx)
  t.teardown(async () => { await p.close?.() })
  const seen = new Set<number>()
  const stops = Array.from({ length: N }, (_, i) => p.watch?.(parseRef(`k8s:w${i}#k`), () => { seen.add(i) }))
  t.teardown(() => { for (const s of stops) s?.() })
  await eventually(() => seen.size === N, 'every watch\'s first event', WAIT)
  t.equal(relay.connections(), 2, `${N} watches on 2 connections`)
  const r = await p.sync(parseRef('k8s:w149#k'), undefined)
  t.ok(r.changed && r.data.kind === 'map' && r.data.map.k === 'v149', 'a check is answered from its watch')
  t.equal(relay.connections(), 2, 'without a GET')
})
