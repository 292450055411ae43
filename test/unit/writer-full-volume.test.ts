// Finding 1 (issue 9): a full secrets volume must never wedge the agent. Runs
// on a real, small tmpfs (mounted here: needs root); a size-capped directory
// is not a stand-in, so without root the test is skipped with the reason.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, writeFileSync, symlinkSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { startTestAgent, tempDir, eventually, replace, type TestAgent } from '../helpers/agent.js'
import { AtomicWriter } from '../../agent/writer.js'

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

/** Mounts a tmpfs of `size` at a fresh dir and unmounts it in teardown, whatever happens. */
function smallTmpfs (t: Test, size: string): string {
  const root = tempDir(t, 'sidekey-tmpfs-')
  const mnt = join(root, 'vol')
  mkdirSync(mnt)
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt])
  // Registered after tempDir's rm, so it runs first (tap runs teardowns in reverse).
  t.teardown(() => { try { execFileSync('umount', ['-l', mnt]) } catch { /* already gone */ } })
  return mnt
}

const gens = (dir: string): string[] => readdirSync(dir).filter((e) => /^\.\.\d{4}_/.test(e))
const value = (tag: string, n: number): string => (tag + '-').padEnd(n, randomBytes(4).toString('hex'))

if (!isRoot) {
  t.comment('skipped: mounting a real tmpfs needs root (uid 0); a size-capped directory is not an acceptable stand-in')
  t.pass('skipped without root')
} else {
  t.test('rotations on a 2 MiB tmpfs that holds only two generations keep succeeding', async (t) => {
    const vol = smallTmpfs(t, '2m')
    const src = tempDir(t)
    const size = 300 * 1024 // 3 x 300 KiB: two generations fit in 2 MiB, three do not
    const names = ['a', 'b', 'c']
    const values: string[] = []
    const put = (round: number): void => {
      for (const n of names) {
        const v = value(`${n}${round}`, size)
        values.push(v)
        replace(join(src, n), v)
      }
    }
    put(1)
    const h = await startTestAgent(t, {
      secrets: names.map((n) => ({ name: n, ref: `file:${join(src, n)}` })),
      refresh: '200ms',
      backoff: { initial: '50ms', max: '400ms' },
    }, { root: vol })
    await h.agent.synced
    for (let round = 2; round <= 5; round++) {
      put(round)
      await eventually(() => names.every((n) => readFileSync(join(h.dir, n), 'utf8').startsWith(`${n}${round}-`)), `round ${round} on disk`, { retryErrors: true })
      const ready = await fetch(`${h.base}/ready`)
      t.equal(ready.status, 200, `round ${round}: /ready`)
      t.ok(gens(h.dir).length <= 2, `round ${round}: at most two generations on the volume (${gens(h.dir).length})`)
    }
    t.notOk(h.logs.some((l) => l.includes('SIDEKEY_E_WRITE')), 'no write ever failed')
  })

  /** An agent serving two file secrets, a and b (1,000 bytes each), on a 2 MiB tmpfs, synced. */
  async function twoFilesOnSmallVolume (t: Test): Promise<{ src: string, h: TestAgent, a1: string }> {
    const vol = smallTmpfs(t, '2m')
    const src = tempDir(t)
    const a1 = value('a1', 1000)
    replace(join(src, 'a'), a1)
    replace(join(src, 'b'), value('b1', 1000))
    const h = await startTestAgent(t, {
      secrets: [{ name: 'a', ref: `file:${join(src, 'a')}` }, { name: 'b', ref: `file:${join(src, 'b')}` }],
      refresh: '200ms',
      backoff: { initial: '50ms', max: '400ms' },
      maxValueBytes: 4 * 1024 * 1024,
    }, { root: vol })
    await h.agent.synced
    return { src, h, a1 }
  }

  t.test('a set that cannot fit: no half-written generation, /ready false with SIDEKEY_E_WRITE, recovery when it fits', async (t) => {
    const { src, h } = await twoFilesOnSmallVolume(t)
    t.equal((await fetch(`${h.base}/ready`)).status, 200)
    replace(join(src, 'a'), value('a2', 2500 * 1024)) // within maxValueBytes, larger than the whole 2 MiB volume
    replace(join(src, 'b'), value('b2', 2500 * 1024))
    const notReady = await eventually(async () => {
      const r = await fetch(`${h.base}/ready`)
      return r.status === 503 ? await r.json() as { ready: boolean, error?: { code: string } } : undefined
    }, '/ready to turn false')
    t.match(notReady, { ready: false, error: { code: 'SIDEKEY_E_WRITE' } })
    const list = await h.json('/v1/secrets') as { ready: boolean, error?: { code: string, message: string } }
    t.equal(list.ready, false)
    t.equal(list.error?.code, 'SIDEKEY_E_WRITE', '/v1/secrets shows the write error')
    t.match(list.error?.message, /needs \d+ bytes and the volume has \d+ free/, 'with the numbers')
    t.equal(gens(h.dir).length, 1, 'only the published generation is on the volume: failed ones are removed')
    t.ok(readFileSync(join(h.dir, 'a'), 'utf8').startsWith('a1-') && readFileSync(join(h.dir, 'b'), 'utf8').startsWith('b1-'), 'the files stay one consistent set')

    replace(join(src, 'a'), value('a3', 500 * 1024))
    replace(join(src, 'b'), value('b3', 500 * 1024))
    await eventually(() => readFileSync(join(h.dir, 'a'), 'utf8').startsWith('a3-') && readFileSync(join(h.dir, 'b'), 'utf8').startsWith('b3-'), 'the smaller values on disk')
    // The files show at the ..data swap; the write (and with it the error) is over once its last steps after the swap are.
    await eventually(async () => (await fetch(`${h.base}/ready`)).status === 200, '/ready to recover')
    t.pass('/ready recovers')
    const failures = h.logs.filter((l) => l.includes('write failed; will retry')).map((l) => JSON.parse(l) as { retryInMs: number, attempt: number })
    t.ok(failures.length >= 1, 'the failure was logged')
    t.ok(failures.every((f, i) => i === 0 || f.attempt > (failures[i - 1] as { attempt: number }).attempt), 'retries are counted (backoff grows with the attempt)')
  })

  t.test('a value too large for the volume, then put back: the failed write is over, /ready recovers, later rotations are written', async (t) => {
    const { src, h, a1 } = await twoFilesOnSmallVolume(t)
    replace(join(src, 'a'), value('a2', 2500 * 1024)) // larger than the whole volume: the write fails
    await eventually(async () => (await fetch(`${h.base}/ready`)).status === 503, '/ready to turn false')
    // Put back: the retry now has nothing to write (the disk already holds a1). It must not stay in backoff for good.
    replace(join(src, 'a'), a1)
    await eventually(async () => (await fetch(`${h.base}/ready`)).status === 200, '/ready to recover')
    replace(join(src, 'b'), value('b2', 1000))
    await eventually(() => readFileSync(join(h.dir, 'b'), 'utf8').startsWith('b2-'), 'a later rotation to be written')
    t.equal(readFileSync(join(h.dir, 'a'), 'utf8'), a1)
  })

  t.test('a volume a previous run left full of failed generations is pruned on restart', async (t) => {
    const vol = smallTmpfs(t, '2m')
    const dir = join(vol, 'secrets')
    mkdirSync(dir)
    for (let i = 0; i < 6; i++) {
      const g = join(dir, `..2026_01_01_00_00_0${i}.000_abcde${i}`)
      mkdirSync(g)
      try { writeFileSync(join(g, 'junk'), Buffer.alloc(400 * 1024)) } catch { break } // fill it up
    }
    const w = new AtomicWriter(dir)
    await w.write([{ name: 'a', bytes: Buffer.from('fresh-value-123'), mode: 0o444, version: '1', updatedAt: Date.now() }])
    t.equal(readFileSync(join(dir, 'a'), 'utf8'), 'fresh-value-123')
    t.equal(gens(dir).length, 1, 'only the new generation remains')
    t.equal(readlinkSync(join(dir, 'a')), '..data/a')
  })
}

t.test('finding 9: planted links are not trusted on restart', async (t) => {
  const root = tempDir(t)
  const dir = join(root, 'secrets')
  const outside = join(root, 'outside')
  const gen = '..2026_01_01_00_00_00.000_abcdef'
  mkdirSync(join(outside, gen), { recursive: true })
  writeFileSync(join(outside, gen, 'k'), 'planted-value-xyz')
  writeFileSync(join(outside, gen, '.sidekey-meta.json'), JSON.stringify({ k: { version: 'x', updatedAt: 1 } }))
  writeFileSync(join(outside, 'passwd'), 'planted-target-xyz')
  mkdirSync(dir)
  symlinkSync(join('..', 'outside', gen), join(dir, '..data'))
  symlinkSync(join(outside, 'passwd'), join(dir, 'k'))
  process.env.SIDEKEY_TEST_PLANTED = 'real-value-' + randomBytes(6).toString('hex')
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: 'env:SIDEKEY_TEST_PLANTED' }] }, { root, values: ['planted-value-xyz', 'planted-target-xyz'] })
  await h.agent.synced
  t.notOk(h.logs.some((l) => l.includes('serving the secrets a previous run wrote')), 'a ..data link outside the volume is not served as the previous run')
  t.equal(readlinkSync(join(dir, 'k')), '..data/k', 'a planted <name> link is replaced by our own')
  t.equal(readFileSync(join(dir, 'k'), 'utf8'), process.env.SIDEKEY_TEST_PLANTED)
  t.equal(readFileSync(join(outside, 'passwd'), 'utf8'), 'planted-target-xyz', 'the link target outside was not touched')
})
