// The contract every backend implements. A provider turns a reference into
// data plus a version; the refresher decides when to ask, the writer what to
// write. Providers never log values and never put them in errors.
import type { Logger } from 'pino'
import type { SecretRef } from '../../core/reference.js'
import type { StoreConfig } from '../../core/config/schema.js'

/** A whole secret: bytes (a string or binary secret) or a map (JSON object, KV). */
export type SecretData =
  | { readonly kind: 'bytes', readonly bytes: Buffer }
  | { readonly kind: 'map', readonly map: Readonly<Record<string, string>> }

export interface FetchResult {
  readonly data: SecretData
  /** Opaque version: KV version, AWS VersionId, Azure version id, resourceVersion, content hash. */
  readonly version: string
  /**
   * For leased secrets (dynamic credentials, PKI): when the value stops being
   * valid. The refresher fetches again at about 2/3 of the remaining time.
   */
  readonly expiresAt?: number
  /**
   * Facts about the secret for the peer-compatible local APIs (an AWS ARN and
   * stages, Vault KV metadata). Names, dates and versions only: never a value.
   */
  readonly meta?: SecretMeta
}

export type SecretMeta = Readonly<Record<string, unknown>>

export interface ProviderContext {
  readonly storeName: string
  readonly logger: Logger
  readonly maxValueBytes: number
}

export interface Provider {
  readonly type: string
  /** Fetch the whole secret the reference points at (the refresher applies `#key`). */
  fetch (ref: SecretRef, signal?: AbortSignal): Promise<FetchResult>
  /**
   * A cheap "which version is current" check (metadata only, no value).
   * When it returns the version the refresher already has, no fetch happens.
   * Omit it when the backend has no cheaper call than fetch.
   */
  currentVersion? (ref: SecretRef, signal?: AbortSignal): Promise<string>
  /**
   * Push: call `onChange` whenever the secret may have changed (the refresher
   * then re-checks). Returns a function that stops watching.
   */
  watch? (ref: SecretRef, onChange: () => void): () => void
  close? (): Promise<void>
}

export type ProviderFactory = (config: StoreConfig, ctx: ProviderContext) => Promise<Provider> | Provider
