// Vault / OpenBao backend.
//   vault:secret/data/app[#key][@3]     KV v2 (the `data` segment after the mount)
//   vault:kv1/app                        KV v1 or any other read (database/creds/x, ...)
//   vault:pki/issue/web?common_name=a.b  a write-style read: POST with the query as body
// Sync: KV v2 metadata `current_version` (no value) before the value; a
// pinned KV version the caller has is immutable and needs no request; other
// reads have no metadata, so a sync reads the value and compares versions.
// Leased secrets carry expiresAt: until 2/3 of the lease a sync asks nothing;
// then a renewable lease is renewed (unchanged, later expiresAt) and a lease
// that cannot be renewed far enough is replaced by a new read (new version:
// the file changes and the app is notified).
import { SidekeyError } from '../../core/errors.js'
import type { SecretRef } from '../../core/reference.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import { parseDuration } from '../../core/duration.js'
import { against, renewAt, type Have, type Provider, type ProviderContext, type SecretData, type Snapshot, type SyncResult } from './provider.js'
import { checkSize, contentVersion, mapFromObject } from './secret-data.js'
import { VaultHttp, type VaultAnswer, type VaultCall } from './vault-http.js'
import { VaultAuth } from './vault-auth.js'
import { KvVersionLists, type KvKey } from './vault-kv-lists.js'

export type VaultStoreConfig = StoreConfigOf<'vault'>

const DEFAULT_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token'

interface Target {
  /** KV v2 data path (`mount/data/rest`) or the plain path. */
  readonly path: string
  readonly kv2: boolean
  readonly metadataPath?: string
  /** KV v2 (unpinned reads only): the folder and name its version check may list. */
  readonly kvKey?: KvKey
  /** POST body for write-style reads (`?a=b`). */
  readonly body?: Record<string, string>
}

/** What the provider knows of a lease it read (never the value): enough to renew it. */
interface Lease {
  readonly version: string
  readonly leaseId?: string
  readonly renewable: boolean
  readonly durationMs: number
  readonly obtainedAt: number
  readonly expiresAt: number
}

export class VaultProvider implements Provider {
  readonly type = 'vault'
  readonly http: VaultHttp
  readonly auth: VaultAuth
  private readonly leases = new Map<string, Lease>()
  /** Refs whose KV v2 metadata the policy does not allow: checked by reading the value. */
  private readonly noMetadata = new Set<string>()
  /** KV v2 checks answered by one folder listing where OpenBao offers one. */
  private readonly lists: KvVersionLists

  constructor (private readonly config: VaultStoreConfig, private readonly ctx: ProviderContext) {
    const store = ctx.storeName
    this.http = new VaultHttp({
      storeName: store,
      address: config.address.replace(/\/+$/, ''),
      ...(config.namespace !== undefined ? { namespace: config.namespace } : {}),
      ...(config.caFile !== undefined ? { caFile: config.caFile } : {}),
      ...(config.tlsServerName !== undefined ? { tlsServerName: config.tlsServerName } : {}),
      timeoutMs: config.timeout !== undefined ? parseDuration(config.timeout, `config.stores.${store}.timeout`) : 10_000,
      ...(ctx.meter !== undefined ? { meter: ctx.meter } : {}),
    })
    let staticToken: string | undefined
    if (config.tokenEnv !== undefined) {
      staticToken = process.env[config.tokenEnv]
      if (staticToken === undefined || staticToken === '') {
        throw new SidekeyError('SIDEKEY_E_AUTH', `store ${store}: tokenEnv names ${config.tokenEnv}, which is not set; export a Vault token there (local development) or remove tokenEnv to use Kubernetes auth`, { store, field: `stores.${store}.tokenEnv` })
      }
    }
    this.auth = new VaultAuth({
      http: this.http,
      logger: ctx.logger,
      storeName: store,
      ...(config.role !== undefined ? { role: config.role } : {}),
      authMount: (config.authMount ?? 'kubernetes').replace(/^\/+|\/+$/g, ''),
      tokenFile: config.tokenFile ?? DEFAULT_TOKEN_FILE,
      ...(staticToken !== undefined ? { staticToken } : {}),
    })
    // A listing is an optimisation: its 403 means "check one by one", never a new login.
    this.lists = new KvVersionLists({
      storeName: store,
      logger: ctx.logger,
      call: async (c, signal) => {
        const { token } = await this.auth.token()
        return { answer: await this.http.call({ ...c, token }, signal), sentWith: token }
      },
      currentToken: () => this.auth.currentToken,
    })
  }

  target (ref: SecretRef): Target {
    const q = ref.path.indexOf('?')
    const rawPath = (q === -1 ? ref.path : ref.path.slice(0, q)).replace(/^\/+|\/+$/g, '')
    let body: Record<string, string> | undefined
    if (q !== -1) body = Object.fromEntries(new URLSearchParams(ref.path.slice(q + 1)))
    const segs = rawPath.split('/')
    let kv2 = false
    let metadataPath: string | undefined
    let kvKey: KvKey | undefined
    let path = rawPath
    if (body === undefined && this.config.kvVersion !== 1) {
      const i = segs.indexOf('data', 1)
      if (i !== -1 && i < segs.length - 1) {
        kv2 = true
      } else if (this.config.kvVersion === 2 && segs.length >= 2) {
        segs.splice(1, 0, 'data')
        kv2 = true
        path = segs.join('/')
      }
      if (kv2) {
        const j = segs.indexOf('data', 1)
        metadataPath = [...segs.slice(0, j), 'metadata', ...segs.slice(j + 1)].join('/')
        const rest = segs.slice(j + 1)
        if (ref.version === undefined) kvKey = { mount: segs.slice(0, j).join('/'), dir: rest.slice(0, -1).map((s) => s + '/').join(''), name: rest[rest.length - 1] as string }
      }
    }
    return { path, kv2, ...(metadataPath !== undefined ? { metadataPath, ...(kvKey !== undefined ? { kvKey } : {}) } : {}), ...(body !== undefined ? { body } : {}) }
  }

  async sync (ref: SecretRef, have: Have | undefined, signal?: AbortSignal): Promise<SyncResult> {
    const t = this.target(ref)
    if (t.kvKey !== undefined && !this.noMetadata.has(ref.raw)) this.lists.note(t.kvKey)
    if (have !== undefined) {
      if (t.kv2 && ref.version !== undefined && have.version === this.pinnedKvVersion(ref)) return { changed: false }
      const lease = this.leases.get(ref.raw)
      if (lease !== undefined && lease.version === have.version) {
        // Nothing to ask the server: the value lives until its lease says so.
        const now = Date.now()
        if (now < renewAt(lease.obtainedAt, lease.expiresAt)) return { changed: false, expiresAt: lease.expiresAt }
        if (lease.leaseId !== undefined && lease.renewable && now < lease.expiresAt - 1000) {
          const expiresAt = await this.renewLease(ref, lease, signal)
          if (expiresAt !== undefined) return { changed: false, expiresAt }
        }
        return { changed: true, ...(await this.read(ref, signal)) }
      }
      const current = await this.metadataVersion(ref, t, signal)
      if (current !== undefined) return current === have.version ? { changed: false } : { changed: true, ...(await this.read(ref, signal)) }
    }
    return against(have, await this.read(ref, signal))
  }

  /** KV v2 `current_version` from the metadata (no value); undefined when the path has none or the policy denies it. */
  private async metadataVersion (ref: SecretRef, t: Target, signal: AbortSignal | undefined): Promise<string | undefined> {
    if (!t.kv2 || t.metadataPath === undefined || this.noMetadata.has(ref.raw)) return undefined
    if (t.kvKey !== undefined) {
      const listed = await this.lists.version(t.kvKey, signal)
      if (typeof listed === 'number') return String(listed)
      if (listed !== undefined) throw this.statusError({ status: listed.unavailable, body: undefined }, ref, t)
    }
    const sentWith = this.auth.currentToken
    const ticket = this.lists.ticket()
    const ans = await this.authed({ method: 'GET', path: t.metadataPath }, ref, signal, true)
    if (ans.status === 200) {
      // The token did not change across the call: it read the metadata, so a listing denied to it was the policy.
      if (t.kvKey !== undefined && this.auth.currentToken === sentWith) this.lists.confirmDenied(t.kvKey, sentWith, ticket)
      const v = (ans.body as { data?: { current_version?: unknown } } | undefined)?.data?.current_version
      if (typeof v === 'number') return String(v)
      throw new SidekeyError('SIDEKEY_E_BACKEND', `store ${this.ctx.storeName}: KV v2 metadata for ${ref.raw} has no current_version; is ${t.path} a KV v2 path?`, { ref: ref.raw })
    }
    if (ans.status !== 403) throw this.statusError(ans, ref, t)
    this.noMetadata.add(ref.raw)
    this.ctx.logger.warn({ ref: ref.raw, store: this.ctx.storeName }, 'vault policy denies KV metadata; checking rotation by reading the value (grant read on the metadata path to make checks cheaper)')
    return undefined
  }

  private pinnedKvVersion (ref: SecretRef): string {
    const v = ref.version as string
    if (!/^\d+$/.test(v) || v === '0') {
      throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: a Vault KV v2 version is a positive number, not "${v}"`, { ref: ref.raw })
    }
    return v
  }

  private async read (ref: SecretRef, signal: AbortSignal | undefined): Promise<Snapshot> {
    const t = this.target(ref)
    let path = t.path
    if (ref.version !== undefined) {
      if (!t.kv2) throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: @version needs a KV v2 path (mount/data/...); ${t.path} has no versions`, { ref: ref.raw })
      path += `?version=${this.pinnedKvVersion(ref)}`
    }
    const call: VaultCall = t.body !== undefined ? { method: 'POST', path, body: t.body } : { method: 'GET', path }
    const ans = await this.authed(call, ref, signal, false)
    if (ans.status !== 200) throw this.statusError(ans, ref, t)
    const body = ans.body as { data?: unknown, lease_id?: unknown, lease_duration?: unknown, renewable?: unknown } | undefined
    const now = Date.now()
    if (t.kv2) {
      const d = body?.data as { data?: unknown, metadata?: { version?: unknown } } | undefined
      if (d?.data === null || typeof d?.data !== 'object' || Array.isArray(d.data)) {
        throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: the KV v2 version is deleted or destroyed`, { ref: ref.raw })
      }
      const data = checkSize({ kind: 'map', map: mapFromObject(d.data as Record<string, unknown>) }, ref, this.ctx.maxValueBytes)
      const version = typeof d.metadata?.version === 'number' ? String(d.metadata.version) : contentVersion(data)
      // For the Vault-compatible local API: where the secret lives and its KV metadata (no value).
      const segs = t.path.split('/')
      const mount = segs.slice(0, segs.indexOf('data', 1)).join('/')
      return { data, version, meta: { kv: 2, mount, path: t.path, metadata: d.metadata ?? {} } }
    }
    if (body?.data === null || typeof body?.data !== 'object' || Array.isArray(body.data)) {
      throw new SidekeyError('SIDEKEY_E_BACKEND', `store ${this.ctx.storeName}: ${t.path} answered without a data object; is it a secret path?`, { ref: ref.raw })
    }
    const raw = body.data as Record<string, unknown>
    const data: SecretData = checkSize({ kind: 'map', map: mapFromObject(raw) }, ref, this.ctx.maxValueBytes)
    const leaseId = typeof body.lease_id === 'string' && body.lease_id !== '' ? body.lease_id : undefined
    const leaseSeconds = typeof body.lease_duration === 'number' ? body.lease_duration : 0
    if (leaseId !== undefined && leaseSeconds > 0) {
      const expiresAt = now + leaseSeconds * 1000
      this.leases.set(ref.raw, { version: leaseId, leaseId, renewable: body.renewable === true, durationMs: leaseSeconds * 1000, obtainedAt: now, expiresAt })
      return { data, version: leaseId, expiresAt }
    }
    // PKI issue: no lease by default, the certificate's own expiry and serial.
    if (typeof raw.serial_number === 'string' && typeof raw.expiration === 'number') {
      const expiresAt = raw.expiration * 1000
      this.leases.set(ref.raw, { version: raw.serial_number, renewable: false, durationMs: expiresAt - now, obtainedAt: now, expiresAt })
      return { data, version: raw.serial_number, expiresAt }
    }
    return { data, version: contentVersion(data), ...(t.body === undefined ? { meta: { kv: 1, path: t.path } } : {}) }
  }

  /** The renewed lease's new expiry, or undefined when it must be read anew. */
  private async renewLease (ref: SecretRef, lease: Lease, signal: AbortSignal | undefined): Promise<number | undefined> {
    // quiet: a renewal the policy denies (403) falls through to reading a new credential, not an error.
    const ans = await this.authed({ method: 'PUT', path: 'sys/leases/renew', body: { lease_id: lease.leaseId, increment: Math.round(lease.durationMs / 1000) } }, ref, signal, true)
    const b = ans.body as { lease_duration?: unknown, renewable?: unknown } | undefined
    const seconds = typeof b?.lease_duration === 'number' ? b.lease_duration : 0
    // A renewal cut short by max_ttl is not worth keeping: read a new credential instead.
    if (ans.status !== 200 || seconds * 1000 < lease.durationMs / 3) {
      this.ctx.logger.info({ ref: ref.raw, store: this.ctx.storeName, status: ans.status }, 'vault lease not renewable far enough; reading a new one')
      this.leases.delete(ref.raw)
      return undefined
    }
    const now = Date.now()
    const expiresAt = now + seconds * 1000
    this.leases.set(ref.raw, { ...lease, renewable: b?.renewable === true, obtainedAt: now, expiresAt })
    this.ctx.logger.debug({ ref: ref.raw, store: this.ctx.storeName, ttlSeconds: seconds }, 'vault lease renewed')
    return expiresAt
  }

  /** A request with the current token; on 403 one fresh login and a retry, then the 403 stands. */
  private async authed (call: VaultCall, ref: SecretRef, signal: AbortSignal | undefined, quiet: boolean): Promise<VaultAnswer> {
    const st = await this.auth.token()
    let ans = await this.http.call({ ...call, token: st.token }, signal)
    if (ans.status !== 403) return ans
    const fresh = await this.auth.reloginAfterDenial(st)
    if (fresh !== undefined) {
      ans = await this.http.call({ ...call, token: fresh.token }, signal)
      if (ans.status !== 403) return ans
    }
    if (this.auth.isStatic) {
      // Vault answers 403 to a bad token as to a missing grant; ask which one it is.
      const self = await this.http.call({ method: 'GET', path: 'auth/token/lookup-self', token: st.token }, signal)
      if (self.status === 403 || self.status === 401) {
        throw new SidekeyError('SIDEKEY_E_AUTH', `store ${this.ctx.storeName}: Vault rejected the token from ${String(this.config.tokenEnv)} (invalid or expired); set a valid token`, { store: this.ctx.storeName, ref: ref.raw })
      }
    }
    if (quiet) return ans
    throw new SidekeyError('SIDEKEY_E_DENIED', `${ref.raw}: Vault denied ${call.method === 'GET' ? 'read' : 'write-style read'} of ${call.path.split('?')[0] ?? ''} (403); grant the role's policy "${call.method === 'GET' ? 'read' : 'update'}" on that path`, { ref: ref.raw, store: this.ctx.storeName, status: 403 })
  }

  private statusError (ans: VaultAnswer, ref: SecretRef, t: Target): SidekeyError {
    const store = this.ctx.storeName
    const details = { ref: ref.raw, store, status: ans.status }
    switch (ans.status) {
      case 404: return new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: Vault has no secret at ${t.path}${ref.version !== undefined ? ` version ${ref.version}` : ''} (404)`, details)
      case 403: return new SidekeyError('SIDEKEY_E_DENIED', `${ref.raw}: Vault denied the request (403); grant the role's policy read on ${t.metadataPath ?? t.path}`, details)
      case 401: return new SidekeyError('SIDEKEY_E_AUTH', `${ref.raw}: Vault rejected the token (401)`, details)
      case 429: case 502: case 503: case 504:
        return new SidekeyError('SIDEKEY_E_UNAVAILABLE', `${ref.raw}: Vault is unavailable (HTTP ${ans.status}): sealed, standby or rate-limited`, details)
      // Vault's own text only for a 400 (a request the caller can fix, e.g. "common name not
      // allowed"); a 500 from a plugin may quote its input.
      default: return new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: Vault answered HTTP ${ans.status} for ${t.path}${ans.status === 400 ? vaultErrorHint(ans) : ''}`, details)
    }
  }

  async close (): Promise<void> {
    this.auth.close()
    this.leases.clear()
    this.lists.clear()
    await this.http.close()
  }
}

/** Vault's own error text for 400s (e.g. "common name not allowed"); never values, but cut short anyway. */
function vaultErrorHint (ans: VaultAnswer): string {
  const errs = (ans.body as { errors?: unknown } | undefined)?.errors
  if (!Array.isArray(errs) || typeof errs[0] !== 'string') return ''
  const first = errs[0].replace(/\s+/g, ' ').trim().slice(0, 160)
  return first === '' ? '' : `: ${first}`
}

export function createVaultProvider (config: VaultStoreConfig, ctx: ProviderContext): Provider {
  return new VaultProvider(config, ctx)
}
