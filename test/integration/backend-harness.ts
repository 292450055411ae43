// Shared by the vault/aws/azure/k8s integration tests: starts a real agent on
// a config, and observes it the way an app does (files on disk, GET
// /v1/secrets/:name, gRPC Watch, onChange POSTs, /metrics).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { isSidekeyError } from '../../core/errors.js'
import { startTestAgent, eventually, type EventuallyOptions, type TestAgent } from '../helpers/agent.js'

export { eventually }

export interface Tap {
  teardown (fn: () => unknown): void
}

/**
 * The integration tests' polling: a 30 s give-up bound (a timeout is a
 * failure, not a timing assertion), every 50 ms, and a throw (a backend still
 * down) counts as "not yet", named in the timeout message.
 */
export const WAIT: EventuallyOptions = { ms: 30_000, everyMs: 50, retryErrors: true }

/** Wraps a provider factory so that every provider it makes is closed at teardown. */
export function trackProviders<P extends { close?: () => unknown }, A extends unknown[]> (t: Tap, create: (...args: A) => P): (...args: A) => P {
  const made: P[] = []
  t.teardown(async () => { for (const p of made) await p.close?.() })
  return (...args: A): P => {
    const p = create(...args)
    made.push(p)
    return p
  }
}

/**
 * code(p) awaits p and returns the SidekeyError code ('no error' if it
 * resolves; any other error is rethrown); every message and details seen is
 * kept in errors, to check later that none carries a value.
 */
export function errorCollector (): { code: (p: Promise<unknown>) => Promise<string>, errors: string[] } {
  const errors: string[] = []
  async function code (p: Promise<unknown>): Promise<string> {
    try {
      await p
      return 'no error'
    } catch (err) {
      if (!isSidekeyError(err)) throw err
      errors.push(err.message, JSON.stringify(err.details))
      return err.code
    }
  }
  return { code, errors }
}

/** A real agent (startTestAgent, logs captured unredacted) plus what an app observes of it. */
export interface Harness extends TestAgent {
  /** onChange POSTs received (bodies as text). */
  readonly notifications: string[]
  file (name: string): string | undefined
  /** gRPC Watch events (name, version, kind) collected since start. */
  readonly events: Array<{ name: string, version: string, kind: string }>
  close (): Promise<void>
}

export interface HarnessOptions {
  readonly stores: Record<string, unknown>
  readonly secrets: Array<Record<string, unknown>>
  readonly refresh?: string
  readonly backoff?: { initial: string, max: string }
}

export async function startHarness (t: Test, o: HarnessOptions): Promise<Harness> {
  const root = mkdtempSync(join(tmpdir(), 'sidekey-it-'))
  const notifications: string[] = []
  const hook: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { notifications.push(body); res.end('ok') })
  })
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
  const hookPort = (hook.address() as AddressInfo).port
  const a = await startTestAgent(t, {
    refresh: o.refresh ?? '30s',
    jitter: 0,
    backoff: o.backoff ?? { initial: '200ms', max: '1s' },
    onChange: [`http:POST http://127.0.0.1:${hookPort}/reload`],
    stores: o.stores,
    secrets: o.secrets,
  }, { root, redactLogs: false })

  const events: Harness['events'] = []
  const stream = a.grpc().Watch({ names: [] }, a.metadata())
  stream.on('data', (e: { name: string, version: string, kind: string }) => { events.push({ name: e.name, version: e.version, kind: e.kind }) })
  stream.on('error', () => { /* cancelled at close */ })

  let closed = false
  const h: Harness = {
    ...a,
    notifications,
    events,
    file (name) {
      try { return readFileSync(join(a.dir, name), 'utf8') } catch { return undefined }
    },
    async close () {
      if (closed) return
      closed = true
      stream.cancel()
      await a.agent.close()
      await new Promise<void>((resolve) => hook.close(() => resolve()))
      rmSync(root, { recursive: true, force: true })
    },
  }
  t.teardown(async () => { await h.close() })
  return h
}

/** The value of a Prometheus counter line with all the given labels, summed over other labels. */
export function metricValue (text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const m = /^([a-zA-Z_:]+)(\{([^}]*)\})?\s+([0-9.eE+-]+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const lbl = m[3] ?? ''
    if (Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`))) sum += Number(m[4])
  }
  return sum
}

// ---- real servers ------------------------------------------------------------------------------

export interface ServerInfo { name: string, pid: number, port: number, log: string, dir: string, [k: string]: unknown }

const REPO = join(import.meta.dirname, '..', '..', '..')

/**
 * Starts a private instance of a testenv server (scripts/testenv run) for one
 * test file: these tests switch server-wide settings (moto's IAM enforcement,
 * OpenBao's audit device) and cut connections, which would disturb other
 * files sharing a server. Fails with the testenv message when it cannot start.
 */
export async function startServer (t: Tap, name: 'openbao' | 'kube' | 'moto' | 'lowkey', env: Record<string, string> = {}): Promise<ServerInfo> {
  const { spawn, execFileSync } = await import('node:child_process')
  const dir = mkdtempSync(join(tmpdir(), `sidekey-${name}-`))
  const script = join(REPO, 'scripts', 'testenv')
  try {
    execFileSync(script, ['install', name], { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    throw new Error(`${name} is not installed and scripts/testenv install ${name} failed: ${String((err as { stderr?: Buffer }).stderr ?? err)}`)
  }
  const child = spawn(script, ['run', name, dir, String(process.pid)], { stdio: ['ignore', 'ignore', 'ignore'], detached: true, env: { ...process.env, ...env } })
  let exited: number | null = null
  child.on('exit', (code) => { exited = code ?? -1 })
  t.teardown(async () => {
    try { process.kill(-(child.pid as number), 'SIGTERM') } catch { /* gone */ }
    await new Promise((resolve) => setTimeout(resolve, 300))
    try { process.kill(-(child.pid as number), 'SIGKILL') } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true })
  })
  await eventually(() => {
    if (exited !== null) throw new Error(`${name} exited with ${String(exited)}; see ${dir}`)
    try {
      execFileSync(script, ['ready', name, dir], { stdio: 'ignore' })
      return true
    } catch { return false }
  }, `${name} to be ready (logs in ${dir})`, { ...WAIT, ms: 180_000, everyMs: 200 })
  const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as ServerInfo
  return { ...info, dir, pid: child.pid as number }
}

/** A TCP relay in front of a real server, so a test can take the server off the network and back. */
export interface Relay {
  port: number
  cut (): void
  restore (): void
  /** A peer gone silent: open connections stop forwarding (not closed), new ones are held unanswered. */
  freeze (): void
  /** Ends freeze(): the held connections are closed (the silent peer finally goes away), new ones forwarded again. */
  thaw (): void
  close (): Promise<void>
  /** Client connections open through it now. */
  connections (): number
}

export async function startRelay (t: Tap, targetPort: number): Promise<Relay> {
  const net = await import('node:net')
  const sockets = new Set<import('node:net').Socket>()
  const clients = new Set<import('node:net').Socket>()
  const pairs = new Set<[import('node:net').Socket, import('node:net').Socket]>()
  let open = true
  let frozen = false
  const server = net.createServer((c) => {
    if (!open) { c.destroy(); return }
    if (frozen) {
      sockets.add(c)
      c.on('error', () => {}); c.on('close', () => { sockets.delete(c) })
      return
    }
    const u = net.connect(targetPort, '127.0.0.1')
    sockets.add(c); sockets.add(u); clients.add(c)
    const pair: [import('node:net').Socket, import('node:net').Socket] = [c, u]
    pairs.add(pair)
    c.on('close', () => { pairs.delete(pair) })
    c.pipe(u); u.pipe(c)
    const end = (): void => { c.destroy(); u.destroy(); sockets.delete(c); sockets.delete(u); clients.delete(c) }
    c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const relay: Relay = {
    port,
    connections: () => clients.size,
    cut () {
      open = false
      for (const s of sockets) s.destroy()
      sockets.clear()
      // Refuse new connections outright (ECONNREFUSED), as a stopped server does.
      server.close()
    },
    restore () {
      open = true
      if (!server.listening) server.listen(port, '127.0.0.1')
    },
    freeze () {
      frozen = true
      for (const [c, u] of pairs) { c.unpipe(u); u.unpipe(c); c.pause(); u.pause() }
    },
    thaw () {
      frozen = false
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    async close () {
      for (const s of sockets) s.destroy()
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  t.teardown(async () => { await relay.close() })
  return relay
}

export interface AuditedOpenBao { addr: string, port: number, rootToken: string, auditLog: string, dir: string, /** With tls: the generated CA (PEM file). */ caFile?: string }

/**
 * A private OpenBao dev server with a file audit device. OpenBao 2.x refuses
 * to enable audit devices through the API (declarative config only), and
 * scripts/testenv starts plain `-dev`, so this starts the binary testenv
 * installed with `-dev -config=<audit stanza>`. Installation stays testenv's.
 */
export async function startAuditedOpenBao (t: Tap, opts: { tls?: boolean } = {}): Promise<AuditedOpenBao> {
  const { spawn, execFileSync } = await import('node:child_process')
  const { writeFileSync, openSync, closeSync } = await import('node:fs')
  const net = await import('node:net')
  const script = join(REPO, 'scripts', 'testenv')
  try {
    execFileSync(script, ['install', 'openbao'], { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    throw new Error(`openbao is not installed and scripts/testenv install openbao failed: ${String((err as { stderr?: Buffer }).stderr ?? err)}`)
  }
  const line = execFileSync(script, ['versions'], { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('openbao '))
  const installDir = line?.split(' ')[2]
  if (installDir === undefined) throw new Error('scripts/testenv versions does not list openbao')
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-openbao-'))
  const auditLog = join(dir, 'audit.log')
  writeFileSync(join(dir, 'audit.hcl'), `audit "file" "sidekey" {\n  options {\n    file_path = "${auditLog}"\n  }\n}\n`)
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)) })
  })
  const rootToken = 'sidekey-root'
  const out = openSync(join(dir, 'server.log'), 'a')
  const tlsArgs = opts.tls === true ? ['-dev-tls', `-dev-tls-cert-dir=${dir}`] : []
  const child = spawn(join(installDir, 'bin', 'bao'), ['server', '-dev', ...tlsArgs, `-dev-root-token-id=${rootToken}`, `-dev-listen-address=127.0.0.1:${port}`, '-dev-no-store-token', `-config=${join(dir, 'audit.hcl')}`], { cwd: dir, detached: true, stdio: ['ignore', out, out] })
  closeSync(out)
  let exited: string | undefined
  child.on('exit', (code, sig) => { exited = `exit ${String(code ?? sig)}` })
  child.unref()
  t.teardown(async () => {
    try { process.kill(-(child.pid as number), 'SIGTERM') } catch { /* gone */ }
    await new Promise((resolve) => setTimeout(resolve, 300))
    try { process.kill(-(child.pid as number), 'SIGKILL') } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true })
  })
  const addr = `${opts.tls === true ? 'https' : 'http'}://127.0.0.1:${port}`
  const { request } = await import('node:https')
  const healthy = async (): Promise<boolean> => {
    if (opts.tls !== true) return (await fetch(`${addr}/v1/sys/health`)).status === 200
    return await new Promise<boolean>((resolve) => {
      const req = request(`${addr}/v1/sys/health`, { rejectUnauthorized: false }, (res) => { res.resume(); resolve(res.statusCode === 200) })
      req.on('error', () => resolve(false))
      req.end()
    })
  }
  await eventually(async () => {
    if (exited !== undefined) throw new Error(`openbao ${exited}: ${readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000)}`)
    try { return await healthy() } catch { return false }
  }, `openbao on ${addr} (log ${join(dir, 'server.log')})`, { ...WAIT, ms: 60_000, everyMs: 100 })
  return { addr, port, rootToken, auditLog, dir, ...(opts.tls === true ? { caFile: join(dir, 'vault-ca.pem') } : {}) }
}

/** Request entries of an OpenBao file audit log: operation and path. */
export function auditRequests (file: string): Array<{ op: string, path: string }> {
  let text = ''
  try { text = readFileSync(file, 'utf8') } catch { return [] }
  return text.split('\n').filter(Boolean).flatMap((l) => {
    try {
      const e = JSON.parse(l) as { type?: string, request?: { operation?: string, path?: string } }
      return e.type === 'request' ? [{ op: e.request?.operation ?? '', path: e.request?.path ?? '' }] : []
    } catch { return [] }
  })
}

/**
 * The outage scenario every backend must pass: with secret `k` already served
 * as `before`, take the server off the network, check /metrics counts
 * SIDEKEY_E_UNAVAILABLE and the last good value is still served (HTTP and
 * file), write `after` in the server meanwhile, restore, and check the agent
 * recovers to it without a restart.
 */
export async function outageRoundTrip (t: Test, h: Harness, o: { store: string, relay: Relay, before: string, after: string, writeDuringOutage: () => Promise<unknown> }): Promise<void> {
  o.relay.cut()
  try {
    await eventually(async () => metricValue(await h.metrics(), 'sidekey_fetch_errors_total', { store: o.store, code: 'SIDEKEY_E_UNAVAILABLE' }) >= 2, 'errors in /metrics', WAIT)
    const r = await h.get('k')
    t.equal(r.status, 200, 'still served during the outage')
    t.equal(r.body, o.before, 'the last good value')
    t.equal(h.file('k'), o.before, 'the file keeps the last good value')
    await o.writeDuringOutage()
  } finally {
    o.relay.restore()
  }
  await eventually(() => h.file('k') === o.after, 'recovery with the value written during the outage', WAIT)
  t.equal((await h.get('k')).body, o.after)
  t.match(h.logs.join('\n'), /backend recovered/, 'recovery is logged')
}
