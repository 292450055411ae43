// The refresher's keyed queue: one run of a key at a time (an add during a run
// makes exactly one more), at most `concurrency` keys at once, backoff that
// grows per key and starts over on forget, and close() aborting the runs in
// flight and waiting for them. Ordering only: no test here reads a clock.
import t from 'tap'
import { KeyedQueue } from '../../agent/keyed-queue.js'

interface Gate { promise: Promise<void>, open: () => void }
function gate (): Gate {
  let open: () => void = () => {}
  const promise = new Promise<void>((resolve) => { open = resolve })
  return { promise, open }
}
const tick = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve)) }

t.test('a key never runs twice at once; adds during a run coalesce into one more run', async (t) => {
  const gates: Gate[] = []
  let running = 0
  let maxRunning = 0
  const runs: string[] = []
  const q = new KeyedQueue<string>({
    concurrency: 4, backoff: { initialMs: 10, maxMs: 100 }, jitter: 0,
    process: async (key) => {
      running++
      maxRunning = Math.max(maxRunning, running)
      runs.push(key)
      const g = gate()
      gates.push(g)
      await g.promise
      running--
    },
  })
  t.teardown(async () => { for (const g of gates) g.open(); await q.close() })
  q.add('a')
  await tick()
  q.add('a')
  q.add('a')
  q.add('a')
  await tick()
  t.same(runs, ['a'], 'the adds while "a" runs do not start a second run')
  gates.shift()?.open()
  await tick()
  t.same(runs, ['a', 'a'], 'they make exactly one more run')
  gates.shift()?.open()
  await tick()
  t.same(runs, ['a', 'a'], 'and no more')
  t.equal(maxRunning, 1)
})

t.test('at most `concurrency` keys run; the rest wait their turn in order', async (t) => {
  const gates = new Map<string, Gate>()
  const started: string[] = []
  const q = new KeyedQueue<string>({
    concurrency: 2, backoff: { initialMs: 10, maxMs: 100 }, jitter: 0,
    process: async (key) => {
      started.push(key)
      const g = gate()
      gates.set(key, g)
      await g.promise
    },
  })
  t.teardown(async () => { for (const g of gates.values()) g.open(); await q.close() })
  for (const k of ['a', 'b', 'c', 'd']) q.add(k)
  await tick()
  t.same(started, ['a', 'b'])
  t.equal(q.running, 2)
  gates.get('b')?.open()
  await tick()
  t.same(started, ['a', 'b', 'c'], 'a slot freed: the next key in order')
  gates.get('a')?.open()
  await tick()
  t.same(started, ['a', 'b', 'c', 'd'])
})

t.test('backoff grows per key, is capped, and starts over after forget', async (t) => {
  const q = new KeyedQueue<string>({ concurrency: 1, backoff: { initialMs: 1000, maxMs: 5000 }, jitter: 0, process: async () => {} })
  t.teardown(async () => { await q.close() })
  t.same([q.retry('a'), q.retry('a'), q.retry('a'), q.retry('a'), q.retry('a')], [1000, 2000, 4000, 5000, 5000])
  t.equal(q.failures('a'), 5)
  t.equal(q.retry('b'), 1000, 'another key has its own count')
  q.forget('a')
  t.equal(q.failures('a'), 0)
  t.equal(q.retry('a'), 1000, 'after a success the backoff starts over')
})

t.test('jitter only ever shortens a delay', async (t) => {
  const q = new KeyedQueue<string>({ concurrency: 1, backoff: { initialMs: 1000, maxMs: 5000 }, jitter: 0.5, process: async () => {} })
  t.teardown(async () => { await q.close() })
  for (let i = 0; i < 200; i++) {
    const ms = q.jittered(1000)
    if (ms > 1000 || ms < 500) t.fail(`jittered(1000) = ${ms}`)
  }
  t.pass('200 draws within [500, 1000]')
})

t.test('close() aborts the runs in flight, waits for them, and nothing runs after', async (t) => {
  const runs: string[] = []
  let ended = 0
  const q = new KeyedQueue<string>({
    concurrency: 2, backoff: { initialMs: 10, maxMs: 100 }, jitter: 0,
    process: async (key, signal) => {
      runs.push(key)
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
      ended++
    },
  })
  q.add('a')
  q.add('b')
  q.add('c')
  q.addAfter('d', 60_000)
  await tick()
  t.same(runs, ['a', 'b'])
  await q.close()
  t.equal(ended, 2, 'both runs saw the abort and ended before close() resolved')
  q.add('e')
  await tick()
  t.same(runs, ['a', 'b'], 'the queued key, the delayed key and later adds never run')
  t.ok(q.signal.aborted)
})

t.test('a process that throws does not stop the queue', async (t) => {
  const runs: string[] = []
  const q = new KeyedQueue<string>({
    concurrency: 1, backoff: { initialMs: 10, maxMs: 100 }, jitter: 0,
    process: async (key) => { runs.push(key); if (key === 'bad') throw new Error('boom') },
  })
  t.teardown(async () => { await q.close() })
  q.add('bad')
  q.add('good')
  await tick()
  t.same(runs, ['bad', 'good'])
})
