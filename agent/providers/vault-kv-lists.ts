// KV v2 version checks, many secrets per request where the server allows it.
// OpenBao lists a folder's keys with their metadata (`LIST <mount>/detailed-
// metadata/<folder>`: `keys` and `key_info.<key>.current_version`), so the
// checks of every secret of one folder that fall due together cost one
// request instead of one each. A listing answers the checks that start while
// it is in flight and for FRESH_MS after it arrived (the rest of the same
// wake-up), never later ones: a rotation is seen as soon as with one GET each.
//
// A folder is listed only when at least two of its secrets are checked. It
// goes back to one metadata GET per secret, for good, when the server has no
// such endpoint (HashiCorp Vault answers 404/405), the policy does not allow
// the list, or the listing is mostly keys nobody here reads (more than
// max(MIN_WASTE_KEYS, WASTE_FACTOR x ours)). Vault answers 403 to an expired
// token as to a missing grant, so a 403 turns the folder off only once a
// metadata GET succeeds with the token the listing was denied to
// (confirmDenied), a GET sent after the 403 came (one sent before may have
// been served before the token expired); until then the folder's checks read
// their own metadata, and after a re-login the folder is listed again. A busy
// or unreachable server (429, 502-504, no answer) fails every check the
// listing answers, with one request: N GETs would only add load. Any other
// status falls back for that one check; the secret's own GET then reports the
// error. A listing is shared: one check's abort (its own deadline) gives that
// check up, and the listing is cut only when every check waiting on it has.
import type { Logger } from 'pino'
import type { VaultAnswer, VaultCall } from './vault-http.js'
import { monotonicMs } from '../../core/monotonic.js'

/** Where a KV v2 secret's metadata sits: `<mount>/metadata/<dir><name>`. */
export interface KvKey {
  readonly mount: string
  /** The folder within the mount, '' or ending in '/'. */
  readonly dir: string
  readonly name: string
}

export const FRESH_MS = 200
export const MIN_WASTE_KEYS = 64
export const WASTE_FACTOR = 4

interface Listing {
  readonly startedAt: number
  /** Set when the answer arrived. */
  doneAt?: number
  readonly versions: Promise<Listed>
  /** Cuts the request; aborted when every check waiting on it has given up, or the store closes. */
  readonly abort: AbortController
  /** Checks waiting on it. */
  waiting: number
}

/** A listing's outcome: our keys' versions, a status every check it answers fails with, or nothing (check one by one). */
type Listed = ReadonlyMap<string, number> | { readonly unavailable: number } | undefined

/** An answer, and the token it was sent with (kept only to compare with the current one). */
export interface ListAnswer {
  readonly answer: VaultAnswer
  readonly sentWith: string
}

export interface KvListsOptions {
  readonly storeName: string
  readonly logger: Logger
  /** Sends one call with the store's current token. */
  readonly call: (c: VaultCall, signal: AbortSignal | undefined) => Promise<ListAnswer>
  /** The store's current token, without logging in (a renewal keeps it, a login replaces it). */
  readonly currentToken: () => string | undefined
  readonly now?: () => number
}

export class KvVersionLists {
  readonly #o: KvListsOptions
  readonly #now: () => number
  /** Names checked per folder (`mount\0dir`). */
  readonly #ours = new Map<string, Set<string>>()
  /** Folders that are not listed any more. */
  readonly #off = new Set<string>()
  readonly #listings = new Map<string, Listing>()
  /** Folders whose last listing was denied: the token it was sent with, and the ticket count when the 403 came. */
  readonly #denied = new Map<string, { readonly token: string, readonly at: number }>()
  /** Tickets handed out so far (see ticket()). */
  #tickets = 0

  constructor (o: KvListsOptions) {
    this.#o = o
    // A monotonic clock: a wall-clock step back must not stretch a listing's freshness.
    this.#now = o.now ?? monotonicMs
  }

  /** Records that `k` is checked here (a folder is listed once two of its secrets are). */
  note (k: KvKey): void {
    const fk = folderKey(k)
    let names = this.#ours.get(fk)
    if (names === undefined) this.#ours.set(fk, names = new Set())
    names.add(k.name)
  }

  /**
   * The secret's current version from a listing of its folder, undefined (check
   * its own metadata), or `{ unavailable: status }`: the server is busy, fail the check.
   */
  async version (k: KvKey, signal: AbortSignal | undefined): Promise<number | { readonly unavailable: number } | undefined> {
    const fk = folderKey(k)
    if (this.#off.has(fk) || (this.#ours.get(fk)?.size ?? 0) < 2) return undefined
    const denied = this.#denied.get(fk)
    if (denied !== undefined) {
      // Denied, and the same token is in use: wait for a metadata GET to tell (confirmDenied).
      if (denied.token === this.#o.currentToken()) return undefined
      this.#denied.delete(fk) // a new token since: the 403 may have been the old one's expiry
    }
    signal?.throwIfAborted()
    const now = this.#now()
    let l = this.#listings.get(fk)
    // Joined while in flight only if sent within FRESH_MS (a slow answer may predate this check), reused for FRESH_MS after.
    if (l === undefined || now - (l.doneAt ?? l.startedAt) > FRESH_MS) {
      const abort = new AbortController()
      const fresh: Listing = { startedAt: now, abort, waiting: 0, versions: this.#list(k, fk, abort.signal).finally(() => { fresh.doneAt = this.#now() }) }
      fresh.versions.catch(() => {}) // an answer nobody waits for any more (each waiting check gets the error)
      this.#listings.set(fk, l = fresh)
    }
    const listed = await this.#wait(l, signal)
    return listed instanceof Map ? listed.get(k.name) : listed as { readonly unavailable: number } | undefined
  }

  /** The listing's outcome, or the check's own abort; the last check to give up cuts the request. */
  async #wait (l: Listing, signal: AbortSignal | undefined): Promise<Listed> {
    if (signal === undefined) {
      l.waiting++
      try { return await l.versions } finally { l.waiting-- }
    }
    l.waiting++
    let onAbort: (() => void) | undefined
    try {
      return await Promise.race([l.versions, new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(signal.reason) }
        signal.addEventListener('abort', onAbort, { once: true })
      })])
    } finally {
      signal.removeEventListener('abort', onAbort as () => void)
      if (--l.waiting === 0 && l.doneAt === undefined && signal.aborted) {
        l.abort.abort(signal.reason)
        // A check that comes later sends a listing of its own.
        for (const [fk, cur] of this.#listings) if (cur === l) this.#listings.delete(fk)
      }
    }
  }

  /**
   * A ticket for a metadata GET about to be sent: confirmDenied counts the GET
   * only if it was sent after the listing's 403 came.
   */
  ticket (): number {
    return ++this.#tickets
  }

  /**
   * A metadata GET of `k` succeeded with `token`. If the folder's listing was
   * denied to that same token, the policy denies it: the folder is not listed
   * again. (A listing denied to a token that then fails its GETs too was an
   * expired token: the new login's token lists the folder again.)
   */
  confirmDenied (k: KvKey, token: string | undefined, ticket: number): void {
    const fk = folderKey(k)
    const denied = this.#denied.get(fk)
    // A GET sent before the 403 came may have been served before the token expired.
    if (token === undefined || denied?.token !== token || ticket <= denied.at) return
    this.#turnOff(fk, { store: this.#o.storeName, folder: `${k.mount}/${k.dir}`, status: 403 },
      `vault policy denies listing the folder's metadata; checking each secret's metadata (grant "list" on ${listPath(k)} for one request per folder)`)
  }

  /** Forgets the listings (the store closes). */
  clear (): void {
    for (const l of this.#listings.values()) l.abort.abort(new Error('the store closed'))
    this.#listings.clear()
    this.#denied.clear()
  }

  #turnOff (fk: string, fields: Record<string, unknown>, msg: string): void {
    this.#off.add(fk)
    this.#listings.delete(fk)
    this.#denied.delete(fk)
    this.#o.logger.info(fields, msg)
  }

  async #list (k: KvKey, fk: string, signal: AbortSignal | undefined): Promise<Listed> {
    // Unreachable or aborted: the error fails every check this listing answers (one request, not one each).
    const { answer: ans, sentWith } = await this.#o.call({ method: 'LIST', path: listPath(k) }, signal)
    if (ans.status === 403) {
      this.#denied.set(fk, { token: sentWith, at: this.#tickets })
      this.#listings.delete(fk)
      return undefined
    }
    if (ans.status === 404 || ans.status === 405) {
      this.#turnOff(fk, { store: this.#o.storeName, folder: `${k.mount}/${k.dir}`, status: ans.status }, 'vault has no detailed-metadata listing (an OpenBao endpoint); checking each secret\'s metadata')
      return undefined
    }
    if (ans.status === 429 || (ans.status >= 502 && ans.status <= 504)) return { unavailable: ans.status }
    if (ans.status !== 200) return undefined
    const data = (ans.body as { data?: { keys?: unknown, key_info?: unknown } } | undefined)?.data
    const keys = Array.isArray(data?.keys) ? data.keys : []
    const info = (typeof data?.key_info === 'object' && data.key_info !== null ? data.key_info : {}) as Record<string, { current_version?: unknown } | undefined>
    // Only the versions of our own secrets are kept (a folder may hold many more).
    const names = this.#ours.get(fk)
    const versions = new Map<string, number>()
    for (const key of keys) {
      if (typeof key !== 'string' || names?.has(key) !== true) continue
      const v = info[key]?.current_version
      if (typeof v === 'number') versions.set(key, v)
    }
    const ours = names?.size ?? 0
    if (keys.length > Math.max(MIN_WASTE_KEYS, WASTE_FACTOR * ours)) {
      this.#turnOff(fk, { store: this.#o.storeName, folder: `${k.mount}/${k.dir}`, keys: keys.length, ours }, 'the folder holds many more secrets than this agent reads; checking each secret\'s metadata instead of listing it')
    }
    return versions
  }
}

function listPath (k: KvKey): string {
  return `${k.mount}/detailed-metadata/${k.dir}`
}

function folderKey (k: KvKey): string {
  return `${k.mount}\0${k.dir}`
}
