// Writes the whole set of secret files atomically and together, the way
// kubelet's AtomicWriter does:
//   dir/..2026_11_23_10_00_00.123_ab12/   a new timestamped dir with every file
//   dir/..data -> ..2026_...              one rename swaps the whole set
//   dir/<name> -> ..data/<name>           stable per-name links
// A reader that opens dir/<name> always gets a complete file, and a reader that
// resolves ..data once sees one consistent set. The previous generation is
// kept until the next write so a reader mid-way through it is not cut off.
import { mkdir, writeFile, symlink, rename, readlink, readdir, rm, chmod, chown, readFile, lstat } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { SidekeyError } from './errors.js'

export const DATA_LINK = '..data'
export const META_FILE = '.sidekey-meta.json'

export interface FileEntry {
  readonly name: string
  readonly bytes: Buffer
  readonly mode: number
  readonly version: string
  readonly updatedAt: number
}

export interface DiskEntry { readonly name: string, readonly bytes: Buffer, readonly version: string, readonly updatedAt: number }

function stamp (): string {
  const d = new Date()
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}_${randomBytes(3).toString('hex')}`
}

export class AtomicWriter {
  readonly dir: string
  readonly #owner: { uid?: number, gid?: number } | undefined
  #links = new Set<string>()
  #chownWarned = false
  onChownError: ((err: unknown) => void) | undefined

  constructor (dir: string, owner?: { readonly uid?: number, readonly gid?: number }) {
    this.dir = dir
    this.#owner = owner
  }

  async #own (path: string): Promise<void> {
    if (this.#owner === undefined) return
    try {
      await chown(path, this.#owner.uid ?? -1, this.#owner.gid ?? -1)
    } catch (err) {
      if (!this.#chownWarned) this.onChownError?.(err)
      this.#chownWarned = true
    }
  }

  /** Replaces the full set of files with `entries`. */
  async write (entries: readonly FileEntry[]): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o755 })
      const gen = stamp()
      const genDir = join(this.dir, gen)
      await mkdir(genDir, { mode: 0o755 })
      await this.#own(genDir)
      const meta: Record<string, { version: string, updatedAt: number }> = {}
      await Promise.all(entries.map(async (e) => {
        const p = join(genDir, e.name)
        await writeFile(p, e.bytes, { mode: e.mode, flag: 'wx' })
        await chmod(p, e.mode) // the umask must not widen or narrow the requested mode
        await this.#own(p)
        meta[e.name] = { version: e.version, updatedAt: e.updatedAt }
      }))
      await writeFile(join(genDir, META_FILE), JSON.stringify(meta), { mode: 0o444 })

      const previous = await this.#currentGen()
      const tmpLink = join(this.dir, `..data_tmp_${randomBytes(4).toString('hex')}`)
      await symlink(gen, tmpLink)
      await rename(tmpLink, join(this.dir, DATA_LINK))

      const names = new Set(entries.map((e) => e.name))
      for (const name of names) {
        if (this.#links.has(name)) continue
        const tmp = join(this.dir, `..link_tmp_${randomBytes(4).toString('hex')}`)
        await symlink(join(DATA_LINK, name), tmp)
        await rename(tmp, join(this.dir, name))
        this.#links.add(name)
      }
      for (const name of this.#links) {
        if (names.has(name)) continue
        await rm(join(this.dir, name), { force: true })
        this.#links.delete(name)
      }
      await this.#prune(new Set([gen, previous].filter((g): g is string => g !== undefined)))
    } catch (err) {
      throw new SidekeyError('SIDEKEY_E_WRITE', `cannot write secrets to ${this.dir} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check that the directory is writable by the agent`, { dir: this.dir }, { cause: err })
    }
  }

  async #currentGen (): Promise<string | undefined> {
    try {
      return await readlink(join(this.dir, DATA_LINK))
    } catch {
      return undefined
    }
  }

  async #prune (keep: Set<string>): Promise<void> {
    for (const entry of await readdir(this.dir)) {
      if (entry.startsWith('..') && entry !== DATA_LINK && !keep.has(entry) && /^\.\.\d{4}_/.test(entry)) {
        await rm(join(this.dir, entry), { recursive: true, force: true })
      }
    }
  }

  /** Reads the set a previous run left (restart: serve it while backends are slow). */
  async readExisting (): Promise<DiskEntry[]> {
    const gen = await this.#currentGen()
    if (gen === undefined) return []
    const genDir = join(this.dir, gen)
    let meta: Record<string, { version: string, updatedAt: number }>
    try {
      meta = JSON.parse(await readFile(join(genDir, META_FILE), 'utf8')) as typeof meta
    } catch {
      return []
    }
    const out: DiskEntry[] = []
    for (const [name, m] of Object.entries(meta)) {
      try {
        out.push({ name, bytes: await readFile(join(genDir, name)), version: m.version, updatedAt: m.updatedAt })
        const link = await lstat(join(this.dir, name)).catch(() => undefined)
        if (link?.isSymbolicLink() === true) this.#links.add(name)
      } catch {
        // a file missing from a generation is skipped, the backend provides it
      }
    }
    return out
  }

  /**
   * Removes every file this writer manages (per-name links, `..data`, the
   * generations): local runs on a laptop must not leave plaintext behind.
   * Other entries in the directory are left alone.
   */
  async clear (): Promise<void> {
    let entries: string[]
    try {
      entries = await readdir(this.dir)
    } catch {
      return
    }
    for (const entry of entries) {
      const path = join(this.dir, entry)
      if (entry === DATA_LINK || /^\.\.\d{4}_/.test(entry)) {
        await rm(path, { recursive: true, force: true })
        continue
      }
      const target = await readlink(path).catch(() => undefined)
      if (target !== undefined && target.startsWith(DATA_LINK + '/')) await rm(path, { force: true })
    }
    this.#links.clear()
  }
}
