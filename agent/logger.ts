// pino JSON logs. Values never reach a logger by construction (the code logs
// references, names and versions only); the redact paths are a second net for
// fields that could carry one if someone passed a whole object by mistake.
import { pino, type Logger, type DestinationStream } from 'pino'

// Top-level and one known nesting only: wildcard paths cost a scan of every
// object on every line, and an audit line is written per request.
export const REDACT_PATHS = [
  'value', 'token', 'password', '*.value', '*.token',
  'headers.authorization', 'headers["x-sidekey-token"]',
]

export function createLogger (level: string, stream?: DestinationStream): Logger {
  const opts = {
    level,
    base: { app: 'sidekey' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
  // Buffered, asynchronous writes: an audit line per request must not cost a
  // syscall per request. pino flushes the buffer on exit.
  return pino(opts, stream ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }))
}

export type { Logger }
