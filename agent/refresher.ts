// Keeps every secret fresh. The unit of work is a source: one backend secret
// (store + path + version pin) that one or more secrets select fields from.
// Sources are keys of one keyed queue (keyed-queue.ts): a source syncs with
// what it has (`Provider.sync(ref, have, signal)`), then comes back after its
// interval (a wake-up runs it up to jitter x interval early with the others
// due then: coalesceWindow), at 2/3 of a lease, or after its
// backoff on errors; a backend's watch pushes it sooner. The last good data
// is kept through outages. Changed secrets are rendered into the next
// generation, published as one set by the queue's publish key, which backs off
// on its own when the disk is full. close() aborts every backend call in flight.
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { AgentConfig, SecretSpec } from '../core/config/load.js'
import { SidekeyError, toSidekeyError, isSidekeyError } from '../core/errors.js'
import type { SecretRef } from '../core/reference.js'
import type { AgentMetrics } from './metrics.js'
import { render, select } from './render.js'
import type { Generation, ServedSecret, ServedSet } from './served.js'
import type { StatusBoard } from './status-board.js'
import type { Publisher } from './publisher.js'
import { KeyedQueue } from './keyed-queue.js'
import { renewAt, type Provider, type SecretData, type SecretMeta } from './providers/provider.js'

interface Source {
  readonly key: string
  readonly ref: SecretRef
  readonly provider: Provider
  readonly intervalMs: number
  readonly dependents: Set<string>
  data?: SecretData
  version?: string
  meta?: SecretMeta | undefined
  expiresAt?: number | undefined
  /** When the current lease or value was obtained (for the 2/3 rule). */
  obtainedAt?: number
  /** The delay scheduled after the last successful sync (its coalescing window is jitter x this). */
  delayMs?: number
  stopWatch?: () => void
}

export interface RefresherOptions {
  readonly config: AgentConfig
  readonly served: ServedSet
  readonly board: StatusBoard
  readonly publisher: Publisher
  readonly providers: ReadonlyMap<string, Provider>
  readonly metrics: AgentMetrics
  readonly logger: Logger
  /** Called after each publish, with the secrets that rotated (not first writes). */
  readonly onRotate: (changed: readonly ServedSecret[]) => void
}

const MIN_LEASE_REFETCH_MS = 1000
/** Backend calls in flight at once: the first sync of 1,000 secrets does not open 1,000 requests. */
export const MAX_IN_FLIGHT = 32
/** The queue key of the publish step; never a source key (those are `store:path`). */
const PUBLISH = ''

/**
 * How far ahead of its own due time a source may run on another source's
 * wake-up. Each source is scheduled at its whole interval (or its lease's
 * 2/3 point), never later; a wake-up also runs every source due within
 * jitter x that delay, so the checks of one interval fall due together (one
 * wake-up and, for a Vault folder, one listing) and a wait is cut by at most
 * jitter x interval, as documented. A source in backoff keeps its retry delay.
 */
export function coalesceWindow (o: { delayMs: number | undefined, jitter: number, failures: number }): number {
  return o.failures > 0 || o.delayMs === undefined ? 0 : Math.round(o.delayMs * o.jitter)
}

const sourceKey = (r: SecretRef): string => `${r.store}:${r.path}${r.version !== undefined ? '@' + r.version : ''}`

export class Refresher {
  readonly #o: RefresherOptions
  readonly #sources = new Map<string, Source>()
  readonly #queue: KeyedQueue<string>
  /** Secrets to render into the next generation. */
  readonly #dirty = new Set<string>()
  /** Sources not yet tried once: the first publish waits for all of them (one set, not one by one). */
  readonly #untried = new Set<string>()
  #firstPublished: () => void = () => {}

  constructor (o: RefresherOptions) {
    this.#o = o
    for (const spec of o.config.secrets) {
      for (const ref of spec.refs) {
        const key = sourceKey(ref)
        let s = this.#sources.get(key)
        if (s === undefined) {
          const provider = o.providers.get(ref.store)
          if (provider === undefined) throw new SidekeyError('SIDEKEY_E_REF_STORE', `${ref.raw}: store "${ref.store}" has no provider`, { ref: ref.raw })
          const bare: SecretRef = Object.freeze({ store: ref.store, path: ref.path, raw: key, ...(ref.version !== undefined ? { version: ref.version } : {}) })
          s = { key, ref: bare, provider, intervalMs: spec.refreshMs, dependents: new Set() }
          this.#sources.set(key, s)
        }
        ;(s as { intervalMs: number }).intervalMs = Math.min(s.intervalMs, spec.refreshMs)
        s.dependents.add(spec.name)
      }
    }
    this.#queue = new KeyedQueue<string>({
      concurrency: MAX_IN_FLIGHT,
      backoff: o.config.backoff,
      jitter: o.config.jitter,
      coalesceMs: (key) => {
        const s = key === PUBLISH ? undefined : this.#sources.get(key)
        if (s === undefined) return 0
        return coalesceWindow({ delayMs: s.delayMs, jitter: o.config.jitter, failures: this.#queue.failures(key) })
      },
      process: async (key, signal) => { await (key === PUBLISH ? this.#publish() : this.#sync(this.#sources.get(key) as Source, signal)) },
    })
  }

  /** Starts every source; resolves when each has been tried once and the results published. */
  async start (): Promise<void> {
    const first = new Promise<void>((resolve) => { this.#firstPublished = resolve })
    for (const s of this.#sources.values()) {
      if (s.provider.watch !== undefined) s.stopWatch = s.provider.watch(s.ref, () => this.trigger(s.key))
      this.#untried.add(s.key)
    }
    if (this.#untried.size === 0) this.#queue.add(PUBLISH)
    for (const key of this.#untried) this.#queue.add(key)
    await first
    this.#o.board.checkReady()
  }

  /** Syncs a source now (a backend watch or a test calls this). */
  trigger (key: string): void {
    if (this.#sources.has(key)) this.#queue.add(key)
  }

  async #sync (s: Source, signal: AbortSignal): Promise<void> {
    const { board, logger, metrics } = this.#o
    try {
      const have = s.version !== undefined ? { version: s.version, ...(s.expiresAt !== undefined ? { expiresAt: s.expiresAt } : {}) } : undefined
      const r = await s.provider.sync(s.ref, have, signal)
      if (signal.aborted) return
      const failures = this.#queue.failures(s.key)
      if (failures > 0) logger.info({ store: s.ref.store, ref: s.key, after: failures }, 'backend recovered')
      this.#queue.forget(s.key)
      const now = Date.now()
      if (r.changed) {
        s.data = r.data
        s.version = r.version
        s.meta = r.meta
        s.expiresAt = r.expiresAt
        s.obtainedAt = now
        for (const d of s.dependents) this.#dirty.add(d)
      } else if (r.expiresAt !== undefined && r.expiresAt !== s.expiresAt) {
        // a renewed lease: same value, a later expiry, counted from now
        s.expiresAt = r.expiresAt
        s.obtainedAt = now
      }
      for (const d of s.dependents) board.markFetched(d, now)
      let delay = s.intervalMs
      // A lease already past 2/3 (or a zero TTL) must not turn into a busy loop.
      if (s.expiresAt !== undefined) delay = Math.max(MIN_LEASE_REFETCH_MS, Math.min(delay, renewAt(s.obtainedAt ?? now, s.expiresAt) - now))
      s.delayMs = delay
      this.#queue.addAfter(s.key, delay)
    } catch (e) {
      if (signal.aborted) return // stopping: the abort is not a backend error
      const err = toSidekeyError(e, 'SIDEKEY_E_BACKEND', `${s.key}: the backend call failed`, { ref: s.key })
      metrics.fetchErrors.inc({ store: s.ref.store, code: err.code })
      for (const d of s.dependents) board.markError(d, err)
      const retryInMs = this.#queue.retry(s.key)
      logger.warn({ store: s.ref.store, ref: s.key, code: err.code, err: err.message, attempt: this.#queue.failures(s.key), retryInMs, serving: s.data !== undefined ? 'last good value' : 'nothing yet' }, 'secret refresh failed')
    } finally {
      if (this.#untried.delete(s.key) && this.#untried.size === 0) this.#queue.add(PUBLISH)
      else if (this.#untried.size === 0 && this.#dirty.size > 0) this.#requestPublish()
    }
  }

  /** While writes fail, only the backoff schedule runs the publish: a full tmpfs must not spin the agent. */
  #requestPublish (): void {
    if (this.#queue.failures(PUBLISH) === 0) this.#queue.add(PUBLISH)
  }

  /** Renders a secret from its sources' data, or undefined while a source has none. */
  #renderSpec (spec: SecretSpec): { bytes: Buffer, version: string, meta?: SecretMeta } | undefined {
    const sources = spec.refs.map((r) => this.#sources.get(sourceKey(r)) as Source)
    if (sources.some((s) => s.data === undefined)) return undefined
    let bytes: Buffer
    let version: string
    let meta: SecretMeta | undefined
    if (spec.ref !== undefined) {
      const src = sources[0] as Source
      const selected = select(spec.ref, src.data as SecretData)
      bytes = render(selected, spec.format, `secret "${spec.name}"`, spec.ref.key ?? spec.name)
      version = src.version as string
      meta = src.meta
    } else {
      const values = new Map<string, string>()
      spec.refs.forEach((r, i) => {
        const sel = select(r, (sources[i] as Source).data as SecretData)
        values.set(r.raw, sel.kind === 'bytes' ? sel.bytes.toString('utf8') : JSON.stringify(sel.map))
      })
      bytes = Buffer.from(spec.template!.render(values))
      version = createHash('sha256').update(sources.map((s) => `${s.key}=${s.version as string}`).join('\n')).digest('hex').slice(0, 16)
    }
    if (bytes.length > this.#o.config.maxValueBytes) {
      throw new SidekeyError('SIDEKEY_E_VALUE_TOO_LARGE', `secret "${spec.name}" renders to ${bytes.length} bytes, more than maxValueBytes (${this.#o.config.maxValueBytes}); raise maxValueBytes or bind a smaller value`, { secret: spec.name })
    }
    return { bytes, version, ...(meta !== undefined ? { meta } : {}) }
  }

  /** The next generation: the published one plus every dirty secret that renders; undefined when nothing differs. */
  #nextGeneration (names: readonly string[]): { gen: Generation, written: string[] } | undefined {
    const { served, board, logger, metrics } = this.#o
    const prev = served.generation
    const next = new Map(prev.secrets)
    const written: string[] = []
    const now = Date.now()
    for (const name of names) {
      const spec = served.specs.get(name) as SecretSpec
      let out: { bytes: Buffer, version: string, meta?: SecretMeta } | undefined
      try {
        out = this.#renderSpec(spec)
      } catch (e) {
        const err = isSidekeyError(e) ? e : toSidekeyError(e, 'SIDEKEY_E_FORMAT', `secret "${name}": cannot render the value`)
        board.markRenderError(name, err)
        metrics.fetchErrors.inc({ store: spec.refs[0]?.store ?? 'template', code: err.code })
        logger.error({ secret: name, code: err.code, err: err.message }, 'secret cannot be rendered; serving the last good value')
        continue
      }
      if (out === undefined) continue
      board.clearRenderError(name)
      const before = prev.secrets.get(name)
      if (before !== undefined && before.value.equals(out.bytes)) {
        // Same bytes under a new version (or first confirmed by the backend after a restart): restamped, not rotated.
        if (before.version === out.version && before.origin === 'backend' && before.meta === out.meta) continue
        next.set(name, { ...before, version: out.version, origin: 'backend', ...(out.meta !== undefined ? { meta: out.meta } : {}) })
      } else {
        next.set(name, { name, value: out.bytes, version: out.version, updatedAt: now, origin: 'backend', ...(out.meta !== undefined ? { meta: out.meta } : {}) })
      }
      written.push(name)
    }
    return written.length === 0 ? undefined : { gen: { seq: prev.seq + 1, secrets: next }, written }
  }

  /** Publishes the next generation (one set on disk, then served); on a failed write, backs off. */
  async #publish (): Promise<void> {
    const { board, logger, metrics, publisher } = this.#o
    try {
      const names = [...this.#dirty]
      this.#dirty.clear()
      const next = this.#nextGeneration(names)
      if (next === undefined) {
        // Nothing differs from the generation on disk (a retry whose secrets no longer render, say):
        // the disk is the served set, so a failed write before it is over. Else publishing would stay in backoff for good.
        if (this.#queue.failures(PUBLISH) > 0) {
          this.#queue.forget(PUBLISH)
          board.setWriteError(undefined)
          if (board.ready) metrics.ready.set(1)
        }
        return
      }
      let changed: readonly ServedSecret[]
      let rotated: readonly ServedSecret[]
      try {
        const r = await publisher.publish(next.gen)
        changed = r.changed
        rotated = r.rotated
        if (r.afterSwap !== undefined) logger.warn({ code: (r.afterSwap as SidekeyError).code, err: r.afterSwap.message }, 'secrets published; a step after the swap failed')
      } catch (e) {
        const err = toSidekeyError(e, 'SIDEKEY_E_WRITE', 'cannot write secrets')
        metrics.fetchErrors.inc({ store: 'writer', code: err.code })
        for (const name of next.written) {
          board.markRenderError(name, err)
          this.#dirty.add(name)
        }
        board.setWriteError(err)
        metrics.ready.set(0)
        const retryInMs = this.#queue.retry(PUBLISH)
        logger.error({ code: err.code, err: err.message, attempt: this.#queue.failures(PUBLISH), retryInMs }, 'write failed; will retry')
        return
      }
      const failures = this.#queue.failures(PUBLISH)
      if (failures > 0) logger.info({ after: failures }, 'write recovered')
      this.#queue.forget(PUBLISH)
      board.setWriteError(undefined)
      if (board.ready) metrics.ready.set(1)
      for (const e of rotated) metrics.rotations.inc({ secret: e.name })
      for (const e of changed) logger.info({ secret: e.name, version: e.version, rotated: rotated.includes(e) }, rotated.includes(e) ? 'secret rotated' : 'secret written')
      if (rotated.length > 0) this.#o.onRotate(rotated)
    } finally {
      this.#firstPublished()
    }
  }

  /** Stops: no more syncs or publishes; backend calls in flight are aborted and awaited. */
  async close (): Promise<void> {
    for (const s of this.#sources.values()) s.stopWatch?.()
    await this.#queue.close()
    this.#firstPublished()
  }
}
