// What the agent currently serves: one entry per configured secret, the bytes
// exactly as on disk. The HTTP and gRPC servers read it; the refresher fills
// it after each atomic write and announces the change.
import { EventEmitter } from 'node:events'
import type { SecretSpec } from '../core/config/load.js'
import type { SidekeyError } from '../core/errors.js'
import type { SecretMeta } from './providers/provider.js'

export interface SecretEntry {
  readonly name: string
  readonly value: Buffer
  readonly version: string
  /** When this value was first written (ms). */
  readonly updatedAt: number
  /** Where the value came from: the backend, or the set a previous run left on disk. */
  readonly origin: 'backend' | 'disk'
  /** The provider's facts about a single-reference secret (see FetchResult.meta); never a value. */
  readonly meta?: SecretMeta
}

export interface SecretStatus {
  readonly name: string
  readonly refs: readonly string[]
  readonly format: string
  readonly required: boolean
  readonly version?: string
  readonly updatedAt?: string
  readonly fetchedAt?: string
  readonly origin?: 'backend' | 'disk'
  readonly error?: { readonly code: string, readonly message: string }
}

export class SecretStore extends EventEmitter<{ change: [SecretEntry], ready: [] }> {
  readonly specs: ReadonlyMap<string, SecretSpec>
  readonly #entries = new Map<string, SecretEntry>()
  readonly #fetchedAt = new Map<string, number>()
  /** Backend errors: cleared by the next successful fetch. */
  readonly #errors = new Map<string, SidekeyError>()
  /** Render or write errors: cleared only when the secret renders and is written again. */
  readonly #renderErrors = new Map<string, SidekeyError>()
  /** Consecutive failed fetches per secret since the last success. */
  readonly #streak = new Map<string, number>()
  #ready = false
  /** The last write of the files failed: not ready until a write succeeds. */
  #writeError: SidekeyError | undefined

  constructor (specs: readonly SecretSpec[]) {
    super()
    this.setMaxListeners(0)
    this.specs = new Map(specs.map((s) => [s.name, s]))
  }

  get (name: string): SecretEntry | undefined { return this.#entries.get(name) }
  entries (): IterableIterator<SecretEntry> { return this.#entries.values() }
  /** Every required secret was written once, and the last write of the files did not fail. */
  get ready (): boolean { return this.#ready && this.#writeError === undefined }
  get writeError (): SidekeyError | undefined { return this.#writeError }
  setWriteError (err: SidekeyError | undefined): void { this.#writeError = err }

  missingRequired (): string[] {
    return [...this.specs.values()].filter((s) => s.required && !this.#entries.has(s.name)).map((s) => s.name)
  }

  /** Required secrets not yet written, each with the last error that kept it back (if any). */
  missingReasons (): Array<{ name: string, error?: { code: string, message: string } }> {
    return this.missingRequired().map((name) => {
      const err = this.#errors.get(name) ?? this.#renderErrors.get(name)
      return err !== undefined ? { name, error: { code: err.code, message: err.message } } : { name }
    })
  }

  /** Records entries just written; emits change for each, and ready once complete. */
  apply (entries: readonly SecretEntry[]): void {
    for (const e of entries) this.#entries.set(e.name, e)
    for (const e of entries) this.emit('change', e)
    this.checkReady()
  }

  /** Ready once every required secret has been written (also when none is required). */
  checkReady (): void {
    if (!this.#ready && this.missingRequired().length === 0) {
      this.#ready = true
      this.emit('ready')
    }
  }

  /** Replaces an entry's version without a content change (no event: the bytes are the same). */
  restamp (name: string, version: string, origin: 'backend', meta?: SecretMeta): void {
    const e = this.#entries.get(name)
    if (e !== undefined) this.#entries.set(name, { ...e, version, origin, ...(meta !== undefined ? { meta } : {}) })
  }

  markFetched (name: string, at: number): void {
    this.#fetchedAt.set(name, at)
    this.#errors.delete(name)
    this.#streak.delete(name)
  }

  markError (name: string, err: SidekeyError): void {
    this.#errors.set(name, err)
    this.#streak.set(name, (this.#streak.get(name) ?? 0) + 1)
  }

  /** The error keeping a secret back and how many fetches in a row failed (0 for a render/write error). */
  lastError (name: string): { error: SidekeyError, attempts: number } | undefined {
    const r = this.#renderErrors.get(name)
    if (r !== undefined) return { error: r, attempts: 0 }
    const e = this.#errors.get(name)
    return e !== undefined ? { error: e, attempts: this.#streak.get(name) ?? 0 } : undefined
  }
  markRenderError (name: string, err: SidekeyError): void { this.#renderErrors.set(name, err) }
  clearRenderError (name: string): void { this.#renderErrors.delete(name) }

  fetchedAt (): IterableIterator<[string, number]> { return this.#fetchedAt.entries() }

  status (): SecretStatus[] {
    return [...this.specs.values()].map((s) => {
      const e = this.#entries.get(s.name)
      const f = this.#fetchedAt.get(s.name)
      const err = this.#errors.get(s.name) ?? this.#renderErrors.get(s.name)
      return {
        name: s.name,
        refs: s.refs.map((r) => r.raw),
        format: s.format,
        required: s.required,
        ...(e !== undefined ? { version: e.version, updatedAt: new Date(e.updatedAt).toISOString(), origin: e.origin } : {}),
        ...(f !== undefined ? { fetchedAt: new Date(f).toISOString() } : {}),
        ...(err !== undefined ? { error: { code: err.code, message: err.message } } : {}),
      }
    })
  }

  /**
   * Resolves with the entry once its version differs from `notVersion`
   * (or it exists at all), or with the current entry after `ms`.
   */
  async waitForChange (name: string, notVersion: string | undefined, ms: number, signal?: AbortSignal): Promise<SecretEntry | undefined> {
    const cur = this.#entries.get(name)
    if (cur !== undefined && cur.version !== notVersion) return cur
    return await new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.off('change', onChange)
        signal?.removeEventListener('abort', done)
        resolve(this.#entries.get(name))
      }
      const onChange = (e: SecretEntry): void => {
        if (e.name === name && e.version !== notVersion) done()
      }
      const timer = setTimeout(done, ms)
      this.on('change', onChange)
      signal?.addEventListener('abort', done, { once: true })
    })
  }
}
