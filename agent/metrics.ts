// Prometheus metrics for one agent. Labels carry store names, secret names,
// routes, codes — never a value and never a full path that could be one.
import { createRequire } from 'node:module'
import type * as PromClient from 'prom-client'

// prom-client's index also loads the Pushgateway (node:http, node:https and
// with it node:tls, node:zlib), the cluster aggregator (node:cluster) and the
// default metrics (@opentelemetry/api, perf_hooks): about 20 ms of CPU at
// every agent start on Node 24, for code the agent never calls. The four
// classes it uses, taken directly (prom-client 15 has no exports map; the
// index exports the same objects).
const Registry = createRequire(import.meta.url)('prom-client/lib/registry.js') as typeof PromClient.Registry
const Counter = createRequire(import.meta.url)('prom-client/lib/counter.js') as typeof PromClient.Counter
const Gauge = createRequire(import.meta.url)('prom-client/lib/gauge.js') as typeof PromClient.Gauge
const Histogram = createRequire(import.meta.url)('prom-client/lib/histogram.js') as typeof PromClient.Histogram
type Registry = PromClient.Registry
type Counter<T extends string> = PromClient.Counter<T>
type Gauge = PromClient.Gauge
type Histogram<T extends string> = PromClient.Histogram<T>

export interface AgentMetrics {
  readonly registry: Registry
  readonly fetchDuration: Histogram<'store' | 'op' | 'outcome'>
  readonly fetchErrors: Counter<'store' | 'code'>
  readonly backendRequests: Counter<'store' | 'op'>
  readonly rotations: Counter<'secret'>
  /**
   * Counts one local API request in sidekey_requests_total. The count is kept
   * in a plain number and handed to prom-client when the registry is read: a
   * labelled inc() hashes and validates its labels on every call.
   */
  readonly countRequest: (api: 'http' | 'grpc', route: string, status: number | string) => void
  readonly onChangeErrors: Counter<'kind'>
  readonly ready: Gauge
  setAgeSource (fn: () => Iterable<[name: string, updatedAtMs: number]>): void
}

export function createMetrics (opts: { defaultMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry()
  if (opts.defaultMetrics !== false) registerProcessMetrics(registry)
  let ageSource: () => Iterable<[string, number]> = () => []
  // route -> status -> requests not yet added to the counter, per api.
  interface Pending { readonly labels: { api: string, route: string, status: number | string }, n: number }
  const pending = { http: new Map<string, Map<number | string, Pending>>(), grpc: new Map<string, Map<number | string, Pending>>() }
  /** The entry countRequest() counted last; entries stay in `pending` (collect() only zeroes them). */
  let last: Pending | undefined
  // sidekey_requests_total: countRequest() keeps the counts, the registry reads them here.
  // eslint-disable-next-line no-new
  new Counter({
    name: 'sidekey_requests_total',
    help: 'Local API requests by api (http, grpc), route and status.',
    labelNames: ['api', 'route', 'status'],
    registers: [registry],
    collect () {
      for (const byRoute of Object.values(pending)) {
        for (const byStatus of byRoute.values()) {
          for (const p of byStatus.values()) {
            if (p.n > 0) this.inc(p.labels, p.n)
            p.n = 0
          }
        }
      }
    },
  })
  const m: AgentMetrics = {
    registry,
    fetchDuration: new Histogram({
      name: 'sidekey_fetch_duration_seconds',
      help: 'Syncs with the backend by store, operation (sync) and outcome (changed, unchanged, error).',
      labelNames: ['store', 'op', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    fetchErrors: new Counter({ name: 'sidekey_fetch_errors_total', help: 'Failed backend calls by store and error code.', labelNames: ['store', 'code'], registers: [registry] }),
    backendRequests: new Counter({ name: 'sidekey_backend_requests_total', help: 'Requests sent to the backend by store and API call (GetSecretValue, DescribeSecret, getSecret, GET, ...).', labelNames: ['store', 'op'], registers: [registry] }),
    rotations: new Counter({ name: 'sidekey_rotations_total', help: 'Times a secret changed on disk after the first write.', labelNames: ['secret'], registers: [registry] }),
    countRequest (api, route, status) {
      // A run of the same outcome (the usual case under load) skips the two lookups.
      if (last !== undefined && route === last.labels.route && status === last.labels.status && api === last.labels.api) {
        last.n++
        return
      }
      const byRoute = pending[api]
      let byStatus = byRoute.get(route)
      if (byStatus === undefined) byRoute.set(route, byStatus = new Map())
      let p = byStatus.get(status)
      if (p !== undefined) p.n++
      else byStatus.set(status, p = { labels: { api, route, status }, n: 1 })
      last = p
    },
    onChangeErrors: new Counter({ name: 'sidekey_on_change_errors_total', help: 'onChange notifications that could not be delivered.', labelNames: ['kind'], registers: [registry] }),
    ready: new Gauge({ name: 'sidekey_ready', help: '1 once every required secret has been written.', registers: [registry] }),
    setAgeSource (fn) { ageSource = fn },
  }
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'sidekey_secret_age_seconds',
    help: 'Seconds since each secret was last fetched successfully.',
    labelNames: ['secret'],
    registers: [registry],
    collect () {
      this.reset()
      const now = Date.now()
      for (const [name, at] of ageSource()) this.set({ secret: name }, (now - at) / 1000)
    },
  })
  return m
}

// Process figures computed when /metrics is scraped. prom-client's
// collectDefaultMetrics starts an event-loop-delay monitor that wakes the
// process every 10 ms; an idle sidecar must stay asleep between scrapes.
function registerProcessMetrics (registry: Registry): void {
  const startSeconds = Math.round((Date.now() - process.uptime() * 1000) / 1000)
  const gauge = (name: string, help: string, read: () => number): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name, help, registers: [registry], collect () { this.set(read()) } })
  }
  gauge('sidekey_process_cpu_user_seconds_total', 'User CPU time spent in seconds.', () => process.cpuUsage().user / 1e6)
  gauge('sidekey_process_cpu_system_seconds_total', 'System CPU time spent in seconds.', () => process.cpuUsage().system / 1e6)
  gauge('sidekey_process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', () => { const c = process.cpuUsage(); return (c.user + c.system) / 1e6 })
  gauge('sidekey_process_resident_memory_bytes', 'Resident memory size in bytes.', () => process.memoryUsage.rss())
  gauge('sidekey_process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', () => startSeconds)
  gauge('sidekey_nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', () => process.memoryUsage().heapTotal)
  gauge('sidekey_nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', () => process.memoryUsage().heapUsed)
  gauge('sidekey_nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', () => process.memoryUsage().external)
}
