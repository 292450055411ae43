// Rotation through every channel the app can use: the file, GET, a long-poll,
// a gRPC Watch, and the onChange hook (once per change).
import t from 'tap'
import { createServer } from 'node:http'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { LocalStore } from '../../agent/local-store.js'
import { startTestAgent, tempDir, watchUntil, eventually, replace } from '../helpers/agent.js'

t.test('a local store rotation reaches the file, GET, long-poll, gRPC Watch and onChange once', async (t) => {
  const root = tempDir(t)
  const key = randomBytes(32)
  process.env.SIDEKEY_TEST_KEY_A = key.toString('base64')
  const storePath = join(root, 'local.json')
  const ls = new LocalStore(storePath, key)
  const v1 = 'sk-first-' + randomBytes(8).toString('hex')
  const v2 = 'sk-second-' + randomBytes(8).toString('hex')
  ls.put('openai', Buffer.from(JSON.stringify({ api_key: v1 })))

  const hooks: string[] = []
  const hook = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { hooks.push(body); res.end('ok') })
  })
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
  t.teardown(() => hook.close())
  const hookPort = (hook.address() as AddressInfo).port

  const h = await startTestAgent(t, {
    secrets: [{ name: 'openai', ref: 'local:openai#api_key' }, { name: 'env', template: 'OPENAI_API_KEY={{secret "local:openai#api_key"}}\n' }],
    stores: { local: { type: 'local', path: storePath, keyEnv: 'SIDEKEY_TEST_KEY_A' } },
    refresh: '100ms',
    onChange: [`http:POST http://127.0.0.1:${hookPort}/reload`],
  }, { root, values: [v1, v2] })
  await h.agent.synced

  t.equal(readFileSync(join(h.dir, 'openai'), 'utf8'), v1, 'file holds the first value')
  t.equal(readFileSync(join(h.dir, 'env'), 'utf8'), `OPENAI_API_KEY=${v1}\n`, 'template rendered')
  const first = await h.get('openai')
  t.equal(first.status, 200)
  t.equal(first.body, v1)
  t.equal(first.etag, '"1"', 'ETag is the local store version')
  t.equal((await h.get('openai', { 'if-none-match': '"1"' })).status, 304, 'If-None-Match on the current version -> 304')

  const longPoll = h.get('openai', { 'if-none-match': '"1"' }, '?wait=20s')
  const watched = watchUntil(h, ['openai'], (ev) => ev.some((e) => e.kind === 'CHANGED'))
  await new Promise((resolve) => setTimeout(resolve, 100))
  ls.put('openai', Buffer.from(JSON.stringify({ api_key: v2 })))

  const polled = await longPoll
  t.equal(polled.status, 200, 'long-poll returns on rotation')
  t.equal(polled.body, v2, 'long-poll carries the new value')
  t.equal(polled.etag, '"2"')
  const events = await watched
  t.match(events.find((e) => e.kind === 'CHANGED'), { name: 'openai', version: '2' }, 'gRPC Watch sees version 2')
  t.ok(events.every((e) => !('value' in e)), 'Watch events carry no value')
  t.equal(readFileSync(join(h.dir, 'openai'), 'utf8'), v2, 'file holds the new value')
  t.equal(readFileSync(join(h.dir, 'env'), 'utf8'), `OPENAI_API_KEY=${v2}\n`, 'template re-rendered')
  const grpcGet = await new Promise<{ value: Buffer, version: string }>((resolve, reject) => h.grpc().Get({ name: 'openai' }, h.metadata(), (err, r) => err !== null ? reject(err) : resolve(r as { value: Buffer, version: string })))
  t.equal(grpcGet.value.toString(), v2, 'gRPC Get returns the new value')

  await eventually(() => hooks.length >= 1, 'onChange POST')
  await new Promise((resolve) => setTimeout(resolve, 500)) // room for a duplicate to show up
  t.equal(hooks.length, 1, 'onChange fired exactly once for one rotation')
  const hookBody = JSON.parse(hooks[0] as string) as { secrets: Array<{ name: string, version: string }> }
  t.same(hookBody.secrets.map((s) => s.name).sort(), ['env', 'openai'], 'one notification names both changed secrets')
  t.notOk((hooks[0] as string).includes(v2), 'the hook body carries no value')
  t.match(await h.metrics(), /sidekey_rotations_total\{secret="openai"\} 1/, 'rotation counted')
})

t.test('a file secret is re-read when the file is replaced', async (t) => {
  const root = tempDir(t)
  const src = join(root, 'key.txt')
  const a = 'file-value-' + randomBytes(6).toString('hex')
  const b = 'file-value-' + randomBytes(6).toString('hex')
  writeFileSync(src, a)
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${src}` }], refresh: '1h' }, { root, values: [a, b] })
  await h.agent.synced
  t.equal((await h.get('k')).body, a)
  replace(src, b)
  // refresh is 1h, so only the watch can deliver this
  await eventually(async () => (await h.get('k')).body === b, 'file watch to push the new value')
  t.equal(readFileSync(join(h.dir, 'k'), 'utf8'), b)
})

t.test('env secrets and formats', async (t) => {
  const v = 'env-value-' + randomBytes(6).toString('hex')
  process.env.SIDEKEY_TEST_ENV_JSON = JSON.stringify({ user: 'svc', password: v })
  const h = await startTestAgent(t, {
    secrets: [
      { name: 'raw', ref: 'env:SIDEKEY_TEST_ENV_JSON#password' },
      { name: 'as.env', ref: 'env:SIDEKEY_TEST_ENV_JSON', format: 'env' },
      { name: 'as.yaml', ref: 'env:SIDEKEY_TEST_ENV_JSON', format: 'yaml' },
      { name: 'as.json', ref: 'env:SIDEKEY_TEST_ENV_JSON', format: 'json', mode: '0400' },
    ],
  }, { values: [v] })
  await h.agent.synced
  t.equal((await h.get('raw')).body, v)
  t.equal((await h.get('as.env')).body, `user="svc"\npassword="${v}"\n`)
  t.equal((await h.get('as.yaml')).body, `user: svc\npassword: ${v}\n`)
  t.same(JSON.parse((await h.get('as.json')).body), { user: 'svc', password: v })
  const { statSync } = await import('node:fs')
  t.equal(statSync(join(h.dir, 'as.json')).mode & 0o777, 0o400, 'mode applied')
  t.equal(statSync(join(h.dir, 'raw')).mode & 0o777, 0o444, 'default mode without fsGroup is 0444')
  const list = await h.json('/v1/secrets') as { secrets: Array<{ name: string, version: string }> }
  t.same(list.secrets.map((s) => s.name), ['raw', 'as.env', 'as.yaml', 'as.json'])
  t.notOk(JSON.stringify(list).includes(v), 'the list carries no value')
})
