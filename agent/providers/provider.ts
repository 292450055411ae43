// The contract every backend implements: one conditional call. The refresher
// says what it has (`have`); the provider answers "unchanged" or the new data,
// taking its cheapest route (KV v2 metadata before the value, DescribeSecret
// before GetSecretValue, one Key Vault GET compared with `have`, the k8s watch
// cache, a content hash for env/file/local). The model is the Secrets Store CSI
// driver's Mount(attributes, current_object_version). Providers keep no copy of
// a value between calls and never log values or put them in errors.
import type { Logger } from 'pino'
import type { SecretRef } from '../../core/reference.js'
import type { StoreConfig } from '../../core/config/schema.js'

/** A whole secret: bytes (a string or binary secret) or a map (JSON object, KV). */
export type SecretData =
  | { readonly kind: 'bytes', readonly bytes: Buffer }
  | { readonly kind: 'map', readonly map: Readonly<Record<string, string>> }

/**
 * Facts about the secret for the peer-compatible local APIs (an AWS ARN and
 * stages, Vault KV metadata). Names, dates and versions only: never a value.
 */
export type SecretMeta = Readonly<Record<string, unknown>>

/** What the caller holds: the version it has, and when that value stops being valid (leases). */
export interface Have {
  /** Opaque version: KV version, AWS VersionId, Azure version id, resourceVersion, lease id, content hash. */
  readonly version: string
  readonly expiresAt?: number
}

/** A full read: the data, its version, and (leases, certificates) when it stops being valid. */
export interface Snapshot {
  readonly data: SecretData
  readonly version: string
  readonly expiresAt?: number
  readonly meta?: SecretMeta
}

export type SyncResult =
  | { readonly changed: false, readonly expiresAt?: number }
  | ({ readonly changed: true } & Snapshot)

/** Counts backend requests from outside the provider: the agent (or a test) hands one in; each transport reports to it. */
export interface RequestMeter {
  /** One request sent to the backend: `op` is the API call (`GetSecretValue`, `GET secret/metadata/app`). */
  request (op: string): void
}

export interface ProviderContext {
  readonly storeName: string
  readonly logger: Logger
  readonly maxValueBytes: number
  readonly meter?: RequestMeter
}

export interface Provider {
  readonly type: string
  /**
   * Brings the caller up to date: `{changed: false}` when `have` is current
   * (possibly with a later `expiresAt` after a lease renewal), else the new data.
   * Without `have`, always a full read. `signal` aborts the backend call.
   */
  sync (ref: SecretRef, have: Have | undefined, signal?: AbortSignal): Promise<SyncResult>
  /**
   * Push: call `onChange` whenever the secret may have changed (the refresher
   * then syncs). Returns a function that stops watching.
   */
  watch? (ref: SecretRef, onChange: () => void): () => void
  close? (): Promise<void>
}

export type ProviderFactory = (config: StoreConfig, ctx: ProviderContext) => Promise<Provider> | Provider

/** The answer to `sync` for a backend whose cheapest route is a full read: compare versions. */
export function against (have: Have | undefined, read: Snapshot): SyncResult {
  if (have !== undefined && have.version === read.version) return read.expiresAt !== undefined ? { changed: false, expiresAt: read.expiresAt } : { changed: false }
  return { changed: true, ...read }
}

/**
 * When a value with a lifetime is read again: at 2/3 of the time between the
 * read and its expiry (Vault Agent's rule). One rule for every backend and the refresher.
 */
export function renewAt (obtainedAt: number, expiresAt: number): number {
  return obtainedAt + (expiresAt - obtainedAt) * 2 / 3
}
