// The local gRPC endpoint (proto/sidekey/v1/secrets.proto), same rules as the
// HTTP one: 127.0.0.1 only, token in metadata, values only in Get.
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import type { Logger } from 'pino'
import type { ProtoGrpcType } from '../proto/gen/secrets.js'
import type { SecretsHandlers } from '../proto/gen/sidekey/v1/Secrets.js'
import type { SecretEvent } from '../proto/gen/sidekey/v1/SecretEvent.js'
import type { AgentMetrics } from './metrics.js'
import type { ServedSecret, ServedSet } from './served.js'
import type { StatusBoard } from './status-board.js'
import { presentedToken } from './access-token.js'
import { DEFAULT_LIMITS, SECRET_NAME_RE, Slots, shortName, type LocalLimits } from '../core/limits.js'
import type { AuditTrail } from './audit-trail.js'
import { grpcError, type GrpcErrorStatus } from './grpc-error.js'
import { PROTO_FILE, type GrpcBackend } from './grpc-listener.js'
import { isoTime } from '../core/utc-dates.js'


export function loadProto (): ProtoGrpcType {
  const def = protoLoader.loadSync(PROTO_FILE, { longs: String, enums: String, defaults: true, oneofs: true })
  return grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType
}

export interface GrpcServerOptions {
  /** The published generation the API serves. */
  readonly served: ServedSet
  /** Readiness and per-secret status. */
  readonly board: StatusBoard
  readonly checkToken: (t: string | undefined) => 'ok' | 'missing' | 'wrong'
  readonly metrics: AgentMetrics
  readonly audit: Logger
  readonly trail: AuditTrail
  readonly limits?: LocalLimits
  /** Shared with the HTTP server: one cap on watches and one on long-polls across both APIs. */
  readonly watchers?: Slots
  readonly waiters?: Slots
}

const MAX_WAIT_MS = 300_000

function tokenError (r: 'missing' | 'wrong'): GrpcErrorStatus {
  return r === 'missing'
    ? grpcError('SIDEKEY_E_UNAUTHENTICATED', 'send the token from SIDEKEY_TOKEN_FILE in metadata x-sidekey-token')
    : grpcError('SIDEKEY_E_FORBIDDEN', 'the token does not match; read it again from SIDEKEY_TOKEN_FILE')
}

/**
 * Checks the token from the call's metadata, before grpc-js reads the request
 * message: a call without the right token is answered and its message never
 * decoded (the handlers below run only for authorized calls).
 */
function tokenInterceptor (check: GrpcServerOptions['checkToken'], onDenied: (peer: string, route: string, status: string) => void): grpc.ServerInterceptor {
  return (method, call) => new grpc.ServerInterceptingCall(call, {
    start (next) {
      next({
        onReceiveMetadata (md, mdNext) {
          const r = check(presentedToken(md.get('x-sidekey-token')[0]?.toString(), md.get('authorization')[0]?.toString()))
          if (r === 'ok') { mdNext(md); return }
          const err = tokenError(r)
          onDenied(call.getPeer(), method.path.slice(method.path.lastIndexOf('/') + 1), err.name)
          call.sendStatus(err)
        },
      })
    },
  })
}

const event = (kind: 'CURRENT' | 'CHANGED', e: ServedSecret): SecretEvent => ({ name: e.name, version: e.version, updatedAt: isoTime(e.updatedAt), kind })

export function createGrpcServer (o: GrpcServerOptions): grpc.Server {
  const { served, board, metrics } = o
  const proto = loadProto()
  const limits = o.limits ?? DEFAULT_LIMITS
  const watchers = o.watchers ?? new Slots(limits.watchers)
  const waiters = o.waiters ?? new Slots(limits.waiters)
  const denied = (peer: string, route: string, status: string): void => {
    metrics.countRequest('grpc', route, status)
    o.trail.record({ api: 'grpc', caller: peer, route, status })
  }
  const server = new grpc.Server({
    interceptors: [tokenInterceptor(o.checkToken, denied)],
    'grpc.max_receive_message_length': limits.grpcMaxMessageBytes,
    'grpc.max_concurrent_streams': limits.grpcMaxConcurrentStreams,
  })
  const record = (call: { getPeer: () => string }, route: string, status: string, secret?: string): void => {
    metrics.countRequest('grpc', route, status)
    const version = status === 'OK' && secret !== undefined ? served.get(secret)?.version : undefined
    o.trail.record({ api: 'grpc', caller: call.getPeer(), route, status, secret, version })
  }
  const handlers: SecretsHandlers = {
    Get (call, cb) {
      const { name, ifNoneMatch, waitMs } = call.request
      const refuse = (err: GrpcErrorStatus, secret: string): void => { record(call, 'Get', err.name, secret); cb(err) }
      if (!SECRET_NAME_RE.test(name)) {
        return refuse(grpcError('SIDEKEY_E_BAD_REQUEST', `the name (${name.length} chars, not shown) is not a secret name: letters, digits, ".", "_", "-", at most 253`), `(invalid, ${name.length} chars)`)
      }
      if (!served.specs.has(name)) {
        return refuse(grpcError('SIDEKEY_E_SECRET_UNKNOWN', `no secret named "${shortName(name)}"; List returns the names`), name)
      }
      const answer = (e: ServedSecret | undefined): void => {
        if (e === undefined) {
          return refuse(grpcError('SIDEKEY_E_NOT_READY', `secret "${name}" has not been fetched yet; retry or set wait_ms`), name)
        }
        const notModified = ifNoneMatch !== '' && ifNoneMatch === e.version
        record(call, 'Get', notModified ? 'NOT_MODIFIED' : 'OK', name)
        cb(null, { name, version: e.version, updatedAt: isoTime(e.updatedAt), notModified, value: notModified ? Buffer.alloc(0) : e.value })
      }
      const cur = served.get(name)
      if (waitMs > 0 && (cur === undefined || cur.version === ifNoneMatch)) {
        const release = waiters.take()
        if (release === undefined) {
          return refuse(grpcError('SIDEKEY_E_CAPACITY', `${waiters.max} long-polls are waiting, the agent's limit (limits.waiters); retry without wait_ms or later`), name)
        }
        const ac = new AbortController()
        call.once('cancelled', () => ac.abort())
        served.waitForChange(name, cur?.version, Math.min(waitMs, MAX_WAIT_MS), ac.signal).then((e) => { release(); answer(e) }, () => { release(); answer(served.get(name)) })
        return
      }
      answer(cur)
    },
    List (call, cb) {
      record(call, 'List', 'OK')
      cb(null, {
        secrets: board.status().map((s) => ({ name: s.name, version: s.version ?? '', updatedAt: s.updatedAt ?? '', refs: [...s.refs], ready: s.version !== undefined, errorCode: s.error?.code ?? '' })),
      })
    },
    Watch (call) {
      const release = watchers.take()
      if (release === undefined) {
        const err = grpcError('SIDEKEY_E_CAPACITY', `${watchers.max} watches are open, the agent's limit (limits.watchers); close one or poll List`)
        record(call, 'Watch', err.name)
        call.emit('error', err)
        return
      }
      const names = new Set(call.request.names)
      const wanted = (e: ServedSecret): boolean => names.size === 0 || names.has(e.name)
      record(call, 'Watch', 'OK')
      for (const e of served.entries()) if (wanted(e)) call.write(event('CURRENT', e))
      const onChange = (e: ServedSecret): void => { if (wanted(e)) call.write(event('CHANGED', e)) }
      served.on('change', onChange)
      const stop = (): void => { served.off('change', onChange); release() }
      call.once('cancelled', stop)
      call.once('close', stop)
    },
  }
  server.addService(proto.sidekey.v1.Secrets.service, handlers)
  return server
}

/** The server behind agent/grpc-listener.ts's port: connections accepted there are handed to it as they are. */
export function grpcBackend (server: grpc.Server): GrpcBackend {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure())
  return {
    inject: (socket) => { injector.injectConnection(socket) },
    shutdown: async () => { await new Promise<void>((resolve) => server.tryShutdown(() => resolve())) },
    forceShutdown: () => { server.forceShutdown() },
  }
}
