// Tells the app a secret rotated, once per swap of the files:
//   http:POST http://127.0.0.1:8080/reload   -> JSON {secrets:[{name,version}]}
//   signal:HUP:<pid or process name>         -> kill(pid, SIGHUP)
// Finding a process by name needs a shared process namespace in the pod.
import { readdir, readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { OnChangeSpec } from './config/load.js'
import type { AgentMetrics } from './metrics.js'
import type { SecretEntry } from './secret-store.js'

/** Pids to signal for a target; never pid 1 (the pod's init or pause process) nor the agent itself. */
export async function findPids (name: string): Promise<number[]> {
  if (/^\d+$/.test(name)) return Number(name) > 1 && Number(name) !== process.pid ? [Number(name)] : []
  const pids: number[] = []
  for (const d of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid || Number(d) <= 1) continue
    try {
      const comm = (await readFile(`/proc/${d}/comm`, 'utf8')).trim()
      const argv = (await readFile(`/proc/${d}/cmdline`, 'utf8')).split('\0')
      const exe = argv[0]?.split('/').pop()
      if (comm === name || exe === name || argv.slice(1, 3).some((a) => a.split('/').pop() === name)) pids.push(Number(d))
    } catch {
      // the process exited while we looked
    }
  }
  return pids
}

/** POSTs, retrying connection errors and 5xx; a 4xx is the app's answer and final. */
async function postWithRetry (url: string, body: string, attempts: number): Promise<void> {
  let last: unknown
  for (let i = 0; i < attempts; i++) {
    let status: number
    try {
      const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5000) })
      await res.arrayBuffer()
      status = res.status
    } catch (err) {
      last = err
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** i))
      continue
    }
    if (status < 400) return
    if (status < 500) throw new Error(`the app answered ${status}`)
    last = new Error(`the app answered ${status}`)
    await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** i))
  }
  throw last
}

export function createNotifier (specs: readonly OnChangeSpec[], logger: Logger, metrics: AgentMetrics): (changed: readonly SecretEntry[]) => Promise<void> {
  return async (changed) => {
    const body = JSON.stringify({ secrets: changed.map((e) => ({ name: e.name, version: e.version })) })
    await Promise.all(specs.map(async (spec) => {
      try {
        if (spec.kind === 'http') {
          await postWithRetry(spec.url, body, 3)
        } else {
          const pids = await findPids(spec.target)
          if (pids.length === 0) throw new Error(`no process named ${spec.target}`)
          for (const pid of pids) process.kill(pid, spec.signal)
        }
        logger.info({ onChange: spec.raw, secrets: changed.map((e) => e.name) }, 'app notified of rotation')
      } catch (err) {
        metrics.onChangeErrors.inc({ kind: spec.kind })
        logger.warn({ code: 'SIDEKEY_E_ON_CHANGE', onChange: spec.raw, err: (err as Error).message }, 'could not notify the app of a rotation; check the onChange target')
      }
    }))
  }
}
