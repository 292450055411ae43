// How the Kubernetes store's watches survive the transport: a stream reset before its
// answer, settings not readable yet, a proxy under a path prefix (Rancher), an HTTPS
// server without HTTP/2, an oversized event, a rotated CA file, a peer gone silent.
// The API server is the real kube-apiserver; the proxies in front of it are node:http2 /
// node:https servers made here with an openssl certificate, forwarding every request.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createSecureServer, constants as h2, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2'
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Socket, type AddressInfo } from 'node:net'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { useServers } from '../helpers/testenv.js'
import { parseRef } from '../../core/reference.js'
import { createK8sProvider, type K8sTimings } from '../../agent/providers/k8s.js'
import type { Provider } from '../../agent/providers/provider.js'
import { syncFrom } from '../helpers/provider.js'
import { eventually, startRelay, trackProviders, errorCollector, WAIT } from './backend-harness.js'

const { kube } = await useServers(t, ['kube'])
const NS = 'sidekey-k8s-transport'
const work = mkdtempSync(join(tmpdir(), 'sidekey-k8s-transport-'))
const b64 = (s: string): string => Buffer.from(s).toString('base64')

async function putSecret (name: string, data: Record<string, string>): Promise<string> {
  const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) }
  const r = await kube.request<{ metadata: { resourceVersion: string } }>('PUT', `/api/v1/namespaces/${NS}/secrets/${name}`, body)
  if (r.status === 404) return (await kube.must<{ metadata: { resourceVersion: string } }>('POST', `/api/v1/namespaces/${NS}/secrets`, body)).metadata.resourceVersion
  if (r.status >= 300) throw new Error(`PUT secret ${name}: ${r.status}`)
  return r.body.metadata.resourceVersion
}

await kube.ensureNamespace(NS)
await kube.createServiceAccount(NS, 'reader')
await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'secret-reader' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }] })
await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'reader' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secret-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: NS }] })
const token = await kube.tokenRequest({ namespace: NS, serviceAccount: 'reader', audiences: [kube.serviceAccountIssuer], expirationSeconds: 3600 })
const tokenFile = join(work, 'token')
writeFileSync(tokenFile, token)

/** A certificate for 127.0.0.1, self-signed (its own CA), made with openssl as the other test servers' are. */
function makeCert (name: string): { key: Buffer, cert: Buffer, certFile: string } {
  const dir = mkdtempSync(join(work, `${name}-`))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
  return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')), certFile: join(dir, 'cert.pem') }
}

interface Proxy {
  port: number
  /** The request paths it received. */
  paths: string[]
  /** Protocol versions of the requests ('2.0', '1.1'). */
  versions: Set<string>
  /** Each request's protocol version and path. */
  requests: Array<{ version: string, path: string }>
  /** Sends GOAWAY on its HTTP/2 connections (a graceful shutdown: the open streams go on). */
  goaway (): void
  close (): Promise<void>
}

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'http2-settings', 'host'])
const forwardable = (h: Record<string, unknown>): Record<string, string | string[]> =>
  Object.fromEntries(Object.entries(h).filter(([k, v]) => !k.startsWith(':') && !HOP.has(k) && v !== undefined)) as Record<string, string | string[]>

/**
 * A TLS proxy in front of the kube-apiserver: HTTP/2 (and HTTP/1.1) with `h2`, else an HTTP/1.1-only
 * node:https server. Only paths under `prefix` are forwarded (without it), others get 404.
 * `resetWatches` watch streams are reset (RST_STREAM NO_ERROR) before any answer.
 */
async function startProxy (t: Tap, o: { h2: boolean, cert: { key: Buffer, cert: Buffer }, prefix?: string, resetWatches?: number, port?: number, alpn?: string[] }): Promise<Proxy> {
  const prefix = o.prefix ?? ''
  let resets = o.resetWatches ?? 0
  const paths: string[] = []
  const versions = new Set<string>()
  const requests: Proxy['requests'] = []
  const sockets = new Set<Socket>()
  const handle = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
    const url = req.url ?? '/'
    paths.push(url)
    versions.add(req.httpVersion)
    requests.push({ version: req.httpVersion, path: url })
    if (!url.startsWith(`${prefix}/`)) { res.writeHead(404).end(); return }
    if (resets > 0 && url.includes('watch=true') && 'stream' in req) {
      resets--
      req.stream.close(h2.NGHTTP2_NO_ERROR)
      return
    }
    const up = httpsRequest({ host: '127.0.0.1', port: kube.port, ca: kube.ca, method: req.method, path: url.slice(prefix.length), headers: forwardable(req.headers) }, (r) => {
      res.writeHead(r.statusCode ?? 502, forwardable(r.headers))
      r.pipe(res as NodeJS.WritableStream)
    })
    up.on('error', () => { res.destroy() })
    res.on('close', () => { up.destroy() })
    req.pipe(up)
  }
  const tls = { key: o.cert.key, cert: o.cert.cert }
  const server = o.h2 ? createSecureServer({ ...tls, allowHTTP1: true }, handle) : createHttpsServer({ ...tls, ...(o.alpn !== undefined ? { ALPNProtocols: o.alpn } : {}) }, handle)
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  const sessions = new Set<ServerHttp2Session>()
  server.on('session', (s: ServerHttp2Session) => { sessions.add(s); s.on('close', () => sessions.delete(s)) })
  await new Promise<void>((resolve) => server.listen(o.port ?? 0, '127.0.0.1', resolve))
  const proxy: Proxy = {
    port: (server.address() as AddressInfo).port,
    paths,
    versions,
    requests,
    goaway () { for (const s of sessions) s.close() },
    async close () {
      for (const s of sockets) s.destroy()
      if (server.listening) await new Promise<void>((resolve) => server.close(() => { resolve() }))
    },
  }
  t.teardown(async () => { await proxy.close() })
  return proxy
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

/** A logger that keeps its records (warnings and up) to look at. */
function recordingLogger (): { logger: Logger, records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { records.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>); cb() } })
  return { logger: pino({ level: 'info' }, sink), records }
}

const provider = trackProviders(t, (over: Record<string, unknown>, logger?: Logger, maxValueBytes?: number, timings: Partial<K8sTimings> = {}): Provider =>
  createK8sProvider({ type: 'k8s', server: kube.server, tokenFile, caFile: kube.caFile, namespace: NS, ...over } as never, { storeName: 'k8s', logger: logger ?? pino({ level: 'silent' }), maxValueBytes: maxValueBytes ?? 1 << 20 }, timings))

/** Watches `name`; resolves the count of change notifications so far. */
function watch (t: Tap, p: Provider, name: string): () => number {
  let changes = 0
  const stop = p.watch?.(parseRef(`k8s:${name}#k`), () => { changes++ })
  t.teardown(() => stop?.())
  return () => changes
}

/** Watches `name` until it is live: its first event came, and a check after a change is answered from it. */
async function liveWatch (t: Tap, p: Provider, name: string): Promise<{ changes: () => number, rv: string }> {
  const changes = watch(t, p, name)
  await eventually(() => changes() >= 1, 'the watch\'s first event', WAIT)
  const rv = await putSecret(name, { k: 'v2' })
  await eventually(async () => await syncFrom(p, parseRef(`k8s:${name}#k`), rv) === 'unchanged', 'the watch to be live', WAIT)
  return { changes, rv }
}

/**
 * The relay in front of a live watch goes silent (no FIN, no RST): the watch is
 * given up within `ms` (checks fall back to a GET, which times out on the frozen
 * relay), then, the relay thawed, it comes back and pushes a change.
 */
async function silenceDropsWatch (t: Tap, p: Provider, relay: { freeze: () => void, thaw: () => void }, name: string, live: { changes: () => number, rv: string }, what: string, ms: number): Promise<void> {
  relay.freeze()
  await eventually(async () => await code(syncFrom(p, parseRef(`k8s:${name}#k`), live.rv)) === 'SIDEKEY_E_UNAVAILABLE', `${what} to be dropped`, { ...WAIT, ms })
  t.pass(`${what} was dropped; checks fall back to GET`)
  relay.thaw()
  await seesChange(t, p, name, live.changes, 'v3')
}

/** The watch is live: a change made now is pushed, and a check is answered from it. */
async function seesChange (t: Tap, p: Provider, name: string, changes: () => number, value: string): Promise<void> {
  const before = changes()
  const rv = await putSecret(name, { k: value })
  await eventually(async () => changes() > before && await syncFrom(p, parseRef(`k8s:${name}#k`), rv) === 'unchanged', `the watch to push ${name}'s change`, WAIT)
  t.pass(`the watch on ${name} pushed a change`)
}

const { code } = errorCollector()

/** HTTP/2 watches at one Secret (by default a store watching at most 4 Secrets uses HTTP/1.1). */
const H2: Partial<K8sTimings> = { h1WatchSecrets: 0 }

t.test('at one Secret, HTTPS watches are HTTP/1.1 through node:https; beyond four Secrets, HTTP/2 streams', async (t) => {
  const names = ['few-1', 'few-2', 'few-3', 'few-4', 'few-5']
  for (const n of names) await putSecret(n, { k: 'v1' })
  const cert = makeCert('few')
  const proxy = await startProxy(t, { h2: true, cert })
  const p = provider({ server: `https://127.0.0.1:${proxy.port}`, caFile: cert.certFile })
  const watchVersions = (name: string): string[] => proxy.requests.filter((r) => r.path.includes('watch=true') && r.path.includes(`metadata.name%3D${name}&`)).map((r) => r.version)
  const first = watch(t, p, 'few-1')
  await eventually(() => first() >= 1, 'the watch\'s first event', WAIT)
  await seesChange(t, p, 'few-1', first, 'v2')
  t.same(watchVersions('few-1'), ['1.1'], 'one Secret: an HTTP/1.1 watch (the server offers HTTP/2)')
  // Four more: five Secrets watched, each new watch is an HTTP/2 stream.
  const more = names.slice(1).map((n) => [n, watch(t, p, n)] as const)
  await eventually(() => more.every(([, c]) => c() >= 1), 'the new watches\' first events', WAIT)
  for (const [n, c] of more) await seesChange(t, p, n, c, 'v2')
  t.same(names.slice(1).map((n) => watchVersions(n)), names.slice(1).map(() => ['2.0']), 'five Secrets: the new watches are HTTP/2 streams')
})

t.test('a watch stream reset before its answer (RST_STREAM NO_ERROR) reconnects', async (t) => {
  await putSecret('reset', { k: 'v1' })
  const cert = makeCert('reset')
  const proxy = await startProxy(t, { h2: true, cert, resetWatches: 1 })
  const p = provider({ server: `https://127.0.0.1:${proxy.port}`, caFile: cert.certFile }, undefined, undefined, H2)
  const changes = watch(t, p, 'reset')
  await eventually(() => changes() >= 1, 'the watch\'s first event, on a second stream', WAIT)
  t.equal(proxy.paths.filter((u) => u.includes('watch=true')).length, 2, 'the reset stream, then a new watch')
  t.ok(proxy.versions.has('2.0'), 'over HTTP/2')
  await seesChange(t, p, 'reset', changes, 'v2')
})

t.test('a token file missing when the watch starts: the watch comes up once it is there', async (t) => {
  await putSecret('late-token', { k: 'v1' })
  const late = join(work, 'late-token')
  const { logger, records } = recordingLogger()
  const p = provider({ tokenFile: late }, logger)
  const changes = watch(t, p, 'late-token')
  await eventually(() => records.some((r) => r.code === 'SIDEKEY_E_AUTH'), 'the watch to fail on the token file', WAIT)
  writeFileSync(late, token)
  await eventually(() => changes() >= 1, 'the watch\'s first event once the token is readable', WAIT)
  await seesChange(t, p, 'late-token', changes, 'v2')
  t.notMatch(JSON.stringify(records), token, 'the token is never logged')
})

t.test('a server URL with a path prefix (a proxy such as Rancher\'s): watches keep it as GETs do', async (t) => {
  await putSecret('prefixed', { k: 'v1' })
  const cert = makeCert('prefix')
  const prefix = '/k8s/clusters/c-x7'
  const proxy = await startProxy(t, { h2: true, cert, prefix })
  const p = provider({ server: `https://127.0.0.1:${proxy.port}${prefix}/`, caFile: cert.certFile })
  const r = await p.sync(parseRef('k8s:prefixed#k'), undefined)
  t.ok(r.changed && r.data.kind === 'map' && r.data.map.k === 'v1', 'a GET under the prefix')
  const changes = watch(t, p, 'prefixed')
  await eventually(() => changes() >= 1, 'the watch\'s first event under the prefix', WAIT)
  await seesChange(t, p, 'prefixed', changes, 'v2')
  t.same(proxy.paths.filter((u) => !u.startsWith(`${prefix}/`)), [], 'every request, watches included, under the prefix')
})

for (const [alpn, errCode, what] of [
  [undefined, 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL', 'ALPN http/1.1 only: the h2 offer is refused'],
  [[], 'ERR_HTTP2_NOT_NEGOTIATED', 'no ALPN at all: TLS is up, no protocol negotiated'],
] as const) {
  t.test(`an HTTPS server without HTTP/2 (${what}): watches fall back to HTTP/1.1`, async (t) => {
    const name = `h1only-${alpn === undefined ? 'alert' : 'none'}`
    await putSecret(name, { k: 'v1' })
    const cert = makeCert(name)
    const proxy = await startProxy(t, { h2: false, cert, ...(alpn !== undefined ? { alpn: [...alpn] } : {}) })
    const { logger, records } = recordingLogger()
    const p = provider({ server: `https://127.0.0.1:${proxy.port}`, caFile: cert.certFile }, logger, undefined, H2)
    const changes = watch(t, p, name)
    await eventually(() => changes() >= 1, 'the watch\'s first event over HTTP/1.1', WAIT)
    await seesChange(t, p, name, changes, 'v2')
    t.same([...proxy.versions], ['1.1'], 'the server only ever spoke HTTP/1.1')
    t.ok(records.some((r) => r.code === errCode), `the fallback is logged with the code (${errCode})`)
  })
}

t.test('after a fallback to HTTP/1.1, a later watch tries HTTP/2 again (one log line for all the watches)', async (t) => {
  await putSecret('back-a', { k: 'v1' })
  await putSecret('back-b', { k: 'v1' })
  const cert = makeCert('h2-back')
  const first = await startProxy(t, { h2: false, cert })
  const { logger, records } = recordingLogger()
  const retryMs = 1000
  const p = provider({ server: `https://127.0.0.1:${first.port}`, caFile: cert.certFile }, logger, undefined, { ...H2, h2RetryMs: retryMs })
  const a = watch(t, p, 'back-a')
  const b = watch(t, p, 'back-b')
  await eventually(() => a() >= 1 && b() >= 1, 'both watches\' first events over HTTP/1.1', WAIT)
  t.equal(records.filter((r) => r.code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL').length, 1, 'one fallback line for two watches')
  // The proxy in front of the API server is replaced by one that speaks HTTP/2, after the retry delay.
  await new Promise((resolve) => setTimeout(resolve, retryMs + 200))
  await first.close()
  const second = await startProxy(t, { h2: true, cert, port: first.port })
  await eventually(() => second.requests.some((r) => r.version === '2.0' && r.path.includes('watch=true')), 'a watch over HTTP/2 again', WAIT)
  // Logged once its answer came (the proxy counts the request when it arrives).
  await eventually(() => records.some((r) => /speaks HTTP\/2 again/.test(String(r.msg))), 'the return to HTTP/2 to be logged', WAIT)
  t.pass('the return to HTTP/2 is logged')
  await seesChange(t, p, 'back-a', a, 'v2')
  await seesChange(t, p, 'back-b', b, 'v2')
  // A watch started now goes over HTTP/2 at once.
  await putSecret('back-c', { k: 'v1' })
  const c = watch(t, p, 'back-c')
  await eventually(() => c() >= 1, 'the new watch\'s first event', WAIT)
  t.ok(second.requests.some((r) => r.version === '2.0' && r.path.includes('metadata.name%3Dback-c')), 'a new watch is an HTTP/2 stream')
  t.equal(records.filter((r) => r.level === 40 && /HTTP\/2/.test(String(r.msg))).length, 1, 'still one fallback warning')
})

t.test('a watch event larger than the bound parks the watch: no reconnect loop, checks GET with a clear error, it resumes once the Secret fits', async (t) => {
  const value = 'sk-huge-value-9c41-'.repeat(22 * 1024) // ~418 KiB: over the bound for maxValueBytes 1024 (394,582 characters)
  await putSecret('huge', { k: value })
  const cert = makeCert('huge')
  const proxy = await startProxy(t, { h2: true, cert })
  const watches = (): number => proxy.paths.filter((u) => u.includes('watch=true') && u.includes('metadata.name%3Dhuge')).length
  const { logger, records } = recordingLogger()
  const p = provider({ server: `https://127.0.0.1:${proxy.port}`, caFile: cert.certFile }, logger, 1024)
  const changes = watch(t, p, 'huge')
  await eventually(() => records.some((r) => r.code === 'SIDEKEY_E_WATCH_EVENT_TOO_LARGE'), 'the watch to meet the oversized event', WAIT)
  // Backoff would have retried at 0.5 s, 1.5 s and 3.5 s.
  await new Promise((resolve) => setTimeout(resolve, 4000))
  t.equal(watches(), 1, 'one watch request: the watch is parked, not reconnected')
  const parked = records.filter((r) => r.code === 'SIDEKEY_E_WATCH_EVENT_TOO_LARGE')
  t.equal(parked.length, 1, 'one log line')
  t.match(parked[0]?.msg, /exceeds \d+ characters.*GET at the refresh interval.*Raise maxValueBytes or make the Secret smaller/, 'it says what happens and what to change')
  const errors: string[] = []
  const err = await p.sync(parseRef('k8s:huge#k'), undefined).then(() => undefined, (e: { code?: string, message?: string }) => e)
  errors.push(String(err?.message))
  t.equal(err?.code, 'SIDEKEY_E_VALUE_TOO_LARGE', 'a check GETs the Secret and reports its size')
  t.match(err?.message, /raise maxValueBytes or make the Secret smaller/, 'it says what to change (a Secret is read whole: not #key)')
  t.equal(watches(), 1, 'the check did not restart the watch')
  t.notMatch(JSON.stringify(records) + errors.join('\n'), 'sk-huge-value', 'no log line or error carries the value')
  // The Secret is made smaller: the next check sees it fits and the watch resumes.
  const rv = await putSecret('huge', { k: 'v-small' })
  t.equal(await syncFrom(p, parseRef('k8s:huge#k'), 'none'), rv, 'a check reads the smaller Secret')
  await eventually(() => watches() === 2 && changes() >= 1, 'the watch to resume', WAIT)
  await seesChange(t, p, 'huge', changes, 'v2')
})

t.test('a Secret whose value fits but whose watch event does not (a large annotation): served by GET, the watch stays parked', async (t) => {
  // JSON escapes each quote: 250 KiB of annotation is 500 KiB of event.
  const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'annotated', annotations: { note: '"'.repeat(250 * 1024) } }, data: { k: b64('v1') } }
  await kube.request('DELETE', `/api/v1/namespaces/${NS}/secrets/annotated`)
  await kube.must('POST', `/api/v1/namespaces/${NS}/secrets`, body)
  const cert = makeCert('annotated')
  const proxy = await startProxy(t, { h2: true, cert })
  const watches = (): number => proxy.paths.filter((u) => u.includes('watch=true')).length
  const { logger, records } = recordingLogger()
  const p = provider({ server: `https://127.0.0.1:${proxy.port}`, caFile: cert.certFile }, logger, 1024)
  watch(t, p, 'annotated')
  await eventually(() => records.some((r) => r.code === 'SIDEKEY_E_WATCH_EVENT_TOO_LARGE'), 'the watch to meet the oversized event', WAIT)
  const r = await p.sync(parseRef('k8s:annotated#k'), undefined)
  t.ok(r.changed && r.data.kind === 'map' && r.data.map.k === 'v1', 'a check reads the value with GET')
  await new Promise((resolve) => setTimeout(resolve, 2000))
  t.equal(watches(), 1, 'the watch stays parked: the GET showed the Secret still does not fit')
  t.equal(records.filter((r) => r.code === 'SIDEKEY_E_WATCH_EVENT_TOO_LARGE').length, 1, 'one log line')
})

/** Secret `name`, two certificates A and B, a CA file that trusts A, and an HTTP/2 proxy serving A in front of the API server. */
async function caRotation (t: Tap, name: string): Promise<{ a: ReturnType<typeof makeCert>, b: ReturnType<typeof makeCert>, caFile: string, first: Awaited<ReturnType<typeof startProxy>> }> {
  await putSecret(name, { k: 'v1' })
  const a = makeCert(`${name}-a`)
  const b = makeCert(`${name}-b`)
  const caFile = join(work, `${name}-ca.crt`)
  copyFileSync(a.certFile, caFile)
  const first = await startProxy(t, { h2: true, cert: a })
  return { a, b, caFile, first }
}

t.test('a rotated CA file is read again: the watch comes back on a server with the new certificate', async (t) => {
  const { b, caFile, first } = await caRotation(t, 'rotated')
  const p = provider({ server: `https://127.0.0.1:${first.port}`, caFile })
  const changes = watch(t, p, 'rotated')
  await eventually(() => changes() >= 1, 'the watch\'s first event (certificate A)', WAIT)
  // The server's certificate changes, then the CA file (as the kubelet updates ca.crt).
  await first.close()
  const second = await startProxy(t, { h2: true, cert: b, port: first.port })
  writeFileSync(caFile, b.cert)
  await seesChange(t, p, 'rotated', changes, 'v2')
  t.ok(second.paths.some((u) => u.includes('watch=true')), 'the watch is on the server with certificate B')
})

t.test('the CA file is looked at once every few seconds at most, not at every GET', async (t) => {
  await putSecret('ca-stat', { k: 'v1' })
  const caFile = join(work, 'ca-stat.crt')
  copyFileSync(kube.caFile, caFile)
  // Every stat goes through fs.statSync (the ESM binding follows the module object).
  const fs = createRequire(import.meta.url)('node:fs') as { statSync: (...a: unknown[]) => unknown }
  const statSync = fs.statSync
  let looks = 0
  fs.statSync = (...a: unknown[]) => { if (a[0] === caFile) looks++; return statSync(...a) }
  syncBuiltinESMExports()
  t.teardown(() => { fs.statSync = statSync; syncBuiltinESMExports() })
  // A check interval far longer than the 20 GETs take, however busy the machine.
  const p = provider({ caFile, watch: false }, undefined, undefined, { caCheckMs: 600_000 })
  for (let i = 0; i < 20; i++) t.ok((await p.sync(parseRef('k8s:ca-stat#k'), undefined)).changed)
  t.ok(looks <= 2, `the CA file looked at ${looks} times for 20 GETs`)
})

t.test('a CA file missing for a moment (mid-rotation) keeps the connection that trusts the old one', async (t) => {
  await putSecret('ca-gone', { k: 'v1' })
  const a = makeCert('ca-gone')
  const caFile = join(work, 'ca-gone.crt')
  copyFileSync(a.certFile, caFile)
  const proxy = await startProxy(t, { h2: true, cert: a })
  // Looked at on every request, so that the GET below finds the file gone.
  const p = provider({ server: `https://127.0.0.1:${proxy.port}`, caFile, watch: false }, undefined, undefined, { caCheckMs: 0 })
  const ref = parseRef('k8s:ca-gone#k')
  const first = await p.sync(ref, undefined)
  t.ok(first.changed)
  rmSync(caFile)
  const during = await p.sync(ref, undefined).then((r) => r.changed ? 'read' : 'unchanged', (err: { code?: string }) => err.code)
  t.equal(during, 'read', 'a GET while the file is gone goes through on the connection built with it')
  copyFileSync(a.certFile, caFile)
})

t.test('a peer gone silent (no FIN, no RST): the HTTP/2 ping drops the connection and checks fall back to GET', async (t) => {
  await putSecret('silent', { k: 'v1' })
  const relay = await startRelay(t, kube.port)
  const p = provider({ server: `https://127.0.0.1:${relay.port}` }, undefined, undefined, H2)
  // Within a ping interval and its answer timeout the watch is given up.
  await silenceDropsWatch(t, p, relay, 'silent', await liveWatch(t, p, 'silent'), 'the watch on the silent server', 120_000)
})

t.test('a draining HTTP/2 connection (GOAWAY received, a watch still on it) is pinged: a silent peer drops it', async (t) => {
  await putSecret('drain', { k: 'v1' })
  const cert = makeCert('drain')
  const proxy = await startProxy(t, { h2: true, cert })
  const relay = await startRelay(t, proxy.port)
  const p = provider({ server: `https://127.0.0.1:${relay.port}`, caFile: cert.certFile }, undefined, undefined, { ...H2, pingIntervalMs: 500, pingTimeoutMs: 500 })
  const ref = parseRef('k8s:drain#k')
  const live = await liveWatch(t, p, 'drain')
  proxy.goaway()
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(await syncFrom(p, ref, live.rv), 'unchanged', 'after GOAWAY the watch goes on on the draining connection')
  // The unanswered ping drops the draining connection.
  await silenceDropsWatch(t, p, relay, 'drain', live, 'the watch on the draining connection', 20_000)
})

t.test('a CA change retires the old connection at once: a watch that took it just before the change does not use it', async (t) => {
  const { b, caFile, first } = await caRotation(t, 'retire')
  const { logger, records } = recordingLogger()
  // The CA file is looked at on every request here (by default every 5 s at most).
  const p = provider({ server: `https://127.0.0.1:${first.port}`, caFile }, logger, undefined, { caCheckMs: 0 })
  const ref = parseRef('k8s:retire#k')
  t.ok((await p.sync(ref, undefined)).changed, 'a GET with certificate A')
  await first.close()
  const second = await startProxy(t, { h2: true, cert: b, port: first.port })
  // The watch takes the connection (CA A) and reads the token; meanwhile the CA file changes and a check notices.
  const changes = watch(t, p, 'retire')
  writeFileSync(caFile, b.cert)
  t.ok((await p.sync(ref, undefined)).changed, 'a GET with certificate B')
  await eventually(() => changes() >= 1, 'the watch\'s first event', WAIT)
  t.same(records.filter((r) => /watch failed/.test(String(r.msg))).map((r) => r.code), [], 'the watch never tried the retired connection')
  t.ok(second.paths.some((u) => u.includes('watch=true')), 'the watch is on the server with certificate B')
})

for (const [over, via] of [[{}, 'node:https, few Secrets'], [H2, 'undici, HTTP/2 refused']] as const) {
t.test(`an HTTP/1.1 watch (${via}) has TCP keepalive and, gone silent (no FIN, no RST), is given up at the read-idle bound`, async (t) => {
  await putSecret('h1-silent', { k: 'v1' })
  const cert = makeCert('h1-silent')
  const proxy = await startProxy(t, { h2: false, cert })
  const relay = await startRelay(t, proxy.port)
  const keepAlive: unknown[][] = []
  const setKeepAlive = Socket.prototype.setKeepAlive
  Socket.prototype.setKeepAlive = function (this: Socket, ...a: Parameters<Socket['setKeepAlive']>) {
    this.once('connect', () => { if (this.remotePort === relay.port) keepAlive.push(a) })
    return setKeepAlive.apply(this, a)
  }
  t.teardown(() => { Socket.prototype.setKeepAlive = setKeepAlive })
  const p = provider({ server: `https://127.0.0.1:${relay.port}`, caFile: cert.certFile }, undefined, undefined, { ...over, watchIdleMs: 3000 })
  const ref = parseRef('k8s:h1-silent#k')
  const changes = watch(t, p, 'h1-silent')
  await eventually(() => changes() >= 1, 'the watch\'s first event over HTTP/1.1', WAIT)
  t.same(keepAlive, [[true, 30_000]], 'the watch\'s connection has TCP keepalive, a first probe after 30 s idle')
  const rv = await putSecret('h1-silent', { k: 'v2' })
  await eventually(async () => await syncFrom(p, ref, rv) === 'unchanged', 'the watch to be live', WAIT)
  await silenceDropsWatch(t, p, relay, 'h1-silent', { changes, rv }, 'the silent HTTP/1.1 watch', 20_000)
  t.same([...proxy.versions], ['1.1'], 'over HTTP/1.1')
})
}
