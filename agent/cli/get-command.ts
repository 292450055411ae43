// `sidekey get NAME [--wait 30s]` and `sidekey get --ready`: a client for the
// local endpoint, reading SIDEKEY_ADDR and SIDEKEY_TOKEN_FILE.
import { Command } from 'commander'
import { readFileSync } from 'node:fs'
import { ERRORS, SidekeyError, type ErrorCode } from '../../core/errors.js'
import { QUIET_USAGE_ERRORS, reportCliError } from '../../core/error-answers.js'
import { HttpClient, HttpTransportError, type HttpAnswer } from '../http-client.js'

function env (name: string, fallback?: string): string {
  const v = process.env[name] ?? fallback
  if (v === undefined || v === '') throw new SidekeyError('SIDEKEY_E_CLIENT', `${name} is not set; the injector sets it in app containers, or export it (e.g. ${name === 'SIDEKEY_ADDR' ? 'http://127.0.0.1:8099' : '/var/run/secrets/sidekey/.sidekey-token'})`)
  return v
}

/** `127.0.0.1:8099` works as well as `http://127.0.0.1:8099`; anything else names the variable. */
export function normalizeAddr (raw: string): string {
  const v = raw.trim().replace(/\/+$/, '')
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(v) ? v : `http://${v}`
  let u: URL
  try {
    u = new URL(withScheme)
  } catch {
    throw new SidekeyError('SIDEKEY_E_CLIENT', 'SIDEKEY_ADDR is not an address; set it like http://127.0.0.1:8099')
  }
  if (u.protocol !== 'http:' || u.pathname !== '/' || u.search !== '' || u.username !== '') {
    throw new SidekeyError('SIDEKEY_E_CLIENT', `SIDEKEY_ADDR must be http://<host>:<port> with no path (the agent serves plain HTTP on 127.0.0.1); got scheme ${u.protocol.replace(/:$/, '')}${u.pathname !== '/' ? ' and a path' : ''}`)
  }
  return `http://${u.host}`
}

const MAX_REASONS = 10
const MAX_REASON_CHARS = 300

/** `missing: <name> (<CODE>: <message>)`, one line per secret, bounded (events hold about 1 KiB). */
export function readyReasons (body: string): string {
  let doc: { missing?: unknown, errors?: unknown, missingCount?: unknown }
  try {
    doc = JSON.parse(body) as typeof doc
  } catch {
    return 'not ready (the agent answered something that is not JSON)\n'
  }
  const missing = Array.isArray(doc.missing) ? doc.missing.filter((n): n is string => typeof n === 'string') : []
  const errors = (doc.errors !== null && typeof doc.errors === 'object' ? doc.errors : {}) as Record<string, { code?: unknown, message?: unknown } | undefined>
  if (missing.length === 0 && typeof doc.missingCount === 'number' && doc.missingCount > 0) return `not ready: ${doc.missingCount} required secret(s) missing (the agent names them to a caller with its token)\n`
  if (missing.length === 0) return 'not ready\n'
  const lines = missing.slice(0, MAX_REASONS).map((name) => {
    const e = errors[name]
    if (e === undefined || typeof e.code !== 'string') return `missing: ${name} (not fetched yet)`
    const msg = typeof e.message === 'string' ? e.message : ''
    return `missing: ${name} (${e.code}: ${msg.length > MAX_REASON_CHARS ? msg.slice(0, MAX_REASON_CHARS) + '…' : msg})`
  })
  if (missing.length > MAX_REASONS) lines.push(`... and ${missing.length - MAX_REASONS} more`)
  return lines.join('\n') + '\n'
}

/** The local token for the probe, when this container can read it: SIDEKEY_TOKEN_FILE, else the agent config's apiTokenFile (or its old name tokenFile). */
function probeToken (): Record<string, string> {
  let file = process.env.SIDEKEY_TOKEN_FILE
  if (file === undefined && process.env.SIDEKEY_CONFIG !== undefined) {
    try {
      const c = JSON.parse(process.env.SIDEKEY_CONFIG) as { apiTokenFile?: string, tokenFile?: string }
      file = c.apiTokenFile ?? c.tokenFile
    } catch { /* the agent reports a bad config itself */ }
  }
  if (file === undefined) return {}
  try { return { 'x-sidekey-token': readFileSync(file, 'utf8').trim() } } catch { return {} }
}

export async function main (argv: string[]): Promise<number> {
  const cmd = new Command('sidekey get')
    .argument('[name]', 'secret name')
    .option('--wait [duration]', 'long-poll: wait for the secret to exist or change (default 30s)')
    .option('--if-none-match <version>', 'with --wait: wait for a version other than this one')
    .option('--ready', 'exit 0 iff the agent is ready (for probes)')
    .option('--list', 'list names and versions')
    .exitOverride()
    .configureOutput(QUIET_USAGE_ERRORS)
  cmd.parse(argv, { from: 'user' })
  const o = cmd.opts<{ wait?: string | boolean, ifNoneMatch?: string, ready?: boolean, list?: boolean }>()
  const addr = normalizeAddr(env('SIDEKEY_ADDR', o.ready === true ? 'http://127.0.0.1:8099' : undefined))
  // node:http, one connection (the CLI makes one or two calls), closed before returning.
  // A long-poll's answer may take the whole --wait (the agent caps it at 300 s).
  const client = new HttpClient({ connections: 1, connectTimeoutMs: 5_000, headersTimeoutMs: o.wait !== undefined ? 330_000 : 10_000, bodyTimeoutMs: 10_000 })
  try {
    return await run(o, cmd.args[0], async (path, headers = {}) => {
      try {
        return await client.request({ method: 'GET', url: addr + path, headers })
      } catch (err) {
        const code = err instanceof HttpTransportError ? err.code : 'error'
        const why = err instanceof HttpTransportError && err.timedOut ? `${code}: no answer in time` : code
        throw new SidekeyError('SIDEKEY_E_CLIENT', `cannot reach the agent at ${addr} (${why}); is the sidekey-agent container running?`)
      }
    })
  } finally {
    await client.destroy()
  }
}

type Call = (path: string, headers?: Record<string, string>) => Promise<HttpAnswer>

/** The agent's error answer as the agent's own error: its code when the catalogue has it, else SIDEKEY_E_CLIENT. */
export function agentError (r: HttpAnswer): SidekeyError {
  let e: { code?: unknown, message?: unknown } | undefined
  try { e = (JSON.parse(r.body.toString('utf8')) as { error?: typeof e }).error } catch { /* not JSON */ }
  if (typeof e?.code === 'string' && Object.hasOwn(ERRORS, e.code)) return new SidekeyError(e.code as ErrorCode, typeof e.message === 'string' ? e.message : '')
  return new SidekeyError('SIDEKEY_E_CLIENT', `the agent answered HTTP ${r.status} without a Sidekey error; is SIDEKEY_ADDR the agent?`)
}

async function run (o: { wait?: string | boolean, ifNoneMatch?: string, ready?: boolean, list?: boolean }, name: string | undefined, call: Call): Promise<number> {
  const text = (r: HttpAnswer): string => r.body.toString('utf8')
  const header = (r: HttpAnswer, h: string): string => { const v = r.headers[h]; return Array.isArray(v) ? v.join(', ') : v ?? '' }
  if (o.ready === true) {
    // With the token /ready names what is missing and why (the probe's output); without it, a count.
    const res = await call('/ready', probeToken())
    if (res.status === 200) return 0
    // The kubelet copies a failing probe's output into the pod's events: say why.
    process.stdout.write(readyReasons(text(res)))
    return 1
  }
  const tokenFile = env('SIDEKEY_TOKEN_FILE')
  let token: string
  try {
    token = readFileSync(tokenFile, 'utf8').trim()
  } catch (err) {
    throw new SidekeyError('SIDEKEY_E_CLIENT', `cannot read SIDEKEY_TOKEN_FILE ${tokenFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}); the injector mounts it in app containers`)
  }
  const auth = { 'x-sidekey-token': token }
  if (o.list === true || name === undefined) {
    const res = await call('/v1/secrets', auth)
    if (res.status >= 300) return reportCliError(agentError(res))
    process.stdout.write(text(res) + '\n')
    return 0
  }
  const wait = o.wait === undefined ? '' : `?wait=${o.wait === true ? '30s' : o.wait}`
  const res = await call(`/v1/secrets/${encodeURIComponent(name)}${wait}`, o.ifNoneMatch !== undefined ? { ...auth, 'if-none-match': `"${o.ifNoneMatch}"` } : auth)
  if (res.status === 304) {
    process.stderr.write(`${name}: unchanged (version ${header(res, 'x-sidekey-version')})\n`)
    return 3
  }
  const body = res.body
  if (res.status >= 300) return reportCliError(agentError(res))
  process.stdout.write(body)
  return 0
}
