// Issue 9 finding 2: concurrent `sidekey local put` loses nothing; finding 13:
// removing the newest record is detected, not silently served around.
import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { LocalStore } from '../../agent/local-store.js'
import { tempDir } from '../helpers/agent.js'

const CLI = join(process.cwd(), 'dist/bin/sidekey.js')

async function put (store: string, key: string, name: string, value: string): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    const p = execFile(process.execPath, [CLI, 'local', 'put', name, '--store', store], { env: { ...process.env, SIDEKEY_LOCAL_KEY: key } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
    p.stdin?.end(value)
  })
}

t.test('finding 2: 20 concurrent puts of different names keep all 20', async (t) => {
  const dir = tempDir(t)
  const store = join(dir, 'local.json')
  const key = randomBytes(32)
  const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await put(store, key.toString('base64'), `name-${i}`, `value-${i}-abcdef`)))
  t.same(results.map((r) => r.code), Array(20).fill(0), 'every put succeeded')
  const s = new LocalStore(store, key)
  t.same(s.list().map((i) => i.name).sort(), Array.from({ length: 20 }, (_, i) => `name-${i}`).sort(), 'all 20 names are in the store')
  for (let i = 0; i < 20; i++) t.equal(s.get(`name-${i}`)?.value.toString(), `value-${i}-abcdef`)
  t.notOk(existsSync(store + '.lock'), 'the lock is released')
})

t.test('finding 2: 20 concurrent puts of one name get 20 distinct versions', async (t) => {
  const dir = tempDir(t)
  const store = join(dir, 'local.json')
  const key = randomBytes(32)
  const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await put(store, key.toString('base64'), 'same', `value-${i}-abcdef`)))
  const versions = results.map((r) => Number(/version (\d+)/.exec(r.stdout)?.[1]))
  t.same([...versions].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1), 'versions 1..20, each told once')
  const s = new LocalStore(store, key)
  t.equal(s.currentVersion('same'), 20)
  const last = results[versions.indexOf(20)]
  t.ok(last !== undefined)
})

t.test('finding 2: orphan temp files and a dead holder\'s lock are cleaned up', async (t) => {
  const dir = tempDir(t)
  const store = join(dir, 'local.json')
  const key = randomBytes(32)
  const s = new LocalStore(store, key)
  s.put('a', Buffer.from('value-a-123456'))
  const orphan = `${store}.99999.deadbeef.tmp`
  writeFileSync(orphan, 'half-written')
  // A pid that cannot exist (above pid_max's ceiling): its lock is stale.
  writeFileSync(store + '.lock', '4194305\n')
  t.equal(s.put('a', Buffer.from('value-b-123456')), 2, 'a put gets past the stale lock')
  t.notOk(existsSync(orphan), 'the orphan temp file is removed')
  t.notOk(existsSync(store + '.lock'))
})

t.test('finding 13: removing the newest record, a secret or the head is detected', async (t) => {
  const dir = tempDir(t)
  const key = randomBytes(32)
  const mk = (): { file: string, s: LocalStore } => {
    const file = join(dir, `s-${randomBytes(3).toString('hex')}.json`)
    const s = new LocalStore(file, key)
    s.put('a', Buffer.from('old-value-123456'))
    s.put('a', Buffer.from('new-value-123456'))
    s.put('b', Buffer.from('b-value-123456'))
    return { file, s }
  }
  {
    const { file } = mk()
    const doc = JSON.parse(readFileSync(file, 'utf8'))
    doc.secrets.a.versions.pop()
    writeFileSync(file, JSON.stringify(doc))
    t.throws(() => new LocalStore(file, key).get('a'), { code: 'SIDEKEY_E_LOCAL_DECRYPT', message: /do not match the head record/ }, 'newest record removed -> refused, not version 1')
  }
  {
    const { file } = mk()
    const doc = JSON.parse(readFileSync(file, 'utf8'))
    delete doc.secrets.b
    writeFileSync(file, JSON.stringify(doc))
    t.throws(() => new LocalStore(file, key).list(), { code: 'SIDEKEY_E_LOCAL_DECRYPT' }, 'a secret removed -> refused')
  }
  {
    const { file } = mk()
    const doc = JSON.parse(readFileSync(file, 'utf8'))
    delete doc.head
    writeFileSync(file, JSON.stringify(doc))
    t.throws(() => new LocalStore(file, key).get('a'), { code: 'SIDEKEY_E_LOCAL_DECRYPT' }, 'the head record removed -> refused')
  }
  {
    const { s } = mk()
    t.equal(s.get('a')?.value.toString(), 'new-value-123456', 'an untouched store reads normally')
    t.ok(s.remove('b'))
    t.same(s.list().map((i) => i.name), ['a'], 'rm through the store updates the head')
  }
})
