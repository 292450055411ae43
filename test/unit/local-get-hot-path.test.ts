// The local GET's per-request shortcuts keep every answer and count the same:
// the request counter's last-outcome entry (a run of equal outcomes skips the
// lookups), the remembered Host that passed the loopback check, and names
// decoded only when the path has a '%'.
import t from 'tap'
import { request, Agent } from 'node:http'
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { createHttpServer } from '../../agent/http-server.js'
import { ServedSet } from '../../agent/served.js'
import { StatusBoard } from '../../agent/status-board.js'
import { createMetrics } from '../../agent/metrics.js'
import { AuditTrail } from '../../agent/audit-trail.js'
import { makeTokenCheck } from '../../agent/access-token.js'
import { DEFAULT_LIMITS } from '../../core/limits.js'
import { startTestAgent } from '../helpers/agent.js'

process.env.SIDEKEY_TEST_HOT = 'sk-hot-' + randomBytes(8).toString('hex')
const secrets = [{ name: 'k', ref: 'env:SIDEKEY_TEST_HOT' }]

function counted (metrics: string, route: string, status: number): number {
  const line = metrics.split('\n').find((l) => l.startsWith('sidekey_requests_total{') && l.includes(`route="${route}"`) && l.includes(`status="${status}"`) && l.includes('api="http"'))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

t.test('sidekey_requests_total counts every outcome when outcomes alternate, across scrapes', async (t) => {
  const h = await startTestAgent(t, { secrets }, { values: [process.env.SIDEKEY_TEST_HOT as string] })
  await h.agent.synced
  for (const name of ['k', 'k', 'nope', 'k', 'nope', 'nope', 'k']) await h.get(name)
  let m = await h.metrics()
  t.equal(counted(m, '/v1/secrets/:name', 200), 4, 'four 200s')
  t.equal(counted(m, '/v1/secrets/:name', 404), 3, 'three 404s')
  // After a scrape, the entry counted last goes on counting into the next one.
  await h.get('nope')
  await h.get('k')
  await h.get('k')
  m = await h.metrics()
  t.equal(counted(m, '/v1/secrets/:name', 200), 6, 'six 200s after the scrape')
  t.equal(counted(m, '/v1/secrets/:name', 404), 4, 'four 404s after the scrape')
  t.equal(counted(m, '/metrics', 200), 1, 'the first scrape, counted once it was answered')
})

t.test('percent-encoded names are decoded; bad encodings and decoded non-names are refused', async (t) => {
  const h = await startTestAgent(t, { secrets }, { values: [process.env.SIDEKEY_TEST_HOT as string] })
  await h.agent.synced
  const base = `http://127.0.0.1:${h.agent.httpPort}/v1/secrets/`
  const get = async (raw: string): Promise<{ status: number, body: string }> => {
    const r = await fetch(base + raw, { headers: { 'x-sidekey-token': h.token } })
    return { status: r.status, body: await r.text() }
  }
  const enc = await get('%6B')
  t.equal(enc.status, 200, '%6B is k')
  t.equal(enc.body, process.env.SIDEKEY_TEST_HOT)
  const bad = await get('%ZZ')
  t.equal(bad.status, 400)
  t.match(JSON.parse(bad.body), { error: { code: 'SIDEKEY_E_BAD_REQUEST', message: /percent-encoding/ } })
  const slash = await get('a%2Fb')
  t.equal(slash.status, 400, 'a/b is not a secret name')
  t.match(JSON.parse(slash.body), { error: { code: 'SIDEKEY_E_BAD_REQUEST', message: /not a secret name/ } })
})

t.test('a Host that passed once does not let another through on the same connection', async (t) => {
  const h = await startTestAgent(t, { secrets }, { values: [process.env.SIDEKEY_TEST_HOT as string] })
  await h.agent.synced
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = async (host: string): Promise<number> => await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: h.agent.httpPort, path: '/v1/secrets/k', agent, headers: { host, 'x-sidekey-token': h.token } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(await get('localhost'), 200)
  t.equal(await get('evil.example'), 421, 'another name after a loopback one')
  t.equal(await get(`localhost:${h.agent.httpPort}`), 200)
  t.equal(await get('localhost.evil.example'), 421)
  t.equal(await get('localhost'), 200)
})

t.test('Node looks for slow requests every half of headersTimeout, never more often than every second', async (t) => {
  const served = new ServedSet([])
  const audit = pino({ level: 'silent' })
  const server = (headersTimeoutMs: number): { connectionsCheckingInterval: number } => createHttpServer({
    served, board: new StatusBoard(served), checkToken: makeTokenCheck('t'.repeat(32)), metrics: createMetrics({ defaultMetrics: false }),
    audit, trail: new AuditTrail(audit, () => undefined), limits: { ...DEFAULT_LIMITS, headersTimeoutMs },
  }) as unknown as { connectionsCheckingInterval: number }
  t.equal(DEFAULT_LIMITS.headersTimeoutMs, 5000)
  t.equal(server(5000).connectionsCheckingInterval, 2500, 'the default: every 2.5 s (was every second: the idle process woke each second)')
  t.equal(server(500).connectionsCheckingInterval, 1000, 'a short headersTimeout: every second, as before')
  t.equal(server(60_000).connectionsCheckingInterval, 30_000)
})
