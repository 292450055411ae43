// bench/rotation: time from writing a new version in the backend to the new
// value being served by the local endpoint (GET /v1/secrets/:name), per
// backend, median and max over 20 rotations, at the default refresh interval
// (30s) and at 1s. Real servers from scripts/testenv; prints a table.
//
//   node dist/bench/rotation.js [vault aws azure k8s] [--rotations 20] [--intervals 30s,1s]
//
// At 1s (and for the watch-driven k8s backend) the rotations run one after
// another. At 30s, 20 sequential rotations would take ~10 minutes per
// backend, so 20 secrets are each rotated once at a random moment within one
// interval: 20 independent samples of the same quantity, in ~35 seconds.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { SecretsManagerClient, CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager'
import { SecretClient } from '@azure/keyvault-secrets'
import { loadConfig } from '../core/config/load.js'
import { startAgent, type RunningAgent } from '../agent/agent.js'
import { useServers, stopServers } from '../test/helpers/testenv.js'
import { startKeyVaultStandin, TENANT } from '../test/integration/azure-suite.js'

interface Backend {
  /** Printed name (marks a stand-in server). */
  readonly label?: string
  readonly store: Record<string, unknown>
  /** Creates n secrets with an initial value; returns their references. */
  setup (n: number, tag: string): Promise<string[]>
  write (i: number, tag: string, value: string): Promise<void>
}

// test/helpers/testenv.ts hooks into tap's root test for cleanup; in a bench there is no test to time out.
process.env.TAP_TIMEOUT = '0'

const args = process.argv.slice(2)
const opt = (name: string, def: string): string => { const i = args.indexOf(name); return i !== -1 && args[i + 1] !== undefined ? args[i + 1] as string : def }
const ROTATIONS = Number(opt('--rotations', '20'))
const INTERVALS = opt('--intervals', '30s,1s').split(',')
const wanted = args.filter((a, i) => !a.startsWith('--') && !(args[i - 1] ?? '').startsWith('--'))
const NAMES = wanted.length > 0 ? wanted : ['k8s', 'vault', 'aws', 'azure']
const work = mkdtempSync(join(tmpdir(), 'sidekey-bench-rotation-'))
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

async function vaultBackend (): Promise<Backend> {
  const { openbao } = await useServers(undefined, ['openbao'])
  const api = async (path: string, body: unknown): Promise<void> => {
    const r = await fetch(`${openbao.addr}/v1/${path}`, { method: 'POST', headers: { 'x-vault-token': openbao.rootToken }, body: JSON.stringify(body) })
    if (r.status >= 300) throw new Error(`openbao ${path}: ${r.status}`)
  }
  process.env.SIDEKEY_BENCH_VAULT_TOKEN = openbao.rootToken
  return {
    // The login method does not change how a rotation travels; a static token keeps the bench self-contained.
    store: { type: 'vault', address: openbao.addr, tokenEnv: 'SIDEKEY_BENCH_VAULT_TOKEN' },
    async setup (n, tag) {
      const refs: string[] = []
      for (let i = 0; i < n; i++) { await api(`secret/data/bench/${tag}-${i}`, { data: { v: 'initial' } }); refs.push(`vault:secret/data/bench/${tag}-${i}#v`) }
      return refs
    },
    async write (i, tag, value) { await api(`secret/data/bench/${tag}-${i}`, { data: { v: value } }) },
  }
}

async function awsBackend (): Promise<Backend> {
  const { moto } = await useServers(undefined, ['moto'])
  const admin = new SecretsManagerClient({ region: moto.region, endpoint: moto.endpoint, credentials: { accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey } })
  const tokenFile = join(work, 'aws-token')
  writeFileSync(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.c2ln')
  return {
    store: { type: 'aws', region: moto.region, endpoint: moto.endpoint, stsEndpoint: moto.endpoint, roleArn: 'arn:aws:iam::123456789012:role/bench', tokenFile },
    async setup (n, tag) {
      const refs: string[] = []
      for (let i = 0; i < n; i++) { await admin.send(new CreateSecretCommand({ Name: `bench/${tag}-${i}`, SecretString: 'initial' })); refs.push(`aws:bench/${tag}-${i}`) }
      return refs
    },
    async write (i, tag, value) { await admin.send(new PutSecretValueCommand({ SecretId: `bench/${tag}-${i}`, SecretString: value })) },
  }
}

async function azureBackend (): Promise<Backend> {
  const { aad, kube } = await useServers(undefined, ['aad', 'kube'])
  // lowkey-vault when it can be installed; else the Key Vault protocol stand-in of the tests (labelled in the output).
  let kv: { port: number, ca: string, vaultUrl: string, set: (name: string, value: string) => Promise<unknown> }
  let label = 'azure'
  try {
    const { lowkey } = await useServers(undefined, ['lowkey'])
    const admin = new SecretClient(lowkey.vaultUrl, { getToken: async () => ({ token: 'admin', expiresOnTimestamp: Date.now() + 3_600_000 }) }, { tlsOptions: { ca: lowkey.ca }, disableChallengeResourceVerification: true })
    kv = { port: lowkey.port, ca: lowkey.ca, vaultUrl: lowkey.vaultUrl, set: async (n, v) => await admin.setSecret(n, v) }
  } catch (err) {
    console.error(`azure: lowkey-vault unavailable (${(err as Error).message.split('\n').slice(-1)[0] ?? ''}); using the Key Vault protocol stand-in`)
    const standin = await startKeyVaultStandin(aad)
    kv = { port: standin.port, ca: standin.ca, vaultUrl: `https://localhost:${standin.port}`, set: standin.set }
    label = 'azure*'
  }
  const clientId = 'bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee'
  await kube.ensureNamespace('sidekey-bench')
  await kube.createServiceAccount('sidekey-bench', 'app')
  aad.addApp({ tenantId: TENANT, clientId, federatedCredentials: [{ issuer: kube.serviceAccountIssuer, subject: 'system:serviceaccount:sidekey-bench:app', issuerPublicKeys: [readFileSync(kube.serviceAccountKeyFile, 'utf8')] }] })
  const tokenFile = join(work, 'azure-token')
  writeFileSync(tokenFile, await kube.tokenRequest({ namespace: 'sidekey-bench', serviceAccount: 'app', audiences: ['api://AzureADTokenExchange'], expirationSeconds: 3600 }))
  const caFile = join(work, 'azure-ca.pem')
  writeFileSync(caFile, kv.ca + '\n' + aad.ca)
  return {
    label,
    store: { type: 'azure', vaultUrl: kv.vaultUrl, tenantId: TENANT, clientId, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true },
    async setup (n, tag) {
      const refs: string[] = []
      for (let i = 0; i < n; i++) { await kv.set(`bench-${tag}-${i}`, 'initial'); refs.push(`azure:bench-${tag}-${i}`) }
      return refs
    },
    async write (i, tag, value) { await kv.set(`bench-${tag}-${i}`, value) },
  }
}

async function k8sBackend (): Promise<Backend> {
  const { kube } = await useServers(undefined, ['kube'])
  const ns = 'sidekey-bench'
  await kube.ensureNamespace(ns)
  const put = async (name: string, value: string): Promise<void> => {
    const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name }, data: { v: Buffer.from(value).toString('base64') } }
    const r = await kube.request('PUT', `/api/v1/namespaces/${ns}/secrets/${name}`, body)
    if (r.status === 404) await kube.must('POST', `/api/v1/namespaces/${ns}/secrets`, body)
    else if (r.status >= 300) throw new Error(`PUT secret: ${r.status}`)
  }
  return {
    store: { type: 'k8s', kubeconfig: kube.kubeconfig, namespace: ns },
    async setup (n, tag) {
      const refs: string[] = []
      for (let i = 0; i < n; i++) { await put(`bench-${tag}-${i}`, 'initial'); refs.push(`k8s:bench-${tag}-${i}#v`) }
      return refs
    },
    async write (i, tag, value) { await put(`bench-${tag}-${i}`, value) },
  }
}

const makers: Record<string, () => Promise<Backend>> = { vault: vaultBackend, aws: awsBackend, azure: azureBackend, k8s: k8sBackend }

async function startBenchAgent (store: Record<string, unknown>, type: string, refs: string[], refresh: string): Promise<{ agent: RunningAgent, get: (name: string) => Promise<string>, dir: string }> {
  const dir = mkdtempSync(join(work, 'agent-'))
  const config = loadConfig({ dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0, grpc: 0, grpcEnabled: false }, refresh, logLevel: 'silent', stores: { [type]: store }, secrets: refs.map((ref, i) => ({ name: `s${i}`, ref })) })
  const agent = await startAgent(config, { logger: pino({ level: 'silent' }), defaultMetrics: false })
  await agent.synced
  const token = readFileSync(join(dir, 'token'), 'utf8').trim()
  const get = async (name: string): Promise<string> => {
    const r = await fetch(`http://127.0.0.1:${agent.httpPort}/v1/secrets/${name}`, { headers: { 'x-sidekey-token': token } })
    return await r.text()
  }
  return { agent, get, dir }
}

/** Polls the local endpoint until it serves `value`; returns ms since `t0`. */
async function served (get: (name: string) => Promise<string>, name: string, value: string, t0: number, limitMs: number): Promise<number> {
  for (;;) {
    if ((await get(name)) === value) return Date.now() - t0
    if (Date.now() - t0 > limitMs) return NaN
    await sleep(5)
  }
}

function stats (xs: number[]): { median: number, max: number, n: number } {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  const mid = s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2] as number : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2
  return { median: mid, max: s.length === 0 ? NaN : s[s.length - 1] as number, n: s.length }
}

async function run (name: string, b: Backend, interval: string): Promise<number[]> {
  const intervalMs = interval.endsWith('ms') ? Number(interval.slice(0, -2)) : interval.endsWith('s') ? Number(interval.slice(0, -1)) * 1000 : Number(interval.slice(0, -1)) * 60_000
  const tag = `${interval}-${Date.now().toString(36)}`
  const parallel = name !== 'k8s' && intervalMs > 5000
  const n = parallel ? ROTATIONS : 1
  const refs = await b.setup(n, tag)
  const { agent, get } = await startBenchAgent(b.store, name, refs, interval)
  const limit = intervalMs * 1.2 + 10_000
  try {
    if (parallel) {
      return await Promise.all(refs.map(async (_, i) => {
        await sleep(Math.random() * intervalMs)
        const value = `rotated-${i}-${Math.random().toString(36).slice(2)}`
        const t0 = Date.now()
        await b.write(i, tag, value)
        return await served(get, `s${i}`, value, t0, limit)
      }))
    }
    const out: number[] = []
    for (let r = 0; r < ROTATIONS; r++) {
      // Write at a random phase of the refresh cycle, as a real rotation would.
      await sleep(Math.random() * Math.min(intervalMs, 1000))
      const value = `rotated-${r}-${Math.random().toString(36).slice(2)}`
      const t0 = Date.now()
      await b.write(0, tag, value)
      out.push(await served(get, 's0', value, t0, limit))
    }
    return out
  } finally {
    await agent.close()
  }
}

const rows: string[] = []
for (const name of NAMES) {
  const make = makers[name]
  if (make === undefined) { console.error(`unknown backend ${name}`); continue }
  let b: Backend
  try {
    b = await make()
  } catch (err) {
    rows.push(`${name.padEnd(6)} | servers unavailable: ${(err as Error).message.split('\n')[0] ?? ''}`)
    continue
  }
  for (const interval of INTERVALS) {
    const xs = await run(name, b, interval)
    const s = stats(xs)
    const line = `${(b.label ?? name).padEnd(6)} | refresh ${interval.padEnd(4)} | n=${String(s.n).padStart(2)}/${ROTATIONS} | median ${s.median.toFixed(0).padStart(6)} ms | max ${s.max.toFixed(0).padStart(6)} ms`
    console.log(line)
    rows.push(line)
  }
}
console.log('\nbench/rotation: write in the backend -> new value served by GET /v1/secrets/:name (azure* = Key Vault protocol stand-in)')
for (const r of rows) console.log(r)
await stopServers()
rmSync(work, { recursive: true, force: true })
process.exit(0)
