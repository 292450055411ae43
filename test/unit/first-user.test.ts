// Issue 11 item 8: the small things a first user hit, each as they saw it.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { V1Pod } from '@kubernetes/client-node'
import { loadConfig } from '../../core/config/load.js'
import { render } from '../../agent/render.js'
import { parseTemplate } from '../../core/template.js'
import { bytesData } from '../../agent/providers/secret-data.js'
import { startAgent } from '../../agent/agent.js'
import { isSidekeyError } from '../../core/errors.js'
import { mutatePod } from '../../injector/mutate.js'
import { captureLogger, startTestAgent, tempDir } from '../helpers/agent.js'
import { BIN, runCli } from '../helpers/cli.js'
import { FIXTURES, REPO, loadFixture, pod, testConfig } from './injector-helpers.js'

const cli = (args: string[], opts: { input?: string, env?: Record<string, string> } = {}) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', input: opts.input, env: { ...process.env, ...opts.env } })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

t.test('--help of every subcommand exits 0 and prints usage', async (t) => {
  for (const sub of ['get', 'agent', 'local', 'inject', 'injector']) {
    const r = cli([sub, '--help'])
    t.equal(r.code, 0, `${sub} --help: ${r.err}`)
    t.match(r.out, /Usage: sidekey/, sub)
    t.notMatch(r.err, /outputHelp/, sub)
  }
  t.equal(cli(['get', '--no-such-flag']).code, 2, 'a usage error is 2, not a Sidekey error')
})

t.test('the built bin is executable (npx sidekey)', async (t) => {
  t.ok((statSync(BIN).mode & 0o111) !== 0)
})

t.test('inject without -c says the -c option exists', async (t) => {
  const r = cli(['inject', '-f', '-'], { input: JSON.stringify(pod({ 'sidekey.dev/secret-a': 'k8s:a' })) })
  t.equal(r.code, 0)
  t.match(r.err, /no -c\/--config given.*pass -c/)
  const v = cli(['inject', '-f', '-'], { input: JSON.stringify(pod({ 'sidekey.dev/secret-a': 'vault:secret/data/a#k' })) })
  t.equal(v.code, 1)
  t.match(v.err, /without -c\/--config only k8s: references are offered; pass -c/)
})

t.test('SIDEKEY_ADDR without http:// works; another scheme is named as the problem', async (t) => {
  process.env.SK_FIRST_A = 'value-first-a-1234'
  const h = await startTestAgent(t, { secrets: [{ name: 'a', ref: 'env:SK_FIRST_A' }] }, { values: ['value-first-a-1234'] })
  await h.agent.synced
  const tokenFile = join(h.root, 'token')
  const bare = runCli(t, ['get', 'a'], { SIDEKEY_ADDR: `127.0.0.1:${h.agent.httpPort}`, SIDEKEY_TOKEN_FILE: tokenFile })
  t.equal((await bare.exited).code, 0, bare.err.join('\n'))
  t.equal(bare.out.join('\n') + '', '', 'value printed without a newline, so no complete line')
  const tls = runCli(t, ['get', 'a'], { SIDEKEY_ADDR: `https://127.0.0.1:${h.agent.httpPort}`, SIDEKEY_TOKEN_FILE: tokenFile })
  t.equal((await tls.exited).code, 1)
  t.match(tls.err.join('\n'), /SIDEKEY_E_CLIENT: SIDEKEY_ADDR must be http:\/\/<host>:<port>/)
})

t.test('local mode: the banner prints the export line, the README Python snippet works with it, Ctrl-C removes the files', async (t) => {
  const root = tempDir(t)
  const cfg = join(root, 'agent.json')
  writeFileSync(cfg, JSON.stringify({
    secrets: [{ name: 'openai', ref: 'local:openai#api_key' }],
    dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), listen: { http: 0, grpcEnabled: false },
    stores: { local: { type: 'local', path: join(root, 'local.json'), dev: true } },
  }))
  const run = runCli(t, ['agent', '--config', cfg, '--local-demo'])
  const line = await run.waitLine((l) => l.includes('export SIDEKEY_ADDR='), 15_000, 'err')
  const m = /export SIDEKEY_ADDR=(\S+) SIDEKEY_TOKEN_FILE=(\S+)/.exec(line)
  t.ok(m !== null, line)
  const py = spawnSync('python3', ['-c', [
    'import os, urllib.request',
    'req = urllib.request.Request(os.environ["SIDEKEY_ADDR"] + "/v1/secrets/openai",',
    '                             headers={"X-Sidekey-Token": open(os.environ["SIDEKEY_TOKEN_FILE"]).read().strip()})',
    'print(urllib.request.urlopen(req).read().decode())',
  ].join('\n')], { encoding: 'utf8', env: { ...process.env, SIDEKEY_ADDR: m?.[1] ?? '', SIDEKEY_TOKEN_FILE: m?.[2] ?? '' } })
  t.equal(py.status, 0, py.stderr)
  t.equal(py.stdout.trim(), 'demo-openai-api_key')
  t.ok(existsSync(join(root, 'secrets', 'openai')))
  run.child.kill('SIGINT')
  t.equal((await run.exited).code, 0)
  t.same(readdirSync(join(root, 'secrets')), [], 'no plaintext left on disk')
})

t.test('file modes: write/execute bits and unreadable modes are refused with the reason', async (t) => {
  const cfg = testConfig()
  for (const mode of ['0777', '0200', '0644', '0000']) {
    t.throws(() => mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/mode-a': mode }), cfg, 'team-a'), { code: 'SIDEKEY_E_ANNOTATION', message: /^sidekey.dev\/mode-a: (grants write or execute|does not let the owner read)/ }, mode)
  }
  t.throws(() => loadConfig({ dir: '/tmp/x', secrets: [{ name: 'a', ref: 'env:A', mode: '0777' }] }), { code: 'SIDEKEY_E_CONFIG', message: /secrets\[0\]\.mode: "0777" grants write or execute/ })

  // 0400: the agent owns the files as 65532, the app runs as the image's user, no fsGroup.
  t.throws(() => mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/mode-a': '0400' }), cfg, 'team-a'),
    { code: 'SIDEKEY_E_ANNOTATION', message: 'sidekey.dev/mode-a: 0400 lets only the owner read, but container "app" runs as the image\'s user and the files are owned by uid 65532 with no fsGroup; use 0444, set spec.securityContext.fsGroup with 0440, or run the pod as uid 65532' })
  t.throws(() => mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/mode-a': '0440' }, { securityContext: { runAsUser: 1000 }, containers: [{ name: 'app', image: 'x', securityContext: { runAsUser: 2000 } }] }), cfg, 'team-a'),
    { message: /0440 lets only the owner and group read, but container "app" runs as uid 2000/ })
  // Readable: same uid; group read with fsGroup; the notebook fixture (uid 1000, fsGroup 100, 0400).
  t.equal(mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/mode-a': '0400' }, { securityContext: { runAsUser: 1000 } }), cfg, 'team-a').outcome, 'injected')
  t.equal(mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/mode-a': '0440' }, { securityContext: { fsGroup: 100 } }), cfg, 'team-a').outcome, 'injected')
  t.equal(mutatePod(loadFixture('notebook.yaml')[0] as V1Pod, cfg, 'team-a').outcome, 'injected')
})

t.test('"ready" is not logged before a port clash stops the agent', async (t) => {
  const root = tempDir(t)
  process.env.SK_FIRST_B = 'value-first-b-1234'
  const input = { secrets: [{ name: 'b', ref: 'env:SK_FIRST_B' }], dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), listen: { http: 0, grpcEnabled: false } }
  const first = await startAgent(loadConfig(input), { logger: captureLogger([]), defaultMetrics: false })
  await first.synced
  await first.close()
  // A previous run's files make the store ready before the listener exists.
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const port = (busy.address() as { port: number }).port
  const logs: string[] = []
  await t.rejects(startAgent(loadConfig({ ...input, listen: { http: port, grpcEnabled: false } }), { logger: captureLogger(logs), defaultMetrics: false }), { code: 'SIDEKEY_E_CONFIG', message: /cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/ })
  t.notOk(logs.some((l) => l.includes('ready')), logs.join('\n'))
})

t.test('format env of a single value is SIDEKEY_E_FORMAT', async (t) => {
  t.throws(() => render(bytesData(Buffer.from('sk-live-123456')), 'env', 'secret "openai"', 'api_key'), { code: 'SIDEKEY_E_FORMAT', message: /^secret "openai": format env needs a key\/value secret/ })
  let msg = ''
  try { render(bytesData(Buffer.from('sk-live-123456')), 'env', 'secret "openai"') } catch (err) { msg = isSidekeyError(err) ? err.message : '' }
  t.notMatch(msg, /sk-live/, 'the value is not in the message')
  t.equal(render(bytesData(Buffer.from('{"A":"1"}')), 'env', 'secret "x"').toString(), 'A="1"\n', 'a JSON object still renders')
})

t.test('templates can URL-encode a secret', async (t) => {
  const tpl = parseTemplate('postgres://app:{{urlencode (secret "vault:db#password")}}@db:5432/app')
  t.same(tpl.refs.map((r) => r.raw), ['vault:db#password'])
  t.equal(tpl.render(new Map([['vault:db#password', 'p@ss/w:rd?&']])), 'postgres://app:p%40ss%2Fw%3Ard%3F%26@db:5432/app')
  t.throws(() => parseTemplate('{{urlencode "vault:db#password"}}'), { code: 'SIDEKEY_E_TEMPLATE', message: /urlencode takes one \(secret "<ref>"\)/ })
  t.throws(() => parseTemplate('{{urlencode (lookup "x")}}'), { code: 'SIDEKEY_E_TEMPLATE', message: /only the secret helper is allowed, found helper lookup/ })
})

t.test('the injector Deployment does not ask for system-cluster-critical unless the component is used', async (t) => {
  const dep = parseYaml(readFileSync(join(REPO, 'manifests/base/deployment.yaml'), 'utf8')) as { spec: { template: { spec: Record<string, unknown> } } }
  t.equal(dep.spec.template.spec.priorityClassName, undefined)
  const comp = parseYaml(readFileSync(join(REPO, 'manifests/components/critical-priority/kustomization.yaml'), 'utf8')) as { kind: string, resources: string[] }
  t.equal(comp.kind, 'Component')
  const quota = parseYaml(readFileSync(join(REPO, 'manifests/components/critical-priority', comp.resources[0] ?? ''), 'utf8')) as { spec: { scopeSelector: { matchExpressions: Array<{ values: string[] }> } } }
  t.same(quota.spec.scopeSelector.matchExpressions[0]?.values, ['system-cluster-critical'])
})

t.test('offline inject prints initContainers before containers', async (t) => {
  const r = cli(['inject', '-f', join(FIXTURES, 'deployment-mcp.yaml'), '-c', join(REPO, 'manifests/base/configmap.yaml')])
  t.equal(r.code, 0, r.err)
  const init = r.out.indexOf('      initContainers:')
  const main = r.out.indexOf('      containers:')
  t.ok(init !== -1 && main !== -1 && init < main, r.out)
})
