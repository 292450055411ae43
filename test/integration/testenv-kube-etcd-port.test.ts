// scripts/testenv's kube server starts its own etcd on a port free_port picked
// a moment before. A parallel test process can bind that port first: etcd then
// exits ("bind: address already in use") while the other process answers on
// the port. The script used to start kube-apiserver anyway, which failed half
// a minute later with "context deadline exceeded" (a CI run of stop 27), a
// message test/helpers/testenv.ts cannot tell from any other failure, so it
// never retried. The script now stops with etcd's own words, which the helper
// retries on. Here the port is pinned (SIDEKEY_TESTENV_ETCD_PORT) and taken by
// an HTTP server that answers everything with 200, as the other process did.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '../helpers/agent.js'
import { testenvScript } from '../helpers/testenv.js'

t.test('kube stops with etcd\'s bind error when its etcd port is taken, before any apiserver starts', async (t) => {
  const install = spawnSync(testenvScript(), ['install', 'kube'], { encoding: 'utf8' })
  if (install.status !== 0) throw new Error(`scripts/testenv install kube failed: ${install.stderr.slice(-2000)}`)

  const squatter = createServer((_req, res) => { res.end('{"health":"ok"}') })
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { squatter.closeAllConnections(); await new Promise<void>((resolve) => squatter.close(() => resolve())) })
  const port = (squatter.address() as AddressInfo).port

  const dir = tempDir(t)
  const child = spawn(testenvScript(), ['run', 'kube', dir, String(process.pid)], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SIDEKEY_TESTENV_ETCD_PORT: String(port) },
  })
  // The whole group (the script, etcd, an apiserver if one were started) goes with the test.
  t.teardown(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch { /* gone */ } })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))

  t.not(code, 0, 'the script fails')
  t.match(out, /etcd exited before it was ready/, 'it says etcd stopped')
  t.match(out, /address already in use/, 'with etcd\'s own bind error, which test/helpers/testenv.ts retries on')
  t.notOk(existsSync(join(dir, 'server.log')), 'no apiserver was started (its log was never opened)')
  t.match(readFileSync(join(dir, 'etcd.log'), 'utf8'), /address already in use/, 'etcd.log has the same error')
})
