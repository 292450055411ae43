// The Vault KV read drop-in against a real agent fetching from a real OpenBao,
// read by clients nobody here wrote: the `bao` CLI (`bao kv get` with
// VAULT_ADDR pointed at the agent) and the node-vault library.
import t from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { startAuditedOpenBao, startHarness, eventually, WAIT } from './backend-harness.js'
import { tempDir } from '../helpers/agent.js'
import { openbaoApi } from '../helpers/testenv.js'

const bao = await startAuditedOpenBao(t)
const REPO = join(import.meta.dirname, '..', '..', '..')
const installDir = execFileSync(join(REPO, 'scripts', 'testenv'), ['versions'], { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('openbao '))?.split(' ')[2]
const BAO = join(installDir as string, 'bin', 'bao')

const api = openbaoApi(bao)

const V1 = 'sk-vcompat-value-one-5b7c'
const V2 = 'sk-vcompat-value-two-6d8e'
const KV1 = 'kv1-compat-value-1f2e'
const FIELD = 'field-compat-value-3a4b'
const OTHER = 'never-served-value-5c6d'
const UNBOUND = 'unbound-compat-value-7e8f'
await api('POST', 'secret/data/openai', { data: { api_key: V1, org: 'org-1' } })
await api('POST', 'secret/data/fields', { data: { key: FIELD, other: OTHER } })
await api('POST', 'secret/data/unbound', { data: { x: UNBOUND } })
await api('POST', 'sys/mounts/kv1', { type: 'kv', options: { version: '1' } })
await api('POST', 'kv1/app', { password: KV1 })

process.env.SIDEKEY_TEST_VAULT_TOKEN = bao.rootToken
const h = await startHarness(t, {
  refresh: '1s',
  stores: { vault: { type: 'vault', address: bao.addr, tokenEnv: 'SIDEKEY_TEST_VAULT_TOKEN', timeout: '2s' } },
  secrets: [
    { name: 'openai', ref: 'vault:secret/data/openai' },
    { name: 'openai-v1', ref: 'vault:secret/data/openai@1' },
    { name: 'app', ref: 'vault:kv1/app' },
    { name: 'field', ref: 'vault:secret/data/fields#key' },
  ],
})
for (const v of [V1, V2, KV1, FIELD, OTHER, UNBOUND]) h.values.add(v)
await h.agent.synced

const home = tempDir(t, 'sidekey-bao-home-')
async function baoCli (args: string[], token = h.token): Promise<{ code: number | null, out: string, err: string }> {
  // A clean environment: no token helper file, no namespace, the agent as the server.
  // Async: the agent runs in this process, so a synchronous child would block it.
  const env = { PATH: process.env.PATH ?? '', HOME: home, VAULT_ADDR: h.base, BAO_ADDR: h.base, VAULT_TOKEN: token, BAO_TOKEN: token }
  return await new Promise((resolve) => {
    execFile(BAO, args, { env, encoding: 'utf8', timeout: 30_000 }, (err, out, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, out, err: stderr })
    })
  })
}

t.test('bao kv get: KV v2 (path and -mount forms), -field, -version, KV v1', async (t) => {
  const j = await baoCli(['kv', 'get', '-format=json', 'secret/openai'])
  t.equal(j.code, 0, j.err)
  const parsed = JSON.parse(j.out) as { data: { data: Record<string, string>, metadata: { version: number } } }
  t.same(parsed.data.data, { api_key: V1, org: 'org-1' })
  t.equal(parsed.data.metadata.version, 1)
  const m = await baoCli(['kv', 'get', '-mount=secret', '-field=api_key', 'openai'])
  t.equal(m.code, 0, m.err)
  t.equal(m.out, V1, '-mount form and -field print the value alone')
  const table = await baoCli(['kv', 'get', 'secret/openai'])
  t.match(table.out, /=+ Secret Path =+\s+secret\/data\/openai/)
  t.match(table.out, /created_time/)
  const v1 = await baoCli(['kv', 'get', '-format=json', 'kv1/app'])
  t.equal(v1.code, 0, v1.err)
  t.same((JSON.parse(v1.out) as { data: unknown }).data, { password: KV1 }, 'KV v1 read shape')
  const f = await baoCli(['kv', 'get', '-format=json', 'secret/fields'])
  t.same((JSON.parse(f.out) as { data: { data: unknown } }).data.data, { key: FIELD }, 'only the bound field')
  t.notOk(f.out.includes(OTHER))
})

t.test('bao kv get: unbound path, wrong token, missing token are refused as Vault refuses', async (t) => {
  const u = await baoCli(['kv', 'get', 'secret/unbound'])
  t.not(u.code, 0)
  t.match(u.err, /403|permission denied/)
  t.notOk(u.err.includes(UNBOUND) || u.out.includes(UNBOUND))
  const w = await baoCli(['kv', 'get', 'secret/openai'], 'wrong-token-wrong-token')
  t.not(w.code, 0)
  t.match(w.err, /permission denied/)
  t.notOk(w.out.includes(V1) || w.err.includes(V1))
  const r = await fetch(`${h.base}/v1/secret/data/openai`, { headers: { 'x-vault-token': '' } })
  t.equal(r.status, 403)
  t.equal(((await r.json()) as { code: string }).code, 'SIDEKEY_E_UNAUTHENTICATED')
})

t.test('node-vault (a client library): read, 403 on unbound, 404 on an unbound version', async (t) => {
  const nodeVault = createRequire(import.meta.url)('node-vault') as (o: Record<string, unknown>) => { read: (p: string) => Promise<any> }
  const client = nodeVault({ endpoint: h.base, token: h.token, apiVersion: 'v1' })
  const r = await client.read('secret/data/openai')
  t.equal(r.data.data.api_key, V1)
  t.equal(r.data.metadata.version, 1)
  t.equal((await client.read('kv1/app')).data.password, KV1)
  const err = await client.read('secret/data/unbound').then(() => undefined, (e: { response?: { statusCode?: number } }) => e)
  t.equal(err?.response?.statusCode, 403)
  const nov = await client.read('secret/data/openai?version=7').then(() => undefined, (e: { response?: { statusCode?: number } }) => e)
  t.equal(nov?.response?.statusCode, 404)
  const bad = nodeVault({ endpoint: h.base, token: 'wrong-token-wrong-token' })
  const denied = await bad.read('secret/data/openai').then(() => undefined, (e: { response?: { statusCode?: number } }) => e)
  t.equal(denied?.response?.statusCode, 403)
})

t.test('rotation: current follows the published set, a pinned version stays', async (t) => {
  await api('POST', 'secret/data/openai', { data: { api_key: V2, org: 'org-1' } })
  await eventually(() => h.file('openai')?.includes(V2) === true, 'the file to rotate', WAIT)
  const cur = await baoCli(['kv', 'get', '-format=json', 'secret/openai'])
  const c = JSON.parse(cur.out) as { data: { data: Record<string, string>, metadata: { version: number } } }
  t.equal(c.data.data.api_key, V2)
  t.equal(c.data.metadata.version, 2)
  const old = await baoCli(['kv', 'get', '-version=1', '-field=api_key', 'secret/openai'])
  t.equal(old.code, 0, old.err)
  t.equal(old.out, V1, 'version 1 is served because the pod binds @1')
})

t.test("Sidekey's own /v1 routes are untouched; audit lines and metrics carry no value", async (t) => {
  t.equal((await h.get('openai')).status, 200)
  const list = await fetch(`${h.base}/v1/secrets`, { headers: { 'x-sidekey-token': h.token } })
  t.equal(list.status, 200)
  // The audit trail writes its counted lines within a second.
  t.ok(await eventually(() => h.logs.some((l) => l.includes('vault:/v1/:kv') && l.includes('"secret":"openai"')), 'the compat read in the audit trail', 5000), 'compat reads are audited')
  t.match(await h.metrics(), /route="vault:\/v1\/:kv",status="403"/)
})
