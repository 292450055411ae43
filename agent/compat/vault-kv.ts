// A drop-in for reading KV through Vault Agent's API proxy: with VAULT_ADDR
// pointed at the agent, `GET /v1/<mount>/data/<path>` (KV v2) and
// `GET /v1/<mount>/<path>` (KV v1) answer Vault's read shapes for secrets this
// pod binds from a `vault` store (format raw), with the agent's local token as
// X-Vault-Token. The CLI's mount preflight (`sys/internal/ui/mounts/...`) and
// `auth/token/lookup-self` are answered so `bao kv get` / `vault kv get` and
// client libraries work unchanged. Anything not bound is 403 "permission
// denied", as Vault answers a token without a policy for the path.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { SecretSpec } from '../../core/config/load.js'
import type { ErrorCode } from '../../core/errors.js'
import { peerStatus } from '../../core/error-answers.js'
import type { ServedSecret, ServedSet } from '../served.js'
import { header, quote, sendBody, type CompatRoute, type RouteOutcome } from './route.js'
import { isoTime } from '../../core/utc-dates.js'

const ROUTE_READ = 'vault:/v1/:kv'
const ROUTE_MOUNTS = 'vault:/v1/sys/internal/ui/mounts'
const ROUTE_SELF = 'vault:/v1/auth/token/lookup-self'
const ROUTE_OTHER = 'vault:/v1/other'

export interface VaultCompatOptions {
  readonly served: ServedSet
  readonly storeType: (store: string) => string | undefined
  readonly checkToken: (t: string | undefined) => 'ok' | 'missing' | 'wrong'
}

interface VaultMeta { kv?: number, mount?: string, path?: string, metadata?: Record<string, unknown> }

interface Bound { readonly spec: SecretSpec, readonly kv: 1 | 2, readonly path: string, readonly mount: string }

/** Where a bound secret lives in Vault: from the provider's answer, else from the reference. */
function locate (spec: SecretSpec, entry: ServedSecret | undefined): Bound | undefined {
  const m = entry?.meta as VaultMeta | undefined
  const raw = (spec.ref?.path ?? '').split('?')[0]?.replace(/^\/+|\/+$/g, '') ?? ''
  if ((spec.ref?.path ?? '').includes('?')) return undefined // a write-style read (pki/issue?...): not KV
  const path = m?.path ?? raw
  const segs = path.split('/')
  const kv = m?.kv === 1 ? 1 : (m?.kv === 2 || segs.indexOf('data', 1) !== -1 ? 2 : 1)
  const mount = m?.mount ?? (kv === 2 ? segs.slice(0, segs.indexOf('data', 1)).join('/') : segs[0] ?? '')
  return { spec, kv, path, mount }
}

/**
 * Every error this route answers: Vault's `{"errors":[...]}` plus the code, at
 * the catalogue's status for the code (as Vault answers it: 403 for anything
 * the token may not read). An unbound version is Vault's 404 with no errors.
 */
function vaultError (res: ServerResponse, route: string, code: ErrorCode, message: string | undefined): RouteOutcome {
  return { route, status: sendBody(res, peerStatus(code, 'vault'), { errors: message !== undefined ? [message] : [], code }) }
}

function envelope (data: unknown, mountType: string | null): Record<string, unknown> {
  return { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null, mount_type: mountType }
}

export function vaultKvRoute (o: VaultCompatOptions): CompatRoute {
  const specs = [...o.served.specs.values()].filter((s) => s.ref !== undefined && s.format === 'raw' && o.storeType(s.ref.store) === 'vault')
  const bound = (): Bound[] => specs.map((s) => locate(s, o.served.get(s.name))).filter((b): b is Bound => b !== undefined)

  return (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => {
    if (!path.startsWith('/v1/')) return undefined
    const vaultToken = header(req, 'x-vault-token')
    // Sidekey's own /v1 routes stay Sidekey's unless the caller speaks Vault.
    if (vaultToken === undefined && (path === '/v1/secrets' || path.startsWith('/v1/secrets/') || path === '/v1/watch')) return undefined
    if (vaultToken === undefined && (header(req, 'x-sidekey-token') !== undefined || header(req, 'authorization') !== undefined)) return undefined
    let p: string
    try {
      p = decodeURIComponent(path.slice('/v1/'.length)).replace(/\/+$/, '')
    } catch {
      return vaultError(res, ROUTE_OTHER, 'SIDEKEY_E_BAD_REQUEST', 'the path is not valid percent-encoding')
    }
    const route = p.startsWith('sys/internal/ui/mounts/') ? ROUTE_MOUNTS : p === 'auth/token/lookup-self' ? ROUTE_SELF : ROUTE_READ
    const auth = o.checkToken(vaultToken)
    if (auth === 'missing') return vaultError(res, route, 'SIDEKEY_E_UNAUTHENTICATED', 'permission denied: send the token from SIDEKEY_TOKEN_FILE as X-Vault-Token (VAULT_TOKEN)')
    if (auth === 'wrong') return vaultError(res, route, 'SIDEKEY_E_FORBIDDEN', 'permission denied: X-Vault-Token does not match the token in SIDEKEY_TOKEN_FILE')

    if (route === ROUTE_SELF) {
      return { route, status: sendBody(res, 200, envelope({ display_name: 'sidekey-local', policies: ['sidekey-bound-secrets'], renewable: false, ttl: 0, type: 'service', path: 'auth/token/lookup-self' }, null)) }
    }
    if (route === ROUTE_MOUNTS) {
      const target = p.slice('sys/internal/ui/mounts/'.length)
      const mounts = bound().filter((b) => target === b.mount || target.startsWith(b.mount + '/')).sort((a, b) => b.mount.length - a.mount.length)
      const m = mounts[0]
      if (m === undefined) return vaultError(res, route, 'SIDEKEY_E_SECRET_UNKNOWN', `permission denied: this pod binds no Vault KV secret under ${quote(target)}`)
      return { route, status: sendBody(res, 200, envelope({ path: m.mount + '/', type: 'kv', description: 'served by the Sidekey agent: bound secrets only', options: { version: String(m.kv) }, config: {}, local: false, seal_wrap: false, external_entropy_access: false }, null)) }
    }

    for (const k of query.keys()) {
      if (k !== 'version') return vaultError(res, route, 'SIDEKEY_E_BAD_REQUEST', `unsupported parameter ${quote(k)}: the Sidekey agent serves KV reads (GET, optional ?version=)`)
    }
    const version = query.get('version') ?? undefined
    if (version !== undefined && !/^\d+$/.test(version)) return vaultError(res, route, 'SIDEKEY_E_BAD_REQUEST', 'version must be a KV v2 version number')
    const atPath = bound().filter((b) => b.path === p)
    if (atPath.length === 0) {
      return vaultError(res, route, 'SIDEKEY_E_SECRET_UNKNOWN', `permission denied: this pod binds no Vault secret at ${quote(p)} (bind it with sidekey.dev/secret-<name>: vault:${quote(p)})`)
    }
    const wanted = version === undefined || version === '0'
      ? atPath.filter((b) => b.spec.ref?.version === undefined)
      : atPath.filter((b) => b.kv === 2 && (b.spec.ref?.version === version || (b.spec.ref?.version === undefined && o.served.get(b.spec.name)?.version === version)))
    if (wanted.length === 0) return vaultError(res, route, 'SIDEKEY_E_NOT_FOUND', undefined)
    const whole = wanted.find((b) => b.spec.ref?.key === undefined)
    const served = whole !== undefined ? [whole] : wanted
    const entries = served.map((b) => o.served.get(b.spec.name))
    const name = served[0]?.spec.name as string
    if (entries.some((e) => e === undefined)) return { secret: name, ...vaultError(res, route, 'SIDEKEY_E_NOT_READY', `${quote(p)} has not been fetched yet; retry`) }
    let data: Record<string, unknown>
    if (whole !== undefined) {
      try {
        data = JSON.parse((entries[0] as ServedSecret).value.toString('utf8')) as Record<string, unknown>
      } catch {
        return { secret: name, ...vaultError(res, route, 'SIDEKEY_E_BACKEND', `${quote(p)} is not a key/value secret`) }
      }
    } else {
      data = Object.fromEntries(served.map((b, i) => [b.spec.ref?.key as string, (entries[i] as ServedSecret).value.toString('utf8')]))
    }
    const first = entries[0] as ServedSecret
    if ((served[0] as Bound).kv === 1) return { route, secret: name, version: first.version, status: sendBody(res, 200, envelope(data, 'kv')) }
    const md = (first.meta as VaultMeta | undefined)?.metadata ?? {}
    const metadata = {
      created_time: typeof md.created_time === 'string' ? md.created_time : isoTime(first.updatedAt),
      custom_metadata: md.custom_metadata ?? null,
      deletion_time: typeof md.deletion_time === 'string' ? md.deletion_time : '',
      destroyed: md.destroyed === true,
      version: typeof md.version === 'number' ? md.version : Number(first.version),
    }
    return { route, secret: name, version: first.version, status: sendBody(res, 200, envelope({ data, metadata }, 'kv')) }
  }
}
