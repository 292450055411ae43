// How an error leaves Sidekey, one function per surface shared by both
// programs: over HTTP (local API, metrics listener, webhook) and on the
// command line. gRPC (agent/grpc-error.ts) and the AdmissionReview
// (injector/admission.ts) render next to their surfaces. Statuses come from
// the catalogue only; messages are the error's own (never a value).
import type { ServerResponse } from 'node:http'
import { ERRORS, SidekeyError, isSidekeyError, type ErrorCode } from './errors.js'
import { httpDateNow } from './utc-dates.js'

export interface HttpErrorAnswer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | number>>
  readonly body: string
}

/** The HTTP rendering of an error: the catalogue's status and `{"error":{"code","message"}}`. */
export function httpErrorAnswer (code: ErrorCode, message: string, close = false): HttpErrorAnswer {
  const body = JSON.stringify({ error: { code, message } })
  return {
    status: ERRORS[code].status,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', date: httpDateNow(), ...(close ? { connection: 'close' } : {}) },
    body,
  }
}

/** Answers a request with an error (httpErrorAnswer); returns the status sent. */
export function sendHttpError (res: ServerResponse, code: ErrorCode, message: string, close = false): number {
  const a = httpErrorAnswer(code, message, close)
  res.writeHead(a.status, a.headers)
  res.end(a.body)
  return a.status
}

/** The status a peer-compatible route answers for a code: the peer's where the catalogue names one. */
export function peerStatus (code: ErrorCode, peer: 'aws' | 'vault'): number {
  const e: { status: number, peer?: { aws?: number, vault?: number } } = ERRORS[code]
  return e.peer?.[peer] ?? e.status
}

export const EXIT_ERROR = 1
export const EXIT_USAGE = 2

/** For commander (`configureOutput`): its usage errors are thrown (exitOverride) and rendered by reportCliError, not printed by it. */
export const QUIET_USAGE_ERRORS = { outputError: (): void => {} }

/** A commander error: undefined for help or version (exit 0), else SIDEKEY_E_USAGE with commander's message. */
export function usageError (err: { code: string, message: string }, program: string): SidekeyError | undefined {
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return undefined
  return new SidekeyError('SIDEKEY_E_USAGE', `${err.message.replace(/^error: /, '')}; ${program} --help lists the options`)
}

/** What can be said of a foreign error without its message: its name, and a system error's code and path. */
function foreign (err: unknown): string {
  if (!(err instanceof Error)) return typeof err
  const { code, path } = err as NodeJS.ErrnoException
  return `${err.name}${typeof code === 'string' ? ` ${code}` : ''}${typeof path === 'string' ? ` on ${path}` : ''}`
}

/**
 * The command-line rendering of an error: one line on stderr,
 * `<program>: [<document>: ]<CODE>: <message>`, and the exit code (2 for a
 * usage error, 1 otherwise). Anything not a SidekeyError is SIDEKEY_E_INTERNAL,
 * its message kept out (it may echo input).
 */
export function reportCliError (err: unknown, program = 'sidekey', write: (s: string) => void = (s) => { process.stderr.write(s) }): number {
  const e = isSidekeyError(err) ? err : new SidekeyError('SIDEKEY_E_INTERNAL', `unexpected ${foreign(err)}; the message is not shown (it may echo input)`, {}, { cause: err })
  const where = typeof e.details.document === 'string' ? `${e.details.document}: ` : ''
  write(`${program}: ${where}${e.code}: ${e.message}\n`)
  return e.code === 'SIDEKEY_E_USAGE' ? EXIT_USAGE : EXIT_ERROR
}
