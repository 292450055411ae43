// Keeps every secret fresh. The unit of work is a source: one backend secret
// (store + path + version pin) that one or more secrets select fields from.
// Per source: interval with jitter, a cheap version check before any value
// fetch, exponential backoff with a cap on errors, the last good data kept
// through outages, push from the backend's watch when it has one, and a fetch
// at 2/3 of a lease's lifetime. Changed secrets are written as one set.
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { AgentConfig, SecretSpec } from '../core/config/load.js'
import { SidekeyError, toSidekeyError, isSidekeyError } from '../core/errors.js'
import type { AgentMetrics } from './metrics.js'
import type { SecretRef } from '../core/reference.js'
import { render, select } from './render.js'
import type { SecretEntry, SecretStore } from './secret-store.js'
import type { AtomicWriter } from './writer.js'
import type { FetchResult, Provider, SecretData } from './providers/provider.js'

interface Source {
  readonly key: string
  readonly ref: SecretRef
  readonly provider: Provider
  readonly intervalMs: number
  readonly dependents: Set<string>
  data?: SecretData
  version?: string
  meta?: FetchResult['meta']
  expiresAt?: number
  errors: number
  /** When the next check is due (epoch ms); undefined while running or stopped. */
  dueAt?: number | undefined
  fetchedAt?: number
  running: boolean
  again: boolean
  stopWatch?: () => void
}

export interface RefresherOptions {
  readonly config: AgentConfig
  readonly store: SecretStore
  readonly providers: ReadonlyMap<string, Provider>
  readonly writer: AtomicWriter
  readonly metrics: AgentMetrics
  readonly logger: Logger
  /** Called after each swap of the files, with the secrets that rotated (not first writes). */
  readonly onRotate: (changed: readonly SecretEntry[]) => void
}

const MIN_LEASE_REFETCH_MS = 1000
/** Checks due within this much of each other run on one wake-up (only ever early). */
const COALESCE_MAX_MS = 1000

const sourceKey = (r: SecretRef): string => `${r.store}:${r.path}${r.version !== undefined ? '@' + r.version : ''}`

export class Refresher {
  readonly #o: RefresherOptions
  readonly #sources = new Map<string, Source>()
  readonly #dirty = new Set<string>()
  #flushing: Promise<void> | undefined
  #flushAgain = false
  /** Secrets whose write failed: merged back into #dirty by the retry timer only. */
  readonly #retry = new Set<string>()
  #retryTimer: NodeJS.Timeout | undefined
  /** Consecutive failed writes: the retry waits initial x 2^(n-1), capped at max. */
  #writeFailures = 0
  /** One timer for the earliest due source, not one per source: an idle agent sleeps. */
  #timer: NodeJS.Timeout | undefined
  #timerAt = Infinity
  #closed = false
  /** During start() the first results are written as one set, not one by one. */
  #starting = true

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
          s = { key, ref: bare, provider, intervalMs: spec.refreshMs, dependents: new Set(), errors: 0, running: false, again: false }
          this.#sources.set(key, s)
        }
        ;(s as { intervalMs: number }).intervalMs = Math.min(s.intervalMs, spec.refreshMs)
        s.dependents.add(spec.name)
      }
    }
  }

  /** Starts every source; resolves when each has been tried once and its result written. */
  async start (): Promise<void> {
    for (const s of this.#sources.values()) {
      if (s.provider.watch !== undefined) s.stopWatch = s.provider.watch(s.ref, () => this.trigger(s.key))
    }
    await Promise.all([...this.#sources.values()].map(async (s) => await this.#run(s)))
    this.#starting = false
    await this.#flush()
    this.#o.store.checkReady()
  }

  /** Re-checks a source now (a backend watch or a test calls this). */
  trigger (key: string): void {
    const s = this.#sources.get(key)
    if (s === undefined || this.#closed) return
    if (s.running) {
      s.again = true
      return
    }
    s.dueAt = undefined
    void this.#run(s)
  }

  /** Arms the one timer for the earliest due source, unless it is already armed earlier. */
  #arm (): void {
    if (this.#closed) return
    let next = Infinity
    for (const s of this.#sources.values()) if (s.dueAt !== undefined && s.dueAt < next) next = s.dueAt
    if (next === this.#timerAt) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = next
    if (next === Infinity) return
    this.#timer = setTimeout(() => this.#wake(), Math.max(0, next - Date.now()))
    this.#timer.unref?.()
  }

  /** Runs every source that is due, and those due a little later (early by at most its jitter, capped at 1 s). */
  #wake (): void {
    this.#timer = undefined
    this.#timerAt = Infinity
    if (this.#closed) return
    const now = Date.now()
    for (const s of this.#sources.values()) {
      if (s.dueAt === undefined || s.running) continue
      const slack = Math.min(COALESCE_MAX_MS, s.intervalMs * this.#o.config.jitter)
      if (s.dueAt <= now + slack) {
        s.dueAt = undefined
        void this.#run(s)
      }
    }
    this.#arm()
  }

  async #timed<T> (s: Source, op: 'check' | 'fetch', fn: () => Promise<T>): Promise<T> {
    const end = this.#o.metrics.fetchDuration.startTimer({ store: s.ref.store, op })
    try {
      const r = await fn()
      end({ outcome: 'ok' })
      return r
    } catch (err) {
      end({ outcome: 'error' })
      throw err
    }
  }

  async #run (s: Source): Promise<void> {
    if (this.#closed) return
    s.running = true
    s.dueAt = undefined
    let delay: number
    try {
      const expiring = s.expiresAt !== undefined && Date.now() >= this.#renewAt(s)
      let fresh: FetchResult | undefined
      if (s.data !== undefined && s.provider.currentVersion !== undefined && !expiring) {
        const v = await this.#timed(s, 'check', async () => await s.provider.currentVersion!(s.ref))
        if (v !== s.version) fresh = await this.#timed(s, 'fetch', async () => await s.provider.fetch(s.ref))
      } else {
        fresh = await this.#timed(s, 'fetch', async () => await s.provider.fetch(s.ref))
      }
      if (s.errors > 0) this.#o.logger.info({ store: s.ref.store, ref: s.key, after: s.errors }, 'backend recovered')
      s.errors = 0
      const now = Date.now()
      if (fresh !== undefined) {
        const changed = fresh.version !== s.version || s.data === undefined
        s.data = fresh.data
        s.version = fresh.version
        s.meta = fresh.meta
        s.fetchedAt = now
        if (fresh.expiresAt !== undefined) s.expiresAt = fresh.expiresAt
        else delete s.expiresAt
        if (changed) for (const d of s.dependents) this.#dirty.add(d)
      }
      for (const d of s.dependents) this.#o.store.markFetched(d, now)
      delay = this.#jittered(s.intervalMs)
      // A lease already past 2/3 (or a zero TTL) must not turn into a busy loop.
      if (s.expiresAt !== undefined) delay = Math.max(MIN_LEASE_REFETCH_MS, Math.min(delay, this.#renewAt(s) - now))
    } catch (e) {
      const err = toSidekeyError(e, 'SIDEKEY_E_BACKEND', `${s.key}: the backend call failed`, { ref: s.key })
      s.errors++
      this.#o.metrics.fetchErrors.inc({ store: s.ref.store, code: err.code })
      for (const d of s.dependents) this.#o.store.markError(d, err)
      this.#o.logger.warn({ store: s.ref.store, ref: s.key, code: err.code, err: err.message, attempt: s.errors, serving: s.data !== undefined ? 'last good value' : 'nothing yet' }, 'secret refresh failed')
      const { initialMs, maxMs } = this.#o.config.backoff
      delay = this.#jittered(Math.min(maxMs, initialMs * 2 ** Math.min(s.errors - 1, 30)))
    } finally {
      s.running = false
    }
    if (this.#dirty.size > 0 && !this.#starting && !this.#closed) void this.#flush().catch(() => { /* logged inside */ })
    if (this.#closed) return
    if (s.again) {
      s.again = false
      delay = 0
    }
    s.dueAt = Date.now() + delay
    if (s.dueAt < this.#timerAt) this.#arm()
  }

  #renewAt (s: Source): number {
    // Fetch again at about 2/3 of the lease, measured from the fetch that got it.
    const fetched = s.fetchedAt ?? Date.now()
    return fetched + ((s.expiresAt ?? Infinity) - fetched) * 2 / 3
  }

  /**
   * Spreads agents that started together, only ever earlier: a check is never
   * later than the interval, so a rotation is seen within interval + fetch time.
   */
  #jittered (ms: number): number {
    const j = this.#o.config.jitter
    return Math.max(0, Math.round(ms * (1 - j * Math.random())))
  }

  /** Renders a secret from its sources' data, or undefined while a source has none. */
  #renderSpec (spec: SecretSpec): { bytes: Buffer, version: string, meta?: FetchResult['meta'] } | undefined {
    const sources = spec.refs.map((r) => this.#sources.get(sourceKey(r)) as Source)
    if (sources.some((s) => s.data === undefined)) return undefined
    let bytes: Buffer
    let version: string
    let meta: FetchResult['meta']
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

  /** Writes every dirty secret that renders differently, as one atomic set. */
  async #flush (): Promise<void> {
    if (this.#flushing !== undefined) {
      this.#flushAgain = true
      return await this.#flushing
    }
    this.#flushing = (async () => {
      do {
        this.#flushAgain = false
        await this.#flushOnce()
      } while (this.#flushAgain || this.#dirty.size > 0)
    })()
    try {
      await this.#flushing
    } finally {
      this.#flushing = undefined
    }
  }

  async #flushOnce (): Promise<void> {
    const { store, writer, logger, metrics } = this.#o
    const dirty = [...this.#dirty]
    this.#dirty.clear()
    const changed: SecretEntry[] = []
    const now = Date.now()
    for (const name of dirty) {
      const spec = store.specs.get(name) as SecretSpec
      let out: { bytes: Buffer, version: string, meta?: FetchResult['meta'] } | undefined
      try {
        out = this.#renderSpec(spec)
      } catch (e) {
        const err = isSidekeyError(e) ? e : toSidekeyError(e, 'SIDEKEY_E_FORMAT', `secret "${name}": cannot render the value`)
        store.markRenderError(name, err)
        metrics.fetchErrors.inc({ store: spec.refs[0]?.store ?? 'template', code: err.code })
        logger.error({ secret: name, code: err.code, err: err.message }, 'secret cannot be rendered; serving the last good value')
        continue
      }
      if (out === undefined) continue
      store.clearRenderError(name)
      const prev = store.get(name)
      if (prev !== undefined && prev.value.equals(out.bytes)) {
        if (prev.version !== out.version || prev.origin !== 'backend' || prev.meta !== out.meta) store.restamp(name, out.version, 'backend', out.meta)
        continue
      }
      changed.push({ name, value: out.bytes, version: out.version, updatedAt: now, origin: 'backend', ...(out.meta !== undefined ? { meta: out.meta } : {}) })
    }
    if (changed.length === 0) return
    const next = new Map<string, SecretEntry>()
    for (const e of store.entries()) next.set(e.name, e)
    for (const e of changed) next.set(e.name, e)
    // Served from the moment the set is on disk (the ..data swap), not after the pruning behind it.
    const rotated = changed.filter((e) => store.get(e.name) !== undefined)
    let published = false
    try {
      await writer.write([...next.values()].map((e) => ({ name: e.name, bytes: e.value, mode: (store.specs.get(e.name) as SecretSpec).mode, version: e.version, updatedAt: e.updatedAt })), () => {
        published = true
        store.apply(changed)
      })
    } catch (e) {
      if (published) {
        // the set is live; only a step after the swap failed (links, pruning): the next write repairs it
        logger.warn({ code: (e as SidekeyError).code, err: (e as Error).message }, 'secrets published; a step after the swap failed')
      } else {
        const err = toSidekeyError(e, 'SIDEKEY_E_WRITE', 'cannot write secrets')
        metrics.fetchErrors.inc({ store: 'writer', code: err.code })
        for (const c of changed) store.markRenderError(c.name, err)
        // Retried by a timer, never by the flush loop: a full tmpfs must not spin the agent.
        for (const c of changed) this.#retry.add(c.name)
        this.#writeFailures++
        store.setWriteError(err)
        metrics.ready.set(0)
        if (this.#retryTimer === undefined && !this.#closed) {
          const { initialMs, maxMs } = this.#o.config.backoff
          const retryInMs = this.#jittered(Math.min(maxMs, initialMs * 2 ** Math.min(this.#writeFailures - 1, 30)))
          logger.error({ code: err.code, err: err.message, attempt: this.#writeFailures, retryInMs }, 'write failed; will retry')
          this.#retryTimer = setTimeout(() => {
            this.#retryTimer = undefined
            if (this.#closed) return
            for (const n of this.#retry) this.#dirty.add(n)
            this.#retry.clear()
            void this.#flush()
          }, retryInMs)
          this.#retryTimer.unref()
        }
        return
      }
    }
    if (this.#writeFailures > 0) logger.info({ after: this.#writeFailures }, 'write recovered')
    this.#writeFailures = 0
    store.setWriteError(undefined)
    // Names still waiting for the retry timer were part of this set: written now.
    for (const e of changed) this.#retry.delete(e.name)
    if (store.ready) metrics.ready.set(1)
    for (const e of rotated) metrics.rotations.inc({ secret: e.name })
    for (const e of changed) logger.info({ secret: e.name, version: e.version, rotated: rotated.includes(e) }, rotated.includes(e) ? 'secret rotated' : 'secret written')
    if (rotated.length > 0) this.#o.onRotate(rotated)
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer)
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    for (const s of this.#sources.values()) {
      s.dueAt = undefined
      s.stopWatch?.()
    }
    await this.#flushing
  }
}
