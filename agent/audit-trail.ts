// The audit trail of the local endpoint. Every access is accounted for, but
// not with one synchronous line each: accesses that agree on who, what and
// outcome (api, caller, user agent, route, secret, version, status) are
// counted, and one line per such group is written at most a second after its
// first access, and on close. A line names references and versions, never a value.
import type { Logger } from 'pino'
import { AUDIT_FLUSH_MS } from './logger.js'
import { isoTime } from '../core/utc-dates.js'

export interface Access {
  readonly api: 'http' | 'grpc'
  /** address:port (HTTP) or the gRPC peer: one connection of one process. */
  readonly caller: string
  readonly agent?: string | undefined
  readonly route: string
  readonly status: number | string
  readonly secret?: string | undefined
  readonly version?: string | undefined
}

/** Equal for the audit trail: every field of the group key. */
function same (x: Access, y: Access): boolean {
  return x.api === y.api && x.caller === y.caller && x.agent === y.agent && x.route === y.route && x.status === y.status && x.secret === y.secret && x.version === y.version
}

interface Group { readonly access: Access, count: number, readonly first: number, last: number }

export class AuditTrail {
  readonly #log: Logger
  readonly #refsOf: (secret: string) => readonly string[] | undefined
  readonly #flushMs: number
  #groups = new Map<string, Group>()
  /** Each caller's latest group: a connection repeating the same access (the usual case) skips building the key. */
  #latest = new Map<string, Group>()
  #timer: NodeJS.Timeout | undefined

  constructor (log: Logger, refsOf: (secret: string) => readonly string[] | undefined, flushMs = AUDIT_FLUSH_MS) {
    this.#log = log
    this.#refsOf = refsOf
    this.#flushMs = flushMs
  }

  record (a: Access): void {
    const now = Date.now()
    const latest = this.#latest.get(a.caller)
    if (latest !== undefined && same(latest.access, a)) {
      latest.count++
      latest.last = now
      return // its group is in this window, so the timer is armed
    }
    const key = `${a.api}\n${a.caller}\n${a.agent ?? ''}\n${a.route}\n${a.status}\n${a.secret ?? ''}\n${a.version ?? ''}`
    let g = this.#groups.get(key)
    if (g !== undefined) {
      g.count++
      g.last = now
    } else {
      g = { access: a, count: 1, first: now, last: now }
      this.#groups.set(key, g)
    }
    this.#latest.set(a.caller, g)
    // Armed by an access only: an agent nobody calls never wakes for its audit.
    this.#timer ??= setTimeout(() => this.flush(), this.#flushMs)
  }

  /** Writes one line per group and starts afresh. */
  flush (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    const groups = this.#groups
    if (groups.size === 0) return
    this.#groups = new Map()
    this.#latest = new Map()
    for (const { access: a, count, first, last } of groups.values()) {
      const refs = a.secret !== undefined ? this.#refsOf(a.secret) : undefined
      this.#log.info({
        audit: true, api: a.api, caller: a.caller, agent: a.agent, route: a.route, status: a.status,
        ...(a.secret !== undefined ? { secret: a.secret } : {}),
        ...(refs !== undefined ? { refs } : {}),
        ...(a.version !== undefined ? { version: a.version } : {}),
        count, first: isoTime(first), last: isoTime(last),
      }, 'access')
    }
  }
}
