// The opt-in metrics listener (`listen.metrics`): GET /metrics and nothing
// else, on every interface so Prometheus can scrape the pod IP. No token:
// the metrics carry store names, secret names, routes and error codes, never
// a value (agent/metrics.ts). Connections and time per request are capped.
import { createServer, type Server } from 'node:http'
import type { AgentMetrics } from './metrics.js'
import { sendHttpError } from '../core/error-answers.js'
import { httpDateNow } from '../core/utc-dates.js'

export const METRICS_MAX_CONNECTIONS = 16

export function createMetricsServer (metrics: AgentMetrics): Server {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/metrics') {
      sendHttpError(res, 'SIDEKEY_E_ROUTE', 'this listener serves GET /metrics only; secrets are on 127.0.0.1')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD')
      sendHttpError(res, 'SIDEKEY_E_METHOD', 'this listener serves GET /metrics only')
      return
    }
    metrics.registry.metrics().then((text) => {
      res.writeHead(200, { 'content-type': metrics.registry.contentType, date: httpDateNow() }).end(req.method === 'HEAD' ? undefined : text)
    }, () => { sendHttpError(res, 'SIDEKEY_E_INTERNAL', 'the metrics could not be collected; the agent log has the cause') })
  })
  server.maxConnections = METRICS_MAX_CONNECTIONS
  server.headersTimeout = 5_000
  server.requestTimeout = 10_000
  server.keepAliveTimeout = 5_000
  return server
}
