// Prometheus metrics for one agent. Labels carry store names, secret names,
// routes, codes — never a value and never a full path that could be one.
import { Registry, Histogram, Counter, Gauge, collectDefaultMetrics } from 'prom-client'

export interface AgentMetrics {
  readonly registry: Registry
  readonly fetchDuration: Histogram<'store' | 'op' | 'outcome'>
  readonly fetchErrors: Counter<'store' | 'code'>
  readonly rotations: Counter<'secret'>
  readonly requests: Counter<'route' | 'status' | 'api'>
  readonly onChangeErrors: Counter<'kind'>
  readonly ready: Gauge
  setAgeSource (fn: () => Iterable<[name: string, updatedAtMs: number]>): void
}

export function createMetrics (opts: { defaultMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry()
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'sidekey_' })
  let ageSource: () => Iterable<[string, number]> = () => []
  const m: AgentMetrics = {
    registry,
    fetchDuration: new Histogram({
      name: 'sidekey_fetch_duration_seconds',
      help: 'Backend calls by store, operation (check, fetch) and outcome.',
      labelNames: ['store', 'op', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    fetchErrors: new Counter({ name: 'sidekey_fetch_errors_total', help: 'Failed backend calls by store and error code.', labelNames: ['store', 'code'], registers: [registry] }),
    rotations: new Counter({ name: 'sidekey_rotations_total', help: 'Times a secret changed on disk after the first write.', labelNames: ['secret'], registers: [registry] }),
    requests: new Counter({ name: 'sidekey_requests_total', help: 'Local API requests by api (http, grpc), route and status.', labelNames: ['api', 'route', 'status'], registers: [registry] }),
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
