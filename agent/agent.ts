// Wires one agent: token, disk state from a previous run, providers, the
// refresher, the local HTTP and gRPC servers and the onChange notifier.
import { accessSync, constants } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { AgentConfig } from '../core/config/load.js'
import { SidekeyError } from '../core/errors.js'
import { listen } from '../core/listen.js'
import { createAuditLogger, createLogger } from './logger.js'
import { createMetrics, type AgentMetrics } from './metrics.js'
import { ServedSet } from './served.js'
import { StatusBoard } from './status-board.js'
import { AtomicWriter } from './writer.js'
import { Publisher } from './publisher.js'
import { Refresher } from './refresher.js'
import { createProvider } from './providers/index.js'
import type { Provider } from './providers/provider.js'
import { compose, timed } from './providers/compose.js'
import { loadOrCreateToken, makeTokenCheck } from './access-token.js'
import { createNotifier } from './on-change.js'
import { compatRoutes } from './compat/index.js'
import { Slots } from '../core/limits.js'
import { AuditTrail } from './audit-trail.js'
import { PROTO_FILE, listenGrpc, type GrpcBackend, type GrpcListener } from './grpc-listener.js'

export interface StartOptions {
  readonly logger?: Logger
  /** Where audit lines go; default: a child of `logger` when one is given, else the buffered stdout audit logger. */
  readonly auditLogger?: Logger
  /** Skip prom-client's process metrics (tests start many agents in one process). */
  readonly defaultMetrics?: boolean
  /** Called once, when every source has been tried once and the first publish is done (not when a restart's files are adopted, nor at GRPC_WAIT_MS). */
  readonly afterFirstSync?: () => void
}

export interface RunningAgent {
  readonly config: AgentConfig
  /** The local HTTP API's port; undefined for an init-only agent (exitAfterSync), which has no local endpoint. */
  readonly httpPort: number | undefined
  readonly grpcPort: number | undefined
  /** The opt-in metrics listener's port (all interfaces), when listen.metrics is set. */
  readonly metricsPort: number | undefined
  /** The published generation: what is on disk and what the API serves. */
  readonly served: ServedSet
  readonly board: StatusBoard
  readonly refresher: Refresher
  readonly metrics: AgentMetrics
  readonly logger: Logger
  /** Resolves once every source has been tried once and the results written. */
  readonly synced: Promise<void>
  /** Removes the secret files the agent wrote (local runs; never in a pod, where the app may still read). */
  removeFiles (): Promise<void>
  close (): Promise<void>
}

export async function startAgent (config: AgentConfig, opts: StartOptions = {}): Promise<RunningAgent> {
  const logger = opts.logger ?? createLogger(config.logLevel)
  for (const d of config.deprecations) logger.warn({ field: d.field, use: d.use }, d.message)
  const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? true })
  const served = new ServedSet(config.secrets)
  const board = new StatusBoard(served)
  metrics.setAgeSource(() => board.fetchedAt())

  const token = loadOrCreateToken(config.apiTokenFile, config.fileOwner?.gid !== undefined ? 0o440 : 0o444)
  const checkToken = makeTokenCheck(token)

  const writer = new AtomicWriter(config.dir, config.fileOwner)
  writer.onChownError = (err) => logger.warn({ err: (err as Error).message, owner: config.fileOwner }, 'cannot set the owner of secret files; run the agent with the pod fsGroup or as root')
  const publisher = new Publisher(writer, served)
  // Generation 0: a previous run's files, served until the backends answer (restart in a slow outage).
  const adopted = publisher.adopt(await writer.readExisting())
  if (adopted > 0) logger.info({ secrets: adopted }, 'serving the secrets a previous run wrote until the backends answer')

  const providers = new Map<string, Provider>()
  const used = new Set(config.secrets.flatMap((s) => s.refs.map((r) => r.store)))
  // Each store's SDK loads once, all at the same time.
  await Promise.all([...used].map(async (name) => {
    const sc = config.stores[name]
    if (sc === undefined) return
    // Requests are counted and syncs timed from outside the provider: the meter goes to its transport, the timing wraps sync.
    const meter = { request: (op: string) => metrics.backendRequests.inc({ store: name, op: opLabel(op) }) }
    const p = await createProvider(sc, { storeName: name, logger: logger.child({ store: name }), maxValueBytes: config.maxValueBytes, meter })
    providers.set(name, compose(p, timed(metrics, name)))
  }))

  // Audit lines are built from names, references, routes and statuses only, so
  // they skip the redaction pass, which costs about a third of a line's price.
  const audit = opts.auditLogger ?? (opts.logger !== undefined ? logger.child({ component: 'audit' }, { redact: [] }) : createAuditLogger(config.logLevel))
  const trail = new AuditTrail(audit, (name) => served.specs.get(name)?.refs.map((r) => r.raw))
  const notify = createNotifier(config.onChange, logger, metrics)
  const refresher = new Refresher({
    config, served, board, publisher, providers, metrics, logger,
    onRotate: (changed) => { void notify(changed) },
  })
  // The first fetches start before the servers listen: files reach the disk
  // sooner, and the servers answer /ready with 503 until they do.
  const synced = refresher.start()
  synced.catch((err: unknown) => logger.error({ err: (err as Error).message }, 'initial sync failed'))
  if (opts.afterFirstSync !== undefined) void synced.then(opts.afterFirstSync, opts.afterFirstSync)
  // Stops what runs before the servers: used by close(), and when a listener cannot bind.
  const abandon = async (): Promise<void> => {
    await refresher.close()
    await notify.close()
    await Promise.all([...providers.values()].map(async (p) => await p.close?.()))
  }

  // One cap on watches and one on long-polls, shared by the HTTP and gRPC APIs.
  const watchers = new Slots(config.limits.watchers)
  const waiters = new Slots(config.limits.waiters)
  // /ready answers 200 only once every listener is up, not just the files.
  let listening = false
  // An init-only agent (exitAfterSync) has no local endpoint: it exits before
  // any app container starts. A serving agent's endpoint waits for the first
  // publish: node:http, the HTTP server, and the gRPC port (its server, grpc-js,
  // protobufjs and the proto, loads on the first gRPC connection; it was about
  // a third of the agent's start-up CPU) would otherwise sit
  // between the start and the first files. Before that publish the API has
  // nothing to serve (/ready is 503, the startup probe fails either way); a
  // backend slower than GRPC_WAIT_MS to answer does not hold the API back
  // longer, and the files a previous run left (a restart) are served at once.
  const serving = !config.exitAfterSync
  const firstPublish = serving ? Promise.race([synced.catch(() => {}), new Promise((resolve) => setTimeout(resolve, GRPC_WAIT_MS).unref())]) : undefined
  let http: Server | undefined
  let httpPort: number | undefined
  let grpc: GrpcListener | undefined
  /** A start that fails midway stops what it had started: the listeners so far, the refresher and the stores. */
  const failStart = async (): Promise<void> => {
    grpc?.forceClose()
    await Promise.all([abandon(), closeServer(http)])
  }
  if (serving) {
    if (adopted === 0) await firstPublish
    let server: Server
    try {
      const { createHttpServer } = await import('./http-server.js')
      server = createHttpServer({ served, board, listening: () => listening, checkToken, metrics, audit, trail, limits: config.limits, watchers, waiters, compat: compatRoutes(config, served, checkToken) })
    } catch (err) {
      await failStart()
      throw err
    }
    try {
      await listen(server, config.listen.http, config.listen.host)
    } catch (err) {
      await failStart()
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.listen.http: cannot listen on ${config.listen.host}:${config.listen.http} (${(err as NodeJS.ErrnoException).code ?? 'error'}); pick a free port`, { field: 'listen.http' }, { cause: err })
    }
    // After listen, an accept error (EMFILE under many long-polls) is logged, not fatal.
    server.on('error', (err: NodeJS.ErrnoException) => logger.error({ code: err.code, err: err.message }, 'local HTTP server error'))
    http = server
    httpPort = (server.address() as AddressInfo).port
  }

  if (config.listen.grpcEnabled && serving) {
    await firstPublish
    // The port is bound now; grpc-js and the .proto load on its first connection (agent/grpc-listener.ts).
    const loadGrpc = async (): Promise<GrpcBackend> => {
      const { createGrpcServer, grpcBackend } = await import('./grpc-server.js')
      return grpcBackend(createGrpcServer({ served, board, checkToken, metrics, audit, trail, limits: config.limits, watchers, waiters }))
    }
    // The .proto is read on the first connection; one the install lacks fails the start now, not every call later.
    try {
      accessSync(PROTO_FILE, constants.R_OK)
    } catch (err) {
      await failStart()
      throw new SidekeyError('SIDEKEY_E_CONFIG', `the gRPC API's ${PROTO_FILE} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): the install is incomplete; use the complete image, or set listen.grpcEnabled to false`, { field: 'listen.grpcEnabled' }, { cause: err })
    }
    try {
      grpc = await listenGrpc(config.listen.host, config.listen.grpc, loadGrpc, (err) => logger.error({ err: err.message }, 'local gRPC server error'), config.limits.connections)
    } catch (err) {
      await failStart()
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.listen.grpc: cannot listen on ${config.listen.host}:${config.listen.grpc} (${(err as NodeJS.ErrnoException).code ?? 'error'}); pick a free port`, { field: 'listen.grpc' }, { cause: err })
    }
  }
  let metricsServer: Server | undefined
  let metricsPort: number | undefined
  if (config.listen.metrics !== undefined) {
    let ms: Server
    try {
      const { createMetricsServer } = await import('./metrics-server.js')
      ms = createMetricsServer(metrics)
    } catch (err) {
      // A chunk that cannot load (EMFILE, a broken install): stop what started, as for a taken port.
      await failStart()
      throw err
    }
    try {
      await listen(ms, config.listen.metrics, '0.0.0.0')
    } catch (err) {
      await failStart()
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.listen.metrics: cannot listen on 0.0.0.0:${config.listen.metrics} (${(err as NodeJS.ErrnoException).code ?? 'error'}); pick a free port (sidekey.dev/metrics-port)`, { field: 'listen.metrics' }, { cause: err })
    }
    ms.on('error', (err: NodeJS.ErrnoException) => logger.error({ code: err.code, err: err.message }, 'metrics listener error'))
    metricsServer = ms
    metricsPort = (ms.address() as AddressInfo).port
  }

  listening = true
  // Ready is announced only once the endpoint listens: a port clash must not
  // be preceded by a "ready" line (a previous run's files make the store ready early).
  const announceReady = (): void => {
    metrics.ready.set(1)
    logger.info({ secrets: served.specs.size }, 'all required secrets written; ready')
  }
  if (board.ready) announceReady()
  else board.once('ready', announceReady)
  logger.info({ http: httpPort !== undefined ? `${config.listen.host}:${httpPort}` : 'off', grpc: grpc !== undefined ? `${config.listen.host}:${grpc.port}` : 'off', metrics: metricsPort !== undefined ? `0.0.0.0:${metricsPort}` : 'off', secrets: config.secrets.length, dir: config.dir }, 'agent listening')

  let closed = false
  return {
    config, httpPort, grpcPort: grpc?.port, metricsPort, served, board, refresher, metrics, logger, synced,
    async removeFiles () { await writer.clear() },
    async close () {
      if (closed) return
      closed = true
      await abandon()
      await closeServer(http)
      await closeServer(metricsServer)
      if (grpc !== undefined) {
        await grpc.close()
        grpc.forceClose()
      }
      trail.flush()
    },
  }
}

/** The longest the local endpoint (HTTP and gRPC) waits for the first publish before it starts anyway. */
const GRPC_WAIT_MS = 1_000

/** A metric label for a backend request: the API call, without a path (bounded, and a path is data). */
function opLabel (op: string): string {
  return op.includes('/') ? (op.split(' ')[0] ?? 'request') : op
}

/** Stops a listener and the connections it has, busy ones too (a watch, a long-poll): its close() alone keeps those. */
async function closeServer (s: Server | undefined): Promise<void> {
  if (s === undefined) return
  s.closeAllConnections()
  await new Promise<void>((resolve) => s.close(() => resolve()))
}
