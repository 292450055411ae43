// Starts a real agent in a temp dir with its logs captured, and checks at
// teardown that no registered secret value reached a log line, an error
// message or the metrics. Used by unit, integration and e2e tests alike.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import * as grpc from '@grpc/grpc-js'
import { pino } from 'pino'
import type { Test } from 'tap'
import { loadConfig } from '../../core/config/load.js'
import { createLogger } from '../../agent/logger.js'
import { startAgent, type RunningAgent } from '../../agent/agent.js'
import { loadProto } from '../../agent/grpc-server.js'
import type { SecretsClient } from '../../proto/gen/sidekey/v1/Secrets.js'
import type { SecretEvent__Output } from '../../proto/gen/sidekey/v1/SecretEvent.js'

export interface TestAgent {
  readonly agent: RunningAgent
  readonly dir: string
  readonly root: string
  readonly token: string
  readonly logs: string[]
  readonly base: string
  /** Values that must never appear in logs, errors or metrics. */
  readonly values: Set<string>
  get (name: string, headers?: Record<string, string>, query?: string): Promise<{ status: number, body: string, etag: string | null }>
  json (path: string): Promise<unknown>
  metrics (): Promise<string>
  grpc (): SecretsClient
  metadata (): grpc.Metadata
}

/** A TCP port free at the moment (on every interface: the metrics listener binds 0.0.0.0). */
export async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '0.0.0.0', resolve))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

export function tempDir (t: Test, prefix = 'sidekey-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

/** Replaces a file atomically (write, then rename), as a secret-mounting tool does. */
export function replace (file: string, content: string): void {
  writeFileSync(file + '.tmp', content)
  renameSync(file + '.tmp', file)
}

/**
 * A logger that keeps its lines in `logs`. By default it is the agent's own
 * logger (createLogger, with its redact paths); with `redact: false` it is a
 * plain pino logger, so a "value never logged" check also covers fields the
 * redaction would have hidden.
 */
export function captureLogger (logs: string[], level = 'debug', opts: { redact?: boolean } = {}) {
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(line)
      cb()
    },
  })
  if (opts.redact === false) return pino({ level, formatters: { level: (label: string) => ({ level: label }) } }, stream)
  return createLogger(level, stream)
}

/**
 * Throws (failing the test, also from a teardown) if any known value appears
 * in the haystack. Short values are skipped: they would match by accident.
 */
export function assertNoValues (values: Iterable<string>, haystack: string, where: string): void {
  for (const v of values) {
    if (v.length >= 6 && haystack.includes(v)) throw new Error(`a secret value (${v.length} chars) appeared in ${where}`)
  }
}

/**
 * opts.root: use this dir (the caller removes it) instead of a fresh temp dir;
 * opts.values: values that must never appear (checked at teardown);
 * opts.redactLogs: false captures logs without the agent's redact paths (see captureLogger).
 */
export async function startTestAgent (t: Test, input: Record<string, unknown>, opts: { root?: string, values?: Iterable<string>, redactLogs?: boolean } = {}): Promise<TestAgent> {
  const root = opts.root ?? tempDir(t)
  const dir = join(root, 'secrets')
  const config = loadConfig({ dir, apiTokenFile: join(root, 'token'), listen: { http: 0, grpc: 0 }, logLevel: 'debug', ...input })
  const logs: string[] = []
  const values = new Set<string>(opts.values ?? [])
  const agent = await startAgent(config, { logger: captureLogger(logs, 'debug', { redact: opts.redactLogs !== false }), defaultMetrics: false })
  const { readFileSync } = await import('node:fs')
  const token = readFileSync(config.apiTokenFile, 'utf8').trim()
  const base = `http://127.0.0.1:${agent.httpPort}`
  let client: SecretsClient | undefined
  const h: TestAgent = {
    agent, dir, root, token, logs, base, values,
    async get (name, headers = {}, query = '') {
      const res = await fetch(`${base}/v1/secrets/${encodeURIComponent(name)}${query}`, { headers: { 'x-sidekey-token': token, ...headers } })
      return { status: res.status, body: await res.text(), etag: res.headers.get('etag') }
    },
    async json (path) {
      const res = await fetch(base + path, { headers: { 'x-sidekey-token': token } })
      return await res.json()
    },
    async metrics () {
      return await (await fetch(`${base}/metrics`, { headers: { 'x-sidekey-token': token } })).text()
    },
    grpc () {
      if (client === undefined) {
        const proto = loadProto()
        client = new proto.sidekey.v1.Secrets(`127.0.0.1:${agent.grpcPort ?? 0}`, grpc.credentials.createInsecure())
      }
      return client
    },
    metadata () {
      const md = new grpc.Metadata()
      md.set('x-sidekey-token', token)
      return md
    },
  }
  t.teardown(async () => {
    const metricsText = await h.metrics().catch(() => '')
    client?.close()
    await agent.close()
    assertNoValues(values, logs.join('\n'), 'log lines')
    assertNoValues(values, metricsText, 'metrics')
    assertNoValues(values, JSON.stringify(agent.board.status()), 'status and error messages')
  })
  return h
}

/** Collects gRPC Watch events until `until` returns true. */
export async function watchUntil (h: TestAgent, names: string[], until: (events: SecretEvent__Output[]) => boolean, ms = 15000): Promise<SecretEvent__Output[]> {
  const events: SecretEvent__Output[] = []
  const call = h.grpc().Watch({ names }, h.metadata())
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { call.cancel(); reject(new Error(`watch: condition not met in ${ms} ms; got ${JSON.stringify(events)}`)) }, ms)
    call.on('data', (e: SecretEvent__Output) => {
      events.push(e)
      if (until(events)) {
        clearTimeout(timer)
        call.cancel()
        resolve(events)
      }
    })
    call.on('error', (err: grpc.ServiceError) => { if (err.code !== grpc.status.CANCELLED) { clearTimeout(timer); reject(err) } })
  })
}

export interface EventuallyOptions {
  /** Give-up bound in ms (default 15000). */
  readonly ms?: number
  /** Poll interval in ms (default 25). */
  readonly everyMs?: number
  /**
   * A throw from fn counts as "not yet" and the timeout message names the
   * last error (default false: a throw fails at once).
   */
  readonly retryErrors?: boolean
}

/**
 * Polls until fn returns a value other than undefined/false (no wall-clock
 * assertion: only a give-up bound). The third argument is the bound in ms, or
 * options.
 */
export async function eventually<T> (fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, opts: number | EventuallyOptions = {}): Promise<T> {
  const { ms = 15000, everyMs = 25, retryErrors = false } = typeof opts === 'number' ? { ms: opts } : opts
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      if (!retryErrors) throw err
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last !== undefined ? ` (last error: ${(last as Error).message})` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
