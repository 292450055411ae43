// The metrics listener's code is a chunk loaded when listen.metrics is set.
// If it cannot load (EMFILE, a broken install), startAgent fails like a taken
// port does: what it had started (the local endpoint, the refresher) stops,
// and the error is the caller's. It used to leave them running.
import t from 'tap'
import { createServer } from 'node:net'
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
