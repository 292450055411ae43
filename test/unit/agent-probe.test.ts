// Issue 11 item 2: the startup probe (`sidekey get --ready`) says which
// secret is missing and why; the kubelet copies that output into the events.
import t from 'tap'
import { join } from 'node:path'
import { startTestAgent } from '../helpers/agent.js'
import { runCli } from '../helpers/cli.js'
import { readyReasons } from '../../agent/cli/get-command.js'

t.test('get --ready prints missing: <name> (<code>: <message>) and exits 1', async (t) => {
  process.env.SK_PROBE_VAULT_TOKEN = 'dev-root-token'
  const h = await startTestAgent(t, {
    secrets: [
      { name: 'openai', ref: 'vault:secret/data/openai#api_key' },
      { name: 'anthropic', ref: 'env:SK_PROBE_NOT_SET' },
    ],
    stores: { vault: { type: 'vault', address: 'http://127.0.0.1:1', tokenEnv: 'SK_PROBE_VAULT_TOKEN', timeout: '1s' } },
  })
  await h.agent.synced
  // In the pod the probe finds the token through the agent's own SIDEKEY_CONFIG
  // (apiTokenFile; tokenFile in configs written before the rename).
  for (const key of ['apiTokenFile', 'tokenFile']) {
    const run = runCli(t, ['get', '--ready'], { SIDEKEY_ADDR: h.base, SIDEKEY_CONFIG: JSON.stringify({ [key]: join(h.root, 'token') }) })
    const { code } = await run.exited
    t.equal(code, 1)
    t.match(run.out[0], /^missing: openai \(SIDEKEY_E_UNAVAILABLE: .*127\.0\.0\.1:1.*\)$/, `${key}: names the secret`)
    t.match(run.out[1], /^missing: anthropic \(SIDEKEY_E_NOT_FOUND: .*SK_PROBE_NOT_SET.*\)$/)
    t.equal(run.out.length, 2, 'one line per missing secret')
  }
  // Without the token (a page that reached the port): a count, no names.
  const blind = runCli(t, ['get', '--ready'], { SIDEKEY_ADDR: h.base })
  t.equal((await blind.exited).code, 1)
  t.same(blind.out, ['not ready: 2 required secret(s) missing (the agent names them to a caller with its token)'])
})

t.test('get --ready is silent and exits 0 once ready', async (t) => {
  process.env.SK_PROBE_SET = 'value-probe-1234'
  const h = await startTestAgent(t, { secrets: [{ name: 'a', ref: 'env:SK_PROBE_SET' }] }, { values: ['value-probe-1234'] })
  await h.agent.synced
  const run = runCli(t, ['get', '--ready'], { SIDEKEY_ADDR: h.base })
  t.equal((await run.exited).code, 0)
  t.equal(run.out.join(''), '')
})

t.test('reasons are bounded', async (t) => {
  const missing = Array.from({ length: 50 }, (_, i) => `s${i}`)
  const errors = Object.fromEntries(missing.map((n) => [n, { code: 'SIDEKEY_E_DENIED', message: 'x'.repeat(5000) }]))
  const text = readyReasons(JSON.stringify({ ready: false, missing, errors }))
  const lines = text.trimEnd().split('\n')
  t.equal(lines.length, 11)
  t.equal(lines[10], '... and 40 more')
  t.ok(text.length < 4000)
  t.equal(readyReasons('{"ready":false,"missing":["a"]}'), 'missing: a (not fetched yet)\n')
})
