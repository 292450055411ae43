// The local store: an AES-256-GCM encrypted JSON file for running without a
// cluster. Each record has its own nonce; the record's name and version are
// authenticated data, so moving or replaying a record is detected like any
// other tampering. A check record makes a wrong key a clear error even when
// the store is empty.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync, renameSync, mkdirSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { SidekeyError } from './errors.js'

const MAGIC = 'sidekey-local-store'
const CHECK_PLAINTEXT = 'sidekey-key-check'
const HISTORY = 5

interface SealedRecord { nonce: string, ct: string, tag: string }
interface VersionRecord extends SealedRecord { version: number, createdAt: string }
interface StoreFile {
  format: typeof MAGIC
  v: 1
  check: SealedRecord
  secrets: Record<string, { versions: VersionRecord[] }>
}

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
        return { format: MAGIC, v: 1, check: seal(this.#key, Buffer.from(CHECK_PLAINTEXT), 'check'), secrets: {} }
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
    if (open(this.#key, doc.check, 'check', this.file, 'the key check').toString() !== CHECK_PLAINTEXT) {
      throw new SidekeyError('SIDEKEY_E_LOCAL_DECRYPT', `the key check of ${this.file} does not match; use the key the store was created with`, { file: this.file })
    }
    return doc
  }

  #write (doc: StoreFile): void {
    this.#cache = undefined // the cached document was mutated by the caller
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 })
    const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    writeFileSync(tmp, JSON.stringify(doc, null, 1) + '\n', { mode: 0o600 })
    renameSync(tmp, this.file)
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
    const doc = this.#read()
    const s = doc.secrets[name] ?? { versions: [] }
    const version = (s.versions[s.versions.length - 1]?.version ?? 0) + 1
    s.versions.push({ version, createdAt: new Date().toISOString(), ...seal(this.#key, value, `${name}@${version}`) })
    s.versions = s.versions.slice(-HISTORY)
    doc.secrets[name] = s
    this.#write(doc)
    return version
  }

  remove (name: string): boolean {
    const doc = this.#read()
    if (doc.secrets[name] === undefined) return false
    delete doc.secrets[name]
    this.#write(doc)
    return true
  }
}
