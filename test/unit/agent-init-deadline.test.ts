// Issue 11 item 3: an init-only agent (Jobs, CronJobs) never hangs. A
// permanent error fails within a few attempts, anything else at the sync
// deadline; the exit is non-zero and the termination message carries the code.
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import type { V1Container } from '@kubernetes/client-node'
import { tempDir } from '../helpers/agent.js'
import { runCli } from '../helpers/cli.js'
import { mutatePod } from '../../injector/mutate.js'
import { pod, testConfig } from './injector-helpers.js'

function initConfig (root: string, secrets: unknown[], extra: Record<string, unknown> = {}): string {
  const file = join(root, 'agent.json')
  writeFileSync(file, JSON.stringify({
    dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), listen: { http: 0, grpcEnabled: false },
    exitAfterSync: true, secrets, ...extra,
  }))
  return file
}

t.test('a permanent error (not found) fails after a few attempts, with the code in the termination message', async (t) => {
  const root = tempDir(t)
  const term = join(root, 'termination-log')
  const started = Date.now()
  const run = runCli(t, ['agent', '--config', initConfig(root, [{ name: 'openai', ref: 'env:SK_INIT_NOT_SET' }])], { SIDEKEY_TERMINATION_MESSAGE_PATH: term })
  const { code } = await run.exited
  t.equal(code, 1)
  t.ok(Date.now() - started < 20_000, 'well before the 5m default deadline')
  const msg = readFileSync(term, 'utf8')
  t.match(msg, /^SIDEKEY_E_NOT_FOUND: init-only: secret "openai" cannot be fetched: .*SK_INIT_NOT_SET/)
  t.match(run.err.join('\n'), /sidekey: SIDEKEY_E_NOT_FOUND: init-only: secret "openai"/)
})

t.test('an unreachable backend fails at syncDeadline with SIDEKEY_E_DEADLINE and the last error', async (t) => {
  const root = tempDir(t)
  const term = join(root, 'termination-log')
  const started = Date.now()
  const run = runCli(t, ['agent', '--config', initConfig(root, [{ name: 'openai', ref: 'vault:secret/data/openai#k' }], {
    syncDeadline: '3s',
    stores: { vault: { type: 'vault', address: 'http://127.0.0.1:1', tokenEnv: 'SK_INIT_VAULT_TOKEN', timeout: '1s' } },
  })], { SIDEKEY_TERMINATION_MESSAGE_PATH: term, SK_INIT_VAULT_TOKEN: 'dev-root-token' })
  const { code } = await run.exited
  t.equal(code, 1)
  const took = Date.now() - started
  t.ok(took >= 3000 && took < 15_000, `gave up at the deadline (${took} ms)`)
  t.match(readFileSync(term, 'utf8'), /^SIDEKEY_E_DEADLINE: init-only: not every required secret was fetched within syncDeadline \(3s\); missing openai \(SIDEKEY_E_UNAVAILABLE: /)
})

t.test('success still exits 0 and writes no termination message', async (t) => {
  const root = tempDir(t)
  const term = join(root, 'termination-log')
  const run = runCli(t, ['agent', '--config', initConfig(root, [{ name: 'a', ref: 'env:SK_INIT_SET' }])], { SIDEKEY_TERMINATION_MESSAGE_PATH: term, SK_INIT_SET: 'value-init-123456' })
  t.equal((await run.exited).code, 0)
  t.equal(readFileSync(join(root, 'secrets', 'a'), 'utf8'), 'value-init-123456')
  t.throws(() => readFileSync(term))
})

// An init-only agent has no local endpoint: a taken port, gRPC's or HTTP's, does not stop it.
for (const [what, listen] of [
  ['gRPC', (port: number) => ({ http: 0, grpc: port })],
  ['HTTP', (port: number) => ({ http: port, grpcEnabled: false })],
] as const) {
  t.test(`init-only has no ${what} endpoint: a taken ${what} port does not stop it`, async (t) => {
    const root = tempDir(t)
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { taken.close() })
    const port = (taken.address() as AddressInfo).port
    const run = runCli(t, ['agent', '--config', initConfig(root, [{ name: 'a', ref: 'env:SK_INIT_SET' }], { listen: listen(port) })], { SK_INIT_SET: 'value-init-123456' })
    t.equal((await run.exited).code, 0, run.err.join('\n'))
    t.equal(readFileSync(join(root, 'secrets', 'a'), 'utf8'), 'value-init-123456')
  })
}

const envOf = (c: V1Container | undefined, name: string): string | undefined => c?.env?.find((e) => e.name === name)?.value

t.test('the injector passes sidekey.dev/sync-deadline and points the termination message at the container\'s path', async (t) => {
  const cfg = testConfig()
  const base = { 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/inject-mode': 'init-only' }
  const init = mutatePod(pod({ ...base, 'sidekey.dev/sync-deadline': '90s' }), cfg, 'team-a').pod.spec!.initContainers![0]!
  t.equal(JSON.parse(envOf(init, 'SIDEKEY_CONFIG') ?? '{}').syncDeadline, '90s')
  t.equal(init.terminationMessagePath, '/dev/termination-log')
  t.equal(envOf(init, 'SIDEKEY_TERMINATION_MESSAGE_PATH'), init.terminationMessagePath)
  t.equal(init.terminationMessagePolicy, 'FallbackToLogsOnError')

  const dflt = mutatePod(pod(base), cfg, 'team-a').pod.spec!.initContainers![0]!
  t.equal(JSON.parse(envOf(dflt, 'SIDEKEY_CONFIG') ?? '{}').syncDeadline, '5m', 'default from the injector config')
  const cfg2 = testConfig({ syncDeadline: '2m' })
  t.equal(JSON.parse(envOf(mutatePod(pod(base), cfg2, 'team-a').pod.spec!.initContainers![0], 'SIDEKEY_CONFIG') ?? '{}').syncDeadline, '2m')

  const side = mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/sync-deadline': '2m' }), cfg, 'team-a').pod.spec!.initContainers![0]!
  t.equal(side.startupProbe?.failureThreshold, 120, 'sidecar: the startup probe waits as long')

  for (const bad of ['soon', '1s', '48h']) {
    t.throws(() => mutatePod(pod({ ...base, 'sidekey.dev/sync-deadline': bad }), cfg, 'team-a'), { code: 'SIDEKEY_E_ANNOTATION', message: /^sidekey.dev\/sync-deadline: (is not a duration|must be between 10s and 24h)/ })
  }
})
