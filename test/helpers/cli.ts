// Runs the built `sidekey` CLI as a child process with stdout/stderr as pipes
// (as in a pod) and lets a test wait for lines as they arrive.
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'

export const BIN = join(fileURLToPath(new URL('../../../', import.meta.url)), 'dist/bin/sidekey.js')

export interface CliRun {
  readonly child: ChildProcess
  readonly out: string[]
  readonly err: string[]
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Resolves with the first stdout line (parsed JSON when it is) matching, or rejects after ms. */
  waitLine (pred: (line: string) => boolean, ms: number, stream?: 'out' | 'err'): Promise<string>
}

export function runCli (t: Test, args: string[], env: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const out: string[] = []
  const err: string[] = []
  const waiters = new Set<() => void>()
  const collect = (into: string[]) => {
    let rest = ''
    return (chunk: Buffer): void => {
      const parts = (rest + chunk.toString('utf8')).split('\n')
      rest = parts.pop() ?? ''
      into.push(...parts)
      for (const w of waiters) w()
    }
  }
  child.stdout?.on('data', collect(out))
  child.stderr?.on('data', collect(err))
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return {
    child, out, err, exited,
    async waitLine (pred, ms, stream = 'out') {
      const lines = stream === 'out' ? out : err
      return await new Promise<string>((resolve, reject) => {
        const check = (): void => {
          const hit = lines.find(pred)
          if (hit !== undefined) { waiters.delete(check); clearTimeout(timer); resolve(hit) }
        }
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`no matching ${stream} line within ${ms} ms; got:\n${lines.join('\n')}`)) }, ms)
        waiters.add(check)
        check()
      })
    },
  }
}
