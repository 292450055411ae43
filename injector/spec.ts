// Annotations -> injection spec. A pure function of (pod annotations,
// injector config): it reads, checks and freezes; it never writes defaults
// back into the pod. Every failure is SIDEKEY_E_ANNOTATION naming the
// annotation, and never quotes an annotation value that is not a reference
// (a user may have pasted a secret value where a reference belongs).
import { SidekeyError, isSidekeyError } from '../core/errors.js'
import { parseRef, type SecretRef } from '../core/reference.js'
import { parseTemplate } from '../core/template.js'
import { parseDuration } from '../core/duration.js'
import { modeProblem } from '../core/file-mode.js'
import { SECRET_FORMATS, onChangeSchema, type SecretFormat, type StoreConfig } from '../core/config/schema.js'
import { storeDescriptor } from '../core/stores.js'
import {
  ANN_CONTAINERS, ANN_FORMAT_PREFIX, ANN_INJECT_MODE, ANN_MODE_PREFIX, ANN_MOUNT_PATH, ANN_ON_CHANGE, ANN_OPTIONAL_PREFIX,
  ANN_METRICS_PORT, ANN_REFRESH, ANN_ROLE, ANN_SYNC_DEADLINE, ANN_SECRET_PREFIX, ANN_STORE_PREFIX, ANN_TEMPLATE_PREFIX, EXACT_KEYS, INJECT_MODES, NAMED_PREFIXES,
  CLUSTER_CA_FILE, PREFIX, TOKEN_DIR, type InjectMode,
} from './annotations.js'
import type { InjectorConfig } from './config.js'


export interface SecretEntry {
  readonly name: string
  /** The annotation that defines it, for messages. */
  readonly annotation: string
  readonly ref?: SecretRef
  readonly template?: string
  readonly refs: readonly SecretRef[]
  readonly format?: SecretFormat
  readonly mode?: string
  readonly optional: boolean
}

/** A projected service-account token file in the `sidekey-token` volume. */
export interface TokenFile {
  readonly path: string
  /** Absent: the API server's default audience (the `k8s` store). */
  readonly audience?: string
}

export interface InjectionSpec {
  readonly mode: InjectMode
  readonly mountPath: string
  readonly secrets: readonly SecretEntry[]
  readonly refresh?: string
  /** sidekey.dev/metrics-port: the opt-in metrics listener on the pod IP. */
  readonly metricsPort?: number
  /** sidekey.dev/sync-deadline, when set. */
  readonly syncDeadline?: string
  readonly onChange: readonly string[]
  /** A `signal:` hook needs the pod to share its process namespace. */
  readonly needsSharedPid: boolean
  /** null: the default choice (application containers; see injector/infrastructure.ts). */
  readonly containers: readonly string[] | null
  /** The stores the secrets use, as the agent will receive them (k8s namespace is added per pod). */
  readonly stores: Readonly<Record<string, StoreConfig>>
  readonly tokens: readonly TokenFile[]
  /** The `k8s` store needs the cluster CA next to its token. */
  readonly needsClusterCa: boolean
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/
const CONTAINER_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const ON_CHANGE_RE = new RegExp(onChangeSchema.pattern)
const MIN_REFRESH_MS = 1000
const MAX_REFRESH_MS = 24 * 3_600_000

export function annotationError (annotation: string, what: string, details: Record<string, unknown> = {}): SidekeyError {
  return new SidekeyError('SIDEKEY_E_ANNOTATION', `${annotation}: ${what}`, { annotation, ...details })
}

/**
 * Quoted fragments of an annotation value are shown only when they are
 * themselves references to a store the injector offers (data); anything else
 * might be a value: `admin:Zq9hunter2` parses as a reference, but names no
 * store, so it is hidden.
 */
export function hideNonReferences (message: string, value: string, offered?: readonly string[]): string {
  return message.replace(/"([^"]{3,})"/g, (whole, inner: string) => {
    if (!value.includes(inner)) return whole
    try {
      const ref = parseRef(inner)
      return offered === undefined || offered.includes(ref.store) ? whole : '"<hidden>"'
    } catch {
      return '"<hidden>"'
    }
  })
}

function wrap (annotation: string, value: string, err: unknown, offered: readonly string[]): SidekeyError {
  if (!isSidekeyError(err)) return annotationError(annotation, 'is invalid')
  // The lower layers' messages start with the value or a field name; keep the reason after it.
  const text = hideNonReferences(err.message, value, offered)
  return annotationError(annotation, text, { reason: err.code })
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/

/** A k8s reference is `[<namespace>/]<name>[#<key>]` with Kubernetes names; anything else is refused unseen. */
function checkK8sRef (annotation: string, ref: SecretRef): void {
  const slash = ref.path.indexOf('/')
  const ns = slash === -1 ? undefined : ref.path.slice(0, slash)
  const name = slash === -1 ? ref.path : ref.path.slice(slash + 1)
  if ((ns !== undefined && !DNS_LABEL.test(ns)) || !DNS_SUBDOMAIN.test(name) || (ref.key !== undefined && !SECRET_KEY.test(ref.key))) {
    throw annotationError(annotation, 'a k8s reference must be k8s:[<namespace>/]<secret name>[#<key>] with Kubernetes names (lowercase letters, digits, "-", "."); the reference is not shown: it may be a pasted value')
  }
}

function durationOf (annotation: string, value: string, min = MIN_REFRESH_MS, max = MAX_REFRESH_MS, range = 'between 1s and 24h'): string {
  let ms: number
  try {
    ms = parseDuration(value, annotation)
  } catch {
    throw annotationError(annotation, 'is not a duration; write it like 30s, 5m or 1h')
  }
  if (ms < min || ms > max) throw annotationError(annotation, `must be ${range}`)
  return value.trim()
}

function checkMountPath (value: string): string {
  const bad = (what: string): never => { throw annotationError(ANN_MOUNT_PATH, `${what}; write an absolute path such as /var/run/secrets/sidekey`) }
  if (!value.startsWith('/')) bad('must be an absolute path')
  if (value.length > 1024) bad('is longer than 1024 characters')
  if (value === '/' || value.endsWith('/')) bad('must name a directory below / without a trailing "/"')
  // eslint-disable-next-line no-control-regex
  if (/[:\s\x00-\x1f\x7f]/.test(value)) bad('must not contain ":", whitespace or control characters')
  if (value.split('/').slice(1).some((s) => s === '' || s === '.' || s === '..')) bad('must not contain empty, "." or ".." segments')
  if (value === TOKEN_DIR || value.startsWith(TOKEN_DIR + '/') || TOKEN_DIR.startsWith(value + '/')) bad(`must not overlap ${TOKEN_DIR}, where the agent's tokens are mounted`)
  return value
}

interface Pending { secret?: string, template?: string, format?: string, mode?: string, optional?: string }

/** Turns a pod's annotations into a frozen spec, or throws SIDEKEY_E_ANNOTATION. */
export function buildSpec (annotations: Readonly<Record<string, string>> | undefined, config: InjectorConfig): InjectionSpec {
  const ann = annotations ?? {}
  const byName = new Map<string, Pending>()
  const storeOverrides = new Map<string, Record<string, unknown>>()

  for (const [key, raw] of Object.entries(ann)) {
    if (!key.startsWith(PREFIX)) continue
    if (typeof raw !== 'string') throw annotationError(key, 'must be a string')
    if (EXACT_KEYS.includes(key)) continue
    const prefix = NAMED_PREFIXES.find((p) => key.startsWith(p))
    if (prefix === undefined) {
      throw annotationError(key, `is not a Sidekey annotation; use secret-<name>, template-<name>, format-<name>, mode-<name>, optional-<name>, store-<store>, ${EXACT_KEYS.filter((k) => k.startsWith(PREFIX)).map((k) => k.slice(PREFIX.length)).join(', ')}`)
    }
    const name = key.slice(prefix.length)
    if (prefix === ANN_STORE_PREFIX) {
      let o: unknown
      try {
        o = JSON.parse(raw)
      } catch {
        throw annotationError(key, 'must be a JSON object such as {"role":"my-app"}')
      }
      if (o === null || typeof o !== 'object' || Array.isArray(o)) throw annotationError(key, 'must be a JSON object such as {"role":"my-app"}')
      storeOverrides.set(name, o as Record<string, unknown>)
      continue
    }
    if (!NAME_RE.test(name)) throw annotationError(key, 'the name after the prefix must be letters, digits, ".", "_" or "-", starting with a letter or digit')
    const p = byName.get(name) ?? {}
    if (prefix === ANN_SECRET_PREFIX) p.secret = raw
    else if (prefix === ANN_TEMPLATE_PREFIX) p.template = raw
    else if (prefix === ANN_FORMAT_PREFIX) p.format = raw
    else if (prefix === ANN_MODE_PREFIX) p.mode = raw
    else p.optional = raw
    byName.set(name, p)
  }

  const offered = Object.keys(config.stores)
  const secrets: SecretEntry[] = []
  for (const name of [...byName.keys()].sort()) {
    const p = byName.get(name) as Pending
    const secretKey = ANN_SECRET_PREFIX + name
    const templateKey = ANN_TEMPLATE_PREFIX + name
    if (p.secret !== undefined && p.template !== undefined) throw annotationError(templateKey, `${secretKey} is also set; a file comes from one reference or one template, not both`)
    if (p.secret === undefined && p.template === undefined) {
      const orphan = p.format !== undefined ? ANN_FORMAT_PREFIX + name : p.mode !== undefined ? ANN_MODE_PREFIX + name : ANN_OPTIONAL_PREFIX + name
      throw annotationError(orphan, `there is no ${secretKey} or ${templateKey} for it; add one or remove this annotation`)
    }
    let ref: SecretRef | undefined
    let refs: readonly SecretRef[]
    let annotation: string
    if (p.secret !== undefined) {
      annotation = secretKey
      try {
        ref = parseRef(p.secret.trim())
      } catch (err) {
        throw wrap(secretKey, p.secret, err, offered)
      }
      refs = [ref]
    } else {
      annotation = templateKey
      const source = p.template as string
      if (source.length > 65536) throw annotationError(templateKey, 'is longer than 65536 characters')
      try {
        refs = parseTemplate(source, templateKey).refs
      } catch (err) {
        throw wrap(templateKey, source, err, offered)
      }
    }
    let format: SecretFormat | undefined
    if (p.format !== undefined) {
      if (!(SECRET_FORMATS as readonly string[]).includes(p.format)) throw annotationError(ANN_FORMAT_PREFIX + name, `must be one of ${SECRET_FORMATS.join(', ')}`)
      if (p.template !== undefined) throw annotationError(ANN_FORMAT_PREFIX + name, 'applies to secret-<name> only; a template already is the file content')
      format = p.format as SecretFormat
    }
    const badMode = p.mode !== undefined ? modeProblem(p.mode) : undefined
    if (badMode !== undefined) throw annotationError(ANN_MODE_PREFIX + name, badMode)
    if (p.optional !== undefined && p.optional !== 'true' && p.optional !== 'false') throw annotationError(ANN_OPTIONAL_PREFIX + name, 'must be "true" or "false"')
    secrets.push(Object.freeze({
      name,
      annotation,
      ...(ref !== undefined ? { ref } : {}),
      ...(p.template !== undefined ? { template: p.template } : {}),
      refs: Object.freeze([...refs]),
      ...(format !== undefined ? { format } : {}),
      ...(p.mode !== undefined ? { mode: p.mode } : {}),
      optional: p.optional === 'true',
    }))
  }
  if (secrets.length === 0) throw annotationError(ANN_SECRET_PREFIX + '<name>', 'the pod asks for injection but names no secret; add sidekey.dev/secret-<name> or sidekey.dev/template-<name>')

  // Stores: only those the injector config offers; identity from role / store-<name>.
  const role = ann[ANN_ROLE]
  const stores: Record<string, StoreConfig> = {}
  for (const s of secrets) {
    for (const r of s.refs) {
      if (stores[r.store] !== undefined) continue
      const base = config.stores[r.store]
      if (base === undefined) {
        // Never quoted: a pasted `user:password` parses as a reference to store "user".
        throw annotationError(s.annotation, `a reference names an unknown store, one the injector config does not offer (the reference is not shown: it may be a pasted value); use one of: ${offered.sort().join(', ')}`, { reason: 'unknown-store' })
      }
      if (base.type === 'k8s') checkK8sRef(s.annotation, r)
      stores[r.store] = base
    }
  }
  for (const name of storeOverrides.keys()) {
    if (stores[name] === undefined) throw annotationError(ANN_STORE_PREFIX + name, `no secret uses store "${name}"; remove this annotation or fix the store name`)
  }
  const tokens = new Map<string, TokenFile>()
  let needsClusterCa = false
  for (const [name, base] of Object.entries(stores)) {
    const override = storeOverrides.get(name) ?? {}
    const key = ANN_STORE_PREFIX + name
    const d = storeDescriptor(base.type)
    const allowed = d?.podOverridable ?? []
    for (const [f, v] of Object.entries(override)) {
      if (!allowed.includes(f)) throw annotationError(key, `field "${f}" cannot be set from a pod for a ${base.type} store; allowed: ${allowed.length > 0 ? allowed.join(', ') : 'none'}`)
      if (f === 'kvVersion' ? v !== 1 && v !== 2 : typeof v !== 'string' || v.length === 0 || v.length > 2048) throw annotationError(key, `field "${f}" must be ${f === 'kvVersion' ? '1 or 2' : 'a non-empty string'}`)
    }
    const merged: Record<string, unknown> = { ...base, ...override }
    const roleField = d?.role
    if (roleField !== undefined) {
      const field = roleField.field
      if (override[field] === undefined && role !== undefined) merged[field] = role
      if (merged[field] === undefined) throw annotationError(ANN_ROLE, `store "${name}" (${base.type}) needs ${roleField.what}; set ${ANN_ROLE} or ${key}: {"${field}": "..."}`)
      const prefix = roleField.prefix
      if (prefix !== undefined && (typeof merged[field] !== 'string' || !merged[field].startsWith(prefix.value))) {
        throw annotationError(override[field] !== undefined ? key : ANN_ROLE, `store "${name}" (${base.type}) needs ${roleField.what} starting with "${prefix.value}"; set ${key}: {"${field}": "${prefix.example}"}`)
      }
    }
    for (const field of d?.podRequires ?? []) {
      if (typeof merged[field] !== 'string' || merged[field] === '') throw annotationError(key, `store "${name}" (${base.type}) needs ${field}; set it in the injector config's store or ${key}: {"${field}": "..."}`)
    }
    const token = d?.token
    if (token !== undefined) {
      merged.tokenFile = `${TOKEN_DIR}/${token.fileName}`
      const audience = token.audience !== undefined ? config.audiences[token.audience.key] ?? token.audience.default : undefined
      tokens.set(token.fileName, { path: token.fileName, ...(audience !== undefined ? { audience } : {}) })
      if (token.clusterCa === true) {
        merged.caFile = `${TOKEN_DIR}/${CLUSTER_CA_FILE}`
        needsClusterCa = true
      }
    }
    stores[name] = Object.freeze(merged) as StoreConfig
  }

  // Mode, refresh, hooks, containers, mount path.
  let mode: InjectMode = config.defaultMode
  const rawMode = ann[ANN_INJECT_MODE]
  if (rawMode !== undefined) {
    if (!(INJECT_MODES as readonly string[]).includes(rawMode)) throw annotationError(ANN_INJECT_MODE, `must be one of ${INJECT_MODES.join(', ')}`)
    mode = rawMode as InjectMode
  }
  if (mode === 'sidecar' && !config.nativeSidecars) mode = 'legacy'

  const rawRefresh = ann[ANN_REFRESH]
  const refresh = rawRefresh !== undefined ? durationOf(ANN_REFRESH, rawRefresh) : undefined

  const rawDeadline = ann[ANN_SYNC_DEADLINE]
  const syncDeadline = rawDeadline !== undefined ? durationOf(ANN_SYNC_DEADLINE, rawDeadline, 10_000, MAX_REFRESH_MS, 'between 10s and 24h') : undefined

  const rawMetrics = ann[ANN_METRICS_PORT]
  let metricsPort: number | undefined
  if (rawMetrics !== undefined) {
    const n = /^\d{1,5}$/.test(rawMetrics.trim()) ? Number(rawMetrics.trim()) : NaN
    if (!Number.isInteger(n) || n < 1024 || n > 65535) throw annotationError(ANN_METRICS_PORT, 'must be a port number between 1024 and 65535, e.g. "9102"')
    if (n === config.listen.http || n === config.listen.grpc) throw annotationError(ANN_METRICS_PORT, `${n} is the agent's local ${n === config.listen.http ? 'HTTP' : 'gRPC'} port; pick another, e.g. "9102"`)
    if (mode === 'init-only') throw annotationError(ANN_METRICS_PORT, 'has no effect with inject-mode init-only (the agent exits after the first fetch); remove it or use sidecar')
    metricsPort = n
  }

  const onChange: string[] = []
  const rawHooks = ann[ANN_ON_CHANGE]
  if (rawHooks !== undefined) {
    for (const line of rawHooks.split('\n').map((l) => l.trim()).filter((l) => l.length > 0)) {
      if (!ON_CHANGE_RE.test(line)) throw annotationError(ANN_ON_CHANGE, 'each line must be "http:POST http://127.0.0.1:<port>/<path>" or "signal:<SIGNAL>:<process name>"')
      onChange.push(line)
    }
    if (onChange.length > 16) throw annotationError(ANN_ON_CHANGE, 'at most 16 hooks')
    if (onChange.length > 0 && mode === 'init-only') throw annotationError(ANN_ON_CHANGE, 'has no effect with inject-mode init-only (the agent exits after the first fetch); remove it or use sidecar')
  }

  let containers: string[] | null = null
  const rawContainers = ann[ANN_CONTAINERS]
  if (rawContainers !== undefined) {
    containers = [...new Set(rawContainers.split(',').map((c) => c.trim()).filter((c) => c.length > 0))]
    if (containers.length === 0) throw annotationError(ANN_CONTAINERS, 'names no container; list container names separated by commas, or remove it for all')
    const bad = containers.find((c) => !CONTAINER_RE.test(c) || c.length > 63)
    // Never quoted: a pasted value can look like a name.
    if (bad !== undefined) throw annotationError(ANN_CONTAINERS, `entry ${containers.indexOf(bad) + 1} is not a container name (lowercase letters, digits and "-", at most 63; not shown)`)
  }

  const rawMount = ann[ANN_MOUNT_PATH]
  const mountPath = rawMount !== undefined ? checkMountPath(rawMount) : config.mountPath

  return Object.freeze({
    mode,
    mountPath,
    secrets: Object.freeze(secrets),
    ...(refresh !== undefined ? { refresh } : {}),
    ...(syncDeadline !== undefined ? { syncDeadline } : {}),
    ...(metricsPort !== undefined ? { metricsPort } : {}),
    onChange: Object.freeze(onChange),
    needsSharedPid: onChange.some((h) => h.startsWith('signal:')),
    containers: containers === null ? null : Object.freeze(containers),
    stores: Object.freeze(stores),
    tokens: Object.freeze([...tokens.values()].sort((a, b) => a.path < b.path ? -1 : 1).map((t) => Object.freeze(t))),
    needsClusterCa,
  })
}
