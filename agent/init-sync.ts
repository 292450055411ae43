// init-only (Jobs, CronJobs): wait for every required secret, but not
// forever. A Job whose reference is wrong must fail with the reason, not
// retry until someone notices (with concurrencyPolicy: Forbid a hung run
// silently skips every later one). Errors that a retry cannot fix fail after
// PERMANENT_ATTEMPTS tries (a Secret created together with the Job still
// gets a few seconds); anything else fails at the deadline.
import { writeFileSync } from 'node:fs'
import { SidekeyError, type ErrorCode } from '../core/errors.js'
import type { StatusBoard } from './status-board.js'

/** Codes a retry does not fix: the reference, the permission or the data is wrong. */
export const PERMANENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SIDEKEY_E_NOT_FOUND', 'SIDEKEY_E_KEY_NOT_FOUND', 'SIDEKEY_E_DENIED', 'SIDEKEY_E_AUTH',
  'SIDEKEY_E_FORMAT', 'SIDEKEY_E_VALUE_TOO_LARGE', 'SIDEKEY_E_REF_SYNTAX', 'SIDEKEY_E_REF_STORE', 'SIDEKEY_E_CONFIG', 'SIDEKEY_E_TEMPLATE',
])
/** Failed fetches in a row after which a permanent error ends the wait (backoff 1s, 2s: about 3 s). */
export const PERMANENT_ATTEMPTS = 3
/** The kubelet keeps at most 4096 bytes of a termination message. */
export const TERMINATION_MESSAGE_MAX = 4096
export const DEFAULT_TERMINATION_MESSAGE_PATH = '/dev/termination-log'

function reasons (board: StatusBoard): string {
  return board.missingRequired().slice(0, 10).map((name) => {
    const e = board.lastError(name)
    return e === undefined ? `${name} (not fetched yet)` : `${name} (${e.error.code}: ${e.error.message})`
  }).join('; ')
}

/** The error that ends the wait now, or undefined to keep waiting. */
export function permanentFailure (board: StatusBoard): SidekeyError | undefined {
  for (const name of board.missingRequired()) {
    const e = board.lastError(name)
    if (e === undefined || !PERMANENT_CODES.has(e.error.code)) continue
    if (e.attempts === 0 || e.attempts >= PERMANENT_ATTEMPTS) {
      return new SidekeyError(e.error.code, `init-only: secret "${name}" cannot be fetched: ${e.error.message}`, { secret: name })
    }
  }
  return undefined
}

/**
 * Resolves undefined once the board is ready, or with the error that ends
 * the wait: a permanent one, SIDEKEY_E_DEADLINE after `deadlineMs`, or a stop.
 * Waits on the board's events and one deadline timer; nothing polls.
 */
export async function awaitInitialSync (board: StatusBoard, deadlineMs: number, stop: AbortSignal, deadlineName = 'syncDeadline'): Promise<SidekeyError | undefined> {
  /** The outcome now, or null to keep waiting. */
  const outcome = (): SidekeyError | undefined | null => {
    if (board.ready) return undefined
    const permanent = permanentFailure(board)
    if (permanent !== undefined) return permanent
    if (stop.aborted) return new SidekeyError('SIDEKEY_E_DEADLINE', `init-only: stopped before every required secret was fetched; missing ${reasons(board)}`)
    return null
  }
  const now = outcome()
  if (now !== null) return now
  return await new Promise((resolve) => {
    const done = (r: SidekeyError | undefined): void => {
      clearTimeout(timer)
      board.off('update', onUpdate)
      stop.removeEventListener('abort', onUpdate)
      resolve(r)
    }
    const onUpdate = (): void => {
      const r = outcome()
      if (r !== null) done(r)
    }
    const timer = setTimeout(() => {
      done(new SidekeyError('SIDEKEY_E_DEADLINE', `init-only: not every required secret was fetched within ${deadlineName} (${Math.round(deadlineMs / 1000)}s); missing ${reasons(board)}. Fix the reference or the backend, or raise sidekey.dev/sync-deadline`))
    }, deadlineMs)
    board.on('update', onUpdate)
    stop.addEventListener('abort', onUpdate, { once: true })
  })
}

/** Writes `<CODE>: <message>` where the kubelet reads the container's termination message; best effort. */
export function writeTerminationMessage (err: SidekeyError, path: string): boolean {
  let text = `${err.code}: ${err.message}`
  const buf = Buffer.from(text)
  if (buf.length > TERMINATION_MESSAGE_MAX) text = buf.subarray(0, TERMINATION_MESSAGE_MAX - 3).toString('utf8').replace(/\uFFFD$/, '') + '...'
  try {
    writeFileSync(path, text)
    return true
  } catch {
    return false
  }
}
