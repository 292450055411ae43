// Runs each attack from issue 9 for a bounded time against a real agent and a
// real webhook started as child processes on 127.0.0.1, and prints one line
// per scenario: the child's peak RSS (VmHWM) and what the attacker got.
// Goals: agent < 100 MiB under 8,000 idle sockets, 20 x 4 MiB unauthenticated
// gRPC calls and 4,000 watchers (past the cap: 503); webhook < 200 MiB under
// 16 concurrent maximum-size bodies (past the cap: 429).
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadProto } from '../agent/grpc-server.js'
import { makeCert, admissionReview } from './admission-fixtures.js'
import { AGENT_NODE_OPTIONS, procMemoryKb } from './agent-process.js'

const MI = 1024 * 1024
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const work = mkdtempSync(join(tmpdir(), 'sidekey-abuse-'))
const children: ChildProcess[] = []
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); rmSync(work, { recursive: true, force: true }) })

const mib = (b: number): string => `${(b / MI).toFixed(1)} MiB`

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)) })
  })
}

async function waitHttp (url: string, opts: { https?: boolean } = {}): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = (opts.https === true ? httpsRequest : httpRequest)(url, { rejectUnauthorized: false }, (res) => { res.resume(); resolve(res.statusCode === 200) })
      req.on('error', () => resolve(false))
      req.end()
    })
    if (ok) return
    await sleep(50)
  }
  throw new Error(`${url} did not come up`)
}

interface Agent { pid: number, http: number, grpc: number, token: string, proc: ChildProcess }

async function startAgent (name: string): Promise<Agent> {
  const http = await freePort()
  const grpcPort = await freePort()
  const dir = join(work, name)
  const cfg = join(work, `${name}.json`)
  writeFileSync(cfg, JSON.stringify({
    dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http, grpc: grpcPort }, logLevel: 'error',
    secrets: [{ name: 'k', ref: 'env:SIDEKEY_ABUSE_VALUE' }],
  }))
  const proc = spawn(process.execPath, ['dist/bin/sidekey.js', 'agent', '--config', cfg], { env: { ...process.env, NODE_OPTIONS: AGENT_NODE_OPTIONS, SIDEKEY_ABUSE_VALUE: 'abuse-bench-value' }, stdio: 'ignore' })
  children.push(proc)
  await waitHttp(`http://127.0.0.1:${http}/ready`)
  return { pid: proc.pid as number, http, grpc: grpcPort, token: readFileSync(join(dir, 'token'), 'utf8').trim(), proc }
}

async function stop (p: ChildProcess): Promise<void> {
  p.kill('SIGKILL')
  await new Promise((resolve) => p.once('exit', resolve))
}

function line (scenario: string, pid: number, goalMiB: number, got: string): void {
  const peak = procMemoryKb(pid).hwm * 1024
  process.stdout.write(`${scenario.padEnd(42)} peak RSS ${mib(peak).padStart(10)} (goal < ${goalMiB} MiB: ${peak < goalMiB * MI ? 'met' : 'NOT met'})  attacker got: ${got}\n`)
}

async function idleSockets (n: number): Promise<void> {
  const a = await startAgent('idle')
  const socks: Socket[] = []
  let refused = 0
  let closedByServer = 0
  for (let i = 0; i < n; i++) {
    const s = connect(a.http, '127.0.0.1')
    s.on('error', () => { refused++ })
    s.on('close', () => { closedByServer++ })
    socks.push(s)
    if (i % 500 === 499) await sleep(20)
  }
  await sleep(8000) // held for longer than headersTimeout
  const open = socks.filter((s) => !s.destroyed && s.readyState === 'open').length
  line(`agent: ${n} idle token-less sockets`, a.pid, 100, `${open} still open after 8 s, ${closedByServer} closed by the agent (${refused} with an error)`)
  for (const s of socks) s.destroy()
  await stop(a.proc)
}

async function slowloris (n: number): Promise<void> {
  const a = await startAgent('slow')
  const socks: Socket[] = []
  const answers: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const s = connect(a.http, '127.0.0.1', () => s.write('GET /v1/secrets HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a'))
    let got = ''
    s.on('data', (c: Buffer) => { got += c.toString('latin1') })
    s.on('close', () => { const k = /^HTTP\/1\.1 (\d+)/.exec(got)?.[1] ?? 'closed'; answers[k] = (answers[k] ?? 0) + 1 })
    s.on('error', () => {})
    socks.push(s)
  }
  const dripper = setInterval(() => { for (const s of socks) if (!s.destroyed) s.write('a') }, 1000)
  await sleep(10000)
  clearInterval(dripper)
  const open = socks.filter((s) => !s.destroyed).length
  line(`agent: ${n} slowloris sockets (1 byte/s)`, a.pid, 100, `${open} still open after 10 s; answers ${JSON.stringify(answers)}`)
  for (const s of socks) s.destroy()
  await stop(a.proc)
}

async function grpcBig (n: number, bytes: number): Promise<void> {
  const a = await startAgent('grpc')
  const proto = loadProto()
  const codes: Record<string, number> = {}
  const clients = Array.from({ length: n }, () => new proto.sidekey.v1.Secrets(`127.0.0.1:${a.grpc}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 }))
  const name = 'x'.repeat(bytes - 16)
  await Promise.all(clients.map(async (c) => await new Promise<void>((resolve) => {
    c.Get({ name }, { deadline: Date.now() + 20000 }, (err) => {
      const k = err === null ? 'OK' : grpc.status[err.code]
      codes[k] = (codes[k] ?? 0) + 1
      resolve()
    })
  })))
  for (const c of clients) c.close()
  line(`agent: ${n} x ${bytes / MI} MiB unauthenticated gRPC`, a.pid, 100, JSON.stringify(codes))
  await stop(a.proc)
}

async function watchers (n: number): Promise<void> {
  const a = await startAgent('watch')
  const counts: Record<string, number> = {}
  const reqs: Array<{ destroy: () => void }> = []
  const one = async (): Promise<void> => await new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port: a.http, path: '/v1/watch', headers: { 'x-sidekey-token': a.token }, agent: false }, (res) => {
      const k = String(res.statusCode)
      counts[k] = (counts[k] ?? 0) + 1
      if (res.statusCode !== 200) res.resume()
      resolve()
    })
    req.on('error', (err: NodeJS.ErrnoException) => { const k = err.code ?? 'error'; counts[k] = (counts[k] ?? 0) + 1; resolve() })
    req.end()
    reqs.push(req)
  })
  const batch = 500
  for (let i = 0; i < n; i += batch) await Promise.all(Array.from({ length: Math.min(batch, n - i) }, one))
  await sleep(2000)
  line(`agent: ${n} watchers (token)`, a.pid, 100, `status ${JSON.stringify(counts)}`)
  for (const r of reqs) r.destroy()
  await stop(a.proc)
}

async function webhook (n: number, shape: 'tiny-objects' | 'parseable'): Promise<void> {
  const port = await freePort()
  const tls = makeCert(mkdtempSync(join(work, 'tls-')))
  const cfg = join(work, 'injector.json')
  writeFileSync(cfg, JSON.stringify({ image: 'ghcr.io/sidekey/sidekey:0.1.0' }))
  const proc = spawn(process.execPath, ['dist/bin/sidekey.js', 'injector', '--config', cfg, '--tls-cert', tls.cert, '--tls-key', tls.key, '--host', '127.0.0.1', '--port', String(port)], { stdio: 'ignore' })
  children.push(proc)
  await waitHttp(`https://127.0.0.1:${port}/healthz`, { https: true })
  const max = MI // the default --max-body-bytes
  let body: Buffer
  if (shape === 'tiny-objects') {
    body = Buffer.from('[' + '{},'.repeat(Math.floor((max - 2) / 3) - 1) + '{}]')
  } else {
    // Just under the container cap, filled with strings up to the byte limit: it is parsed.
    const base = JSON.stringify(admissionReview({ metadata: { name: 'p', labels: { 'sidekey.dev/inject': 'true' }, annotations: { 'sidekey.dev/secret-a': 'k8s:a#k' } }, spec: { containers: [{ name: 'app', image: 'x' }] } }))
    const items = 99_000
    const pad = Math.max(0, Math.floor((max - base.length - items * 9) / items))
    const filler = `[${Array.from({ length: items }, () => `{"a":"${'x'.repeat(pad)}"}`).join(',')}]`
    body = Buffer.from(base.replace('"dryRun":false', `"dryRun":false,"filler":${filler}`)).subarray(0, max)
    if (body.length >= max) body = Buffer.from(base.replace('"dryRun":false', `"dryRun":false,"filler":[${Array.from({ length: items }, () => `{"a":"${'x'.repeat(Math.max(0, pad - 1))}"}`).join(',')}]`))
  }
  const counts: Record<string, number> = {}
  await Promise.all(Array.from({ length: n }, async () => await new Promise<void>((resolve) => {
    const req = httpsRequest(`https://127.0.0.1:${port}/mutate`, { method: 'POST', rejectUnauthorized: false, agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      const k = String(res.statusCode)
      counts[k] = (counts[k] ?? 0) + 1
      res.resume()
      res.on('end', () => resolve())
    })
    req.on('error', (err: NodeJS.ErrnoException) => { const k = err.code ?? 'error'; counts[k] = (counts[k] ?? 0) + 1; resolve() })
    req.end(body)
  })))
  line(`webhook: ${n} x ${mib(body.length)} bodies (${shape})`, proc.pid as number, 200, `status ${JSON.stringify(counts)}`)
  await stop(proc)
}

process.stdout.write(`# bench/abuse: ${new Date().toISOString()}, node ${process.version}; peak RSS is the child's VmHWM (start-up included); agent NODE_OPTIONS="${AGENT_NODE_OPTIONS}"\n`)
// `node dist/bench/abuse.js [scenario ...]` runs some: idle slowloris grpc watchers webhook
const only = new Set(process.argv.slice(2))
const run = (name: string): boolean => only.size === 0 || only.has(name)
if (run('idle')) await idleSockets(8000)
if (run('slowloris')) await slowloris(1000)
if (run('grpc')) await grpcBig(20, 4 * MI)
if (run('watchers')) await watchers(4000)
if (run('webhook')) await webhook(16, 'tiny-objects')
if (run('webhook')) await webhook(16, 'parseable')
process.exit(0)
