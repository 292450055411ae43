// The real Key Vault service's own HTTP recordings (Azure SDK test-proxy files in
// ../shared/azure-recordings, beside the checkout; see INDEX.md there), and what
// both replays need: loading them, an access token from the fake Entra endpoint,
// and the shape comparison. The recordings are data read in place, never copied
// into the repository. A missing directory is an error naming the path: the
// replays fail, they never skip.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { generateKeyPairSync, createSign, randomUUID } from 'node:crypto'
import { ClientAssertionCredential } from '@azure/identity'
import { repoRoot } from './testenv.js'
import { TOKEN_EXCHANGE_AUDIENCE, type FakeAad } from './fake-aad.js'

export interface RecordedEntry {
  readonly RequestUri: string
  readonly RequestMethod: string
  readonly RequestHeaders: Record<string, string>
  readonly RequestBody: unknown
  readonly StatusCode: number
  readonly ResponseHeaders: Record<string, string>
  readonly ResponseBody: unknown
}

export interface Recording {
  /** Path under the recordings directory, e.g. `js/recording_cant_get_a_disabled_secret.json`. */
  readonly file: string
  readonly entries: readonly RecordedEntry[]
}

/** `<repo>/../shared/azure-recordings`: CI puts shared/ beside the checkout. */
export function recordingsDir (): string {
  return join(repoRoot(), '..', 'shared', 'azure-recordings')
}

/** Every recording, sorted by path. Throws, naming the directory, when there is none. */
export function loadRecordings (): Recording[] {
  const dir = recordingsDir()
  if (!existsSync(dir)) {
    throw new Error(`Key Vault recordings not found at ${dir}: the Azure fidelity replays read the real service's recordings from ../shared/azure-recordings beside the checkout (see its INDEX.md); put shared/ there`)
  }
  const files: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e)
      if (statSync(p).isDirectory()) walk(p)
      else if (e.endsWith('.json')) files.push(p)
    }
  }
  walk(dir)
  if (files.length === 0) throw new Error(`Key Vault recordings: ${dir} holds no *.json recording`)
  return files.map((p) => {
    const doc = JSON.parse(readFileSync(p, 'utf8')) as { Entries?: RecordedEntry[] }
    if (!Array.isArray(doc.Entries) || doc.Entries.length === 0) throw new Error(`Key Vault recordings: ${p} has no Entries`)
    return { file: relative(dir, p), entries: doc.Entries }
  })
}

export function recording (file: string): Recording {
  const r = loadRecordings().find((x) => x.file === file)
  if (r === undefined) throw new Error(`Key Vault recordings: ${file} is missing from ${recordingsDir()}`)
  return r
}

/** A header of a recorded or received response, by case-insensitive name. */
export function header (headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name.toLowerCase()) return Array.isArray(v) ? v.join(', ') : v
  }
  return undefined
}

type JsonType = 'null' | 'array' | 'object' | 'string' | 'number' | 'boolean'
function jsonType (v: unknown): JsonType {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v as JsonType
}

/**
 * Differences of JSON shape: key sets and value types, recursively, arrays
 * element by element (so lengths too). Values are never compared (ids,
 * timestamps, version ids and secret values differ by nature) and never
 * appear in the result: only paths and type names do.
 */
export function shapeDiff (want: unknown, got: unknown, path = '$'): string[] {
  const tw = jsonType(want)
  const tg = jsonType(got)
  if (tw !== tg) return [`${path}: ${tg}, the service answers ${tw}`]
  if (tw === 'array') {
    const w = want as unknown[]
    const g = got as unknown[]
    if (w.length !== g.length) return [`${path}: ${g.length} items, the service answers ${w.length}`]
    return w.flatMap((x, i) => shapeDiff(x, g[i], `${path}[${i}]`))
  }
  if (tw === 'object') {
    const w = want as Record<string, unknown>
    const g = got as Record<string, unknown>
    const out: string[] = []
    for (const k of Object.keys(w)) if (!(k in g)) out.push(`${path}.${k}: missing`)
    for (const k of Object.keys(g)) if (!(k in w)) out.push(`${path}.${k}: not in the service's answer`)
    for (const k of Object.keys(w)) if (k in g) out.push(...shapeDiff(w[k], g[k], `${path}.${k}`))
    return out
  }
  return []
}

/** `error.code` and `error.innererror.code` of a Key Vault error body ('' where absent). */
export function errorCodes (body: unknown): string {
  const e = (body as { error?: { code?: unknown, innererror?: { code?: unknown } } } | null)?.error
  if (e === undefined) return ''
  return `${String(e.code ?? '')}/${String(e.innererror?.code ?? '')}`
}

/** The parameters of a `Bearer k="v", k="v"` challenge. */
export function challengeParams (h: string | undefined): Record<string, string> | undefined {
  const m = /^Bearer\s+(.*)$/.exec(h ?? '')
  if (m === null) return undefined
  const out: Record<string, string> = {}
  for (const p of (m[1] as string).matchAll(/([A-Za-z_]+)="([^"]*)"/g)) out[p[1] as string] = p[2] as string
  return out
}

/**
 * A workload identity at the fake Entra endpoint (federated credential with
 * this process's own issuer and key: no API server needed) and a credential
 * for it; `assertionFile` content is a client assertion for the token file of
 * a WorkloadIdentityCredential.
 */
export function entraIdentity (aad: FakeAad, tenantId: string): { clientId: string, tenantId: string, assertion: () => string, credential: ClientAssertionCredential } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const issuer = 'https://sidekey-recordings.test/issuer'
  const subject = 'system:serviceaccount:recordings:replay'
  const clientId = randomUUID()
  aad.addApp({ tenantId, clientId, federatedCredentials: [{ issuer, subject, issuerPublicKeys: [publicKey.export({ type: 'spki', format: 'pem' }).toString()] }] })
  const assertion = (): string => {
    const now = Math.floor(Date.now() / 1000)
    const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
    const input = `${enc({ alg: 'RS256', typ: 'JWT' })}.${enc({ iss: issuer, sub: subject, aud: [TOKEN_EXCHANGE_AUDIENCE], iat: now, nbf: now, exp: now + 3600 })}`
    return `${input}.${createSign('sha256').update(input).sign(privateKey).toString('base64url')}`
  }
  const credential = new ClientAssertionCredential(tenantId, clientId, async () => assertion(), {
    authorityHost: aad.authorityHost,
    disableInstanceDiscovery: true,
    tlsOptions: { ca: aad.ca },
  })
  return { clientId, tenantId, assertion, credential }
}
