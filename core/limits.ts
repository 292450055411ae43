// Caps on the local endpoint: every connection, watcher, waiter and message
// is bounded, and past a cap the caller gets a JSON error (503) or a gRPC
// RESOURCE_EXHAUSTED, never a bigger process.

export interface LocalLimits {
  /** HTTP sockets (server.maxConnections); more are dropped by Node at accept. */
  readonly connections: number
  /** Open watches: SSE /v1/watch plus gRPC Watch streams. */
  readonly watchers: number
  /** Long-polls in progress: ?wait= plus gRPC Get with wait_ms. */
  readonly waiters: number
  /** Time to receive a request's headers; a slow sender is cut off after it. */
  readonly headersTimeoutMs: number
  /** Largest gRPC request message (GetRequest, WatchRequest are a few hundred bytes). */
  readonly grpcMaxMessageBytes: number
  /** gRPC streams per connection. */
  readonly grpcMaxConcurrentStreams: number
}

export const DEFAULT_LIMITS: LocalLimits = Object.freeze({
  connections: 512,
  watchers: 128,
  waiters: 256,
  headersTimeoutMs: 5000,
  grpcMaxMessageBytes: 16 * 1024,
  grpcMaxConcurrentStreams: 32,
})

/** A counted pool: take() answers a release function, or undefined when full. */
export class Slots {
  readonly max: number
  #used = 0
  constructor (max: number) { this.max = max }
  get used (): number { return this.#used }
  take (): (() => void) | undefined {
    if (this.#used >= this.max) return undefined
    this.#used++
    let done = false
    return () => {
      if (done) return
      done = true
      this.#used--
    }
  }
}

/** The secret-name grammar (agent config schema): checked before any lookup. */
export const SECRET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/

/** A name for a message or a log line: at most 64 characters, marked when cut. */
export function shortName (name: string): string {
  return name.length <= 64 ? name : `${name.slice(0, 64)}…(${name.length} chars)`
}
