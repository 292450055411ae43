// The local HTTP endpoint, bound to 127.0.0.1 only. Values leave only in the
// body of GET /v1/secrets/<name>; every other answer carries names, versions
// and times. Every /v1 request needs the token; X-Forwarded-For is refused
// because only the pod itself may call, never a proxy in front of it.
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ERRORS, type SidekeyError } from '../core/errors.js'
// Every error this server answers goes through the one HTTP renderer.
import { httpErrorAnswer, sendHttpError as sendError } from '../core/error-answers.js'
import { parseDuration } from '../core/duration.js'
import type { AgentMetrics } from './metrics.js'
import type { ServedSecret, ServedSet } from './served.js'
import type { StatusBoard } from './status-board.js'
import { presentedToken } from './access-token.js'
import type { CompatRoute, RouteOutcome } from './compat/route.js'
import { DEFAULT_LIMITS, SECRET_NAME_RE, Slots, shortName, type LocalLimits } from '../core/limits.js'
import type { AuditTrail } from './audit-trail.js'
import { httpDate, httpDateNow, isoTime } from '../core/utc-dates.js'

export interface HttpServerOptions {
  /** The published generation the API serves. */
  readonly served: ServedSet
  /** Readiness and per-secret status. */
  readonly board: StatusBoard
  /** False until every listener of the agent is up: /ready waits for it as well as for the files. Default: up. */
  readonly listening?: () => boolean
  readonly checkToken: (t: string | undefined) => 'ok' | 'missing' | 'wrong'
  readonly metrics: AgentMetrics
  readonly audit: Logger
  /** Where every access is counted (agent/audit-trail.ts). */
  readonly trail: AuditTrail
  readonly maxWaitMs?: number
  /** Peer-compatible APIs (agent/compat/), asked in order before the /v1 routes. */
  readonly compat?: readonly CompatRoute[]
  readonly limits?: LocalLimits
  /** Shared with the gRPC server: one cap on watches and one on long-polls across both APIs. */
  readonly watchers?: Slots
  readonly waiters?: Slots
}

/** Headers a proxy adds; the local endpoint serves only the pod's own containers. */
const PROXY_HEADERS = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'x-forwarded-host'] as const

function forwarded (headers: IncomingMessage['headers']): boolean {
  for (const h of PROXY_HEADERS) if (headers[h] !== undefined) return true
  return false
}

/** A Host a browser on a DNS-rebound page cannot send: loopback literals and localhost only. */
const LOOPBACK_HOST = /^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$/i

/** Node's own parse errors (headers too large, too slow, not HTTP), answered as JSON like every other error. */
export function clientErrorAnswer (err: NodeJS.ErrnoException): { status: number, text: string } {
  const a = err.code === 'HPE_HEADER_OVERFLOW'
    ? httpErrorAnswer('SIDEKEY_E_HEADERS_TOO_LARGE', 'the request headers are larger than 16 KiB', true)
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? httpErrorAnswer('SIDEKEY_E_REQUEST_TIMEOUT', 'the request was not received in time', true)
      : httpErrorAnswer('SIDEKEY_E_BAD_REQUEST', 'the request is not valid HTTP/1.1', true)
  const head = Object.entries(a.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')
  return { status: a.status, text: `HTTP/1.1 ${a.status} ${STATUS_CODES[a.status] ?? ''}\r\n${head}\r\n${a.body}` }
}

const MAX_WAIT_DEFAULT = 300_000

/**
 * How often Node looks for requests past headersTimeout (or 2x for the whole
 * request): every half of headersTimeout, at least every second (Node's
 * default is 30 s). The check wakes the process even when nobody calls; at
 * the default 5 s it runs every 2.5 s instead of every second (an idle agent
 * with one secret: ~15 -> ~9 wake-ups per 10 s), and a slow sender is cut
 * within 1.5x headersTimeout of its first byte (7.5 s) instead of 6 s. A
 * socket that sends nothing is not left to it: the silent-socket timer below
 * closes it at headersTimeout exactly. Connections stay capped either way.
 */
export function checkingInterval (headersTimeoutMs: number): number {
  return Math.max(1000, Math.floor(headersTimeoutMs / 2))
}

/** What a request's metrics and audit line say: a fixed route label, the status, the secret and version answered. */
type Outcome = RouteOutcome
const SECRET_ROUTE = '/v1/secrets/:name'

/** The query of a request without one: the routes only read it. */
const NO_QUERY = new URLSearchParams()

// The audit line's caller is one connection: address:port, built once a socket.
const callers = new WeakMap<Socket, string>()
function callerOf (socket: Socket): string {
  let c = callers.get(socket)
  if (c === undefined) {
    c = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`
    // Not kept before the peer is known (a socket already closed has no address).
    if (socket.remoteAddress !== undefined) callers.set(socket, c)
  }
  return c
}
const agentOf = (ua: string | undefined): string | undefined => ua !== undefined ? shortName(ua) : undefined
const etagOf = (e: ServedSecret): string => `"${e.version}"`

function sendJson (res: ServerResponse, status: number, obj: unknown): number {
  const body = JSON.stringify(obj)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', date: httpDateNow() })
  res.end(body)
  return status
}

// Headers and body are prepared once per value, not once per request. The body
// goes out as a latin1 string (byte-for-byte the value): Node then sends head
// and body in one write instead of a writev of two buffers. The headers are a
// flat [name, value, ...] list of strings: Node reads it by index, where an
// object is walked key by key with an own-property check each.
interface Prepared { readonly headers: string[], readonly body: string }
const prepared = new WeakMap<ServedSecret, Prepared>()
function prepare (e: ServedSecret): Prepared {
  let p = prepared.get(e)
  if (p === undefined) {
    p = {
      headers: [
        // First, so its value's index (DATE_AT) stays 1 whatever follows; kept current by sendValue.
        'date', '',
        'content-type', 'application/octet-stream',
        'content-length', String(e.value.length),
        'etag', etagOf(e),
        'x-sidekey-version', e.version,
        'last-modified', httpDate(e.updatedAt),
        'cache-control', 'no-store',
      ],
      body: e.value.toString('latin1'),
    }
    prepared.set(e, p)
  }
  return p
}

/** Where the Date header's value is in a Prepared's headers. */
const DATE_AT = 1
function sendValue (res: ServerResponse, e: ServedSecret): number {
  const p = prepare(e)
  p.headers[DATE_AT] = httpDateNow()
  res.writeHead(200, p.headers)
  res.end(p.body, 'latin1')
  return 200
}

function sendNotModified (res: ServerResponse, e: ServedSecret): number {
  res.writeHead(304, { etag: etagOf(e), 'x-sidekey-version': e.version, 'cache-control': 'no-store', date: httpDateNow() })
  res.end()
  return 304
}

/** The versions an If-None-Match header names (`"v1", W/"v2"` or `*`). */
function matches (header: string | undefined, e: ServedSecret): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etagOf(e))
}

function ifNoneMatchVersion (header: string | undefined): string | undefined {
  const first = header?.split(',')[0]?.trim().replace(/^W\//, '')
  return first !== undefined && first.startsWith('"') && first.endsWith('"') ? first.slice(1, -1) : undefined
}

export function createHttpServer (o: HttpServerOptions): Server {
  const { served, board, metrics, audit } = o
  const maxWait = o.maxWaitMs ?? MAX_WAIT_DEFAULT
  const limits = o.limits ?? DEFAULT_LIMITS
  const watchers = o.watchers ?? new Slots(limits.watchers)
  const waiters = o.waiters ?? new Slots(limits.waiters)
  const compat = o.compat ?? []
  /** A Host header value LOOPBACK_HOST accepted. */
  let loopbackHost: string | undefined

  /** The value, 304 or an error, synchronously; a long-poll (?wait=) only returns a promise. */
  function secrets (req: IncomingMessage, res: ServerResponse, name: string, query: URLSearchParams | undefined): Outcome | Promise<Outcome> {
    if (!served.specs.has(name)) return { route: SECRET_ROUTE, secret: name, status: sendError(res, 'SIDEKEY_E_SECRET_UNKNOWN', `no secret named "${shortName(name)}"; GET /v1/secrets lists the names`) }
    const inm = req.headers['if-none-match']
    const waitRaw = query?.get('wait') ?? null
    const entry = served.get(name)
    if (waitRaw !== null) {
      let ms: number
      try {
        ms = Math.min(parseDuration(waitRaw, 'wait'), maxWait)
      } catch (err) {
        return { route: SECRET_ROUTE, secret: name, status: sendError(res, 'SIDEKEY_E_BAD_REQUEST', (err as SidekeyError).message) }
      }
      const current = entry !== undefined && matches(inm, entry) ? entry.version : (entry === undefined ? undefined : ifNoneMatchVersion(inm) ?? '\0none')
      if (entry === undefined || entry.version === current) return longPoll(res, name, inm, current, ms)
    }
    return answer(res, name, inm, entry)
  }

  /** The audit line names the version answered (200 or 304). */
  function answer (res: ServerResponse, name: string, inm: string | undefined, entry: ServedSecret | undefined): Outcome {
    if (entry === undefined) return { route: SECRET_ROUTE, secret: name, status: sendError(res, 'SIDEKEY_E_NOT_READY', `secret "${name}" has not been fetched yet; retry, or add ?wait=30s to wait for it`) }
    if (matches(inm, entry)) return { route: SECRET_ROUTE, secret: name, version: entry.version, status: sendNotModified(res, entry) }
    return { route: SECRET_ROUTE, secret: name, version: entry.version, status: sendValue(res, entry) }
  }

  async function longPoll (res: ServerResponse, name: string, inm: string | undefined, current: string | undefined, ms: number): Promise<Outcome> {
    const release = waiters.take()
    if (release === undefined) return { route: SECRET_ROUTE, secret: name, status: sendError(res, 'SIDEKEY_E_CAPACITY', `${waiters.max} long-polls are waiting, the agent's limit (limits.waiters); retry without ?wait= or later`, true) }
    const ac = new AbortController()
    res.once('close', () => ac.abort())
    let entry: ServedSecret | undefined
    try {
      entry = await served.waitForChange(name, current, ms, ac.signal)
    } finally {
      release()
    }
    return answer(res, name, inm, entry)
  }

  function watch (req: IncomingMessage, res: ServerResponse): number {
    const release = watchers.take()
    if (release === undefined) return sendError(res, 'SIDEKEY_E_CAPACITY', `${watchers.max} watches are open, the agent's limit (limits.watchers); close one or poll GET /v1/secrets`, true)
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', date: httpDateNow() })
    const send = (kind: 'current' | 'changed', e: ServedSecret): void => {
      res.write(`event: ${kind}\ndata: ${JSON.stringify({ name: e.name, version: e.version, updatedAt: isoTime(e.updatedAt) })}\n\n`)
    }
    for (const e of served.entries()) send('current', e)
    const onChange = (e: ServedSecret): void => send('changed', e)
    served.on('change', onChange)
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000)
    ping.unref()
    req.once('close', () => {
      clearInterval(ping)
      served.off('change', onChange)
      release()
    })
    return 200
  }

  /** Answers a request; only a long-poll, /metrics or a compatible route that waits return a promise. */
  function handle (req: IncomingMessage, res: ServerResponse): Outcome | Promise<Outcome> {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    const host = req.headers.host
    // The last Host that passed is compared as a string first: a client sends the same one each time.
    if (host !== undefined && host !== loopbackHost) {
      if (!LOOPBACK_HOST.test(host)) return { route: 'host', status: sendError(res, 'SIDEKEY_E_HOST', 'the Host header must be 127.0.0.1, localhost or [::1]: the local endpoint does not answer other names (DNS rebinding)', true) }
      loopbackHost = host
    }
    if (forwarded(req.headers)) {
      return { route: 'forwarded', status: sendError(res, 'SIDEKEY_E_FORWARDED', 'requests with X-Forwarded-For, Forwarded, X-Real-IP or X-Forwarded-Host are refused: the local endpoint serves only containers of this pod, not a proxy') }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET')
      return { route: 'method', status: sendError(res, 'SIDEKEY_E_METHOD', `${shortName(req.method ?? '')} is not allowed; the local API is read-only (GET)`) }
    }
    const auth = o.checkToken(presentedToken(req.headers['x-sidekey-token'], req.headers.authorization))
    switch (path) {
      case '/healthz': return { route: path, status: sendJson(res, 200, { status: 'ok' }) }
      case '/ready': {
        if (board.ready && (o.listening?.() ?? true)) return { route: path, status: sendJson(res, 200, { ready: true }) }
        // With the token: names and error codes/messages (never values), so the probe can say why.
        // Without it: a count only; a page that reached the port learns nothing.
        const reasons = board.missingReasons()
        const we = board.writeError
        const detail = auth === 'ok'
          ? { missing: reasons.map((r) => r.name), errors: Object.fromEntries(reasons.filter((r) => r.error !== undefined).map((r) => [r.name, r.error])) }
          : { missingCount: reasons.length }
        return { route: path, status: sendJson(res, ERRORS.SIDEKEY_E_NOT_READY.status, { ready: false, ...detail, ...(we !== undefined ? { error: { code: we.code } } : {}) }) }
      }
    }
    // Parsed once, and only when there is a query; the routes only read it.
    const query = q === -1 ? NO_QUERY : new URLSearchParams(url.slice(q + 1))
    for (const route of compat) {
      const claimed = route(req, res, path, query)
      if (claimed !== undefined) return claimed
    }
    if (path !== '/metrics' && !path.startsWith('/v1/')) return { route: 'unknown', status: sendError(res, 'SIDEKEY_E_ROUTE', `no route ${shortName(path)}; see GET /v1/secrets`) }
    if (auth === 'missing') return { route: 'auth', status: sendError(res, 'SIDEKEY_E_UNAUTHENTICATED', 'send the token from SIDEKEY_TOKEN_FILE in X-Sidekey-Token or Authorization: Bearer') }
    if (auth === 'wrong') return { route: 'auth', status: sendError(res, 'SIDEKEY_E_FORBIDDEN', 'the token does not match; read it again from SIDEKEY_TOKEN_FILE') }
    if (path === '/metrics') {
      // Labels carry secret names: the token is needed, as for /v1.
      return metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType, date: httpDateNow() })
        res.end(body)
        return { route: '/metrics', status: 200 }
      })
    }
    if (path === '/v1/secrets') {
      const we = board.writeError
      return { route: path, status: sendJson(res, 200, { ready: board.ready, ...(we !== undefined ? { error: { code: we.code, message: we.message } } : {}), secrets: board.status() }) }
    }
    if (path === '/v1/watch') return { route: path, status: watch(req, res) }
    if (path.startsWith('/v1/secrets/')) {
      const raw = path.slice('/v1/secrets/'.length)
      let name: string
      try {
        // Without a '%' there is nothing to decode (decodeURIComponent would return it as it is).
        name = raw.includes('%') ? decodeURIComponent(raw) : raw
      } catch {
        return { route: SECRET_ROUTE, status: sendError(res, 'SIDEKEY_E_BAD_REQUEST', 'the secret name in the path is not valid percent-encoding') }
      }
      // Refused before any lookup, and never echoed: a name of another shape is not a secret name.
      if (!SECRET_NAME_RE.test(name)) return { route: SECRET_ROUTE, status: sendError(res, 'SIDEKEY_E_BAD_REQUEST', `the secret name (${name.length} chars, not shown) is not a secret name: letters, digits, ".", "_", "-", at most 253`) }
      return secrets(req, res, name, q === -1 ? undefined : query)
    }
    return { route: 'unknown', status: sendError(res, 'SIDEKEY_E_ROUTE', `no route ${shortName(path)}; see GET /v1/secrets`) }
  }

  const done = (req: IncomingMessage, { route, status, secret, version }: Outcome): void => {
    metrics.countRequest('http', route, status)
    if (secret !== undefined || route === '/v1/secrets' || route === '/v1/watch' || route === 'auth' || route === 'forwarded' || route === 'host' || /^[a-z]+:\//.test(route)) {
      o.trail.record({
        api: 'http',
        caller: callerOf(req.socket),
        agent: agentOf(req.headers['user-agent']),
        route,
        status,
        // A name on the /v1 route passed SECRET_NAME_RE before its lookup; a compatible route's is checked here.
        secret: secret === undefined || route === SECRET_ROUTE || SECRET_NAME_RE.test(secret) ? secret : `(invalid, ${secret.length} chars)`,
        version,
      })
    }
  }
  const failed = (res: ServerResponse, err: unknown): void => {
    audit.error({ err: (err as Error).message, route: 'error' }, 'request failed')
    if (!res.headersSent) sendError(res, 'SIDEKEY_E_INTERNAL', 'the request could not be handled; the agent log has the cause')
    else res.destroy()
  }

  const server = createServer({
    keepAliveTimeout: 65_000,
    // A slow sender is cut off after headersTimeout, checked every half of it (see checkingInterval).
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.headersTimeoutMs * 2,
    connectionsCheckingInterval: checkingInterval(limits.headersTimeoutMs),
    maxHeaderSize: 16 * 1024,
  }, (req, res) => {
    // Most requests are answered synchronously: no promise, no microtask.
    let out: Outcome | Promise<Outcome>
    try {
      out = handle(req, res)
    } catch (err) {
      failed(res, err)
      return
    }
    if (out instanceof Promise) out.then((r) => done(req, r), (err: unknown) => failed(res, err))
    else done(req, out)
  })
  server.maxConnections = limits.connections
  // Node's headersTimeout starts at a request's first byte: a socket that sends
  // nothing at all would live until keepAliveTimeout. It gets the same bound.
  // Whether a byte came is read from bytesRead when the timer fires: a 'data'
  // listener would take the socket from Node's HTTP parser (it "unconsumes"
  // it), and every request on the connection would then be read through a
  // JavaScript stream, a Buffer a read: about a third more CPU per request.
  server.on('connection', (socket) => {
    const timer = setTimeout(() => { if (socket.bytesRead === 0) socket.destroy() }, limits.headersTimeoutMs)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const answer = clientErrorAnswer(err)
    metrics.countRequest('http', 'client-error', answer.status)
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    socket.end(answer.text)
  })
  return server
}
