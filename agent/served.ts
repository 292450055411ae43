// What the agent serves: one published generation, the same set the writer
// just put on disk. The HTTP and gRPC servers, the compatible APIs and the
// onChange notifier read it; only a publish replaces it (see publisher.ts).
import { EventEmitter } from 'node:events'
import type { SecretSpec } from '../core/config/load.js'
import type { SecretMeta } from './providers/provider.js'

/** One secret as served and as on disk: the rendered bytes of a configured secret. */
export interface ServedSecret {
  readonly name: string
  readonly value: Buffer
  readonly version: string
  /** When these bytes were first written (ms). */
  readonly updatedAt: number
  /** Where the value came from: the backend, or the set a previous run left on disk. */
  readonly origin: 'backend' | 'disk'
  /** The provider's facts about a single-reference secret (see Snapshot.meta); never a value. */
  readonly meta?: SecretMeta
}

/** An immutable set of secrets, numbered: generation 0 is what a previous run left on disk. */
export interface Generation {
  readonly seq: number
  readonly secrets: ReadonlyMap<string, ServedSecret>
}

export const EMPTY_GENERATION: Generation = Object.freeze({ seq: -1, secrets: new Map<string, ServedSecret>() })

export class ServedSet extends EventEmitter<{ change: [ServedSecret], published: [Generation] }> {
  readonly specs: ReadonlyMap<string, SecretSpec>
  #gen: Generation = EMPTY_GENERATION

  constructor (specs: readonly SecretSpec[]) {
    super()
    this.setMaxListeners(0)
    this.specs = new Map(specs.map((s) => [s.name, s]))
  }

  get generation (): Generation { return this.#gen }
  get (name: string): ServedSecret | undefined { return this.#gen.secrets.get(name) }
  entries (): IterableIterator<ServedSecret> { return this.#gen.secrets.values() }

  /**
   * Serves `gen` from now on (the publisher calls this right after the swap on
   * disk). Emits `change` for each secret whose bytes are new or differ, and
   * returns those secrets.
   */
  swap (gen: Generation): ServedSecret[] {
    const prev = this.#gen
    this.#gen = gen
    const changed: ServedSecret[] = []
    for (const e of gen.secrets.values()) {
      const before = prev.secrets.get(e.name)
      if (before === undefined || (before !== e && !before.value.equals(e.value))) changed.push(e)
    }
    for (const e of changed) this.emit('change', e)
    this.emit('published', gen)
    return changed
  }

  /**
   * Resolves with the secret once its version differs from `notVersion`
   * (or it exists at all), or with the current one after `ms`.
   */
  async waitForChange (name: string, notVersion: string | undefined, ms: number, signal?: AbortSignal): Promise<ServedSecret | undefined> {
    const cur = this.get(name)
    if (cur !== undefined && cur.version !== notVersion) return cur
    return await new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.off('change', onChange)
        signal?.removeEventListener('abort', done)
        resolve(this.get(name))
      }
      const onChange = (e: ServedSecret): void => {
        if (e.name === name && e.version !== notVersion) done()
      }
      const timer = setTimeout(done, ms)
      this.on('change', onChange)
      signal?.addEventListener('abort', done, { once: true })
    })
  }
}
