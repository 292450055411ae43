import { SidekeyError } from './errors.js'

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

/** Parses `500ms`, `30s`, `5m`, `1h` (Go-style, one unit) into milliseconds. */
export function parseDuration (value: unknown, field = 'duration'): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value * 1000
  const m = typeof value === 'string' ? RE.exec(value.trim()) : null
  if (m === null) {
    throw new SidekeyError('SIDEKEY_E_DURATION', `${field}: "${String(value)}" is not a duration; write it like 500ms, 30s, 5m or 1h`, { field })
  }
  return Math.round(Number(m[1]) * (UNITS[m[2] as string] as number))
}
