// The HTTP client for every call Sidekey itself makes (the onChange notifier,
// `sidekey get`, the Vault provider, the k8s store's GETs and its few-Secret
// watches over HTTPS, streamed): node:http (node:https
// for an https URL), one keep-alive pool per owner with connect / headers /
// body timeouts and a bounded number of connections per origin. The AWS and
// Azure SDKs keep their own HTTP handlers (README: "Outbound HTTP"). Not
// undici: its Agent, its HTTP parser (WebAssembly) and the compiler that runs
// it were ~10 MiB of the agent's resident memory, where node:http's parser is
// the one the local API's server already uses (agent/undici-pool.ts keeps
// undici for the k8s store's watches over plain HTTP, and over HTTPS to a server without HTTP/2 beyond 4 Secrets).
//
// Errors name the method, the URL's origin and path and a code (the socket's:
// ECONNREFUSED, ...; a timeout's: UND_ERR_CONNECT_TIMEOUT, UND_ERR_HEADERS_TIMEOUT,
// UND_ERR_BODY_TIMEOUT, the codes undici gave them), never a request header or
// body: those carry tokens (X-Vault-Token, the login JWT, X-Sidekey-Token) and
// secret values.
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http'
import { createRequire } from 'node:module'
import type * as Https from 'node:https'
import type * as Tls from 'node:tls'
import type { Socket } from 'node:net'

export interface PoolOptions {
  /** Connections per origin; requests beyond it queue. Default 4; null: no limit (long-lived requests such as watches, one connection each). */
  readonly connections?: number | null
  /** TCP (+TLS) connect. Default 5 s. */
  readonly connectTimeoutMs?: number
  /** From the request sent to the response's headers. Default 10 s. */
  readonly headersTimeoutMs?: number
  /** Longest pause between two chunks of the body. Default 10 s. */
  readonly bodyTimeoutMs?: number
  /** TCP keepalive: the first probe after this long without traffic (then the kernel's interval and count). Set from the connection's start (the k8s store's HTTP/1.1 watches); default node's agent's (1 s, once a connection is kept idle), undici's 60 s. */
  readonly tcpKeepAliveMs?: number
  /** How long an idle connection stays open. Default 30 s. */
  readonly keepAliveTimeoutMs?: number
  /** The largest answer body read; a longer one fails with ERR_BODY_TOO_LARGE. Default 64 MiB (4x the largest maxValueBytes). */
  readonly maxBodyBytes?: number
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

/**
 * The TLS options of a pool's connections (node:https, undici's connector, node:http2): the caller's
 * shared context or one parsed here from `tls` (once per pool: given as `ca`, each connection would
 * parse the bundle, ~100 KiB each), the server name, and verification off only when asked.
 */
export function tlsConnectOptions (o: Pick<PoolOptions, 'tls' | 'secureContext'>): { secureContext?: Tls.SecureContext, servername?: string, rejectUnauthorized?: false } {
  const t = o.tls
  const context = o.secureContext ?? secureContext(t)
  return {
    ...(context !== undefined ? { secureContext: context } : {}),
    ...(t?.servername !== undefined ? { servername: t.servername } : {}),
    ...(t?.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
  }
}

export const POOL_DEFAULTS = { connections: 4, connectTimeoutMs: 5_000, headersTimeoutMs: 10_000, bodyTimeoutMs: 10_000, keepAliveTimeoutMs: 30_000, maxBodyBytes: 64 * 1024 * 1024 } as const

/** An answer whose body is read as it comes (a k8s watch): `discard` closes it unread. */
export interface HttpStream {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** The body's chunks; a pause longer than the body timeout fails it (UND_ERR_BODY_TIMEOUT). */
  readonly body: AsyncIterable<Buffer>
  discard (): void
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

/** A transport failure: no HTTP answer came. `code` is the socket's or a timeout's (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, ...). */
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

const codeError = (code: string): Error => Object.assign(new Error(code), { code })

interface Transport { readonly agent: HttpAgent, readonly request: typeof httpRequest }

/** A keep-alive pool with its timeouts; `request` reads the whole body and throws HttpTransportError when no answer arrives. */
export class HttpClient {
  private readonly t: { connect: number, headers: number, body: number }
  private readonly maxBody: number
  private readonly transports = new Map<string, Transport>()
  private readonly inFlight = new Set<ClientRequest>()
  private drained: (() => void) | undefined
  private closed = false
  private closing: Promise<void> | undefined

  constructor (private readonly o: PoolOptions = {}) {
    this.t = { connect: o.connectTimeoutMs ?? POOL_DEFAULTS.connectTimeoutMs, headers: o.headersTimeoutMs ?? POOL_DEFAULTS.headersTimeoutMs, body: o.bodyTimeoutMs ?? POOL_DEFAULTS.bodyTimeoutMs }
    this.maxBody = o.maxBodyBytes ?? POOL_DEFAULTS.maxBodyBytes
  }

  async request (r: HttpRequest): Promise<HttpAnswer> {
    const u = new URL(r.url)
    try {
      if (this.closed) throw codeError('UND_ERR_DESTROYED')
      return await this.send(u, r, false)
    } catch (err) {
      throw this.transportError(u, r, err)
    }
  }

  /**
   * The answer once its headers came, its body read by the caller as it arrives: a long-lived
   * answer (a k8s watch) holds its connection until the body ends or is discarded. The body
   * timeout bounds each pause between chunks; close() waits for open bodies.
   */
  async stream (r: HttpRequest): Promise<HttpStream> {
    const u = new URL(r.url)
    try {
      if (this.closed) throw codeError('UND_ERR_DESTROYED')
      return await this.send(u, r, true)
    } catch (err) {
      throw this.transportError(u, r, err)
    }
  }

  private transportError (u: URL, r: HttpRequest, err: unknown): HttpTransportError {
    const e = err as { code?: unknown, name?: unknown }
    // The error's own code first (a timeout that fired before the abort is a timeout); an abort without one says aborted.
    const code = e.name === 'AbortError' ? 'ABORTED' : typeof e.code === 'string' ? e.code : r.signal?.aborted === true ? 'ABORTED' : 'ERR_HTTP'
    if (code === 'ERR_BODY_TOO_LARGE') return new HttpTransportError(`${r.method} ${describe(u)}: the server's answer is over ${this.maxBody} bytes, more than any secret (${code})`, code, false)
    const what = TIMEOUT_CODES[code]
    if (what !== undefined) {
      const ms = code === 'UND_ERR_CONNECT_TIMEOUT' ? this.t.connect : code === 'UND_ERR_HEADERS_TIMEOUT' ? (r.headersTimeoutMs ?? this.t.headers) : (r.bodyTimeoutMs ?? this.t.body)
      return new HttpTransportError(`${r.method} ${describe(u)}: the server ${what} within ${formatMs(ms)} (${code})`, code, true)
    }
    return new HttpTransportError(`${r.method} ${describe(u)}: ${code === 'ABORTED' ? 'aborted' : 'no answer'} (${code})`, code, false)
  }

  /** Waits for requests in flight, then closes the connections (a second call waits for the same). */
  async close (): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true
      if (this.inFlight.size > 0) await new Promise<void>((resolve) => { this.drained = resolve })
      for (const t of this.transports.values()) t.agent.destroy()
    })()
    await this.closing
  }

  /** Closes the connections now; requests in flight fail. */
  async destroy (): Promise<void> {
    this.closed = true
    for (const req of this.inFlight) req.destroy(codeError('UND_ERR_DESTROYED'))
    for (const t of this.transports.values()) t.agent.destroy()
  }

  /** The pool for http: or https: (node:https, and node:tls with it, only once an https URL is asked for). */
  private transport (protocol: string): Transport {
    const have = this.transports.get(protocol)
    if (have !== undefined) return have
    const o = this.o
    const pool = {
      keepAlive: true,
      // TCP keepalive's first probe (node's agent sets it on the connections it keeps, default 1 s).
      ...(o.tcpKeepAliveMs !== undefined ? { keepAliveMsecs: o.tcpKeepAliveMs } : {}),
      // An idle connection closes after this long (Node's agent sets it on the sockets it keeps).
      timeout: o.keepAliveTimeoutMs ?? POOL_DEFAULTS.keepAliveTimeoutMs,
      maxSockets: o.connections === undefined ? POOL_DEFAULTS.connections : (o.connections ?? Infinity),
    }
    let t: Transport
    if (protocol === 'https:') {
      const require = createRequire(import.meta.url)
      const https = require('node:https') as typeof Https
      t = {
        agent: new https.Agent({ ...pool, ...tlsConnectOptions(o) }),
        request: https.request as unknown as typeof httpRequest,
      }
    } else {
      t = { agent: new HttpAgent(pool), request: httpRequest }
    }
    this.transports.set(protocol, t)
    return t
  }

  private async send (u: URL, r: HttpRequest, streamed: false): Promise<HttpAnswer>
  private async send (u: URL, r: HttpRequest, streamed: true): Promise<HttpStream>
  private async send (u: URL, r: HttpRequest, streamed: boolean): Promise<HttpAnswer | HttpStream> {
    const { agent, request } = this.transport(u.protocol)
    return await new Promise<HttpAnswer | HttpStream>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      let settled = false
      const settle = (f: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.inFlight.delete(req)
        if (this.inFlight.size === 0) this.drained?.()
        f()
      }
      const fail = (err: Error): void => { settle(() => reject(err)) }
      const arm = (ms: number, code: string, target: { destroy: (e: Error) => void }): void => {
        clearTimeout(timer)
        timer = setTimeout(() => target.destroy(codeError(code)), ms)
      }
      const options: RequestOptions = {
        agent,
        method: r.method,
        // URL keeps an IPv6 literal's brackets; node:http wants the address.
        hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'),
        ...(u.port !== '' ? { port: Number(u.port) } : {}),
        path: u.pathname + u.search,
        ...(r.headers !== undefined ? { headers: r.headers } : {}),
        ...(r.signal !== undefined ? { signal: r.signal } : {}),
      }
      const req = request(options)
      this.inFlight.add(req)
      const headersMs = r.headersTimeoutMs ?? this.t.headers
      const bodyMs = r.bodyTimeoutMs ?? this.t.body
      req.once('socket', (s: Socket) => {
        // TCP keepalive on the connection from its start (a long-lived answer: a dead peer is found without traffic).
        if (this.o.tcpKeepAliveMs !== undefined) s.setKeepAlive(true, this.o.tcpKeepAliveMs)
        if (!s.connecting) { arm(headersMs, 'UND_ERR_HEADERS_TIMEOUT', req); return }
        // The connect timeout covers TCP and, for https, the TLS handshake.
        arm(this.t.connect, 'UND_ERR_CONNECT_TIMEOUT', req)
        s.once(u.protocol === 'https:' ? 'secureConnect' : 'connect', () => { if (!settled) arm(headersMs, 'UND_ERR_HEADERS_TIMEOUT', req) })
      })
      req.on('error', fail)
      req.on('response', (res: IncomingMessage) => {
        if (streamed) {
          // In flight until the body ends (close() waits for it, destroy() cuts it); each chunk re-arms the body timeout.
          arm(bodyMs, 'UND_ERR_BODY_TIMEOUT', res)
          timer?.unref()
          res.once('close', () => { clearTimeout(timer); this.inFlight.delete(req); if (this.inFlight.size === 0) this.drained?.() })
          // An error before the caller iterates (a timeout, a reset) must not be an uncaught 'error' event: the iterator throws it.
          res.on('error', () => {})
          // The timer runs while the body waits on the server, not while the caller holds a chunk.
          const body = async function * (): AsyncGenerator<Buffer> {
            for await (const c of res as AsyncIterable<Buffer>) {
              clearTimeout(timer)
              yield c
              arm(bodyMs, 'UND_ERR_BODY_TIMEOUT', res)
              timer?.unref()
            }
          }
          settled = true
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body(), discard: () => { res.destroy() } })
          return
        }
        const chunks: Buffer[] = []
        let size = 0
        arm(bodyMs, 'UND_ERR_BODY_TIMEOUT', res)
        res.on('data', (c: Buffer) => {
          size += c.length
          // A server that answers garbage without end must not grow the agent: the connection is cut.
          if (size > this.maxBody) { res.destroy(codeError('ERR_BODY_TOO_LARGE')); return }
          chunks.push(c)
          arm(bodyMs, 'UND_ERR_BODY_TIMEOUT', res)
        })
        res.on('error', fail)
        res.on('end', () => { settle(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })) })
      })
      req.end(r.body)
    })
  }
}

function formatMs (ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}
