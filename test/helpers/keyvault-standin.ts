// The Key Vault stand-in: the Secrets data plane of Azure Key Vault over HTTPS
// on 127.0.0.1 (certificate for localhost and 127.0.0.1), for machines where no
// Key Vault server can be installed. Nobody ships one for Node, so this is ours.
// It is held to the real service by test/integration/azure-standin-fidelity.test.ts,
// which replays the service's own recordings (../shared/azure-recordings) against it.
//
//   PUT    /secrets/{name}                     new version -> SecretBundle
//   GET    /secrets/{name}[/]                  latest version
//   GET    /secrets/{name}/{version}           one version
//   PATCH  /secrets/{name}/[{version}]         contentType, attributes, tags -> bundle without value
//   GET    /secrets/{name}/versions            SecretItem pages: maxresults, $skiptoken, absolute nextLink
//   DELETE /secrets/{name}                     soft delete -> DeletedSecretBundle; completes after deleteLatencyMs
//   GET    /deletedsecrets/{name}              404 until the delete completed, then DeletedSecretBundle
//   DELETE /deletedsecrets/{name}              purge -> 204
//
// Authorization as Key Vault does it: a request without a valid bearer token
// gets the 401 challenge naming the Entra authority and TENANT; a token must be
// signed by the fake Entra endpoint for TENANT, for https://vault.azure.net, not
// expired. Permissions: a secret named denied-* is refused with Key Vault's
// Azure RBAC body, noaccess-* with its access-policy body; a disabled version
// answers 403 SecretDisabled. Bodies, headers and messages are those of the
// recordings and of INDEX.md there (real RBAC, access-policy and bad-token bodies).
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createVerify, randomBytes, randomUUID } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { FakeAad } from './fake-aad.js'

/** The Entra tenant of the test identity; the stand-in's 401 challenge names it. */
export const TENANT = '11111111-2222-3333-4444-555555555555'

const RESOURCE = 'https://vault.azure.net'
const RECOVERY_LEVEL = 'Recoverable+Purgeable'
const RECOVERABLE_DAYS = 90
const PAGE_MAX = 25

interface Version {
  readonly id: string
  readonly value: string
  contentType?: string
  tags?: Record<string, string>
  enabled: boolean
  nbf?: number
  exp?: number
  readonly created: number
  updated: number
}

interface Deleted { readonly versions: Version[], readonly deletedDate: number, readonly visibleAt: number }

export interface KeyVaultStandin {
  readonly port: number
  /** PEM of its self-signed certificate (localhost, 127.0.0.1). */
  readonly ca: string
  /** Writes a new version directly (no request); returns its version id. */
  set (name: string, value: string): Promise<string>
  /** A secret the test identity may not read (Azure RBAC deny). */
  readonly deniedSecret: string
  /** Requests received (method, path), oldest first. */
  requests (): Array<{ method: string, path: string }>
  close (): Promise<void>
}

export interface KeyVaultStandinOptions {
  /** How long a soft delete takes before /deletedsecrets shows it (the service's is asynchronous); default 300 ms. */
  deleteLatencyMs?: number
}

class HttpError extends Error {
  constructor (readonly status: number, readonly code: string, message: string, readonly inner?: string) { super(message) }
}

const now = (): number => Math.floor(Date.now() / 1000)

export async function startKeyVaultStandin (aad: FakeAad, opts: KeyVaultStandinOptions = {}): Promise<KeyVaultStandin> {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-kv-standin-'))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
  const ca = readFileSync(join(dir, 'cert.pem'), 'utf8')
  const deleteLatencyMs = opts.deleteLatencyMs ?? 300
  const secrets = new Map<string, Version[]>()
  const deleted = new Map<string, Deleted>()
  const log: Array<{ method: string, path: string }> = []

  const addVersion = (name: string, v: Omit<Version, 'id' | 'created' | 'updated'>): Version => {
    const t = now()
    const version: Version = { ...v, id: randomBytes(16).toString('hex'), created: t, updated: t }
    const list = secrets.get(name) ?? []
    list.push(version)
    secrets.set(name, list)
    return version
  }

  /** Key Vault's answer to a missing or invalid token, or undefined when the token is good. */
  const tokenProblem = (auth: string | undefined): string | undefined => {
    const m = /^Bearer (.+)$/.exec(auth ?? '')
    if (m === null) return 'AKV10000: Request is missing a Bearer or PoP token.'
    const [h, p, s] = (m[1] as string).split('.')
    let claims: { aud?: unknown, iss?: unknown, exp?: unknown }
    try {
      claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString('utf8')) as typeof claims
    } catch {
      return 'AKV10000: Request is missing a Bearer or PoP token.'
    }
    const issuer = `${aad.authorityHost}/${TENANT}/v2.0`
    const signed = h !== undefined && s !== undefined && createVerify('sha256').update(`${h}.${p ?? ''}`).verify(aad.signingPublicKey, Buffer.from(s, 'base64url'))
    if (!signed || claims.iss !== issuer) return `AKV10032: Invalid issuer. Expected one of ${issuer}, found ${String(claims.iss)}.`
    if (claims.aud !== RESOURCE) return `AKV10022: Invalid audience. Expected ${RESOURCE}, found: ${String(claims.aud)}.`
    if (typeof claims.exp !== 'number' || claims.exp < now()) return 'AKV10022: Token expired.'
    return undefined
  }

  const bundle = (base: string, name: string, v: Version, withValue: boolean): Record<string, unknown> => ({
    ...(withValue ? { value: v.value } : {}),
    ...(v.contentType !== undefined ? { contentType: v.contentType } : {}),
    id: `${base}/secrets/${name}/${v.id}`,
    attributes: {
      enabled: v.enabled,
      ...(v.nbf !== undefined ? { nbf: v.nbf } : {}),
      ...(v.exp !== undefined ? { exp: v.exp } : {}),
      created: v.created,
      updated: v.updated,
      recoveryLevel: RECOVERY_LEVEL,
      recoverableDays: RECOVERABLE_DAYS,
    },
    ...(v.tags !== undefined ? { tags: v.tags } : {}),
  })

  const deletedBundle = (base: string, name: string, d: Deleted): Record<string, unknown> => ({
    recoveryId: `${base}/deletedsecrets/${name}`,
    deletedDate: d.deletedDate,
    scheduledPurgeDate: d.deletedDate + RECOVERABLE_DAYS * 86400,
    ...bundle(base, name, d.versions.at(-1) as Version, false),
  })

  const notFound = (name: string, version?: string): HttpError =>
    new HttpError(404, 'SecretNotFound', `A secret with (name/id) ${name}${version !== undefined ? `/${version}` : ''} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`)

  const readable = (name: string): void => {
    if (name.startsWith('denied-')) {
      throw new HttpError(403, 'Forbidden', `Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=sidekey;oid=sidekey;iss=https://sts.windows.net/${TENANT}/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: 'vaults/standin/secrets/${name}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: standin;location=local\r\n`, 'ForbiddenByRbac')
    }
    if (name.startsWith('noaccess-')) {
      throw new HttpError(403, 'Forbidden', `The user, group or application 'appid=sidekey;oid=sidekey;iss=https://sts.windows.net/${TENANT}/' does not have secrets get permission on key vault 'standin;location=local'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287`, 'AccessDenied')
    }
  }

  const find = (name: string, version: string | undefined): Version => {
    const list = secrets.get(name)
    const v = version === undefined || version === '' ? list?.at(-1) : list?.find((x) => x.id === version)
    if (v === undefined) throw notFound(name, version === '' ? undefined : version)
    return v
  }

  const jsonBody = (text: string): Record<string, unknown> => {
    try {
      const b = JSON.parse(text) as unknown
      if (b !== null && typeof b === 'object' && !Array.isArray(b)) return b as Record<string, unknown>
    } catch { /* below */ }
    throw new HttpError(400, 'BadParameter', 'The request body is not a JSON object.')
  }

  /** attributes / contentType / tags of a PUT or PATCH body, checked field by field. */
  const properties = (b: Record<string, unknown>): Partial<Version> => {
    const out: Partial<Version> = {}
    if (b.contentType !== undefined) {
      if (typeof b.contentType !== 'string') throw new HttpError(400, 'BadParameter', 'contentType must be a string.')
      out.contentType = b.contentType
    }
    if (b.tags !== undefined) {
      if (b.tags === null || typeof b.tags !== 'object') throw new HttpError(400, 'BadParameter', 'tags must be an object.')
      out.tags = Object.fromEntries(Object.entries(b.tags as Record<string, unknown>).map(([k, v]) => [k, String(v)]))
    }
    const a = b.attributes as Record<string, unknown> | undefined
    if (a !== undefined && a !== null) {
      if (typeof a !== 'object') throw new HttpError(400, 'BadParameter', 'attributes must be an object.')
      if (a.enabled !== undefined) out.enabled = a.enabled === true
      for (const k of ['nbf', 'exp'] as const) {
        if (a[k] === undefined) continue
        if (typeof a[k] !== 'number') throw new HttpError(400, 'BadParameter', `attributes.${k} must be a number of seconds since the epoch.`)
        out[k] = a[k]
      }
    }
    return out
  }

  const route = (method: string, url: URL, base: string, text: string): { status: number, body?: unknown } => {
    if (!url.searchParams.has('api-version')) throw new HttpError(400, 'BadParameter', 'The request URI must contain the api-version query parameter.')
    const del = /^\/deletedsecrets\/([0-9A-Za-z-]{1,127})\/?$/.exec(url.pathname)
    if (del !== null) {
      const name = del[1] as string
      const d = deleted.get(name)
      if (d === undefined || Date.now() < d.visibleAt) throw new HttpError(404, 'SecretNotFound', `Deleted Secret not found: ${name}`)
      if (method === 'GET') return { status: 200, body: deletedBundle(base, name, d) }
      if (method === 'DELETE') { deleted.delete(name); return { status: 204 } }
      throw new HttpError(405, 'BadParameter', `${method} is not allowed on a deleted secret.`)
    }
    const m = /^\/secrets\/([0-9A-Za-z-]{1,127})(?:\/(versions|[0-9A-Za-z]*))?$/.exec(url.pathname)
    if (m === null) throw new HttpError(400, 'BadParameter', `Unknown request path ${url.pathname}.`)
    const name = m[1] as string
    const sub = m[2]
    if (sub === 'versions' && method === 'GET') {
      readable(name)
      const max = Math.min(Number(url.searchParams.get('maxresults') ?? PAGE_MAX), PAGE_MAX)
      if (!Number.isInteger(max) || max < 1) throw new HttpError(400, 'BadParameter', 'maxresults must be an integer from 1 to 25.')
      const skip = url.searchParams.get('$skiptoken')
      let from = 0
      if (skip !== null) {
        try { from = Number((JSON.parse(Buffer.from(skip, 'base64').toString('utf8')) as { NextMarker: number }).NextMarker) } catch { from = NaN }
        if (!Number.isInteger(from) || from < 0) throw new HttpError(400, 'BadParameter', 'The $skiptoken is not valid.')
      }
      // Ordered by version id, as the service lists them (not by time).
      const all = [...(secrets.get(name) ?? [])].sort((a, b) => a.id < b.id ? -1 : 1)
      const page = all.slice(from, from + max)
      let nextLink: string | null = null
      if (from + max < all.length) {
        const q = new URLSearchParams({ 'api-version': url.searchParams.get('api-version') as string, $skiptoken: Buffer.from(JSON.stringify({ NextMarker: from + max, TargetLocation: 0 })).toString('base64') })
        if (url.searchParams.has('maxresults')) q.set('maxresults', String(max))
        nextLink = `${base}/secrets/${name}/versions?${q.toString().replace('%24skiptoken', '$skiptoken')}`
      }
      return { status: 200, body: { value: page.map((v) => bundle(base, name, v, false)), nextLink } }
    }
    if (method === 'PUT' && sub === undefined) {
      if (deleted.has(name)) throw new HttpError(409, 'Conflict', `Secret ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.`)
      const b = jsonBody(text)
      if (typeof b.value !== 'string') throw new HttpError(400, 'BadParameter', 'The value of the secret is missing.')
      const p = properties(b)
      const v = addVersion(name, { value: b.value, enabled: p.enabled ?? true, ...(p.contentType !== undefined ? { contentType: p.contentType } : {}), ...(p.tags !== undefined ? { tags: p.tags } : {}), ...(p.nbf !== undefined ? { nbf: p.nbf } : {}), ...(p.exp !== undefined ? { exp: p.exp } : {}) })
      return { status: 200, body: bundle(base, name, v, true) }
    }
    if (method === 'GET' && sub !== 'versions') {
      readable(name)
      const v = find(name, sub)
      if (!v.enabled) throw new HttpError(403, 'Forbidden', 'Operation get is not allowed on a disabled secret.', 'SecretDisabled')
      return { status: 200, body: bundle(base, name, v, true) }
    }
    if (method === 'PATCH' && sub !== undefined && sub !== 'versions') {
      const v = find(name, sub)
      const p = properties(jsonBody(text))
      Object.assign(v, p, { updated: now() })
      return { status: 200, body: bundle(base, name, v, false) }
    }
    if (method === 'DELETE' && sub === undefined) {
      const list = secrets.get(name)
      if (list === undefined) throw notFound(name)
      secrets.delete(name)
      const d: Deleted = { versions: list, deletedDate: now(), visibleAt: Date.now() + deleteLatencyMs }
      deleted.set(name, d)
      return { status: 200, body: deletedBundle(base, name, d) }
    }
    throw new HttpError(405, 'BadParameter', `${method} is not allowed on ${url.pathname}.`)
  }

  const handle = (req: IncomingMessage, res: ServerResponse, text: string): void => {
    const base = `https://${req.headers.host ?? `localhost:${port}`}`
    const url = new URL(req.url ?? '/', base)
    const method = req.method ?? 'GET'
    log.push({ method, path: url.pathname })
    const headers: Record<string, string> = {
      'cache-control': 'no-cache',
      pragma: 'no-cache',
      expires: '-1',
      'strict-transport-security': 'max-age=31536000;includeSubDomains',
      'x-content-type-options': 'nosniff',
      'x-ms-keyvault-region': 'local',
      'x-ms-keyvault-service-version': '1.9.2103.1',
      'x-ms-request-id': randomUUID(),
      'x-ms-keyvault-network-info': 'conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;',
    }
    const clientRequestId = req.headers['x-ms-client-request-id']
    if (typeof clientRequestId === 'string') headers['x-ms-client-request-id'] = clientRequestId
    const send = (status: number, body?: unknown): void => {
      if (body === undefined) { res.writeHead(status, headers).end(); return }
      const json = JSON.stringify(body)
      res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(json)) }).end(json)
    }
    const problem = tokenProblem(req.headers.authorization)
    if (problem !== undefined) {
      headers['www-authenticate'] = `Bearer authorization="${aad.authorityHost}/${TENANT}", resource="${RESOURCE}"`
      send(401, { error: { code: 'Unauthorized', message: problem } })
      return
    }
    headers['x-ms-keyvault-rbac-assignment-id'] = randomBytes(16).toString('hex')
    try {
      const r = route(method, url, base, text)
      send(r.status, r.body)
    } catch (err) {
      if (!(err instanceof HttpError)) throw err
      send(err.status, { error: { code: err.code, message: err.message, ...(err.inner !== undefined ? { innererror: { code: err.inner } } : {}) } })
    }
  }

  const server: Server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (req, res) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > 1 << 20) { res.writeHead(413).end(); req.destroy(); return }
      chunks.push(c)
    })
    req.on('end', () => {
      try {
        handle(req, res, Buffer.concat(chunks).toString('utf8'))
      } catch {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify({ error: { code: 'InternalServerError', message: 'stand-in failure' } }))
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port

  return {
    port,
    ca,
    async set (name, value) {
      deleted.delete(name)
      return addVersion(name, { value, enabled: true }).id
    },
    deniedSecret: 'denied-secret',
    requests: () => log.filter((r) => r.method === 'GET'),
    async close () {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
