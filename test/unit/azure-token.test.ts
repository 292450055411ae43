// agent/providers/azure-token.ts, the azure store's workload-identity exchange
// (in place of @azure/identity's): the form Entra expects, the token cached
// per scope and shared by concurrent callers, the token file read at each
// exchange, another tenant refused, Entra's refusal without the assertion.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { WorkloadIdentityCredential } from '../../agent/providers/azure-token.js'
import { tempDir } from '../helpers/agent.js'

interface Seen { path: string, form: URLSearchParams }

async function entra (t: Test, answer: (seen: Seen, res: ServerResponse) => void): Promise<{ host: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    let b = ''
    req.on('data', (c: Buffer) => { b += c.toString() })
    req.on('end', () => { const s = { path: req.url ?? '', form: new URLSearchParams(b) }; seen.push(s); answer(s, res) })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  return { host: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, seen }
}

const ok = (expiresIn: number, token = 'access-1') => (_s: Seen, res: ServerResponse): void => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ token_type: 'Bearer', expires_in: expiresIn, ext_expires_in: expiresIn, access_token: token }))
}

function credential (t: Test, host: string, tenantId = 'tenant-a'): { c: WorkloadIdentityCredential, file: string } {
  const file = join(tempDir(t), 'token')
  writeFileSync(file, 'assertion-1\n')
  const c = new WorkloadIdentityCredential({ tenantId, clientId: 'client-1', tokenFilePath: file, authorityHost: `${host}/`, timeoutMs: 5000 })
  t.teardown(async () => { await c.close() })
  return { c, file }
}

t.test('the client-assertion exchange: the form, the token and its expiry', async (t) => {
  const e = await entra(t, ok(3600))
  const { c } = credential(t, e.host)
  const before = Date.now()
  const tok = await c.getToken('https://vault.azure.net/.default')
  t.equal(tok.token, 'access-1')
  t.ok(tok.expiresOnTimestamp >= before + 3600_000 && tok.expiresOnTimestamp <= Date.now() + 3600_000, 'expires in expires_in')
  t.equal(e.seen.length, 1)
  t.equal(e.seen[0]?.path, '/tenant-a/oauth2/v2.0/token')
  t.same(Object.fromEntries(e.seen[0]?.form ?? []), {
    client_id: 'client-1',
    scope: 'https://vault.azure.net/.default',
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: 'assertion-1',
  })
})

t.test('cached per scope, one exchange for concurrent callers; claims ask again', async (t) => {
  const e = await entra(t, ok(3600))
  const { c } = credential(t, e.host)
  const toks = await Promise.all([c.getToken(['s1']), c.getToken(['s1']), c.getToken('s1')])
  t.same(toks.map((x) => x.token), ['access-1', 'access-1', 'access-1'])
  t.equal(e.seen.length, 1, 'one exchange for three callers')
  await c.getToken('s1')
  t.equal(e.seen.length, 1, 'the cached token')
  await c.getToken('s2')
  t.equal(e.seen.length, 2, 'another scope: another exchange')
  await c.getToken('s1', { claims: '{"access_token":{}}' })
  t.equal(e.seen.length, 3, 'a claims challenge: a new token')
  t.equal(e.seen[2]?.form.get('claims'), '{"access_token":{}}')
})

t.test('a token within 5 min of its expiry is renewed, with the token file read again', async (t) => {
  const e = await entra(t, ok(300))
  const { c, file } = credential(t, e.host)
  await c.getToken('s')
  writeFileSync(file, 'assertion-2')
  await c.getToken('s')
  t.same(e.seen.map((s) => s.form.get('client_assertion')), ['assertion-1', 'assertion-2'])
})

t.test('another tenant is refused without a request; a missing token file fails without one', async (t) => {
  const e = await entra(t, ok(3600))
  const { c, file } = credential(t, e.host)
  await t.rejects(c.getToken('s', { tenantId: 'tenant-b' }), { name: 'CredentialUnavailableError' })
  t.ok((await c.getToken('s', { tenantId: 'tenant-a' })).token, 'its own tenant')
  const other = new WorkloadIdentityCredential({ tenantId: 'tenant-a', clientId: 'client-1', tokenFilePath: `${file}.missing`, authorityHost: e.host, timeoutMs: 5000 })
  t.teardown(async () => { await other.close() })
  await t.rejects(other.getToken('s'), { name: 'CredentialUnavailableError', message: /ENOENT/ })
  t.equal(e.seen.length, 1)
})

t.test("Entra's refusal: AuthenticationError with the status and AADSTS code, never the assertion", async (t) => {
  const e = await entra(t, (_s, res) => {
    res.statusCode = 401
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ error: 'invalid_client', error_description: 'AADSTS700211: No matching federated identity record found for presented assertion issuer assertion-1', error_codes: [700211] }))
  })
  const { c } = credential(t, e.host)
  const err = await c.getToken('s').then(() => undefined, (x: unknown) => x as Error & { statusCode?: number })
  t.equal(err?.name, 'AuthenticationError')
  t.equal(err?.statusCode, 401)
  t.match(err?.message, /HTTP 401 invalid_client AADSTS700211/)
  t.notMatch(err?.message, /assertion-1/)
  await c.getToken('s').catch(() => {})
  t.equal(e.seen.length, 2, 'a refusal is not cached')
})

t.test('a token endpoint that answers garbage in its error fields: only a plain OAuth code and AADSTS numbers reach the message', async (t) => {
  const e = await entra(t, (_s, res) => {
    res.statusCode = 400
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ error: 'assertion-1 echoed back', error_codes: ['assertion-1', 50027] }))
  })
  const { c } = credential(t, e.host)
  const err = await c.getToken('s').then(() => undefined, (x: unknown) => x as Error)
  t.match(err?.message, /HTTP 400 error AADSTS50027$/)
  t.notMatch(err?.message, /assertion-1/)
})

t.test('Entra busy (429, 5xx) or no answer is transient, not a refusal', async (t) => {
  for (const status of [429, 503]) {
    const e = await entra(t, (_s, res) => { res.statusCode = status; res.setHeader('content-type', 'text/html'); res.end('<html>gateway</html>') })
    const { c } = credential(t, e.host)
    const err = await c.getToken('s').then(() => undefined, (x: unknown) => x as Error & { statusCode?: number, transient?: boolean })
    t.equal(err?.name, 'EntraUnavailableError', `${status}`)
    t.equal(err?.transient, true, `${status}: marked transient (the store answers SIDEKEY_E_UNAVAILABLE, retried)`)
    t.equal(err?.statusCode, status)
  }
})

t.test("one caller's abort fails that caller only: the others waiting on the same exchange get the token", async (t) => {
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const e = await entra(t, (s, res) => { void gate.then(() => ok(3600)(s, res)) })
  const { c } = credential(t, e.host)
  const ac = new AbortController()
  const first = c.getToken('s', { abortSignal: ac.signal }).then(() => 'token', (x: unknown) => (x as Error).name)
  const second = c.getToken('s').then((tok) => tok.token, (x: unknown) => (x as Error).name)
  await new Promise((resolve) => setTimeout(resolve, 50))
  ac.abort()
  t.equal(await first, 'AbortError', 'the aborted caller stops at once')
  release()
  t.equal(await second, 'access-1', 'the other caller gets the shared exchange\'s token')
  t.equal(e.seen.length, 1, 'one exchange')
})
