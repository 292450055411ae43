// An HTTP CONNECT proxy on 127.0.0.1 for tests of a client behind HTTPS_PROXY:
// each tunnel's target (host:port) is recorded; every socket is closed when the test ends.
import { createServer, type IncomingMessage } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Test } from 'tap'

export interface ConnectProxy {
  /** http://127.0.0.1:<port>, for HTTPS_PROXY. */
  readonly url: string
  /** The target of each CONNECT, in order. */
  readonly tunnels: string[]
}

export async function startConnectProxy (t: Test): Promise<ConnectProxy> {
  const tunnels: string[] = []
  // A tunnel's sockets are the proxy's own once it answers CONNECT (the server no longer tracks them): closed here at the end.
  const sockets = new Set<Duplex>()
  const proxy = createServer()
  proxy.on('connect', (req: IncomingMessage, client: Duplex, head: Buffer) => {
    tunnels.push(req.url ?? '')
    const [host, port] = (req.url ?? '').split(':')
    sockets.add(client)
    const up = connect(Number(port), host ?? '', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      up.write(head)
      up.pipe(client)
      client.pipe(up)
    })
    sockets.add(up)
    up.on('error', () => { client.destroy() })
    client.on('error', () => { up.destroy() })
    // Either end closing closes the tunnel (a server keeps its side alive otherwise).
    up.on('close', () => { client.destroy() })
    client.on('close', () => { up.destroy() })
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    proxy.closeAllConnections()
    await new Promise<void>((resolve) => proxy.close(() => resolve()))
  })
  return { url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, tunnels }
}
