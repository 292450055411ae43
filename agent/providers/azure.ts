// Azure Key Vault backend.
//   azure:<vault>/<secret>[#key][@<version>]   vault by name: https://<vault>.<vaultDomain>
//   azure:<secret>[#key][@<version>]           the store's vaultUrl
//   azure:https://<host>/secrets/<secret>[/<version>]
// Credentials: workload identity (federated projected token, audience
// api://AzureADTokenExchange): Sidekey's own exchange (azure-token.ts), or
// @azure/identity's behind a proxy; the token is cached until shortly before
// expiry and the token file re-read at each exchange.
// Reads: Sidekey's own Get Secret with Key Vault's challenge authentication
// (azure-keyvault.ts says why), or @azure/keyvault-secrets' SecretClient
// behind a proxy (its proxy agent honours HTTPS_PROXY and NO_PROXY).
// Sync: Key Vault has no metadata-only call that names the latest version
// (the version list is paged and unordered), so a sync is one getSecret
// compared with what the caller has; a pinned version the caller already
// has is immutable and needs no request at all.
import { readFileSync } from 'node:fs'
import { Agent as HttpsAgent } from 'node:https'
import tls, { createSecureContext, type SecureContext } from 'node:tls'
import { SidekeyError, type ErrorCode } from '../../core/errors.js'
import type { SecretRef } from '../../core/reference.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import { parseDuration } from '../../core/duration.js'
import { against, type Have, type Provider, type ProviderContext, type Snapshot, type SyncResult } from './provider.js'
import { checkSize, dataFromText, isNetworkError } from './secret-data.js'
import type { WorkloadIdentityCredential as OwnCredential } from './azure-token.js'
import type { KeyVaultReader, KeyVaultSecret } from './azure-keyvault.js'

type KV = typeof import('@azure/keyvault-secrets')
type SecretClient = InstanceType<KV['SecretClient']>
type TokenCredential = ConstructorParameters<KV['SecretClient']>[1]
type PolicyEntry = NonNullable<NonNullable<ConstructorParameters<KV['SecretClient']>[2]>['additionalPolicies']>[number]

export type AzureStoreConfig = StoreConfigOf<'azure'>

interface Target { readonly vaultUrl: string, readonly name: string, readonly version?: string }
type Read = (t: Target, signal: AbortSignal) => Promise<KeyVaultSecret>

export class AzureProvider implements Provider {
  readonly type = 'azure'
  private kv: KV | undefined
  private credential: Promise<TokenCredential> | undefined
  private readonly clients = new Map<string, SecretClient>()
  private agent: HttpsAgent | undefined
  private context: SecureContext | undefined
  private proxyTls: PolicyEntry | undefined
  private own: OwnCredential | undefined
  private reader: Promise<KeyVaultReader> | undefined
  private readonly ca: Buffer | undefined
  private readonly timeoutMs: number

  constructor (private readonly config: AzureStoreConfig, private readonly ctx: ProviderContext) {
    const store = ctx.storeName
    this.timeoutMs = config.timeout !== undefined ? parseDuration(config.timeout, `config.stores.${store}.timeout`) : 10_000
    if (config.caFile !== undefined) {
      try {
        this.ca = readFileSync(config.caFile)
      } catch (err) {
        throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}.caFile: cannot read ${config.caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { field: `stores.${store}.caFile` })
      }
    }
  }

  target (ref: SecretRef): Target {
    const store = this.ctx.storeName
    const bad = (why: string): never => { throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: ${why}`, { ref: ref.raw }) }
    const version = ref.version
    if (/^https?:\/\//.test(ref.path)) {
      const u = new URL(ref.path)
      const m = /^\/secrets\/([0-9A-Za-z-]+)(?:\/([0-9A-Za-z]+))?\/?$/.exec(u.pathname)
      if (m === null) return bad('an Azure secret URL looks like https://<vault>.vault.azure.net/secrets/<name>[/<version>]')
      const v = version ?? m[2]
      return { vaultUrl: u.origin, name: m[1] as string, ...(v !== undefined ? { version: v } : {}) }
    }
    const segs = ref.path.split('/')
    let vaultUrl: string
    let name: string
    if (segs.length === 2) {
      vaultUrl = `https://${segs[0] as string}.${this.config.vaultDomain ?? 'vault.azure.net'}`
      name = segs[1] as string
    } else if (segs.length === 1) {
      if (this.config.vaultUrl === undefined) {
        throw new SidekeyError('SIDEKEY_E_CONFIG', `${ref.raw}: name the vault (azure:<vault>/<secret>) or set config.stores.${store}.vaultUrl`, { ref: ref.raw, field: `stores.${store}.vaultUrl` })
      }
      vaultUrl = this.config.vaultUrl.replace(/\/+$/, '')
      name = segs[0] as string
    } else {
      return bad('an Azure reference is <vault>/<secret> or <secret>')
    }
    if (!/^[0-9A-Za-z-]{1,127}$/.test(name)) bad(`"${name}" is not a Key Vault secret name (letters, digits and "-")`)
    return { vaultUrl, name, ...(version !== undefined ? { version } : {}) }
  }

  /** Sidekey's own Key Vault client (no proxy in the environment): one for every vault of the store, on the store's TLS context. */
  private async ownReader (): Promise<KeyVaultReader> {
    this.reader ??= (async () => {
      const { KeyVaultReader } = await import('./azure-keyvault.js').catch((err: unknown) => { this.reader = undefined; throw err })
      return new KeyVaultReader({
        // The credential is made at the first token asked for: its errors (a missing tenantId) fail that read, and the next makes it again.
        credential: { getToken: async (scopes, options) => await (await this.tokenCredential()).getToken(scopes, options) },
        secureContext: this.secureContext(),
        timeoutMs: this.timeoutMs,
        connections: KV_SOCKETS,
        disableChallengeResourceVerification: this.config.disableChallengeResourceVerification === true,
      })
    })()
    return await this.reader
  }

  /** One credential (and its exchange and connections) for every first call at once; made again after it failed. */
  private async tokenCredential (): Promise<TokenCredential> {
    this.credential ??= this.makeCredential().catch((err: unknown) => { this.credential = undefined; throw err })
    return await this.credential
  }

  /** Behind a proxy: @azure/keyvault-secrets' client for the vault. */
  private async client (vaultUrl: string): Promise<SecretClient> {
    let c = this.clients.get(vaultUrl)
    if (c !== undefined) return c
    this.kv ??= await import('@azure/keyvault-secrets')
    const credential = await this.tokenCredential()
    c = this.clients.get(vaultUrl)
    if (c !== undefined) return c
    c = new this.kv.SecretClient(vaultUrl, credential, {
      ...this.transport(),
      disableChallengeResourceVerification: this.config.disableChallengeResourceVerification === true,
      retryOptions: { maxRetries: 1, retryDelayInMs: 200, maxRetryDelayInMs: 1000 },
    })
    this.clients.set(vaultUrl, c)
    return c
  }

  /**
   * The Key Vault clients' connections: at most KV_SOCKETS, kept alive, one TLS context for all
   * (the SDK's own agent opens a connection for each request in flight, up to the refresher's 32,
   * each with a context of its own built from the CA: ~100 KiB apiece that stay open). With a
   * proxy in the environment the SDK's proxy agent is used instead (it takes no custom agent),
   * and the store's CA reaches it through viaProxyTls().
   */
  private transport (): { agent: HttpsAgent } | { additionalPolicies: PolicyEntry[] } | Record<string, never> {
    if (proxied()) return this.viaProxyTls()
    this.agent ??= new HttpsAgent({ keepAlive: true, maxSockets: KV_SOCKETS, secureContext: this.secureContext() })
    return { agent: this.agent }
  }

  /**
   * Behind a proxy, the store's TLS context for the SDK's clients (Key Vault's and @azure/identity's).
   * Their proxy policy makes its own https-proxy-agent and drops `tlsOptions` ("certificates provided
   * to the client will be ignored"); the agent upgrades the CONNECT tunnel to TLS with the request's
   * own options, which the SDK's HttpClient takes from `requestOverrides`. The context also serves a
   * host NO_PROXY exempts (the SDK's own agent, which passes the request's options to tls.connect).
   */
  private viaProxyTls (): { additionalPolicies: PolicyEntry[] } | Record<string, never> {
    if (this.ca === undefined) return {}
    const secureContext = this.secureContext()
    this.proxyTls ??= {
      position: 'perCall',
      policy: {
        name: 'sidekeyStoreTls',
        async sendRequest (request, next) {
          request.requestOverrides = { ...request.requestOverrides, secureContext }
          return await next(request)
        },
      },
    }
    return { additionalPolicies: [this.proxyTls] }
  }

  /** The store's one TLS context (its CA parsed once): the Key Vault connections' and the token exchange's. */
  private secureContext (): SecureContext {
    if (this.context === undefined) {
      settleRootCertificates()
      this.context = createSecureContext(this.ca !== undefined ? { ca: this.ca } : {})
    }
    return this.context
  }

  private async makeCredential (): Promise<TokenCredential> {
    const store = this.ctx.storeName
    const tenantId = this.config.tenantId ?? process.env.AZURE_TENANT_ID
    const clientId = this.config.clientId ?? process.env.AZURE_CLIENT_ID
    const tokenFilePath = this.config.tokenFile ?? process.env.AZURE_FEDERATED_TOKEN_FILE
    const authorityHost = this.config.authorityHost ?? process.env.AZURE_AUTHORITY_HOST
    const missing = tenantId === undefined ? 'tenantId' : clientId === undefined ? 'clientId' : tokenFilePath === undefined ? 'tokenFile' : undefined
    if (missing !== undefined) {
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}.${missing}: workload identity needs tenantId, clientId and tokenFile (or AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE)`, { field: `stores.${store}.${missing}` })
    }
    // Behind a proxy, @azure/identity's exchange (it honours the proxy); else Sidekey's own.
    const viaProxy = proxied()
    const inner: Pick<TokenCredential, 'getToken'> = viaProxy
      ? new (await import('@azure/identity')).WorkloadIdentityCredential({
        tenantId: tenantId as string,
        clientId: clientId as string,
        tokenFilePath: tokenFilePath as string,
        ...(authorityHost !== undefined ? { authorityHost } : {}),
        // A custom authority (sovereign cloud, test issuer) has no instance-discovery document.
        ...(authorityHost !== undefined && !/login\.microsoftonline\.com/.test(authorityHost) ? { disableInstanceDiscovery: true } : {}),
        ...this.viaProxyTls(),
      })
      : (this.own = new (await import('./azure-token.js')).WorkloadIdentityCredential({
          tenantId: tenantId as string,
          clientId: clientId as string,
          tokenFilePath: tokenFilePath as string,
          ...(authorityHost !== undefined ? { authorityHost } : {}),
          secureContext: this.secureContext(),
          timeoutMs: this.timeoutMs,
        }))
    const meter = this.ctx.meter
    // Token failures become SIDEKEY_E_AUTH here, before the Key Vault client wraps them.
    return {
      async getToken (scopes, options) {
        meter?.request('aad:token')
        try {
          return await inner.getToken(scopes, options)
        } catch (err) {
          const name = String((err as { name?: unknown }).name ?? 'Error')
          // No answer, an answer cut short (HttpTransportError: connect, headers or body timeout, a reset), or Entra busy (429, 5xx): transient, retried.
          if (isNetworkError(err) || name === 'HttpTransportError' || (err as { transient?: unknown }).transient === true) {
            throw new SidekeyError('SIDEKEY_E_UNAVAILABLE', `store ${store}: cannot reach the Entra authority${authorityHost !== undefined ? ` ${authorityHost}` : ''} for a token`, { store })
          }
          // Sidekey's own exchange builds its messages from Entra's error code and AADSTS numbers only (never an echo of the request): shown.
          const why = !viaProxy && err instanceof Error ? `${name}: ${err.message}` : name
          throw new SidekeyError('SIDEKEY_E_AUTH', `store ${store}: workload-identity token exchange failed (${why}); check tenantId, clientId, the federated credential and the token file (audience api://AzureADTokenExchange)`, { store, error: name })
        }
      },
    }
  }

  async sync (ref: SecretRef, have: Have | undefined, signal?: AbortSignal): Promise<SyncResult> {
    const t = this.target(ref)
    if (have !== undefined && t.version !== undefined && have.version === t.version) return { changed: false }
    return against(have, await this.get(ref, signal))
  }

  private async get (ref: SecretRef, signal: AbortSignal | undefined): Promise<Snapshot> {
    const t = this.target(ref)
    let read: Read
    try {
      // Made before the timer starts; a client or credential that cannot be made fails the read.
      read = proxied() ? await this.sdkRead(t.vaultUrl) : await this.ownRead()
    } catch (err) {
      throw this.mapError(err, ref, t)
    }
    this.ctx.meter?.request('getSecret')
    // One controller per call, aborted by the timeout or the caller's signal. Not AbortSignal.any:
    // on Node 20 each call would leave an entry on the agent's long-lived stop signal.
    const ac = new AbortController()
    const onAbort = (): void => ac.abort(signal?.reason)
    const timer = setTimeout(() => ac.abort(new DOMException('timed out', 'TimeoutError')), this.timeoutMs)
    if (signal?.aborted === true) onAbort()
    else signal?.addEventListener('abort', onAbort, { once: true })
    let secret: KeyVaultSecret
    try {
      secret = await read(t, ac.signal)
    } catch (err) {
      throw this.mapError(err, ref, t)
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    if (secret.enabled === false) throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: the secret version is disabled`, { ref: ref.raw })
    if (typeof secret.value !== 'string') throw new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: Key Vault answered without a value`, { ref: ref.raw })
    const data = checkSize(dataFromText(secret.value), ref, this.ctx.maxValueBytes)
    const version = secret.version
    if (typeof version !== 'string' || version === '') throw new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: Key Vault answered without a version id`, { ref: ref.raw })
    // expiresOn is the owner's rotation deadline, not a lease: it is not used as expiresAt.
    return { data, version }
  }

  /** One Get Secret through Sidekey's own client. */
  private async ownRead (): Promise<Read> {
    const reader = await this.ownReader()
    return async (t, signal) => await reader.getSecret(t.vaultUrl, t.name, t.version, signal)
  }

  /** One Get Secret through the SDK's client for the vault (behind a proxy). */
  private async sdkRead (vaultUrl: string): Promise<Read> {
    const client = await this.client(vaultUrl)
    return async (t, signal) => {
      const s = await client.getSecret(t.name, { ...(t.version !== undefined ? { version: t.version } : {}), abortSignal: signal })
      return { value: s.value, version: s.properties.version, enabled: s.properties.enabled }
    }
  }

  private mapError (err: unknown, ref: SecretRef, t: Target): SidekeyError {
    if (err instanceof SidekeyError) return err
    const status = (err as { statusCode?: unknown }).statusCode
    const code = String((err as { code?: unknown }).code ?? (err as { name?: unknown }).name ?? 'Error')
    // Key Vault's error body, as the SDK deserialises it: {error: {code, message, innerError: {code}}}.
    const body = (err as { details?: { error?: { message?: unknown, innerError?: { code?: unknown } } } }).details?.error
    const inner = typeof body?.innerError?.code === 'string' ? body.innerError.code : undefined
    const why = inner !== undefined ? `${code}/${inner}` : code
    const details = { ref: ref.raw, store: this.ctx.storeName, error: code, ...(inner !== undefined ? { innerError: inner } : {}), ...(typeof status === 'number' ? { status } : {}) }
    const e = (c: ErrorCode, msg: string): SidekeyError => new SidekeyError(c, `${ref.raw}: ${msg}`, details)
    // An auth failure inside the credential surfaces wrapped by the pipeline.
    const cause = (err as { cause?: unknown }).cause
    if (cause instanceof SidekeyError) return cause
    const what = `${t.name}${t.version !== undefined ? ` version ${t.version}` : ''}`
    const identity = this.config.clientId ?? process.env.AZURE_CLIENT_ID
    const who = identity !== undefined ? `the identity (client id ${identity})` : 'the identity'
    // The vault's challenge names another resource: the own client's check (its own class, never a server's
    // body) or the SDK's ("The challenge resource '<host>' does not match the requested domain ..."). No token was asked for.
    const mismatch = (err as { name?: unknown }).name === 'ChallengeMismatchError'
      ? (err as { resourceHost: string }).resourceHost
      : /^The challenge resource '([A-Za-z0-9.-]{1,253})' does not match the requested domain/.exec(err instanceof Error ? err.message : '')?.[1]
    if (mismatch !== undefined) return e('SIDEKEY_E_AUTH', `Key Vault ${t.vaultUrl} answered with a challenge for the resource ${mismatch}, which its host ${new URL(t.vaultUrl).hostname} does not belong to; check vaultUrl or vaultDomain, or set config.stores.${this.ctx.storeName}.disableChallengeResourceVerification for a vault behind another name (a private endpoint, an emulator)`)
    if (code === 'NoToken') return e('SIDEKEY_E_AUTH', `the workload identity gave no access token for Key Vault ${t.vaultUrl}; check tenantId and clientId`)
    if (status === 404) return e('SIDEKEY_E_NOT_FOUND', `Key Vault ${t.vaultUrl} has no secret ${what} (${why})`)
    if (status === 403 && inner === 'SecretDisabled') return e('SIDEKEY_E_NOT_FOUND', `Key Vault ${t.vaultUrl} has secret ${what} disabled (${why}); enable it in the vault or pin an enabled version with @<version>`)
    if (status === 403 && inner === 'ForbiddenByRbac') return e('SIDEKEY_E_DENIED', `Key Vault ${t.vaultUrl} denied reading ${t.name} (${why}): the vault uses Azure RBAC; assign ${who} the "Key Vault Secrets User" role on the vault or on the secret`)
    if (status === 403 && inner === 'AccessDenied') return e('SIDEKEY_E_DENIED', `Key Vault ${t.vaultUrl} denied reading ${t.name} (${why}): the vault uses access policies; give ${who} the Get permission on secrets in an access policy`)
    if (status === 403) return e('SIDEKEY_E_DENIED', `Key Vault ${t.vaultUrl} denied reading ${t.name} (${why}); assign ${who} the "Key Vault Secrets User" role (Azure RBAC) or a Get secrets access policy`)
    if (status === 401) {
      // "AKV10022: Invalid audience", "AKV10032: Invalid issuer": the reason, without the token's claims.
      const akv = typeof body?.message === 'string' ? /^(AKV\d{1,6}: [^.\r\n]{0,200})/.exec(body.message)?.[1] : undefined
      return e('SIDEKEY_E_AUTH', `Key Vault ${t.vaultUrl} rejected the access token (${akv !== undefined ? `${code}: ${akv}` : why}); check tenantId and clientId, and that the vault belongs to that tenant`)
    }
    if (status === 429 || (typeof status === 'number' && status >= 500)) return e('SIDEKEY_E_UNAVAILABLE', `Key Vault ${t.vaultUrl} is unavailable (HTTP ${status})`)
    // No answer (the own client's HttpTransportError: a reset, a TLS or certificate failure, a timeout) as the SDK's REQUEST_SEND_ERROR; an oversized answer is the server's fault.
    if (isNetworkError(err) || code === 'REQUEST_SEND_ERROR' || code === 'AbortError' || code === 'ABORTED' || ((err as { name?: unknown }).name === 'HttpTransportError' && code !== 'ERR_BODY_TOO_LARGE')) return e('SIDEKEY_E_UNAVAILABLE', `cannot reach Key Vault ${t.vaultUrl} (${code})`)
    if (typeof status === 'number' && status === 400 && /version/i.test(code)) return e('SIDEKEY_E_NOT_FOUND', `Key Vault has no version ${String(t.version)} of ${t.name}`)
    return e('SIDEKEY_E_BACKEND', `Key Vault ${t.vaultUrl} failed (${why}${typeof status === 'number' ? `, HTTP ${status}` : ''})`)
  }

  async close (): Promise<void> {
    const reader = this.reader
    this.reader = undefined
    await (await reader?.catch(() => undefined))?.close()
    this.clients.clear()
    this.agent?.destroy()
    this.agent = undefined
    await this.own?.close()
    this.own = undefined
  }
}

/** A proxy in the environment: the SDK's proxy agent and @azure/identity's token exchange (they honour it). */
function proxied (): boolean {
  return ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy'].some((k) => (process.env[k] ?? '') !== '')
}

/** Connections to Key Vault at once (requests beyond wait for one); each costs ~100 KiB while open. */
const KV_SOCKETS = 8

export function createAzureProvider (config: AzureStoreConfig, ctx: ProviderContext): Provider {
  return new AzureProvider(config, ctx)
}

/**
 * Lets Node finish its bundled root certificates before the store's first context and connections.
 * Node 24 parses them (~150 X509s, ~1 MiB of malloc) on a thread of its own from the moment node:tls
 * loads, while this thread goes on with the first sync; with the injected MALLOC_ARENA_MAX=1 both
 * allocate from one heap, and how the two interleave decided whether ~0.9 MiB of it stayed in use:
 * bench/store-memory, azure store, 1 secret, 8 interleaved runs: steady RSS 56.8-57.9 MiB, median
 * 57.8 (five of eight runs in the upper mode), against 57.0-57.3, median 57.1, with this call first.
 * Asking for the bundled list first costs ~1 ms once (and keeps the list's strings, ~0.2 MiB);
 * every start measured since was in the lower mode (19 of 19), whether Node waits for the parse
 * there or that millisecond lets it finish first (Node's source was not read for it). Node 20,
 * which has no such thread, has no getCACertificates either.
 */
function settleRootCertificates (): void {
  // Node 24's (@types/node 20 does not declare it); node:tls's exports object, where a test can watch the call.
  ;(tls as { getCACertificates?: (type: string) => readonly string[] }).getCACertificates?.('bundled')
}
