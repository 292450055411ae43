// The injector's own configuration (the ConfigMap): agent image, defaults,
// the stores pods may use, and the namespace policy. One schema is both the
// validation and the documentation; loading fills defaults and freezes.
import { readFileSync } from 'node:fs'
import { Ajv } from 'ajv'
import { parse as parseYaml } from 'yaml'
import { SidekeyError } from '../core/errors.js'
import { describeAjvError } from '../core/config/load.js'
import { storeSchemas, type StoreConfig, type StoreType } from '../core/config/schema.js'
import { STORES, STORE_TYPES } from '../core/stores.js'
import { parseDuration } from '../core/duration.js'
import { INJECT_MODES, type InjectMode } from './annotations.js'

/** `audiences.<key>` for every store type that logs in with a projected token of its own audience. */
const audienceProperties = Object.fromEntries(STORES.flatMap((d) => d.token?.audience !== undefined ? [[d.token.audience.key, { type: 'string', minLength: 1, default: d.token.audience.default }]] : []))

const quantity = { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi)?$' } as const
const resourceList = { type: 'object', additionalProperties: false, properties: { cpu: quantity, memory: quantity } } as const

export const injectorConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['image'],
  properties: {
    /** The sidekey image the agent container runs (the same image as the injector). */
    image: { type: 'string', minLength: 1 },
    imagePullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'], default: 'IfNotPresent' },
    /** The startupProbe command; it must exit 0 once the agent's /ready answers 200. */
    probeCommand: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, default: ['sidekey', 'get', '--ready'] },
    mountPath: { type: 'string', pattern: '^/[^:]*$', default: '/var/run/secrets/sidekey' },
    tmpfsSizeLimit: { ...quantity, default: '8Mi' },
    /**
     * NODE_OPTIONS of the agent container: a young generation of at most 8 MiB per semi-space (Node's default is 16)
     * keeps a burst of requests from growing the heap further (bench/abuse, Node 24, 4,000 watchers: peak 97.3 MiB;
     * 99.3 with 16) and costs the local GET little CPU (bench/local-endpoint: 0.95x a bare server's requests/s;
     * 0.87x with 4 in the same hour; 2, the default until stop 20, cost 30.0 us a request against 26.9 with 4).
     */
    agentNodeOptions: { type: 'string', default: '--max-semi-space-size=8' },
    /**
     * MALLOC_ARENA_MAX of the agent container (0: unset, glibc's default of 8 per core). glibc gives
     * each of Node's threads that allocates (V8's workers, libuv's pool) an arena of its own; one
     * arena keeps what the threads free in one place (1 Vault secret: steady RSS 60.8 -> 60.0 MiB;
     * 1,000: 78.0 -> 75.8, peak 92.8 -> 91.2).
     */
    agentMallocArenaMax: { type: 'integer', minimum: 0, maximum: 64, default: 1 },
    /** The agent's maxValueBytes; the tmpfs is raised to hold two generations of every secret at this size. */
    maxValueBytes: { type: 'integer', minimum: 1, maximum: 16777216, default: 1048576 },
    resources: {
      type: 'object',
      additionalProperties: false,
      properties: { requests: resourceList, limits: resourceList },
      default: { requests: { cpu: '10m', memory: '48Mi' }, limits: { memory: '128Mi' } },
    },
    refresh: { type: 'string', pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)$', default: '30s' },
    /** Default for sidekey.dev/sync-deadline: how long the first fetch of every required secret may take. */
    syncDeadline: { type: 'string', pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)$', default: '5m' },
    defaultMode: { enum: [...INJECT_MODES], default: 'sidecar' },
    /** The workload check (POST /validate): `warn` answers with admission warnings, `deny` refuses the workload. */
    workloadCheck: { enum: ['warn', 'deny'], default: 'warn' },
    /** false for API servers older than 1.29: `sidecar` then means `legacy`. */
    nativeSidecars: { type: 'boolean', default: true },
    listen: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { http: { type: 'integer', minimum: 1, maximum: 65535, default: 8099 }, grpc: { type: 'integer', minimum: 1, maximum: 65535, default: 8098 } },
    },
    tokenExpirationSeconds: { type: 'integer', minimum: 600, maximum: 86400, default: 600 },
    audiences: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: audienceProperties,
    },
    /** uid/gid the agent runs as when the pod sets no non-root runAsUser. */
    agentUser: { type: 'integer', minimum: 1, default: 65532 },
    stores: {
      type: 'object',
      default: {},
      propertyNames: { pattern: '^[a-z][a-z0-9-]{0,62}$' },
      additionalProperties: { type: 'object', required: ['type'], properties: { type: { enum: STORE_TYPES } } },
    },
    policy: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        rules: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'namespaces', 'allow'],
            properties: {
              name: { type: 'string', minLength: 1 },
              /** Namespace globs (`team-*`, `*`). The first rule that matches the pod's namespace decides. */
              namespaces: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
              /** `<store>:<path glob>`; `*` matches any run of characters, `{namespace}` is the pod's namespace. */
              allow: { type: 'array', items: { type: 'string', pattern: '^([a-z][a-z0-9-]{0,62}|\\*):.+$' } },
              /** Namespaces a `k8s:` reference may read besides the pod's own (`*` for any). */
              k8sNamespaces: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
            },
          },
        },
      },
    },
  },
} as const

export interface PolicyRule {
  readonly name: string
  readonly namespaces: readonly string[]
  readonly allow: readonly string[]
  readonly k8sNamespaces: readonly string[]
}

export interface InjectorConfig {
  readonly image: string
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never'
  readonly probeCommand: readonly string[]
  readonly mountPath: string
  readonly tmpfsSizeLimit: string
  readonly maxValueBytes: number
  readonly agentNodeOptions: string
  readonly agentMallocArenaMax: number
  readonly resources: { readonly requests?: Readonly<Record<string, string>>, readonly limits?: Readonly<Record<string, string>> }
  readonly refresh: string
  readonly syncDeadline: string
  readonly defaultMode: InjectMode
  readonly nativeSidecars: boolean
  readonly workloadCheck: 'warn' | 'deny'
  readonly listen: { readonly http: number, readonly grpc: number }
  readonly tokenExpirationSeconds: number
  /** Token audience per `token.audience.key` of the store descriptors (vault, aws, ...). */
  readonly audiences: Readonly<Record<string, string>>
  readonly agentUser: number
  /** Stores pods may name; `k8s` is always present (the pod's own namespace). */
  readonly stores: Readonly<Record<string, StoreConfig>>
  readonly policy: { readonly rules: readonly PolicyRule[] }
}

const ajv = new Ajv({ allErrors: false, useDefaults: true, strict: true, allowUnionTypes: true })
const validate = ajv.compile(injectorConfigSchema)
const validateStore = Object.fromEntries(Object.entries(storeSchemas).map(([k, s]) => [k, ajv.compile(s)])) as Record<StoreType, ReturnType<typeof ajv.compile>>

function configError (message: string, field: string): SidekeyError {
  return new SidekeyError('SIDEKEY_E_CONFIG', message, { field })
}

function deepFreeze<T> (o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v)
    Object.freeze(o)
  }
  return o
}

export function loadInjectorConfig (input: unknown): InjectorConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw configError('injector config: must be an object with at least "image"', '')
  }
  const doc = structuredClone(input) as Record<string, unknown>
  if (!validate(doc)) throw configError(describeAjvError('injector config', validate.errors?.[0]), validate.errors?.[0]?.instancePath ?? '')
  const stores = doc.stores as Record<string, StoreConfig>
  for (const [name, s] of Object.entries(stores)) {
    const v = validateStore[s.type]
    if (!v(s)) throw configError(describeAjvError(`injector config.stores.${name}`, v.errors?.[0]), `stores.${name}`)
  }
  if (stores.k8s === undefined) stores.k8s = { type: 'k8s' }
  parseDuration(doc.refresh, 'injector config.refresh')
  parseDuration(doc.syncDeadline, 'injector config.syncDeadline')
  const names = new Set<string>()
  for (const [i, r] of (doc.policy as { rules: PolicyRule[] }).rules.entries()) {
    if (names.has(r.name)) throw configError(`injector config.policy.rules[${i}].name: "${r.name}" is used twice; rule names must be unique`, `policy.rules.${i}.name`)
    names.add(r.name)
  }
  return deepFreeze(doc as unknown as InjectorConfig)
}

/** Reads a YAML or JSON file: the config itself, or a ConfigMap whose `data["config.yaml"]` (or the only key) holds it. */
export function loadInjectorConfigFile (file: string): InjectorConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new SidekeyError('SIDEKEY_E_CONFIG_FILE', `cannot read injector config ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}; pass an existing file to --config`, { file })
  }
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch {
    throw new SidekeyError('SIDEKEY_E_CONFIG_FILE', `injector config ${file} is not valid YAML or JSON; fix the syntax`, { file })
  }
  const cm = doc as { kind?: unknown, data?: Record<string, unknown> } | null
  if (cm !== null && typeof cm === 'object' && cm.kind === 'ConfigMap') {
    const data = cm.data ?? {}
    const inner = data['config.yaml'] ?? (Object.keys(data).length === 1 ? Object.values(data)[0] : undefined)
    if (typeof inner !== 'string') throw new SidekeyError('SIDEKEY_E_CONFIG_FILE', `ConfigMap in ${file} has no data["config.yaml"]; put the injector config under that key`, { file })
    try {
      doc = parseYaml(inner)
    } catch {
      throw new SidekeyError('SIDEKEY_E_CONFIG_FILE', `data["config.yaml"] in ${file} is not valid YAML; fix the syntax`, { file })
    }
  }
  return loadInjectorConfig(doc)
}
