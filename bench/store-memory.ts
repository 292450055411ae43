// bench/store-memory: steady RSS (median of 5 samples after --settle s) and
// peak (VmHWM) of `sidekey agent` with 1, 100 and 1,000 secrets on the aws
// store (moto from testenv), interleaved runs, medians. With --before, an
// older build runs in every run too, so before and after share the load.
//
//   node dist/bench/store-memory.js [--runs 3] [--sizes 1,100,1000] [--settle 15] [--before path/to/dist/bin/sidekey.js]
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { SecretsManagerClient, CreateSecretCommand } from '@aws-sdk/client-secrets-manager'
import { useServers, stopServers } from '../test/helpers/testenv.js'

process.env.TAP_TIMEOUT = '0'
const args = process.argv.slice(2)
const opt = (name: string, def: string): string => { const i = args.indexOf(name); return i !== -1 && args[i + 1] !== undefined ? args[i + 1] as string : def }
const RUNS = Number(opt('--runs', '3'))
const SIZES = opt('--sizes', '1,100,1000').split(',').map(Number)
const SETTLE_S = Number(opt('--settle', '15'))
const builds: Record<string, string> = { sidekey: resolve(opt('--sidekey', 'dist/bin/sidekey.js')) }
if (args.includes('--before')) builds.before = resolve(opt('--before', ''))
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const work = mkdtempSync(join(tmpdir(), 'sidekey-bench-store-memory-'))
const tag = Date.now().toString(36)

// moto from the testenv-built venv, started here (a private server; testenv installs it when missing).
const MOTO = join(process.env.HOME ?? '', '.cache/sidekey/testenv/moto-5.2.5/venv/bin/moto_server')
if (!existsSync(MOTO)) await useServers(undefined, ['moto'])
const port = await new Promise<number>((resolve) => { const s = createNetServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)) }) })
const server = spawn(MOTO, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
process.on('exit', () => { server.kill('SIGKILL') })
const moto = { endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', accessKeyId: 'testing', secretAccessKey: 'testing' }
for (let i = 0; ; i++) {
  if (await fetch(`${moto.endpoint}/moto-api/`).then(() => true, () => false)) break
  if (i > 300) throw new Error('moto did not start')
  await sleep(100)
}
const admin = new SecretsManagerClient({ region: moto.region, endpoint: moto.endpoint, credentials: { accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey } })
const tokenFile = join(work, 'aws-token')
writeFileSync(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.c2ln')
for (const n of SIZES) {
  for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, j) => await admin.send(new CreateSecretCommand({ Name: `mem-${tag}/n${n}/s${i + j}`, SecretString: `{"v":"initial-${i + j}"}` }))))
}
const kb = (pid: number, field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2] as number : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2 }
const fig: Record<string, number[]> = {}
const add = (k: string, v: number): void => { (fig[k] ??= []).push(v) }

for (let run = 0; run < RUNS; run++) {
  const kinds = run % 2 === 0 ? Object.keys(builds) : Object.keys(builds).reverse()
  for (const n of SIZES) {
    for (const kind of kinds) {
      const dir = mkdtempSync(join(work, `${kind}-`))
      const cfg = join(dir, 'agent.json')
      writeFileSync(cfg, JSON.stringify({
        dir: join(dir, 'secrets'), tokenFile: join(dir, 'token'), listen: { http: 0, grpc: 0 }, logLevel: 'warn',
        stores: { aws: { type: 'aws', region: moto.region, endpoint: moto.endpoint, stsEndpoint: moto.endpoint, roleArn: 'arn:aws:iam::123456789012:role/bench', tokenFile } },
        secrets: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, ref: `aws:mem-${tag}/n${n}/s${i}#v` })),
      }))
      const p = spawn(process.execPath, [builds[kind] as string, 'agent', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] })
      const deadline = Date.now() + 180_000
      while (!existsSync(join(dir, 'secrets', `s${n - 1}`))) {
        if (Date.now() > deadline) throw new Error(`${kind} ${n}: no files`)
        await sleep(20)
      }
      await sleep(SETTLE_S * 1000)
      const rss: number[] = []
      for (let i = 0; i < 5; i++) { rss.push(kb(p.pid as number, 'VmRSS')); await sleep(200) }
      const peak = kb(p.pid as number, 'VmHWM')
      p.kill('SIGKILL')
      add(`${kind}_rss_mib_${n}`, median(rss) / 1024)
      add(`${kind}_peak_mib_${n}`, peak / 1024)
      console.error(`run ${run + 1} ${kind} ${n}: rss ${(median(rss) / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB (load ${loadavg()[0]?.toFixed(2) ?? ''})`)
    }
  }
}
console.log(`\nbench/store-memory: aws store (moto), ${RUNS} interleaved runs, medians; RSS after ${SETTLE_S} s settle`)
for (const n of SIZES) {
  console.log(`${String(n).padStart(5)} secrets  ` + Object.keys(builds).map((k) => `${k}: RSS ${median(fig[`${k}_rss_mib_${n}`] ?? []).toFixed(1)} MiB, peak ${median(fig[`${k}_peak_mib_${n}`] ?? []).toFixed(1)} MiB`).join('   '))
}
console.log(JSON.stringify({ bench: 'store-memory', store: 'aws', runs: RUNS, ...Object.fromEntries(Object.entries(fig).map(([k, v]) => [k, Number(median(v).toFixed(1))])) }))
server.kill('SIGTERM')
await stopServers()
rmSync(work, { recursive: true, force: true })
process.exit(0)
