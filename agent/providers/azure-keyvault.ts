// Key Vault's Get Secret for the azure store, through agent/http-client.ts:
// GET {vault}/secrets/{name}/{version}?api-version=2025-07-01, the request
// @azure/keyvault-secrets' SecretClient.getSecret makes, with Key Vault's
// challenge-based authentication as the SDK does it (keyvault-common's
// keyVaultAuthenticationPolicy):
//   - the first request to a vault goes without a token; Key Vault answers 401
//     with `WWW-Authenticate: Bearer authorization="<authority>/<tenant>",
//     resource="<resource>"` (or `scope="..."`);
//   - the token is asked for `<resource>/.default` in that tenant, after the
//     resource's host is checked against the vault's (the vault's host must
//     end in `.<resource host>`) unless disableChallengeResourceVerification;
//   - the request is sent again with it, and later ones carry it at once; a
//     401 naming `error="insufficient_claims"` (continuous access evaluation)
//     gets one token with those claims and one more try (tokens are asked for
//     without CAE capability, so Key Vault is not expected to send one).
// The token is kept per tenant and scope and renewed as the SDK's token
// cycler does: from 2 minutes before it expires (or Entra's refresh_in) one
// renewal runs in the background while reads keep the current token, which
// they wait for only in its last 10 seconds; a failed renewal is tried again
// by the next read. Concurrent reads share one exchange, and one caller
// giving up (its signal) does not fail the others.
// Not the SDK itself: @azure/keyvault-secrets with core-rest-pipeline,
// core-client and their dependencies is ~170 KB of code that V8 keeps as
// source and bytecode, and the pipeline objects of each client; an azure
// agent held 0.7 MiB more steady with it at one secret (1.3 MiB more at its
// peak; 0.8 and 2.6 at 100 secrets: bench/store-memory, Node 24, 3 runs),
// against issue 12's 0.75x of the OpenBao agent. Behind a proxy the SDK's client is kept
// (azure.ts): this client takes no proxy.
//
// A non-200 answer becomes a KeyVaultError with the SDK's RestError fields
// (statusCode, code, details.error) so that one mapping (azure.ts) reads both.
// No retry here: a failed sync is retried by the refresher with its backoff.
import { randomUUID } from 'node:crypto'
import type { SecureContext } from 'node:tls'
import { HttpClient, type HttpAnswer } from '../http-client.js'
import { untilAborted } from './azure-token.js'

/** @azure/keyvault-secrets 4.11's LATEST_API_VERSION, the version the SDK path sends too. */
export const KEY_VAULT_API_VERSION = '2025-07-01'

/** Key Vault's values are at most 25 KB; an answer larger than this is not a secret bundle. */
const MAX_ANSWER_BYTES = 1 << 20

/** A token is renewed in the background from this long before it expires, as @azure/core-rest-pipeline's token cycler does. */
const TOKEN_REFRESH_MARGIN_MS = 2 * 60_000
/** In its last seconds a token is no longer sent: reads wait for the new one. */
const TOKEN_EXPIRY_MARGIN_MS = 10_000
/** Tokens kept (one per tenant and scope a challenge named; a store has one or two). */
const MAX_TOKENS = 16

export interface KeyVaultToken { readonly token: string, readonly expiresOnTimestamp: number, readonly refreshAfterTimestamp?: number }

/** The credential: the store's workload identity (azure.ts), which maps its own failures. */
export interface KeyVaultCredential {
  getToken: (scopes: string[], options: { tenantId?: string, claims?: string }) => Promise<KeyVaultToken | null>
}

export interface KeyVaultReaderOptions {
  readonly credential: KeyVaultCredential
  /** The store's TLS context (its CA); Node's default trust store without one. */
  readonly secureContext?: SecureContext
  /** Headers and body timeout of each request. */
  readonly timeoutMs: number
  /** Connections per vault at once; requests beyond wait for one. */
  readonly connections: number
  readonly disableChallengeResourceVerification: boolean
}

/** One secret version as Key Vault answers it. */
export interface KeyVaultSecret {
  readonly value: unknown
  /** The `id`'s last segment: https://<vault>/secrets/<name>/<version>. */
  readonly version: string | undefined
  readonly enabled: boolean | undefined
}

/** Key Vault's error body, as the SDK's RestError carries it (innererror read as innerError). */
export interface KeyVaultErrorBody { readonly code?: string, readonly message?: string, readonly innerError?: { readonly code?: string } }

/**
 * The vault's challenge names a resource its host does not belong to (checked before any token is
 * asked for). Its own class: a server's error body can never pass for it.
 */
export class ChallengeMismatchError extends Error {
  constructor (readonly resourceHost: string, readonly vaultHost: string) {
    super(`the vault's challenge names the resource ${resourceHost}, which does not match the vault's host ${vaultHost}`)
    this.name = 'ChallengeMismatchError'
  }
}

/** A non-200 answer: the fields azure.ts reads from the SDK's RestError too. */
export class KeyVaultError extends Error {
  readonly details: { readonly error?: KeyVaultErrorBody }
  constructor (readonly statusCode: number, readonly code: string, error: KeyVaultErrorBody | undefined) {
    super(`Key Vault answered HTTP ${statusCode} (${code})`)
    this.name = 'KeyVaultError'
    this.details = error !== undefined ? { error } : {}
  }
}

/** The parameters of a `WWW-Authenticate: Bearer k="v", ...` challenge that Key Vault's policy reads. */
export interface Challenge { readonly authorization?: string, readonly resource?: string, readonly scope?: string, readonly claims?: string, readonly error?: string, readonly tenantId?: string }

const CHALLENGE_KEYS = new Set(['authorization', 'authorization_uri', 'authorization_url', 'resource', 'scope', 'claims', 'error'])

/** Reads a Bearer challenge's quoted parameters; the tenant is the authorization URL's path. Undefined: not a challenge Key Vault's policy can follow. */
export function parseChallenge (header: string): Challenge | undefined {
  const p: Record<string, string> = {}
  for (const m of header.matchAll(/([A-Za-z_]+)="([^"]*)"/g)) {
    const k = m[1] as string
    if (CHALLENGE_KEYS.has(k)) p[k === 'authorization_uri' || k === 'authorization_url' ? 'authorization' : k] = m[2] as string
  }
  let tenantId: string | undefined
  if (p.authorization !== undefined) {
    try {
      tenantId = new URL(p.authorization).pathname.replace(/^\/+|\/+$/g, '') || undefined
    } catch {
      return undefined
    }
  }
  return { ...p, ...(tenantId !== undefined ? { tenantId } : {}) }
}

/** The token scope a challenge asks for: `<resource>/.default`, or its `scope`. */
export function challengeScope (c: Challenge): string | undefined {
  return c.resource !== undefined ? `${c.resource.replace(/\/+$/, '')}/.default` : c.scope
}

/**
 * Whether a challenge's scope may be answered with a token for the vault at `vaultUrl`:
 * the vault's host ends in `.<the scope's host>` (vault.azure.net for <name>.vault.azure.net).
 * A vault that names another resource could be asking for a token meant for another service.
 */
export function challengeMatches (scope: string, vaultUrl: string): boolean {
  let host: string
  try {
    host = new URL(scope).hostname
  } catch {
    return false
  }
  return new URL(vaultUrl).hostname.endsWith(`.${host}`)
}

interface Authorized { readonly scope: string, readonly tenantId: string | undefined }
/** The token of one tenant and scope: the current one, and the exchange under way (a renewal, or one with claims). */
interface TokenSlot { current?: KeyVaultToken & { readonly renewAt: number }, pending?: Promise<KeyVaultToken> | undefined }

export class KeyVaultReader {
  private readonly http: HttpClient
  /** Per vault URL: the scope and tenant its challenge named, once answered. */
  private readonly authorized = new Map<string, Authorized>()
  /** Per tenant and scope: the token, shared by every request (one exchange for many first requests). */
  private readonly tokens = new Map<string, TokenSlot>()

  constructor (private readonly o: KeyVaultReaderOptions) {
    this.http = new HttpClient({
      connections: o.connections,
      headersTimeoutMs: o.timeoutMs,
      bodyTimeoutMs: o.timeoutMs,
      maxBodyBytes: MAX_ANSWER_BYTES,
      ...(o.secureContext !== undefined ? { secureContext: o.secureContext } : {}),
    })
  }

  /** The latest version, or `version`: one GET, two after a 401 challenge. */
  async getSecret (vaultUrl: string, name: string, version: string | undefined, signal: AbortSignal): Promise<KeyVaultSecret> {
    const url = `${vaultUrl}/secrets/${encodeURIComponent(name)}/${version !== undefined ? encodeURIComponent(version) : ''}?api-version=${KEY_VAULT_API_VERSION}`
    let auth = this.authorized.get(vaultUrl)
    let sent = auth !== undefined ? await this.token(auth, undefined, signal) : undefined
    let res = await this.send(url, sent, signal)
    let c = challengeOf(res)
    if (c !== undefined && !(auth !== undefined && isClaimsChallenge(c))) {
      // The vault names the resource and tenant to ask a token for (the first request, or a vault that moved).
      const scope = challengeScope(c)
      if (scope !== undefined) {
        if (!this.o.disableChallengeResourceVerification && !challengeMatches(scope, vaultUrl)) throw new ChallengeMismatchError(shortHost(scope), new URL(vaultUrl).hostname)
        auth = { scope, tenantId: c.tenantId }
        this.authorized.set(vaultUrl, auth)
        sent = await this.token(auth, undefined, signal)
        res = await this.send(url, sent, signal)
        c = challengeOf(res)
      }
    }
    if (auth !== undefined && c !== undefined && isClaimsChallenge(c)) {
      // Continuous access evaluation: the token was revoked; one with the claims asked for, and one more try.
      res = await this.send(url, await this.token(auth, { claims: Buffer.from(c.claims as string, 'base64').toString('utf8'), rejected: sent }, signal), signal)
    }
    if (res.status !== 200) throw answerError(res)
    let body: { value?: unknown, id?: unknown, attributes?: { enabled?: unknown } }
    try {
      body = JSON.parse(res.body.toString('utf8')) as typeof body
    } catch {
      throw new KeyVaultError(200, 'InvalidJson', { message: 'the answer is not JSON' })
    }
    if (body === null || typeof body !== 'object') throw new KeyVaultError(200, 'InvalidJson', { message: 'the answer is not a secret bundle' })
    const id = typeof body.id === 'string' ? body.id : ''
    // https://<vault>/secrets/<name>/<version>: the version is the segment after the name.
    const segs = (URL.canParse(id) ? new URL(id).pathname : '').split('/')
    const enabled = body.attributes?.enabled
    return { value: body.value, version: segs.length === 4 && segs[1] === 'secrets' && segs[3] !== '' ? segs[3] : undefined, enabled: typeof enabled === 'boolean' ? enabled : undefined }
  }

  private async send (url: string, token: string | undefined, signal: AbortSignal): Promise<HttpAnswer> {
    // The request id Key Vault logs (the SDK sends one too): what its support asks for.
    return await this.http.request({ method: 'GET', url, headers: { accept: 'application/json', 'user-agent': 'sidekey-agent', 'x-ms-client-request-id': randomUUID(), ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) }, signal })
  }

  /**
   * The token for `auth`: the current one while it is good, renewed in the background once due;
   * with claims (a CAE challenge to the token `rejected`), a new one, unless another read already
   * got one since. Every wait stops at the caller's own signal; the exchange goes on for the others.
   */
  private async token (auth: Authorized, cae: { claims: string, rejected: string | undefined } | undefined, signal: AbortSignal): Promise<string> {
    const key = `${auth.tenantId ?? ''} ${auth.scope}`
    let slot = this.tokens.get(key)
    if (slot === undefined) {
      // Bounded: a vault answering a new resource each time (verification off) cannot grow this.
      if (this.tokens.size >= MAX_TOKENS) this.tokens.delete(this.tokens.keys().next().value as string)
      this.tokens.set(key, slot = {})
    }
    const now = Date.now()
    const current = slot.current
    if (cae !== undefined) {
      if (current !== undefined && current.token !== cae.rejected && now < current.expiresOnTimestamp - TOKEN_EXPIRY_MARGIN_MS) return current.token
      return (await untilAborted(this.exchange(slot, auth, cae.claims), signal)).token
    }
    if (current !== undefined && now < current.renewAt) return current.token
    if (current !== undefined && now < current.expiresOnTimestamp - TOKEN_EXPIRY_MARGIN_MS) {
      // Due but still good: renewed in the background; a failure leaves it to the next read.
      this.exchange(slot, auth, undefined).catch(() => {})
      return current.token
    }
    return (await untilAborted(this.exchange(slot, auth, undefined), signal)).token
  }

  /** The slot's exchange under way, or a new one (without any caller's signal: the credential has its own timeouts). */
  private async exchange (slot: TokenSlot, auth: Authorized, claims: string | undefined): Promise<KeyVaultToken> {
    slot.pending ??= (async () => {
      try {
        const t = await this.o.credential.getToken([auth.scope], { ...(auth.tenantId !== undefined ? { tenantId: auth.tenantId } : {}), ...(claims !== undefined ? { claims } : {}) })
        if (t === null) throw new KeyVaultError(401, 'NoToken', { message: 'the credential gave no token' })
        slot.current = { ...t, renewAt: Math.min(t.refreshAfterTimestamp ?? Infinity, t.expiresOnTimestamp - TOKEN_REFRESH_MARGIN_MS) }
        return t
      } finally {
        slot.pending = undefined
      }
    })()
    return await slot.pending
  }

  async close (): Promise<void> {
    this.tokens.clear()
    await this.http.close()
  }
}

/** A 401's WWW-Authenticate challenge, parsed. */
function challengeOf (res: HttpAnswer): Challenge | undefined {
  if (res.status !== 401) return undefined
  const v = res.headers['www-authenticate']
  const header = Array.isArray(v) ? v.join(', ') : v
  return header !== undefined ? parseChallenge(header) : undefined
}

const isClaimsChallenge = (c: Challenge): boolean => c.error === 'insufficient_claims' && c.claims !== undefined

/** A scope's host only (never a path or query the vault put there). */
function shortHost (scope: string): string {
  return URL.canParse(scope) ? new URL(scope).hostname : '(not a URL)'
}

/** Key Vault's `{"error": {"code", "message", "innererror": {"code"}}}`, or what the status says when the body is not that. */
function answerError (res: HttpAnswer): KeyVaultError {
  let e: { code?: unknown, message?: unknown, innererror?: { code?: unknown }, innerError?: { code?: unknown } } | undefined
  try {
    e = (JSON.parse(res.body.toString('utf8')) as { error?: typeof e } | null)?.error
  } catch { /* not JSON: the status alone */ }
  // Codes are Key Vault's words (SecretNotFound, ForbiddenByRbac): anything else from a server answering garbage is dropped.
  const word = (v: unknown): string | undefined => typeof v === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(v) ? v : undefined
  const body: KeyVaultErrorBody | undefined = e !== undefined && e !== null && typeof e === 'object'
    ? ((code, inner) => ({ ...(code !== undefined ? { code } : {}), ...(typeof e.message === 'string' ? { message: e.message } : {}), ...(inner !== undefined ? { innerError: { code: inner } } : {}) }))(word(e.code), word(e.innererror?.code ?? e.innerError?.code))
    : undefined
  return new KeyVaultError(res.status, body?.code ?? `HTTP${res.status}`, body)
}
