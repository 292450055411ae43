// The refresher's coalescing window: how far ahead of its own due time a
// source may run on another source's wake-up. Pure arithmetic, no clock.
import t from 'tap'
import { coalesceWindow } from '../../agent/refresher.js'

t.test('a source runs at most jitter x its scheduled delay early, never while in backoff', async (t) => {
  t.equal(coalesceWindow({ delayMs: 30_000, jitter: 0.1, failures: 0 }), 3000, 'the jitter band of a 30 s interval')
  t.equal(coalesceWindow({ delayMs: 2_000, jitter: 0.1, failures: 0 }), 200, 'a lease renewal due sooner: the band of that delay, not of the interval')
  t.equal(coalesceWindow({ delayMs: 3_600_000, jitter: 0.1, failures: 2 }), 0, 'a failing source keeps its backoff: another wake-up does not pull it in')
  t.equal(coalesceWindow({ delayMs: undefined, jitter: 0.1, failures: 0 }), 0, 'not yet synced: nothing to pull in')
  t.equal(coalesceWindow({ delayMs: 30_000, jitter: 0, failures: 0 }), 0, 'jitter 0: each source on its own time')
  t.ok(coalesceWindow({ delayMs: 30_000, jitter: 1, failures: 0 }) <= 30_000, 'jitter 1: never more than the delay itself (no run before the last one)')
})
