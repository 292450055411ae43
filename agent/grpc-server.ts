// The local gRPC endpoint (proto/sidekey/v1/secrets.proto), same rules as the
// HTTP one: 127.0.0.1 only, token in metadata, values only in Get.
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import type { Logger } from 'pino'
import type { ProtoGrpcType } from '../proto/gen/secrets.js'
import type { SecretsHandlers } from '../proto/gen/sidekey/v1/Secrets.js'
import type { SecretEvent } from '../proto/gen/sidekey/v1/SecretEvent.js'
import type { AgentMetrics } from './metrics.js'
import type { SecretEntry, SecretStore } from './secret-store.js'
import { presentedToken } from './access-token.js'

export const PROTO_FILE = fileURLToPath(new URL('../../proto/sidekey/v1/secrets.proto', import.meta.url))

export function loadProto (): ProtoGrpcType {
  const def = protoLoader.loadSync(PROTO_FILE, { longs: String, enums: String, defaults: true, oneofs: true })
  return grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType
}

export interface GrpcServerOptions {
  readonly store: SecretStore
  readonly checkToken: (t: string | undefined) => 'ok' | 'missing' | 'wrong'
  readonly metrics: AgentMetrics
  readonly audit: Logger
}

const MAX_WAIT_MS = 300_000

function authorize (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, check: GrpcServerOptions['checkToken']): grpc.ServiceError | undefined {
  const md = call.metadata
  const tok = presentedToken(md.get('x-sidekey-token')[0]?.toString(), md.get('authorization')[0]?.toString())
  const r = check(tok)
  if (r === 'ok') return undefined
  const err = new Error(r === 'missing'
    ? 'SIDEKEY_E_UNAUTHENTICATED: send the token from SIDEKEY_TOKEN_FILE in metadata x-sidekey-token'
    : 'SIDEKEY_E_FORBIDDEN: the token does not match; read it again from SIDEKEY_TOKEN_FILE') as grpc.ServiceError
  err.code = r === 'missing' ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED
  return err
}

function fail (code: grpc.status, message: string): grpc.ServiceError {
  const err = new Error(message) as grpc.ServiceError
  err.code = code
  return err
}

const event = (kind: 'CURRENT' | 'CHANGED', e: SecretEntry): SecretEvent => ({ name: e.name, version: e.version, updatedAt: new Date(e.updatedAt).toISOString(), kind })

export function createGrpcServer (o: GrpcServerOptions): grpc.Server {
  const { store, metrics, audit } = o
  const proto = loadProto()
  const server = new grpc.Server()
  const record = (call: { getPeer: () => string }, route: string, status: string, secret?: string): void => {
    metrics.requests.inc({ api: 'grpc', route, status })
    const spec = secret !== undefined ? store.specs.get(secret) : undefined
    audit.info({ audit: true, api: 'grpc', caller: call.getPeer(), route, secret, refs: spec?.refs.map((r) => r.raw), status }, 'access')
  }
  const handlers: SecretsHandlers = {
    Get (call, cb) {
      const denied = authorize(call, o.checkToken)
      if (denied !== undefined) {
        record(call, 'Get', grpc.status[denied.code])
        return cb(denied)
      }
      const { name, ifNoneMatch, waitMs } = call.request
      if (!store.specs.has(name)) {
        record(call, 'Get', 'NOT_FOUND', name)
        return cb(fail(grpc.status.NOT_FOUND, `SIDEKEY_E_SECRET_UNKNOWN: no secret named "${name}"; List returns the names`))
      }
      const answer = (e: SecretEntry | undefined): void => {
        if (e === undefined) {
          record(call, 'Get', 'UNAVAILABLE', name)
          return cb(fail(grpc.status.UNAVAILABLE, `SIDEKEY_E_NOT_READY: secret "${name}" has not been fetched yet; retry or set wait_ms`))
        }
        const notModified = ifNoneMatch !== '' && ifNoneMatch === e.version
        record(call, 'Get', notModified ? 'NOT_MODIFIED' : 'OK', name)
        cb(null, { name, version: e.version, updatedAt: new Date(e.updatedAt).toISOString(), notModified, value: notModified ? Buffer.alloc(0) : e.value })
      }
      const cur = store.get(name)
      if (waitMs > 0 && (cur === undefined || cur.version === ifNoneMatch)) {
        const ac = new AbortController()
        call.once('cancelled', () => ac.abort())
        store.waitForChange(name, cur?.version, Math.min(waitMs, MAX_WAIT_MS), ac.signal).then(answer, () => answer(store.get(name)))
        return
      }
      answer(cur)
    },
    List (call, cb) {
      const denied = authorize(call, o.checkToken)
      if (denied !== undefined) {
        record(call, 'List', grpc.status[denied.code])
        return cb(denied)
      }
      record(call, 'List', 'OK')
      cb(null, {
        secrets: store.status().map((s) => ({ name: s.name, version: s.version ?? '', updatedAt: s.updatedAt ?? '', refs: [...s.refs], ready: s.version !== undefined, errorCode: s.error?.code ?? '' })),
      })
    },
    Watch (call) {
      const denied = authorize(call, o.checkToken)
      if (denied !== undefined) {
        record(call, 'Watch', grpc.status[denied.code])
        call.emit('error', denied)
        return
      }
      const names = new Set(call.request.names)
      const wanted = (e: SecretEntry): boolean => names.size === 0 || names.has(e.name)
      record(call, 'Watch', 'OK')
      for (const e of store.entries()) if (wanted(e)) call.write(event('CURRENT', e))
      const onChange = (e: SecretEntry): void => { if (wanted(e)) call.write(event('CHANGED', e)) }
      store.on('change', onChange)
      const stop = (): void => { store.off('change', onChange) }
      call.once('cancelled', stop)
      call.once('close', stop)
    },
  }
  server.addService(proto.sidekey.v1.Secrets.service, handlers)
  return server
}

export async function bindGrpc (server: grpc.Server, port: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => err !== null ? reject(err) : resolve(bound))
  })
}
