// The Vault provider's transport (undici): one keep-alive
// pool per store and the store's timeout as a headers timeout. The protocol
// itself is tested against a real OpenBao in test/integration/vault.test.ts;
// here a plain HTTP server counts sockets and plays a hung Vault.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { VaultHttp } from '../../agent/providers/vault-http.js'
import { isSidekeyError } from '../../core/errors.js'

async function serve (t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ addr: string, sockets: () => number, seen: Array<{ method: string, url: string, token: string, body: string }> }> {
  let sockets = 0
  const seen: Array<{ method: string, url: string, token: string, body: string }> = []
  const srv = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { seen.push({ method: req.method ?? '', url: req.url ?? '', token: String(req.headers['x-vault-token'] ?? ''), body }); handler(req, res) })
  })
  srv.on('connection', () => { sockets++ })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  return { addr: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, sockets: () => sockets, seen }
}

t.test('calls share one keep-alive connection; bodies and answers pass through', async (t) => {
  const s = await serve(t, (req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(req.method === 'POST' ? '' : JSON.stringify({ data: { data: { k: 'v' }, metadata: { version: 3 } } }))
  })
  const http = new VaultHttp({ storeName: 'vault', address: s.addr, timeoutMs: 5_000 })
  t.teardown(async () => { await http.close() })
  const token = 'hvs.' + randomBytes(12).toString('hex')
  for (let i = 0; i < 3; i++) {
    const a = await http.call({ method: 'GET', path: 'secret/data/x', token }, undefined)
    t.same(a, { status: 200, body: { data: { data: { k: 'v' }, metadata: { version: 3 } } } })
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  // (LIST is not here: node's HTTP server does not parse it; OpenBao answers it in the integration test.)
  const p = await http.call({ method: 'POST', path: 'auth/kubernetes/login', body: { role: 'r', jwt: 'j' } }, undefined)
  t.same(p, { status: 200, body: '' }, 'an empty answer is an empty string, as before')
  t.same(JSON.parse(s.seen.at(-1)?.body ?? '{}'), { role: 'r', jwt: 'j' }, 'a JSON body')
  t.equal(s.seen[0]?.url, '/v1/secret/data/x')
  t.equal(s.seen[0]?.token, token, 'the token as X-Vault-Token')
  t.equal(s.sockets(), 1, 'four calls, one connection')
})

t.test('a hung Vault: SIDEKEY_E_UNAVAILABLE naming the timeout, never the token', async (t) => {
  const s = await serve(t, () => { /* never answers */ })
  const http = new VaultHttp({ storeName: 'vault', address: s.addr, timeoutMs: 300 })
  t.teardown(async () => { await http.close() })
  const token = 'hvs.' + randomBytes(12).toString('hex')
  const err = await http.call({ method: 'GET', path: 'secret/data/x', token }, undefined).then(() => undefined, (e: unknown) => e)
  t.ok(isSidekeyError(err), 'a SidekeyError')
  const e = err as { code: string, message: string, details?: Record<string, unknown> }
  t.equal(e.code, 'SIDEKEY_E_UNAVAILABLE')
  t.equal(e.message, `store vault: cannot reach Vault at ${s.addr} (UND_ERR_HEADERS_TIMEOUT) for GET secret/data/x`)
  t.notOk(JSON.stringify({ m: e.message, d: e.details, c: (err as Error).cause }).includes(token), 'the token appears nowhere in the error')
})

t.test('an abort signal ends a call in flight', async (t) => {
  const s = await serve(t, () => { /* never answers */ })
  const http = new VaultHttp({ storeName: 'vault', address: s.addr, timeoutMs: 60_000 })
  t.teardown(async () => { await http.close() })
  const ac = new AbortController()
  const p = http.call({ method: 'GET', path: 'secret/data/x' }, ac.signal).then(() => undefined, (e: unknown) => e)
  await new Promise((resolve) => setTimeout(resolve, 50))
  ac.abort()
  const e = await p as { code?: string }
  t.equal(e.code, 'SIDEKEY_E_UNAVAILABLE', 'aborted, as unavailable')
})

t.test('the store config is the whole of it: VAULT_TOKEN, VAULT_NAMESPACE and VAULT_PREFIX in the environment are not used', async (t) => {
  const seen: Array<{ url: string, headers: IncomingMessage['headers'] }> = []
  const srv = createServer((req, res) => { seen.push({ url: req.url ?? '', headers: req.headers }); req.resume(); res.end('{}') })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  const addr = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`
  const saved = { VAULT_TOKEN: process.env.VAULT_TOKEN, VAULT_NAMESPACE: process.env.VAULT_NAMESPACE, VAULT_PREFIX: process.env.VAULT_PREFIX }
  Object.assign(process.env, { VAULT_TOKEN: 'hvs.from-the-environment', VAULT_NAMESPACE: 'ns-from-env', VAULT_PREFIX: '/prefix-from-env' })
  t.teardown(() => { for (const [k, v] of Object.entries(saved)) { if (v === undefined) Reflect.deleteProperty(process.env, k); else process.env[k] = v } })

  const plain = new VaultHttp({ storeName: 'vault', address: addr + '/', timeoutMs: 5_000 })
  t.teardown(async () => { await plain.close() })
  await plain.call({ method: 'POST', path: 'auth/kubernetes/login', body: { role: 'r', jwt: 'j' } }, undefined)
  t.equal(seen[0]?.url, '/v1/auth/kubernetes/login', 'the address (its trailing slash dropped), /v1/ and the path; no prefix')
  t.equal(seen[0]?.headers['x-vault-token'], undefined, 'a login carries no token')
  t.equal(seen[0]?.headers['x-vault-namespace'], undefined, 'no namespace unless the store names one')
  t.equal(seen[0]?.headers['content-type'], 'application/json')

  const withNs = new VaultHttp({ storeName: 'vault', address: addr, namespace: 'team-a', timeoutMs: 5_000 })
  t.teardown(async () => { await withNs.close() })
  await withNs.call({ method: 'GET', path: 'secret/data/x', token: 'hvs.store-token' }, undefined)
  t.equal(seen[1]?.url, '/v1/secret/data/x')
  t.equal(seen[1]?.headers['x-vault-token'], 'hvs.store-token')
  t.equal(seen[1]?.headers['x-vault-namespace'], 'team-a', 'the store\'s namespace')
  t.equal(seen[1]?.headers['x-vault-request'], 'true')
})
