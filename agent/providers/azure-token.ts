// The azure store's workload-identity credential: the federated token file
// exchanged for an Entra access token (OAuth 2.0 client credentials with a
// client assertion, POST {authorityHost}/{tenant}/oauth2/v2.0/token), the
// request @azure/identity's WorkloadIdentityCredential makes through MSAL.
// Not @azure/identity itself: it loads MSAL and every credential type (a
// 0.55 MB chunk that V8 keeps as source, its bytecode, and child_process),
// 3.5 MiB of the agent's resident memory for one POST (5.4 MiB with 100
// secrets). The request
// goes through agent/http-client.ts on the store's TLS context (the one the
// Key Vault connections share). A proxy in the environment keeps
// @azure/identity (agent/providers/azure.ts): this client takes no proxy.
//
// Tokens are cached per scope until Entra's refresh_in, or 5 min before they
// expire; concurrent requests for one scope share one exchange. The token file
// is read at every exchange (the kubelet rotates it).
import { readFile } from '../fs-async.js'
import type { SecureContext } from 'node:tls'
import { HttpClient } from '../http-client.js'

export interface WorkloadIdentityOptions {
  readonly tenantId: string
  readonly clientId: string
  readonly tokenFilePath: string
  /** Default https://login.microsoftonline.com. */
  readonly authorityHost?: string
  /** The store's TLS context (its CA); the default trust store without one. */
  readonly secureContext?: SecureContext
  /** Headers and body timeout of the exchange. */
  readonly timeoutMs: number
}

export interface AccessToken { readonly token: string, readonly expiresOnTimestamp: number, readonly refreshAfterTimestamp?: number, readonly tokenType: 'Bearer' }
export interface GetTokenOptions { readonly abortSignal?: AbortSignal, readonly tenantId?: string, readonly claims?: string }

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
/** A cached token is renewed this long before it expires (MSAL's default). */
const EXPIRY_MARGIN_MS = 5 * 60_000

const authError = (name: string, message: string): Error => Object.assign(new Error(message), { name })

/** `p`, or an AbortError as soon as `signal` aborts (p goes on for the others waiting on it). */
export async function untilAborted<T> (p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return await p
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(authError('AbortError', 'the token request was aborted')) }
    if (signal.aborted) { onAbort(); return }
    signal.addEventListener('abort', onAbort, { once: true })
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v) }, (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e) })
  })
}

export class WorkloadIdentityCredential {
  private readonly http: HttpClient
  private readonly url: string
  private readonly cache = new Map<string, { token: AccessToken, renewAt: number }>()
  private readonly pending = new Map<string, Promise<AccessToken>>()

  constructor (private readonly o: WorkloadIdentityOptions) {
    this.url = `${(o.authorityHost ?? 'https://login.microsoftonline.com').replace(/\/+$/, '')}/${encodeURIComponent(o.tenantId)}/oauth2/v2.0/token`
    this.http = new HttpClient({
      connections: 2,
      headersTimeoutMs: o.timeoutMs,
      bodyTimeoutMs: o.timeoutMs,
      maxBodyBytes: 1 << 20,
      ...(o.secureContext !== undefined ? { secureContext: o.secureContext } : {}),
    })
  }

  async getToken (scopes: string | string[], options: GetTokenOptions = {}): Promise<AccessToken> {
    // A challenge naming another tenant: refused, as @azure/identity refuses a tenant it was not allowed.
    if (options.tenantId !== undefined && options.tenantId !== '' && options.tenantId !== this.o.tenantId) {
      throw authError('CredentialUnavailableError', `the workload identity is configured for tenant ${this.o.tenantId}, not ${options.tenantId}`)
    }
    const scope = (Array.isArray(scopes) ? scopes : [scopes]).join(' ')
    const claims = options.claims !== undefined && options.claims !== '' ? options.claims : undefined
    if (claims === undefined) {
      const hit = this.cache.get(scope)
      if (hit !== undefined && Date.now() < hit.renewAt) return hit.token
      const p = this.pending.get(scope)
      if (p !== undefined) return await untilAborted(p, options.abortSignal)
    }
    // A shared exchange runs on its own timeouts, not on the first caller's signal: one caller
    // giving up must not fail the others waiting on it. Each caller still stops at its own signal.
    const p = this.exchange(scope, claims, claims === undefined ? undefined : options.abortSignal)
    if (claims === undefined) {
      this.pending.set(scope, p)
      p.then((token) => {
        this.cache.set(scope, { token, renewAt: token.refreshAfterTimestamp ?? token.expiresOnTimestamp - EXPIRY_MARGIN_MS })
      }, () => {}).finally(() => { if (this.pending.get(scope) === p) this.pending.delete(scope) })
      return await untilAborted(p, options.abortSignal)
    }
    return await p
  }

  private async exchange (scope: string, claims: string | undefined, signal: AbortSignal | undefined): Promise<AccessToken> {
    let assertion: string
    try {
      assertion = (await readFile(this.o.tokenFilePath, 'utf8')).trim()
    } catch (err) {
      throw authError('CredentialUnavailableError', `cannot read the federated token file ${this.o.tokenFilePath} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    if (assertion === '') throw authError('CredentialUnavailableError', `the federated token file ${this.o.tokenFilePath} is empty`)
    const form = new URLSearchParams({ client_id: this.o.clientId, scope, grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion })
    if (claims !== undefined) form.set('claims', claims)
    const sent = Date.now()
    const res = await this.http.request({
      method: 'POST',
      url: this.url,
      headers: { 'content-type': 'application/x-www-form-urlencoded;charset=utf-8', accept: 'application/json' },
      body: form.toString(),
      ...(signal !== undefined ? { signal } : {}),
    })
    // Busy or failing (429, 5xx): a transient error, like no answer at all; the caller retries.
    if (res.status === 429 || res.status >= 500) throw Object.assign(authError('EntraUnavailableError', `Entra answered HTTP ${res.status} to the token exchange`), { statusCode: res.status, transient: true })
    let body: { access_token?: unknown, expires_in?: unknown, refresh_in?: unknown, error?: unknown, error_codes?: unknown }
    try {
      body = JSON.parse(res.body.toString('utf8')) as typeof body
    } catch {
      throw authError('AuthenticationError', `Entra answered HTTP ${res.status} without JSON`)
    }
    if (res.status !== 200 || typeof body.access_token !== 'string') {
      // The error code (OAuth's lower-case word) and AADSTS numbers only, never the description's echo of the request.
      const codes = Array.isArray(body.error_codes) ? ` AADSTS${body.error_codes.filter((c) => Number.isInteger(c)).slice(0, 8).join(',')}` : ''
      throw Object.assign(authError('AuthenticationError', `Entra refused the token exchange: HTTP ${res.status} ${typeof body.error === 'string' && /^[a-z_]{1,64}$/.test(body.error) ? body.error : 'error'}${codes}`), { statusCode: res.status })
    }
    const seconds = (v: unknown): number | undefined => { const n = Number(v); return Number.isFinite(n) && n > 0 ? n : undefined }
    const expiresIn = seconds(body.expires_in) ?? 3600
    const refreshIn = seconds(body.refresh_in)
    return { token: body.access_token, tokenType: 'Bearer', expiresOnTimestamp: sent + expiresIn * 1000, ...(refreshIn !== undefined ? { refreshAfterTimestamp: sent + refreshIn * 1000 } : {}) }
  }

  async close (): Promise<void> {
    this.cache.clear()
    await this.http.close()
  }
}
