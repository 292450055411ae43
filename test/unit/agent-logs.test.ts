// Issue 11 item 1: in a pod stdout is a pipe. Operational lines (and above all
// warnings) must reach it at once; audit lines may wait at most a second, and
// none may be lost on a clean exit.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '../helpers/agent.js'
import { runCli } from '../helpers/cli.js'

function agentConfig (root: string): string {
  const file = join(root, 'agent.json')
  writeFileSync(file, JSON.stringify({
    dir: join(root, 'secrets'),
    apiTokenFile: join(root, 'token'),
    listen: { http: 0, grpcEnabled: false },
    secrets: [
      { name: 'a', ref: 'env:SK_LOGTEST_A' },
      // A backend nobody listens on: the refresh fails and is retried.
      { name: 'b', ref: 'vault:secret/data/app#k', required: false },
    ],
    stores: { vault: { type: 'vault', address: 'http://127.0.0.1:1', tokenEnv: 'SK_LOGTEST_VAULT_TOKEN', timeout: '1s' } },
  }))
  return file
}

const json = (l: string): Record<string, unknown> => { try { return JSON.parse(l) as Record<string, unknown> } catch { return {} } }

t.test('a refresh failure is on stdout while the agent runs; audit lines within a second and on exit', async (t) => {
  const root = tempDir(t)
  const run = runCli(t, ['agent', '--config', agentConfig(root)], { SK_LOGTEST_A: 'value-a-123456', SK_LOGTEST_VAULT_TOKEN: 'dev-root-token' })
  const listening = json(await run.waitLine((l) => json(l).msg === 'agent listening', 10_000))
  const warn = json(await run.waitLine((l) => json(l).msg === 'secret refresh failed', 10_000))
  t.equal(warn.level, 'warn')
  t.equal(warn.code, 'SIDEKEY_E_UNAVAILABLE')
  t.equal(run.child.exitCode, null, 'the agent is still running: the warning was not held back until exit')

  const base = `http://${String(listening.http)}`
  const { readFileSync } = await import('node:fs')
  const token = readFileSync(join(root, 'token'), 'utf8').trim()
  const get = async (): Promise<number> => (await fetch(`${base}/v1/secrets/a`, { headers: { 'x-sidekey-token': token } })).status
  t.equal(await get(), 200)
  const started = Date.now()
  const access = json(await run.waitLine((l) => json(l).msg === 'access', 3000))
  t.equal(access.component, 'audit')
  t.ok(Date.now() - started < 3000, 'the audit line arrived within the flush interval')

  // Accesses still counted in the audit trail or in the buffer at SIGTERM are
  // written on exit (lines carry a count: equal accesses share one line).
  const counted = (): number => run.out.filter((l) => json(l).msg === 'access').reduce((n, l) => n + Number(json(l).count), 0)
  const before = counted()
  for (let i = 0; i < 3; i++) t.equal(await get(), 200)
  run.child.kill('SIGTERM')
  const { code } = await run.exited
  t.equal(code, 0)
  t.equal(counted(), before + 3, 'every access reached stdout')
  t.notOk(run.out.join('\n').includes('value-a-123456'), 'no value in the logs')
})
