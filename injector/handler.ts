// HTTPS server for the webhook: POST /mutate (pods), POST /validate (the
// pod templates of workloads), /healthz, /readyz, /metrics.
// Thin on purpose: read a bounded body, call review(), write the answer.
// The serving certificate is re-read when its files change (cert-manager
// rotates them) and swapped in with setSecureContext, without a restart.
import { createHash } from 'node:crypto'
import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createSecureContext } from 'node:tls'
import { Counter, Histogram, Registry } from 'prom-client'
import { pino, type Logger } from 'pino'
import type { InjectorConfig } from './config.js'
import { listen } from '../core/listen.js'
import { review, reviewWorkload, type ReviewResult } from './admission.js'
import { sendHttpError } from '../core/error-answers.js'

// A real Pod's AdmissionReview is a few KiB (annotations are capped at 256 KiB
// by the API server); 1 MiB leaves room and bounds what one request can cost.
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024
/** Admissions read or decided at once; more get 429 (the API server retries within its timeout). */
export const DEFAULT_MAX_IN_FLIGHT = 4
/** Open sockets; more are dropped by Node before TLS. */
export const DEFAULT_MAX_CONNECTIONS = 256
/** Objects and arrays in one body: JSON.parse of 1 MiB of `{}` would cost ~60 MiB; a Pod has a few thousand. */
export const DEFAULT_MAX_JSON_CONTAINERS = 100_000
const MAX_JSON_DEPTH = 64

/**
 * Counts objects and arrays outside strings, and the nesting depth, without
 * parsing: a body of many tiny objects is refused before it can cost memory.
 */
export function jsonShape (buf: Buffer, maxContainers: number): 'ok' | 'containers' | 'depth' {
  let inString = false
  let escaped = false
  let count = 0
  let depth = 0
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i] as number
    if (inString) {
      if (escaped) escaped = false
      else if (b === 0x5c) escaped = true
      else if (b === 0x22) inString = false
    } else if (b === 0x22) {
      inString = true
    } else if (b === 0x7b || b === 0x5b) {
      if (++count > maxContainers) return 'containers'
      if (++depth > MAX_JSON_DEPTH) return 'depth'
    } else if (b === 0x7d || b === 0x5d) {
      depth--
    }
  }
  return 'ok'
}

export interface InjectorServerOptions {
  readonly config: InjectorConfig
  readonly certFile: string
  readonly keyFile: string
  readonly host?: string
  readonly port?: number
  readonly maxBodyBytes?: number
  /** Admissions in flight (reading, parsing, deciding); past it: 429. Default 4. */
  readonly maxInFlight?: number
  /** server.maxConnections. Default 256. */
  readonly maxConnections?: number
  /** Objects + arrays in one body; past it: 413 before parsing. Default 100000. */
  readonly maxJsonContainers?: number
  /** How often the cert/key files are polled (stat) for changes. */
  readonly tlsPollMs?: number
  readonly logger?: Logger
}

export interface InjectorServer {
  readonly port: number
  readonly url: string
  readonly registry: Registry
  /** Re-reads cert and key now; false (old ones kept) if they do not load or do not match. */
  reloadTls (): boolean
  close (): Promise<void>
}

interface Metrics {
  readonly admissions: Counter<'outcome'>
  readonly duration: Histogram<'outcome'>
  readonly denials: Counter<'rule'>
  readonly tlsReloads: Counter<'result'>
}

function metrics (registry: Registry): Metrics {
  return {
    admissions: new Counter({ name: 'sidekey_injector_admissions_total', help: 'Admission reviews answered, by outcome.', labelNames: ['outcome'], registers: [registry] }),
    duration: new Histogram({ name: 'sidekey_injector_admission_duration_seconds', help: 'Time from request to answer.', labelNames: ['outcome'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: [registry] }),
    denials: new Counter({ name: 'sidekey_injector_denials_total', help: 'Denied pods, by policy rule or error code.', labelNames: ['rule'], registers: [registry] }),
    tlsReloads: new Counter({ name: 'sidekey_injector_tls_reloads_total', help: 'Serving certificate reloads, by result.', labelNames: ['result'], registers: [registry] }),
  }
}

/** An AdmissionReview answer; every error goes through sendHttpError instead. */
function sendReview (res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export async function startInjectorServer (opts: InjectorServerOptions): Promise<InjectorServer> {
  const log = opts.logger ?? pino({ name: 'sidekey-injector' })
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT
  const maxContainers = opts.maxJsonContainers ?? DEFAULT_MAX_JSON_CONTAINERS
  let inFlight = 0
  const registry = new Registry()
  const m = metrics(registry)
  let closing = false

  let tlsDigest = ''
  const readTls = (): { cert: Buffer, key: Buffer, digest: string } => {
    const cert = readFileSync(opts.certFile)
    const key = readFileSync(opts.keyFile)
    return { cert, key, digest: createHash('sha256').update(cert).update(key).digest('hex') }
  }
  const first = readTls()
  tlsDigest = first.digest

  const onReview = (req: IncomingMessage, res: ServerResponse, decide: (body: unknown) => ReviewResult): void => {
    const started = process.hrtime.bigint()
    const declared = Number(req.headers['content-length'] ?? '0')
    if (Number.isFinite(declared) && declared > maxBody) {
      m.admissions.inc({ outcome: 'too_large' })
      sendHttpError(res, 'SIDEKEY_E_BODY_TOO_LARGE', `the body is larger than ${maxBody} bytes (--max-body-bytes)`, true)
      req.resume()
      return
    }
    if (inFlight >= maxInFlight) {
      m.admissions.inc({ outcome: 'busy' })
      sendHttpError(res, 'SIDEKEY_E_BUSY', `${maxInFlight} admissions are in flight; retry (the API server does within its timeout)`, true)
      req.resume()
      return
    }
    inFlight++
    let released = false
    const release = (): void => { if (!released) { released = true; inFlight-- } }
    res.once('close', release)
    res.once('finish', release)
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    req.on('data', (c: Buffer) => {
      if (done) return
      size += c.length
      if (size > maxBody) {
        done = true
        m.admissions.inc({ outcome: 'too_large' })
        sendHttpError(res, 'SIDEKEY_E_BODY_TOO_LARGE', `the body is larger than ${maxBody} bytes (--max-body-bytes)`, true)
        req.resume()
        return
      }
      chunks.push(c)
    })
    req.on('error', () => { done = true })
    req.on('end', () => {
      if (done) return
      done = true
      let body: unknown
      const raw = Buffer.concat(chunks, size)
      chunks.length = 0
      const shape = jsonShape(raw, maxContainers)
      if (shape !== 'ok') {
        m.admissions.inc({ outcome: 'too_large' })
        sendHttpError(res, 'SIDEKEY_E_BODY_TOO_LARGE', shape === 'containers' ? `the body has more than ${maxContainers} objects and arrays (--max-json-containers); a Pod has far fewer` : `the body nests deeper than ${MAX_JSON_DEPTH} levels; a Pod does not`)
        return
      }
      try {
        body = JSON.parse(raw.toString('utf8'))
      } catch {
        m.admissions.inc({ outcome: 'malformed' })
        sendHttpError(res, 'SIDEKEY_E_ADMISSION', 'the body is not JSON; send an admission.k8s.io/v1 AdmissionReview')
        return
      }
      const r = decide(body)
      if (r.error !== undefined) sendHttpError(res, r.error.code, r.error.message)
      else sendReview(res, r.body)
      const outcome = r.outcome.replace(/-/g, '_')
      m.admissions.inc({ outcome })
      m.duration.observe({ outcome }, Number(process.hrtime.bigint() - started) / 1e9)
      if (r.rule !== undefined) m.denials.inc({ rule: r.rule })
      const resp = r.body?.response
      if (r.outcome === 'warned') {
        log.info({ uid: resp?.uid, namespace: r.namespace, outcome: r.outcome, rule: r.rule, dryRun: r.dryRun, warning: resp?.warnings?.[0] }, 'workload check warned')
      } else if (r.outcome === 'denied' || r.outcome === 'error' || r.outcome === 'malformed') {
        log.warn({ uid: resp?.uid, namespace: r.namespace, outcome: r.outcome, rule: r.rule, dryRun: r.dryRun, message: resp?.status?.message ?? r.error?.message }, 'admission refused')
      } else if (r.outcome === 'injected') {
        log.debug({ uid: resp?.uid, namespace: r.namespace, dryRun: r.dryRun }, 'injected')
      }
    })
  }

  const server: Server = createServer({ cert: first.cert, key: first.key, minVersion: 'TLSv1.2' }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    try {
      if (path === '/mutate' || path === '/validate') {
        if (req.method !== 'POST') { res.setHeader('allow', 'POST'); sendHttpError(res, 'SIDEKEY_E_METHOD', `POST an AdmissionReview to ${path}`); req.resume(); return }
        onReview(req, res, path === '/mutate' ? (b) => review(b, opts.config) : (b) => reviewWorkload(b, opts.config))
        return
      }
      req.resume()
      if (req.method !== 'GET') { res.setHeader('allow', 'GET'); sendHttpError(res, 'SIDEKEY_E_METHOD', `${path} answers GET only; the webhook paths (POST) are /mutate and /validate`); return }
      if (path === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'); return }
      if (path === '/readyz') {
        if (closing) sendHttpError(res, 'SIDEKEY_E_STOPPING', 'the webhook is shutting down')
        else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
        return
      }
      if (path === '/metrics') {
        registry.metrics().then((text) => { res.writeHead(200, { 'content-type': registry.contentType }).end(text) }, () => { sendHttpError(res, 'SIDEKEY_E_INTERNAL', 'the metrics could not be collected; the injector log has the cause') })
        return
      }
      sendHttpError(res, 'SIDEKEY_E_ROUTE', 'no such path; the webhook paths are POST /mutate and /validate, and GET /healthz, /readyz, /metrics')
    } catch (err) {
      log.error({ err }, 'request failed')
      if (!res.headersSent) sendHttpError(res, 'SIDEKEY_E_INTERNAL', 'the request could not be handled; the injector log has the cause')
    }
  })
  server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  server.keepAliveTimeout = 30_000
  server.headersTimeout = 15_000
  server.requestTimeout = 15_000
  server.on('clientError', (_err, socket) => { socket.destroy() })

  const reloadTls = (): boolean => {
    let next: ReturnType<typeof readTls>
    try {
      next = readTls()
    } catch (err) {
      m.tlsReloads.inc({ result: 'error' })
      log.error({ err: (err as Error).message }, 'cannot read the serving certificate; keeping the old one')
      return false
    }
    if (next.digest === tlsDigest) return true
    try {
      // Validate first: a cert that does not match its key (mid-rotation) must not replace a working one.
      createSecureContext({ cert: next.cert, key: next.key })
      server.setSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.2' })
    } catch (err) {
      m.tlsReloads.inc({ result: 'error' })
      log.warn({ err: (err as Error).message }, 'the new serving certificate does not load (yet); keeping the old one')
      return false
    }
    tlsDigest = next.digest
    m.tlsReloads.inc({ result: 'ok' })
    log.info('serving certificate reloaded')
    return true
  }
  const poll = opts.tlsPollMs ?? 10_000
  const onChange = (): void => { reloadTls() }
  watchFile(opts.certFile, { interval: poll, persistent: false }, onChange)
  watchFile(opts.keyFile, { interval: poll, persistent: false }, onChange)

  await listen(server, opts.port ?? 8443, opts.host ?? '0.0.0.0')
  const port = (server.address() as AddressInfo).port
  const host = opts.host ?? '0.0.0.0'
  log.info({ port, host }, 'injector listening')

  return {
    port,
    url: `https://${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host}:${port}`,
    registry,
    reloadTls,
    async close (): Promise<void> {
      closing = true
      unwatchFile(opts.certFile, onChange)
      unwatchFile(opts.keyFile, onChange)
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
      })
    },
  }
}
