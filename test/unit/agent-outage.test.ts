// A backend that starts failing: the endpoint keeps serving the last good
// value, metrics count the errors, and recovery needs no restart. Also: a
// restarted agent serves what a previous run left on disk until the backend
// answers.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { LocalStore } from '../../agent/local-store.js'
import { startTestAgent, tempDir, eventually } from '../helpers/agent.js'

t.test('the last good value is served through an outage and recovery is automatic', async (t) => {
  const root = tempDir(t)
  const key = randomBytes(32)
  process.env.SIDEKEY_TEST_KEY_OUT = key.toString('hex')
  const storePath = join(root, 'store', 'local.json')
  const ls = new LocalStore(storePath, key)
  const good = 'good-' + randomBytes(8).toString('hex')
  const next = 'next-' + randomBytes(8).toString('hex')
  ls.put('api', Buffer.from(good))
  const h = await startTestAgent(t, {
    secrets: [{ name: 'api', ref: 'local:api' }],
    stores: { local: { type: 'local', path: storePath, keyEnv: 'SIDEKEY_TEST_KEY_OUT' } },
    refresh: '50ms',
    backoff: { initial: '20ms', max: '100ms' },
  }, { root, values: [good, next] })
  await h.agent.synced
  t.equal((await h.get('api')).body, good)

  // Outage: the store file is replaced by garbage (a backend answering nonsense).
  renameSync(storePath, storePath + '.bak')
  writeFileSync(storePath, '{"not": "a store"')
  await eventually(async () => /sidekey_fetch_errors_total\{store="local",code="SIDEKEY_E_LOCAL_STORE"\} [3-9]/.test(await h.metrics()), 'errors to be counted')
  const during = await h.get('api')
  t.equal(during.status, 200, 'still 200 during the outage')
  t.equal(during.body, good, 'last good value served')
  t.equal(readFileSync(join(h.dir, 'api'), 'utf8'), good, 'file untouched')
  const list = await h.json('/v1/secrets') as { secrets: Array<{ error?: { code: string } }> }
  t.equal(list.secrets[0]?.error?.code, 'SIDEKEY_E_LOCAL_STORE', 'the listing reports the error code')
  t.equal((await fetch(`${h.base}/ready`)).status, 200, 'still ready: the secret was written once')

  // Recovery with a new version, no restart.
  renameSync(storePath + '.bak', storePath)
  ls.put('api', Buffer.from(next))
  await eventually(async () => (await h.get('api')).body === next, 'recovery to the new value')
  t.equal(readFileSync(join(h.dir, 'api'), 'utf8'), next)
  t.ok(h.logs.some((l) => l.includes('"backend recovered"')), 'recovery logged')
  const after = await h.json('/v1/secrets') as { secrets: Array<{ error?: unknown }> }
  t.equal(after.secrets[0]?.error, undefined, 'error cleared after recovery')
})

t.test('a restarted agent serves the previous run\'s files while the backend is down', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'src')
  const v = 'persisted-' + randomBytes(8).toString('hex')
  writeFileSync(f, v)
  const cfg = { secrets: [{ name: 'k', ref: `file:${f}` }], refresh: '50ms', backoff: { initial: '20ms', max: '50ms' } }
  const first = await startTestAgent(t, cfg, { root, values: [v] })
  await first.agent.synced
  const version = (await first.get('k')).etag
  await first.agent.close()

  renameSync(f, f + '.gone') // the backend is down when the agent restarts
  const second = await startTestAgent(t, cfg, { root, values: [v] })
  t.equal((await fetch(`${second.base}/ready`)).status, 200, 'ready from disk at once')
  const got = await second.get('k')
  t.equal(got.body, v, 'serves the value from disk')
  t.equal(got.etag, version, 'with the version from disk')
  const list = await second.json('/v1/secrets') as { secrets: Array<{ origin: string }> }
  t.equal(list.secrets[0]?.origin, 'disk')
  renameSync(f + '.gone', f)
  await eventually(async () => ((await second.json('/v1/secrets')) as { secrets: Array<{ origin: string }> }).secrets[0]?.origin === 'backend', 'backend to take over')
})

t.test('a failed write is retried on a timer, not in a loop, and recovers', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'src')
  writeFileSync(f, 'write-one-123456')
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${f}` }], refresh: '1h', backoff: { initial: '200ms', max: '1s' } }, { root, values: ['write-one-123456', 'write-two-123456'] })
  await h.agent.synced
  // The secrets directory becomes a plain file: every write fails (ENOTDIR / EEXIST).
  renameSync(h.dir, h.dir + '.saved')
  writeFileSync(h.dir, 'not a directory')
  writeFileSync(f + '.tmp', 'write-two-123456')
  renameSync(f + '.tmp', f)
  await eventually(async () => /sidekey_fetch_errors_total\{store="writer",code="SIDEKEY_E_WRITE"\} [1-9]/.test(await h.metrics()), 'the write error to be counted')
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const attempts = Number(/sidekey_fetch_errors_total\{store="writer",code="SIDEKEY_E_WRITE"\} (\d+)/.exec(await h.metrics())?.[1])
  t.ok(attempts >= 2 && attempts <= 10, `retried on the 200ms timer, not in a tight loop (${attempts} attempts)`)
  t.equal((await h.get('k')).body, 'write-one-123456', 'the last written value is still served')
  const st = await h.json('/v1/secrets') as { secrets: Array<{ error?: { code: string } }> }
  t.equal(st.secrets[0]?.error?.code, 'SIDEKEY_E_WRITE', 'the listing shows the write error')
  rmSync(h.dir)
  renameSync(h.dir + '.saved', h.dir)
  await eventually(async () => (await h.get('k')).body === 'write-two-123456', 'the retry to write the new value')
  t.equal(readFileSync(join(h.dir, 'k'), 'utf8'), 'write-two-123456')
})

t.test('a render error stays visible until the secret renders again', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'src.json')
  writeFileSync(f, JSON.stringify({ api_key: 'render-one-123456' }))
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${f}#api_key` }], refresh: '50ms' }, { root, values: ['render-one-123456', 'render-two-123456'] })
  await h.agent.synced
  writeFileSync(f, JSON.stringify({ other: 'x' }))
  const errorOf = async (): Promise<string | undefined> => ((await h.json('/v1/secrets')) as { secrets: Array<{ error?: { code: string } }> }).secrets[0]?.error?.code
  await eventually(async () => (await errorOf()) === 'SIDEKEY_E_KEY_NOT_FOUND', 'the render error')
  await new Promise((resolve) => setTimeout(resolve, 300)) // several unchanged refreshes
  t.equal(await errorOf(), 'SIDEKEY_E_KEY_NOT_FOUND', 'still reported after refreshes that found nothing new')
  t.equal((await h.get('k')).body, 'render-one-123456', 'last good value served')
  writeFileSync(f, JSON.stringify({ api_key: 'render-two-123456' }))
  await eventually(async () => (await h.get('k')).body === 'render-two-123456', 'the fixed secret')
  t.equal(await errorOf(), undefined, 'cleared once it renders')
})
