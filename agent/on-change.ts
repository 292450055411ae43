// Tells the app a secret rotated, once per swap of the files:
//   http:POST http://127.0.0.1:8080/reload   -> JSON {secrets:[{name,version}]}
//   signal:HUP:<pid or process name>         -> kill(pid, SIGHUP)
// Finding a process by name needs a shared process namespace in the pod.
// HTTP hooks go through node:http (agent/http-client.ts): one keep-alive pool,
// at most 2 connections per app origin, 5 s connect/headers/body timeouts.
// The client loads with the first http hook's first notification, not before.
import { readdir, readFile } from './fs-async.js'
import type { Logger } from 'pino'
import type { OnChangeSpec } from '../core/config/load.js'
import type { HttpClient, PoolOptions } from './http-client.js'
import type { AgentMetrics } from './metrics.js'
import type { ServedSecret } from './served.js'

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

/** POSTs, retrying transport failures and 5xx; a 4xx is the app's answer and final. */
async function postWithRetry (client: HttpClient, url: string, body: string, attempts: number, backoffMs: number): Promise<void> {
  let last: unknown
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** (i - 1)))
    let status: number
    try {
      status = (await client.request({ method: 'POST', url, body, headers: { 'content-type': 'application/json' } })).status
    } catch (err) {
      last = err
      continue
    }
    if (status < 400) return
    if (status < 500) throw new Error(`the app answered ${status}`)
    last = new Error(`the app answered ${status}`)
  }
  throw new Error(`${(last as Error).message}, after ${attempts} attempts`)
}

export interface NotifierOptions {
  /** Timeouts and pool size of the notifier's keep-alive pool (one for all http hooks). */
  readonly http?: PoolOptions
  readonly attempts?: number
  readonly backoffMs?: number
  /** Loads the transport (default: `import('./http-client.js')`); a failed load is tried again at the next notification. */
  readonly loadHttpClient?: () => Promise<{ HttpClient: typeof HttpClient }>
}

export interface Notifier {
  (changed: readonly ServedSecret[]): Promise<void>
  close: () => Promise<void>
}

export function createNotifier (specs: readonly OnChangeSpec[], logger: Logger, metrics: AgentMetrics, opts: NotifierOptions = {}): Notifier {
  // One keep-alive pool for every http hook: a rotation reuses the connection
  // the previous one opened, and a hung app holds at most `connections` sockets.
  // A load that failed (EMFILE, ENOMEM...) is not kept: the next notification loads again.
  let client: Promise<HttpClient> | undefined
  const load = opts.loadHttpClient ?? (async () => await import('./http-client.js'))
  const pool = async (): Promise<HttpClient> => await (client ??= load()
    .then(({ HttpClient }) => new HttpClient({ connections: 2, connectTimeoutMs: 5_000, headersTimeoutMs: 5_000, bodyTimeoutMs: 5_000, ...opts.http }))
    .catch((err: unknown) => { client = undefined; throw err }))
  const attempts = opts.attempts ?? 3
  const backoffMs = opts.backoffMs ?? 200
  const notify = async (changed: readonly ServedSecret[]): Promise<void> => {
    const body = JSON.stringify({ secrets: changed.map((e) => ({ name: e.name, version: e.version })) })
    await Promise.all(specs.map(async (spec) => {
      try {
        if (spec.kind === 'http') {
          await postWithRetry(await pool(), spec.url, body, attempts, backoffMs)
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
  // On shutdown a notification still in flight is moot: the connections close now.
  return Object.assign(notify, { close: async () => { if (client !== undefined) await (await client.catch(() => undefined))?.destroy() } })
}
