// bench/local-endpoint: the local GET (a notebook's one `GET` on localhost for
// a secret) against a bare Node http server answering the same body, in the
// same run (the same request, token header included), interleaved, with the audit trail on (logLevel info; the agent's
// stdout, where audit lines go, is a file as a container log would be).
//
//   node dist/bench/local-endpoint.js [--rounds 5] [--seconds 4] [--rate 1000]
//       [--connections 10] [--node path/to/node] [--before path/to/older/dist/bin/sidekey.js]
//       [--paced c|node]
//
// Each round, in an order that rotates from round to round:
//   - saturation: autocannon, --connections keep-alive connections, --seconds
//     each; req/s, and the server process's CPU (user + system, /proc) per request
//   - paced: --rate requests/s over 8 keep-alive connections, each timed from
//     when it was due to its last byte (autocannon reports whole milliseconds),
//     a wait for a free connection included (no coordinated omission), by
//     bench/paced.c (compiled with cc at the start; --paced node, or no cc:
//     the node:http client this bench used before, which adds ~150 us of its
//     own to every sample)
// Printed: the median over rounds (min-max), the median of the per-round
// ratios sidekey/bare, the load average. Goals (issue 12): paced p99 <= 0.5 ms,
// saturation >= 0.9x bare.
//
// The bare server answers with the same head as Sidekey's 200 (the same
// headers, read from the agent's first answer, and the same keepAliveTimeout),
// so both put the same bytes on the wire and the client parses the same.
//
// Sidekey runs as the injector runs it: the injector's default agentNodeOptions
// as NODE_OPTIONS (or $AGENT_NODE_OPTIONS, to weigh another default), on
// --node (default this process's node; the image's is Node 24). The bare server runs on the same node with no options. --before adds an
// older build to every round (same interleaving).
//
// Accounting: at the end the agent's own request counter for 200 answers on
// /v1/secrets/:name is read, the agent is stopped (SIGTERM), and the counts of
// its audit lines must add up to it: no access is lost, on exit included.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import http from 'node:http'
import autocannon from 'autocannon'
import { AGENT_NODE_OPTIONS, agentEnv, nodeArgs } from './agent-process.js'

const args = process.argv.slice(2)
const opt = (name: string, def: string): string => { const i = args.indexOf(name); return i !== -1 && args[i + 1] !== undefined ? args[i + 1] as string : def }
const ROUNDS = Number(opt('--rounds', '5'))
const SECONDS = Number(opt('--seconds', process.env.BENCH_SECONDS ?? '4'))
const RATE = Number(opt('--rate', '1000'))
const CONNECTIONS = Number(opt('--connections', '10'))
const NODE = opt('--node', process.execPath)
const SIDEKEY = resolve(opt('--sidekey', 'dist/bin/sidekey.js'))
const BEFORE = args.includes('--before') ? resolve(opt('--before', '')) : undefined
const PACED = opt('--paced', 'c')
/** The agent container's NODE_OPTIONS, as the injector sets them by default. */
const BODY = 'sk-bench-' + 'x'.repeat(40)
const CLK_TCK = 100

interface Target { name: string, url: string, headers: Record<string, string>, proc: ChildProcess, out?: string }

async function waitFor (url: string, headers: Record<string, string> = {}): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(url, { headers })
      await r.arrayBuffer()
      if (r.status === 200) return
    } catch { /* not up yet */ }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${url} did not come up`)
}

/** user + system CPU seconds of a process, from /proc. */
function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}

async function saturate (t: Target, seconds: number): Promise<{ rps: number, cpuUsPerReq: number, errors: number, n: number }> {
  const c0 = cpuSeconds(t.proc.pid as number)
  const r = await autocannon({ url: t.url, headers: t.headers, connections: CONNECTIONS, pipelining: 1, duration: seconds })
  const c1 = cpuSeconds(t.proc.pid as number)
  const n = r.requests.total
  return { rps: n / seconds, cpuUsPerReq: (c1 - c0) * 1e6 / Math.max(1, n), errors: r.errors + r.non2xx + r.timeouts, n: r['2xx'] }
}

/** `p99_from_write`: bench/paced.c's p99 timed from each write() rather than from when the request was due (not with --paced node). */
interface PacedResult { p50: number, p99: number, max: number, n: number, rate: number, errors: number, p99_from_write?: number }
/**
 * `rate` requests per second for `seconds` through node:http, each timed from
 * when it was due to the last byte. The schedule is absolute: a late tick sends what is due.
 */
async function pacedNode (t: Target, rate: number, seconds: number): Promise<PacedResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  const samples: number[] = []
  let errors = 0
  // Timed from when the request was due (as bench/paced.c), a wait in the agent's queue included.
  const one = async (dueMs: number): Promise<void> => await new Promise((resolve) => {
    http.get(t.url, { agent, headers: t.headers }, (res) => {
      if (res.statusCode !== 200) errors++
      res.on('data', () => {})
      res.on('end', () => { samples.push((performance.now() - dueMs) * 1000); resolve() })
    }).on('error', () => { errors++; resolve() })
  })
  const inflight: Array<Promise<void>> = []
  const start = performance.now()
  const total = Math.round(rate * seconds)
  let sent = 0
  while (sent < total) {
    const due = Math.min(total, Math.floor((performance.now() - start) * rate / 1000) + 1)
    for (; sent < due; sent++) inflight.push(one(start + sent * 1000 / rate))
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await Promise.all(inflight)
  const elapsed = (performance.now() - start) / 1000
  agent.destroy()
  samples.sort((a, b) => a - b)
  const q = (p: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] as number)
  return { p50: q(0.5), p99: q(0.99), max: Math.round(samples[samples.length - 1] as number), n: samples.length, rate: Math.round(samples.length / elapsed), errors }
}

/** bench/paced.c, compiled into `dir`; undefined without a C compiler. */
function compilePaced (dir: string): string | undefined {
  const src = fileURLToPath(new URL('../../bench/paced.c', import.meta.url))
  const bin = join(dir, 'paced')
  try {
    execFileSync(process.env.CC ?? 'cc', ['-O2', '-o', bin, src], { stdio: ['ignore', 'ignore', 'inherit'] })
    return bin
  } catch (err) {
    console.error(`bench/paced.c did not compile (${(err as Error).message.split('\n')[0] ?? ''}); paced with the node:http client`)
    return undefined
  }
}

async function pacedC (bin: string, t: Target, rate: number, seconds: number): Promise<PacedResult> {
  const u = new URL(t.url)
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(bin, [u.port, String(rate), String(seconds), '8', u.pathname, t.headers['x-sidekey-token'] ?? ''], { stdio: ['ignore', 'pipe', 'inherit'] })
    let s = ''
    p.stdout.on('data', (b: Buffer) => { s += b.toString() })
    p.on('close', (code) => code === 0 ? resolve(s) : reject(new Error(`paced exited with ${code}`)))
  })
  return JSON.parse(out) as PacedResult
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2 }
const spread = (xs: number[], digits = 0): string => `${median(xs).toFixed(digits)} [${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}]`
const rotate = <T>(xs: T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length] as T)
/**
 * Round r's order: a rotation, reversed every other round. A rotation alone
 * keeps one cyclic order (bare, sidekey, before), so each target always ran
 * right after the same one; over 6 rounds this gives all 6 orders of 3.
 */
const order = <T>(xs: T[], r: number): T[] => rotate(r % 2 === 0 ? xs : [...xs].reverse(), r >> 1)
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ')

async function startAgent (name: string, script: string, dir: string, port: number): Promise<Target> {
  mkdirSync(dir, { recursive: true })
  const cfg = { dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: port, grpc: 0 }, secrets: [{ name: 'openai', ref: 'env:BENCH_VALUE' }], refresh: '30s' }
  writeFileSync(join(dir, 'agent.json'), JSON.stringify(cfg))
  const out = join(dir, 'stdout.log')
  const fd = openSync(out, 'w')
  const proc = spawn(NODE, [...nodeArgs(script, NODE), 'agent', '--config', join(dir, 'agent.json')], { env: agentEnv({ BENCH_VALUE: BODY }), stdio: ['ignore', fd, 'inherit'] })
  closeSync(fd)
  await waitFor(`http://127.0.0.1:${port}/ready`)
  const headers = { 'x-sidekey-token': readFileSync(join(dir, 'token'), 'utf8').trim() }
  const url = `http://127.0.0.1:${port}/v1/secrets/openai`
  const got = await fetch(url, { headers })
  if ((await got.text()) !== BODY) throw new Error(`${name} does not serve the bench value`)
  return { name, url, headers, proc, out }
}

/** Stops an agent and checks that its audit lines count every 200 its request counter counted. */
async function accounting (t: Target): Promise<string> {
  const m = await (await fetch(t.url.replace(/\/v1\/secrets\/.*/, '/metrics'), { headers: t.headers })).text()
  const served = Number(/^sidekey_requests_total\{[^}]*route="\/v1\/secrets\/:name"[^}]*status="200"[^}]*\} (\d+)/m.exec(m)?.[1] ?? NaN)
  const exited = new Promise((resolve) => t.proc.once('exit', resolve))
  t.proc.kill('SIGTERM')
  await exited
  let counted = 0
  let lines = 0
  for (const l of readFileSync(t.out as string, 'utf8').split('\n')) {
    if (!l.includes('"audit":true')) continue
    const j = JSON.parse(l) as { route?: string, status?: number, count?: number }
    if (j.route === '/v1/secrets/:name' && j.status === 200) { counted += j.count ?? 1; lines++ }
  }
  const ok = counted === served
  if (!ok) process.exitCode = 1
  return `${t.name}: ${served} answered 200 (its request counter), ${counted} in ${lines} audit lines: ${ok ? 'all accounted for' : 'MISMATCH'}`
}

async function main (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-bench-'))
  const procs: ChildProcess[] = []
  process.on('exit', () => { for (const p of procs) p.kill('SIGKILL') })
  try {
    const load0 = load()
    const agents: Target[] = []
    for (const [name, script, port] of [['sidekey', SIDEKEY, 18198], ...(BEFORE !== undefined ? [['before', BEFORE, 18197]] : [])] as Array<[string, string, number]>) {
      const d = join(dir, name)
      const t = await startAgent(name, script, d, port)
      procs.push(t.proc)
      agents.push(t)
    }
    const first = agents[0] as Target
    // The bare server answers with Sidekey's head (Node adds Date, Connection and Keep-Alive to both).
    const head: string[] = []
    for (const [k, v] of (await fetch(first.url, { headers: first.headers })).headers) if (!['date', 'connection', 'keep-alive'].includes(k)) head.push(k, v)
    const bareProc = spawn(NODE, ['-e', `const h=${JSON.stringify(head)},b=${JSON.stringify(BODY)};require('http').createServer({keepAliveTimeout:65000},(q,s)=>{s.writeHead(200,h);s.end(b,'latin1')}).listen(18199,'127.0.0.1')`], { stdio: 'ignore', env: { ...process.env, NODE_OPTIONS: '' } })
    procs.push(bareProc)
    await waitFor('http://127.0.0.1:18199/')
    // The bare server gets the same request (it ignores the token): the client's work per request is the same.
    const targets: Target[] = [{ name: 'bare', url: 'http://127.0.0.1:18199/v1/secrets/openai', headers: first.headers, proc: bareProc }, ...agents]
    const cBin = PACED === 'c' ? compilePaced(dir) : undefined
    const generator = cBin !== undefined ? 'bench/paced.c' : 'node:http'
    const paced = async (t: Target, rate: number, seconds: number): Promise<PacedResult> => cBin !== undefined ? await pacedC(cBin, t, rate, seconds) : await pacedNode(t, rate, seconds)
    const nodeVersion = (await new Promise<string>((resolve) => { const p = spawn(NODE, ['-v']); let s = ''; p.stdout.on('data', (b: Buffer) => { s += b.toString() }); p.on('close', () => resolve(s.trim())) }))
    console.error(`local endpoint: ${ROUNDS} rounds, ${SECONDS}s each, servers on node ${nodeVersion}, agent NODE_OPTIONS=${AGENT_NODE_OPTIONS}, paced by ${generator}; load ${load0}`)
    for (const t of targets) await saturate(t, 2) // warm-up

    const sat = new Map<string, Array<Awaited<ReturnType<typeof saturate>>>>(targets.map((t) => [t.name, []]))
    const pac = new Map<string, Array<Awaited<ReturnType<typeof paced>>>>(targets.map((t) => [t.name, []]))
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of order(targets, r)) sat.get(t.name)?.push(await saturate(t, SECONDS))
      for (const t of order(targets, r)) pac.get(t.name)?.push(await paced(t, RATE, SECONDS))
      console.error(`round ${r + 1}: ` + targets.map((t) => { const s = sat.get(t.name)?.[r]; const p = pac.get(t.name)?.[r]; return `${t.name} ${Math.round(s?.rps ?? 0)}/s ${Math.round(s?.cpuUsPerReq ?? 0)}µs cpu/req, paced p50/p99 ${p?.p50}/${p?.p99}µs` }).join('; ') + ` (load ${load()})`)
    }

    const load1 = load()
    console.log(`local endpoint GET, node ${nodeVersion}, agent NODE_OPTIONS=${AGENT_NODE_OPTIONS}, audit on, paced by ${generator}; ${ROUNDS} rounds x ${SECONDS}s, interleaved; ${cpus().length} cores, load ${load0} -> ${load1}`)
    console.log(`medians [min-max] over rounds       saturation (${CONNECTIONS} conns) req/s   server CPU µs/req   paced ${RATE}/s p50 µs   p99 µs`)
    for (const t of targets) {
      const s = sat.get(t.name) ?? []
      const p = pac.get(t.name) ?? []
      const errors = s.reduce((n, x) => n + x.errors, 0) + p.reduce((n, x) => n + x.errors, 0)
      console.log(`${t.name.padEnd(36)} ${spread(s.map((x) => x.rps)).padEnd(34)} ${spread(s.map((x) => x.cpuUsPerReq), 1).padEnd(19)} ${spread(p.map((x) => x.p50)).padEnd(18)} ${spread(p.map((x) => x.p99))}${errors > 0 ? `  ERRORS ${errors}` : ''}`)
    }
    const bare = sat.get('bare') ?? []
    /** bench/paced.c's p99 timed from the write, beside the one from when due (p99_us). */
    const p99FromWrite = (name: string): { p99_from_write_us?: number } => { const xs = (pac.get(name) ?? []).map((x) => x.p99_from_write).filter((x): x is number => x !== undefined); return xs.length > 0 ? { p99_from_write_us: median(xs) } : {} }
    const summary: Record<string, unknown> = { bench: 'local-endpoint', p99_basis: 'from when due', node: nodeVersion, paced: generator, rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, load: [load0, load1] }
    for (const t of targets.slice(1)) {
      const s = sat.get(t.name) ?? []
      const p = pac.get(t.name) ?? []
      const ratios = s.map((x, i) => x.rps / (bare[i]?.rps ?? NaN))
      // The same comparison through CPU: a round's req/s moves with whatever else the cores run, its CPU per request much less.
      const cpuRatios = s.map((x, i) => (bare[i]?.cpuUsPerReq ?? NaN) / x.cpuUsPerReq)
      const p99 = median(p.map((x) => x.p99))
      const fromWrite = (name: string): string => { const us = p99FromWrite(name).p99_from_write_us; return us !== undefined ? (us / 1000).toFixed(3) : '-' }
      console.log(`${t.name}/bare saturation ratio: ${spread(ratios, 2)} (goal >= 0.90), bare's CPU per request / ${t.name}'s ${spread(cpuRatios, 2)}; paced p99 ${(p99 / 1000).toFixed(3)} ms from when due (goal <= 0.5 ms), bare's ${(median(pac.get('bare')?.map((x) => x.p99) ?? []) / 1000).toFixed(3)} ms; from the write ${fromWrite(t.name)} ms, bare's ${fromWrite('bare')} ms`)
      summary[t.name] = { rps: Math.round(median(s.map((x) => x.rps))), ratio: Number(median(ratios).toFixed(3)), cpu_ratio: Number(median(cpuRatios).toFixed(3)), cpu_us_per_req: Number(median(s.map((x) => x.cpuUsPerReq)).toFixed(1)), p50_us: median(p.map((x) => x.p50)), p99_us: p99, ...p99FromWrite(t.name) }
    }
    summary.bare = { rps: Math.round(median(bare.map((x) => x.rps))), cpu_us_per_req: Number(median(bare.map((x) => x.cpuUsPerReq)).toFixed(1)), p50_us: median(pac.get('bare')?.map((x) => x.p50) ?? []), p99_us: median(pac.get('bare')?.map((x) => x.p99) ?? []), ...p99FromWrite('bare') }
    for (const t of targets.slice(1)) console.log(await accounting(t))
    console.log(JSON.stringify(summary))
  } finally {
    for (const p of procs) p.kill('SIGTERM')
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
