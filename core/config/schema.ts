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
  // a pid is never 0 or negative: kill(0) would signal the agent's own group
  pattern: '^(http:POST https?://(127\\.0\\.0\\.1|localhost|\\[::1\\])(:\\d+)?(/\\S*)?|signal:[A-Z0-9]+:([1-9][0-9]*|[A-Za-z._-][A-Za-z0-9._-]*))$',
} as const

export const storeSchemas = {
  // The four cluster backends; docs/backends.md describes each field, the auth flow and the defaults.
  vault: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'address'],
    properties: {
      type: { const: 'vault' },
      address: { type: 'string', pattern: '^https?://', description: 'Vault/OpenBao base URL, e.g. https://vault.vault.svc:8200.' },
      role: { type: 'string', minLength: 1, description: 'Kubernetes-auth role to log in as (required unless tokenEnv is set).' },
      authMount: { type: 'string', minLength: 1, default: 'kubernetes', description: 'Mount path of the Kubernetes auth method (auth/<authMount>/login).' },
      namespace: { type: 'string', description: 'Vault Enterprise / OpenBao namespace, sent as X-Vault-Namespace.' },
      caFile: { ...path, description: 'PEM bundle trusted for the Vault TLS certificate (replaces the system CAs).' },
      tlsServerName: { type: 'string', description: 'TLS server name (SNI and certificate check) when it differs from the address host.' },
      tokenFile: { ...path, description: 'Projected service-account token (audience "vault"); re-read at every login. Default: the pod\'s standard service-account token.' },
      tokenEnv: { type: 'string', description: 'Local development only: a static Vault token from this environment variable instead of Kubernetes auth.' },
      kvVersion: { enum: [1, 2], description: 'Default: detect KV v2 by the "data" segment after the mount (secret/data/app). 2: also accept secret/app. 1: never treat a path as KV v2.' },
      timeout: { ...duration, description: 'Per-request timeout, default 10s.' },
    },
  },
  aws: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: {
      type: { const: 'aws' },
      region: { type: 'string', minLength: 1, description: 'AWS region; default AWS_REGION / AWS_DEFAULT_REGION, else the region of an ARN reference.' },
      endpoint: { type: 'string', pattern: '^https?://', description: 'Secrets Manager endpoint override (VPC endpoint, test server).' },
      stsEndpoint: { type: 'string', pattern: '^https?://', description: 'STS endpoint override for AssumeRoleWithWebIdentity.' },
      roleArn: { type: 'string', pattern: '^arn:', description: 'Role to assume with web identity (IRSA); default AWS_ROLE_ARN. Without a role and token file the SDK default credential chain is used.' },
      tokenFile: { ...path, description: 'Projected service-account token (audience "sts.amazonaws.com"); default AWS_WEB_IDENTITY_TOKEN_FILE. Re-read whenever credentials are refreshed.' },
      roleSessionName: { type: 'string', pattern: '^[\\w+=,.@-]{2,64}$', description: 'STS session name, default "sidekey-<hostname>".' },
      timeout: { ...duration, description: 'Per-request timeout, default 10s.' },
    },
  },
  azure: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: {
      type: { const: 'azure' },
      vaultUrl: { type: 'string', pattern: '^https?://', description: 'Key Vault URL for references without a vault name (azure:<secret>); references azure:<vault>/<secret> use https://<vault>.<vaultDomain>.' },
      vaultDomain: { type: 'string', minLength: 1, description: 'DNS suffix for vault names, default vault.azure.net (sovereign clouds: vault.azure.cn, vault.usgovcloudapi.net).' },
      tenantId: { type: 'string', minLength: 1, description: 'Entra tenant; default AZURE_TENANT_ID.' },
      clientId: { type: 'string', minLength: 1, description: 'Client id of the federated identity; default AZURE_CLIENT_ID.' },
      tokenFile: { ...path, description: 'Projected service-account token (audience "api://AzureADTokenExchange"); default AZURE_FEDERATED_TOKEN_FILE.' },
      authorityHost: { type: 'string', pattern: '^https?://', description: 'Entra authority host; default AZURE_AUTHORITY_HOST or https://login.microsoftonline.com.' },
      caFile: { ...path, description: 'PEM bundle trusted for Key Vault and the authority host (replaces the system CAs).' },
      disableChallengeResourceVerification: { type: 'boolean', description: 'Default false. Accept a Key Vault whose auth challenge names another resource than its host (private endpoints, emulators).' },
      timeout: { ...duration, description: 'Per-request timeout, default 10s.' },
    },
  },
  k8s: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: {
      type: { const: 'k8s' },
      namespace: { type: 'string', minLength: 1, description: 'Namespace of k8s:<name> references; default the pod\'s own (from the service-account mount, else POD_NAMESPACE).' },
      server: { type: 'string', pattern: '^https?://', description: 'API server URL; default in-cluster (KUBERNETES_SERVICE_HOST/PORT).' },
      tokenFile: { ...path, description: 'Service-account token; default the in-cluster token. Re-read when it changes.' },
      caFile: { ...path, description: 'API server CA; default the in-cluster CA.' },
      kubeconfig: { ...path, description: 'A kubeconfig file instead of in-cluster settings (local development).' },
      watch: { type: 'boolean', description: 'Default true: watch each Secret so a change is pushed within a second (false: poll only).' },
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
export type StoreType = keyof typeof storeSchemas
export type StoreConfigOf<T extends StoreType> = FromSchema<typeof storeSchemas[T]>
export type StoreConfig = { [T in StoreType]: StoreConfigOf<T> }[StoreType]
