// One descriptor per store type: everything the agent config, the injector
// and the agent need to know about a backend, in one place. The enums, the
// default stores, the per-type schemas, the injector's token projection and
// audiences, the egress ports and the provider loader are all derived from
// STORES; adding a backend is one descriptor here plus its provider module
// agent/providers/<module>.ts exporting create<Module>Provider.
// This file imports no agent/ or injector/ code: the agent loads the module
// by name.
import { homedir } from 'node:os'
import { join } from 'node:path'
import { duration, path } from './config/schema-parts.js'

/** A service-account token the injector projects for a store type. */
export interface TokenProjection {
  /** File name under the token volume (/var/run/secrets/sidekey-token/<fileName>), set as the store's tokenFile. */
  readonly fileName: string
  /** The audience: injector config `audiences.<key>`, default `default`. Absent: the API server's default audience. */
  readonly audience?: { readonly key: string, readonly default: string }
  /** The cluster CA is projected next to the token and set as the store's caFile. */
  readonly clusterCa?: boolean
}

/** The identity `sidekey.dev/role` fills in for a store type. */
export interface RoleField {
  readonly field: string
  /** What the field is, for messages: "a Vault Kubernetes-auth role". */
  readonly what: string
  /** The value must start with this (an ARN); `example` is shown when it does not. */
  readonly prefix?: { readonly value: string, readonly example: string }
}

export interface StoreDescriptor<T extends string = string, S extends object = object> {
  readonly type: T
  /** The JSON schema of one store of this type in the agent (and injector) config. */
  readonly schema: S
  /** Identity fields a pod may override with sidekey.dev/store-<name>; addresses stay with the platform team. */
  readonly podOverridable: readonly string[]
  /** The field sidekey.dev/role sets, when the type logs in with a per-pod identity. */
  readonly role?: RoleField
  /** Fields the store must have once the pod's overrides are applied (the injector refuses the pod otherwise). */
  readonly podRequires?: readonly string[]
  /** The projected service-account token the store logs in with, in an injected pod. */
  readonly token?: TokenProjection
  /** TCP ports the store talks to, for service-mesh exclusions. */
  readonly egressPorts?: (config: Readonly<Record<string, unknown>>) => readonly number[]
  /**
   * The settings of the default store named like the type, when a reference
   * uses it without configuring it. Absent: the store must be configured.
   */
  readonly unconfigured?: () => Readonly<Record<string, unknown>>
  /** The provider module under agent/providers/ (it exports create<Module>Provider). */
  readonly module: string
}

/** The port of a URL setting, or `fallback` when it is unset or not a URL. */
export function urlPort (url: unknown, fallback: number): number {
  if (typeof url !== 'string') return fallback
  try {
    const u = new URL(url)
    return u.port !== '' ? Number(u.port) : u.protocol === 'http:' ? 80 : 443
  } catch {
    return fallback
  }
}

function descriptor<const T extends string, const S extends object> (d: StoreDescriptor<T, S>): StoreDescriptor<T, S> {
  return Object.freeze(d)
}

// docs/backends.md describes each field, the auth flow and the defaults.
const vault = descriptor({
  type: 'vault',
  module: 'vault',
  schema: {
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
  podOverridable: ['role', 'authMount', 'namespace', 'kvVersion'],
  role: { field: 'role', what: 'a Vault Kubernetes-auth role' },
  token: { fileName: 'vault', audience: { key: 'vault', default: 'vault' } },
  egressPorts: (c) => [urlPort(c.address, 8200)],
})

const aws = descriptor({
  type: 'aws',
  module: 'aws',
  schema: {
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
  podOverridable: ['roleArn', 'region'],
  role: { field: 'roleArn', what: 'an IAM role ARN', prefix: { value: 'arn:', example: 'arn:aws:iam::<account>:role/<name>' } },
  token: { fileName: 'aws', audience: { key: 'aws', default: 'sts.amazonaws.com' } },
  egressPorts: (c) => [urlPort(c.endpoint, 443), urlPort(c.stsEndpoint, 443)],
  unconfigured: () => ({}),
})

const azure = descriptor({
  type: 'azure',
  module: 'azure',
  schema: {
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
  podOverridable: ['clientId', 'tenantId'],
  role: { field: 'clientId', what: 'the workload identity client id' },
  // The tenant is the platform's, not the pod's role: the base store or the override must give it.
  podRequires: ['tenantId'],
  token: { fileName: 'azure', audience: { key: 'azure', default: 'api://AzureADTokenExchange' } },
  egressPorts: (c) => [urlPort(c.vaultUrl, 443), urlPort(c.authorityHost, 443)],
})

const k8s = descriptor({
  type: 'k8s',
  module: 'k8s',
  schema: {
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
  podOverridable: [],
  // The API server's own audience; the in-cluster API server is 443 behind its Service.
  token: { fileName: 'k8s', clusterCa: true },
  egressPorts: (c) => [urlPort(c.server, 443)],
  unconfigured: () => ({}),
})

const env = descriptor({
  type: 'env',
  module: 'env',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: { type: { const: 'env' } },
  },
  podOverridable: [],
  unconfigured: () => ({}),
})

const file = descriptor({
  type: 'file',
  module: 'file',
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['type'],
    properties: { type: { const: 'file' }, baseDir: path },
  },
  podOverridable: [],
  unconfigured: () => ({}),
})

const local = descriptor({
  type: 'local',
  module: 'local',
  schema: {
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
  podOverridable: [],
  unconfigured: () => ({ path: process.env.SIDEKEY_LOCAL_STORE ?? join(homedir(), '.config', 'sidekey', 'local.json') }),
})

/** Every store type, in the order they are listed to users. */
export const STORES = Object.freeze([vault, aws, azure, k8s, env, file, local] as const)

type Descriptor = typeof STORES[number]
export type StoreType = Descriptor['type']
export type StoreSchemas = { readonly [D in Descriptor as D['type']]: D['schema'] }

export const STORE_TYPES: readonly StoreType[] = Object.freeze(STORES.map((d) => d.type))
/** Each store type also has a default store of the same name (`vault:...` without configuring `vault`). */
export const DEFAULT_STORES: readonly string[] = STORE_TYPES

const byType: ReadonlyMap<string, StoreDescriptor> = new Map(STORES.map((d) => [d.type, d as StoreDescriptor]))

/** The descriptor of a store type, or undefined for an unknown type. */
export function storeDescriptor (type: unknown): StoreDescriptor | undefined {
  return typeof type === 'string' ? byType.get(type) : undefined
}
