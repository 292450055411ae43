// The bundled serving agent binds its gRPC port at start but loads the gRPC
// server (grpc-js, protobufjs, the .proto; node:http2 with them) only when a
// client connects: an agent whose app never calls gRPC keeps none of it.
// The memory it saves is measured by bench/store-memory, never asserted here.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { loadProto } from '../../agent/grpc-server.js'
import { listenGrpc } from '../../agent/grpc-listener.js'
import { tempDir } from '../helpers/agent.js'
import { loadConfig } from '../../core/config/load.js'
import { injectorConfigSchema } from '../../injector/config.js'

const BUNDLE = join(process.cwd(), 'dist/bundle/sidekey.js')
const AGENT_NODE_OPTIONS = String((injectorConfigSchema.properties.agentNodeOptions as { default: string }).default)
const VALUE = 'grpc-lazy-value-51c2'

interface Serving { grpcPort: number, token: string, stop: () => Promise<Set<string>> }

/** A serving bundled agent (env store, one secret); stop() returns the built-in modules it had loaded. */
async function serve (t: Test): Promise<Serving> {
  const dir = tempDir(t)
  const preload = join(dir, 'loaded.cjs')
  writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(join(dir, 'loaded.txt'))}, process.moduleLoadList.join('\\n')))\n`)
  const config = { dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0, grpc: 0 }, logLevel: 'info', stores: { env: { type: 'env' } }, secrets: [{ name: 'a', ref: 'env:SK_LAZY_VALUE' }] }
  const child = spawn(process.execPath, ['--require', preload, BUNDLE, 'agent'], {
    env: { ...process.env, SK_LAZY_VALUE: VALUE, SIDEKEY_CONFIG: JSON.stringify(config), NODE_OPTIONS: AGENT_NODE_OPTIONS },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => { child.kill('SIGKILL') })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  const listening = await new Promise<{ grpc?: string } | undefined>((resolve) => {
    let out = ''
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      const line = out.split('\n').find((l) => l.includes('"agent listening"'))
      if (line !== undefined) resolve(JSON.parse(line) as { grpc?: string })
    })
    void exited.then(() => resolve(undefined))
  })
  if (listening?.grpc === undefined) throw new Error(`the agent did not listen: ${err}`)
  return {
    grpcPort: Number(listening.grpc.split(':').pop()),
    token: readFileSync(join(dir, 'token'), 'utf8').trim(),
    async stop () {
      child.kill('SIGTERM')
      t.equal(await exited, 0, `the agent stops on SIGTERM: ${err}`)
      return new Set(readFileSync(join(dir, 'loaded.txt'), 'utf8').split('\n').filter((l) => l.startsWith('NativeModule ')).map((l) => l.slice('NativeModule '.length)))
    },
  }
}

t.test('an agent no client called over gRPC never loads the gRPC server', async (t) => {
  const agent = await serve(t)
  t.ok(agent.grpcPort > 0, 'the gRPC port is bound')
  const builtins = await agent.stop()
  t.ok(builtins.has('http'), 'the list is the real one (the agent serves http)')
  t.notOk(builtins.has('http2'), 'no node:http2: the gRPC server was not loaded')
})

t.test('the first gRPC connections load the server and are answered', async (t) => {
  const agent = await serve(t)
  const proto = loadProto()
  const md = new grpc.Metadata()
  md.set('x-sidekey-token', agent.token)
  // Three clients (three connections) at once: all arrive while the server loads.
  const clients = [0, 1, 2].map(() => new proto.sidekey.v1.Secrets(`127.0.0.1:${agent.grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }))
  t.teardown(() => { for (const c of clients) c.close() })
  const values = await Promise.all(clients.map(async (c) => await new Promise<string>((resolve, reject) => {
    c.Get({ name: 'a' }, md, (err, r) => { if (err !== null || r === undefined) reject(err ?? new Error('no answer')); else resolve(r.value.toString()) })
  })))
  t.same(values, [VALUE, VALUE, VALUE])
  const names = await new Promise<string[]>((resolve, reject) => {
    clients[0]?.List({}, md, (err, r) => { if (err !== null || r === undefined) reject(err ?? new Error('no answer')); else resolve(r.secrets.map((s) => s.name)) })
  })
  t.same(names, ['a'], 'a later call on a loaded server')
  for (const c of clients) c.close()
  t.ok((await agent.stop()).has('http2'), 'the server loaded (node:http2)')
})

t.test('the gRPC port caps its connections (limits.connections), while the server loads and after', async (t) => {
  let release: () => void = () => {}
  const loaded = new Promise<void>((resolve) => { release = resolve })
  const held: Socket[] = []
  const backend = { inject: (s: Socket) => { held.push(s) }, shutdown: async () => {}, forceShutdown: () => { for (const s of held) s.destroy() } }
  const l = await listenGrpc('127.0.0.1', 0, async () => { await loaded; return backend }, () => {}, 3)
  t.teardown(() => { l.forceClose() })
  const open = async (): Promise<Socket> => await new Promise<Socket>((resolve, reject) => { const s = connect(l.port, '127.0.0.1', () => resolve(s)); s.once('error', reject) })
  const until = async (ok: () => boolean): Promise<void> => { while (!ok()) await new Promise((resolve) => setTimeout(resolve, 10)) }
  const first = await Promise.all([open(), open(), open()])
  t.teardown(() => { for (const s of first) s.destroy() })
  const over = await open()
  await once(over, 'close')
  t.pass('a fourth connection while the server loads is dropped')
  release()
  await until(() => held.length === 3)
  t.pass('the three are handed to the server once it has loaded')
  const after = await open()
  await once(after, 'close')
  t.pass('a fourth after the load is dropped too')
  held[0]?.destroy()
  await until(() => first[0]?.destroyed === true || first[0]?.readableEnded === true)
  const room = await open()
  t.teardown(() => { room.destroy() })
  await until(() => held.length === 4)
  t.pass('a closed one makes room: the next is handed to the server')
})

t.test('a .proto the install lacks fails the start with what to do, not every gRPC call later', async (t) => {
  const real = await import('../../agent/grpc-listener.js')
  const { startAgent } = await t.mockImport<typeof import('../../agent/agent.js')>('../../agent/agent.js', {
    '../../agent/grpc-listener.js': { ...real, PROTO_FILE: '/nonexistent/sidekey/v1/secrets.proto' },
  })
  process.env.SK_LAZY_PROTO = 'lazy-proto-value-3d9e'
  const dir = tempDir(t)
  const config = loadConfig({ dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), logLevel: 'silent', listen: { http: 0, grpc: 0 }, secrets: [{ name: 'a', ref: 'env:SK_LAZY_PROTO' }] })
  const err = await startAgent(config, { defaultMetrics: false }).then(() => undefined, (e: unknown) => e as { code?: string, message?: string })
  t.equal(err?.code, 'SIDEKEY_E_CONFIG')
  t.match(err?.message, /the gRPC API's \/nonexistent\/sidekey\/v1\/secrets\.proto cannot be read \(ENOENT\).*listen\.grpcEnabled/)
})
