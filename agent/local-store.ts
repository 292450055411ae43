// The local store: an AES-256-GCM encrypted JSON file for running without a
// cluster. Each record has its own nonce; the record's name and version are
// authenticated data, so moving or replaying a record is detected like any
// other tampering. A check record makes a wrong key a clear error even when
// the store is empty. A head record, sealed like the others, names every
// secret's latest version, so deleting the newest record (or a whole secret)
// is detected instead of silently serving the previous one.
//
// Writers (`sidekey local put/rm`, possibly many at once) take an exclusive
// lock file beside the store for the whole read-modify-write, write a temp
// file, fsync it, rename it over the store and fsync the directory.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { readFileSync, renameSync, mkdirSync, statSync, openSync, closeSync, writeSync, fsyncSync, unlinkSync, readdirSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { SidekeyError } from '../core/errors.js'
import { isoTime } from '../core/utc-dates.js'

const MAGIC = 'sidekey-local-store'
const CHECK_PLAINTEXT = 'sidekey-key-check'
/** The check record of a store that carries a head record: a head can then not be dropped unnoticed. */
const CHECK_PLAINTEXT_HEAD = 'sidekey-key-check+head'
/** A lock whose holder is gone (no such pid) is broken; one without a pid yet, after this long. */
const LOCK_STALE_MS = 10_000
const LOCK_WAIT_MS = 30_000
const HISTORY = 5

interface SealedRecord { nonce: string, ct: string, tag: string }
interface VersionRecord extends SealedRecord { version: number, createdAt: string }
interface StoreFile {
  format: typeof MAGIC
  v: 1
  check: SealedRecord
  /** Sealed JSON {name: latest version}; absent only in stores written before it existed. */
  head?: SealedRecord
  secrets: Record<string, { versions: VersionRecord[] }>
}

function sleepSync (ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

const headOf = (doc: StoreFile): string => JSON.stringify(Object.keys(doc.secrets).sort().map((n) => [n, doc.secrets[n]?.versions.at(-1)?.version ?? 0]))

export interface LocalSecretInfo { readonly name: string, readonly version: number, readonly updatedAt: string, readonly versions: readonly number[] }

/** The development key, used only when a store is explicitly marked dev. */
export const DEV_KEY = createHash('sha256').update('sidekey development key - not secret').digest()

export function parseLocalKey (raw: string | undefined, envName: string): Buffer {
  if (raw === undefined || raw === '') {
    throw new SidekeyError('SIDEKEY_E_LOCAL_KEY', `${envName} is not set; set it to 32 random bytes as base64 or hex (e.g. \`openssl rand -base64 32\`), or mark the store dev to use the development key`, { env: envName })
  }
  const trimmed = raw.trim()
  let key: Buffer | undefined
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) key = Buffer.from(trimmed, 'hex')
  else if (/^[A-Za-z0-9+/_-]{42,44}={0,2}$/.test(trimmed)) key = Buffer.from(trimmed, 'base64')
  if (key?.length !== 32) {
    throw new SidekeyError('SIDEKEY_E_LOCAL_KEY', `${envName} must be 32 bytes as base64 (44 characters) or hex (64 characters); generate one with \`openssl rand -base64 32\``, { env: envName })
  }
  return key
}

function seal (key: Buffer, plaintext: Buffer, aad: string): SealedRecord {
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, nonce)
  c.setAAD(Buffer.from(aad))
  const ct = Buffer.concat([c.update(plaintext), c.final()])
  return { nonce: nonce.toString('base64'), ct: ct.toString('base64'), tag: c.getAuthTag().toString('base64') }
}

function open (key: Buffer, rec: SealedRecord, aad: string, file: string, what: string): Buffer {
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(rec.nonce, 'base64'))
    d.setAAD(Buffer.from(aad))
    d.setAuthTag(Buffer.from(rec.tag, 'base64'))
    return Buffer.concat([d.update(Buffer.from(rec.ct, 'base64')), d.final()])
  } catch (err) {
    throw new SidekeyError('SIDEKEY_E_LOCAL_DECRYPT', `cannot decrypt ${what} in ${file}: the key is wrong or the file was modified; use the key the store was created with, or recreate the store`, { file }, { cause: err })
  }
}

function isSealed (x: unknown): x is SealedRecord {
  const r = x as SealedRecord
  return typeof r === 'object' && r !== null && typeof r.nonce === 'string' && typeof r.ct === 'string' && typeof r.tag === 'string'
}

export class LocalStore {
  readonly file: string
  readonly #key: Buffer
  /** The last parsed and key-checked document, valid while the file's stamp is unchanged. */
  #cache: { stamp: string, doc: StoreFile } | undefined

  constructor (file: string, key: Buffer) {
    this.file = file
    this.#key = key
  }

  /** mtime+size: changes whenever the file is rewritten (writes are rename-replaced). */
  stamp (): string {
    try {
      const s = statSync(this.file)
      return `${s.mtimeMs}:${s.size}:${s.ino}`
    } catch {
      return 'absent'
    }
  }

  #read (): StoreFile {
    // An agent with many local secrets reads the store once per change, not once per secret.
    const stamp = this.stamp()
    if (this.#cache !== undefined && this.#cache.stamp === stamp && stamp !== 'absent') return this.#cache.doc
    const doc = this.#readFile()
    if (stamp !== 'absent') this.#cache = { stamp, doc }
    return doc
  }

  #readFile (): StoreFile {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { format: MAGIC, v: 1, check: seal(this.#key, Buffer.from(CHECK_PLAINTEXT_HEAD), 'check'), secrets: {} }
      }
      throw new SidekeyError('SIDEKEY_E_LOCAL_STORE', `cannot read local store ${this.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { file: this.file }, { cause: err })
    }
    let doc: StoreFile
    try {
      doc = JSON.parse(text) as StoreFile
    } catch {
      throw new SidekeyError('SIDEKEY_E_LOCAL_STORE', `local store ${this.file} is not valid JSON; restore it from a backup or remove it to start over`, { file: this.file })
    }
    const shapeOk = typeof doc === 'object' && doc !== null && doc.format === MAGIC && doc.v === 1 && isSealed(doc.check) &&
      typeof doc.secrets === 'object' && doc.secrets !== null &&
      Object.values(doc.secrets).every((s) => Array.isArray(s?.versions) && s.versions.every((r) => isSealed(r) && Number.isInteger(r.version)))
    if (!shapeOk) throw new SidekeyError('SIDEKEY_E_LOCAL_STORE', `${this.file} is not a Sidekey local store (format ${MAGIC} v1); point the store at the right file`, { file: this.file })
    const check = open(this.#key, doc.check, 'check', this.file, 'the key check').toString()
    if (check !== CHECK_PLAINTEXT && check !== CHECK_PLAINTEXT_HEAD) {
      throw new SidekeyError('SIDEKEY_E_LOCAL_DECRYPT', `the key check of ${this.file} does not match; use the key the store was created with`, { file: this.file })
    }
    if (check === CHECK_PLAINTEXT_HEAD || doc.head !== undefined) {
      const head = doc.head !== undefined && isSealed(doc.head) ? open(this.#key, doc.head, 'head', this.file, 'the head record').toString() : undefined
      if (head !== headOf(doc)) {
        throw new SidekeyError('SIDEKEY_E_LOCAL_DECRYPT', `${this.file} was modified: its records do not match the head record (a newest version or a secret was removed or replaced); restore the file from a backup, or put the secrets again into a new store`, { file: this.file })
      }
    }
    return doc
  }

  #write (doc: StoreFile): void {
    this.#cache = undefined // the cached document was mutated by the caller
    doc.check = seal(this.#key, Buffer.from(CHECK_PLAINTEXT_HEAD), 'check')
    doc.head = seal(this.#key, Buffer.from(headOf(doc)), 'head')
    const dir = dirname(this.file)
    const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    const fd = openSync(tmp, 'wx', 0o600)
    try {
      writeSync(fd, JSON.stringify(doc, null, 1) + '\n')
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, this.file)
    // The rename itself is durable only once the directory is.
    const dfd = openSync(dir, 'r')
    try { fsyncSync(dfd) } finally { closeSync(dfd) }
  }

  /** True when the lock's holder is gone: its pid does not exist, or it never wrote one and is old. */
  #lockIsStale (lock: string): boolean {
    try {
      const pid = Number(readFileSync(lock, 'utf8').trim())
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 0)
          return false
        } catch (err) {
          return (err as NodeJS.ErrnoException).code === 'ESRCH'
        }
      }
      return Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS
    } catch {
      return false // gone already: the next open decides
    }
  }

  /** Runs a read-modify-write with the store's lock file held (exclusive create, pid inside). */
  #locked<T> (fn: () => T): T {
    const dir = dirname(this.file)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const lock = `${this.file}.lock`
    const deadline = Date.now() + LOCK_WAIT_MS
    let fd: number
    for (;;) {
      try {
        fd = openSync(lock, 'wx', 0o600)
        writeSync(fd, `${process.pid}\n`)
        break
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new SidekeyError('SIDEKEY_E_LOCAL_STORE', `cannot create the lock ${lock}: ${(err as NodeJS.ErrnoException).code ?? 'error'}; check the directory's permissions`, { file: this.file }, { cause: err })
        }
        if (this.#lockIsStale(lock)) {
          try { unlinkSync(lock) } catch { /* another waiter broke it first */ }
          continue
        }
        if (Date.now() > deadline) {
          throw new SidekeyError('SIDEKEY_E_LOCAL_STORE', `the local store ${this.file} stayed locked for ${LOCK_WAIT_MS / 1000}s (${lock}); retry, or remove the lock file if no sidekey process is running`, { file: this.file })
        }
        sleepSync(2 + Math.floor(Math.random() * 10))
      }
    }
    try {
      // With the lock held no other writer is mid-way: any temp file is an orphan of a crash.
      const prefix = basename(this.file) + '.'
      for (const e of readdirSync(dir)) {
        if (e.startsWith(prefix) && e.endsWith('.tmp')) { try { unlinkSync(join(dir, e)) } catch { /* gone */ } }
      }
      this.#cache = undefined // read what the last writer left, not a cached copy
      return fn()
    } finally {
      closeSync(fd)
      try { unlinkSync(lock) } catch { /* already broken as stale */ }
    }
  }

  list (): LocalSecretInfo[] {
    const doc = this.#read()
    return Object.entries(doc.secrets).map(([name, s]) => {
      const last = s.versions[s.versions.length - 1]
      return { name, version: last?.version ?? 0, updatedAt: last?.createdAt ?? '', versions: s.versions.map((v) => v.version) }
    }).sort((a, b) => a.name.localeCompare(b.name))
  }

  /** Latest version number without decrypting anything, or undefined. */
  currentVersion (name: string): number | undefined {
    const s = this.#read().secrets[name]
    return s?.versions[s.versions.length - 1]?.version
  }

  get (name: string, version?: number): { value: Buffer, version: number } | undefined {
    const doc = this.#read()
    const s = doc.secrets[name]
    if (s === undefined) return undefined
    const rec = version === undefined ? s.versions[s.versions.length - 1] : s.versions.find((v) => v.version === version)
    if (rec === undefined) return undefined
    return { value: open(this.#key, rec, `${name}@${rec.version}`, this.file, `secret "${name}" version ${rec.version}`), version: rec.version }
  }

  put (name: string, value: Buffer): number {
    return this.#locked(() => {
      const doc = this.#readFile()
      const s = doc.secrets[name] ?? { versions: [] }
      const version = (s.versions[s.versions.length - 1]?.version ?? 0) + 1
      s.versions.push({ version, createdAt: isoTime(Date.now()), ...seal(this.#key, value, `${name}@${version}`) })
      s.versions = s.versions.slice(-HISTORY)
      doc.secrets[name] = s
      this.#write(doc)
      return version
    })
  }

  remove (name: string): boolean {
    return this.#locked(() => {
      const doc = this.#readFile()
      if (doc.secrets[name] === undefined) return false
      delete doc.secrets[name]
      this.#write(doc)
      return true
    })
  }
}
