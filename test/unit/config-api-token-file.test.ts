// Top-level `tokenFile` (the local API token) was renamed `apiTokenFile`:
// inside a store, tokenFile is the service-account token. The old name still
// works, and the agent says once at start which key to use instead.
import t, { type Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../core/config/load.js'
import { tempDir } from '../helpers/agent.js'
import { runCli } from '../helpers/cli.js'

const base = { dir: '/tmp/sidekey-x/secrets', secrets: [{ name: 'a', ref: 'env:A' }] }

t.test('apiTokenFile is the local API token; no deprecation', async (t) => {
  const cfg = loadConfig({ ...base, apiTokenFile: '/tmp/sidekey-x/api-token' })
  t.equal(cfg.apiTokenFile, '/tmp/sidekey-x/api-token')
  t.same(cfg.deprecations, [])
  t.equal(loadConfig(base).apiTokenFile, '/tmp/sidekey-x/sidekey-token', 'default next to dir')
})

t.test('the old top-level tokenFile still works and yields one deprecation', async (t) => {
  const cfg = loadConfig({ ...base, tokenFile: '/tmp/sidekey-x/old-token' })
  t.equal(cfg.apiTokenFile, '/tmp/sidekey-x/old-token')
  t.equal(cfg.deprecations.length, 1)
  t.match(cfg.deprecations[0], { field: 'tokenFile', use: 'apiTokenFile', message: /config\.tokenFile is deprecated: rename it to "apiTokenFile"/ })
  t.notOk('tokenFile' in cfg, 'one name in the loaded config')
})

t.test('both names at once is an error naming the one to keep', async (t) => {
  t.throws(() => loadConfig({ ...base, tokenFile: '/a', apiTokenFile: '/b' }), { code: 'SIDEKEY_E_CONFIG', message: /config\.tokenFile: .*both are set; keep only "apiTokenFile"/ })
})

t.test('a store\'s tokenFile (service-account token) is not renamed and yields no deprecation', async (t) => {
  const cfg = loadConfig({ ...base, stores: { v: { type: 'vault', address: 'http://127.0.0.1:1', role: 'r', tokenFile: '/sa/token' } } })
  t.equal((cfg.stores.v as { tokenFile?: string }).tokenFile, '/sa/token')
  t.same(cfg.deprecations, [])
})

async function runInitOnly (t: Test, key: string): Promise<{ code: number | null, warnings: Array<Record<string, unknown>>, token: string }> {
  const root = tempDir(t)
  const file = join(root, 'agent.json')
  writeFileSync(file, JSON.stringify({
    dir: join(root, 'secrets'), [key]: join(root, 'token'), listen: { http: 0, grpcEnabled: false },
    exitAfterSync: true, secrets: [{ name: 'a', ref: 'env:SK_APITOKEN_A' }],
  }))
  const run = runCli(t, ['agent', '--config', file], { SK_APITOKEN_A: 'value-apitoken-1234' })
  const { code } = await run.exited
  const lines = run.out.flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>] } catch { return [] } })
  return { code, warnings: lines.filter((l) => l.level === 'warn' && l.field === 'tokenFile'), token: readFileSync(join(root, 'token'), 'utf8').trim() }
}

t.test('the agent logs the deprecation once at start, and uses the file', async (t) => {
  const old = await runInitOnly(t, 'tokenFile')
  t.equal(old.code, 0)
  t.equal(old.warnings.length, 1, 'one warning')
  t.match(old.warnings[0], { use: 'apiTokenFile', msg: /rename it to "apiTokenFile"/ })
  t.ok(old.token.length >= 16, 'the API token was written to the old key\'s file')

  const now = await runInitOnly(t, 'apiTokenFile')
  t.equal(now.code, 0)
  t.equal(now.warnings.length, 0, 'no warning with the new key')
  t.ok(now.token.length >= 16, 'the API token was written to apiTokenFile')
})
