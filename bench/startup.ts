// Agent start-up for the smallest real config: one secret from a `file:`
// store, in a temp dir. For each CLI entry given (e.g. dist/bin/sidekey.js
// and dist/bundle/sidekey.js), runs alternately A B A B ...: time from exec to
// the first file written, then RSS a fixed time after it (default 5 s).
// Prints min / median / max per entry and one JSON line.
//   node dist/bench/startup.js [--runs N] [--rss-after MS] ENTRY...
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeArgs, procMemoryKb } from './agent-process.js'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))


async function once (entry: string, dir: string, port: number, rssAfterMs: number): Promise<{ firstFileMs: number, rssKb: number }> {
  const out = join(dir, `out-${port}`)
  const cfg = join(dir, `agent-${port}.json`)
  writeFileSync(cfg, JSON.stringify({
    dir: out, apiTokenFile: join(dir, `token-${port}`), listen: { http: port, grpc: port + 1 }, logLevel: 'warn',
    stores: { file: { type: 'file' } },
    secrets: [{ name: 's0', ref: `file:${join(dir, 'source')}` }],
  }))
  const started = process.hrtime.bigint()
  const p = spawn(process.execPath, [...nodeArgs(entry, process.execPath), 'agent', '--config', cfg], { stdio: 'ignore' })
  let exited = false
  p.on('exit', () => { exited = true })
  let firstFileMs = -1
  while (firstFileMs < 0) {
    if (exited) throw new Error(`${entry}: the agent exited before writing the file`)
    if (existsSync(join(out, 's0'))) firstFileMs = Number(process.hrtime.bigint() - started) / 1e6
    else await sleep(1)
  }
  await sleep(rssAfterMs)
  const rss = procMemoryKb(p.pid as number).rss
  p.kill('SIGTERM')
  await new Promise((resolve) => { if (exited) resolve(undefined); else p.on('exit', resolve) })
  return { firstFileMs, rssKb: rss }
}

const stats = (xs: number[]): { min: number, median: number, max: number } => {
  const s = [...xs].sort((a, b) => a - b)
  return { min: s[0] as number, median: s[Math.floor(s.length / 2)] as number, max: s.at(-1) as number }
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  let runs = 7
  let rssAfterMs = 5000
  const entries: string[] = []
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--runs') runs = Number(args[++i])
    else if (args[i] === '--rss-after') rssAfterMs = Number(args[++i])
    else entries.push(args[i] as string)
  }
  if (entries.length === 0) entries.push('dist/bin/sidekey.js', 'dist/bundle/sidekey.js')
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-startup-'))
  try {
    writeFileSync(join(dir, 'source'), 'value\n')
    const got = new Map<string, Array<{ firstFileMs: number, rssKb: number }>>(entries.map((e) => [e, []]))
    let port = 18700
    // One warm-up each (fills V8's compile cache), then the counted runs, interleaved.
    for (const e of entries) await once(e, dir, port += 2, 0)
    for (let r = 0; r < runs; r++) {
      for (const e of entries) got.get(e)?.push(await once(e, dir, port += 2, rssAfterMs))
    }
    const result: Record<string, unknown> = {}
    console.log(`agent, 1 secret from a file: store; ${runs} runs each, interleaved; RSS ${rssAfterMs / 1000} s after the first file`)
    for (const [e, rs] of got) {
      const f = stats(rs.map((r) => r.firstFileMs))
      const m = stats(rs.map((r) => r.rssKb / 1024))
      console.log(`${e.padEnd(40)} first file ms min/median/max ${f.min.toFixed(0)}/${f.median.toFixed(0)}/${f.max.toFixed(0)}   RSS MiB ${m.min.toFixed(1)}/${m.median.toFixed(1)}/${m.max.toFixed(1)}`)
      result[e] = { firstFileMs: f, rssMiB: m }
    }
    console.log(JSON.stringify({ bench: 'startup', runs, rssAfterMs, node: process.version, result }))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
