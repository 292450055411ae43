// Writes the whole set of secret files atomically and together, the way
// kubelet's AtomicWriter does:
//   dir/..2026_11_23_10_00_00.123_ab12/   a new timestamped dir with every file
//   dir/..data -> ..2026_...              one rename swaps the whole set
//   dir/<name> -> ..data/<name>           stable per-name links
// A reader that opens dir/<name> always gets a complete file, and a reader that
// resolves ..data once sees one consistent set. The previous generation is
// kept until the next write so a reader mid-way through it is not cut off,
// but only while the volume has room for another generation beside it.
//
// write(), in order:
//   (1) read the current generation from ..data (only a link of our own shape)
//   (2) remove every other ..<timestamp> dir: failed or stale generations of
//       this or an earlier run (the emptyDir outlives the container)
//   (3) refuse early, with the numbers, when the new set cannot fit
//   (4) write the new generation; on any error remove it before throwing;
//       at the same time, create the missing <name> links: a link to
//       ..data/<name> before ..data has <name> reads as no file, so every file
//       of a first write (or a new name) appears with the swap, not one by
//       one after it (100 links took 10-60 ms after the swap on a busy node)
//   (5) swap ..data, (6) create the links (4) could not, remove stale ones
//   (7) drop the previous generation when the next write would not fit beside it
// The files and links of (4) and (6) are made by synchronous calls, a slice
// of entries at a time: each promise-returning call is a trip through libuv's
// thread pool (writeFile alone is three). On a tmpfs (the pod's volume), 2
// cores, Node 24, the files and links of a first write of 100 secrets took
// 21-31 ms that way and take 7-9 ms in turn. Between slices the event loop
// runs, so a large set holds the local endpoint for one slice at most
// (SLICE files or SLICE_BYTES copied: a few ms on a tmpfs). A value over
// SYNC_MAX_BYTES is written through the thread pool as before: 64 values of
// 1 MiB copied in one slice held the loop ~30 ms (16 MiB values, the most
// maxValueBytes allows, would have held it half a second).
import { chmod, close, fstat, mkdir, writeFile, symlink, rename, readlink, readdir, readFile, rm, lstat, open, statfs } from './fs-async.js'
import { chmodSync, chownSync, constants, lstatSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { SidekeyError } from '../core/errors.js'

export const DATA_LINK = '..data'
export const META_FILE = '.sidekey-meta.json'

export interface FileEntry {
  readonly name: string
  readonly bytes: Buffer
  readonly mode: number
  readonly version: string
  readonly updatedAt: number
}

/** Only names of this shape are generations this writer made (and may remove). */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/
const GEN_RE = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{3}_[0-9a-f]{6}$/
/** Files (and links) made synchronously before the event loop gets a turn... */
const SLICE = 64
/** ...or bytes copied synchronously (a slice of big values would hold the loop for its whole size). */
const SLICE_BYTES = 1024 * 1024
/** A value over this goes through the thread pool (fs-async.ts): one copy of it alone would hold the loop. */
export const SYNC_MAX_BYTES = 64 * 1024
const yieldToLoop = async (): Promise<void> => { await new Promise((resolve) => setImmediate(resolve)) }
/** tmpfs allocates whole pages; a file costs at least one, plus its inode. */
const PAGE = 4096
const cost = (bytes: number): number => Math.ceil(bytes / PAGE) * PAGE + PAGE

/** Reads a regular file without following a symlink planted in its place. */
async function readNoFollow (path: string): Promise<Buffer> {
  const fd = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  try {
    if (!(await fstat(fd)).isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EINVAL' })
    return await readFile(fd)
  } finally {
    await close(fd)
  }
}

export interface DiskEntry { readonly name: string, readonly bytes: Buffer, readonly version: string, readonly updatedAt: number }

/**
 * join(dir, name) for one path segment: the same string (join's normalised
 * `dir`, a separator, the name) without normalising the whole path again for
 * every name. A first write of 100 secrets joined 400 paths, enough calls to
 * have V8 compile Node's normalizeString with TurboFan, whose code (some
 * MiB of the node binary) then stays resident for the agent's life. Anything
 * that is not one plain segment ('', '.', '..', a separator) goes through join.
 */
export function under (dir: string): (name: string) => string {
  const prefix = join(dir, 'x').slice(0, -1)
  return (name) => name === '' || name === '.' || name === '..' || /[\\/]/.test(name) ? join(dir, name) : prefix + name
}

/** join(DATA_LINK, name): a link's target */
const inData = under(DATA_LINK)

function stamp (): string {
  const d = new Date()
  const p = (n: number, w = 2): string => String(n).padStart(w, '0')
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}_${randomBytes(3).toString('hex')}`
}

export class AtomicWriter {
  readonly dir: string
  /** join(this.dir, name) */
  readonly #in: (name: string) => string
  readonly #owner: { uid?: number, gid?: number } | undefined
  #links = new Set<string>()
  #chownWarned = false
  onChownError: ((err: unknown) => void) | undefined

  constructor (dir: string, owner?: { readonly uid?: number, readonly gid?: number }) {
    this.dir = dir
    this.#in = under(dir)
    this.#owner = owner
  }

  #own (path: string): void {
    if (this.#owner === undefined) return
    try {
      chownSync(path, this.#owner.uid ?? -1, this.#owner.gid ?? -1)
    } catch (err) {
      if (!this.#chownWarned) this.onChownError?.(err)
      this.#chownWarned = true
    }
  }

  /** Bytes free on the volume, or undefined where statfs is not available. */
  async #free (): Promise<number | undefined> {
    try {
      const st = await statfs(this.dir)
      return st.bavail * st.bsize
    } catch {
      return undefined
    }
  }

  /**
   * Replaces the full set of files with `entries`. `onPublished` runs synchronously right after the
   * `..data` swap, before the links and the pruning that follow it, so a caller can serve the same
   * set from the moment it is on disk.
   */
  async write (entries: readonly FileEntry[], onPublished?: () => void): Promise<void> {
    let genDir: string | undefined
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o755 })
      const previous = await this.#currentGen() // (1)
      await this.#prune(new Set(previous !== undefined ? [previous] : [])) // (2)
      const need = entries.reduce((n, e) => n + cost(e.bytes.length), 2 * PAGE)
      const free = await this.#free() // (3)
      if (free !== undefined && free < need) {
        throw new SidekeyError('SIDEKEY_E_WRITE', `cannot write secrets to ${this.dir}: the new set needs ${need} bytes and the volume has ${free} free; raise the volume's sizeLimit (injector config tmpfsSizeLimit) or bind smaller values`, { dir: this.dir, need, free })
      }
      const gen = stamp()
      genDir = this.#in(gen)
      const inGen = under(genDir)
      await mkdir(genDir, { mode: 0o755 }) // (4)
      this.#own(genDir)
      const meta: Record<string, { version: string, updatedAt: number }> = {}
      const names = new Set(entries.map((e) => e.name))
      // The loop gets a turn every SLICE files or links, or SLICE_BYTES copied.
      let files = 0
      let bytes = 0
      const pace = async (copied: number): Promise<void> => {
        bytes += copied
        if (++files < SLICE && bytes < SLICE_BYTES) return
        files = 0
        bytes = 0
        await yieldToLoop()
      }
      for (const e of entries) {
        const p = inGen(e.name)
        const big = e.bytes.length > SYNC_MAX_BYTES
        if (big) {
          await writeFile(p, e.bytes, { mode: e.mode, flag: 'wx' })
          await chmod(p, e.mode)
        } else {
          writeFileSync(p, e.bytes, { mode: e.mode, flag: 'wx' })
          chmodSync(p, e.mode) // the umask must not widen or narrow the requested mode
        }
        this.#own(p)
        meta[e.name] = { version: e.version, updatedAt: e.updatedAt }
        await pace(big ? 0 : e.bytes.length)
      }
      for (const name of names) {
        if (this.#links.has(name)) continue
        // A link that fails here is tried again after the swap (6), where its error is the caller's.
        try { this.#link(name) } catch { /* (6) */ }
        await pace(0)
      }
      await writeFile(join(genDir, META_FILE), JSON.stringify(meta), { mode: 0o444 })

      const tmpLink = join(this.dir, `..data_tmp_${randomBytes(4).toString('hex')}`) // (5)
      await symlink(gen, tmpLink)
      try {
        await rename(tmpLink, join(this.dir, DATA_LINK))
      } catch (err) {
        await rm(tmpLink, { force: true })
        throw err
      }
      genDir = undefined // published: from here on it is the current generation
      onPublished?.()

      for (const name of names) { // (6)
        if (this.#links.has(name)) continue
        this.#link(name)
        await pace(0)
      }
      for (const name of this.#links) {
        if (names.has(name)) continue
        await rm(join(this.dir, name), { force: true })
        this.#links.delete(name)
      }
      // (7) The previous generation stays for readers mid-way only when the next
      // write of the same size still fits beside both; else it goes now.
      const after = await this.#free()
      const keepPrevious = previous !== undefined && (after === undefined || after >= need)
      await this.#prune(new Set([gen, ...(keepPrevious ? [previous] : [])]))
    } catch (err) {
      if (genDir !== undefined) await rm(genDir, { recursive: true, force: true }).catch(() => { /* best effort; step (2) of the next write removes it */ })
      if (err instanceof SidekeyError) throw err
      throw new SidekeyError('SIDEKEY_E_WRITE', `cannot write secrets to ${this.dir} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check that the directory is writable by the agent and has room (injector config tmpfsSizeLimit)`, { dir: this.dir }, { cause: err })
    }
  }

  /** Points <name> at ..data/<name>. Whatever sits at <name> and is not our link (a planted link, a dir) is replaced. */
  #link (name: string): void {
    const at = this.#in(name)
    const st = lstatSync(at, { throwIfNoEntry: false })
    if (st !== undefined && st.isDirectory()) rmSync(at, { recursive: true, force: true })
    const tmp = this.#in(`..link_tmp_${randomBytes(4).toString('hex')}`)
    try {
      symlinkSync(inData(name), tmp)
      renameSync(tmp, at)
    } catch (err) {
      rmSync(tmp, { force: true })
      throw err
    }
    this.#links.add(name)
  }

  /** The generation ..data points to, when it is a link of the shape this writer makes to a real directory. */
  async #currentGen (): Promise<string | undefined> {
    let target: string
    try {
      target = await readlink(join(this.dir, DATA_LINK))
    } catch {
      return undefined
    }
    if (!GEN_RE.test(target)) return undefined
    const st = await lstat(join(this.dir, target)).catch(() => undefined)
    return st?.isDirectory() === true ? target : undefined
  }

  async #prune (keep: Set<string>): Promise<void> {
    for (const entry of await readdir(this.dir)) {
      if (keep.has(entry)) continue
      if (GEN_RE.test(entry) || entry.startsWith('..data_tmp_') || entry.startsWith('..link_tmp_')) {
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
      meta = JSON.parse((await readNoFollow(join(genDir, META_FILE))).toString('utf8')) as typeof meta
      if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) return []
    } catch {
      return []
    }
    const out: DiskEntry[] = []
    for (const [name, m] of Object.entries(meta)) {
      if (!NAME_RE.test(name) || typeof m?.version !== 'string' || typeof m.updatedAt !== 'number') continue
      try {
        out.push({ name, bytes: await readNoFollow(join(genDir, name)), version: m.version, updatedAt: m.updatedAt })
        // Only a link of our own shape is kept; anything else at <name> is replaced on the next write.
        const link = await readlink(join(this.dir, name)).catch(() => undefined)
        if (link === join(DATA_LINK, name)) this.#links.add(name)
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
