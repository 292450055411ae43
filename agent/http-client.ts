// The HTTP client for every call Sidekey itself makes (the onChange notifier,
// `sidekey get`, the Vault provider): undici, through one keep-alive pool per
// owner with connect / headers / body timeouts and a bounded number of
// connections per origin. The AWS and Azure SDKs keep their own HTTP handlers
// (README: "Outbound HTTP").
//
// Errors name the method, the URL's origin and path and undici's code, never a
// request header or body: those carry tokens (X-Vault-Token, the login JWT,
// X-Sidekey-Token) and secret values.
import { createRequire } from 'node:module'
import type * as Tls from 'node:tls'
import type { Agent as UndiciAgent, Dispatcher } from 'undici'

// undici's index loads all of undici: fetch, WebSocket, EventSource, the mock
// and proxy agents, interceptors (about 45 ms of CPU at every start on Node 24).
// Sidekey uses one Agent and Dispatcher#request: those two, taken directly
// (undici 6 has no exports map). The index does the same assignment.
const Agent = createRequire(import.meta.url)('undici/lib/dispatcher/agent.js') as typeof UndiciAgent
Object.assign(
  (createRequire(import.meta.url)('undici/lib/dispatcher/dispatcher.js') as { prototype: object }).prototype,
  createRequire(import.meta.url)('undici/lib/api/index.js') as object,
)
type Agent = UndiciAgent

export interface PoolOptions {
  /** Connections per origin; requests beyond it queue. Default 4; null: no limit (long-lived requests such as watches, one connection each). */
  readonly connections?: number | null
  /** TCP (+TLS) connect. Default 5 s. */
  readonly connectTimeoutMs?: number
  /** From the request sent to the response's headers. Default 10 s. */
  readonly headersTimeoutMs?: number
  /** Longest pause between two chunks of the body. Default 10 s. */
  readonly bodyTimeoutMs?: number
  /** TCP keepalive: the first probe after this long without traffic (then the kernel's interval and count). Default undici's, 60 s. */
  readonly tcpKeepAliveMs?: number
  /** How long an idle connection stays open. Default 30 s. */
  readonly keepAliveTimeoutMs?: number
  /**
   * TLS options for the connections (a CA bundle, a client certificate, a server name). The CA and
   * certificate become one TLS context that every connection of the pool shares (given as `ca`, each
   * connection would parse the bundle into a context of its own: about 100 KiB a connection).
   */
  readonly tls?: { readonly ca?: string | Buffer, readonly cert?: string | Buffer, readonly key?: string | Buffer, readonly servername?: string, readonly rejectUnauthorized?: boolean }
  /** A context from secureContext(tls) that the caller shares with its other connections (the k8s store's HTTP/2 watches); else the pool makes its own. */
  readonly secureContext?: Tls.SecureContext
}

/** The TLS context of `tls` (its CA and client certificate, parsed once), or undefined when it has neither (the default context). */
export function secureContext (t: PoolOptions['tls']): Tls.SecureContext | undefined {
  if (t?.ca === undefined && t?.cert === undefined && t?.key === undefined) return undefined
  // node:tls only for a pool that needs a context (an agent over plain http never loads it)
  return (createRequire(import.meta.url)('node:tls') as typeof Tls).createSecureContext({ ...(t.ca !== undefined ? { ca: t.ca } : {}), ...(t.cert !== undefined ? { cert: t.cert } : {}), ...(t.key !== undefined ? { key: t.key } : {}) })
}

export const POOL_DEFAULTS = { connections: 4, connectTimeoutMs: 5_000, headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000, keepAliveTimeoutMs: 30_000 } as const

export function createPool (o: PoolOptions = {}): Agent {
  const keepAlive = o.keepAliveTimeoutMs ?? POOL_DEFAULTS.keepAliveTimeoutMs
  const t = o.tls
  const context = o.secureContext ?? secureContext(t)
  const connect = {
    timeout: o.connectTimeoutMs ?? POOL_DEFAULTS.connectTimeoutMs,
    ...(o.tcpKeepAliveMs !== undefined ? { keepAlive: true, keepAliveInitialDelay: o.tcpKeepAliveMs } : {}),
    ...(context !== undefined ? { secureContext: context } : {}),
    ...(t?.servername !== undefined ? { servername: t.servername } : {}),
    ...(t?.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
  }
  return new Agent({
    connections: o.connections === undefined ? POOL_DEFAULTS.connections : o.connections,
    pipelining: 1,
    keepAliveTimeout: keepAlive,
    keepAliveMaxTimeout: Math.max(keepAlive, 60_000),
    headersTimeout: o.headersTimeoutMs ?? POOL_DEFAULTS.headersTimeoutMs,
    bodyTimeout: o.bodyTimeoutMs ?? POOL_DEFAULTS.bodyTimeoutMs,
    connect,
  })
}

export interface HttpAnswer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: Buffer
}

export interface HttpRequest {
  readonly method: string
  readonly url: string
  readonly headers?: Record<string, string>
  readonly body?: string | Buffer
  readonly signal?: AbortSignal
  /** Overrides the pool's headers timeout for this request (a long-poll waits longer). */
  readonly headersTimeoutMs?: number
  readonly bodyTimeoutMs?: number
}

/** A transport failure: no HTTP answer came. `code` is undici's or the socket's (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...). */
export class HttpTransportError extends Error {
  constructor (message: string, readonly code: string, readonly timedOut: boolean) {
    super(message)
    this.name = 'HttpTransportError'
  }
}

const TIMEOUT_CODES: Record<string, string> = {
  UND_ERR_CONNECT_TIMEOUT: 'did not accept the connection',
  UND_ERR_HEADERS_TIMEOUT: 'did not answer',
  UND_ERR_BODY_TIMEOUT: 'stopped sending its answer',
}

function describe (u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`
}

/** An undici pool with its timeouts; `request` reads the whole body and throws HttpTransportError when no answer arrives. */
export class HttpClient {
  readonly pool: Agent
  private readonly t: { connect: number, headers: number, body: number }

  constructor (o: PoolOptions = {}) {
    this.pool = createPool(o)
    this.t = { connect: o.connectTimeoutMs ?? POOL_DEFAULTS.connectTimeoutMs, headers: o.headersTimeoutMs ?? POOL_DEFAULTS.headersTimeoutMs, body: o.bodyTimeoutMs ?? POOL_DEFAULTS.bodyTimeoutMs }
  }

  async request (r: HttpRequest): Promise<HttpAnswer> {
    const u = new URL(r.url)
    try {
      const res: Dispatcher.ResponseData = await this.pool.request({
        origin: u.origin,
        path: u.pathname + u.search,
        method: r.method as Dispatcher.HttpMethod,
        ...(r.headers !== undefined ? { headers: r.headers } : {}),
        ...(r.body !== undefined ? { body: r.body } : {}),
        ...(r.signal !== undefined ? { signal: r.signal } : {}),
        ...(r.headersTimeoutMs !== undefined ? { headersTimeout: r.headersTimeoutMs } : {}),
        ...(r.bodyTimeoutMs !== undefined ? { bodyTimeout: r.bodyTimeoutMs } : {}),
      })
      const body = Buffer.from(await res.body.arrayBuffer())
      return { status: res.statusCode, headers: res.headers, body }
    } catch (err) {
      const e = err as { code?: unknown, name?: unknown }
      const code = typeof e.code === 'string' ? e.code : (e.name === 'AbortError' ? 'ABORTED' : 'ERR_HTTP')
      const what = TIMEOUT_CODES[code]
      if (what !== undefined) {
        const ms = code === 'UND_ERR_CONNECT_TIMEOUT' ? this.t.connect : code === 'UND_ERR_HEADERS_TIMEOUT' ? (r.headersTimeoutMs ?? this.t.headers) : (r.bodyTimeoutMs ?? this.t.body)
        throw new HttpTransportError(`${r.method} ${describe(u)}: the server ${what} within ${formatMs(ms)} (${code})`, code, true)
      }
      throw new HttpTransportError(`${r.method} ${describe(u)}: ${code === 'ABORTED' ? 'aborted' : 'no answer'} (${code})`, code, false)
    }
  }

  /** Waits for requests in flight, then closes the connections. */
  async close (): Promise<void> {
    await this.pool.close()
  }

  /** Closes the connections now; requests in flight fail. */
  async destroy (): Promise<void> {
    await this.pool.destroy()
  }
}

function formatMs (ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}
