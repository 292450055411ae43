// The encrypted local store and its CLI: versions, wrong key, tampering,
// a broken file, oversize values — coded errors, never garbage or a crash.
import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { LocalStore, parseLocalKey } from '../../agent/local-store.js'
import { tempDir, startTestAgent } from '../helpers/agent.js'

const CLI = join(process.cwd(), 'dist/bin/sidekey.js')

async function cli (args: string[], env: Record<string, string>, input?: string): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    const p = execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
    p.stdin?.end(input ?? '')
  })
}

t.test('put/get/versions, and values are encrypted at rest', async (t) => {
  const dir = tempDir(t)
  const key = randomBytes(32)
  const s = new LocalStore(join(dir, 's.json'), key)
  t.equal(s.put('a', Buffer.from('value-one-abcdef')), 1)
  t.equal(s.put('a', Buffer.from('value-two-abcdef')), 2)
  t.equal(s.get('a')?.value.toString(), 'value-two-abcdef')
  t.equal(s.get('a', 1)?.value.toString(), 'value-one-abcdef', 'older version kept')
  t.equal(s.currentVersion('a'), 2)
  t.notOk(readFileSync(join(dir, 's.json'), 'utf8').includes('value-'), 'no plaintext on disk')
  t.equal(readFileSync(join(dir, 's.json')).length > 0 && (await import('node:fs')).statSync(join(dir, 's.json')).mode & 0o777, 0o600, 'store file is 0600')
  for (let i = 0; i < 10; i++) s.put('a', Buffer.from(`v${i}`))
  t.same(s.list()[0]?.versions.length, 5, 'history bounded')
  t.ok(s.remove('a'))
  t.same(s.list(), [])
})

t.test('a wrong key, a tampered record and a broken file are clear errors', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 's.json')
  const s = new LocalStore(file, randomBytes(32))
  s.put('a', Buffer.from('secret-value-xyz'))
  const wrong = new LocalStore(file, randomBytes(32))
  t.throws(() => wrong.get('a'), { code: 'SIDEKEY_E_LOCAL_DECRYPT', message: /the key is wrong or the file was modified/ })
  t.throws(() => wrong.list(), { code: 'SIDEKEY_E_LOCAL_DECRYPT' }, 'wrong key detected even before reading a record')

  const doc = JSON.parse(readFileSync(file, 'utf8'))
  const ct = Buffer.from(doc.secrets.a.versions[0].ct, 'base64')
  ct[0] = (ct[0] as number) ^ 1
  doc.secrets.a.versions[0].ct = ct.toString('base64')
  writeFileSync(file, JSON.stringify(doc))
  t.throws(() => s.get('a'), { code: 'SIDEKEY_E_LOCAL_DECRYPT' }, 'a flipped bit is detected')

  // moving a record to another name is detected (name and version are authenticated)
  const s2 = new LocalStore(join(dir, 's2.json'), randomBytes(32))
  s2.put('x', Buffer.from('x-value-123456'))
  s2.put('y', Buffer.from('y-value-123456'))
  const d2 = JSON.parse(readFileSync(join(dir, 's2.json'), 'utf8'))
  d2.secrets.y = d2.secrets.x
  writeFileSync(join(dir, 's2.json'), JSON.stringify(d2))
  t.throws(() => s2.get('y'), { code: 'SIDEKEY_E_LOCAL_DECRYPT' }, 'a swapped record is detected')

  writeFileSync(file, 'not json')
  t.throws(() => s.get('a'), { code: 'SIDEKEY_E_LOCAL_STORE', message: /not valid JSON/ })
  writeFileSync(file, '{"format":"other"}')
  t.throws(() => s.get('a'), { code: 'SIDEKEY_E_LOCAL_STORE', message: /not a Sidekey local store/ })
})

t.test('keys are 32 bytes as base64 or hex', async (t) => {
  t.equal(parseLocalKey(randomBytes(32).toString('base64'), 'K').length, 32)
  t.equal(parseLocalKey(randomBytes(32).toString('hex'), 'K').length, 32)
  t.throws(() => parseLocalKey(undefined, 'K'), { code: 'SIDEKEY_E_LOCAL_KEY', message: /K is not set/ })
  t.throws(() => parseLocalKey('short', 'K'), { code: 'SIDEKEY_E_LOCAL_KEY', message: /32 bytes/ })
  t.throws(() => parseLocalKey(randomBytes(16).toString('base64'), 'K'), { code: 'SIDEKEY_E_LOCAL_KEY' })
})

t.test('sidekey local put/list/rm through the CLI', async (t) => {
  const dir = tempDir(t)
  const env = { SIDEKEY_LOCAL_KEY: randomBytes(32).toString('base64'), SIDEKEY_LOCAL_STORE: join(dir, 'l.json') }
  const put = await cli(['local', 'put', 'openai'], env, 'sk-cli-value-123456')
  t.equal(put.code, 0, put.stderr)
  t.equal(put.stdout, 'openai version 1\n')
  const list = await cli(['local', 'list'], env)
  t.match(list.stdout, /^openai\tversion 1\t/)
  t.notOk(list.stdout.includes('sk-cli-value'), 'list never prints values')
  const wrongKey = await cli(['local', 'list'], { ...env, SIDEKEY_LOCAL_KEY: randomBytes(32).toString('base64') })
  t.equal(wrongKey.code, 1)
  t.match(wrongKey.stderr, /SIDEKEY_E_LOCAL_DECRYPT/)
  const noKey = await cli(['local', 'list'], { ...env, SIDEKEY_LOCAL_KEY: '' })
  t.match(noKey.stderr, /SIDEKEY_E_LOCAL_KEY: SIDEKEY_LOCAL_KEY is not set/)
  const empty = await cli(['local', 'put', 'x'], env, '')
  t.match(empty.stderr, /empty/)
  const big = await cli(['local', 'put', 'x', '--max-bytes', '10'], env, 'x'.repeat(11))
  t.match(big.stderr, /SIDEKEY_E_VALUE_TOO_LARGE/)
  t.equal((await cli(['local', 'rm', 'openai'], env)).code, 0)
  t.equal((await cli(['local', 'rm', 'openai'], env)).code, 1, 'removing a missing secret fails')
  t.equal((await cli(['nope'], env)).code, 2, 'unknown command exits 2')
})

t.test('the agent refuses bad input without crashing', async (t) => {
  const dir = tempDir(t)
  const cfg = join(dir, 'c.json')
  writeFileSync(cfg, '{"dir": 1,')
  const broken = await cli(['agent', '--config', cfg], {})
  t.equal(broken.code, 1)
  t.match(broken.stderr, /SIDEKEY_E_CONFIG_FILE: .*c\.json is not valid JSON/)
  writeFileSync(cfg, JSON.stringify({ dir: join(dir, 'o'), secrets: [{ name: 'a', ref: 'vault' }] }))
  const badRef = await cli(['agent', '--config', cfg], {})
  t.match(badRef.stderr, /SIDEKEY_E_REF_SYNTAX: config\.secrets\[0\]: invalid secret reference/)
  const missing = await cli(['agent', '--config', join(dir, 'none.json')], {})
  t.match(missing.stderr, /SIDEKEY_E_CONFIG_FILE: cannot read config file/)
  const viaEnv = await cli(['agent'], { SIDEKEY_CONFIG: '{"secrets":[]}' })
  t.match(viaEnv.stderr, /missing required field "dir"/)
})

t.test('an oversize value is refused with a code and the old value stays', async (t) => {
  const big = 'B'.repeat(2000)
  process.env.SIDEKEY_TEST_BIG = 'small-value-1234'
  const h = await startTestAgent(t, { secrets: [{ name: 'b', ref: 'env:SIDEKEY_TEST_BIG' }], maxValueBytes: 1000, refresh: '50ms', backoff: { initial: '20ms', max: '50ms' } }, { values: [big, 'small-value-1234'] })
  await h.agent.synced
  process.env.SIDEKEY_TEST_BIG = big
  const { eventually } = await import('../helpers/agent.js')
  await eventually(async () => /code="SIDEKEY_E_VALUE_TOO_LARGE"/.test(await h.metrics()), 'oversize to be refused')
  t.equal((await h.get('b')).body, 'small-value-1234', 'previous value still served')
  const st = await h.json('/v1/secrets') as { secrets: Array<{ error?: { code: string, message: string } }> }
  t.match(st.secrets[0]?.error, { code: 'SIDEKEY_E_VALUE_TOO_LARGE', message: /more than maxValueBytes \(1000\)/ })
})

t.test('a broken encrypted store at agent start is a coded error per secret, not a crash', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'l.json'), '{garbage')
  process.env.SIDEKEY_TEST_KEY_BROKEN = randomBytes(32).toString('base64')
  const h = await startTestAgent(t, { secrets: [{ name: 'a', ref: 'local:a' }], stores: { local: { type: 'local', path: join(dir, 'l.json'), keyEnv: 'SIDEKEY_TEST_KEY_BROKEN' } } })
  await h.agent.synced
  t.equal((await fetch(`${h.base}/ready`)).status, 503, 'not ready')
  const r = await h.get('a')
  t.equal(r.status, 503)
  t.match(JSON.parse(r.body), { error: { code: 'SIDEKEY_E_NOT_READY' } })
  const st = await h.json('/v1/secrets') as { secrets: Array<{ error?: { code: string } }> }
  t.equal(st.secrets[0]?.error?.code, 'SIDEKEY_E_LOCAL_STORE')
})
