// Validates an agent config against the schema, fills defaults, parses
// references, templates and durations, and returns one frozen AgentConfig.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ErrorObject } from 'ajv'
import * as validators from './validators.gen.js'
import { SidekeyError, isSidekeyError } from '../errors.js'
import { parseRef, type SecretRef } from '../reference.js'
import { DEFAULT_STORES, STORE_TYPES, storeDescriptor } from '../stores.js'
import { parseDuration } from '../duration.js'
import { modeProblem } from '../file-mode.js'
import { parseTemplate, type ParsedTemplate } from '../template.js'
import type { LocalLimits } from '../limits.js'
import { storeSchemas, type AgentConfigInput, type SecretFormat, type StoreConfig, type StoreType } from './schema.js'

export interface SecretSpec {
  readonly name: string
  readonly ref?: SecretRef
  readonly template?: ParsedTemplate
  /** Every reference the secret needs: its own, or those of its template. */
  readonly refs: readonly SecretRef[]
  readonly format: SecretFormat
  readonly mode: number
  readonly required: boolean
  readonly refreshMs: number
}

export type OnChangeSpec =
  | { readonly kind: 'http', readonly url: string, readonly raw: string }
  | { readonly kind: 'signal', readonly signal: NodeJS.Signals, readonly target: string, readonly raw: string }

export interface AgentConfig {
  readonly secrets: readonly SecretSpec[]
  readonly dir: string
  readonly listen: { readonly host: '127.0.0.1', readonly http: number, readonly grpc: number, readonly grpcEnabled: boolean, readonly metrics?: number }
  readonly limits: LocalLimits
  /** The local API's access token file (config `apiTokenFile`). */
  readonly apiTokenFile: string
  readonly refreshMs: number
  readonly jitter: number
  readonly backoff: { readonly initialMs: number, readonly maxMs: number }
  readonly onChange: readonly OnChangeSpec[]
  readonly stores: Readonly<Record<string, StoreConfig>>
  readonly maxValueBytes: number
  readonly exitAfterSync: boolean
  readonly syncDeadlineMs: number
  readonly removeOnExit: boolean
  readonly logLevel: string
  readonly fileOwner?: { readonly uid?: number, readonly gid?: number }
  /** Deprecated fields the config used, with their replacement; the agent logs each once at start. */
  readonly deprecations: readonly ConfigDeprecation[]
}

export interface ConfigDeprecation {
  readonly field: string
  readonly use: string
  readonly message: string
}

/** Top-level fields renamed: old name -> new name. Both are accepted; setting both is an error. */
const RENAMED: ReadonlyArray<readonly [string, string]> = [
  ['tokenFile', 'apiTokenFile'],
]

// Compiled ahead of time from schema.ts by scripts/validators.mjs (`npm run
// check` fails when they drift): no Ajv load, no schema compile at start.
interface Validator { (data: unknown): boolean, errors?: ErrorObject[] | null }
const validateTop = validators.validateAgentConfig as Validator
const validateStore = Object.fromEntries(Object.keys(storeSchemas).map((k) => [k, (validators as unknown as Record<string, Validator>)[`validateStore_${k}`] as Validator])) as Record<StoreType, Validator>

export function describeAjvError (prefix: string, e: ErrorObject | undefined): string {
  if (e === undefined) return `${prefix}: is invalid`
  const where = `${prefix}${e.instancePath.replace(/\//g, '.').replace(/\.(\d+)(?=\.|$)/g, '[$1]')}`
  const p = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'additionalProperties': return `${where}: unknown field "${String(p.additionalProperty)}"; remove it or check its spelling`
    case 'required': return `${where}: missing required field "${String(p.missingProperty)}"`
    case 'enum': return `${where}: must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
    case 'const': return `${where}: must be ${JSON.stringify(p.allowedValue)}`
    case 'oneOf': return `${where}: set exactly one of "ref" or "template"`
    case 'pattern': return `${where}: ${e.message ?? 'does not match'}`
    default: return `${where}: ${e.message ?? 'is invalid'}`
  }
}

function configError (message: string, field: string, cause?: unknown): SidekeyError {
  return new SidekeyError('SIDEKEY_E_CONFIG', message, { field }, cause === undefined ? undefined : { cause })
}

/** Validates one store object (filling its defaults) against the schema of its type. */
export function validateStoreConfig (name: string, raw: unknown): StoreConfig {
  const s = structuredClone(raw) as { type?: unknown }
  const v = validateStore[s?.type as StoreType]
  if (v === undefined) throw configError(`config.stores.${name}.type: must be one of ${STORE_TYPES.join(', ')}`, `stores.${name}.type`)
  if (!v(s)) throw configError(describeAjvError(`config.stores.${name}`, v.errors?.[0]), `stores.${name}`)
  return s as StoreConfig
}

/** The config of a default store used without being configured, or null when it needs settings. */
function defaultStore (name: string): StoreConfig | null {
  const unconfigured = storeDescriptor(name)?.unconfigured
  return unconfigured === undefined ? null : validateStoreConfig(name, { type: name, ...unconfigured() })
}

export function parseOnChange (raw: string): OnChangeSpec {
  if (raw.startsWith('http:POST ')) return { kind: 'http', url: raw.slice('http:POST '.length), raw }
  const [, sig, target] = raw.split(':') as [string, string, string]
  const signal = (sig.startsWith('SIG') ? sig : `SIG${sig}`) as NodeJS.Signals
  return { kind: 'signal', signal, target, raw }
}

export function loadConfig (input: unknown): AgentConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw configError('config: must be a JSON object with at least "secrets" and "dir"', '')
  }
  const doc = structuredClone(input) as AgentConfigInput
  if (!validateTop(doc)) throw configError(describeAjvError('config', validateTop.errors?.[0]), validateTop.errors?.[0]?.instancePath ?? '')
  const d = doc as Required<AgentConfigInput> & { listen: { http: number, grpc: number, grpcEnabled: boolean, metrics?: number }, backoff: { initial: string, max: string }, limits: { connections: number, watchers: number, waiters: number, headersTimeout: string, grpcMaxMessageBytes: number, grpcMaxConcurrentStreams: number } }

  const deprecations: ConfigDeprecation[] = []
  const top = doc as Record<string, unknown>
  for (const [was, now] of RENAMED) {
    if (top[was] === undefined) continue
    if (top[now] !== undefined) throw configError(`config.${was}: "${was}" is the old name of "${now}" and both are set; keep only "${now}"`, was)
    top[now] = top[was]
    delete top[was]
    deprecations.push(Object.freeze({ field: was, use: now, message: `config.${was} is deprecated: rename it to "${now}" (inside a store, tokenFile is the service-account token)` }))
  }

  const stores: Record<string, StoreConfig> = {}
  for (const [name, s] of Object.entries(d.stores ?? {})) stores[name] = validateStoreConfig(name, s)

  const seen = new Set<string>()
  const secrets = d.secrets.map((s, i): SecretSpec => {
    const field = `config.secrets[${i}]`
    if (seen.has(s.name)) throw configError(`${field}.name: "${s.name}" is used twice; secret names must be unique`, `secrets.${i}.name`)
    seen.add(s.name)
    let ref: SecretRef | undefined
    let template: ParsedTemplate | undefined
    try {
      if (s.ref !== undefined) ref = parseRef(s.ref)
      if (s.template !== undefined) template = parseTemplate(s.template, `${field}.template`)
    } catch (err) {
      if (isSidekeyError(err)) throw new SidekeyError(err.code, `${field}: ${err.message}`, { ...err.details, field: `secrets.${i}` })
      throw err
    }
    const refs = ref !== undefined ? [ref] : [...(template?.refs ?? [])]
    for (const r of refs) {
      if (stores[r.store] !== undefined) continue
      const def = DEFAULT_STORES.includes(r.store) ? defaultStore(r.store) : null
      if (def === null) {
        throw new SidekeyError('SIDEKEY_E_REF_STORE', `${field}: reference ${r.raw} uses store "${r.store}", which is not configured; add it under "stores" (known: ${[...Object.keys(stores), ...DEFAULT_STORES].join(', ')})`, { ref: r.raw, field: `secrets.${i}` })
      }
      stores[r.store] = def
    }
    const defaultMode = d.fileOwner?.gid !== undefined ? 0o440 : 0o444
    const badMode = s.mode !== undefined ? modeProblem(s.mode) : undefined
    if (badMode !== undefined) throw configError(`${field}.mode: "${s.mode ?? ''}" ${badMode}`, `secrets.${i}.mode`)
    return Object.freeze({
      name: s.name,
      ...(ref !== undefined ? { ref } : {}),
      ...(template !== undefined ? { template } : {}),
      refs: Object.freeze(refs),
      format: s.format ?? 'raw',
      mode: s.mode !== undefined ? parseInt(s.mode, 8) : defaultMode,
      required: s.required ?? true,
      refreshMs: parseDuration(s.refresh ?? d.refresh, `${field}.refresh`),
    })
  })

  const cfg: AgentConfig = {
    secrets: Object.freeze(secrets),
    dir: d.dir,
    listen: Object.freeze({ host: '127.0.0.1', http: d.listen.http, grpc: d.listen.grpc, grpcEnabled: d.listen.grpcEnabled, ...(d.listen.metrics !== undefined ? { metrics: d.listen.metrics } : {}) }),
    limits: Object.freeze({
      connections: d.limits.connections,
      watchers: d.limits.watchers,
      waiters: d.limits.waiters,
      headersTimeoutMs: parseDuration(d.limits.headersTimeout, 'config.limits.headersTimeout'),
      grpcMaxMessageBytes: d.limits.grpcMaxMessageBytes,
      grpcMaxConcurrentStreams: d.limits.grpcMaxConcurrentStreams,
    }),
    apiTokenFile: d.apiTokenFile ?? join(d.dir, '..', 'sidekey-token'),
    refreshMs: parseDuration(d.refresh, 'config.refresh'),
    jitter: d.jitter,
    backoff: Object.freeze({ initialMs: parseDuration(d.backoff.initial, 'config.backoff.initial'), maxMs: parseDuration(d.backoff.max, 'config.backoff.max') }),
    onChange: Object.freeze((d.onChange ?? []).map(parseOnChange)),
    stores: Object.freeze(stores),
    maxValueBytes: d.maxValueBytes,
    exitAfterSync: d.exitAfterSync,
    removeOnExit: d.removeOnExit,
    syncDeadlineMs: parseDuration(d.syncDeadline, 'config.syncDeadline'),
    logLevel: d.logLevel,
    ...(d.fileOwner !== undefined ? { fileOwner: Object.freeze({ ...d.fileOwner }) } : {}),
    deprecations: Object.freeze(deprecations),
  }
  return Object.freeze(cfg)
}

export function loadConfigFile (file: string): AgentConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new SidekeyError('SIDEKEY_E_CONFIG_FILE', `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}; pass an existing file to --config`, { file }, { cause: err })
  }
  return loadConfig(parseJson(text, file))
}

export function parseJson (text: string, where: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    // JSON.parse messages can quote input; say only where it broke.
    const pos = /position (\d+)/.exec((err as Error).message)?.[1]
    throw new SidekeyError('SIDEKEY_E_CONFIG_FILE', `${where} is not valid JSON${pos !== undefined ? ` (at character ${pos})` : ''}; fix the syntax`, { file: where })
  }
}
