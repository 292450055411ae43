// A serving agent's local endpoint starts after its first publish (or after
// a second without one): the files do not wait for the HTTP server. Before
// that publish there is nothing to serve, and the startup probe fails either
// way; a previous run's files are served at once.
import t, { type Test } from 'tap'
import { createServer as createHttpServer } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../core/config/load.js'
import { startAgent } from '../../agent/agent.js'
import { captureLogger, eventually, freePort, tempDir } from '../helpers/agent.js'

const VALUE = 'endpoint-start-value-5d1c'


/** Resolves true when something accepts a connection on the port, false when it is refused. */
async function accepts (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

/** A Vault whose answers wait until the test calls release(); hold() holds the next ones again. */
async function heldVault (t: Test): Promise<{ address: string, asked: Promise<void>, release: () => void, hold: () => void }> {
  let release: () => void = () => {}
  let held = new Promise<void>((resolve) => { release = resolve })
  let asked: () => void = () => {}
  const askedOnce = new Promise<void>((resolve) => { asked = resolve })
  const vault = createHttpServer((req, res) => {
    asked()
    void held.then(() => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ data: { data: { k: VALUE }, metadata: { version: 1 } } }))
    })
  })
  await new Promise<void>((resolve) => vault.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { vault.closeAllConnections(); await new Promise<void>((resolve) => vault.close(() => resolve())) })
  return {
    address: `http://127.0.0.1:${(vault.address() as AddressInfo).port}`,
    asked: askedOnce,
    release: () => { release() },
    hold: () => { held = new Promise<void>((resolve) => { release = resolve }) },
  }
}

t.test('the files are written before the local HTTP endpoint listens', async (t) => {
  // A Vault that holds its first answer until the test lets it go.
  const vault = await heldVault(t)
  const root = tempDir(t)
  const port = await freePort()
  process.env.SK_ENDPOINT_TOKEN = 'test-token'
  const config = loadConfig({
    dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), listen: { http: port, grpcEnabled: false }, logLevel: 'debug',
    stores: { vault: { type: 'vault', address: vault.address, tokenEnv: 'SK_ENDPOINT_TOKEN' } },
    secrets: [{ name: 'a', ref: 'vault:secret/data/a#k' }],
  })
  const logs: string[] = []
  const starting = startAgent(config, { logger: captureLogger(logs), defaultMetrics: false })
  await vault.asked
  t.notOk(await accepts(port), 'while the backend has not answered, nothing listens on the HTTP port')
  vault.release()
  const agent = await starting
  t.teardown(async () => { await agent.close() })
  t.equal(readFileSync(join(root, 'secrets', 'a'), 'utf8'), VALUE, 'the file is written')
  t.equal(agent.httpPort, port)
  t.ok(await accepts(port), 'and the endpoint listens once startAgent returns')
  const ready = await fetch(`http://127.0.0.1:${port}/ready`)
  t.equal(ready.status, 200, '/ready')
  t.notOk(logs.join('\n').includes(VALUE), 'the value is in no log line')
})

t.test('afterFirstSync (where the agent puts V8\'s tier-up thresholds back) waits for the first sync, not for the endpoint: a backend slower than the endpoint\'s wait, and a restart that adopted its files', async (t) => {
  // A Vault that answers only when the test lets it, after the endpoint started anyway (GRPC_WAIT_MS).
  const vault = await heldVault(t)
  const root = tempDir(t)
  process.env.SK_ENDPOINT_TOKEN = 'test-token'
  const config = loadConfig({
    dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), listen: { http: 0, grpcEnabled: false }, logLevel: 'debug',
    stores: { vault: { type: 'vault', address: vault.address, tokenEnv: 'SK_ENDPOINT_TOKEN' } },
    secrets: [{ name: 'a', ref: 'vault:secret/data/a#k' }],
  })
  for (const run of ['first start, the backend held past the endpoint\'s wait', 'a restart with the files of the first']) {
    const calls: boolean[] = []
    /** Whether the test has let the backend answer (afterFirstSync must not come before). */
    let released = false
    const agent = await startAgent(config, { logger: captureLogger([]), defaultMetrics: false, afterFirstSync: () => { calls.push(existsSync(join(root, 'secrets', 'a')) && readFileSync(join(root, 'secrets', 'a'), 'utf8') === VALUE && released) } })
    // The endpoint serves before the backend answered (at GRPC_WAIT_MS, or at once with adopted files).
    t.ok(agent.httpPort !== undefined, `${run}: the endpoint listens`)
    t.same(calls, [], `${run}: not called while the first sync waits on the backend`)
    released = true
    vault.release()
    await eventually(() => calls.length > 0, `${run}: afterFirstSync`)
    t.same(calls, [true], `${run}: called once, after the first sync's publish`)
    await agent.close()
    vault.hold()
  }
})
