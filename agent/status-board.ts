// How each secret is doing, beside what is served: when it was last fetched,
// the error keeping it back, whether the last write failed, and readiness.
// The refresher writes it; /v1/status, /ready, gRPC Status, the init-only wait
// and the secret-age metric read it. It never holds a value.
import { EventEmitter } from 'node:events'
import type { SidekeyError } from '../core/errors.js'
import type { ServedSet } from './served.js'
import { isoTime } from '../core/utc-dates.js'

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

/** Events: `ready` once; `update` whenever readiness or an error changes (the init-only wait listens). */
export class StatusBoard extends EventEmitter<{ ready: [], update: [] }> {
  readonly #served: ServedSet
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

  constructor (served: ServedSet) {
    super()
    this.setMaxListeners(0)
    this.#served = served
    served.on('published', () => this.checkReady())
  }

  /** Every required secret was published once, and the last write of the files did not fail. */
  get ready (): boolean { return this.#ready && this.#writeError === undefined }
  get writeError (): SidekeyError | undefined { return this.#writeError }
  setWriteError (err: SidekeyError | undefined): void {
    if (err === this.#writeError) return
    this.#writeError = err
    this.emit('update')
  }

  missingRequired (): string[] {
    return [...this.#served.specs.values()].filter((s) => s.required && this.#served.get(s.name) === undefined).map((s) => s.name)
  }

  /** Required secrets not yet published, each with the last error that kept it back (if any). */
  missingReasons (): Array<{ name: string, error?: { code: string, message: string } }> {
    return this.missingRequired().map((name) => {
      const err = this.#errors.get(name) ?? this.#renderErrors.get(name)
      return err !== undefined ? { name, error: { code: err.code, message: err.message } } : { name }
    })
  }

  /** Ready once every required secret has been published (also when none is required); latched. */
  checkReady (): void {
    if (!this.#ready && this.missingRequired().length === 0) {
      this.#ready = true
      this.emit('ready')
      this.emit('update')
    }
  }

  markFetched (name: string, at: number): void {
    this.#fetchedAt.set(name, at)
    this.#errors.delete(name)
    this.#streak.delete(name)
  }

  markError (name: string, err: SidekeyError): void {
    this.#errors.set(name, err)
    this.#streak.set(name, (this.#streak.get(name) ?? 0) + 1)
    this.emit('update')
  }

  /** The error keeping a secret back and how many fetches in a row failed (0 for a render/write error). */
  lastError (name: string): { error: SidekeyError, attempts: number } | undefined {
    const r = this.#renderErrors.get(name)
    if (r !== undefined) return { error: r, attempts: 0 }
    const e = this.#errors.get(name)
    return e !== undefined ? { error: e, attempts: this.#streak.get(name) ?? 0 } : undefined
  }

  markRenderError (name: string, err: SidekeyError): void {
    this.#renderErrors.set(name, err)
    this.emit('update')
  }

  clearRenderError (name: string): void { this.#renderErrors.delete(name) }

  fetchedAt (): IterableIterator<[string, number]> { return this.#fetchedAt.entries() }

  status (): SecretStatus[] {
    return [...this.#served.specs.values()].map((s) => {
      const e = this.#served.get(s.name)
      const f = this.#fetchedAt.get(s.name)
      const err = this.#errors.get(s.name) ?? this.#renderErrors.get(s.name)
      return {
        name: s.name,
        refs: s.refs.map((r) => r.raw),
        format: s.format,
        required: s.required,
        ...(e !== undefined ? { version: e.version, updatedAt: isoTime(e.updatedAt), origin: e.origin } : {}),
        ...(f !== undefined ? { fetchedAt: isoTime(f) } : {}),
        ...(err !== undefined ? { error: { code: err.code, message: err.message } } : {}),
      }
    })
  }
}
