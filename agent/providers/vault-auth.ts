// The Vault token lifecycle: Kubernetes-auth login with the projected
// service-account token (read from the file at every login, since kubelet
// rotates it), renew-self at about 2/3 of the TTL, a fresh login when the
// token cannot be renewed or is about to hit its max TTL. One login per token
// lifetime, shared by every concurrent request.
import { readFile } from '../fs-async.js'
import type { Logger } from 'pino'
import { SidekeyError } from '../../core/errors.js'
import type { VaultHttp } from './vault-http.js'

export interface VaultAuthOptions {
  readonly http: VaultHttp
  readonly logger: Logger
  readonly storeName: string
  /** Kubernetes auth; ignored when staticToken is set. */
  readonly role?: string
  readonly authMount: string
  readonly tokenFile: string
  /** A static token (from `tokenEnv`, local development): never renewed, never re-logged-in. */
  readonly staticToken?: string
  /** Fraction of the TTL after which the token is renewed. */
  readonly renewFraction?: number
}

interface TokenState {
  readonly token: string
  /** ms epoch; Infinity for tokens without TTL (root, static). */
  readonly expiresAt: number
  readonly renewable: boolean
  /** This token replaced one that got a 403: a further 403 is a real denial. */
  readonly afterDenial: boolean
  readonly ttlMs: number
}

export class VaultAuth {
  private state: TokenState | undefined
  private pending: Promise<TokenState> | undefined
  private timer: NodeJS.Timeout | undefined
  private closed = false
  /** Counters for tests and metrics: how many logins and renewals happened. */
  readonly stats = { logins: 0, renewals: 0 }

  constructor (private readonly opts: VaultAuthOptions) {
    if (opts.staticToken !== undefined) {
      this.state = { token: opts.staticToken, expiresAt: Infinity, renewable: false, afterDenial: true, ttlMs: 0 }
    } else if (opts.role === undefined) {
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${opts.storeName}.role: the Vault Kubernetes-auth role is required (or set tokenEnv for local development)`, { field: `stores.${opts.storeName}.role` })
    }
  }

  get isStatic (): boolean { return this.opts.staticToken !== undefined }

  /** The token in use, if any, without logging in. */
  get currentToken (): string | undefined { return this.state?.token }

  /** A valid token, logging in when there is none or it is (nearly) expired. */
  async token (): Promise<TokenState> {
    const s = this.state
    if (s !== undefined && Date.now() < s.expiresAt - 1000) return s
    return await this.login(false)
  }

  /**
   * Called after a 403 with `denied`: logs in again once (the token may have
   * been revoked). Returns undefined when a re-login will not help, so the
   * caller reports SIDEKEY_E_DENIED.
   */
  async reloginAfterDenial (denied: TokenState): Promise<TokenState | undefined> {
    if (this.isStatic || denied.afterDenial) return undefined
    if (this.state !== undefined && this.state !== denied) return this.state
    return await this.login(true)
  }

  private async login (afterDenial: boolean): Promise<TokenState> {
    if (this.pending !== undefined) return await this.pending
    if (this.isStatic) return this.state as TokenState
    const p = this.doLogin(afterDenial)
    this.pending = p
    try {
      return await p
    } finally {
      this.pending = undefined
    }
  }

  private async doLogin (afterDenial: boolean): Promise<TokenState> {
    const { http, authMount, tokenFile, role, storeName } = this.opts
    let jwt: string
    try {
      jwt = (await readFile(tokenFile, 'utf8')).trim()
    } catch (err) {
      throw new SidekeyError('SIDEKEY_E_AUTH', `store ${storeName}: cannot read the service-account token file ${tokenFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}); mount a projected token with audience "vault" there or set tokenFile`, { store: storeName, tokenFile })
    }
    const res = await http.call({ method: 'POST', path: `auth/${authMount}/login`, body: { role, jwt } }, undefined)
    if (res.status === 200) {
      const auth = (res.body as { auth?: { client_token?: unknown, lease_duration?: unknown, renewable?: unknown } } | undefined)?.auth
      if (typeof auth?.client_token !== 'string') throw new SidekeyError('SIDEKEY_E_BACKEND', `store ${storeName}: Vault login at auth/${authMount} answered without a client token`, { store: storeName })
      const ttl = typeof auth.lease_duration === 'number' ? auth.lease_duration : 0
      this.stats.logins++
      const state = this.install(auth.client_token, ttl, auth.renewable === true, afterDenial)
      this.opts.logger.info({ store: storeName, authMount, role, ttlSeconds: ttl }, 'vault login')
      return state
    }
    if (res.status === 503) throw new SidekeyError('SIDEKEY_E_UNAVAILABLE', `store ${storeName}: Vault is sealed or in standby (503) at login`, { store: storeName, status: 503 })
    throw new SidekeyError('SIDEKEY_E_AUTH', `store ${storeName}: Vault Kubernetes login failed with HTTP ${res.status} at auth/${authMount}/login for role "${String(role)}"; check the role's bound service account and namespace, the token audience and the auth mount`, { store: storeName, status: res.status, authMount, role })
  }

  private install (token: string, ttlSeconds: number, renewable: boolean, afterDenial: boolean): TokenState {
    const ttlMs = ttlSeconds * 1000
    const state: TokenState = { token, expiresAt: ttlMs > 0 ? Date.now() + ttlMs : Infinity, renewable, afterDenial, ttlMs }
    this.state = state
    this.schedule(state)
    return state
  }

  private schedule (state: TokenState): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.closed || state.ttlMs <= 0) return
    const delay = Math.max(500, Math.floor(state.ttlMs * (this.opts.renewFraction ?? 2 / 3)))
    this.timer = setTimeout(() => { void this.renew(state) }, delay)
    this.timer.unref()
  }

  /** renew-self while renewable and the TTL is not being cut by max TTL; else log in again. */
  private async renew (state: TokenState): Promise<void> {
    if (this.closed || this.state !== state) return
    const { http, storeName, logger } = this.opts
    try {
      if (state.renewable) {
        const res = await http.call({ method: 'POST', path: 'auth/token/renew-self', body: { increment: `${Math.round(state.ttlMs / 1000)}s` }, token: state.token }, undefined)
        const auth = (res.body as { auth?: { lease_duration?: unknown, renewable?: unknown } } | undefined)?.auth
        const ttl = typeof auth?.lease_duration === 'number' ? auth.lease_duration : 0
        // A renewal that gives back much less than asked is the max TTL closing in: log in instead.
        if (res.status === 200 && ttl * 1000 >= state.ttlMs / 2) {
          this.stats.renewals++
          if (this.state === state) this.install(state.token, ttl, auth?.renewable === true, state.afterDenial)
          logger.debug({ store: storeName, ttlSeconds: ttl }, 'vault token renewed')
          return
        }
      }
      if (this.state === state) await this.login(false)
    } catch (err) {
      // The next request logs in lazily once the token expires; nothing more to do here.
      logger.warn({ store: storeName, code: (err as { code?: unknown }).code }, 'vault token renewal failed')
      if (this.state === state && !this.closed) this.timer = setTimeout(() => { void this.renew(state) }, 5000).unref()
    }
  }

  close (): void {
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}

export type { TokenState }
