// The aggregated audit trail: equal accesses share one line with a count,
// lines name references and versions (never a value), an idle trail arms no
// timer, and flush (the agent's close) writes what is still counted.
import t from 'tap'
import { pino } from 'pino'
import fs, { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuditTrail } from '../../agent/audit-trail.js'
import { AUDIT_FLUSH_MS, createAuditLogger } from '../../agent/logger.js'

function capture (): { lines: Array<Record<string, unknown>>, log: pino.Logger } {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ base: null }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>) } })
  return { lines, log }
}

t.test('equal accesses are one line with a count; different outcomes are separate lines', async (t) => {
  const { lines, log } = capture()
  // A flush interval far beyond the test: only flush() writes.
  const trail = new AuditTrail(log, (name) => name === 'openai' ? ['vault:secret/openai#api_key'] : undefined, 3_600_000)
  const caller = '127.0.0.1:40000'
  for (let i = 0; i < 3; i++) trail.record({ api: 'http', caller, agent: 'curl', route: '/v1/secrets/:name', status: 200, secret: 'openai', version: '2' })
  trail.record({ api: 'http', caller, agent: 'curl', route: '/v1/secrets/:name', status: 304, secret: 'openai', version: '2' })
  trail.record({ api: 'http', caller, route: 'auth', status: 401 })
  t.equal(lines.length, 0, 'nothing is written per access')
  trail.flush()
  t.equal(lines.length, 3)
  const ok = lines.find((l) => l.status === 200)
  t.match(ok, { audit: true, api: 'http', caller, agent: 'curl', secret: 'openai', refs: ['vault:secret/openai#api_key'], version: '2', count: 3, msg: 'access' })
  t.type(ok?.first, 'string')
  t.type(ok?.last, 'string')
  t.match(lines.find((l) => l.status === 401), { route: 'auth', count: 1 })
  t.notOk('secret' in (lines.find((l) => l.status === 401) ?? {}), 'no secret field when none was asked for')
  trail.flush()
  t.equal(lines.length, 3, 'a second flush writes nothing: the groups start afresh')
})

t.test('the timer writes within the interval and is armed only by an access', async (t) => {
  const { lines, log } = capture()
  const trail = new AuditTrail(log, () => undefined, 20)
  t.teardown(() => trail.flush())
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.equal(lines.length, 0, 'an idle trail writes nothing')
  trail.record({ api: 'grpc', caller: 'ipv4:127.0.0.1:5000', route: 'Get', status: 'OK', secret: 'k', version: '1' })
  for (let i = 0; i < 200 && lines.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.match(lines, [{ api: 'grpc', route: 'Get', status: 'OK', secret: 'k', version: '1', count: 1 }])
})

t.test('the audit destination writes each batch at once, whole (over 4 KiB too), and nothing while idle', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'sidekey-audit-')), 'audit.log')
  // count every write the destination makes (an empty periodic flush is one too)
  const write = fs.write
  const writeSync = fs.writeSync
  let writes = 0
  fs.write = ((...a: Parameters<typeof fs.write>) => { writes++; return (write as (...x: unknown[]) => unknown)(...a) }) as typeof fs.write
  fs.writeSync = ((...a: Parameters<typeof fs.writeSync>) => { writes++; return (writeSync as (...x: unknown[]) => number)(...a) }) as typeof fs.writeSync
  t.teardown(() => { fs.write = write; fs.writeSync = writeSync })
  const log = createAuditLogger('info', undefined, file)
  const trail = new AuditTrail(log, () => undefined, 3_600_000)
  await new Promise((resolve) => setTimeout(resolve, AUDIT_FLUSH_MS * 2.5))
  t.equal(writes, 0, 'no write while nothing was accessed')
  // 20 groups of ~300 bytes: more than a 4 KiB buffer would send on its own
  for (let i = 0; i < 20; i++) trail.record({ api: 'http', caller: `127.0.0.1:${1000 + i}`, agent: 'x'.repeat(80), route: '/v1/secrets/:name', status: 200, secret: `s${i}`, version: '1' })
  trail.flush()
  const lines = readFileSync(file, 'utf8').trim().split('\n')
  t.equal(lines.length, 20, 'every line of the batch is in the file when flush() returns')
  t.match(JSON.parse(lines[19] as string), { audit: true, component: 'audit', secret: 's19', count: 1 })
  log.error({ code: 'SIDEKEY_E_INTERNAL' }, 'request failed')
  t.match(readFileSync(file, 'utf8'), /request failed/, 'a line logged outside a batch is written at once too')
})

t.test('interleaved callers and outcomes each keep their own count, across flushes', async (t) => {
  const { lines, log } = capture()
  const trail = new AuditTrail(log, () => undefined, 3_600_000)
  const a = { api: 'http', caller: '127.0.0.1:1', route: '/v1/secrets/:name', secret: 's', version: '1' } as const
  const b = { ...a, caller: '127.0.0.1:2' }
  for (const x of [{ ...a, status: 200 }, { ...b, status: 200 }, { ...a, status: 200 }, { ...a, status: 304 }, { ...a, status: 200 }, { ...a, status: 200, version: '2' }, { ...a, status: 200 }]) trail.record(x)
  trail.flush()
  const count = (caller: string, status: number, version: string): unknown => lines.find((l) => l.caller === caller && l.status === status && l.version === version)?.count
  t.equal(count(a.caller, 200, '1'), 4)
  t.equal(count(a.caller, 304, '1'), 1)
  t.equal(count(a.caller, 200, '2'), 1)
  t.equal(count(b.caller, 200, '1'), 1)
  t.equal(lines.length, 4)
  trail.record({ ...a, status: 200 })
  trail.flush()
  t.equal(lines.length, 5, 'after a flush the same access starts a new line')
  t.equal(lines[4]?.count, 1)
})
