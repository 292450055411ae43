// bench/peers: the cost of one Sidekey agent beside the OpenBao agent (`bao
// agent`, the code vault-k8s injects), against one OpenBao dev server from
// testenv, token auth for both, KV v2 secrets. Interleaved runs, medians:
//
//   - exec -> first file, exec -> all files (1, 100, 1,000 secrets)
//   - steady RSS (median of 5 samples after --settle s), its anonymous part,
//     and peak (VmHWM); both binaries dropped from the page cache first
//     (agent-process.ts dropPageCache)
//   - idle CPU over --idle s and wake-ups per 10 s (voluntary context
//     switches of every thread: each is the process going back to sleep)
//   - backend requests per secret per minute while idle, from the OpenBao
//     audit log (each process has its own token; lines counted by it)
//     of a dev server of the testenv-built `bao` with a file audit device
//   - init-only (Sidekey exitAfterSync, bao exit_after_auth), 1 secret:
//     whole-process wall and CPU (user + system, from bash `times`)
//   - rotation: write in OpenBao -> new content in the file, at 1s and at
//     each agent's defaults (Sidekey 30s, bao agent 5m re-render)
//   - backend requests at 1s, 1 secret: per minute with no rotation (over
//     --quiet s) and per rotation seen (the rotation window's requests less
//     the quiet rate), so the cost of a check and of a change read apart
//
// Where the agents write (--files): by default a tmpfs (/dev/shm), as in a pod,
// where both agents write to an emptyDir of medium Memory (Sidekey's injector
// and vault-k8s alike). On this VM's ext4 every new inode costs ~0.5-1 ms of
// kernel time once many were deleted recently (the allocator's
// recently_deleted scan), which the writes of 100 and 1,000 files then
// measure more than the agents; `--files disk` writes under the OS's tmpdir
// as before, `--files DIR` anywhere.
//
//   node dist/bench/peers.js [--runs 5] [--sizes 1,100,1000] [--idle 60] [--settle 15]
//       [--rotations 10] [--quiet 30] [--no-defaults] [--files tmpfs|disk|DIR]
//       [--sidekey path/to/dist/bin/sidekey.js]
//       [--before path/to/an/older/dist/bin/sidekey.js] [--node path/to/node]
//
// Sidekey runs as the injector runs it: with the injector's default
// agentNodeOptions as NODE_OPTIONS, on --node (default: this process's node;
// the image's is Node 24, `scripts/node24` prints its directory).
//
// --before adds a third agent, an older Sidekey build, to every run (same
// interleaving), so before and after are measured under the same load.
//
// The idle phase runs every process of a run at once (idle processes do not
// compete); start-ups and init-only runs are one at a time, alternating.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { useServers, stopServers } from '../test/helpers/testenv.js'
import { AGENT_NODE_OPTIONS, agentEnv, baoAgentArgs, dropPageCache, nodeArgs, procMemoryKb } from './agent-process.js'

process.env.TAP_TIMEOUT = '0'

const args = process.argv.slice(2)
const opt = (name: string, def: string): string => { const i = args.indexOf(name); return i !== -1 && args[i + 1] !== undefined ? args[i + 1] as string : def }
const RUNS = Number(opt('--runs', '5'))
const SIZES = opt('--sizes', '1,100,1000').split(',').map(Number)
const IDLE_S = Number(opt('--idle', '60'))
const SETTLE_S = Number(opt('--settle', '15'))
const ROTATIONS = Number(opt('--rotations', '10'))
const QUIET_S = Number(opt('--quiet', '30'))
const DEFAULTS = !args.includes('--no-defaults')
const SIDEKEY = resolve(opt('--sidekey', 'dist/bin/sidekey.js'))
const BEFORE = args.includes('--before') ? resolve(opt('--before', '')) : undefined
const NODE = opt('--node', process.execPath)
const BAO = opt('--bao', join(process.env.HOME ?? '', '.cache/sidekey/testenv/openbao-v2.4.0/bin/bao'))
const CLK_TCK = 100
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
/** Whether `dir` is on a tmpfs (/proc/mounts' longest mount point above it). */
function onTmpfs (path: string): boolean {
  const dir = realpathSync(path)
  let best = ''
  let type = ''
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, raw, fs] = line.split(' ')
    if (raw === undefined || fs === undefined) continue
    const at = raw.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    // The last of mounts stacked on one point is the one in use.
    if ((dir === at || dir.startsWith(at.endsWith('/') ? at : at + '/')) && at.length >= best.length) { best = at; type = fs }
  }
  return type === 'tmpfs'
}
const FILES_OPT = opt('--files', 'tmpfs')
const FILES_AT = FILES_OPT === 'disk' ? tmpdir() : FILES_OPT === 'tmpfs' ? '/dev/shm' : resolve(FILES_OPT)
if (FILES_OPT === 'tmpfs' && !(existsSync(FILES_AT) && onTmpfs(FILES_AT))) throw new Error('--files tmpfs: /dev/shm is not a tmpfs here; give --files disk or --files DIR')
/** The agents' own directories (config, token, the files they write). */
const files = mkdtempSync(join(FILES_AT, 'sidekey-bench-peers-files-'))
const work = mkdtempSync(join(tmpdir(), 'sidekey-bench-peers-'))
const FILES_KIND = onTmpfs(files) ? 'tmpfs' : 'not a tmpfs'
const tag = Date.now().toString(36)

type Kind = 'sidekey' | 'before' | 'bao'
const KINDS: Kind[] = BEFORE !== undefined ? ['sidekey', 'before', 'bao'] : ['sidekey', 'bao']
const isSidekey = (k: Kind): boolean => k !== 'bao'
const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL')
  // The files are in RAM (a tmpfs): gone with the bench, whatever ends it.
  try { rmSync(files, { recursive: true, force: true, maxRetries: 3 }) } catch (err) { console.error(`peers: could not remove ${files}: ${(err as Error).message}`) }
})
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.once(sig, () => process.exit(130))
const t00 = Date.now()
const progress = (what: string): void => { console.error(`[${((Date.now() - t00) / 1000).toFixed(0)}s] ${what} (load ${loadavg()[0]?.toFixed(2) ?? ''})`) }

// A dev server of the testenv-built binary with a declarative file audit
// device (OpenBao 2.x refuses to enable one through the API).
const auditFile = join(work, 'audit.log')
const port = await new Promise<number>((resolve) => { const s = createNetServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)) }) })
// testenv builds bao and starts its own server; stopped at once, so no process maps the binary when it is dropped.
if (!existsSync(BAO)) { await useServers(undefined, ['openbao']); await stopServers() }
// Before the server starts: it is the same binary as the bao agent, and its pages are the agent's (agent-process.ts).
dropPageCache([NODE, BAO])
writeFileSync(join(work, 'audit.hcl'), `audit "file" "peers" {\n  options {\n    file_path = "${auditFile}"\n  }\n}\n`)
const server = spawn(BAO, ['server', '-dev', '-dev-root-token-id=root', `-dev-listen-address=127.0.0.1:${port}`, `-config=${join(work, 'audit.hcl')}`], { stdio: 'ignore' })
process.on('exit', () => { server.kill('SIGKILL') })
const openbao = { addr: `http://127.0.0.1:${port}`, rootToken: 'root' }
const api = async (method: string, path: string, body?: unknown, token = openbao.rootToken): Promise<any> => {
  const r = await fetch(`${openbao.addr}/v1/${path}`, { method, headers: { 'x-vault-token': token }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  if (r.status >= 300) throw new Error(`openbao ${method} ${path}: ${r.status} ${await r.text()}`)
  return r.status === 204 ? undefined : await r.json()
}
for (let i = 0; ; i++) {
  const ok = await fetch(`${openbao.addr}/v1/sys/health`).then((r) => r.status === 200, () => false)
  if (ok) break
  if (i > 300) throw new Error('openbao dev server did not start')
  await sleep(100)
}
const audit = true
/** A token per process, so the audit log tells the processes apart. */
async function token (name: string): Promise<string> {
  const r = await api('POST', 'auth/token/create', { display_name: name, policies: ['root'], no_parent: true, ttl: '24h', renewable: true })
  return r.auth.client_token as string
}
const kvPath = (set: string, i: number): string => `secret/data/peers-${tag}/${set}/s${i}`
async function putSecrets (set: string, n: number, value = 'initial'): Promise<void> {
  for (let i = 0; i < n; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, j) => await api('POST', kvPath(set, i + j), { data: { v: value } })))
  }
}

interface Proc { kind: Kind, p: ChildProcess, dir: string, n: number, name: string, exited: Promise<number> }

function configFor (kind: Kind, dir: string, set: string, n: number, tok: string, o: { refresh?: string, initOnly?: boolean }): string[] {
  const out = join(dir, 'secrets')
  if (isSidekey(kind)) {
    const cfg = join(dir, 'agent.json')
    writeFileSync(cfg, JSON.stringify({
      // --before may be a build older than the apiTokenFile rename (it knows only tokenFile)
      dir: out, [kind === 'before' ? 'tokenFile' : 'apiTokenFile']: join(dir, 'sidekey-token'), listen: { http: 0, grpc: 0 }, logLevel: 'warn',
      ...(o.refresh !== undefined ? { refresh: o.refresh } : {}),
      ...(o.initOnly === true ? { exitAfterSync: true } : {}),
      stores: { vault: { type: 'vault', address: openbao.addr, tokenEnv: 'PEERS_VAULT_TOKEN' } },
      secrets: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, ref: `vault:${kvPath(set, i)}#v` })),
    }))
    return [...nodeArgs(kind === 'before' ? BEFORE as string : SIDEKEY, NODE), 'agent', '--config', cfg]
  }
  return baoAgentArgs(BAO, dir, { addr: openbao.addr, token: tok, paths: Array.from({ length: n }, (_, i) => kvPath(set, i)), ...(o.refresh !== undefined ? { refresh: o.refresh } : {}), ...(o.initOnly === true ? { initOnly: true } : {}) })
}

/** The environment of one agent: its token, and for Sidekey the injected NODE_OPTIONS. */
function envFor (kind: Kind, tok: string): NodeJS.ProcessEnv {
  return isSidekey(kind) ? agentEnv({ PEERS_VAULT_TOKEN: tok }) : { ...process.env, PEERS_VAULT_TOKEN: tok }
}

let seq = 0
async function start (kind: Kind, set: string, n: number, o: { refresh?: string } = {}): Promise<Proc & { firstMs: number, allMs: number }> {
  const dir = mkdtempSync(join(files, `${kind}-`))
  const name = `${kind}-${set}-${seq++}`
  const tok = await token(name)
  const argv = configFor(kind, dir, set, n, tok, o)
  const t0 = process.hrtime.bigint()
  const p = spawn(isSidekey(kind) ? NODE : argv[0] as string, isSidekey(kind) ? argv : argv.slice(1), { env: envFor(kind, tok), stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(p)
  p.once('exit', () => children.delete(p))
  let stderr = ''
  p.stderr?.on('data', (d: Buffer) => { if (stderr.length < 4000) stderr += d.toString() })
  const exited = new Promise<number>((resolve) => p.once('exit', (code) => resolve(code ?? -1)))
  let dead = false
  void exited.then(() => { dead = true })
  const out = join(dir, 'secrets')
  let firstMs = -1
  let next = 0
  const deadline = Date.now() + 120_000
  while (next < n) {
    if (dead || Date.now() > deadline) throw new Error(`${name} did not write its files: ${stderr}`)
    while (next < n && existsSync(join(out, `s${next}`))) {
      if (firstMs < 0) firstMs = Number(process.hrtime.bigint() - t0) / 1e6
      next++
    }
    if (next < n) await sleep(2)
  }
  const allMs = Number(process.hrtime.bigint() - t0) / 1e6
  return { kind, p, dir, n, name, exited, firstMs, allMs }
}

function cpuTicks (pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return Number(rest[11]) + Number(rest[12])
}
function switches (pid: number): number {
  let sum = 0
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8')
      sum += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(s)?.[1] ?? 0)
    } catch { /* thread ended */ }
  }
  return sum
}

/** Stops an agent and removes its directory (on a tmpfs, its files are RAM). */
async function stop (x: Proc): Promise<void> {
  x.p.kill('SIGTERM')
  const t = setTimeout(() => x.p.kill('SIGKILL'), 5000)
  await x.exited
  clearTimeout(t)
  rmSync(x.dir, { recursive: true, force: true, maxRetries: 3 })
}

/** Requests each token made in [from, to] (audit "request" entries), by display name. */
function auditCounts (from: number, to: number): Map<string, number> {
  const m = new Map<string, number>()
  if (!audit || !existsSync(auditFile)) return m
  for (const line of readFileSync(auditFile, 'utf8').split('\n')) {
    if (line === '') continue
    const e = JSON.parse(line) as { type?: string, time?: string, auth?: { display_name?: string } }
    if (e.type !== 'request' || e.time === undefined) continue
    const t = Date.parse(e.time)
    if (t < from || t > to) continue
    const dn = (e.auth?.display_name ?? '').replace(/^token-/, '')
    m.set(dn, (m.get(dn) ?? 0) + 1)
  }
  return m
}

async function initOnly (kind: Kind, set: string): Promise<{ wallMs: number, cpuMs: number }> {
  const dir = mkdtempSync(join(files, `${kind}-init-`))
  const tok = await token(`${kind}-init`)
  const argv = configFor(kind, dir, set, 1, tok, { initOnly: true })
  const cmd = (isSidekey(kind) ? [NODE, ...argv] : argv).map((a) => `'${a}'`).join(' ')
  const t0 = process.hrtime.bigint()
  const p = spawn('bash', ['-c', `${cmd} >/dev/null 2>&1; rc=$?; times >&2; exit $rc`], { env: envFor(kind, tok), stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  p.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise<number>((resolve) => p.once('exit', (c) => resolve(c ?? -1)))
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
  if (code !== 0 || !existsSync(join(dir, 'secrets', 's0'))) throw new Error(`${kind} init-only failed (${code}): ${err}`)
  // `times`: the shell's own user/sys, then its children's.
  const kids = (err.trim().split('\n').pop() ?? '').match(/(\d+)m([\d.]+)s/g) ?? []
  const cpuMs = kids.map((x) => { const m = /(\d+)m([\d.]+)s/.exec(x) as RegExpExecArray; return (Number(m[1]) * 60 + Number(m[2])) * 1000 }).reduce((a, b) => a + b, 0)
  rmSync(dir, { recursive: true, force: true })
  return { wallMs, cpuMs }
}

async function fileIs (path: string, value: string, t0: number, limitMs: number): Promise<number> {
  for (;;) {
    try { if (readFileSync(path, 'utf8') === value) return Date.now() - t0 } catch { /* between swaps */ }
    if (Date.now() - t0 > limitMs) return NaN
    await sleep(5)
  }
}

/** One agent's rotations: the delays seen, requests per secret per minute while rotating and while quiet, requests per rotation. */
interface Rotated { delays: number[], reqPerSecMin: number, quietPerSecMin: number, reqPerRotation: number }
/**
 * Rotations of secrets in `n` secrets per agent, both agents at once; each secret rotated at a random moment within `spreadMs`.
 * With `quietS` > 0, the agents' requests are first counted for that long with no rotation.
 */
async function rotation (refresh: Record<Kind, string | undefined>, intervalMs: Record<Kind, number>, n: number, rounds: number, spreadMs: number, quietS = 0): Promise<Record<Kind, Rotated>> {
  const res = {} as Record<Kind, Rotated>
  const procs = {} as Record<Kind, Proc>
  for (const kind of KINDS) {
    const set = `rot-${kind}-${refresh[kind] ?? 'default'}`
    await putSecrets(set, n)
    const r = refresh[kind]
    procs[kind] = await start(kind, set, n, r !== undefined ? { refresh: r } : {})
    res[kind] = { delays: [], reqPerSecMin: NaN, quietPerSecMin: NaN, reqPerRotation: NaN }
  }
  let quiet: { from: number, to: number } | undefined
  if (quietS > 0) {
    await sleep(2000) // past the first read
    const qFrom = Date.now()
    await sleep(quietS * 1000)
    quiet = { from: qFrom, to: Date.now() }
  }
  const from = Date.now()
  await Promise.all(KINDS.map(async (kind) => {
    const set = `rot-${kind}-${refresh[kind] ?? 'default'}`
    const limit = intervalMs[kind] * 1.2 + 10_000
    if (n > 1) {
      res[kind].delays = await Promise.all(Array.from({ length: n }, async (_, i) => {
        await sleep(Math.random() * spreadMs)
        const value = `rotated-${i}-${Math.random().toString(36).slice(2)}`
        const t0 = Date.now()
        await api('POST', kvPath(set, i), { data: { v: value } })
        return await fileIs(join(procs[kind].dir, 'secrets', `s${i}`), value, t0, limit)
      }))
    } else {
      for (let r = 0; r < rounds; r++) {
        await sleep(Math.random() * spreadMs)
        const value = `rotated-${r}-${Math.random().toString(36).slice(2)}`
        const t0 = Date.now()
        await api('POST', kvPath(set, 0), { data: { v: value } })
        res[kind].delays.push(await fileIs(join(procs[kind].dir, 'secrets', 's0'), value, t0, limit))
      }
    }
  }))
  const to = Date.now()
  await sleep(1500) // the audit device writes asynchronously
  const counts = auditCounts(from, to)
  const quietCounts = quiet !== undefined ? auditCounts(quiet.from, quiet.to) : undefined
  for (const kind of KINDS) {
    const c = counts.get(procs[kind].name) ?? 0
    const minutes = (to - from) / 60_000
    res[kind].reqPerSecMin = c / n / minutes
    if (quiet !== undefined && quietCounts !== undefined) {
      // What the window's rotations cost above the quiet rate: the reads of changed values (and any extra checks).
      const perMin = (quietCounts.get(procs[kind].name) ?? 0) / n / ((quiet.to - quiet.from) / 60_000)
      res[kind].quietPerSecMin = perMin
      res[kind].reqPerRotation = (c - perMin * n * minutes) / (n > 1 ? n : rounds)
    }
    await stop(procs[kind])
  }
  return res
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] as number : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2
}

type Figures = Record<string, number[]>
const fig: Record<Kind, Figures> = { sidekey: {}, before: {}, bao: {} }
const add = (kind: Kind, key: string, v: number): void => { (fig[kind][key] ??= []).push(v) }
const loads: number[] = []

console.error(`peers: sidekey=${SIDEKEY} node=${NODE} NODE_OPTIONS=${AGENT_NODE_OPTIONS} bao=${BAO} runs=${RUNS} sizes=${SIZES.join(',')} idle=${IDLE_S}s settle=${SETTLE_S}s load=${loadavg().map((x) => x.toFixed(2)).join(' ')}`)
// The agents read the same secrets, each with its own token (the audit log tells them apart).
for (const n of SIZES) await putSecrets(`n${n}`, n)
await putSecrets('init', 1)
progress('secrets written')

for (let run = 0; run < RUNS; run++) {
  const order: Kind[] = run % 2 === 0 ? KINDS : [...KINDS].reverse()
  const live: Proc[] = []
  try {
    for (const n of SIZES) {
      for (const kind of order) {
        const x = await start(kind, `n${n}`, n)
        live.push(x)
        add(kind, `first_ms_${n}`, x.firstMs)
        add(kind, `all_ms_${n}`, x.allMs)
        progress(`run ${run + 1}: ${kind} ${n} secrets: first ${x.firstMs.toFixed(0)} ms, all ${x.allMs.toFixed(0)} ms`)
      }
    }
    for (const kind of order) {
      const r = await initOnly(kind, 'init')
      add(kind, 'init_wall_ms', r.wallMs)
      add(kind, 'init_cpu_ms', r.cpuMs)
    }
    await sleep(SETTLE_S * 1000)
    const rss = new Map<Proc, number[]>(live.map((x) => [x, []]))
    const anon = new Map<Proc, number[]>(live.map((x) => [x, []]))
    for (let i = 0; i < 5; i++) {
      for (const x of live) { const st = procMemoryKb(x.p.pid as number); rss.get(x)?.push(st.rss); anon.get(x)?.push(st.anon) }
      await sleep(200)
    }
    const t0 = live.map((x) => ({ cpu: cpuTicks(x.p.pid as number), sw: switches(x.p.pid as number) }))
    const from = Date.now()
    loads.push(loadavg()[0] as number)
    await sleep(IDLE_S * 1000)
    const to = Date.now()
    await sleep(1500)
    const counts = auditCounts(from, to)
    live.forEach((x, i) => {
      const pid = x.p.pid as number
      const cpu = cpuTicks(pid) - (t0[i]?.cpu ?? 0)
      const sw = switches(pid) - (t0[i]?.sw ?? 0)
      const secs = (to - from) / 1000
      add(x.kind, `idle_cpu_pct_${x.n}`, cpu / CLK_TCK / secs * 100)
      add(x.kind, `wakeups_10s_${x.n}`, sw / secs * 10)
      add(x.kind, `rss_mib_${x.n}`, median(rss.get(x) ?? []) / 1024)
      add(x.kind, `anon_mib_${x.n}`, median(anon.get(x) ?? []) / 1024)
      add(x.kind, `peak_mib_${x.n}`, procMemoryKb(pid).hwm / 1024)
      if (audit) add(x.kind, `req_per_secret_min_${x.n}`, (counts.get(x.name) ?? 0) / x.n / (secs / 60))
    })
  } finally {
    await Promise.all(live.map(stop))
  }
  progress(`run ${run + 1}/${RUNS} done`)
}

progress('rotation at 1s')
const rot1 = await rotation({ sidekey: '1s', before: '1s', bao: '1s' }, { sidekey: 1000, before: 1000, bao: 1000 }, 1, ROTATIONS, 1000, QUIET_S)
for (const kind of KINDS) {
  add(kind, 'rotation_1s_ms', median(rot1[kind].delays))
  add(kind, 'req_per_secret_min_at_1s', rot1[kind].reqPerSecMin)
  add(kind, 'req_per_secret_min_at_1s_quiet', rot1[kind].quietPerSecMin)
  add(kind, 'req_per_rotation_at_1s', rot1[kind].reqPerRotation)
}
if (DEFAULTS) {
  progress('rotation at defaults (about 6 minutes)')
  // Every secret rotated once at a random moment within the longer default interval (bao: 5 min).
  const rd = await rotation({ sidekey: undefined, before: undefined, bao: undefined }, { sidekey: 30_000, before: 30_000, bao: 300_000 }, ROTATIONS, 1, 300_000)
  for (const kind of KINDS) {
    add(kind, 'rotation_default_ms', median(rd[kind].delays))
    add(kind, 'rotation_default_max_ms', Math.max(...rd[kind].delays.map((x) => Number.isFinite(x) ? x : Infinity)))
  }
}

const rows: Array<[string, string]> = [
  ...SIZES.flatMap((n): Array<[string, string]> => [
    [`idle CPU %, ${n} secrets`, `idle_cpu_pct_${n}`],
    [`wake-ups per 10 s idle, ${n} secrets`, `wakeups_10s_${n}`],
    [`exec -> first file ms, ${n} secrets`, `first_ms_${n}`],
    [`exec -> all files ms, ${n} secrets`, `all_ms_${n}`],
    [`steady RSS MiB, ${n} secrets`, `rss_mib_${n}`],
    [`  of it anonymous (heap, malloc), ${n}`, `anon_mib_${n}`],
    [`peak RSS MiB, ${n} secrets`, `peak_mib_${n}`],
    [`backend req/secret/min idle (defaults), ${n}`, `req_per_secret_min_${n}`],
  ]),
  ['init-only wall ms, 1 secret', 'init_wall_ms'],
  ['init-only CPU ms, 1 secret', 'init_cpu_ms'],
  ['rotation seen ms at 1s (median)', 'rotation_1s_ms'],
  ['backend req/secret/min at 1s, rotating', 'req_per_secret_min_at_1s'],
  ['backend req/secret/min at 1s, no rotation', 'req_per_secret_min_at_1s_quiet'],
  ['backend requests per rotation at 1s', 'req_per_rotation_at_1s'],
  ['rotation seen ms at defaults (median)', 'rotation_default_ms'],
  ['rotation seen ms at defaults (max)', 'rotation_default_max_ms'],
]
const fmt = (x: number): string => !Number.isFinite(x) ? '-' : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toFixed(3)
console.log(`\nbench/peers: Sidekey (${SIDEKEY}) vs bao agent (OpenBao v2.4.0), ${RUNS} interleaved runs, medians; idle ${IDLE_S}s after ${SETTLE_S}s settle; load avg during idle ${fmt(median(loads))} (1 min); files written under ${FILES_AT} (${FILES_KIND})`)
const ratioOf = (a: number, b: number): string => { const r = b === 0 ? (a === 0 ? 1 : Infinity) : b < 0 ? NaN : a / b; return Number.isFinite(r) ? r.toFixed(2) + 'x' : '-' }
if (BEFORE !== undefined) console.log(`before = ${BEFORE}`)
console.log(`${'figure'.padEnd(46)} ${'Sidekey'.padStart(10)} ${'bao agent'.padStart(10)} ${'ratio'.padStart(8)}${BEFORE !== undefined ? ` ${'before'.padStart(10)} ${'ratio'.padStart(8)}` : ''}`)
const json: Record<string, number> = {}
for (const [label, key] of rows) {
  const a = median(fig.sidekey[key] ?? [])
  const b = median(fig.bao[key] ?? [])
  const c = median(fig.before[key] ?? [])
  if (!Number.isFinite(a) && !Number.isFinite(b)) continue
  console.log(`${label.padEnd(46)} ${fmt(a).padStart(10)} ${fmt(b).padStart(10)} ${ratioOf(a, b).padStart(8)}${BEFORE !== undefined ? ` ${fmt(c).padStart(10)} ${ratioOf(c, b).padStart(8)}` : ''}`)
  json[`sidekey_${key}`] = Number(fmt(a))
  json[`bao_${key}`] = Number(fmt(b))
  if (BEFORE !== undefined) json[`before_${key}`] = Number(fmt(c))
}
console.log(JSON.stringify({ bench: 'peers', runs: RUNS, load: Number(fmt(median(loads))), ...json }))
server.kill('SIGTERM')
await stopServers()
rmSync(work, { recursive: true, force: true })
process.exit(0)
