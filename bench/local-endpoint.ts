// Cached GET /v1/secrets/:name with keep-alive over loopback, against a bare
// Node http server answering a fixed body, in the same run. Prints figures and
// ends with one JSON line. Goal: >= 0.8x the bare server; p99 < 1 ms at 1,000 req/s.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import http from 'node:http'
import autocannon from 'autocannon'

const DURATION = Number(process.env.BENCH_SECONDS ?? 8)
const BODY = 'sk-bench-' + 'x'.repeat(40)

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

async function load (url: string, headers: Record<string, string>, rate?: number): Promise<autocannon.Result> {
  return await autocannon({ url, headers, connections: rate !== undefined ? 4 : 32, pipelining: 1, duration: DURATION, ...(rate !== undefined ? { overallRate: rate } : {}) })
}

/**
 * Fixed-rate latency with microsecond resolution (autocannon reports whole
 * milliseconds): `rate` requests per second over keep-alive connections, each
 * request timed with hrtime from send to the last byte.
 */
async function latencyAtRate (url: string, headers: Record<string, string>, rate: number, seconds: number): Promise<{ p50: number, p99: number, max: number, n: number, rate: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  const samples: number[] = []
  const one = async (): Promise<void> => await new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    http.get(url, { agent, headers }, (res) => {
      res.on('data', () => {})
      res.on('end', () => { samples.push(Number(process.hrtime.bigint() - t0) / 1000); resolve() })
    }).on('error', reject)
  })
  const tickMs = 1
  const perTick = Math.max(1, Math.round(rate * tickMs / 1000))
  const inflight: Array<Promise<void>> = []
  const start = Date.now()
  let ticks = 0
  while (Date.now() - start < seconds * 1000) {
    for (let i = 0; i < perTick; i++) inflight.push(one())
    ticks++
    const next = start + ticks * tickMs
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())))
  }
  await Promise.all(inflight)
  agent.destroy()
  samples.sort((a, b) => a - b)
  const q = (p: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] as number)
  return { p50: q(0.5), p99: q(0.99), max: Math.round(samples[samples.length - 1] as number), n: samples.length, rate: Math.round(samples.length / ((Date.now() - start) / 1000)) }
}

function line (what: string, r: autocannon.Result): string {
  return `${what.padEnd(28)} ${Math.round(r.requests.average).toString().padStart(7)} req/s   p50 ${r.latency.p50} ms  p99 ${r.latency.p99} ms  errors ${r.errors + r.non2xx}`
}

async function main (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-bench-'))
  const procs: ChildProcess[] = []
  try {
    const bare = spawn(process.execPath, ['-e', `require('http').createServer((q,s)=>{s.writeHead(200,{'content-type':'application/octet-stream','content-length':${BODY.length}});s.end(${JSON.stringify(BODY)})}).listen(18199,'127.0.0.1')`], { stdio: 'ignore' })
    procs.push(bare)
    const config = { dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 18198, grpc: 0 }, secrets: [{ name: 'openai', ref: 'env:BENCH_VALUE' }], refresh: '30s' }
    writeFileSync(join(dir, 'agent.json'), JSON.stringify(config))
    // Audit lines go to a file as they would to the container log.
    const agent = spawn(process.execPath, ['dist/bin/sidekey.js', 'agent', '--config', join(dir, 'agent.json')], { env: { ...process.env, BENCH_VALUE: BODY }, stdio: ['ignore', 'ignore', 'inherit'] })
    procs.push(agent)
    await waitFor('http://127.0.0.1:18199/')
    await waitFor('http://127.0.0.1:18198/ready')
    const headers = { 'x-sidekey-token': readFileSync(join(dir, 'token'), 'utf8').trim() }
    const agentUrl = 'http://127.0.0.1:18198/v1/secrets/openai'
    const check = await fetch(agentUrl, { headers })
    if ((await check.text()) !== BODY) throw new Error('agent does not serve the bench value')

    await load('http://127.0.0.1:18199/', {}) // warm-up
    await load(agentUrl, headers)
    const bareSat = await load('http://127.0.0.1:18199/', {})
    const agentSat = await load(agentUrl, headers)
    const agentRate = await load(agentUrl, headers, 1000)
    const bareRate = await load('http://127.0.0.1:18199/', {}, 1000)
    const agentLat = await latencyAtRate(agentUrl, headers, 1000, DURATION)
    const bareLat = await latencyAtRate('http://127.0.0.1:18199/', {}, 1000, DURATION)
    const ratio = agentSat.requests.average / bareSat.requests.average
    console.log(`local endpoint, ${DURATION}s per run, keep-alive, loopback, 2 processes on ${(await import('node:os')).cpus().length} cores`)
    console.log(line('bare node http (saturation)', bareSat))
    console.log(line('sidekey GET (saturation)', agentSat))
    console.log(line('bare node http @1000/s', bareRate))
    console.log(line('sidekey GET @1000/s', agentRate))
    console.log(`bare node http, paced (µs)   p50 ${bareLat.p50}  p99 ${bareLat.p99}  max ${bareLat.max}  (${bareLat.n} requests at ${bareLat.rate}/s, hrtime per request)`)
    console.log(`sidekey GET, paced (µs)      p50 ${agentLat.p50}  p99 ${agentLat.p99}  max ${agentLat.max}  (${agentLat.n} requests at ${agentLat.rate}/s)`)
    console.log(`throughput ratio sidekey/bare: ${ratio.toFixed(2)} (goal >= 0.80); p99 at 1000/s: ${(agentLat.p99 / 1000).toFixed(3)} ms (goal < 1 ms)`)
    console.log(JSON.stringify({ bench: 'local-endpoint', bare_rps: Math.round(bareSat.requests.average), sidekey_rps: Math.round(agentSat.requests.average), ratio: Number(ratio.toFixed(3)), p50_us_at_1000: agentLat.p50, p99_us_at_1000: agentLat.p99, bare_p99_us_at_1000: bareLat.p99, autocannon_p99_ms_at_1000: agentRate.latency.p99, errors: agentSat.errors + agentSat.non2xx }))
  } finally {
    for (const p of procs) p.kill('SIGTERM')
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
