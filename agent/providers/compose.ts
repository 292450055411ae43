// Wraps providers from outside, in the manner of undici's `compose`: an
// interceptor takes the next `sync` and returns one that does something
// around it. Timing and outcome metrics live here, not in each backend.
import type { AgentMetrics } from '../metrics.js'
import type { Provider } from './provider.js'

export type Sync = Provider['sync']
export type SyncInterceptor = (next: Sync) => Sync

/** A provider whose `sync` runs through `interceptors`, the first outermost. */
export function compose (provider: Provider, ...interceptors: SyncInterceptor[]): Provider {
  const inner: Sync = provider.sync.bind(provider)
  const sync = interceptors.reduceRight<Sync>((next, wrap) => wrap(next), inner)
  return {
    type: provider.type,
    sync,
    ...(provider.watch !== undefined ? { watch: provider.watch.bind(provider) } : {}),
    ...(provider.close !== undefined ? { close: provider.close.bind(provider) } : {}),
  }
}

/** Times each sync by store and outcome (changed, unchanged, error). */
export function timed (metrics: AgentMetrics, store: string): SyncInterceptor {
  return (next) => async (ref, have, signal) => {
    const end = metrics.fetchDuration.startTimer({ store, op: 'sync' })
    try {
      const r = await next(ref, have, signal)
      end({ outcome: r.changed ? 'changed' : 'unchanged' })
      return r
    } catch (err) {
      end({ outcome: 'error' })
      throw err
    }
  }
}
