// bench/store-memory: steady RSS (median of 5 samples after --settle s) and
// peak (VmHWM) of `sidekey agent` with 1, 100 and 1,000 secrets on each store:
//   aws    moto from testenv (STS web identity + Secrets Manager)
//   k8s    a real etcd + kube-apiserver from testenv; a service-account token
//          from the TokenRequest API, RBAC get/list/watch on secrets
//   azure  the Key Vault stand-in (test/helpers/keyvault-standin.ts, the real
//          protocol) and the fake Entra endpoint: workload identity
//   vault  an OpenBao dev server from testenv, KV v2, token auth
// The agent runs as the injector runs it (bench/agent-process.ts): the bundle on
// the image's Node, the injector's agentNodeOptions as NODE_OPTIONS.
// Interleaved runs, medians. With --before, an older build runs in every run
// too, so before and after share the load. In a run, each store's agents start
// one at a time (each until all its files are written) and stay up; all are
// sampled --settle s after the last one started.
// The reference, in the same run: the OpenBao agent (`bao agent`, the testenv
// build of OpenBao v2.4.0, OpenBao's fork of the agent vault-k8s injects) with the same number of
// secrets, one template each, from the OpenBao dev server (token auth), beside
// each store's agents, so every store's ratio to it (issue 12: at most 0.75)
// is taken under the same load. --no-bao leaves it out. RSS is also given as
// its anonymous part (heap, malloc: the process's own) and the pages of files it
// maps (mostly its binary's code, shared with every process of that binary);
// both binaries are dropped from the page cache first (agent-process.ts).
//
//   node dist/bench/store-memory.js [--store aws,k8s,azure,vault] [--runs 3] [--sizes 1,100,1000]
//       [--settle 15] [--sidekey dist/bundle/sidekey.js] [--before path/to/sidekey.js] [--node path/to/node]
//       [--bao path/to/bao | --no-bao]
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { SecretsManagerClient, CreateSecretCommand } from '@aws-sdk/client-secrets-manager'
import { useServers, stopServers, openbaoApi } from '../test/helpers/testenv.js'
import { startKeyVaultStandin, TENANT } from '../test/helpers/keyvault-standin.js'
import { entraIdentity } from '../test/helpers/azure-recordings.js'
import { agentEnv, AGENT_NODE_OPTIONS, baoAgentArgs, dropPageCache, imageNode, nodeArgs, procMemoryKb } from './agent-process.js'

process.env.TAP_TIMEOUT = '0'
const args = process.argv.slice(2)
const opt = (name: string, def: string): string => { const i = args.indexOf(name); return i !== -1 && args[i + 1] !== undefined ? args[i + 1] as string : def }
const ALL_STORES = ['aws', 'k8s', 'azure', 'vault'] as const
type StoreName = typeof ALL_STORES[number]
const STORES = opt('--store', ALL_STORES.join(',')).split(',').map((s) => {
  if (!(ALL_STORES as readonly string[]).includes(s)) throw new Error(`--store: ${s} is not one of ${ALL_STORES.join(', ')}`)
  return s as StoreName
})
const RUNS = Number(opt('--runs', '3'))
const SIZES = opt('--sizes', '1,100,1000').split(',').map(Number)
const SETTLE_S = Number(opt('--settle', '15'))
const NODE = opt('--node', imageNode())
const builds: Record<string, string> = { sidekey: resolve(opt('--sidekey', 'dist/bundle/sidekey.js')) }
if (args.includes('--before')) builds.before = resolve(opt('--before', ''))
const BAO = args.includes('--no-bao') ? undefined : opt('--bao', join(process.env.HOME ?? '', '.cache/sidekey/testenv/openbao-v2.4.0/bin/bao'))
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const work = mkdtempSync(join(tmpdir(), 'sidekey-bench-store-memory-'))
const tag = Date.now().toString(36)
const children = new Set<ChildProcess>()
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130))
const cleanups: Array<() => Promise<void> | void> = []
const freePort = async (): Promise<number> => await new Promise<number>((resolve) => { const s = createNetServer().listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => resolve(p)) }) })
/** Runs `f` over 0..n-1, 50 at a time. */
async function batched (n: number, f: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, j) => await f(i + j)))
}

/** One store's agent settings: the `stores` entry, the reference of secret i of size n, the agent's extra environment. */
interface Backend { store: Record<string, unknown>, ref: (n: number, i: number) => string, env: NodeJS.ProcessEnv }
/** The OpenBao agent's settings: its server, a token, the KV v2 API path of secret i of size n. */
interface BaoBackend { addr: string, token: string, path: (n: number, i: number) => string }

async function aws (): Promise<Backend> {
  // moto from the testenv-built venv, started here (a private server; testenv installs it when missing).
  const MOTO = join(process.env.HOME ?? '', '.cache/sidekey/testenv/moto-5.2.5/venv/bin/moto_server')
  if (!existsSync(MOTO)) await useServers(undefined, ['moto'])
  const port = await freePort()
  const server = spawn(MOTO, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
  process.on('exit', () => { server.kill('SIGKILL') })
  cleanups.push(() => { server.kill('SIGTERM') })
  const moto = { endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', accessKeyId: 'testing', secretAccessKey: 'testing' }
  for (let i = 0; ; i++) {
    if (await fetch(`${moto.endpoint}/moto-api/`).then(() => true, () => false)) break
    if (i > 300) throw new Error('moto did not start')
    await sleep(100)
  }
  const admin = new SecretsManagerClient({ region: moto.region, endpoint: moto.endpoint, credentials: { accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey } })
  const tokenFile = join(work, 'aws-token')
  writeFileSync(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.c2ln')
  for (const n of SIZES) await batched(n, async (i) => await admin.send(new CreateSecretCommand({ Name: `mem-${tag}/n${n}/s${i}`, SecretString: `{"v":"initial-${i}"}` })))
  return {
    store: { type: 'aws', region: moto.region, endpoint: moto.endpoint, stsEndpoint: moto.endpoint, roleArn: 'arn:aws:iam::123456789012:role/bench', tokenFile },
    ref: (n, i) => `aws:mem-${tag}/n${n}/s${i}#v`,
    env: {},
  }
}

async function k8s (): Promise<Backend> {
  const { kube } = await useServers(undefined, ['kube'])
  const NS = `mem-${tag}`
  await kube.ensureNamespace(NS)
  await kube.createServiceAccount(NS, 'reader')
  await kube.must('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'secret-reader' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }] })
  await kube.must('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'reader' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secret-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: NS }] })
  const tokenFile = join(work, 'k8s-token')
  writeFileSync(tokenFile, await kube.tokenRequest({ namespace: NS, serviceAccount: 'reader', audiences: [kube.serviceAccountIssuer], expirationSeconds: 7200 }))
  for (const n of SIZES) {
    await batched(n, async (i) => await kube.must('POST', `/api/v1/namespaces/${NS}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: `n${n}-s${i}` }, data: { v: Buffer.from(`initial-${i}`).toString('base64') } }))
  }
  return { store: { type: 'k8s', server: kube.server, tokenFile, caFile: kube.caFile, namespace: NS }, ref: (n, i) => `k8s:n${n}-s${i}#v`, env: {} }
}

async function azure (): Promise<Backend> {
  const { aad } = await useServers(undefined, ['aad'])
  const kv = await startKeyVaultStandin(aad)
  cleanups.push(async () => { await kv.close() })
  // A workload identity whose federated credential trusts this process's issuer; the token file holds its assertion.
  const id = entraIdentity(aad, TENANT)
  const tokenFile = join(work, 'azure-token')
  writeFileSync(tokenFile, id.assertion())
  const caFile = join(work, 'azure-ca.pem')
  writeFileSync(caFile, kv.ca + '\n' + aad.ca)
  for (const n of SIZES) await batched(n, async (i) => await kv.set(`mem-${tag}-n${n}-s${i}`, `{"v":"initial-${i}"}`))
  return {
    store: { type: 'azure', vaultUrl: `https://localhost:${kv.port}`, tenantId: TENANT, clientId: id.clientId, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true },
    ref: (n, i) => `azure:mem-${tag}-n${n}-s${i}#v`,
    env: {},
  }
}

/** The OpenBao dev server with the secrets of every size (made once; the vault store and the OpenBao agent read the same). */
let openbaoSecrets: Promise<BaoBackend> | undefined
async function openbaoKv (): Promise<BaoBackend> {
  openbaoSecrets ??= (async () => {
    const { openbao } = await useServers(undefined, ['openbao'])
    const api = openbaoApi(openbao)
    const path = (n: number, i: number): string => `secret/data/mem-${tag}/n${n}/s${i}`
    for (const n of SIZES) await batched(n, async (i) => await api('POST', path(n, i), { data: { v: `initial-${i}` } }))
    return { addr: openbao.addr, token: openbao.rootToken, path }
  })()
  return await openbaoSecrets
}

async function vault (): Promise<Backend> {
  const { addr, token, path } = await openbaoKv()
  return { store: { type: 'vault', address: addr, tokenEnv: 'BENCH_VAULT_TOKEN' }, ref: (n, i) => `vault:${path(n, i)}#v`, env: { BENCH_VAULT_TOKEN: token } }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2] as number : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2 }
const fig: Record<string, number[]> = {}
const add = (k: string, v: number): void => { (fig[k] ??= []).push(v) }
const loads: number[] = []

async function start (b: Backend, kind: string, n: number): Promise<ChildProcess> {
  const dir = mkdtempSync(join(work, `${kind}-`))
  let p: ChildProcess
  if (kind === 'bao') {
    const kv = await openbaoKv()
    const [cmd, ...argv] = baoAgentArgs(BAO as string, dir, { addr: kv.addr, token: kv.token, paths: Array.from({ length: n }, (_, i) => kv.path(n, i)) })
    // Its warnings (1,000 templates: "watching this many dependencies could DDoS your servers") only in the error below.
    // Not the environment's VAULT_ADDR or BAO_ADDR: they would override the config's address.
    const env = { ...process.env }
    for (const k of ['VAULT_ADDR', 'BAO_ADDR', 'VAULT_TOKEN', 'BAO_TOKEN']) delete env[k]
    p = spawn(cmd as string, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] })
  } else {
    const cfg = join(dir, 'agent.json')
    writeFileSync(cfg, JSON.stringify({
      dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0, grpc: 0 }, logLevel: 'warn',
      stores: { [String(b.store.type)]: b.store },
      secrets: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, ref: b.ref(n, i) })),
    }))
    p = spawn(NODE, [...nodeArgs(builds[kind] as string, NODE), 'agent', '--config', cfg], { env: agentEnv(b.env), stdio: ['ignore', 'ignore', 'inherit'] })
  }
  children.add(p)
  let stderr = ''
  p.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000) })
  let dead = false
  p.once('exit', () => { dead = true; children.delete(p) })
  const deadline = Date.now() + 180_000
  while (!existsSync(join(dir, 'secrets', `s${n - 1}`))) {
    if (dead || Date.now() > deadline) throw new Error(`${kind} ${n}: no files${stderr !== '' ? `: ${stderr}` : ''}`)
    await sleep(20)
  }
  return p
}

console.error(`store-memory: stores=${STORES.join(',')} node=${NODE} NODE_OPTIONS=${AGENT_NODE_OPTIONS} ${Object.entries(builds).map(([k, v]) => `${k}=${v}`).join(' ')} bao=${BAO ?? 'none'} runs=${RUNS} sizes=${SIZES.join(',')} settle=${SETTLE_S}s load=${loadavg().map((x) => x.toFixed(2)).join(' ')}`)
// Before any server starts: the OpenBao dev server is the same binary as the bao agent, and its pages are the agent's.
// A bao testenv has yet to build is built first, its server stopped, so no process maps it when it is dropped.
if (BAO !== undefined && !existsSync(BAO)) { await useServers(undefined, ['openbao']); await stopServers() }
dropPageCache([NODE, BAO])
const backends: Partial<Record<StoreName, Backend>> = {}
for (const s of STORES) backends[s] = await { aws, k8s, azure, vault }[s]()
if (BAO !== undefined) {
  // testenv builds the default --bao with the server (openbaoKv starts it).
  await openbaoKv()
  if (!existsSync(BAO)) throw new Error(`--bao ${BAO}: no such file (scripts/testenv builds OpenBao; --no-bao leaves the OpenBao agent out)`)
}
/** What runs beside each store's agents: the builds, and the OpenBao agent as the reference. */
const allKinds = [...Object.keys(builds), ...(BAO !== undefined ? ['bao'] : [])]
for (let run = 0; run < RUNS; run++) {
  const kinds = run % 2 === 0 ? allKinds : [...allKinds].reverse()
  for (const s of STORES) {
    const b = backends[s] as Backend
    const live: Array<{ kind: string, n: number, p: ChildProcess }> = []
    try {
      for (const n of SIZES) for (const kind of kinds) live.push({ kind, n, p: await start(b, kind, n) })
      await sleep(SETTLE_S * 1000)
      loads.push(loadavg()[0] as number)
      // What the RSS is made of, sampled with it: the process's own memory (heap, malloc) and the pages of files it maps (its binary's code, libc's).
      const samples = new Map(live.map((x) => [x, { rss: [] as number[], anon: [] as number[], file: [] as number[] }]))
      for (let i = 0; i < 5; i++) {
        for (const x of live) {
          const m = samples.get(x)
          const st = procMemoryKb(x.p.pid as number)
          m?.rss.push(st.rss); m?.anon.push(st.anon); m?.file.push(st.file)
        }
        await sleep(200)
      }
      for (const x of live) {
        const m = samples.get(x)
        const r = median(m?.rss ?? []) / 1024
        const peak = procMemoryKb(x.p.pid as number).hwm / 1024
        const anon = median(m?.anon ?? []) / 1024
        const file = median(m?.file ?? []) / 1024
        add(`${s}_${x.kind}_rss_mib_${x.n}`, r)
        add(`${s}_${x.kind}_peak_mib_${x.n}`, peak)
        add(`${s}_${x.kind}_anon_mib_${x.n}`, anon)
        add(`${s}_${x.kind}_file_mib_${x.n}`, file)
        console.error(`run ${run + 1} ${s} ${x.kind} ${x.n}: rss ${r.toFixed(1)} MiB (anon ${anon.toFixed(1)}, file ${file.toFixed(1)}), peak ${peak.toFixed(1)} MiB (load ${loadavg()[0]?.toFixed(2) ?? ''})`)
      }
    } finally {
      for (const x of live) x.p.kill('SIGKILL')
    }
  }
}
console.log(`\nbench/store-memory: ${RUNS} interleaved runs, medians; RSS after ${SETTLE_S} s settle; ${NODE}, NODE_OPTIONS=${AGENT_NODE_OPTIONS}; load avg (1 min) ${median(loads).toFixed(2)}`)
/** Each build's steady RSS over the OpenBao agent's beside it, per run (the median of those ratios). */
const ratios: Record<string, number> = {}
for (const s of STORES) {
  for (const n of SIZES) {
    const bao = fig[`${s}_bao_rss_mib_${n}`]
    for (const k of Object.keys(builds)) {
      const mine = fig[`${s}_${k}_rss_mib_${n}`]
      if (bao !== undefined && mine !== undefined) ratios[`${s}_${k}_rss_ratio_${n}`] = median(mine.map((v, i) => v / (bao[i] as number)))
    }
    console.log(`${s.padEnd(5)} ${String(n).padStart(5)} secrets  ` + allKinds.map((k) => `${k}: RSS ${median(fig[`${s}_${k}_rss_mib_${n}`] ?? []).toFixed(1)} MiB (anon ${median(fig[`${s}_${k}_anon_mib_${n}`] ?? []).toFixed(1)}), peak ${median(fig[`${s}_${k}_peak_mib_${n}`] ?? []).toFixed(1)} MiB${ratios[`${s}_${k}_rss_ratio_${n}`] !== undefined ? ` (${(ratios[`${s}_${k}_rss_ratio_${n}`] as number).toFixed(2)}x bao)` : ''}`).join('   '))
  }
}
console.log(JSON.stringify({ bench: 'store-memory', stores: STORES, runs: RUNS, load: Number(median(loads).toFixed(2)), ...Object.fromEntries(Object.entries(fig).map(([k, v]) => [k, Number(median(v).toFixed(1))])), ...Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, Number(v.toFixed(3))])) }))
for (const c of cleanups) await c()
await stopServers()
rmSync(work, { recursive: true, force: true })
process.exit(0)
