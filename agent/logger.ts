// pino JSON logs. Values never reach a logger by construction (the code logs
// references, names and versions only); the redact paths are a second net for
// fields that could carry one if someone passed a whole object by mistake.
//
// Two destinations on stdout. Operational lines (startup, refresh failures,
// warnings, errors) are written synchronously: in a pod stdout is a pipe, and
// an agent that cannot reach its backend must show why in `kubectl logs` at
// once, and keep those lines through a SIGKILL or an OOM kill. Audit lines (one
// per group of equal accesses, agent/audit-trail.ts) go through a buffered
// sonic-boom destination: the trail writes its lines at most every
// AUDIT_FLUSH_MS and then flushes the destination, and pino flushes it on exit
// (its on-exit flush for asynchronous destinations). No periodic flush: an
// idle agent must not wake every second to write nothing.
import { pino, type Logger, type DestinationStream, type LoggerOptions } from 'pino'

// Top-level and one known nesting only: wildcard paths cost a scan of every
// object on every line, and an audit line is written per request.
export const REDACT_PATHS = [
  'value', 'token', 'password', '*.value', '*.token',
  'headers.authorization', 'headers["x-sidekey-token"]',
]

/** Longest time an access waits for its audit line (the trail's timer). */
export const AUDIT_FLUSH_MS = 1000
/** Audit bytes gathered before a write, so a burst of requests costs few syscalls. */
export const AUDIT_BUFFER_BYTES = 4096

function baseOptions (level: string): LoggerOptions {
  return {
    level,
    base: { app: 'sidekey' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
}

/** The agent's operational logger: every line is written before the call returns. */
export function createLogger (level: string, stream?: DestinationStream): Logger {
  return pino({ ...baseOptions(level), redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, stream ?? pino.destination({ dest: 1, sync: true }))
}

/**
 * The audit logger: buffered, flushed by the audit trail after each batch
 * (at most every AUDIT_FLUSH_MS) and on exit; `dest` is stdout unless a test
 * names a file. Audit lines are built from names, references, routes and statuses
 * only, so they skip the redaction pass (about a third of a line's price).
 */
export function createAuditLogger (level: string, stream?: DestinationStream, dest: number | string = 1): Logger {
  const out = stream ?? pino.destination({ dest, sync: false, minLength: AUDIT_BUFFER_BYTES })
  return pino({ ...baseOptions(level), base: { app: 'sidekey', component: 'audit' } }, out)
}

export type { Logger }
