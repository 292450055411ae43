// The rest of the local API: SSE watch, gRPC List and long-poll Get, the
// `sidekey get` client, and the signal flavour of onChange.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync, readFileSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { startTestAgent, tempDir, eventually, replace } from '../helpers/agent.js'

const CLI = join(process.cwd(), 'dist/bin/sidekey.js')

async function cli (args: string[], env: Record<string, string>): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
  })
}

t.test('SSE watch streams versions, never values', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'src')
  const a = 'sse-a-' + randomBytes(6).toString('hex')
  const b = 'sse-b-' + randomBytes(6).toString('hex')
  writeFileSync(f, a)
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${f}` }], refresh: '1h' }, { root, values: [a, b] })
  await h.agent.synced
  const ac = new AbortController()
  const res = await fetch(`${h.base}/v1/watch`, { headers: { 'x-sidekey-token': h.token }, signal: ac.signal })
  t.equal(res.headers.get('content-type'), 'text/event-stream')
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let text = ''
  const readUntil = async (re: RegExp): Promise<void> => {
    while (!re.test(text)) {
      const { value, done } = await reader.read()
      if (done === true) throw new Error('stream ended')
      text += Buffer.from(value).toString()
    }
  }
  await readUntil(/event: current\ndata: \{"name":"k"/)
  replace(f, b)
  await readUntil(/event: changed\ndata: \{"name":"k","version":"[0-9a-f]{16}"/)
  ac.abort()
  t.notOk(text.includes(a) || text.includes(b), 'no value in the stream')
  t.equal((await fetch(`${h.base}/v1/watch`)).status, 401, 'watch needs the token')
})

t.test('gRPC List and a long-poll Get that waits for the first value', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'later')
  const v = 'late-' + randomBytes(6).toString('hex')
  const h = await startTestAgent(t, { secrets: [{ name: 'later', ref: `file:${f}`, required: false }], refresh: '50ms', backoff: { initial: '20ms', max: '50ms' } }, { root, values: [v] })
  await h.agent.synced
  const list = await new Promise<{ secrets: Array<{ name: string, ready: boolean, errorCode: string, refs: string[] }> }>((resolve, reject) => h.grpc().List({}, h.metadata(), (err, r) => err !== null ? reject(err) : resolve(r as never)))
  t.match(list.secrets[0], { name: 'later', ready: false, errorCode: 'SIDEKEY_E_NOT_FOUND', refs: [`file:${f}`] })
  t.equal((await fetch(`${h.base}/ready`)).status, 200, 'an optional secret does not hold readiness')
  const got = new Promise<{ value: Buffer, version: string }>((resolve, reject) => h.grpc().Get({ name: 'later', waitMs: 20000 }, h.metadata(), (err, r) => err !== null ? reject(err) : resolve(r as never)))
  await new Promise((resolve) => setTimeout(resolve, 100))
  writeFileSync(f, v)
  const r = await got
  t.equal(r.value.toString(), v, 'Get with wait_ms returned once the secret existed')
  const nm = await new Promise<{ notModified: boolean, value: Buffer }>((resolve, reject) => h.grpc().Get({ name: 'later', ifNoneMatch: r.version }, h.metadata(), (err, x) => err !== null ? reject(err) : resolve(x as never)))
  t.ok(nm.notModified, 'if_none_match on the current version -> not_modified')
  t.equal(nm.value.length, 0, 'and no value')
})

t.test('sidekey get reads SIDEKEY_ADDR and SIDEKEY_TOKEN_FILE', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'src')
  const a = 'cli-a-' + randomBytes(6).toString('hex')
  const b = 'cli-b-' + randomBytes(6).toString('hex')
  writeFileSync(f, a)
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${f}` }], refresh: '1h' }, { root, values: [a, b] })
  await h.agent.synced
  const env = { SIDEKEY_ADDR: h.base, SIDEKEY_TOKEN_FILE: join(root, 'token') }
  const got = await cli(['get', 'k'], env)
  t.equal(got.code, 0, got.stderr)
  t.equal(got.stdout, a)
  t.equal((await cli(['get', '--ready'], env)).code, 0, '--ready exits 0 when ready')
  const missing = await cli(['get', 'nope'], env)
  t.equal(missing.code, 1)
  t.match(missing.stderr, /SIDEKEY_E_SECRET_UNKNOWN: no secret named "nope"/)
  const noEnv = await cli(['get', 'k'], { SIDEKEY_ADDR: '', SIDEKEY_TOKEN_FILE: '' })
  t.match(noEnv.stderr, /SIDEKEY_E_CLIENT: SIDEKEY_ADDR is not set/)
  const down = await cli(['get', '--ready'], { SIDEKEY_ADDR: 'http://127.0.0.1:1' })
  t.equal(down.code, 1, '--ready exits 1 when the agent is not there')
  const version = readFileSync(join(h.dir, '..data', '.sidekey-meta.json'), 'utf8').match(/"version":"([0-9a-f]+)"/)?.[1] ?? ''
  const waiting = cli(['get', 'k', '--wait', '20s', '--if-none-match', version], env)
  await new Promise((resolve) => setTimeout(resolve, 300))
  replace(f, b)
  const w = await waiting
  t.equal(w.stdout, b, '--wait returns the rotated value')
})

t.test('signal onChange reaches a process found by name, once per rotation', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'src')
  writeFileSync(f, 'sig-a-123456')
  const marker = join(root, 'hups')
  const procName = `sk-app-${randomBytes(3).toString('hex')}`
  // An "app" that counts SIGHUPs; its argv[1] is the name the hook looks for.
  // A node binary under another name, so /proc/<pid>/comm carries that name.
  const exe = join(root, procName)
  symlinkSync(process.execPath, exe)
  const app = spawn(exe, ['-e', `let n=0;process.on('SIGHUP',()=>{n++;require('fs').writeFileSync(${JSON.stringify(marker)},String(n))});require('fs').writeFileSync(${JSON.stringify(marker)},'0');setInterval(()=>{},1000)`], { stdio: 'ignore' })
  t.teardown(() => { app.kill('SIGKILL') })
  await eventually(() => { try { return readFileSync(marker, 'utf8') === '0' } catch { return false } }, 'the app to install its SIGHUP handler')
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${f}` }], refresh: '1h', onChange: [`signal:HUP:${procName}`] }, { root, values: ['sig-a-123456', 'sig-b-123456'] })
  await h.agent.synced
  replace(f, 'sig-b-123456')
  await eventually(() => { try { return readFileSync(marker, 'utf8') === '1' } catch { return false } }, 'SIGHUP delivered')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(readFileSync(marker, 'utf8'), '1', 'exactly one SIGHUP for one rotation')
  t.ok(h.logs.some((l) => l.includes('"app notified of rotation"')))
})

t.test('binary values are served byte for byte over HTTP and gRPC', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'bin')
  const bytes = Buffer.concat([Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a, 0xc3, 0x28]), randomBytes(64)])
  writeFileSync(f, bytes)
  const h = await startTestAgent(t, { secrets: [{ name: 'bin', ref: `file:${f}` }] }, { root })
  await h.agent.synced
  const res = await fetch(`${h.base}/v1/secrets/bin`, { headers: { 'x-sidekey-token': h.token } })
  t.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), 'HTTP body equals the bytes')
  const g = await new Promise<{ value: Buffer }>((resolve, reject) => h.grpc().Get({ name: 'bin' }, h.metadata(), (err, r) => err !== null ? reject(err) : resolve(r as never)))
  t.ok(Buffer.from(g.value).equals(bytes), 'gRPC value equals the bytes')
  t.ok(readFileSync(join(h.dir, 'bin')).equals(bytes), 'file equals the bytes')
})
