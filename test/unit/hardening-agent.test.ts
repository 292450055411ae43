// Issue 9 findings on the agent's local endpoint: caps before authentication
// (4), Host check and no names without the token (8), name grammar before
// lookup (10), JSON for Node's own errors (11), every proxy header refused (12).
import t from 'tap'
import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import * as grpc from '@grpc/grpc-js'
import { startTestAgent, eventually } from '../helpers/agent.js'

process.env.SIDEKEY_TEST_HARDEN = 'sk-harden-' + randomBytes(8).toString('hex')
const secrets = [{ name: 'k', ref: 'env:SIDEKEY_TEST_HARDEN' }]

/** One raw HTTP exchange: what a browser or a broken client would send. */
async function raw (port: number, text: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(text))
    let got = ''
    s.on('data', (c: Buffer) => { got += c.toString('latin1') })
    s.on('close', () => resolve(got))
    s.on('error', reject)
  })
}

async function get (port: number, path: string, headers: Record<string, string>): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

const grpcCall = async (fn: (cb: (err: grpc.ServiceError | null) => void) => void): Promise<grpc.ServiceError | null> => await new Promise((resolve) => fn((err) => resolve(err)))

t.test('finding 4: gRPC checks the token before the message and bounds message size', async (t) => {
  const h = await startTestAgent(t, { secrets }, { values: [process.env.SIDEKEY_TEST_HARDEN as string] })
  await h.agent.synced
  const c = h.grpc()
  const big = 'x'.repeat(100 * 1024)
  // Deadlines: on a build without the limit, the 100 KiB name came back in a trailer the client never finished reading.
  const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 10_000 })
  const noToken = await grpcCall((cb) => c.Get({ name: big }, new grpc.Metadata(), deadline(), cb))
  t.equal(noToken?.code, grpc.status.UNAUTHENTICATED, 'a token-less 100 KiB call is refused on its metadata, before its message is read or size-checked')
  const withToken = await grpcCall((cb) => c.Get({ name: big }, h.metadata(), deadline(), cb))
  t.equal(withToken?.code, grpc.status.RESOURCE_EXHAUSTED, 'a 100 KiB request is over the 16 KiB message limit')
  const ok = await grpcCall((cb) => c.Get({ name: 'k' }, h.metadata(), deadline(), cb))
  t.equal(ok, null, 'a normal Get still works')
  // The audit trail writes its counted lines within a second.
  t.ok(await eventually(() => h.logs.some((l) => l.includes('"api":"grpc"') && l.includes('"status":"UNAUTHENTICATED"')), 'the refusal in the audit trail', 5000), 'the refusal is audited')
})

t.test('finding 4: HTTP connections, slow senders, watchers and waiters are capped', async (t) => {
  const h = await startTestAgent(t, { secrets, limits: { connections: 8, watchers: 2, waiters: 1, headersTimeout: '500ms' } })
  await h.agent.synced
  const port = h.agent.httpPort as number

  const socks: Socket[] = []
  const closed = new Set<number>()
  for (let i = 0; i < 12; i++) {
    const s = connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.on('close', () => closed.add(i))
    socks.push(s)
  }
  t.teardown(() => { for (const s of socks) s.destroy() })
  await eventually(() => closed.size >= 4, 'the sockets past the cap to be closed')
  t.ok(closed.size >= 4, `at most 8 idle sockets are kept (${12 - closed.size} open)`)
  await eventually(() => closed.size === 12, 'the idle sockets that never sent a byte to be closed after headersTimeout')
  t.pass('a socket that sends nothing is closed like a slow one')
  for (const s of socks) s.destroy()
  await eventually(async () => (await get(port, '/healthz', {}).catch(() => ({ status: 0 }))).status === 200, 'room again', { retryErrors: true })
  // slow senders: headers never completed -> cut off with a JSON 408
  const slow = await raw(port, 'GET /v1/secrets HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
  t.match(slow, /^HTTP\/1\.1 408 /, 'a request whose headers never finish gets 408')
  t.match(slow, /"code":"SIDEKEY_E_REQUEST_TIMEOUT"/)

  const auth = { 'x-sidekey-token': h.token }
  const open: Array<{ abort: () => void }> = []
  for (let i = 0; i < 2; i++) {
    const ac = new AbortController()
    const r = await fetch(`${h.base}/v1/watch`, { headers: auth, signal: ac.signal })
    t.equal(r.status, 200, `watch ${i + 1} is served`)
    open.push({ abort: () => ac.abort() })
  }
  const third = await fetch(`${h.base}/v1/watch`, { headers: auth })
  t.equal(third.status, 503, 'a third watch -> 503')
  t.match(await third.json(), { error: { code: 'SIDEKEY_E_CAPACITY', message: /2 watches are open/ } })
  const gw = h.grpc().Watch({ names: [] }, h.metadata())
  const gerr = await new Promise<grpc.ServiceError>((resolve) => gw.on('error', resolve))
  t.equal(gerr.code, grpc.status.RESOURCE_EXHAUSTED, 'the cap is shared with gRPC Watch')
  open[0]?.abort()
  await eventually(async () => {
    const ac = new AbortController()
    const r = await fetch(`${h.base}/v1/watch`, { headers: auth, signal: ac.signal })
    const ok = r.status === 200
    ac.abort()
    return ok
  }, 'a slot to free up')
  open[1]?.abort()

  const version = JSON.parse((await h.get('k')).etag ?? '""') as string
  const ac = new AbortController()
  const waiting = fetch(`${h.base}/v1/secrets/k?wait=30s`, { headers: { ...auth, 'if-none-match': `"${version}"` }, signal: ac.signal }).catch(() => undefined)
  await eventually(async () => {
    const r = await fetch(`${h.base}/v1/secrets/k?wait=30s`, { headers: { ...auth, 'if-none-match': `"${version}"` } })
    return r.status === 503 ? await r.json() : undefined
  }, 'the second long-poll to be refused').then((b) => t.match(b, { error: { code: 'SIDEKEY_E_CAPACITY' } }, 'a second long-poll -> 503'))
  ac.abort()
  await waiting
})

t.test('finding 8: only loopback Host names; no names without the token', async (t) => {
  const h = await startTestAgent(t, { secrets: [...secrets, { name: 'never', ref: 'env:SIDEKEY_TEST_UNSET_HARDEN' }] })
  await h.agent.synced
  const port = h.agent.httpPort as number
  for (const host of ['evil.example', 'evil.example:' + String(port), '127.0.0.1.nip.io']) {
    const r = await get(port, '/ready', { host })
    t.equal(r.status, 421, `Host ${host} -> 421`)
    t.match(JSON.parse(r.body), { error: { code: 'SIDEKEY_E_HOST' } })
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost']) t.not((await get(port, '/healthz', { host })).status, 421, `Host ${host} is served`)
  const ready = await get(port, '/ready', {})
  t.equal(ready.status, 503)
  t.notMatch(ready.body, /never/, '/ready names no secret without the token')
  t.match(JSON.parse(ready.body), { ready: false, missingCount: 1 })
  t.match(JSON.parse((await get(port, '/ready', { 'x-sidekey-token': h.token })).body), { missing: ['never'] }, 'with the token it does')
  t.equal((await get(port, '/metrics', {})).status, 401, '/metrics (secret names in labels) needs the token')
  t.equal((await get(port, '/metrics', { 'x-sidekey-token': h.token })).status, 200)
})

t.test('finding 10: names outside the grammar are refused before lookup and never echoed', async (t) => {
  const h = await startTestAgent(t, { secrets })
  await h.agent.synced
  const long = 'n' + randomBytes(2000).toString('hex')
  const r = await h.get(long)
  t.equal(r.status, 400, 'a 4 KiB name -> 400')
  t.notOk(r.body.includes(long.slice(0, 300)), 'not echoed in the answer')
  const odd = await h.get('a b<script>')
  t.equal(odd.status, 400)
  t.notMatch(odd.body, /script/)
  t.match(JSON.parse((await h.get('nope')).body), { error: { code: 'SIDEKEY_E_SECRET_UNKNOWN', message: /"nope"/ } }, 'a well-formed unknown name is named')
  const gname = 'g' + randomBytes(3000).toString('hex')
  const gerr = await grpcCall((cb) => h.grpc().Get({ name: gname }, h.metadata(), { deadline: Date.now() + 10_000 }, cb))
  t.equal(gerr?.code, grpc.status.INVALID_ARGUMENT, 'gRPC: 6 KiB name -> INVALID_ARGUMENT')
  t.notOk((gerr?.details ?? '').includes(gname.slice(0, 100)), 'not echoed in the status')
  const logs = h.logs.join('\n')
  t.notOk(logs.includes(long.slice(0, 100)) || logs.includes(gname.slice(0, 100)), 'nor in the audit log')
})

t.test('finding 11: Node\'s own 400 and 431 answers carry a JSON body', async (t) => {
  const h = await startTestAgent(t, { secrets })
  const port = h.agent.httpPort as number
  const bad = await raw(port, 'NOT HTTP AT ALL\r\n\r\n')
  t.match(bad, /^HTTP\/1\.1 400 /)
  t.match(bad, /\r\n\r\n\{"error":\{"code":"SIDEKEY_E_BAD_REQUEST","message":"[^"]+"\}\}$/)
  const huge = await raw(port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`)
  t.match(huge, /^HTTP\/1\.1 431 /)
  t.match(huge, /\{"error":\{"code":"SIDEKEY_E_HEADERS_TOO_LARGE"/)
})

t.test('finding 12: Forwarded, X-Real-IP and X-Forwarded-Host are refused like X-Forwarded-For', async (t) => {
  const h = await startTestAgent(t, { secrets })
  await h.agent.synced
  for (const [hdr, v] of [['forwarded', 'for=10.0.0.1'], ['x-real-ip', '10.0.0.1'], ['x-forwarded-host', 'evil.example'], ['x-forwarded-for', '10.0.0.1']] as const) {
    const r = await h.get('k', { [hdr]: v })
    t.equal(r.status, 400, `${hdr} -> 400`)
    t.match(JSON.parse(r.body), { error: { code: 'SIDEKEY_E_FORWARDED' } })
  }
})

t.test('finding 14: a signal hook by process name never reaches pid 1', async (t) => {
  const { readFileSync } = await import('node:fs')
  const { findPids } = await import('../../agent/on-change.js')
  const comm = readFileSync('/proc/1/comm', 'utf8').trim()
  const pids = await findPids(comm)
  t.notOk(pids.includes(1), `"${comm}" (the name of pid 1) does not select pid 1`)
  t.same(await findPids('1'), [], 'nor does the number')
  t.notOk((await findPids('node')).includes(process.pid), 'nor the agent itself')
})

t.test('a keep-alive connection that sent a request outlives headersTimeout (only a silent socket is cut)', async (t) => {
  const h = await startTestAgent(t, { secrets, limits: { headersTimeout: '200ms' } })
  await h.agent.synced
  const s = connect(h.agent.httpPort as number, '127.0.0.1')
  t.teardown(() => s.destroy())
  let text = ''
  let closed = false
  s.on('data', (b: Buffer) => { text += b.toString('latin1') })
  s.on('close', () => { closed = true })
  s.on('error', () => {})
  const ask = (): void => { s.write(`GET /v1/secrets/k HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Sidekey-Token: ${h.token}\r\n\r\n`) }
  ask()
  await eventually(() => (text.match(/HTTP\/1\.1 200/g) ?? []).length === 1, 'the first answer')
  // Well past the silent-socket timer (headersTimeout after connect), below keepAliveTimeout.
  await new Promise((resolve) => setTimeout(resolve, 700))
  t.notOk(closed, 'the connection is still open')
  ask()
  await eventually(() => (text.match(/HTTP\/1\.1 200/g) ?? []).length === 2, 'a second answer on the same connection')
  t.notOk(closed)
})
