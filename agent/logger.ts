// pino JSON logs. Values never reach a logger by construction (the code logs
// references, names and versions only); the redact paths are a second net for
// fields that could carry one if someone passed a whole object by mistake.
import { pino, type Logger, type DestinationStream } from 'pino'

export const REDACT_PATHS = [
  'value', '*.value', 'token', '*.token', 'password', '*.password', 'headers.authorization', 'headers["x-sidekey-token"]',
  'req.headers.authorization', 'req.headers["x-sidekey-token"]',
]

export function createLogger (level: string, stream?: DestinationStream): Logger {
  const opts = {
    level,
    base: { app: 'sidekey' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  }
  return stream === undefined ? pino(opts) : pino(opts, stream)
}

export type { Logger }
