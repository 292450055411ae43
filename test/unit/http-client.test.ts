// agent/http-client.ts on node:http: the answer, the pool's bounds and
// timeouts as the stores and hooks rely on them; and that a bundled Vault
// agent no longer loads undici (its HTTP parser is WebAssembly).
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HttpClient, HttpTransportError } from '../../agent/http-client.js'
import { tempDir } from '../helpers/agent.js'
import { injectorConfigSchema } from '../../injector/config.js'

async function server (t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const srv = createServer(handler)
  srv.on('connection', (s: Socket) => { sockets.add(s) })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, sockets }
}

const readBody = async (req: IncomingMessage): Promise<string> => { let b = ''; for await (const c of req) b += (c as Buffer).toString(); return b }

t.test('a request: method, path, headers and body out; status, headers and the whole body back', async (t) => {
  const s = await server(t, (req, res) => {
    void readBody(req).then((body) => {
      res.setHeader('x-seen', `${req.method ?? ''} ${req.url ?? ''} ${req.headers['x-token'] ?? ''} ${req.headers['content-length'] ?? 'none'} ${body}`)
      res.statusCode = 201
      res.end('answer')
    })
  })
  const c = new HttpClient()
  t.teardown(async () => { await c.destroy() })
  const r = await c.request({ method: 'POST', url: `${s.url}/a/b?x=1`, headers: { 'x-token': 'tok' }, body: '{"k":1}' })
  t.equal(r.status, 201)
  t.equal(r.headers['x-seen'], 'POST /a/b?x=1 tok 7 {"k":1}')
  t.equal(r.body.toString(), 'answer')
})

t.test('connections per origin are bounded (the rest queue) and kept alive between requests', async (t) => {
  const s = await server(t, (_req, res) => { setTimeout(() => res.end('ok'), 20) })
  const c = new HttpClient({ connections: 2 })
  t.teardown(async () => { await c.destroy() })
  const rs = await Promise.all(Array.from({ length: 6 }, async () => await c.request({ method: 'GET', url: s.url })))
  t.same(rs.map((r) => r.status), [200, 200, 200, 200, 200, 200])
  t.equal(s.sockets.size, 2, 'six requests, two connections')
  await c.request({ method: 'GET', url: s.url })
  t.equal(s.sockets.size, 2, 'a later request reuses an idle connection')
})

t.test('an answer over maxBodyBytes fails with a clear error and is not kept (a server that answers without end)', async (t) => {
  // 64 KiB chunks, without end, as fast as the socket takes them.
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    const pump = (): void => { while (!res.destroyed && res.write(chunk)) { /* until the socket pushes back */ } if (!res.destroyed) res.once('drain', pump) }
    pump()
  })
  const c = new HttpClient({ maxBodyBytes: 1024 * 1024 })
  t.teardown(async () => { await c.destroy() })
  const err = await c.request({ method: 'GET', url: `${s.url}/v1/secret/data/a` }).then(() => undefined, (e: unknown) => e)
  t.type(err, HttpTransportError)
  t.equal((err as HttpTransportError).code, 'ERR_BODY_TOO_LARGE')
  t.match((err as Error).message, /^GET http:\/\/127\.0\.0\.1:\d+\/v1\/secret\/data\/a: the server's answer is over 1048576 bytes/)
  const ok = await server(t, (_req, res) => { res.end('small') })
  t.equal((await c.request({ method: 'GET', url: ok.url })).body.toString(), 'small', 'the client still answers after')
})

t.test('a server that stops sending its body fails with the body timeout; an abort says aborted', async (t) => {
  // Half of the body, then nothing.
  const s = await server(t, (_req, res) => {
    res.writeHead(200, { 'content-length': '10' })
    res.write('12345')
  })
  const c = new HttpClient({ bodyTimeoutMs: 150 })
  t.teardown(async () => { await c.destroy() })
  const err = await c.request({ method: 'GET', url: `${s.url}/stall` }).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof HttpTransportError)
  t.match(err, { code: 'UND_ERR_BODY_TIMEOUT', timedOut: true, message: `GET ${s.url}/stall: the server stopped sending its answer within 150ms (UND_ERR_BODY_TIMEOUT)` })
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 30)
  const aborted = await new HttpClient({ bodyTimeoutMs: 5_000 }).request({ method: 'GET', url: `${s.url}/abort`, signal: ac.signal }).then(() => undefined, (e: unknown) => e)
  t.match(aborted, { code: 'ABORTED', timedOut: false, message: `GET ${s.url}/abort: aborted (ABORTED)` })
})

t.test('close() lets a request in flight finish; a request after it fails', async (t) => {
  const s = await server(t, (_req, res) => { setTimeout(() => res.end('late'), 100) })
  const c = new HttpClient()
  const inFlight = c.request({ method: 'GET', url: s.url })
  await new Promise((resolve) => setTimeout(resolve, 20))
  await c.close()
  t.equal((await inFlight).body.toString(), 'late')
  await t.rejects(c.request({ method: 'GET', url: s.url }), { code: 'UND_ERR_DESTROYED' })
})

t.test('a bundled Vault agent over http compiles no WebAssembly (no undici: its HTTP parser is wasm)', async (t) => {
  const dir = tempDir(t)
  const vault = await server(t, (_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ data: { data: { k: 'http-client-value' }, metadata: { version: 1, created_time: '2026-01-01T00:00:00Z' } } }))
  })
  const preload = join(dir, 'wasm.cjs')
  const seen = join(dir, 'wasm.txt')
  writeFileSync(seen, '')
  // Records every WebAssembly module the process compiles.
  writeFileSync(preload, `const fs = require('fs'); const W = globalThis.WebAssembly; const note = (how) => fs.appendFileSync(${JSON.stringify(seen)}, how + '\\n')
const M = W.Module; W.Module = new Proxy(M, { construct (target, args) { note('Module'); return Reflect.construct(target, args) } })
for (const f of ['compile', 'instantiate', 'compileStreaming', 'instantiateStreaming']) { const o = W[f]; if (o) W[f] = function (...a) { note(f); return o.apply(this, a) } }
`)
  const config = { dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0 }, logLevel: 'warn', exitAfterSync: true, stores: { vault: { type: 'vault', address: vault.url, tokenEnv: 'SK_TEST_VAULT_TOKEN' } }, secrets: [{ name: 'a', ref: 'vault:secret/data/a#k' }] }
  const child = spawn(process.execPath, ['--require', preload, join(process.cwd(), 'dist/bundle/sidekey.js'), 'agent'], {
    env: { ...process.env, SK_TEST_VAULT_TOKEN: 'test-token', SIDEKEY_CONFIG: JSON.stringify(config), NODE_OPTIONS: String((injectorConfigSchema.properties.agentNodeOptions as { default: string }).default) },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  t.equal(await new Promise<number | null>((resolve) => child.once('exit', resolve)), 0, err)
  t.equal(readFileSync(join(dir, 'secrets', 'a'), 'utf8'), 'http-client-value', 'the secret came over http')
  t.equal(readFileSync(seen, 'utf8'), '', 'no WebAssembly compiled')
})

t.test('close() twice while a request is in flight: both return once it has its answer', async (t) => {
  let answer: (() => void) | undefined
  const s = await server(t, (_req, res) => { answer = () => { res.end('late') } })
  const c = new HttpClient()
  const inFlight = c.request({ method: 'GET', url: s.url })
  while (answer === undefined) await new Promise((resolve) => setTimeout(resolve, 5))
  const closes = [c.close(), c.close()]
  answer()
  t.equal((await inFlight).body.toString(), 'late', 'the request in flight gets its answer')
  await Promise.all(closes)
  t.pass('both closes returned')
})

t.test('stream(): the body as it comes, a pause longer than the body timeout fails it, close() waits for an open body', async (t) => {
  const s = await server(t, (req, res) => {
    res.writeHead(200, { 'x-kind': 'watch' })
    res.write('first\n')
    // The slow body pauses 300 ms between its chunks (under the 2 s body timeout); the silent one never sends again.
    if (req.url === '/slow') setTimeout(() => { res.write('second\n'); setTimeout(() => { res.end('third\n') }, 300) }, 300)
  })
  const c = new HttpClient({ connections: null, bodyTimeoutMs: 2000, keepAliveTimeoutMs: 100 })
  t.teardown(async () => { await c.destroy() })
  const slow = await c.stream({ method: 'GET', url: `${s.url}/slow` })
  t.equal(slow.status, 200)
  t.equal(slow.headers['x-kind'], 'watch')
  let text = ''
  for await (const chunk of slow.body) text += chunk.toString()
  t.equal(text, 'first\nsecond\nthird\n', 'every chunk, pauses shorter than the body timeout included (the pool\'s idle timeout does not apply)')
  const silent = await c.stream({ method: 'GET', url: `${s.url}/silent` })
  // Not read for a while: the timeout's error waits for the reader, it is not an uncaught 'error' event.
  await new Promise((resolve) => setTimeout(resolve, 2500))
  const err = await (async () => { for await (const chunk of silent.body) void chunk })().then(() => undefined, (e: { code?: string }) => e.code)
  t.equal(err, 'UND_ERR_BODY_TIMEOUT', 'a silent body fails with the body timeout')
  const open = await c.stream({ method: 'GET', url: `${s.url}/slow` })
  let closed = false
  const closing = c.close().then(() => { closed = true })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.notOk(closed, 'close() waits while a body is open')
  open.discard()
  await closing
  t.ok(closed, 'and returns once it is discarded')
})
