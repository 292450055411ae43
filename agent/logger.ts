// pino JSON logs. Values never reach a logger by construction (the code logs
// references, names and versions only); the redact paths are a second net for
// fields that could carry one if someone passed a whole object by mistake.
//
// Two destinations on stdout. Operational lines (startup, refresh failures,
// warnings, errors) are written synchronously: in a pod stdout is a pipe, and
// an agent that cannot reach its backend must show why in `kubectl logs` at
// once, and keep those lines through a SIGKILL or an OOM kill. Audit lines
// are written synchronously too: the audit trail (agent/audit-trail.ts)
// already gathers equal accesses into one line with a count and writes its
// lines at most every AUDIT_FLUSH_MS, so there is no per-request write left
// to buffer, and a buffer would hold lines back (a batch's tail past its
// threshold, an error line) until the next access or exit. No timer either:
// an idle agent must not wake every second to write nothing.
import { pino, type Logger, type DestinationStream, type LoggerOptions } from 'pino'
import { isoTime } from '../core/utc-dates.js'

// Top-level and one known nesting only: wildcard paths cost a scan of every
// object on every line, and an audit line is written per request.
export const REDACT_PATHS = [
  'value', 'token', 'password', '*.value', '*.token',
  'headers.authorization', 'headers["x-sidekey-token"]',
]

/** Longest time an access waits for its audit line (the trail's timer). */
export const AUDIT_FLUSH_MS = 1000
function baseOptions (level: string): LoggerOptions {
  return {
    level,
    base: { app: 'sidekey' },
    // pino.stdTimeFunctions.isoTime's string, without toISOString (core/utc-dates.ts).
    timestamp: () => `,"time":"${isoTime(Date.now())}"`,
    formatters: { level: (label: string) => ({ level: label }) },
  }
}

/** The agent's operational logger: every line is written before the call returns. */
export function createLogger (level: string, stream?: DestinationStream): Logger {
  return pino({ ...baseOptions(level), redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, stream ?? pino.destination({ dest: 1, sync: true }))
}

/**
 * The audit logger: written synchronously, like the operational one, but
 * without the redaction pass (about a third of a line's price): audit lines
 * are built from names, references, routes and statuses only. `dest` is
 * stdout unless a test names a file.
 */
export function createAuditLogger (level: string, stream?: DestinationStream, dest: number | string = 1): Logger {
  const out = stream ?? pino.destination({ dest, sync: true })
  return pino({ ...baseOptions(level), base: { app: 'sidekey', component: 'audit' } }, out)
}

export type { Logger }
