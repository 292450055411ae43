// `sidekey get`'s transport (undici, one connection, closed before exit): the
// command exits on its own even though the server keeps the connection alive,
// sends the token header, and says what went wrong when nothing listens.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'sidekey-cli-get-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const token = randomBytes(16).toString('hex')
const tokenFile = join(dir, 'token')
writeFileSync(tokenFile, token + '\n')
const value = 'sk-cli-' + randomBytes(8).toString('hex')

t.test('a secret over a keep-alive connection; the command still exits', async (t) => {
  let sockets = 0
  let seenToken = ''
  const srv = createServer((req, res) => {
    seenToken = String(req.headers['x-sidekey-token'] ?? '')
    res.setHeader('x-sidekey-version', '3')
    res.end(value + '\n') // Node keeps the connection open (keep-alive) after this
  })
  srv.keepAliveTimeout = 600_000
  srv.on('connection', () => { sockets++ })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { srv.closeAllConnections(); await new Promise<void>((resolve) => srv.close(() => resolve())) })
  const run = runCli(t, ['get', 'openai'], { SIDEKEY_ADDR: `127.0.0.1:${(srv.address() as AddressInfo).port}`, SIDEKEY_TOKEN_FILE: tokenFile })
  const { code } = await run.exited
  t.equal(code, 0, 'exit 0, without waiting for the server to drop the connection')
  t.same(run.out, [value], 'the value on stdout')
  t.equal(seenToken, token, 'X-Sidekey-Token from SIDEKEY_TOKEN_FILE')
  t.equal(sockets, 1)
})

t.test('nothing listens: SIDEKEY_E_CLIENT with the socket error, no token', async (t) => {
  const dead = createServer()
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
  const port = (dead.address() as AddressInfo).port
  await new Promise<void>((resolve) => dead.close(() => resolve()))
  const run = runCli(t, ['get', 'openai'], { SIDEKEY_ADDR: `http://127.0.0.1:${port}`, SIDEKEY_TOKEN_FILE: tokenFile })
  const { code } = await run.exited
  t.equal(code, 1)
  t.equal(run.err.join('\n'), `sidekey: SIDEKEY_E_CLIENT: cannot reach the agent at http://127.0.0.1:${port} (ECONNREFUSED); is the sidekey-agent container running?`)
  t.notOk(run.err.join('\n').includes(token), 'the token is not in the error')
})
