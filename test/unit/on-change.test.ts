// The onChange http notifier's transport: undici with one keep-alive pool for
// every hook, a bounded number of connections per app, and timeouts that end a
// hung app's notification with an error that says what happened.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { pino, type Logger } from 'pino'
import { createNotifier } from '../../agent/on-change.js'
import { createMetrics } from '../../agent/metrics.js'
import { parseOnChange as parseOne } from '../../core/config/load.js'
import type { ServedSecret } from '../../agent/served.js'

const parseOnChange = (raw: string[]): ReturnType<typeof parseOne>[] => raw.map((r) => parseOne(r))

function capture (): { logger: Logger, lines: () => Array<Record<string, unknown>>, text: () => string } {
  const chunks: string[] = []
  const out = new Writable({ write (c: Buffer, _e, cb) { chunks.push(c.toString()); cb() } })
  return {
    logger: pino({ level: 'info' }, out) as Logger,
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

async function serve (t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ port: number, sockets: () => number, requests: () => number }> {
  let sockets = 0
  let requests = 0
  const srv = createServer((req, res) => { requests++; handler(req, res) })
  srv.on('connection', () => { sockets++ })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  return { port: (srv.address() as AddressInfo).port, sockets: () => sockets, requests: () => requests }
}

const value = 'sk-live-' + randomBytes(12).toString('hex')
const entry = (version: string): ServedSecret => ({ name: 'openai', value: Buffer.from(value), version, updatedAt: Date.now(), origin: 'backend' })

t.test('rotations reuse one keep-alive connection to the app', async (t) => {
  const bodies: string[] = []
  const s = await serve(t, (req, res) => {
    let b = ''
    req.on('data', (c: Buffer) => { b += c.toString() })
    req.on('end', () => { bodies.push(b); res.end('ok') })
  })
  const log = capture()
  const notify = createNotifier(parseOnChange([`http:POST http://127.0.0.1:${s.port}/reload`]), log.logger, createMetrics())
  t.teardown(async () => { await notify.close() })
  for (const v of ['1', '2', '3', '4']) {
    await notify([entry(v)])
    // Rotations are a refresh interval apart; let the pool take the connection back.
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  t.equal(s.requests(), 4, 'four rotations, four POSTs')
  t.equal(s.sockets(), 1, 'all over one connection')
  t.same(JSON.parse(bodies[3] ?? '{}'), { secrets: [{ name: 'openai', version: '4' }] }, 'the body names the secret and its version')
  t.notOk(log.text().includes(value), 'no value in the logs')
})

t.test('a transport that failed to load is loaded again at the next rotation', async (t) => {
  const app = await serve(t, (_req, res) => { res.end('ok') })
  const log = capture()
  let loads = 0
  const notify = createNotifier(parseOnChange([`http:POST http://127.0.0.1:${app.port}/reload`]), log.logger, createMetrics(), {
    loadHttpClient: async () => {
      if (++loads === 1) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' })
      return await import('../../agent/http-client.js')
    },
  })
  t.teardown(async () => { await notify.close() })
  await notify([entry('1')])
  t.equal(app.requests(), 0, 'the first rotation could not be sent')
  t.match(log.text(), /could not notify the app of a rotation/)
  await notify([entry('2')])
  t.equal(loads, 2, 'the failed load was not kept')
  t.equal(app.requests(), 1, 'the next rotation reaches the app')
  t.notMatch(log.text(), value, 'no value in the log')
})

t.test('many hooks on one app share a bounded pool', async (t) => {
  // Each answer is held until the next request arrives or a short while
  // passes, so unbounded clients would open one socket per hook.
  const s = await serve(t, (req, res) => {
    req.resume()
    req.on('end', () => { setTimeout(() => res.end('ok'), 50) })
  })
  const hooks = Array.from({ length: 8 }, (_, i) => `http:POST http://127.0.0.1:${s.port}/reload/${i}`)
  const log = capture()
  const metrics = createMetrics()
  const notify = createNotifier(parseOnChange(hooks), log.logger, metrics, { http: { connections: 2 } })
  t.teardown(async () => { await notify.close() })
  await notify([entry('1')])
  t.equal(s.requests(), 8, 'every hook was called')
  t.ok(s.sockets() <= 2, `at most 2 connections to the app (saw ${s.sockets()})`)
  t.equal((await metrics.onChangeErrors.get()).values.reduce((n, v) => n + v.value, 0), 0, 'no errors')
})

t.test('a hung app: the notification ends with a timeout error that names it', async (t) => {
  const s = await serve(t, (req) => { req.resume() }) // reads the POST, never answers
  const log = capture()
  const metrics = createMetrics()
  const url = `http://127.0.0.1:${s.port}/reload`
  const notify = createNotifier(parseOnChange([`http:POST ${url}`]), log.logger, metrics, { http: { headersTimeoutMs: 300 }, attempts: 2, backoffMs: 10 })
  t.teardown(async () => { await notify.close() })
  await notify([entry('7')])
  const warn = log.lines().find((l) => l.code === 'SIDEKEY_E_ON_CHANGE')
  t.ok(warn, 'a SIDEKEY_E_ON_CHANGE warning is logged')
  t.equal(warn?.err, `POST ${url}: the server did not answer within 300ms (UND_ERR_HEADERS_TIMEOUT), after 2 attempts`, 'the error says who did not answer, within what, and how often it was tried')
  t.equal(s.requests(), 2, 'both attempts reached the app')
  t.equal((await metrics.onChangeErrors.get()).values.find((v) => v.labels.kind === 'http')?.value, 1, 'counted once in sidekey_on_change_errors_total')
  t.notOk(log.text().includes(value), 'no value in the logs')
})

t.test('an app that refuses connections: a clear error, after the retries', async (t) => {
  const log = capture()
  // A port nothing listens on: bound, then closed.
  const dead = createServer()
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
  const deadPort = (dead.address() as AddressInfo).port
  await new Promise<void>((resolve) => dead.close(() => resolve()))
  const notify = createNotifier(parseOnChange([`http:POST http://127.0.0.1:${deadPort}/reload`]), log.logger, createMetrics(), { attempts: 2, backoffMs: 10 })
  t.teardown(async () => { await notify.close() })
  await notify([entry('1')])
  const warn = log.lines().find((l) => l.code === 'SIDEKEY_E_ON_CHANGE')
  t.equal(warn?.err, `POST http://127.0.0.1:${deadPort}/reload: no answer (ECONNREFUSED), after 2 attempts`)
})

t.test('a 4xx is the app\'s final answer; a 5xx is retried', async (t) => {
  let n = 0
  const s = await serve(t, (req, res) => {
    req.resume()
    req.on('end', () => { n++; res.statusCode = req.url === '/bad' ? 400 : (n <= 2 ? 503 : 200); res.end() })
  })
  const log = capture()
  const notify = createNotifier(parseOnChange([`http:POST http://127.0.0.1:${s.port}/bad`]), log.logger, createMetrics(), { attempts: 3, backoffMs: 10 })
  t.teardown(async () => { await notify.close() })
  await notify([entry('1')])
  t.equal(s.requests(), 1, 'a 400 is not retried')
  t.equal(log.lines().find((l) => l.code === 'SIDEKEY_E_ON_CHANGE')?.err, 'the app answered 400')
  n = 0
  const log2 = capture()
  const notify2 = createNotifier(parseOnChange([`http:POST http://127.0.0.1:${s.port}/reload`]), log2.logger, createMetrics(), { attempts: 3, backoffMs: 10 })
  t.teardown(async () => { await notify2.close() })
  await notify2([entry('2')])
  t.ok(log2.lines().some((l) => l.msg === 'app notified of rotation'), 'two 503s then a 200: notified')
})
