// The agent-config schema: the single source of validation and of the
// `AgentConfigInput` type. The injector builds this same document from pod
// annotations, so what the injector accepts the agent can run.
import type { FromSchema } from 'json-schema-to-ts'

const duration = { type: 'string', pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)$' } as const
const port = { type: 'integer', minimum: 0, maximum: 65535 } as const
const path = { type: 'string', minLength: 1, maxLength: 4096 } as const

export const onChangeSchema = {
  type: 'string',
  // http:POST <loopback url> | signal:<SIG>:<pid or process name>
  pattern: '^(http:POST https?://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:\\d+)?(/\\S*)?|signal:[A-Z0-9]+:[A-Za-z0-9._-]+)$',
} as const

export const storeSchemas = {
  vault: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'address'],
    properties: {
      type: { const: 'vault' },
      address: { type: 'string', pattern: '^https?://' },
      role: { type: 'string', minLength: 1 },
      authMount: { type: 'string', minLength: 1, default: 'kubernetes' },
      namespace: { type: 'string' },
      caFile: path,
      tlsServerName: { type: 'string' },
      tokenFile: path,
      /** A static Vault token from this env var instead of Kubernetes auth (local development only). */
      tokenEnv: { type: 'string' },
      kvVersion: { enum: [1, 2] },
    },
  },
  aws: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: {
      type: { const: 'aws' },
      region: { type: 'string', minLength: 1 },
      endpoint: { type: 'string', pattern: '^https?://' },
      stsEndpoint: { type: 'string', pattern: '^https?://' },
      roleArn: { type: 'string', pattern: '^arn:' },
      tokenFile: path,
    },
  },
  azure: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: {
      type: { const: 'azure' },
      vaultUrl: { type: 'string', pattern: '^https?://' },
      tenantId: { type: 'string', minLength: 1 },
      clientId: { type: 'string', minLength: 1 },
      tokenFile: path,
      authorityHost: { type: 'string', pattern: '^https?://' },
      caFile: path,
    },
  },
  k8s: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: {
      type: { const: 'k8s' },
      namespace: { type: 'string', minLength: 1 },
      server: { type: 'string', pattern: '^https?://' },
      tokenFile: path,
      caFile: path,
      kubeconfig: path,
    },
  },
  env: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: { type: { const: 'env' } },
  },
  file: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: { type: { const: 'file' }, baseDir: path },
  },
  local: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: {
      type: { const: 'local' },
      path,
      keyEnv: { type: 'string', default: 'SIDEKEY_LOCAL_KEY' },
      /** Allows the built-in development key when no key is set. Never in production. */
      dev: { type: 'boolean', default: false },
    },
  },
} as const

export const secretSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$' },
    ref: { type: 'string', minLength: 1, maxLength: 2048 },
    template: { type: 'string', minLength: 1, maxLength: 65536 },
    format: { enum: ['raw', 'json', 'env', 'yaml'], default: 'raw' },
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
      },
    },
    tokenFile: path,
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
        properties: { type: { enum: ['vault', 'aws', 'azure', 'k8s', 'env', 'file', 'local'] } },
      },
    },
    maxValueBytes: { type: 'integer', minimum: 1, maximum: 16777216, default: 1048576 },
    /** init-only mode: write every secret once, then exit 0 (Jobs). */
    exitAfterSync: { type: 'boolean', default: false },
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
export type StoreType = keyof typeof storeSchemas
export type StoreConfigOf<T extends StoreType> = FromSchema<typeof storeSchemas[T]>
export type StoreConfig = { [T in StoreType]: StoreConfigOf<T> }[StoreType]
