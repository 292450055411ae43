// Tools the tests need that are built on first use and cached by version (like the test servers).
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { repoRoot } from './testenv.js'

/**
 * The path of helm (SIDEKEY_HELM, or scripts/helm: built from its Go module into
 * ~/.cache/sidekey/tools on first use, several minutes; cached after). Rejects naming the reason.
 */
export async function ensureHelm (): Promise<string> {
  if (process.env['SIDEKEY_HELM'] !== undefined) return process.env['SIDEKEY_HELM']
  try {
    const { stdout } = await promisify(execFile)(join(repoRoot(), 'scripts', 'helm'), [], { maxBuffer: 1 << 20 })
    return stdout.trim()
  } catch (err) {
    throw new Error(`scripts/helm could not build helm: ${String((err as { stderr?: string }).stderr ?? (err as Error).message).slice(-2000)}`)
  }
}
