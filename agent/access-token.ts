// The local endpoint's access token: a random value in a file that only the
// pod's containers can read (the shared tmpfs). Compared in constant time.
import { randomBytes } from 'node:crypto'
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
 * The check every local request goes through. Constant-time in the token:
 * every one of the token's UTF-16 code units is compared, XOR-ed into one
 * accumulator with no branch on its value, whatever was presented (a shorter
 * value reads NaN past its end, which counts as 0); the presented length is
 * folded into the same accumulator. The time depends on the token's length,
 * never on how much of it matches. Equal code units are equal UTF-8 bytes.
 * (timingSafeEqual over the presented value's UTF-8, written into a scratch
 * buffer, did the same through two calls into C++ a request; hashing both
 * sides with SHA-256 cost several microseconds.)
 */
export function makeTokenCheck (token: string): (presented: string | undefined) => 'ok' | 'missing' | 'wrong' {
  const n = token.length
  const want = Uint16Array.from({ length: n }, (_, i) => token.charCodeAt(i))
  return (presented) => {
    if (presented === undefined || presented === '') return 'missing'
    let diff = presented.length ^ n
    for (let i = 0; i < n; i++) diff |= presented.charCodeAt(i) ^ (want[i] as number)
    return diff === 0 ? 'ok' : 'wrong'
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
