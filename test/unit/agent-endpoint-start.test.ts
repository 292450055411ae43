// A serving agent's local endpoint starts after its first publish (or after
// a second without one): the files do not wait for the HTTP server. Before
// that publish there is nothing to serve, and the startup probe fails either
// way; a previous run's files are served at once.
import t from 'tap'
import { createServer as createHttpServer } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../core/config/load.js'
import { startAgent } from '../../agent/agent.js'
import { captureLogger, freePort, tempDir } from '../helpers/agent.js'

const VALUE = 'endpoint-start-value-5d1c'


/** Resolves true when something accepts a connection on the port, false when it is refused. */
async function accepts (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

t.test('the files are written before the local HTTP endpoint listens', async (t) => {
  // A Vault that holds its first answer until the test lets it go.
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
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
  const root = tempDir(t)
  const port = await freePort()
  process.env.SK_ENDPOINT_TOKEN = 'test-token'
  const config = loadConfig({
    dir: join(root, 'secrets'), apiTokenFile: join(root, 'token'), listen: { http: port, grpcEnabled: false }, logLevel: 'debug',
    stores: { vault: { type: 'vault', address: `http://127.0.0.1:${(vault.address() as AddressInfo).port}`, tokenEnv: 'SK_ENDPOINT_TOKEN' } },
    secrets: [{ name: 'a', ref: 'vault:secret/data/a#k' }],
  })
  const logs: string[] = []
  const starting = startAgent(config, { logger: captureLogger(logs), defaultMetrics: false })
  await askedOnce
  t.notOk(await accepts(port), 'while the backend has not answered, nothing listens on the HTTP port')
  release()
  const agent = await starting
  t.teardown(async () => { await agent.close() })
  t.equal(readFileSync(join(root, 'secrets', 'a'), 'utf8'), VALUE, 'the file is written')
  t.equal(agent.httpPort, port)
  t.ok(await accepts(port), 'and the endpoint listens once startAgent returns')
  const ready = await fetch(`http://127.0.0.1:${port}/ready`)
  t.equal(ready.status, 200, '/ready')
  t.notOk(logs.join('\n').includes(VALUE), 'the value is in no log line')
})
