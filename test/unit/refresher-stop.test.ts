// A stop ends backend calls in flight: the refresher hands one AbortSignal to
// every sync and aborts it on close(), so an agent stopping during a hung
// backend call does not wait for the call's timeout, and the abort is not
// reported as a backend error.
import t from 'tap'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { loadConfig } from '../../core/config/load.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import { createVaultProvider } from '../../agent/providers/vault.js'
import { Refresher } from '../../agent/refresher.js'
import { ServedSet } from '../../agent/served.js'
import { StatusBoard } from '../../agent/status-board.js'
import { Publisher } from '../../agent/publisher.js'
import { AtomicWriter } from '../../agent/writer.js'
import { createMetrics } from '../../agent/metrics.js'
import { captureLogger, eventually, startTestAgent, tempDir } from '../helpers/agent.js'

/** An HTTP server that takes every request and never answers: a hung Vault. */
async function hungBackend (t: { teardown: (fn: () => unknown) => void }): Promise<{ url: string, seen: IncomingMessage[], closed: string[] }> {
  const seen: IncomingMessage[] = []
  const closed: string[] = []
  const server = createServer((req) => {
    seen.push(req)
    req.socket.once('close', () => closed.push(req.url ?? ''))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, closed }
}

t.test('close() aborts the sync in flight (the provider stays open) and the abort is no backend error', async (t) => {
  const backend = await hungBackend(t)
  process.env.SIDEKEY_TEST_HUNG_TOKEN = 'hvs.not-a-real-token'
  const root = tempDir(t)
  const config = loadConfig({
    dir: join(root, 'secrets'),
    tokenFile: join(root, 'token'),
    stores: { vault: { type: 'vault', address: backend.url, tokenEnv: 'SIDEKEY_TEST_HUNG_TOKEN', timeout: '5m' } },
    secrets: [{ name: 'k', ref: 'vault:secret/data/app#k' }],
  })
  const logs: string[] = []
  const logger = captureLogger(logs)
  const provider = createVaultProvider(config.stores.vault as StoreConfigOf<'vault'>, { storeName: 'vault', logger, maxValueBytes: 1 << 20 })
  t.teardown(async () => { await provider.close?.() })
  const served = new ServedSet(config.secrets)
  const board = new StatusBoard(served)
  const refresher = new Refresher({
    config, served, board, logger,
    publisher: new Publisher(new AtomicWriter(config.dir), served),
    providers: new Map([['vault', provider]]),
    metrics: createMetrics({ defaultMetrics: false }),
    onRotate: () => {},
  })
  const started = refresher.start()
  await eventually(() => backend.seen.length > 0, 'the backend call to arrive')
  t.equal(backend.closed.length, 0, 'the call is in flight: the backend has not answered')

  await refresher.close()
  // The provider is not closed and its timeout is 5 minutes: only the stop's abort can end the call.
  await eventually(() => backend.closed.length > 0, 'the aborted call\'s connection to close', 20_000)
  t.same(backend.closed, ['/v1/secret/data/app'], 'the value read was the call in flight, and it ended')
  await started
  t.notOk(logs.some((l) => l.includes('secret refresh failed')), 'a stop is not logged as a backend failure')
  t.equal(board.status()[0]?.error, undefined, 'nor recorded as one')
  t.equal(served.get('k'), undefined, 'nothing was published')
})

t.test('stopping the agent during a hung backend call: close() returns, the call ends, no failure is reported', async (t) => {
  const backend = await hungBackend(t)
  process.env.SIDEKEY_TEST_HUNG_TOKEN = 'hvs.not-a-real-token'
  const h = await startTestAgent(t, {
    stores: { vault: { type: 'vault', address: backend.url, tokenEnv: 'SIDEKEY_TEST_HUNG_TOKEN', timeout: '5m' } },
    secrets: [{ name: 'k', ref: 'vault:secret/data/app#k' }],
  })
  await eventually(() => backend.seen.length > 0, 'the backend call to arrive')
  await h.agent.close()
  await eventually(() => backend.closed.length > 0, 'the call\'s connection to close', 20_000)
  await h.agent.synced
  t.notOk(h.logs.some((l) => l.includes('secret refresh failed')), 'a stop is not logged as a backend failure')
  t.equal(h.agent.board.status()[0]?.error, undefined, 'nor recorded as one')
})
