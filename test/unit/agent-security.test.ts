// The local endpoint's guards, and the rule that values never leak.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import { connect } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { startTestAgent, assertNoValues } from '../helpers/agent.js'

t.test('tokens, X-Forwarded-For and binding', async (t) => {
  const v = 'sk-guarded-' + randomBytes(8).toString('hex')
  process.env.SIDEKEY_TEST_GUARDED = v
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: 'env:SIDEKEY_TEST_GUARDED' }] }, { values: [v] })
  await h.agent.synced
  const url = `${h.base}/v1/secrets/k`

  const none = await fetch(url)
  t.equal(none.status, 401, 'no token -> 401')
  t.match(await none.json(), { error: { code: 'SIDEKEY_E_UNAUTHENTICATED' } })
  const wrong = await fetch(url, { headers: { 'x-sidekey-token': 'x'.repeat(43) } })
  t.equal(wrong.status, 403, 'wrong token -> 403')
  t.match(await wrong.json(), { error: { code: 'SIDEKEY_E_FORBIDDEN' } })
  const shortWrong = await fetch(url, { headers: { authorization: 'Bearer abc' } })
  t.equal(shortWrong.status, 403, 'a wrong token of another length -> 403')
  const bearer = await fetch(url, { headers: { authorization: `Bearer ${h.token}` } })
  t.equal(bearer.status, 200, 'Authorization: Bearer works')
  t.equal(await bearer.text(), v)
  const xff = await fetch(url, { headers: { 'x-sidekey-token': h.token, 'x-forwarded-for': '10.0.0.1' } })
  t.equal(xff.status, 400, 'X-Forwarded-For -> 400 even with the right token')
  t.match(await xff.json(), { error: { code: 'SIDEKEY_E_FORWARDED' } })
  t.equal((await fetch(`${h.base}/v1/secrets/nope`, { headers: { 'x-sidekey-token': h.token } })).status, 404, 'unknown secret -> 404')
  const unknown = await fetch(`${h.base}/v1/secrets/nope`, { headers: { 'x-sidekey-token': h.token } })
  t.match(await unknown.json(), { error: { code: 'SIDEKEY_E_SECRET_UNKNOWN', message: /no secret named "nope"/ } }, '404 has a JSON error body')
  t.equal((await fetch(url, { method: 'POST', headers: { 'x-sidekey-token': h.token } })).status, 405, 'read-only API')
  t.equal((await fetch(`${url}?wait=soon`, { headers: { 'x-sidekey-token': h.token } })).status, 400, 'bad ?wait= -> 400')
  t.equal((await fetch(`${h.base}/healthz`)).status, 200, 'healthz needs no token')

  // gRPC: same rules
  const c = h.grpc()
  const code = await new Promise<number>((resolve) => c.Get({ name: 'k' }, (err) => resolve(err?.code ?? 0)))
  t.equal(code, grpc.status.UNAUTHENTICATED, 'gRPC without token -> UNAUTHENTICATED')
  const md = new grpc.Metadata()
  md.set('x-sidekey-token', 'wrong-token-value')
  const code2 = await new Promise<number>((resolve) => c.Get({ name: 'k' }, md, (err) => resolve(err?.code ?? 0)))
  t.equal(code2, grpc.status.PERMISSION_DENIED, 'gRPC wrong token -> PERMISSION_DENIED')

  // bound to loopback only: the address, and a connection attempt on another local address
  const addr = (h.agent as unknown as { httpPort: number }).httpPort
  const other = Object.values(networkInterfaces()).flat().find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)
  if (other !== undefined) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(addr, other.address)
      s.once('connect', () => { s.destroy(); resolve(false) })
      s.once('error', () => resolve(true))
    })
    t.ok(refused, `not reachable on ${other.address}`)
  }
  const refusedOn2 = await new Promise<boolean>((resolve) => {
    const s = connect(addr, '127.0.0.2')
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', () => resolve(true))
  })
  t.ok(refusedOn2, 'not reachable on 127.0.0.2: bound to 127.0.0.1 exactly')

  // Accesses are counted and written as one line per (caller, secret, version,
  // outcome) within a second: the counts add up to every access made above.
  const auditLines = (): string[] => h.logs.filter((l) => l.includes('"audit":true'))
  const accesses = (): number => auditLines().reduce((n, l) => n + (JSON.parse(l) as { count: number }).count, 0)
  for (let i = 0; i < 100 && accesses() < 8; i++) await new Promise((resolve) => setTimeout(resolve, 100))
  const audit = auditLines()
  t.ok(accesses() >= 8, 'every access is counted in the audit trail')
  t.ok(audit.every((l) => { const a = JSON.parse(l) as { count: unknown, first: unknown, last: unknown }; return typeof a.count === 'number' && a.count >= 1 && typeof a.first === 'string' && typeof a.last === 'string' }), 'each audit line carries a count and the first and last access')
  t.ok(audit.some((l) => l.includes('"status":401')) && audit.some((l) => l.includes('"status":403')), 'denials are audited')
  t.ok(audit.some((l) => l.includes('"refs":["env:SIDEKEY_TEST_GUARDED"]') && l.includes('"status":200')), 'audit names the reference and outcome')
})

t.test('the leak check itself fails when a value is present', async (t) => {
  t.throws(() => assertNoValues(['sk-leaky-123456'], 'log: sk-leaky-123456', 'a log'), /appeared in a log/)
  t.doesNotThrow(() => assertNoValues(['sk-leaky-123456'], 'log: nothing', 'a log'))
})

t.test('a logged object carrying a value field is redacted', async (t) => {
  const { captureLogger } = await import('../helpers/agent.js')
  const logs: string[] = []
  const log = captureLogger(logs)
  log.info({ value: 'sk-should-not-appear', nested: { token: 'tok-should-not-appear' } }, 'oops')
  t.notOk(logs.join('').includes('should-not-appear'))
  t.match(logs[0], /\[redacted\]/)
})
