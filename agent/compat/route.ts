// What a peer-compatible local API plugs into the HTTP server: a function that
// claims a request (answers it and says how) or leaves it to the next route.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { httpDateNow } from '../../core/utc-dates.js'

export interface RouteOutcome {
  /** A fixed route label for metrics and audit lines (never request input). */
  readonly route: string
  readonly status: number
  /** The Sidekey secret served, for the audit line. */
  readonly secret?: string
  /** The version of the secret whose value was answered, for the audit line. */
  readonly version?: string
}

export type CompatRoute = (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => Promise<RouteOutcome> | RouteOutcome | undefined

export function sendBody (res: ServerResponse, status: number, obj: unknown): number {
  const body = JSON.stringify(obj)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', date: httpDateNow() })
  res.end(body)
  return status
}

export function header (req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Request input quoted back in an error: cut short, control characters dropped. */
export function quote (s: string): string {
  // eslint-disable-next-line no-control-regex
  const t = s.replace(/[\x00-\x1f\x7f]/g, '')
  return t.length > 128 ? `${t.slice(0, 128)}…` : t
}
