// The one reference grammar: <store>:<path>[#<key>][@<version>].
// A reference is data, never a value: it may be logged.
import { SidekeyError } from './errors.js'

export interface SecretRef {
  readonly store: string
  readonly path: string
  readonly key?: string
  readonly version?: string
  /** The reference as written, for logs and errors. */
  readonly raw: string
}

const STORE_RE = /^[a-z][a-z0-9-]{0,62}$/
const VERSION_RE = /^[A-Za-z0-9_.-]{1,256}$/
const MAX_REF = 2048

function fail (raw: string, what: string): never {
  throw new SidekeyError('SIDEKEY_E_REF_SYNTAX', `invalid secret reference "${raw}": ${what}; expected <store>:<path>[#<key>][@<version>], e.g. vault:secret/data/openai#api_key`, { ref: raw })
}

function isDotSegment (seg: string): boolean {
  let decoded = seg
  try {
    decoded = decodeURIComponent(seg)
  } catch {
    // not valid percent-encoding: compared as written
  }
  return decoded === '.' || decoded === '..' || seg === '.' || seg === '..'
}

export function parseRef (raw: unknown): SecretRef {
  if (typeof raw !== 'string') {
    throw new SidekeyError('SIDEKEY_E_REF_SYNTAX', `a secret reference must be a string, got ${raw === null ? 'null' : typeof raw}; expected <store>:<path>[#<key>][@<version>], e.g. vault:secret/data/openai#api_key`)
  }
  if (raw.length === 0) fail(raw, 'it is empty')
  // These two are never quoted, not even in part: a value pasted where a
  // reference belongs (a PEM key, a long token) must not be echoed back.
  if (raw.length > MAX_REF) {
    throw new SidekeyError('SIDEKEY_E_REF_SYNTAX', `a secret reference is longer than ${MAX_REF} characters (not shown); expected <store>:<path>[#<key>][@<version>], e.g. vault:secret/data/openai#api_key`)
  }
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(raw)) {
    throw new SidekeyError('SIDEKEY_E_REF_SYNTAX', 'a secret reference contains whitespace or control characters (not shown: it may be a pasted value); expected <store>:<path>[#<key>][@<version>], e.g. vault:secret/data/openai#api_key')
  }
  const colon = raw.indexOf(':')
  if (colon <= 0) fail(raw, 'the store name before ":" is missing')
  const store = raw.slice(0, colon)
  if (!STORE_RE.test(store)) fail(raw, `store "${store}" must be lowercase letters, digits and "-", starting with a letter`)
  let rest = raw.slice(colon + 1)
  let version: string | undefined
  const at = rest.lastIndexOf('@')
  if (at !== -1) {
    version = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!VERSION_RE.test(version)) fail(raw, `version "${version}" after "@" must be letters, digits, ".", "_" or "-"`)
  }
  let key: string | undefined
  const hash = rest.indexOf('#')
  if (hash !== -1) {
    key = rest.slice(hash + 1)
    rest = rest.slice(0, hash)
    if (key.length === 0) fail(raw, 'the key after "#" is empty')
    if (key.includes('#')) fail(raw, 'only one "#" is allowed')
  }
  const path = rest
  if (path.length === 0) fail(raw, 'the path after "<store>:" is empty')
  // Backends put the path into a URL, where %2e%2e is ".." again: refuse both,
  // so a path glob in the injector policy cannot be escaped.
  if (path.split('/').some((seg) => isDotSegment(seg))) fail(raw, 'the path must not contain "." or ".." segments (also percent-encoded)')
  // Encoded separators would make a segment after decoding: ..%2Fteam-b is ../team-b to a backend.
  if (/%(2f|5c|2e)/i.test(path) || path.includes('\\')) fail(raw, 'the path must not contain "\\" or a percent-encoded "/", "\\" or "." (%2F, %5C, %2E); write the path as the backend names it')
  const ref: SecretRef = { store, path, raw, ...(key !== undefined ? { key } : {}), ...(version !== undefined ? { version } : {}) }
  return Object.freeze(ref)
}

export function formatRef (ref: Omit<SecretRef, 'raw'>): string {
  return `${ref.store}:${ref.path}${ref.key !== undefined ? '#' + ref.key : ''}${ref.version !== undefined ? '@' + ref.version : ''}`
}
