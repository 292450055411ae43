// Kubernetes Secrets backend.
//   k8s:<name>[#key]              a Secret in the store's namespace (default: the pod's own)
//   k8s:<namespace>/<name>[#key]  another namespace (the injector's policy decides if allowed)
// The data is a map of the decoded values; the version is resourceVersion.
// Each referenced Secret is watched (one watch per Secret, field selector on
// its name). While the watch is connected, its events keep an in-memory copy
// of the Secret current, so rotation checks and fetches cost no API request;
// the watch reconnects with backoff after errors, drops the copy while
// disconnected (checks fall back to GET) and tells the refresher to resync.
// GETs go through the agent's node:https pool (agent/http-client.ts). Over HTTPS
// a store that watches at most 4 Secrets (H1_WATCH_SECRETS; the refresher starts
// every watch at once, so the count is known when the first one opens, and each
// watch picks again when it reconnects) runs them over HTTP/1.1 through node:https
// as well, one connection each from a pool of their own: node:http2 (with the
// assert and fs/promises it loads) costs ~4.2 MiB of RSS, an HTTP/1.1 TLS watch
// ~100 KiB. With more, the watches are HTTP/2 streams, up to 100 on a connection
// (a watch on its own HTTP/1.1 TLS connection costs ~100 KiB of OpenSSL buffers:
// 1,000 Secrets were +103 MiB, as streams +18 MiB); over plain HTTP, or HTTPS without HTTP/2
// (no ALPN h2), one undici connection each (agent/undici-pool.ts; HTTPS: HTTP/2 is tried again 10 min
// after such a fallback, and by a new connection after a CA change). A stream
// closed before its answer, settings not readable yet (token, CA, exec plugin)
// or a silent peer (HTTP/2 PING every 30 s while watches run; HTTP/1.1: TCP
// keepalive from 30 s and no byte for 360 s) fail the watch,
// which reconnects with backoff; an oversized event parks it (checks GET the
// Secret until it fits again). Watch paths keep the server URL's path prefix (a
// proxy such as Rancher's). A CA file whose mtime changed (looked at every 5 s at
// most) builds a new connection.
import { existsSync, readFileSync, statSync } from 'node:fs'
import { readFile } from '../fs-async.js'
import { createRequire } from 'node:module'
import type * as Http2 from 'node:http2'
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2'
import { StringDecoder } from 'node:string_decoder'
import { SidekeyError } from '../../core/errors.js'
import type { SecretRef } from '../../core/reference.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import { HttpClient, HttpTransportError, secureContext, tlsConnectOptions, type PoolOptions } from '../http-client.js'
import type { createPool } from '../undici-pool.js'
import type { Have, SyncResult, Provider, ProviderContext } from './provider.js'
import type { Logger } from 'pino'
import { checkSize, isNetworkError, withSignal } from './secret-data.js'
import { monotonicMs } from '../../core/monotonic.js'

const UTF8 = new TextDecoder('utf-8', { fatal: true })

export type K8sStoreConfig = StoreConfigOf<'k8s'>

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

/** The part of a Secret the provider reads (a watch keeps only this of each event). */
interface SecretObject { resourceVersion: string, data: Record<string, string> }

/**
 * How to reach the API server: its URL, the request headers (the bearer token, read
 * at each request: the kubelet rotates the projected token), a pool for GETs and one
 * for watches (a watch holds its connection: no limit, one TLS context shared by all).
 */
interface Connection {
  readonly server: string
  /** The server URL's path (a proxy's, e.g. Rancher's /k8s/clusters/<id>), without a trailing slash: watch paths start with it. */
  readonly prefix: string
  headers (): Promise<Record<string, string>>
  readonly http: HttpClient
  readonly watches: WatchTransport
  /** The provider's generation it was built in: an older one is retired (the CA file changed) and takes no new request. */
  readonly generation: number
}

/** An open watch: its HTTP status and the body, one JSON event a line. */
interface WatchResponse { readonly status: number, readonly body: AsyncIterable<Buffer>, discard (): void }
interface WatchTransport {
  open (path: string, headers: Record<string, string>, signal: AbortSignal): Promise<WatchResponse>
  /** Lets the open watches run to their end, then closes the connections (a replaced Connection). */
  close (): Promise<void>
  destroy (): Promise<void>
}

/**
 * The pool of HTTP/1.1 watches (undici's or node:https's): a connection each (no limit of its own:
 * one per watched Secret), headers as a GET's, a body silent for watchIdleMs fails, TCP keepalive.
 */
function watchPool (tls: Pick<PoolOptions, 'tls' | 'secureContext'>, timings: K8sTimings): PoolOptions {
  return { ...tls, connections: null, headersTimeoutMs: GET_TIMEOUT_MS, bodyTimeoutMs: timings.watchIdleMs, tcpKeepAliveMs: TCP_KEEPALIVE_MS }
}

/**
 * Watches over undici, one HTTP/1.1 connection each (a plain-HTTP server: no HTTP/2 without TLS; an
 * HTTPS one without h2). HTTP/1.1 has no PING: a dead peer is found by TCP keepalive (a first probe
 * after TCP_KEEPALIVE_MS without traffic, the kernel's interval and count then) and by the read-idle
 * bound, watchIdleMs without a byte (the server ends each watch at WATCH_SECONDS).
 */
function h1Watches (server: string, timings: K8sTimings, tls: Pick<PoolOptions, 'tls' | 'secureContext'> = {}): WatchTransport {
  // undici (its Agent, and its HTTP parser: WebAssembly compiled when the module loads) on the first
  // watch: an agent whose watches are HTTP/2 streams never loads it (~4 MiB of resident memory).
  let pool: Promise<ReturnType<typeof createPool>> | undefined
  // A load that failed (EMFILE, a broken install) is tried again by the next watch, not kept.
  const get = async (): Promise<ReturnType<typeof createPool>> => await (pool ??= import('../undici-pool.js').then((m) => m.createPool(watchPool(tls, timings))).catch((err: unknown) => { pool = undefined; throw err }))
  const loaded = async (): Promise<ReturnType<typeof createPool> | undefined> => await pool?.catch(() => undefined)
  return {
    async open (path, headers, signal) {
      const res = await (await get()).request({ origin: server, path, method: 'GET', headers, signal })
      return { status: res.statusCode, body: res.body as AsyncIterable<Buffer>, discard: () => { res.body.resume() } }
    },
    async close () { await (await loaded())?.close() },
    async destroy () { await (await loaded())?.destroy() },
  }
}

/**
 * Watches over node:https (node:http), one HTTP/1.1 connection each, through an HttpClient of their
 * own (the GET pool's 4 connections stay free for GETs) that shares the store's TLS context: the
 * store's few-watch route over HTTPS, which loads neither node:http2 nor undici. HTTP/1.1 has no PING: a dead
 * peer is found by TCP keepalive (a first probe after TCP_KEEPALIVE_MS without traffic) and by the
 * read-idle bound, watchIdleMs without a byte (the server ends each watch at WATCH_SECONDS).
 */
function nodeWatches (server: string, timings: K8sTimings, tls: Pick<PoolOptions, 'tls' | 'secureContext'>): WatchTransport {
  const client = new HttpClient(watchPool(tls, timings))
  return {
    async open (path, headers, signal) {
      const res = await client.stream({ method: 'GET', url: `${server}${path}`, headers, signal })
      return { status: res.status, body: res.body, discard: res.discard }
    },
    async close () { await client.close() },
    async destroy () { await client.destroy() },
  }
}

/**
 * The watches of an HTTPS store: HTTP/1.1 ones (nodeWatches) while the store watches at most
 * timings.h1WatchSecrets Secrets, HTTP/2 streams (H2Watches) beyond. Each watch picks when it
 * (re)connects: a store whose Secrets grow past the bound moves its watches to HTTP/2 as they
 * reconnect (the server ends each after WATCH_SECONDS). node:http2 loads with the first HTTP/2 watch.
 */
class HttpsWatches implements WatchTransport {
  private h1: WatchTransport | undefined
  private h2: H2Watches | undefined
  constructor (private readonly server: string, private readonly pool: Pick<PoolOptions, 'tls' | 'secureContext'>, private readonly logger: Logger, private readonly store: string, private readonly timings: K8sTimings, private readonly secrets: () => number) {}

  async open (path: string, headers: Record<string, string>, signal: AbortSignal): Promise<WatchResponse> {
    if (this.secrets() <= this.timings.h1WatchSecrets) return await (this.h1 ??= nodeWatches(this.server, this.timings, this.pool)).open(path, headers, signal)
    return await (this.h2 ??= new H2Watches(this.server, this.pool, this.logger, this.store, this.timings)).open(path, headers, signal)
  }

  async close (): Promise<void> { await Promise.all([this.h1?.close(), this.h2?.close()]) }
  async destroy (): Promise<void> { await Promise.all([this.h1?.destroy(), this.h2?.destroy()]) }
}

/** node:http2, loaded by the first HTTP/2 watch (~4 MiB of resident memory an agent with few watches does without). */
let http2: typeof Http2 | undefined
const loadHttp2 = (): typeof Http2 => (http2 ??= createRequire(import.meta.url)('node:http2') as typeof Http2)
/** HTTP/2 error codes (RFC 9113 §7). */
const NGHTTP2_NO_ERROR = 0
const NGHTTP2_CANCEL = 8

/** A watch stream that closed before its response headers (RST_STREAM, GOAWAY, connection closed). */
class StreamClosed extends Error {
  readonly code = 'ERR_HTTP2_STREAM_CLOSED_BEFORE_RESPONSE'
  constructor (readonly rstCode: number) { super(`the API server closed the watch stream before answering (HTTP/2 error code ${rstCode})`) }
}

/** The server does not speak HTTP/2 over TLS (ALPN refused, or no protocol negotiated). */
function noH2 (err: unknown): string | undefined {
  for (let e = err as { code?: unknown, cause?: unknown } | undefined, i = 0; e !== undefined && e !== null && i < 3; e = e.cause as typeof e, i++) {
    if (e.code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' || e.code === 'ERR_HTTP2_NOT_NEGOTIATED') return e.code
  }
  return undefined
}

/**
 * Watches as HTTP/2 streams, up to WATCH_STREAMS on a connection (the API server allows 100 or
 * more), connections opened as needed and closed when their last watch ends. A connection that
 * fails ends its watches with the error; they reconnect through the provider's backoff.
 */
class H2Watches implements WatchTransport {
  /** Open sessions and the watches on each, draining ones included (they are pinged while watches remain). */
  private readonly sessions = new Map<ClientHttp2Session, number>()
  /** Sessions that take no new stream: GOAWAY received, or the transport retired. */
  private readonly draining = new WeakSet<ClientHttp2Session>()
  /** Retired (a replaced Connection): no new session, no new watch. */
  private closed = false
  /**
   * Set once the server turned out not to speak HTTP/2: watches then go over HTTP/1.1, one connection
   * each, until a watch opened after h2RetryAt finds HTTP/2 again (a proxy in front of the API server
   * replaced or reconfigured); a new transport (a CA change) starts with HTTP/2.
   */
  private h1: WatchTransport | undefined
  private h2RetryAt = 0
  /** Sessions on which the server refused HTTP/2: their streams may fail with a generic error. */
  private readonly refused = new WeakMap<ClientHttp2Session, string>()

  /** `pool`: the store's TLS options, with the context its GET pool has too (the CA parsed once). */
  constructor (private readonly server: string, private readonly pool: Pick<PoolOptions, 'tls' | 'secureContext'>, private readonly logger: Logger, private readonly store: string, private readonly timings: K8sTimings) {}

  private session (): ClientHttp2Session {
    // The server's own limit once its settings arrived (a stream beyond it would wait unanswered).
    const limit = (s: ClientHttp2Session): number => Math.min(WATCH_STREAMS, s.connecting ? WATCH_STREAMS : (s.remoteSettings.maxConcurrentStreams ?? WATCH_STREAMS))
    for (const [s, n] of this.sessions) if (n < limit(s) && !this.draining.has(s) && !s.closed && !s.destroyed) return s
    const s = loadHttp2().connect(this.server, tlsConnectOptions(this.pool))
    this.sessions.set(s, 0)
    const drop = (): void => { this.sessions.delete(s) }
    s.once('close', drop)
    // The open streams run to their end on it (node closes the session after them), pinged meanwhile.
    s.once('goaway', () => { this.draining.add(s) })
    s.on('error', (err) => { // each stream gets the error too
      drop()
      const code = noH2(err)
      if (code !== undefined) this.refused.set(s, code)
    })
    const t = setTimeout(() => { if (!s.connecting) return; s.destroy(Object.assign(new Error('the API server did not accept the connection'), { code: 'ETIMEDOUT' })) }, CONNECT_TIMEOUT_MS)
    t.unref()
    s.once('connect', () => {
      clearTimeout(t)
      if (s.alpnProtocol !== 'h2') {
        s.destroy(Object.assign(new Error('the API server did not negotiate HTTP/2'), { code: 'ERR_HTTP2_NOT_NEGOTIATED' }))
        return
      }
      this.keepAlive(s)
    })
    return s
  }

  /**
   * A dead peer (no FIN, no RST) would leave the watches "live" until their body timeout: while the
   * session carries streams (draining or not), a PING every pingIntervalMs must be answered within pingTimeoutMs.
   * One unref'd timer per session; an idle agent has no session.
   */
  private keepAlive (s: ClientHttp2Session): void {
    const tick = setInterval(() => {
      // A draining session (GOAWAY received, transport retired) is closed but still carries its watches.
      if (s.destroyed || (this.sessions.get(s) ?? 0) === 0) return
      const dead = setTimeout(() => { s.destroy(Object.assign(new Error('the API server did not answer an HTTP/2 ping'), { code: 'ETIMEDOUT' })) }, this.timings.pingTimeoutMs)
      dead.unref()
      try {
        s.ping((err) => {
          clearTimeout(dead)
          if (err !== null && !s.destroyed) s.destroy(err)
        })
      } catch (err) {
        clearTimeout(dead)
        s.destroy(err as Error)
      }
    }, this.timings.pingIntervalMs)
    tick.unref()
    s.once('close', () => { clearInterval(tick) })
  }

  async open (path: string, headers: Record<string, string>, signal: AbortSignal): Promise<WatchResponse> {
    // The provider does not hand out a retired transport; a watch that still reached it retries (backoff).
    if (this.closed) throw Object.assign(new Error('the connection was replaced (the CA file changed)'), { code: 'ECONNRESET' })
    if (this.h1 !== undefined) {
      if (monotonicMs() < this.h2RetryAt) return await this.h1.open(path, headers, signal)
      // This watch tries HTTP/2 again; the others keep HTTP/1.1 until it has an answer.
      this.h2RetryAt = monotonicMs() + this.timings.h2RetryMs
    }
    try {
      const res = await this.stream(path, headers, signal)
      if (this.h1 !== undefined) {
        // HTTP/2 is back: new watches use streams; the HTTP/1.1 ones run to their end (the server's timeout).
        const old = this.h1
        this.h1 = undefined
        this.logger.info({ store: this.store }, 'k8s: the API server speaks HTTP/2 again; new watches use HTTP/2 streams')
        void old.close().catch(() => {})
      }
      return res
    } catch (err) {
      const code = noH2(err)
      if (code === undefined) throw err
      if (this.h1 === undefined) {
        // One line per fallback, not per watch; a retry that finds HTTP/2 still refused says nothing.
        this.logger.warn({ store: this.store, code, retryInMs: this.timings.h2RetryMs }, 'k8s: the API server does not speak HTTP/2; watches use HTTP/1.1, one connection each (HTTP/2 is tried again later)')
        this.h1 = h1Watches(this.server, this.timings, this.pool)
        this.h2RetryAt = monotonicMs() + this.timings.h2RetryMs
      }
      return await this.h1.open(path, headers, signal)
    }
  }

  private async stream (path: string, headers: Record<string, string>, signal: AbortSignal): Promise<WatchResponse> {
    const s = this.session()
    try {
      return await this.streamOn(s, path, headers, signal)
    } catch (err) {
      const refused = noH2(err) === undefined ? this.refused.get(s) : undefined
      if (refused !== undefined) throw Object.assign(new Error('the API server does not speak HTTP/2'), { code: refused, cause: err })
      throw err
    }
  }

  private async streamOn (s: ClientHttp2Session, path: string, headers: Record<string, string>, signal: AbortSignal): Promise<WatchResponse> {
    let stream: ClientHttp2Stream
    try {
      stream = s.request({ ':method': 'GET', ':path': path, ...headers }, { signal })
    } catch (err) {
      // A request refused at once (GOAWAY received, a header HTTP/2 forbids): a session opened
      // for it and left without streams is closed, not kept open.
      if ((this.sessions.get(s) ?? 0) === 0) {
        this.sessions.delete(s)
        s.close()
      }
      throw err
    }
    // Errors reach the reader through the promise below or the body iterator (stream.errored);
    // this listener only keeps one emitted in between from being an uncaught 'error' event.
    stream.on('error', () => {})
    this.sessions.set(s, (this.sessions.get(s) ?? 0) + 1)
    stream.once('close', () => {
      const n = (this.sessions.get(s) ?? 1) - 1
      if (!this.sessions.has(s)) return
      this.sessions.set(s, n)
      if (n === 0) { this.sessions.delete(s); s.close() }
    })
    // A connection gone silent (no bookmark, no end) is given up after watchIdleMs (the PING finds a dead peer sooner).
    stream.setTimeout(this.timings.watchIdleMs, () => { stream.destroy(Object.assign(new Error('the watch went silent'), { code: 'UND_ERR_BODY_TIMEOUT' })) })
    const status = await new Promise<number>((resolve, reject) => {
      const settle = (f: () => void): void => {
        clearTimeout(timer)
        stream.off('response', onResponse)
        stream.off('error', onError)
        stream.off('close', onClose)
        f()
      }
      const onResponse = (h: Record<string, unknown>): void => { settle(() => { resolve(Number(h[':status'])) }) }
      const onError = (err: Error): void => { settle(() => { reject(err) }) }
      // Closed with neither a response nor an error: RST_STREAM NO_ERROR, GOAWAY, the connection closed.
      const onClose = (): void => { settle(() => { reject(stream.errored ?? new StreamClosed(stream.rstCode ?? NGHTTP2_NO_ERROR)) }) }
      const timer = setTimeout(() => {
        settle(() => { reject(Object.assign(new Error('the API server did not answer'), { code: 'UND_ERR_HEADERS_TIMEOUT' })) })
        stream.close(NGHTTP2_CANCEL)
      }, GET_TIMEOUT_MS)
      timer.unref()
      stream.once('response', onResponse)
      stream.once('error', onError)
      stream.once('close', onClose)
    })
    return { status, body: stream as AsyncIterable<Buffer>, discard: () => { stream.close(NGHTTP2_CANCEL) } }
  }

  async close (): Promise<void> {
    this.closed = true
    for (const s of this.sessions.keys()) {
      this.draining.add(s)
      s.close()
    }
    await this.h1?.close()
  }

  async destroy (): Promise<void> {
    for (const s of this.sessions.keys()) s.destroy()
    this.sessions.clear()
    await this.h1?.destroy()
  }
}

type Pools = Omit<Connection, 'headers' | 'generation'>

interface Watched {
  readonly namespace: string
  readonly name: string
  readonly listeners: Set<() => void>
  /** The Secret as the watch last saw it; undefined while disconnected or before the first event. */
  secret?: SecretObject | undefined
  /** The watch saw the Secret deleted (or it does not exist yet). */
  live: boolean
  controller?: AbortController | undefined
  timer?: NodeJS.Timeout | undefined
  failures: number
  stopped: boolean
  /**
   * An event was over the line bound: the watch is not reconnected (each attempt would read the
   * whole object again) and checks GET the Secret at the refresh interval, until a GET shows it fits.
   */
  parked: boolean
}

/** A watch event longer than the provider accepts (a Secret beyond maxValueBytes, or not a watch). */
class WatchLineTooLong extends Error {
  readonly code = 'SIDEKEY_E_WATCH_EVENT_TOO_LARGE'
  constructor (readonly limit: number, maxValueBytes: number) { super(`a watch event exceeds ${limit} characters, the bound for maxValueBytes ${maxValueBytes}`) }
}

/** An answer of the API server other than 2xx. */
class ApiStatus extends Error {
  constructor (readonly statusCode: number) { super(`the API server answered HTTP ${statusCode}`) }
}

export class K8sProvider implements Provider {
  readonly type = 'k8s'
  private conn: Promise<Connection> | undefined
  /** Bumped when the CA file changes: connections of an earlier generation are retired. */
  private generation = 0
  /** The CA file the connection was built with and its mtime: a rotated CA (in-cluster ca.crt) rebuilds the connection. */
  private ca: { file: string, mtimeMs: number } | undefined
  /** When connection() next looks at the CA file's mtime. */
  private caCheckAt = 0
  private readonly namespace: string
  private readonly watched = new Map<string, Watched>()

  private readonly timings: K8sTimings

  constructor (private readonly config: K8sStoreConfig, private readonly ctx: ProviderContext, timings: Partial<K8sTimings> = {}) {
    this.timings = { ...TIMINGS, ...timings }
    this.namespace = config.namespace ?? readNamespace() ?? 'default'
  }

  private async connection (): Promise<Connection> {
    // The CA file is looked at once every caCheckMs at most (not at every GET while no watch is live).
    // One that cannot be read right now (mid-rotation) is no change: a later look sees it.
    let caNow: number | undefined
    if (this.ca !== undefined && monotonicMs() >= this.caCheckAt) {
      this.caCheckAt = monotonicMs() + this.timings.caCheckMs
      caNow = mtimeMs(this.ca.file)
    }
    if (this.conn !== undefined && this.ca !== undefined && caNow !== undefined && caNow !== this.ca.mtimeMs) {
      // The CA file changed: new requests and watches use a connection that trusts it; the open
      // watches run to their end on the old one (then reconnect here), which then closes.
      const old = this.conn
      this.conn = undefined
      this.ca = undefined
      this.generation++
      this.ctx.logger.info({ store: this.ctx.storeName }, 'k8s: the CA file changed; reconnecting with it')
      void old.then(async (c) => await Promise.all([c.http.close(), c.watches.close()])).catch(() => {})
    }
    const generation = this.generation
    const p = this.conn ??= this.connect0().then((c) => ({ ...c, generation }))
    p.catch(() => { if (this.conn === p) this.conn = undefined })
    return await p
  }

  /**
   * The current connection and the request headers, read just before a request: a connection
   * retired while they were read (the CA file changed) is not used, not even once.
   */
  private async ready (): Promise<{ conn: Connection, headers: Record<string, string> }> {
    for (let i = 0; ; i++) {
      const conn = await this.connection()
      const headers = await conn.headers()
      if (conn.generation === this.generation || i === 2) return { conn, headers }
    }
  }

  /**
   * The API server, token and CA: the store's server/tokenFile/caFile, else in-cluster
   * (the service-account mount). Only a kubeconfig (local development) loads
   * @kubernetes/client-node, to read it: the library loads every API model (about
   * 40 MiB of RSS) and opens a TLS context per watch.
   */
  private async connect0 (): Promise<Omit<Connection, 'generation'>> {
    const c = this.config
    const store = this.ctx.storeName
    const pools = (server: string, tls: NonNullable<PoolOptions['tls']>): Pools => {
      const url = new URL(server)
      // One TLS context (the CA and client certificate parsed once) for the GETs and the watches.
      const context = url.protocol === 'https:' ? secureContext(tls) : undefined
      const pool = url.protocol === 'https:' ? { tls, ...(context !== undefined ? { secureContext: context } : {}) } : {}
      return {
        server: server.replace(/\/+$/, ''),
        prefix: url.pathname.replace(/\/+$/, ''),
        http: new HttpClient({ ...pool, headersTimeoutMs: GET_TIMEOUT_MS, bodyTimeoutMs: GET_TIMEOUT_MS }),
        watches: url.protocol === 'https:'
          ? new HttpsWatches(url.origin, pool, this.ctx.logger, store, this.timings, () => this.watched.size)
          : h1Watches(url.origin, this.timings),
      }
    }
    try {
      if (c.kubeconfig !== undefined || (c.server === undefined && c.tokenFile === undefined && process.env.KUBERNETES_SERVICE_HOST === undefined)) {
        return await this.fromKubeconfig(pools)
      }
      const server = c.server ?? inClusterServer()
      if (server === undefined) throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}.server: not set and KUBERNETES_SERVICE_HOST is not in the environment`, { field: `stores.${store}.server` })
      const caFile = c.caFile ?? (existsSync(`${SA_DIR}/ca.crt`) ? `${SA_DIR}/ca.crt` : undefined)
      const stamp = caFile !== undefined ? mtimeMs(caFile) : undefined
      const ca = caFile !== undefined ? readFileSync(caFile) : undefined
      this.ca = caFile !== undefined && stamp !== undefined ? { file: caFile, mtimeMs: stamp } : undefined
      this.caCheckAt = monotonicMs() + this.timings.caCheckMs
      const tokenFile = c.tokenFile ?? `${SA_DIR}/token`
      const headers = async (): Promise<Record<string, string>> => {
        let token: string
        try {
          token = (await readFile(tokenFile, 'utf8')).trim()
        } catch (err) {
          throw new SidekeyError('SIDEKEY_E_AUTH', `config.stores.${store}.tokenFile: cannot read the service-account token (${String((err as { code?: unknown }).code ?? 'error')})`, { field: `stores.${store}.tokenFile` })
        }
        return { authorization: `Bearer ${token}`, accept: 'application/json' }
      }
      return { headers, ...pools(server, ca !== undefined ? { ca } : {}) }
    } catch (err) {
      if (err instanceof SidekeyError) throw err
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}: cannot load the Kubernetes client settings (${(err as Error).name}); set server/tokenFile/caFile or kubeconfig`, { field: `stores.${store}` })
    }
  }

  private async fromKubeconfig (pools: (server: string, tls: NonNullable<PoolOptions['tls']>) => Pools): Promise<Omit<Connection, 'generation'>> {
    const store = this.ctx.storeName
    const { KubeConfig } = await import('@kubernetes/client-node')
    const kc = new KubeConfig()
    if (this.config.kubeconfig !== undefined) kc.loadFromFile(this.config.kubeconfig)
    else kc.loadFromDefault()
    const cluster = kc.getCurrentCluster()
    if (cluster === null) throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}.kubeconfig: no current cluster`, { field: `stores.${store}.kubeconfig` })
    if (cluster.proxyUrl !== undefined) throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}.kubeconfig: proxy-url is not supported`, { field: `stores.${store}.kubeconfig` })
    // The library applies the user's credentials (token, client certificate, exec or auth provider) to request options.
    const apply = async (): Promise<{ ca?: Buffer, cert?: Buffer, key?: Buffer, headers?: Record<string, unknown>, rejectUnauthorized?: boolean }> => {
      const o: { ca?: Buffer, cert?: Buffer, key?: Buffer, headers?: Record<string, unknown>, rejectUnauthorized?: boolean } = {}
      await kc.applyToHTTPSOptions(o as never)
      return o
    }
    const first = await apply()
    const tls = {
      ...(first.ca !== undefined ? { ca: first.ca } : {}),
      ...(first.cert !== undefined ? { cert: first.cert } : {}),
      ...(first.key !== undefined ? { key: first.key } : {}),
      ...(cluster.tlsServerName !== undefined ? { servername: cluster.tlsServerName } : {}),
      ...(cluster.skipTLSVerify ? { rejectUnauthorized: false } : {}),
    }
    const headers = async (): Promise<Record<string, string>> => {
      const h = (await apply()).headers ?? {}
      return { ...Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), String(v)])), accept: 'application/json' }
    }
    return { headers, ...pools(cluster.server, tls) }
  }

  private locate (ref: SecretRef): { namespace: string, name: string } {
    const segs = ref.path.split('/')
    const bad = (): never => { throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: a Kubernetes reference is k8s:<name> or k8s:<namespace>/<name> (DNS labels)`, { ref: ref.raw }) }
    const dns = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/
    if (segs.length === 1) {
      if (!dns.test(segs[0] as string)) bad()
      return { namespace: this.namespace, name: segs[0] as string }
    }
    if (segs.length === 2 && dns.test(segs[0] as string) && dns.test(segs[1] as string)) return { namespace: segs[0] as string, name: segs[1] as string }
    return bad()
  }

  /** The Secret from the watch cache (or one GET); decoded only when its resourceVersion differs from `have`. */
  async sync (ref: SecretRef, have: Have | undefined, signal?: AbortSignal): Promise<SyncResult> {
    const secret = await this.secret(ref, signal)
    const version = secret.resourceVersion
    if (ref.version !== undefined && ref.version !== version) {
      throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: Kubernetes keeps no history; the Secret is at resourceVersion ${version}, not ${ref.version}`, { ref: ref.raw })
    }
    if (have !== undefined && have.version === version) return { changed: false }
    const map: Record<string, string> = {}
    for (const [k, v] of Object.entries(secret.data)) {
      try {
        map[k] = UTF8.decode(Buffer.from(v, 'base64'))
      } catch {
        // Values travel as text; a keystore or DER blob would be corrupted silently.
        throw new SidekeyError('SIDEKEY_E_FORMAT', `${ref.raw}: field "${k}" of the Secret is binary, not UTF-8 text; store it base64-encoded in the Secret (binary fields are not supported yet)`, { ref: ref.raw, field: k })
      }
    }
    // The Secret is read (and watched) whole: picking one field with #key does not make it smaller.
    const data = checkSize({ kind: 'map', map }, ref, this.ctx.maxValueBytes, 'make the Secret smaller (it is read whole, #key does not change that)')
    return { changed: true, data, version }
  }

  /** The Secret from the live watch when there is one, else one GET. */
  private async secret (ref: SecretRef, signal: AbortSignal | undefined): Promise<SecretObject> {
    const { namespace, name } = this.locate(ref)
    const w = this.watched.get(`${namespace}/${name}`)
    if (w?.live === true && w.secret !== undefined) return w.secret
    this.ctx.meter?.request('get')
    try {
      const p = this.ready().then(async ({ conn, headers }) => await conn.http.request({
        method: 'GET',
        url: `${conn.server}/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`,
        headers,
        ...(signal !== undefined ? { signal } : {}),
      }))
      const r = await withSignal(p, signal, GET_TIMEOUT_MS)
      if (r.status !== 200) throw new ApiStatus(r.status)
      // A parked watch resumes once the Secret fits an event (the object, its type and framing).
      if (w?.parked === true && !w.stopped && r.body.length + 64 <= this.lineLimit()) {
        w.parked = false
        this.ctx.logger.info({ store: this.ctx.storeName, namespace, secret: name }, 'k8s: the Secret fits a watch event again; resuming its watch')
        void this.connect(w)
      }
      return secretObject(JSON.parse(r.body.toString('utf8')))
    } catch (err) {
      throw this.mapError(err, ref, namespace, name)
    }
  }

  private mapError (err: unknown, ref: SecretRef, namespace: string, name: string): SidekeyError {
    if (err instanceof SidekeyError) return err
    const status = err instanceof ApiStatus ? err.statusCode : undefined
    const details = { ref: ref.raw, store: this.ctx.storeName, namespace, name, ...(typeof status === 'number' ? { status } : {}) }
    if (typeof status === 'number') {
      if (status === 404) return new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: there is no Secret ${name} in namespace ${namespace}`, details)
      if (status === 403) return new SidekeyError('SIDEKEY_E_DENIED', `${ref.raw}: the service account may not get Secret ${name} in namespace ${namespace} (403); bind a Role with get (and watch) on secrets, resourceNames [${name}]`, details)
      if (status === 401) return new SidekeyError('SIDEKEY_E_AUTH', `${ref.raw}: the API server rejected the service-account token (401); check tokenFile`, details)
      if (status === 429 || status >= 500) return new SidekeyError('SIDEKEY_E_UNAVAILABLE', `${ref.raw}: the API server is unavailable (HTTP ${status})`, details)
      return new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: the API server answered HTTP ${status}`, details)
    }
    if (err instanceof HttpTransportError || isNetworkError(err)) {
      return new SidekeyError('SIDEKEY_E_UNAVAILABLE', `${ref.raw}: cannot reach the Kubernetes API server (${String((err as { code?: unknown }).code ?? 'network error')})`, details)
    }
    return new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: reading the Secret failed (${(err as Error).name})`, details)
  }

  watch (ref: SecretRef, onChange: () => void): () => void {
    if (this.config.watch === false) return () => {}
    let key: string
    let loc: { namespace: string, name: string }
    try {
      loc = this.locate(ref)
      key = `${loc.namespace}/${loc.name}`
    } catch {
      return () => {} // fetch reports the bad reference
    }
    let w = this.watched.get(key)
    if (w === undefined) {
      w = { ...loc, listeners: new Set(), live: false, failures: 0, stopped: false, parked: false }
      this.watched.set(key, w)
      void this.connect(w)
    }
    const watched = w
    watched.listeners.add(onChange)
    return () => {
      watched.listeners.delete(onChange)
      if (watched.listeners.size === 0) this.stop(key, watched)
    }
  }

  private notify (w: Watched): void {
    for (const l of w.listeners) {
      try { l() } catch { /* a listener's failure is its own */ }
    }
  }

  private async connect (w: Watched): Promise<void> {
    if (w.stopped) return
    const query = new URLSearchParams({ watch: 'true', fieldSelector: `metadata.name=${w.name}`, allowWatchBookmarks: 'true', timeoutSeconds: String(WATCH_SECONDS) })
    const path = `/api/v1/namespaces/${encodeURIComponent(w.namespace)}/secrets?${query.toString()}`
    let ended = false
    let sawEvent = false
    const resync = w.failures > 0
    this.ctx.meter?.request('watch')
    const done = (err: unknown): void => {
      if (ended) return
      ended = true
      w.live = false
      w.secret = undefined
      w.controller = undefined
      if (w.stopped) return
      if (err instanceof WatchLineTooLong) {
        // Reconnecting would read the same object again, forever: park the watch (checks GET the
        // Secret; secret() resumes the watch once the Secret fits). One line per parking.
        w.parked = true
        w.failures = 0
        this.ctx.logger.warn({ store: this.ctx.storeName, namespace: w.namespace, secret: w.name, code: err.code, limit: err.limit, maxValueBytes: this.ctx.maxValueBytes },
          `k8s: a watch event of Secret ${w.namespace}/${w.name} exceeds ${err.limit} characters; its watch is paused and the Secret is read with GET at the refresh interval (the error backoff while it is over maxValueBytes) until it fits. Raise maxValueBytes or make the Secret smaller (its data, or its annotations: kubectl apply --server-side keeps the last-applied copy out)`)
        return
      }
      if (err !== null && err !== undefined) {
        w.failures++
        const { statusCode: status, code } = err as { statusCode?: unknown, code?: unknown }
        // Only the code and our own reasons: a message from elsewhere could carry anything.
        const reason = err instanceof SidekeyError || err instanceof StreamClosed ? (err as Error).message : undefined
        this.ctx.logger.warn({ store: this.ctx.storeName, namespace: w.namespace, secret: w.name, status, code, reason, attempt: w.failures }, 'k8s watch failed; reconnecting with backoff (checks use GET meanwhile)')
      } else if (!sawEvent) {
        // Closed without a single event (server timeout on a missing Secret, or a proxy): back off gently.
        w.failures = Math.min(w.failures + 1, 3)
      } else {
        w.failures = 0
      }
      const delay = w.failures === 0 ? 0 : Math.min(30_000, 500 * 2 ** Math.min(w.failures - 1, 6))
      w.timer = setTimeout(() => { w.timer = undefined; void this.connect(w) }, delay)
      w.timer.unref()
    }
    const event = (line: string): void => {
      if (ended || w.stopped || line.trim() === '') return
      const { type: phase, object: obj } = JSON.parse(line) as { type?: string, object?: unknown }
      if (phase === 'BOOKMARK') return
      if (phase === 'ERROR') {
        // e.g. 410 Gone: start over (a new watch lists the current state first).
        w.controller?.abort()
        done(Object.assign(new Error('watch error event'), { statusCode: (obj as { code?: unknown } | undefined)?.code }))
        return
      }
      sawEvent = true
      w.failures = 0
      if (phase === 'DELETED') w.secret = undefined
      else w.secret = secretObject(obj)
      this.notify(w)
    }
    const controller = new AbortController()
    w.controller = controller
    try {
      // Settings that cannot be read yet (token file, CA, exec plugin) are retried with the backoff.
      const { conn, headers } = await this.ready()
      if (w.stopped) return
      const res = await conn.watches.open(`${conn.prefix}${path}`, headers, controller.signal)
      if (res.status !== 200) {
        res.discard()
        throw Object.assign(new Error('watch refused'), { statusCode: res.status })
      }
      // stop() may have run while the watch was being opened.
      if (w.stopped) {
        controller.abort()
        res.discard()
        return
      }
      if (!ended) {
        w.live = true
        // After an outage the refresher re-checks: the value may have changed meanwhile.
        if (resync) this.notify(w)
      }
      // One JSON event a line; a line (and a UTF-8 character) may span chunks.
      const limit = this.lineLimit()
      const decoder = new StringDecoder('utf8')
      let parts: string[] = []
      let size = 0
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        const text = decoder.write(chunk)
        let from = 0
        for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', from)) {
          parts.push(text.slice(from, nl))
          from = nl + 1
          const line = parts.join('')
          parts = []
          size = 0
          event(line)
          if (ended) return
        }
        if (from < text.length) {
          parts.push(text.slice(from))
          size += text.length - from
          if (size > limit) throw new WatchLineTooLong(limit, this.ctx.maxValueBytes)
        }
        if (ended) return
      }
      parts.push(decoder.end())
      event(parts.join(''))
      done(null)
    } catch (err) {
      done(err)
    }
  }

  /**
   * The longest watch event accepted, in characters: an event carries the Secret's data base64-encoded
   * (4/3), and `kubectl apply` repeats it in the last-applied-configuration annotation (at most
   * 256 KiB), plus the rest of the metadata.
   */
  private lineLimit (): number {
    return Math.max(2 * this.ctx.maxValueBytes + 64 * 1024, Math.ceil(4 * this.ctx.maxValueBytes / 3) + 384 * 1024)
  }

  private stop (key: string, w: Watched): void {
    w.stopped = true
    w.live = false
    if (w.timer !== undefined) clearTimeout(w.timer)
    w.controller?.abort()
    this.watched.delete(key)
  }

  async close (): Promise<void> {
    for (const [k, w] of [...this.watched]) this.stop(k, w)
    const conn = await this.conn?.catch(() => undefined)
    this.conn = undefined
    if (conn !== undefined) await Promise.all([conn.http.destroy(), conn.watches.destroy()])
  }
}

/** The transport's timings; tests shorten them (createK8sProvider's third argument). */
export interface K8sTimings {
  /**
   * Over HTTPS, the most Secrets a store watches over HTTP/1.1 (one connection each); with more, its
   * watches are HTTP/2 streams. Tests set 0 to run HTTP/2 at one Secret.
   */
  readonly h1WatchSecrets: number
  /** After a fallback to HTTP/1.1, how long until a watch tries HTTP/2 again. */
  readonly h2RetryMs: number
  /** While an HTTP/2 connection carries watches, a PING this often, answered within pingTimeoutMs or the connection is dropped. */
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  /** How often at most the CA file's mtime is looked at (a rotated CA builds a new connection). */
  readonly caCheckMs: number
  /** A watch that receives no byte for this long is given up (read-idle bound). */
  readonly watchIdleMs: number
}

/** GET of one Secret: a half-open connection must not stall a source for good. */
const GET_TIMEOUT_MS = 10_000
/** A watch asks the server to end it after this long, and gives up on a silent connection a minute later. */
const WATCH_SECONDS = 300
/** On HTTP/1.1 watches, the first TCP keepalive probe after this long without traffic (as often as the HTTP/2 PING). */
const TCP_KEEPALIVE_MS = 30_000
/**
 * Up to this many watched Secrets, an HTTPS store's watches are HTTP/1.1 connections (node:https, as
 * its GETs): node:http2 costs ~4.2 MiB of resident memory once loaded, an HTTP/1.1 TLS watch ~100 KiB
 * (its OpenSSL buffers). 4 keeps the agent's connections to the API server as bounded as its GET
 * pool (4) and well under the memory break-even (~40 watches); beyond it, HTTP/2 streams on one connection.
 */
const H1_WATCH_SECRETS = 4
const TIMINGS: K8sTimings = { h1WatchSecrets: H1_WATCH_SECRETS, h2RetryMs: 10 * 60_000, pingIntervalMs: 30_000, pingTimeoutMs: 10_000, caCheckMs: 5_000, watchIdleMs: (WATCH_SECONDS + 60) * 1000 }
/** Watches on one HTTP/2 connection: under the API server's stream limit (--http2-max-streams-per-connection, 100 or more). */
const WATCH_STREAMS = 100
const CONNECT_TIMEOUT_MS = 5_000

function mtimeMs (file: string): number | undefined {
  try {
    return statSync(file).mtimeMs
  } catch {
    return undefined
  }
}

/** resourceVersion and data of a Secret as the API server sends it. */
function secretObject (o: unknown): SecretObject {
  const s = o as { metadata?: { resourceVersion?: unknown }, data?: unknown } | null
  const data = s?.data !== null && typeof s?.data === 'object' ? s.data as Record<string, string> : {}
  return { resourceVersion: typeof s?.metadata?.resourceVersion === 'string' ? s.metadata.resourceVersion : '', data }
}

function readNamespace (): string | undefined {
  try {
    const ns = readFileSync(`${SA_DIR}/namespace`, 'utf8').trim()
    if (ns !== '') return ns
  } catch { /* not in a pod */ }
  const env = process.env.POD_NAMESPACE
  return env !== undefined && env !== '' ? env : undefined
}

function inClusterServer (): string | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443'
  if (host === undefined) return undefined
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`
}

export function createK8sProvider (config: K8sStoreConfig, ctx: ProviderContext, timings: Partial<K8sTimings> = {}): Provider {
  return new K8sProvider(config, ctx, timings)
}
