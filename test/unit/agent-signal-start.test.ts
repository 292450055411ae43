// A SIGTERM that comes while the agent is still starting (its first fetch in
// flight: the kubelet deletes a pod whenever it is deleted) stops the agent
// as one that came later does: the "stopping" line, what ran closed, exit 0.
// Before, the handler went in only once the start was over, and a signal
// before that took Node's default: the process died by the signal.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { tempDir } from '../helpers/agent.js'

/** Starts an agent whose first fetch hangs, sends SIGTERM when the fetch arrives; the exit, the output, and whether the start was still under way. */
async function signalDuringStart (t: Test): Promise<{ code: number | null, signal: NodeJS.Signals | null, out: string, duringStart: boolean }> {
  const dir = tempDir(t)
  let arrived: () => void = () => {}
  const fetched = new Promise<void>((resolve) => { arrived = resolve })
  // A Vault that never answers: the agent's start waits on its first fetch (up to GRPC_WAIT_MS, 1 s).
  const vault = createServer(() => { arrived() })
  await new Promise<void>((resolve) => vault.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { vault.closeAllConnections(); await new Promise<void>((resolve) => vault.close(() => resolve())) })
  const config = {
    dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0, grpc: 0 }, logLevel: 'info',
    stores: { vault: { type: 'vault', address: `http://127.0.0.1:${(vault.address() as AddressInfo).port}`, tokenEnv: 'SK_SIGNAL_TOKEN' } },
    secrets: [{ name: 'a', ref: 'vault:secret/data/a#k' }],
  }
  const child = spawn(process.execPath, [join(process.cwd(), 'dist/bin/sidekey.js'), 'agent'], {
    env: { ...process.env, SK_SIGNAL_TOKEN: 'signal-token-6b2e', SIDEKEY_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => { child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])))
  await fetched
  const killedAt = Date.now()
  child.kill('SIGTERM')
  const [code, signal] = await exited
  // The start was under way if it ended (its "agent listening" line, pino's time) after the signal, or never.
  const listening = out.split('\n').find((l) => l.includes('"msg":"agent listening"'))
  const duringStart = listening === undefined || Date.parse((JSON.parse(listening) as { time: string }).time) >= killedAt
  return { code, signal, out, duringStart }
}

t.test('a SIGTERM during the first fetch stops the agent cleanly', async (t) => {
  // The start waits at most 1 s for the fetch: on a machine too busy to signal within it, try again.
  let r = await signalDuringStart(t)
  for (let i = 0; i < 4 && !r.duringStart; i++) r = await signalDuringStart(t)
  t.ok(r.duringStart, 'the signal came while the agent was starting')
  t.equal(r.signal, null, 'not killed by the signal')
  t.equal(r.code, 0, 'exits 0')
  t.match(r.out, /"signal":"SIGTERM".*"msg":"stopping"|"msg":"stopping".*"signal":"SIGTERM"/, 'the stopping line names the signal')
  t.notMatch(r.out, /signal-token-6b2e/, 'the token is in no line')
})
