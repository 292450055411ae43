// The local endpoint's access token: a random value in a file that only the
// pod's containers can read (the shared tmpfs). Compared in constant time.
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { SidekeyError } from '../core/errors.js'

/** Reads the token file, creating it with a fresh random token when missing. */
export function loadOrCreateToken (file: string, mode = 0o444): string {
  try {
    const t = readFileSync(file, 'utf8').trim()
    if (t.length >= 16) return t
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.apiTokenFile: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); make it readable or point apiTokenFile elsewhere`, { field: 'apiTokenFile' }, { cause: err })
    }
  }
  const token = randomBytes(32).toString('base64url')
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, token + '\n', { mode })
  return token
}

/**
 * The check every local request goes through. Constant-time in the token: the
 * presented token's UTF-8 bytes are written into a scratch buffer and the
 * first token-length bytes are always compared with timingSafeEqual, whatever
 * was presented; the time depends on the token's length and on how much the
 * caller sent, never on how much of the token matches. A wrong length is
 * decided before the comparison's result is looked at. (Hashing both sides
 * with SHA-256 did the same at several microseconds a request: a third of the
 * cost of a cached GET.)
 */
export function makeTokenCheck (token: string): (presented: string | undefined) => 'ok' | 'missing' | 'wrong' {
  const want = Buffer.from(token, 'utf8')
  // Room for any header value Node accepts (16 KiB of headers, each char at
  // most 3 bytes in UTF-8), so a presented token is written whole: longer than
  // the token, the count written is then larger than the token's length.
  const scratch = Buffer.alloc(Math.max(64 * 1024, want.length + 4))
  const head = scratch.subarray(0, want.length)
  return (presented) => {
    if (presented === undefined || presented === '') return 'missing'
    const n = scratch.write(presented, 0, 'utf8')
    const same = timingSafeEqual(head, want)
    return n === want.length && same ? 'ok' : 'wrong'
  }
}

/** The token from `X-Sidekey-Token` or `Authorization: Bearer`. */
export function presentedToken (xToken: string | string[] | undefined, authorization: string | string[] | undefined): string | undefined {
  const x = Array.isArray(xToken) ? xToken[0] : xToken
  if (x !== undefined && x !== '') return x.trim()
  const a = Array.isArray(authorization) ? authorization[0] : authorization
  const m = a !== undefined ? /^Bearer\s+(\S+)\s*$/i.exec(a) : null
  return m?.[1]
}
