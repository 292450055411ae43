// agent/providers/azure-keyvault.ts, the azure store's own Get Secret (in place
// of @azure/keyvault-secrets' without a proxy): Key Vault's challenge (the
// first request without a token, the token for the challenge's resource in its
// tenant, the resource checked against the vault's host), the token kept for
// later requests and shared by concurrent ones, renewed in the background, a
// caller's abort failing only that caller, a continuous-access-evaluation
// challenge, and what comes of error bodies and garbage. Against a local HTTP
// server answering as Key Vault does (the recorded challenge and bodies of
// ../shared/azure-recordings: INDEX.md).
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ChallengeMismatchError, KeyVaultError, KeyVaultReader, challengeMatches, challengeScope, parseChallenge, type KeyVaultCredential } from '../../agent/providers/azure-keyvault.js'

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47'
const CHALLENGE = `Bearer authorization="https://login.microsoftonline.com/${TENANT}", resource="https://vault.azure.net"`

interface Seen { path: string, auth: string | undefined }

async function vault (t: Test, answer: (s: Seen, res: ServerResponse) => void): Promise<{ url: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => { const s = { path: req.url ?? '', auth: req.headers.authorization }; seen.push(s); answer(s, res) })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, seen }
}

/** Answers as Key Vault: a challenge without a token, else `ok`'s answer. */
const keyVault = (ok: (s: Seen, res: ServerResponse) => void) => (s: Seen, res: ServerResponse): void => {
  if (s.auth === undefined) {
    res.writeHead(401, { 'www-authenticate': CHALLENGE, 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer or PoP token.' } }))
    return
  }
  ok(s, res)
}

const bundle = (name: string, version: string, value: string, enabled = true): string =>
  JSON.stringify({ value, id: `https://myvault.vault.azure.net/secrets/${name}/${version}`, attributes: { enabled, created: 1739400000, updated: 1739400000, recoveryLevel: 'Recoverable+Purgeable' } })

interface Asked { scopes: string[], tenantId?: string | undefined, claims?: string | undefined }
/** A credential that counts what it is asked; `fail` makes the next exchanges fail, `delayMs` slows each. */
function credential (expiresInMs = 3600_000, o: { delayMs?: number } = {}): { c: KeyVaultCredential, asked: Asked[], fail: { on: boolean } } {
  const asked: Asked[] = []
  const fail = { on: false }
  return {
    asked,
    fail,
    c: {
      async getToken (scopes, opts) {
        asked.push({ scopes, tenantId: opts.tenantId, claims: opts.claims })
        const n = asked.length
        await new Promise((resolve) => setTimeout(resolve, o.delayMs ?? 5))
        if (fail.on) throw Object.assign(new Error('Entra is down'), { name: 'EntraUnavailableError' })
        return { token: `tok-${n}`, expiresOnTimestamp: Date.now() + expiresInMs }
      },
    },
  }
}

function reader (t: Test, c: KeyVaultCredential, verify = false): KeyVaultReader {
  const r = new KeyVaultReader({ credential: c, timeoutMs: 5000, connections: 4, disableChallengeResourceVerification: !verify })
  t.teardown(async () => { await r.close() })
  return r
}

const signal = (): AbortSignal => new AbortController().signal

/** The KeyVaultError a read ends with. */
async function fails (r: KeyVaultReader, url: string, name: string): Promise<KeyVaultError> {
  return await r.getSecret(url, name, undefined, signal()).then(() => { throw new Error(`${name} did not fail`) }, (e: unknown) => e as KeyVaultError)
}

t.test('the challenge: parsed as Key Vault sends it, its scope, its resource against the vault host', async (t) => {
  t.same(parseChallenge(CHALLENGE), { authorization: `https://login.microsoftonline.com/${TENANT}`, resource: 'https://vault.azure.net', tenantId: TENANT })
  t.equal(challengeScope(parseChallenge(CHALLENGE) ?? {}), 'https://vault.azure.net/.default')
  t.equal(challengeScope(parseChallenge('Bearer authorization_uri="https://login.microsoftonline.com/t1", scope="https://vault.azure.net/.default"') ?? {}), 'https://vault.azure.net/.default', 'scope= when there is no resource=')
  t.equal(parseChallenge('Bearer authorization_uri="https://login.microsoftonline.com/t1"')?.tenantId, 't1', 'authorization_uri names the tenant too')
  t.equal(parseChallenge('Bearer authorization="not a url", resource="https://vault.azure.net"'), undefined, 'an authorization that is not a URL')
  t.same(parseChallenge('Bearer realm="", error="insufficient_claims", claims="eyJhY2Nlc3MiOnt9fQ=="'), { error: 'insufficient_claims', claims: 'eyJhY2Nlc3MiOnt9fQ==' })
  t.ok(challengeMatches('https://vault.azure.net/.default', 'https://myvault.vault.azure.net'))
  t.ok(challengeMatches('https://vault.azure.cn/.default', 'https://myvault.vault.azure.cn'))
  t.notOk(challengeMatches('https://vault.azure.net/.default', 'https://myvault.evil.example'), 'another domain')
  t.notOk(challengeMatches('https://vault.azure.net/.default', 'https://vault.azure.net'), 'the resource host itself is not a vault')
  t.notOk(challengeMatches('not a url', 'https://myvault.vault.azure.net'))
})

t.test('the first request goes without a token, the second with the challenge\'s; later ones with it at once', async (t) => {
  const v = await vault(t, keyVault((s, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(bundle('openai', 'v1', 'sk-kv-value-1'))))
  const { c, asked } = credential()
  const r = reader(t, c)
  const got = await r.getSecret(v.url, 'openai', undefined, signal())
  t.same(got, { value: 'sk-kv-value-1', version: 'v1', enabled: true })
  t.same(v.seen.map((s) => s.auth), [undefined, 'Bearer tok-1'])
  t.equal(v.seen[0]?.path, '/secrets/openai/?api-version=2025-07-01', 'the SDK\'s path and api-version')
  t.same(asked, [{ scopes: ['https://vault.azure.net/.default'], tenantId: TENANT, claims: undefined }], 'the token for the resource, in the challenge\'s tenant')
  await r.getSecret(v.url, 'openai', 'v1', signal())
  t.same(v.seen.slice(2).map((s) => [s.path, s.auth]), [['/secrets/openai/v1?api-version=2025-07-01', 'Bearer tok-1']], 'then one request, with the token kept')
  // Concurrent reads of a vault already answered share the token.
  await Promise.all(Array.from({ length: 10 }, async () => await r.getSecret(v.url, 'openai', undefined, signal())))
  t.equal(asked.length, 1, 'one token for all')
})

t.test('concurrent first reads: one token exchange', async (t) => {
  const v = await vault(t, keyVault((_s, res) => res.writeHead(200).end(bundle('a', 'v1', 'x'))))
  const { c, asked } = credential()
  const r = reader(t, c)
  await Promise.all(Array.from({ length: 8 }, async () => await r.getSecret(v.url, 'a', undefined, signal())))
  t.equal(asked.length, 1)
})

t.test('a token due for renewal is renewed in the background; reads keep it meanwhile, and when renewal fails', async (t) => {
  const v = await vault(t, keyVault((_s, res) => res.writeHead(200).end(bundle('a', 'v1', 'x'))))
  const { c, asked, fail } = credential(60_000) // inside the 2-minute margin: due at once, good for a minute
  const r = reader(t, c)
  await r.getSecret(v.url, 'a', undefined, signal())
  fail.on = true
  await r.getSecret(v.url, 'a', undefined, signal())
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.equal((await r.getSecret(v.url, 'a', undefined, signal())).version, 'v1', 'Entra down: the read still succeeds')
  t.same(v.seen.map((s) => s.auth), [undefined, 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1'], 'with the token that is still good')
  t.equal(asked.length, 3, 'each read past the due time tried one renewal in the background')
  await new Promise((resolve) => setTimeout(resolve, 30)) // the last renewal has failed
  fail.on = false
  await r.getSecret(v.url, 'a', undefined, signal())
  await new Promise((resolve) => setTimeout(resolve, 30))
  await r.getSecret(v.url, 'a', undefined, signal())
  t.equal(v.seen.at(-1)?.auth, 'Bearer tok-4', 'the renewed token once it came')
})

t.test('a token in its last seconds is waited for, not sent', async (t) => {
  const v = await vault(t, keyVault((_s, res) => res.writeHead(200).end(bundle('a', 'v1', 'x'))))
  const { c, asked } = credential(5_000)
  const r = reader(t, c)
  await r.getSecret(v.url, 'a', undefined, signal())
  await r.getSecret(v.url, 'a', undefined, signal())
  t.equal(asked.length, 2)
  t.same(v.seen.map((s) => s.auth), [undefined, 'Bearer tok-1', 'Bearer tok-2'])
})

t.test('one caller giving up does not fail the others waiting on the same token', async (t) => {
  const v = await vault(t, keyVault((_s, res) => res.writeHead(200).end(bundle('a', 'v1', 'x'))))
  const { c, asked } = credential(3600_000, { delayMs: 100 })
  const r = reader(t, c)
  const ac = new AbortController()
  const first = r.getSecret(v.url, 'a', undefined, ac.signal).then(() => 'read', (e: unknown) => (e as Error).name)
  const others = Array.from({ length: 3 }, async () => await r.getSecret(v.url, 'a', undefined, signal()))
  setTimeout(() => ac.abort(), 30)
  t.equal(await first, 'AbortError', 'the caller that gave up stops at its own signal')
  t.same((await Promise.all(others)).map((x) => x.version), ['v1', 'v1', 'v1'], 'the others get the token')
  t.equal(asked.length, 1, 'from one exchange')
})

t.test('a challenge naming another resource is refused before any token is asked for', async (t) => {
  const v = await vault(t, keyVault((_s, res) => res.writeHead(200).end(bundle('a', 'v1', 'x'))))
  const { c, asked } = credential()
  const err = await reader(t, c, true).getSecret(v.url, 'a', undefined, signal()).then(() => undefined, (e: unknown) => e)
  t.type(err, ChallengeMismatchError)
  t.same([(err as ChallengeMismatchError).resourceHost, (err as ChallengeMismatchError).vaultHost], ['vault.azure.net', '127.0.0.1'])
  t.equal(asked.length, 0, 'no token for a resource the vault is not')
  t.equal(v.seen.length, 1)
})

t.test('continuous access evaluation: a claims challenge gets one token with those claims', async (t) => {
  const claims = '{"access_token":{"nbf":{"essential":true,"value":"1739400000"}}}'
  let revoked = true
  const v = await vault(t, keyVault((s, res) => {
    if (s.auth === 'Bearer tok-1' && revoked) {
      revoked = false
      res.writeHead(401, { 'www-authenticate': `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="${Buffer.from(claims).toString('base64')}"` }).end()
      return
    }
    res.writeHead(200).end(bundle('a', 'v1', 'x'))
  }))
  const { c, asked } = credential()
  const r = reader(t, c)
  // The first read: challenge, tok-1 refused with a claims challenge, tok-2 with the claims.
  t.equal((await r.getSecret(v.url, 'a', undefined, signal())).version, 'v1')
  t.same(asked, [{ scopes: ['https://vault.azure.net/.default'], tenantId: TENANT, claims: undefined }, { scopes: ['https://vault.azure.net/.default'], tenantId: TENANT, claims }], 'the claims token for the same scope and tenant (not the claims challenge\'s "common")')
  t.same(v.seen.map((s) => s.auth), [undefined, 'Bearer tok-1', 'Bearer tok-2'])
  await r.getSecret(v.url, 'a', undefined, signal())
  t.equal(v.seen.at(-1)?.auth, 'Bearer tok-2', 'later reads keep the claims token')
})

t.test('concurrent reads refused by one claims challenge: one exchange with the claims', async (t) => {
  const revokedToken = 'Bearer tok-1'
  const v = await vault(t, keyVault((s, res) => {
    if (s.auth === revokedToken && s.path.includes('/late')) {
      res.writeHead(401, { 'www-authenticate': `Bearer error="insufficient_claims", claims="${Buffer.from('{"access_token":{}}').toString('base64')}"` }).end()
      return
    }
    res.writeHead(200).end(bundle('a', 'v1', 'x'))
  }))
  const { c, asked } = credential()
  const r = reader(t, c)
  await r.getSecret(v.url, 'first', undefined, signal())
  await Promise.all(Array.from({ length: 6 }, async () => await r.getSecret(v.url, 'late', undefined, signal())))
  t.equal(asked.length, 2, 'the first token and one with the claims, for six reads refused')
  t.equal(asked[1]?.claims, '{"access_token":{}}')
})

t.test('names and versions are percent-encoded into the path; an oversized answer is refused', async (t) => {
  const v = await vault(t, keyVault((s, res) => {
    if (s.path.startsWith('/secrets/big/')) { res.writeHead(200).end(JSON.stringify({ value: 'x'.repeat(2 << 20), id: 'https://v/secrets/big/v1' })); return }
    res.writeHead(200).end(bundle('a', 'v1', 'x'))
  }))
  const r = reader(t, credential().c)
  await r.getSecret(v.url, 'a-b', 'v 1/..', signal())
  t.equal(v.seen.at(-1)?.path, '/secrets/a-b/v%201%2F..?api-version=2025-07-01')
  const big = await r.getSecret(v.url, 'big', undefined, signal()).then(() => undefined, (e: unknown) => e as { name?: string, code?: string })
  t.same([big?.name, big?.code], ['HttpTransportError', 'ERR_BODY_TOO_LARGE'])
})

t.test('error answers keep Key Vault\'s codes; garbage is an error without it', async (t) => {
  const answers: Record<string, [number, string]> = {
    missing: [404, JSON.stringify({ error: { code: 'SecretNotFound', message: 'A secret with (name/id) missing was not found in this key vault.' } })],
    disabled: [403, JSON.stringify({ error: { code: 'Forbidden', message: 'Operation get is not allowed on a disabled secret.', innererror: { code: 'SecretDisabled' } } })],
    garbled: [500, 'sk-leaked-in-a-garbage-body <html>'],
    coded: [400, JSON.stringify({ error: { code: 'sk leaked as a code, with spaces', message: 'm' } })],
    spoofed: [401, JSON.stringify({ error: { code: 'ChallengeResourceMismatch', message: 'sk-a server writing its own text' } })],
    longid: [200, JSON.stringify({ value: 'v', id: 'https://myvault.vault.azure.net/secrets/longid/v1/extra' })],
    notjson: [200, 'sk-garbage-200'],
    nobundle: [200, 'null'],
    noid: [200, JSON.stringify({ value: 'v' })],
  }
  const v = await vault(t, keyVault((s, res) => {
    const [status, body] = answers[/\/secrets\/([^/]+)/.exec(s.path)?.[1] ?? ''] ?? [599, '']
    res.writeHead(status, { 'content-type': 'application/json' }).end(body)
  }))
  const r = reader(t, credential().c)
  const fail = async (name: string): Promise<KeyVaultError> => await fails(r, v.url, name)
  const missing = await fail('missing')
  t.same([missing.statusCode, missing.code, missing.details.error?.innerError], [404, 'SecretNotFound', undefined])
  const disabled = await fail('disabled')
  t.same([disabled.statusCode, disabled.code, disabled.details.error?.innerError?.code], [403, 'Forbidden', 'SecretDisabled'], 'innererror read as innerError')
  const garbled = await fail('garbled')
  t.same([garbled.statusCode, garbled.code], [500, 'HTTP500'])
  const coded = await fail('coded')
  t.same([coded.statusCode, coded.code], [400, 'HTTP400'], 'a code that is not a word is dropped')
  t.same([(await fail('notjson')).code, (await fail('nobundle')).code], ['InvalidJson', 'InvalidJson'])
  t.same(await r.getSecret(v.url, 'noid', undefined, signal()), { value: 'v', version: undefined, enabled: undefined }, 'no id: no version (azure.ts refuses it)')
  t.equal((await r.getSecret(v.url, 'longid', undefined, signal())).version, undefined, 'an id with more segments names no version')
  const spoofed = await fail('spoofed')
  t.ok(spoofed instanceof KeyVaultError && !(spoofed instanceof ChallengeMismatchError), 'a server\'s body cannot pass for the resource check (azure.ts tells them apart by class)')
  for (const e of [missing, disabled, garbled, coded]) t.notMatch(`${e.message} ${e.code} ${JSON.stringify(e.details)}`, /sk-|sk leaked/, 'no part of a garbage answer in the error')
})

t.test('a 401 that is not a challenge, and a token refused twice, end as a 401', async (t) => {
  const v = await vault(t, (s, res) => {
    if (s.path.startsWith('/secrets/plain')) { res.writeHead(401).end(); return }
    if (s.auth === undefined) { res.writeHead(401, { 'www-authenticate': CHALLENGE }).end(); return }
    res.writeHead(401, { 'www-authenticate': CHALLENGE, 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'Unauthorized', message: 'AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://other.' } }))
  })
  const { c, asked } = credential()
  const r = reader(t, c)
  const plain = await fails(r, v.url, 'plain')
  t.same([plain.statusCode, plain.code], [401, 'HTTP401'])
  t.equal(asked.length, 0)
  const bad = await fails(r, v.url, 'bad')
  t.same([bad.statusCode, bad.code], [401, 'Unauthorized'])
  t.match(bad.details.error?.message, /^AKV10022: Invalid audience/)
  t.equal(v.seen.filter((s) => s.path.startsWith('/secrets/bad')).length, 2, 'one try with the token, no loop')
})

t.test('an abort stops the read', async (t) => {
  const v = await vault(t, () => { /* never answers */ })
  const r = reader(t, credential().c)
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 50)
  const err = await r.getSecret(v.url, 'slow', undefined, ac.signal).then(() => ({ code: 'answered' }), (e: unknown) => e as { code?: string })
  t.equal(err.code, 'ABORTED')
})
