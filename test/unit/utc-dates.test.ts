// core/utc-dates.ts prints what toISOString and toUTCString print, without them.
import t from 'tap'
import { httpDate, httpDateNow, isoTime } from '../../core/utc-dates.js'

const YEAR = 365.2425 * 24 * 3600 * 1000
const edges = [
  0, -1, 1, 999, 1000, Date.UTC(2026, 11, 2, 8, 46, 54, 7), Date.UTC(2024, 1, 29, 23, 59, 59, 999),
  Date.UTC(0, 0, 1) - 1, Date.UTC(0, 0, 1), Date.UTC(0, 0, 1) + 1, new Date('0001-01-01T00:00:00.000Z').getTime(),
  new Date('0999-12-31T23:59:59.999Z').getTime(), new Date('9999-12-31T23:59:59.999Z').getTime(),
  new Date('9999-12-31T23:59:59.999Z').getTime() + 1, 8.64e15, -8.64e15, -62198755200000 - 1,
  // Year 0's first instant and year -1's last: where the UTC fields give way to the methods (Date.UTC(0, ...) is 1900).
  -62167219200000, -62167219200000 - 1, -62167219200000 + 1,
]

t.test('isoTime and httpDate equal toISOString and toUTCString', async (t) => {
  // Pseudo-random instants over years -2000..12000, the same ones every run.
  let x = 12345
  const rand = (): number => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648 }
  const instants = [...edges, ...Array.from({ length: 5000 }, () => Math.round((rand() * 14000 - 3970) * YEAR + rand() * 1000))]
  let bad = 0
  for (const ms of instants) {
    const d = new Date(ms)
    if (isoTime(ms) !== d.toISOString() || httpDate(ms) !== d.toUTCString()) {
      bad++
      t.fail(`${ms}: ${isoTime(ms)} / ${httpDate(ms)}, expected ${d.toISOString()} / ${d.toUTCString()}`)
    }
  }
  t.equal(bad, 0, `${instants.length} instants`)
})

t.test('an invalid date throws as toISOString does; toUTCString says Invalid Date', async (t) => {
  t.throws(() => isoTime(NaN), RangeError)
  t.throws(() => isoTime(8.64e15 + 1), RangeError)
  t.equal(httpDate(NaN), 'Invalid Date')
})

t.test('httpDateNow is the current second, and the next one once the clock passes it', async (t) => {
  const real = Date.now
  t.teardown(() => { Date.now = real })
  let clock = Date.UTC(2026, 11, 2, 8, 46, 54, 100)
  Date.now = () => clock
  t.equal(httpDateNow(), 'Wed, 02 Dec 2026 08:46:54 GMT')
  clock += 800
  t.equal(httpDateNow(), 'Wed, 02 Dec 2026 08:46:54 GMT', 'the same second')
  clock += 200
  t.equal(httpDateNow(), 'Wed, 02 Dec 2026 08:46:55 GMT', 'the next second')
  clock += 3_600_000
  t.equal(httpDateNow(), 'Wed, 02 Dec 2026 09:46:55 GMT', 'an hour on')
})
