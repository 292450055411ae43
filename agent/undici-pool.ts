// An undici pool, for what needs undici's streaming answers: the k8s store's
// watches over HTTP/1.1 (agent/providers/k8s.ts). Everything else goes through
// agent/http-client.ts (node:http): undici's Agent, its HTTP parser
// (WebAssembly) and the compiler that runs it are ~10 MiB of resident memory
// that an agent without such a watch does not load.
import { createRequire } from 'node:module'
import type { Agent as UndiciAgent, Dispatcher } from 'undici'
import { POOL_DEFAULTS, tlsConnectOptions, type PoolOptions } from './http-client.js'

// undici's index loads all of undici: fetch, WebSocket, EventSource, the mock
// and proxy agents, interceptors (about 45 ms of CPU at every start on Node 24).
// Sidekey uses one Agent and Dispatcher#request: those two, taken directly
// (undici 6 has no exports map). The index does the same assignment.
const Agent = createRequire(import.meta.url)('undici/lib/dispatcher/agent.js') as typeof UndiciAgent
Object.assign(
  (createRequire(import.meta.url)('undici/lib/dispatcher/dispatcher.js') as { prototype: object }).prototype,
  createRequire(import.meta.url)('undici/lib/api/index.js') as object,
)
type Agent = UndiciAgent

export function createPool (o: PoolOptions = {}): Agent {
  const keepAlive = o.keepAliveTimeoutMs ?? POOL_DEFAULTS.keepAliveTimeoutMs
  const connect = {
    timeout: o.connectTimeoutMs ?? POOL_DEFAULTS.connectTimeoutMs,
    ...(o.tcpKeepAliveMs !== undefined ? { keepAlive: true, keepAliveInitialDelay: o.tcpKeepAliveMs } : {}),
    ...tlsConnectOptions(o),
  }
  return new Agent({
    connections: o.connections === undefined ? POOL_DEFAULTS.connections : o.connections,
    pipelining: 1,
    keepAliveTimeout: keepAlive,
    keepAliveMaxTimeout: Math.max(keepAlive, 60_000),
    headersTimeout: o.headersTimeoutMs ?? POOL_DEFAULTS.headersTimeoutMs,
    bodyTimeout: o.bodyTimeoutMs ?? POOL_DEFAULTS.bodyTimeoutMs,
    connect,
  })
}

export type { Dispatcher }
