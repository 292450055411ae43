// Agent RSS with 10, 100 and 1,000 local-store secrets against a bare Node
// process running an http server, same run; and time from process start to
// the first file written. Prints figures, ends with one JSON line.
// Goals: RSS <= 1.25x bare with 100 secrets; first file < 300 ms (local store).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalStore } from '../agent/local-store.js'
import { procMemoryKb } from './agent-process.js'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))


async function settle (p: ChildProcess): Promise<number> {
  // Steady-state RSS of a long-running sidecar: V8's memory reducer returns the
  // start-up garbage after some idle seconds, so sample after 12 s, median of 5.
  await sleep(Number(process.env.BENCH_SETTLE_MS ?? 12000))
  const s: number[] = []
  for (let i = 0; i < 5; i++) { s.push(procMemoryKb(p.pid as number).rss); await sleep(200) }
  return s.sort((a, b) => a - b)[2] as number
}

async function agentRun (dir: string, n: number, port: number, key: string): Promise<{ rss: number, firstFileMs: number, readyMs: number }> {
  const store = join(dir, `store-${n}.json`)
  const out = join(dir, `out-${n}`)
  const cfg = join(dir, `agent-${n}.json`)
  writeFileSync(cfg, JSON.stringify({
    dir: out, apiTokenFile: join(dir, `token-${n}`), listen: { http: port, grpc: port + 1 }, logLevel: 'warn',
    stores: { local: { type: 'local', path: store, keyEnv: 'BENCH_KEY' } },
    secrets: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, ref: `local:s${i}` })),
  }))
  const started = process.hrtime.bigint()
  const p = spawn(process.execPath, ['dist/bin/sidekey.js', 'agent', '--config', cfg], { env: { ...process.env, BENCH_KEY: key }, stdio: 'ignore' })
  let firstFileMs = -1
  while (firstFileMs < 0) {
    if (existsSync(join(out, 's0'))) firstFileMs = Number(process.hrtime.bigint() - started) / 1e6
    else await sleep(2)
  }
  let readyMs = -1
  while (readyMs < 0) {
    const r = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined)
    if (r?.status === 200) readyMs = Number(process.hrtime.bigint() - started) / 1e6
    else await sleep(5)
  }
  const rss = await settle(p)
  p.kill('SIGTERM')
  return { rss, firstFileMs, readyMs }
}

async function main (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-footprint-'))
  try {
    const key = randomBytes(32)
    for (const n of [10, 100, 1000]) {
      const s = new LocalStore(join(dir, `store-${n}.json`), key)
      for (let i = 0; i < n; i++) s.put(`s${i}`, randomBytes(24))
    }
    const bare = spawn(process.execPath, ['-e', "require('http').createServer((q,s)=>s.end('ok')).listen(18299,'127.0.0.1')"], { stdio: 'ignore' })
    const bareRss = await settle(bare)
    bare.kill('SIGTERM')
    const results: Record<string, { rss: number, firstFileMs: number, readyMs: number }> = {}
    let port = 18300
    for (const n of [10, 100, 1000]) {
      results[n] = await agentRun(dir, n, port, key.toString('base64'))
      port += 2
    }
    console.log(`footprint (RSS in MiB, steady state: median of 5 samples after ${Number(process.env.BENCH_SETTLE_MS ?? 12000) / 1000} s idle)`)
    console.log(`bare node + http server      ${(bareRss / 1024).toFixed(1)}`)
    for (const [n, r] of Object.entries(results)) {
      console.log(`sidekey agent, ${n.padStart(4)} secrets  ${(r.rss / 1024).toFixed(1)}  (${(r.rss / bareRss).toFixed(2)}x bare)  first file ${r.firstFileMs.toFixed(0)} ms  ready ${r.readyMs.toFixed(0)} ms`)
    }
    const r100 = results[100] as { rss: number }
    console.log(`goal: <= 1.25x bare with 100 secrets -> ${(r100.rss / bareRss).toFixed(2)}x; first file (10 secrets) < 300 ms -> ${(results[10] as { firstFileMs: number }).firstFileMs.toFixed(0)} ms`)
    console.log(JSON.stringify({
      bench: 'footprint',
      bare_rss_mib: Number((bareRss / 1024).toFixed(1)),
      ...Object.fromEntries(Object.entries(results).flatMap(([n, r]) => [[`rss_mib_${n}`, Number((r.rss / 1024).toFixed(1))], [`ratio_${n}`, Number((r.rss / bareRss).toFixed(2))], [`first_file_ms_${n}`, Math.round(r.firstFileMs)]])),
    }))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
