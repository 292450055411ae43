// The local endpoint's access token: a random value in a file that only the
// pod's containers can read (the shared tmpfs). Compared in constant time.
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto'
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

export function makeTokenCheck (token: string): (presented: string | undefined) => 'ok' | 'missing' | 'wrong' {
  const want = createHash('sha256').update(token).digest()
  return (presented) => {
    if (presented === undefined || presented === '') return 'missing'
    const got = createHash('sha256').update(presented).digest()
    return timingSafeEqual(got, want) ? 'ok' : 'wrong'
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
