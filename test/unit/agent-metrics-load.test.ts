// The metrics listener's code is a chunk loaded when listen.metrics is set.
// If it cannot load (EMFILE, a broken install), startAgent fails like a taken
// port does: what it had started (the local endpoint, the refresher) stops,
// and the error is the caller's. It used to leave them running, and then the
// connections the local endpoint had accepted open.
import t from 'tap'
import { EventEmitter, once } from 'node:events'
import { readFileSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { loadConfig } from '../../core/config/load.js'
import { freePort, tempDir } from '../helpers/agent.js'


async function canListen (port: number): Promise<boolean> {
  const s = createServer()
  const ok = await new Promise<boolean>((resolve) => {
    s.once('error', () => { resolve(false) })
    s.listen(port, '127.0.0.1', () => { resolve(true) })
  })
  if (ok) await new Promise<void>((resolve) => s.close(() => resolve()))
  return ok
}

t.test('a metrics chunk that cannot load stops what the agent had started', async (t) => {
  const { startAgent } = await t.mockImport<typeof import('../../agent/agent.js')>('../../agent/agent.js', {
    '../../agent/metrics-server.js': { get createMetricsServer () { throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }) } },
  })
  process.env.SK_METRICS_LOAD = 'metrics-load-value'
  const root = tempDir(t)
  const http = await freePort()
  const config = loadConfig({ dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), logLevel: 'silent', listen: { http, grpcEnabled: false, metrics: await freePort() }, secrets: [{ name: 'a', ref: 'env:SK_METRICS_LOAD' }] })
  const err = await startAgent(config, { defaultMetrics: false }).then(() => undefined, (e: unknown) => e as Error)
  t.match(err?.message, /EMFILE/, 'the load error is the caller\'s')
  t.ok(await canListen(http), 'the local endpoint\'s port is free again')
})

t.test('a failed start closes the connections its local endpoint had accepted', async (t) => {
  const http = await freePort()
  const root = tempDir(t)
  let client: Socket | undefined
  // A metrics listener whose port turns out taken while an app holds a watch open on the local endpoint.
  const fakeMetrics = (): EventEmitter => {
    const ms = new EventEmitter()
    Object.assign(ms, {
      listen: () => {
        const c = connect(http, '127.0.0.1')
        client = c
        const token = readFileSync(join(root, 'token'), 'utf8').trim()
        c.write(`GET /v1/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`)
        c.once('data', () => { ms.emit('error', Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' })) })
      },
    })
    return ms
  }
  const { startAgent } = await t.mockImport<typeof import('../../agent/agent.js')>('../../agent/agent.js', {
    '../../agent/metrics-server.js': { createMetricsServer: fakeMetrics },
  })
  process.env.SK_METRICS_LOAD = 'metrics-load-value'
  const config = loadConfig({ dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), logLevel: 'silent', listen: { http, grpcEnabled: false, metrics: await freePort() }, secrets: [{ name: 'a', ref: 'env:SK_METRICS_LOAD' }] })
  const err = await startAgent(config, { defaultMetrics: false }).then(() => undefined, (e: unknown) => e as Error)
  t.match(err?.message, /config\.listen\.metrics: cannot listen/, 'the taken port is the caller\'s error')
  const c = client as Socket
  t.teardown(() => { c.destroy() })
  // A server's close() keeps the connections that are busy: this watch (pinged every 15 s) would stay open for good.
  if (!c.destroyed) await once(c, 'close')
  t.pass('the watch\'s connection is closed')
})
