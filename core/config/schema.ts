// The agent-config schema: the single source of validation and of the
// `AgentConfigInput` type. The injector builds this same document from pod
// annotations, so what the injector accepts the agent can run.
import type { FromSchema } from 'json-schema-to-ts'
import { STORES, STORE_TYPES, type StoreSchemas, type StoreType } from '../stores.js'
import { duration, path, port } from './schema-parts.js'

export type { StoreType }

export const onChangeSchema = {
  type: 'string',
  // http:POST <loopback url> | signal:<SIG>:<pid or process name>
  // a pid is never 0 or negative: kill(0) would signal the agent's own group
  pattern: '^(http:POST https?://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:\\d+)?(/\\S*)?|signal:[A-Z0-9]+:([1-9][0-9]*|[A-Za-z._-][A-Za-z0-9._-]*))$',
} as const

/** The schema of each store type's config, from its descriptor in core/stores.ts. */
export const storeSchemas = Object.freeze(Object.fromEntries(STORES.map((d) => [d.type, d.schema]))) as StoreSchemas

/** How a whole secret is rendered into its file (`format` of a secret, sidekey.dev/format-<name>). */
export const SECRET_FORMATS = ['raw', 'json', 'env', 'yaml'] as const
export type SecretFormat = typeof SECRET_FORMATS[number]

export const secretSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$' },
    ref: { type: 'string', minLength: 1, maxLength: 2048 },
    template: { type: 'string', minLength: 1, maxLength: 65536 },
    format: { enum: SECRET_FORMATS, default: 'raw' },
    mode: { type: 'string', pattern: '^0?[0-7]{3}$' },
    required: { type: 'boolean', default: true },
    refresh: duration,
  },
  oneOf: [{ required: ['ref'] }, { required: ['template'] }],
} as const

export const agentConfigSchema = {
  $id: 'https://sidekey.dev/schema/agent-config.json',
  type: 'object',
  additionalProperties: false,
  required: ['secrets', 'dir'],
  properties: {
    secrets: { type: 'array', items: secretSchema, maxItems: 10000 },
    dir: path,
    listen: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        http: { ...port, default: 8099 },
        grpc: { ...port, default: 8098 },
        /** Disables the gRPC server (`false`). */
        grpcEnabled: { type: 'boolean', default: true },
        /** Opt-in: serve GET /metrics (only) on this port of every interface (the pod IP), without a token, for Prometheus. */
        metrics: { type: 'integer', minimum: 1, maximum: 65535 },
      },
    },
    /** Caps on the local endpoint (README, "Local API limits"). */
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        connections: { type: 'integer', minimum: 1, maximum: 65536, default: 512 },
        watchers: { type: 'integer', minimum: 0, maximum: 65536, default: 128 },
        waiters: { type: 'integer', minimum: 0, maximum: 65536, default: 256 },
        headersTimeout: { ...duration, default: '5s' },
        grpcMaxMessageBytes: { type: 'integer', minimum: 1024, maximum: 4194304, default: 16384 },
        grpcMaxConcurrentStreams: { type: 'integer', minimum: 1, maximum: 1024, default: 32 },
      },
    },
    /** The local API's access token (X-Sidekey-Token); created when missing. Default: <dir>/../sidekey-token. */
    apiTokenFile: { ...path, description: 'File holding the token every request to the local HTTP/gRPC API must carry; created with a random token when missing.' },
    /** Deprecated name of apiTokenFile (inside a store, tokenFile is a service-account token). */
    tokenFile: { ...path, deprecated: true, description: 'Deprecated: use apiTokenFile.' },
    refresh: { ...duration, default: '30s' },
    jitter: { type: 'number', minimum: 0, maximum: 1, default: 0.1 },
    backoff: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        initial: { ...duration, default: '1s' },
        max: { ...duration, default: '5m' },
      },
    },
    onChange: { type: 'array', items: onChangeSchema, maxItems: 16 },
    stores: {
      type: 'object',
      default: {},
      propertyNames: { pattern: '^[a-z][a-z0-9-]{0,62}$' },
      additionalProperties: {
        type: 'object',
        required: ['type'],
        properties: { type: { enum: STORE_TYPES } },
      },
    },
    maxValueBytes: { type: 'integer', minimum: 1, maximum: 16777216, default: 1048576 },
    /** init-only mode: write every secret once, then exit 0 (Jobs). */
    exitAfterSync: { type: 'boolean', default: false },
    /** Local runs: remove the written secret files when the agent stops (Ctrl-C), so no plaintext stays on disk. */
    removeOnExit: { type: 'boolean', default: false },
    /** With exitAfterSync: give up (exit 1, reason in the termination message) when the secrets are not all fetched within this. */
    syncDeadline: { ...duration, default: '5m' },
    logLevel: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info' },
    /** Owner applied to written files (the pod's runAsUser / fsGroup); numeric ids. */
    fileOwner: {
      type: 'object',
      additionalProperties: false,
      properties: { uid: { type: 'integer', minimum: 0 }, gid: { type: 'integer', minimum: 0 } },
    },
  },
} as const

export type AgentConfigInput = FromSchema<typeof agentConfigSchema>
export type SecretInput = FromSchema<typeof secretSchema>
export type StoreConfigOf<T extends StoreType> = FromSchema<typeof storeSchemas[T]>
export type StoreConfig = { [T in StoreType]: StoreConfigOf<T> }[StoreType]
