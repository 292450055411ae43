// Binding a listener (the agent's HTTP, gRPC and metrics ports, the webhook).
import type { Server } from 'node:net'

/**
 * Binds `server` to host:port. A bind error (EADDRINUSE, EACCES) rejects, and
 * the listener that caught it is removed once bound: later errors (an accept
 * failing under EMFILE) go to the caller's own 'error' handler.
 */
export async function listen (server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
}
