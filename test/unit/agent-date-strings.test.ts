// The agent's logs, HTTP answers and JSON timestamps never go through
// Date.prototype.toISOString or toUTCString (Node's own HTTP Date header is
// toUTCString): on Node 24 the first call makes V8 ask ICU for the local time
// zone's display name, and ICU's time zone name tables then stay resident
// (about 1.2 MiB of an agent's RSS; core/utc-dates.ts). The strings are the same.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startTestAgent, tempDir } from '../helpers/agent.js'

const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

t.test('logs, answers and timestamps are written without toISOString or toUTCString', async (t) => {
  const calls: string[] = []
  const proto = Date.prototype as unknown as Record<string, (this: Date) => string>
  for (const m of ['toISOString', 'toUTCString', 'toString']) {
    const original = proto[m] as (this: Date) => string
    proto[m] = function (this: Date) { calls.push(`${m}: ${new Error().stack?.split('\n').slice(2, 5).join(' | ') ?? ''}`); return original.call(this) }
    t.teardown(() => { proto[m] = original })
  }
  const root = tempDir(t)
  const f = join(root, 'src')
  const v = 'dates-' + randomBytes(6).toString('hex')
  writeFileSync(f, v)
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${f}` }], refresh: '1h' }, { root, values: [v] })
  await h.agent.synced
  const headers = { 'x-sidekey-token': h.token }
  const answers: Array<[string, Response, number, number]> = []
  const ask = async (what: string, path: string, extra: Record<string, string> = {}): Promise<Response> => {
    const before = Date.now()
    const res = await fetch(h.base + path, { headers: { ...headers, ...extra } })
    answers.push([what, res, before, Date.now()])
    return res
  }
  t.equal((await ask('ready', '/ready')).status, 200)
  const value = await ask('value', '/v1/secrets/k')
  t.equal(value.status, 200)
  t.equal(await value.text(), v)
  t.match(value.headers.get('last-modified'), IMF_FIXDATE)
  t.equal((await ask('not modified', '/v1/secrets/k', { 'if-none-match': value.headers.get('etag') ?? '' })).status, 304)
  t.equal((await ask('unknown secret', '/v1/secrets/nope')).status, 404)
  const status = await ask('status', '/v1/secrets')
  const board = await status.json() as { secrets: Array<{ updatedAt: string, fetchedAt: string }> }
  t.match(board.secrets[0]?.updatedAt, ISO)
  t.match(board.secrets[0]?.fetchedAt, ISO)
  t.equal((await ask('metrics', '/metrics')).status, 200)
  for (const [what, res, before, after] of answers) {
    const date = res.headers.get('date') ?? ''
    t.match(date, IMF_FIXDATE, `${what}: a Date header`)
    // Whole seconds: between the second the request was sent in and the moment its answer came (an order, not a time limit).
    const at = Date.parse(date)
    t.ok(at >= Math.floor(before / 1000) * 1000 && at <= after, `${what}: the Date header is the time it was answered (${date})`)
  }
  h.agent.logger.info('a line')
  const line = JSON.parse(h.logs.at(-1) ?? '{}') as { time?: string }
  t.match(line.time, ISO, 'a log line has its ISO time')
  t.same(calls, [], 'no toISOString, toUTCString or toString on a Date')
})
