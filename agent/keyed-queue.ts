// A keyed work queue in the manner of client-go's workqueue: a key is never
// processed twice at once (an add while it runs makes it run once more after),
// delayed adds share one timer (the earliest due), failures back off per key,
// and a bounded number of keys run at a time. One AbortController is handed
// to every run and aborted by close(), so calls in flight end at once.
//
//   add(k)             due now
//   addAfter(k, ms)    due in ms, unless it is already due sooner
//   retry(k)           due after this key's next backoff step (initial x 2^(n-1), capped)
//   forget(k)          a success: the key's backoff starts over
//   close()            no more runs; aborts those in flight and waits for them

import { setMaxListeners } from 'node:events'

export interface KeyedQueueOptions<K> {
  /** Keys processed at the same time; the rest wait their turn in order. */
  readonly concurrency: number
  readonly backoff: { readonly initialMs: number, readonly maxMs: number }
  /** Spreads delays, only ever earlier, by up to this fraction (0..1). */
  readonly jitter: number
  /** A key due within this much of a wake-up runs on it: fewer wake-ups for an idle process. */
  readonly coalesceMs?: (key: K) => number
  readonly process: (key: K, signal: AbortSignal) => Promise<void>
}

const MAX_TIMER_MS = 2 ** 31 - 1

export class KeyedQueue<K> {
  readonly #o: KeyedQueueOptions<K>
  readonly #ready: K[] = []
  readonly #queued = new Set<K>()
  readonly #running = new Map<K, Promise<void>>()
  /** Added while running: runs once more when the current run ends. */
  readonly #again = new Set<K>()
  readonly #delayed = new Map<K, number>()
  readonly #failures = new Map<K, number>()
  readonly #ac = new AbortController()
  #timer: NodeJS.Timeout | undefined
  #timerAt = Infinity
  #closed = false

  constructor (o: KeyedQueueOptions<K>) {
    this.#o = o
    // Every run listens on the one signal while its calls are in flight (a few listeners each, removed
    // when they end): at 32 runs that is past Node's default of 10, which is a warning, not a leak.
    setMaxListeners(Math.max(10, o.concurrency * 8), this.#ac.signal)
  }

  /** Aborted by close(): every run gets it. */
  get signal (): AbortSignal { return this.#ac.signal }
  get closed (): boolean { return this.#closed }
  /** Keys running now. */
  get running (): number { return this.#running.size }

  add (key: K): void {
    if (this.#closed) return
    this.#delayed.delete(key)
    if (this.#running.has(key)) {
      this.#again.add(key)
      return
    }
    if (!this.#queued.has(key)) {
      this.#queued.add(key)
      this.#ready.push(key)
    }
    this.#pump()
  }

  addAfter (key: K, ms: number): void {
    if (this.#closed) return
    if (ms <= 0) return this.add(key)
    if (this.#queued.has(key) || this.#again.has(key)) return
    const at = Date.now() + ms
    const cur = this.#delayed.get(key)
    if (cur !== undefined && cur <= at) return
    this.#delayed.set(key, at)
    if (at < this.#timerAt) this.#arm()
  }

  /** Records a failure of `key` and schedules it after its backoff; returns the delay. */
  retry (key: K): number {
    const n = (this.#failures.get(key) ?? 0) + 1
    this.#failures.set(key, n)
    const { initialMs, maxMs } = this.#o.backoff
    const ms = this.jittered(Math.min(maxMs, initialMs * 2 ** Math.min(n - 1, 30)))
    this.addAfter(key, ms)
    return ms
  }

  /** Consecutive failures of `key` since its last forget(). */
  failures (key: K): number { return this.#failures.get(key) ?? 0 }

  forget (key: K): void { this.#failures.delete(key) }

  /** `ms` made up to `jitter` earlier, never later. */
  jittered (ms: number): number {
    return Math.max(0, Math.round(ms * (1 - this.#o.jitter * Math.random())))
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = Infinity
    this.#delayed.clear()
    this.#ready.length = 0
    this.#queued.clear()
    this.#again.clear()
    this.#ac.abort(new Error('the agent is stopping'))
    await Promise.allSettled([...this.#running.values()])
  }

  #pump (): void {
    while (!this.#closed && this.#running.size < this.#o.concurrency && this.#ready.length > 0) {
      const key = this.#ready.shift() as K
      this.#queued.delete(key)
      this.#running.set(key, this.#run(key))
    }
  }

  async #run (key: K): Promise<void> {
    try {
      await this.#o.process(key, this.#ac.signal)
    } catch {
      // process() reports its own failures; a throw must not stop the queue
    } finally {
      this.#running.delete(key)
      if (this.#again.delete(key)) this.add(key)
      this.#pump()
    }
  }

  /** Arms the one timer for the earliest delayed key. */
  #arm (): void {
    if (this.#closed) return
    let next = Infinity
    for (const at of this.#delayed.values()) if (at < next) next = at
    if (next === this.#timerAt) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = next
    if (next === Infinity) return
    // setTimeout takes at most 2^31-1 ms (a longer delay fires at once): the wake re-arms for the rest.
    this.#timer = setTimeout(() => this.#wake(), Math.min(MAX_TIMER_MS, Math.max(0, next - Date.now())))
    this.#timer.unref()
  }

  #wake (): void {
    this.#timer = undefined
    this.#timerAt = Infinity
    if (this.#closed) return
    const now = Date.now()
    for (const [key, at] of [...this.#delayed]) {
      if (at <= now + (this.#o.coalesceMs?.(key) ?? 0)) this.add(key)
    }
    this.#arm()
  }
}
