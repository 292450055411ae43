// The gRPC port, bound at start, with the gRPC server behind it loaded on the
// first connection. grpc-js, protobufjs and the parsed .proto are about 6.5 MiB
// of the agent's resident memory (1 Vault secret, Node 24: steady RSS 69.9 ->
// 63.4 MiB without them), and most pods never call the gRPC API: until one
// does, the port is a plain TCP listener. The first connection waits for the
// load (tens of ms); every connection is then handed to the server as it is
// accepted (grpc-js's connection injector: the same HTTP/2 server, options and
// handlers as a bound port).
import { createServer, type Server, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { listen } from '../core/listen.js'

/** The gRPC API's .proto, read when the server loads (`<root>/proto`: /app/proto in the image; dist/bundle/ and dist/agent/ sit at the same depth). */
export const PROTO_FILE = fileURLToPath(new URL('../../proto/sidekey/v1/secrets.proto', import.meta.url))

/** What the first connection loads: a gRPC server and where its connections go. */
export interface GrpcBackend {
  readonly inject: (socket: Socket) => void
  /** Graceful: waits for the calls in flight. */
  readonly shutdown: () => Promise<void>
  readonly forceShutdown: () => void
}

export interface GrpcListener {
  readonly port: number
  /** Stops accepting, then lets the calls in flight finish (a server loaded meanwhile too). */
  close: () => Promise<void>
  /** Stops accepting and cuts every connection at once. */
  forceClose: () => void
}

/**
 * Binds the port; `maxConnections` caps its connections (limits.connections, as
 * for the HTTP API): the listener counts the sockets it handed to grpc-js until
 * they close, and refuses more, while the server loads and after.
 */
export async function listenGrpc (host: string, port: number, load: () => Promise<GrpcBackend>, onError: (err: Error) => void, maxConnections?: number): Promise<GrpcListener> {
  let backend: Promise<GrpcBackend> | undefined
  let loaded: GrpcBackend | undefined
  // Accepted before the server is loaded: handed over once it is, destroyed if the load fails or the agent stops.
  const pending = new Set<Socket>()
  const backendFor = async (): Promise<GrpcBackend> => {
    backend ??= load().then((b) => { loaded = b; return b }, (err: unknown) => {
      // The next connection tries again (a load can fail for a passing cause: EMFILE).
      backend = undefined
      throw err
    })
    return await backend
  }
  const server: Server = createServer((socket) => {
    if (loaded !== undefined) { loaded.inject(socket); return }
    pending.add(socket)
    socket.on('error', () => socket.destroy())
    socket.once('close', () => pending.delete(socket))
    backendFor().then((b) => {
      if (!pending.delete(socket) || socket.destroyed) return
      b.inject(socket)
    }, (err: unknown) => {
      onError(err as Error)
      socket.destroy()
    })
  })
  if (maxConnections !== undefined) server.maxConnections = maxConnections
  await listen(server, port, host)
  // After listen, an accept error (EMFILE) is logged, not fatal.
  server.on('error', onError)
  const stopAccepting = (): void => {
    server.close()
    for (const s of pending) s.destroy()
    pending.clear()
  }
  return {
    port: (server.address() as { port: number }).port,
    async close () {
      stopAccepting()
      const b = loaded ?? await backend?.catch(() => undefined)
      await b?.shutdown()
    },
    forceClose () {
      stopAccepting()
      loaded?.forceShutdown()
      void backend?.then((b) => b.forceShutdown(), () => {})
    },
  }
}
