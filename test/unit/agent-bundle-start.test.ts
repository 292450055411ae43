// What the bundled agent (dist/bundle, what the image runs) does before its
// first file: which of Node's built-in modules it loads, and whether the
// image's compile cache, warmed as the Dockerfile warms it, serves its starts.
// Start-up times are measured by bench/peers, never asserted here.
import t, { type Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { Agent as HttpAgent, createServer, get as httpGet, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type * as DockerfileModule from '../../scripts/image-dockerfile.mjs'
import type * as BundleEdits from '../../scripts/bundle-edits.mjs'
import { tempDir } from '../helpers/agent.js'
import { injectorConfigSchema } from '../../injector/config.js'
import { STORES } from '../../core/stores.js'
import { makeCert } from '../../bench/admission-fixtures.js'
import { IMAGE_NODE_FLAGS, IMAGE_SHEBANG, TIER_UP_DEFAULTS, shebangFlags } from '../../agent/cli/v8-flags.js'

const root = process.cwd()
const BUNDLE = join(root, 'dist/bundle/sidekey.js')
const VALUE = 'bundle-start-value-7f3a'
/** The agent container's NODE_OPTIONS, as the injector sets them by default. */
const AGENT_NODE_OPTIONS = String((injectorConfigSchema.properties.agentNodeOptions as { default: string }).default)

/** A Vault that answers every KV v2 read with one version of {k: VALUE}. */
async function fakeVault (t: Test): Promise<string> {
  const srv = createServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ data: { data: { k: VALUE }, metadata: { version: 1, created_time: '2026-01-01T00:00:00Z' } } }))
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
}

function vaultConfig (dir: string, address: string): string {
  return JSON.stringify({
    dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0 }, logLevel: 'warn', exitAfterSync: true,
    stores: { vault: { type: 'vault', address, tokenEnv: 'SK_TEST_VAULT_TOKEN' } },
    secrets: [{ name: 'a', ref: 'vault:secret/data/a#k' }],
  })
}

/** A script's exit code and what it printed. */
async function output (node: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(node, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  return { code, stdout, stderr }
}

async function run (node: string, args: string[], env: Record<string, string>): Promise<{ code: number | null, err: string }> {
  const child = spawn(node, args, { env: { ...process.env, SK_TEST_VAULT_TOKEN: 'test-token', ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  return { code, err }
}

t.test('a Vault agent over http loads neither http2 nor tls, https or zlib before it exits, nor what it never runs (worker threads, assert, fs/promises)', async (t) => {
  const dir = tempDir(t)
  const address = await fakeVault(t)
  // Written at exit by the agent process itself: the built-in modules it loaded.
  const preload = join(dir, 'loaded.cjs')
  writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(join(dir, 'loaded.txt'))}, process.moduleLoadList.join('\\n')))\n`)
  // Through env(1), which sets NODE_OPTIONS last: tap's spawn hook adds its own
  // preload to a child's NODE_OPTIONS, and it loads worker_threads.
  const r = await run('/usr/bin/env', [`NODE_OPTIONS=${AGENT_NODE_OPTIONS}`, process.execPath, '--require', preload, BUNDLE, 'agent'], { SIDEKEY_CONFIG: vaultConfig(dir, address) })
  t.equal(r.code, 0, r.err)
  t.equal(readFileSync(join(dir, 'secrets', 'a'), 'utf8'), VALUE, 'the secret is on disk')
  const builtins = new Set(readFileSync(join(dir, 'loaded.txt'), 'utf8').split('\n').filter((l) => l.startsWith('NativeModule ')).map((l) => l.slice('NativeModule '.length)))
  t.ok(builtins.has('http'), 'the list is the real one (the agent serves http)')
  // undici's HTTP/2 client (never used: no allowH2) and prom-client's Pushgateway.
  for (const m of ['http2', 'tls', 'https', 'zlib']) t.notOk(builtins.has(m), `node:${m} not loaded`)
  // sonic-boom's assert, fs/promises (with readline and the REPL's history)
  // and util.diff: scripts/bundle.mjs, agent/fs-async.ts.
  for (const m of ['assert', 'fs/promises', 'internal/util/diff']) t.notOk(builtins.has(m), `${m} not loaded`)
  // On the image's Node (24) also worker_threads (pino's transports, and
  // util.setTraceSigInt's) and fs's Dir and SyncWriteStream: lazy exports that
  // esbuild's interop object used to read. Node 20 loads these itself.
  if (Number(process.versions.node.split('.')[0]) >= 24) {
    for (const m of ['worker_threads', 'internal/fs/dir', 'internal/fs/sync_write_stream']) t.notOk(builtins.has(m), `${m} not loaded`)
  }
})

t.test('a Vault agent whose checks list a folder never loads perf_hooks (its clock is process.hrtime, core/monotonic.ts)', async (t) => {
  // Two secrets of one folder: each check asks the folder's listing first
  // (agent/providers/vault-kv-lists.ts), which reads the clock for its
  // freshness. Node's HTTP server refuses the LIST method (llhttp has no LIST),
  // so each check then reads its own metadata: two rounds of those, two rounds
  // through the listing's clock.
  const dir = tempDir(t)
  let checks = 0
  let checked!: () => void
  const twoRounds = new Promise<void>((resolve) => { checked = resolve })
  const srv = createServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    if (req.url?.includes('/metadata/') === true) {
      if (++checks === 4) checked()
      res.end(JSON.stringify({ data: { current_version: 1 } }))
      return
    }
    res.end(JSON.stringify({ data: { data: { k: VALUE }, metadata: { version: 1, created_time: '2026-01-01T00:00:00Z' } } }))
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  const preload = join(dir, 'loaded.cjs')
  writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(join(dir, 'loaded.txt'))}, process.moduleLoadList.join('\\n')))\n`)
  const config = JSON.stringify({
    dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0 }, logLevel: 'warn', refresh: '1s',
    stores: { vault: { type: 'vault', address: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, tokenEnv: 'SK_TEST_VAULT_TOKEN' } },
    secrets: [{ name: 'a', ref: 'vault:secret/data/f/a#k' }, { name: 'b', ref: 'vault:secret/data/f/b#k' }],
  })
  const child = spawn('/usr/bin/env', [`NODE_OPTIONS=${AGENT_NODE_OPTIONS}`, process.execPath, '--require', preload, BUNDLE, 'agent'], { env: { ...process.env, SK_TEST_VAULT_TOKEN: 'test-token', SIDEKEY_CONFIG: config }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  t.teardown(() => { child.kill('SIGKILL') })
  await Promise.race([twoRounds, exited.then((code) => { throw new Error(`the agent exited (${code}): ${err}`) })])
  child.kill('SIGTERM')
  t.equal(await exited, 0, `a clean stop: ${err}`)
  const builtins = new Set(readFileSync(join(dir, 'loaded.txt'), 'utf8').split('\n').filter((l) => l.startsWith('NativeModule ')).map((l) => l.slice('NativeModule '.length)))
  t.ok(builtins.has('http'), 'the list is the real one')
  t.notOk(builtins.has('perf_hooks'), 'perf_hooks not loaded')
})

t.test('a Vault agent and its probe load their built-in modules before they set the V8 flags (Node\'s own code cache serves them)', async (t) => {
  const dir = tempDir(t)
  const address = await fakeVault(t)
  // Records where the module list stood at the first V8 flag set at run time; at exit, the public built-ins loaded after it.
  const preload = join(dir, 'after-flags.cjs')
  writeFileSync(preload, [
    "const v8 = require('v8'); const set = v8.setFlagsFromString; let at",
    'v8.setFlagsFromString = (f) => { at ??= process.moduleLoadList.length; return set(f) }',
    `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(join(dir, 'after.txt'))}, at === undefined ? 'no flags set' : process.moduleLoadList.slice(at).join('\\n')))`,
  ].join('\n'))
  const starts: Array<[string, string[], Record<string, string>, number]> = [
    ['agent', ['agent'], { SIDEKEY_CONFIG: vaultConfig(dir, address) }, 0],
    // its startup probe, no agent to answer
    ['get --ready', ['get', '--ready'], { SIDEKEY_ADDR: 'http://127.0.0.1:1', SIDEKEY_TOKEN_FILE: join(dir, 'none') }, 1],
  ]
  for (const [what, args, env, code] of starts) {
    const r = await run(process.execPath, ['--require', preload, BUNDLE, ...args], { ...env, NODE_OPTIONS: AGENT_NODE_OPTIONS })
    t.equal(r.code, code, `${what}: ${r.err}`)
    const after = readFileSync(join(dir, 'after.txt'), 'utf8')
    t.not(after, 'no flags set', `${what} sets the agent's V8 flags (the preload sees them)`)
    const builtins = after.split('\n').filter((l) => l.startsWith('NativeModule ')).map((l) => l.slice('NativeModule '.length))
    t.same(builtins.filter((m) => !m.startsWith('internal/')), [], `${what}: no public built-in is loaded after the flags`)
  }
})

/** The chunks a bundle file imports statically, itself included, transitively. */
function staticGraph (file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen
  seen.add(file)
  // `import{a}from"./x.js"` and `import"./x.js"` (a chunk imported for its side effects); not `import("./x.js")`.
  for (const m of readFileSync(file, 'utf8').matchAll(/\b(?:from|import)\s*(["'])(\.\/[^"']+\.js)\1/g)) staticGraph(join(dirname(file), m[2] as string), seen)
  return seen
}

/** The chunk the bundle's entry imports for a command (`agent-command`, `get-command`). */
function commandChunk (name: string): string {
  const chunk = new RegExp(`import\\("(\\./${name}-[^"]+\\.js)"\\)`).exec(readFileSync(BUNDLE, 'utf8'))?.[1]
  if (chunk === undefined) throw new Error(`no ${name} chunk imported by the bundle entry: update this test`)
  return join(dirname(BUNDLE), chunk)
}

t.test('the agent command\'s code does not carry commander (the other commands\' option parser)', async (t) => {
  const graph = [...staticGraph(commandChunk('agent-command'))]
  t.ok(graph.length > 3, `the agent's static graph: ${graph.length} files`)
  t.same(graph.filter((f) => readFileSync(f, 'utf8').includes('node_modules/commander/')).map((f) => basename(f)), [], 'no chunk of it holds commander')
  t.ok([...staticGraph(commandChunk('get-command'))].some((f) => readFileSync(f, 'utf8').includes('node_modules/commander/')), 'while `sidekey get` still has it (the check finds it)')
})

t.test('a Vault agent loads its provider in one file, and no other store\'s code', async (t) => {
  const dir = dirname(BUNDLE)
  const files = readdirSync(dir)
  // What agent/providers/index.ts loads (the stores' provider modules) and what
  // those load on demand (azure's Key Vault and Entra clients) are entries of
  // the bundle; the folder's other modules are parts of them. A template
  // import() made every file of the folder an entry, and each its own file.
  const entries = new Set([...STORES.map((d) => d.module), 'azure-keyvault', 'azure-token'])
  const providerModules = readdirSync(join(root, 'agent/providers')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3))
  t.ok(providerModules.includes('vault-http'), 'the folder read is the real one')
  const stubs = providerModules.filter((m) => !entries.has(m) && files.some((f) => new RegExp(`^${m}-[A-Z0-9]{8}\\.js$`).test(f)))
  t.same(stubs, [], 'no module of agent/providers that is not a store\'s is a file of its own')
  const vaultChunk = files.find((f) => /^vault-[A-Z0-9]{8}\.js$/.test(f))
  if (vaultChunk === undefined) throw new Error('no vault-*.js in dist/bundle: update this test')
  const vault = readFileSync(join(dir, vaultChunk), 'utf8')
  for (const cls of ['VaultAuth', 'VaultHttp', 'KvVersionLists']) t.match(vault, new RegExp(`(?:\\bvar |,)${cls}=class\\b`), `${cls} is in ${vaultChunk}`)
  // The agent's own code: the AWS-compatible route (agent/compat) needs one
  // function of the aws provider's, --local-demo the local store.
  const graph = [...staticGraph(join(dir, vaultChunk), staticGraph(commandChunk('agent-command')))]
  for (const [what, def] of [['the aws provider', 'function createAwsProvider('], ['the local store', 'function openLocalStore(']] as const) {
    t.same(graph.filter((f) => readFileSync(f, 'utf8').includes(def)).map((f) => basename(f)), [], `${what} is in no file a Vault agent loads at start`)
    t.ok(files.some((f) => f.endsWith('.js') && readFileSync(join(dir, f), 'utf8').includes(def)), `${what} is in the bundle (the check finds it)`)
  }
  t.comment(`a Vault agent's start: ${graph.length} files of the bundle`)
})

/** The Node flags of the bundle's first line, which the image runs it through as `sidekey`. */
const IMAGE_FLAGS = shebangFlags(readFileSync(BUNDLE, 'latin1').split('\n')[0] as string)

/** Node 24 (the image's, from scripts/node24), or undefined where it cannot be had. */
function node24 (): string | undefined {
  if (Number(process.versions.node.split('.')[0]) >= 24) return process.execPath
  const r = spawnSync(join(root, 'scripts/node24'), { encoding: 'utf8' })
  return r.status === 0 ? join(r.stdout.trim(), 'node') : undefined
}

/** node24() for a test that needs it; where it cannot be had, the test passes as skipped (`why`: what Node 20 lacks). */
function node24For (t: Test, why: string): string | undefined {
  const node = node24()
  if (node === undefined) t.pass(`SKIP: no Node 24 here (scripts/node24 failed), and ${why}`)
  return node
}

t.test('the compile cache the Dockerfile warms serves the agent and its probe without a rejected entry', async (t) => {
  const node = node24For(t, 'Node 20 has no compile cache')
  if (node === undefined) return
  const df = await import(pathToFileURL(resolve(root, 'scripts/image-dockerfile.mjs')).href) as typeof DockerfileModule
  const stage = df.parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8')).at(-1)
  const cacheEnv = stage?.steps.flatMap((s) => s.op === 'ENV' ? s.pairs : []).find(([k]) => k === 'NODE_COMPILE_CACHE')?.[1]
  const warm = stage?.steps.find((s) => s.op === 'RUN' && s.command.includes('sidekey agent'))
  if (cacheEnv === undefined || warm?.op !== 'RUN') throw new Error('the Dockerfile no longer warms NODE_COMPILE_CACHE with `sidekey agent`: update this test')
  const dir = tempDir(t)
  const cache = join(dir, 'compile-cache')
  mkdirSync(cache)
  // `sidekey` on PATH is the bundle, run by Node 24 (its shebang is `env -S node` and the image's flags).
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  symlinkSync(BUNDLE, join(bin, 'sidekey'))
  symlinkSync(node, join(bin, 'node'))
  // The image's build runs have no NODE_OPTIONS (the test runner's own are not passed on).
  const env = { PATH: `${bin}:${process.env.PATH ?? ''}`, NODE_COMPILE_CACHE: cache, NODE_OPTIONS: '' }
  const w = spawnSync('sh', ['-c', warm.command.replaceAll(cacheEnv, cache)], { encoding: 'utf8', env: { ...process.env, ...env } })
  t.equal(w.status, 0, `the Dockerfile's warm-up: ${w.stderr}`)

  // A pod: the agent with the injector's NODE_OPTIONS, then its startup probe,
  // each as `sidekey` (the image's entrypoint): Node with the shebang's flags.
  const address = await fakeVault(t)
  const debug = { ...env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE', NODE_OPTIONS: AGENT_NODE_OPTIONS }
  const agent = await run(node, [...IMAGE_FLAGS, BUNDLE, 'agent'], { ...debug, SIDEKEY_CONFIG: vaultConfig(dir, address) })
  t.equal(agent.code, 0, 'the agent synced')
  const probe = await run(node, [...IMAGE_FLAGS, BUNDLE, 'get', '--ready'], debug)
  t.equal(probe.code, 1, 'the probe fails: no agent')
  // A serving agent: its HTTP and gRPC servers load after the first publish.
  const serving = spawn(node, [...IMAGE_FLAGS, BUNDLE, 'agent'], {
    env: { ...process.env, ...debug, SK_TEST_VALUE: VALUE, SIDEKEY_CONFIG: JSON.stringify({ dir: join(dir, 'serve'), apiTokenFile: join(dir, 'token'), listen: { http: 0, grpc: 0 }, logLevel: 'info', stores: { env: { type: 'env' } }, secrets: [{ name: 'a', ref: 'env:SK_TEST_VALUE' }] }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => { serving.kill('SIGKILL') })
  let servingErr = ''
  serving.stderr.on('data', (c: Buffer) => { servingErr += c.toString() })
  await new Promise<void>((resolve) => {
    let out = ''
    serving.stdout.on('data', (c: Buffer) => { out += c.toString(); if (out.includes('"agent listening"')) resolve() })
    serving.once('exit', () => resolve())
  })
  serving.kill('SIGTERM')
  t.equal(await new Promise<number | null>((resolve) => serving.once('exit', resolve)), 0, 'the serving agent stops on SIGTERM')
  for (const [what, err] of [['agent', agent.err], ['probe', probe.err], ['serving agent', servingErr]] as const) {
    const lines = err.split('\n')
    t.ok(lines.some((l) => / was accepted/.test(l)), `${what}: entries of the cache were used`)
    t.same(lines.filter((l) => / was rejected/.test(l)), [], `${what}: no entry rejected`)
    t.same(lines.filter((l) => / not initialized/.test(l)).map((l) => l.replace(/.*bundle\//, '')), [], `${what}: no file the warm-up missed`)
  }
})

t.test('the image\'s `sidekey` gives Node its tier-up flags: a serving agent compiles no function with Maglev or TurboFan through start-up and its first sync, and its request path then tiers up as by default', async (t) => {
  const node = node24For(t, 'Node 20 has other flags')
  if (node === undefined) return
  const node24Bin: string = node
  t.equal(readFileSync(BUNDLE, 'latin1').split('\n')[0], IMAGE_SHEBANG, 'the bundle\'s first line')
  t.same(IMAGE_FLAGS, [...IMAGE_NODE_FLAGS], 'read back from it')
  // restoreTierUp() sets V8's own defaults back: those Node 24 prints.
  const options = spawnSync(node24Bin, ['--v8-options'], { encoding: 'utf8' }).stdout
  for (const f of TIER_UP_DEFAULTS) t.ok(options.includes(`default: ${f}\n`), `${f} is V8's default`)
  const dir = tempDir(t)
  /**
   * The functions V8 compiled with an optimizing tier (--trace-opt's lines): by the time an agent
   * listens (its first sync done), and after `gets` GETs of its secret on one keep-alive connection.
   */
  async function optimized (flags: string[], name: string, gets = 0): Promise<{ started: string[], served: string[] }> {
    const child = spawn('/usr/bin/env', [`NODE_OPTIONS=${AGENT_NODE_OPTIONS}`, node24Bin, ...flags, '--trace-opt', BUNDLE, 'agent'], {
      env: { ...process.env, SK_TEST_VALUE: VALUE, SIDEKEY_CONFIG: JSON.stringify({ dir: join(dir, name), apiTokenFile: join(dir, `${name}.token`), listen: { http: 0, grpc: 0 }, logLevel: 'info', stores: { env: { type: 'env' } }, secrets: [{ name: 'a', ref: 'env:SK_TEST_VALUE' }] }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.teardown(() => { child.kill('SIGKILL') })
    let out = ''
    let err = ''
    child.stderr.on('data', (c: Buffer) => { err += c.toString() })
    const compiled = (): string[] => out.split('\n').filter((l) => l.startsWith('[compiling method')).map((l) => l.replace(/0x[0-9a-f]+/g, ''))
    const listening = await new Promise<string | undefined>((resolve) => {
      child.stdout.on('data', (c: Buffer) => { out += c.toString(); const m = /"http":"([^"]+)"[^\n]*"agent listening"/.exec(out); if (m !== null) resolve(m[1]) })
      child.once('exit', () => resolve(undefined))
    })
    const started = compiled()
    if (listening !== undefined && gets > 0) {
      const [host, port] = listening.split(':') as [string, string]
      const token = readFileSync(join(dir, `${name}.token`), 'utf8').trim()
      const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 })
      try {
        for (let i = 0; i < gets; i++) {
          const body = await new Promise<string>((resolve, reject) => {
            httpGet({ host, port, path: '/v1/secrets/a', agent, headers: { 'x-sidekey-token': token } }, (res) => {
              let b = ''
              res.on('data', (c: Buffer) => { b += c.toString() })
              res.on('end', () => resolve(b))
            }).once('error', reject)
          })
          if (i === 0) t.equal(body, VALUE, `${name}: the local endpoint serves the secret`)
        }
      } finally { agent.destroy() }
    }
    child.kill('SIGTERM')
    t.equal(await new Promise<number | null>((resolve) => child.once('exit', resolve)), 0, `${name}: the agent served and stopped on SIGTERM ${err}`)
    t.equal(readFileSync(join(dir, name, 'a'), 'utf8'), VALUE, `${name}: the secret is on disk`)
    return { started, served: compiled().slice(started.length) }
  }
  // V8's defaults: Node's loader functions get hot on the bundle's paths (the measure can see a compile).
  t.ok((await optimized([], 'defaults')).started.length > 0, 'with V8\'s defaults, start-up compiles some of Node\'s functions')
  const image = await optimized(IMAGE_FLAGS, 'image', 3000)
  t.same(image.started, [], 'with the image\'s flags, none')
  // Almost the image's threshold, but not its flag (it differs by 1): restoreTierUp() leaves it.
  const kept = await optimized(keptFlags(), 'kept', 3000)
  t.same(kept.started, [], 'thresholds kept: nothing compiled through start-up either')
  t.ok(image.served.length > 2 * kept.served.length, `after the first publish, 3,000 GETs compile the request path as by default (${image.served.length} functions; ${kept.served.length} with the high thresholds kept)`)
})

/**
 * IMAGE_FLAGS with each threshold 1 higher: not the image's flags, so bin/sidekey.ts neither
 * lowers nor raises them and restoreTierUp() leaves them (TurboFan's stays at V8's default).
 */
function keptFlags (): string[] {
  return IMAGE_FLAGS.map((f) => f.replace(/\d+$/, (n) => String(Number(n) + 1)))
}

t.test('the bundle run through its first line by the Node running the tests (20 or 24) syncs without a V8 flag error', async (t) => {
  // Node 20's V8 takes Maglev's flag but has no TurboFan one: the run-time
  // changes are Node 24's only (v8-flags.ts, startedRaised), or each start
  // printed "unrecognized flag" to stderr.
  const dir = tempDir(t)
  const address = await fakeVault(t)
  const r = await run('/usr/bin/env', [`NODE_OPTIONS=${AGENT_NODE_OPTIONS}`, process.execPath, ...IMAGE_FLAGS, BUNDLE, 'agent'], { SIDEKEY_CONFIG: vaultConfig(dir, address) })
  t.equal(r.code, 0, `the agent synced (Node ${process.versions.node})`)
  t.equal(readFileSync(join(dir, 'secrets', 'a'), 'utf8'), VALUE, 'the secret is on disk')
  t.notMatch(r.err, /unrecognized flag|bad option/i, 'no V8 flag error')
})

t.test('with the image\'s flag, a Vault agent with 100 secrets compiles no function with Maglev or TurboFan through start-up and its first sync', async (t) => {
  // The flag is lowered while the built-ins load (lowerTierUp): a
  // function whose feedback was first allocated then would get V8's default
  // budget (Node's FastBuffer did, and reached Maglev in this sync). This
  // checks the budgets only: --trace-opt is a V8 flag too, so in this run the
  // built-ins are compiled from source (the next test checks the cache).
  const node = node24For(t, 'Node 20 has other flags')
  if (node === undefined) return
  const dir = tempDir(t)
  const address = await fakeVault(t)
  const secrets = Array.from({ length: 100 }, (_, i) => ({ name: `s${i}`, ref: `vault:secret/data/s${i}#k` }))
  const config = JSON.stringify({ ...JSON.parse(vaultConfig(dir, address)) as object, secrets })
  const r = await output('/usr/bin/env', [`NODE_OPTIONS=${AGENT_NODE_OPTIONS}`, node, ...IMAGE_FLAGS, '--trace-opt', BUNDLE, 'agent'], { ...process.env, SK_TEST_VAULT_TOKEN: 'test-token', SIDEKEY_CONFIG: config })
  t.equal(r.code, 0, `the agent synced and exited (exitAfterSync) ${r.stderr}`)
  t.equal(readFileSync(join(dir, 'secrets', 's99'), 'utf8'), VALUE, 'the 100th secret is on disk')
  t.same(r.stdout.split('\n').filter((l) => l.startsWith('[compiling method')).map((l) => l.replace(/0x[0-9a-f]+/g, '')), [], 'nothing compiled')
})

t.test('the image\'s `sidekey` loads the built-ins an agent needs from the code cache Node embeds for them, its tier-up flag notwithstanding', async (t) => {
  const node = node24For(t, 'Node 20 has other flags')
  if (node === undefined) return
  const node24Bin: string = node
  const dir = tempDir(t)
  const address = await fakeVault(t)
  /** What Node said of the code cache of each built-in the agent loaded (NODE_DEBUG_NATIVE=CODE_CACHE). */
  async function codeCache (flags: string[], name: string): Promise<Map<string, string>> {
    const r = await run('/usr/bin/env', [`NODE_OPTIONS=${AGENT_NODE_OPTIONS}`, node24Bin, ...flags, BUNDLE, 'agent'], { NODE_DEBUG_NATIVE: 'CODE_CACHE', SIDEKEY_CONFIG: vaultConfig(join(dir, name), address) })
    t.equal(r.code, 0, `${name}: the agent synced`)
    t.equal(readFileSync(join(dir, name, 'secrets', 'a'), 'utf8'), VALUE, `${name}: the secret is on disk`)
    return new Map([...r.err.matchAll(/^Code cache of (\S+) \([^)]*\) is (accepted|rejected)$/gm)].map((m) => [m[1] as string, m[2] as string]))
  }
  // Built-ins bin/sidekey.ts loads for an agent (AGENT_BUILTINS: node:os is loaded before, by
  // the entry's own modules) and two of those they load.
  const needed = ['crypto', 'http', 'net', '_http_server']
  const image = await codeCache(IMAGE_FLAGS, 'image')
  t.same(needed.map((m) => [m, image.get(m)]), needed.map((m) => [m, 'accepted']), 'the image\'s flag is lowered while they load: accepted')
  // The measure can see the difference: with a flag bin/sidekey.ts does not lower, the same are compiled from source.
  const kept = await codeCache(keptFlags(), 'kept')
  t.same(needed.map((m) => [m, kept.get(m)]), needed.map((m) => [m, 'rejected']), 'a tier-up flag kept: rejected')
})

t.test('every chunk of the bundle parses (a chunk loaded only on some path must not fail with a SyntaxError there)', async (t) => {
  const dir = dirname(BUNDLE)
  const chunks = readdirSync(dir).filter((f) => f.endsWith('.js') || f.endsWith('.cjs'))
  t.ok(chunks.length > 10, `${chunks.length} chunks`)
  // One process parses them all: ES modules as modules (a redeclared name is an error only there), CommonJS files as Node wraps them.
  const check = `
    const vm = require('node:vm'); const fs = require('node:fs'); const path = require('node:path')
    for (const f of JSON.parse(process.argv[1])) {
      const src = fs.readFileSync(path.join(${JSON.stringify(dir)}, f), 'utf8')
      try {
        if (f.endsWith('.cjs')) new vm.Script('(function (exports, require, module, __filename, __dirname) {' + src + '\\n})', { filename: f })
        else new vm.SourceTextModule(src, { identifier: f })
        console.log(JSON.stringify([f, 'ok']))
      } catch (err) { console.log(JSON.stringify([f, String(err)])) }
    }`
  const r = spawnSync(process.execPath, ['--experimental-vm-modules', '--no-warnings', '-e', check, JSON.stringify(chunks)], { encoding: 'utf8' })
  const results = r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as [string, string])
  t.equal(results.length, chunks.length, `every chunk was read${r.stderr !== '' ? `: ${r.stderr}` : ''}`)
  for (const [f, outcome] of results) t.equal(outcome, 'ok', `${f} parses`)
})

t.test('the bundle (its chunks and vendor-aws.js) reads a built-in\'s exports from the module itself, not from a copy made of every export at load', async (t) => {
  // esbuild's __toESM defined a getter for each export of the built-in (node:fs ~100, node:crypto ~80) at each
  // import: thousands of closures at every start (scripts/bundle.mjs, builtinView).
  const { BUILTIN_WRAPPERS, builtinView, toEsmCalls, toEsmName } = await import(pathToFileURL(join(root, 'scripts/bundle-edits.mjs')).href) as typeof BundleEdits
  const dir = dirname(BUNDLE)
  const VIEW = builtinView('').slice(0, -1)
  const files = readdirSync(dir).filter((f) => f.endsWith('.js')).map((f) => {
    const src = readFileSync(join(dir, f), 'utf8')
    const minified = f === 'vendor-aws.js'
    // What each file gives to __toESM (an import in another file of the build would take a wrapper there).
    return { f, src, minified, copies: toEsmCalls(src, toEsmName(src, minified, f)) }
  })
  for (const [what, minified] of [['the chunks', false], ['vendor-aws.js', true]] as const) {
    let wrappers = 0
    let views = 0
    for (const { f, src } of files.filter((x) => x.minified === minified && (minified || !x.f.startsWith('vendor-')))) {
      views += src.split(VIEW).length - 1
      for (const [, w] of src.matchAll(minified ? BUILTIN_WRAPPERS.minified : BUILTIN_WRAPPERS.chunks)) {
        wrappers++
        t.same(files.filter((x) => x.copies.has(w as string)).map((x) => x.f), [], `${f}: ${w as string} is not copied by __toESM`)
      }
    }
    t.ok(wrappers > 10, `${what}: ${wrappers} imports of built-ins checked`)
    t.equal(views, wrappers, `${what}: each is read through a view of the module with its default`)
  }
})

t.test('the aws provider\'s SDK is one file of the bundle, loaded by the provider alone', async (t) => {
  // Split with the rest of the bundle, the SDK was 25 chunks with 145 imports between them, enough
  // for Node's loader to make its path and URL functions hot (Maglev, TurboFan: MiB of resident code).
  const dir = dirname(BUNDLE)
  const vendor = join(dir, 'vendor-aws.js')
  const src = readFileSync(vendor, 'utf8')
  t.ok(src.includes('(this,"SecretsManagerClient")') && src.includes('(this,"AssumeRoleWithWebIdentityCommand")'), 'vendor-aws.js holds the Secrets Manager client and STS\'s web identity call')
  t.same([...src.matchAll(/\b(?:from\s*|import\()"(\.\/[^"]+)"/g)].map((m) => m[1]), [], 'and imports no other file of the bundle')
  const users = readdirSync(dir).filter((f) => f !== 'vendor-aws.js' && f.endsWith('.js') && readFileSync(join(dir, f), 'utf8').includes('./vendor-aws.js'))
  t.equal(users.length, 1, `one chunk imports it: ${users.join(', ')}`)
  t.notOk(readdirSync(dir).some((f) => f !== 'vendor-aws.js' && readFileSync(join(dir, f), 'utf8').includes('SecretsManagerClient=class ')), 'no other file holds the Secrets Manager client')
})

t.test('vendor-aws.js has minified local names; the SDK\'s classes, functions and errors keep theirs', async (t) => {
  // V8 keeps the file's source while the agent runs: 550 KB with the SDK's own names, ~330 KB minified (scripts/bundle.mjs).
  const vendor = join(dirname(BUNDLE), 'vendor-aws.js')
  const src = readFileSync(vendor, 'utf8')
  t.notOk(/\b(?:SecretsManagerClient|GetSecretValueCommand|resolveAwsSdkSigV4Config|NodeHttpHandler)=/.test(src), 'no binding of the SDK\'s own names is left in vendor-aws.js')
  t.match(src, /export\{[^}]*\b[\w$]{1,3} as SecretsManagerClient\b/, 'the client is exported from a minified binding')
  // A 400 with Secrets Manager's error type: the exception the provider maps by name (agent/providers/aws.ts).
  const srv = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'ResourceNotFoundException' })
      res.end(JSON.stringify({ __type: 'ResourceNotFoundException', message: 'Secrets Manager can\'t find the specified secret.' }))
    })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { srv.closeAllConnections(); srv.close() })
  const script = `
    const sm = await import(${JSON.stringify(pathToFileURL(vendor).href)})
    const c = new sm.SecretsManagerClient({ region: 'us-east-1', endpoint: process.argv[1], maxAttempts: 1, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } })
    const cmd = new sm.GetSecretValueCommand({ SecretId: 's' })
    let err
    try { await c.send(cmd) } catch (e) { err = e } finally { c.destroy() }
    console.log(JSON.stringify({ names: [sm.SecretsManagerClient.name, sm.GetSecretValueCommand.name, sm.DescribeSecretCommand.name, sm.fromTokenFile.name, c.constructor.name, cmd.constructor.name], error: [err?.name, err?.constructor?.name, err?.$metadata?.httpStatusCode] }))`
  const { code, stdout, stderr } = await output(process.execPath, ['--input-type=module', '-e', script, `http://127.0.0.1:${(srv.address() as AddressInfo).port}`], process.env)
  t.equal(code, 0, `the script ran${stderr !== '' ? `: ${stderr}` : ''}`)
  t.same(JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}'), {
    names: ['SecretsManagerClient', 'GetSecretValueCommand', 'DescribeSecretCommand', 'fromTokenFile', 'SecretsManagerClient', 'GetSecretValueCommand'],
    error: ['ResourceNotFoundException', 'ResourceNotFoundException', 400],
  }, 'the same names as the SDK\'s own files give them, and the same error')
})

t.test('the bundled SDK loads node:https for an https:// endpoint only, and sends there as before', async (t) => {
  // An answer of Secrets Manager's GetSecretValue; the same from the http and the https server.
  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' })
      res.end(JSON.stringify({ ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf', Name: 's', VersionId: 'v-1', SecretString: VALUE, VersionStages: ['AWSCURRENT'] }))
    })
  }
  const tls = makeCert(tempDir(t))
  const plain = createServer(answer)
  const secure = createHttpsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, answer)
  for (const s of [plain, secure]) {
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { s.closeAllConnections(); s.close() })
  }
  const url = (s: typeof plain | typeof secure, scheme: string): string => `${scheme}://127.0.0.1:${(s.address() as AddressInfo).port}`
  const script = `
    const sm = await import(${JSON.stringify(pathToFileURL(join(dirname(BUNDLE), 'vendor-aws.js')).href)})
    const https = () => process.moduleLoadList.includes('NativeModule https')
    const get = async (endpoint) => {
      const c = new sm.SecretsManagerClient({ region: 'us-east-1', endpoint, maxAttempts: 1, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } })
      try { return (await c.send(new sm.GetSecretValueCommand({ SecretId: 's' }))).SecretString } finally { c.destroy() }
    }
    const out = { http: await get(process.argv[1]), httpsAfterHttp: https() }
    out.https = await get(process.argv[2])
    out.httpsAfterHttps = https()
    console.log(JSON.stringify(out))`
  const { code, stdout, stderr } = await output(process.execPath, ['--input-type=module', '-e', script, url(plain, 'http'), url(secure, 'https')], { ...process.env, NODE_EXTRA_CA_CERTS: tls.cert })
  t.equal(code, 0, `the script ran${stderr !== '' ? `: ${stderr}` : ''}`)
  t.same(JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}'), { http: VALUE, httpsAfterHttp: false, https: VALUE, httpsAfterHttps: true }, 'http:// sends without loading node:https (a client made and destroyed); https:// loads it and sends')
})

t.test('the bundled SDK sends GetSecretValue and DescribeSecret without loading zlib, Web Crypto, the web streams or fs/promises, or formatting a date with toISOString', async (t) => {
  // Each of them cost the aws agent resident memory for code its two calls never run (scripts/bundle.mjs, AWS_SDK_DEFERRED);
  // toISOString (the signature's date) makes Node 24 read ICU's time zone name tables (core/utc-dates.ts).
  const seen: Array<{ target: string, invocation: string, authorization: string, amzDate: string }> = []
  const srv = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      seen.push({ target: String(req.headers['x-amz-target']), invocation: String(req.headers['amz-sdk-invocation-id']), authorization: String(req.headers.authorization), amzDate: String(req.headers['x-amz-date']) })
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' })
      res.end(req.headers['x-amz-target'] === 'secretsmanager.DescribeSecret'
        ? JSON.stringify({ ARN: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:s-AbCdEf', Name: 's', VersionIdsToStages: { 'v-1': ['AWSCURRENT'] } })
        : JSON.stringify({ ARN: 'arn:aws:secretsmanager:eu-west-3:123456789012:secret:s-AbCdEf', Name: 's', VersionId: 'v-1', SecretString: VALUE, VersionStages: ['AWSCURRENT'] }))
    })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { srv.closeAllConnections(); srv.close() })
  // The region comes from the shared config file, which the SDK reads with its own readFile.
  const dir = tempDir(t)
  const configFile = join(dir, 'aws-config')
  writeFileSync(configFile, '[default]\nregion = eu-west-3\n')
  // What the SDK loads: tap's own preload (its NODE_OPTIONS) loads Web Crypto before the script runs.
  const script = `
    const before = new Set(process.moduleLoadList)
    let dateStrings = 0
    for (const m of ['toISOString', 'toUTCString']) { const f = Date.prototype[m]; Date.prototype[m] = function () { dateStrings++; return f.call(this) } }
    const sm = await import(${JSON.stringify(pathToFileURL(join(dirname(BUNDLE), 'vendor-aws.js')).href)})
    const c = new sm.SecretsManagerClient({ endpoint: process.argv[2], maxAttempts: 1, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } })
    const value = (await c.send(new sm.GetSecretValueCommand({ SecretId: 's' }))).SecretString
    const stages = (await c.send(new sm.DescribeSecretCommand({ SecretId: 's' }))).VersionIdsToStages
    c.destroy()
    const modules = ['zlib', 'internal/crypto/webcrypto', 'internal/webstreams/readablestream', 'fs/promises'].filter((m) => process.moduleLoadList.includes('NativeModule ' + m) && !before.has('NativeModule ' + m))
    console.log(JSON.stringify({ value, stages, modules, dateStrings }))`
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: AGENT_NODE_OPTIONS, AWS_CONFIG_FILE: configFile, AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none') }
  for (const k of ['AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_PROFILE']) delete env[k]
  // A file, not -e: Node 20's ESM eval loads Web Crypto itself.
  const file = join(dir, 'send.mjs')
  writeFileSync(file, script)
  const started = Date.now()
  const { code, stdout, stderr } = await output(node24() ?? process.execPath, [file, `http://127.0.0.1:${(srv.address() as AddressInfo).port}`], env)
  t.equal(code, 0, `the script ran${stderr !== '' ? `: ${stderr}` : ''}`)
  const done = Date.now()
  t.same(JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}'), { value: VALUE, stages: { 'v-1': ['AWSCURRENT'] }, modules: [], dateStrings: 0 }, 'both answers arrived; none of the four modules loaded; no toISOString or toUTCString')
  // The signature's date, built from the UTC fields: SigV4's basic format, the time the requests were sent.
  for (const s of seen) {
    const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(s.amzDate)
    const at = m === null ? NaN : Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]))
    t.ok(at >= Math.floor(started / 1000) * 1000 && at <= done, `x-amz-date ${s.amzDate} is when it was sent, in SigV4's format`)
    t.ok(s.authorization.includes(`Credential=a/${s.amzDate.slice(0, 8)}/eu-west-3/`), 'the credential scope has the same day')
  }
  t.same(seen.map((s) => s.target), ['secretsmanager.GetSecretValue', 'secretsmanager.DescribeSecret'], 'two requests')
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
  t.ok(seen.every((s) => uuid.test(s.invocation)) && seen[0]?.invocation !== seen[1]?.invocation, `each request has its own v4 UUID as amz-sdk-invocation-id: ${seen.map((s) => s.invocation).join(', ')}`)
  t.ok(seen.every((s) => s.authorization.includes('/eu-west-3/secretsmanager/aws4_request')), 'signed for the region of the shared config file')
})
