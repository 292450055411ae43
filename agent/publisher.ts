// One step makes a generation live: write it as the whole set on disk, and at
// the moment of the ..data swap serve the same object. What the files say and
// what the API answers cannot differ, because they are one generation.
import type { SecretSpec } from '../core/config/load.js'
import type { AtomicWriter, DiskEntry } from './writer.js'
import type { Generation, ServedSecret, ServedSet } from './served.js'

export interface Published {
  /** Secrets whose bytes are new or differ from the generation before. */
  readonly changed: readonly ServedSecret[]
  /** Of those, the ones the generation before had (a rotation, not a first write). */
  readonly rotated: readonly ServedSecret[]
  /** A step after the swap failed (links, pruning): the set is live; the next write repairs it. */
  readonly afterSwap?: Error
}

export class Publisher {
  constructor (private readonly writer: AtomicWriter, private readonly served: ServedSet) {}

  /** Writes `gen` and serves it right after the swap; throws (nothing served) when the write fails before it. */
  async publish (gen: Generation): Promise<Published> {
    const files = [...gen.secrets.values()].map((e) => ({ name: e.name, bytes: e.value, mode: (this.served.specs.get(e.name) as SecretSpec).mode, version: e.version, updatedAt: e.updatedAt }))
    const before = this.served.generation.secrets
    let changed: ServedSecret[] | undefined
    const result = (): { changed: ServedSecret[], rotated: ServedSecret[] } => {
      const c = changed ?? []
      return { changed: c, rotated: c.filter((e) => before.has(e.name)) }
    }
    try {
      await this.writer.write(files, () => { changed = this.served.swap(gen) })
    } catch (err) {
      if (changed === undefined) throw err
      return { ...result(), afterSwap: err as Error }
    }
    return result()
  }

  /**
   * Generation 0: the set a previous run left on disk (a restart in an
   * outage), served until the backends answer. It is on disk already: nothing is written.
   */
  adopt (onDisk: readonly DiskEntry[]): number {
    const secrets = new Map<string, ServedSecret>()
    for (const e of onDisk) {
      if (this.served.specs.has(e.name)) secrets.set(e.name, { name: e.name, value: e.bytes, version: e.version, updatedAt: e.updatedAt, origin: 'disk' })
    }
    if (secrets.size > 0) this.served.swap({ seq: 0, secrets })
    return secrets.size
  }
}
