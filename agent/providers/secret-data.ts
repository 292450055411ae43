// Shapes a backend's answer into SecretData the same way for every backend:
// a JSON object becomes a map (so `#key` works), anything else stays bytes;
// sizes are checked here so no provider forgets it.
import { createHash } from 'node:crypto'
import { SidekeyError } from '../../core/errors.js'
import type { SecretRef } from '../../core/reference.js'
import type { SecretData } from './provider.js'

/** A map value as text: strings as they are, everything else as JSON (numbers, nested objects). */
function fieldText (v: unknown): string {
  if (typeof v === 'string') return v
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join('\n')
  return JSON.stringify(v) ?? ''
}

export function mapFromObject (obj: Record<string, unknown>): Record<string, string> {
  const map: Record<string, string> = {}
  for (const [k, v] of Object.entries(obj)) map[k] = fieldText(v)
  return map
}

/** A text secret: a JSON object becomes a map, any other text stays bytes. */
export function dataFromText (text: string): SecretData {
  const t = text.trimStart()
  if (t.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(text)
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
        return { kind: 'map', map: mapFromObject(parsed as Record<string, unknown>) }
      }
    } catch {
      // Not JSON after all: the whole text is the value.
    }
  }
  return { kind: 'bytes', bytes: Buffer.from(text, 'utf8') }
}

export function dataSize (data: SecretData): number {
  if (data.kind === 'bytes') return data.bytes.length
  let n = 0
  for (const [k, v] of Object.entries(data.map)) n += Buffer.byteLength(k) + Buffer.byteLength(v)
  return n
}

/**
 * Throws SIDEKEY_E_VALUE_TOO_LARGE when the secret exceeds the agent's limit;
 * `remedy` is what to change besides raising the limit.
 */
export function checkSize (data: SecretData, ref: SecretRef, maxValueBytes: number, remedy = 'pick one field with #key'): SecretData {
  const size = dataSize(data)
  if (size > maxValueBytes) {
    throw new SidekeyError('SIDEKEY_E_VALUE_TOO_LARGE', `secret ${ref.raw} is ${size} bytes, more than maxValueBytes (${maxValueBytes}); raise maxValueBytes or ${remedy}`, { ref: ref.raw, size, maxValueBytes })
  }
  return data
}

/** A version for data whose backend has none: a short hash (never the value itself). */
export function contentVersion (data: SecretData): string {
  const h = createHash('sha256')
  if (data.kind === 'bytes') h.update('b').update(data.bytes)
  else for (const k of Object.keys(data.map).sort()) h.update('m').update(k).update('\0').update(data.map[k] ?? '').update('\0')
  // 16 hex characters: short, and a valid `@version` in the reference grammar.
  return h.digest('hex').slice(0, 16)
}

export function bytesData (bytes: Buffer): SecretData {
  return { kind: 'bytes', bytes }
}

export function notFound (ref: SecretRef, where: string): SidekeyError {
  return new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: ${where}; check the reference or create the secret`, { ref: ref.raw })
}

/** A content-addressed version pin: `@<16 hex>` must match the current content. */
export function checkPinnedContent (ref: SecretRef, version: string): void {
  if (ref.version !== undefined && ref.version !== version) {
    throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: version ${ref.version} is not the current content (this store keeps only the current one); drop @version`, { ref: ref.raw })
  }
}

/**
 * Races a client's promise against the caller's signal and a timeout, for
 * clients that take neither. Rejects with an error whose `code` is
 * ERR_CANCELED or ETIMEDOUT (both network errors to isNetworkError), so the
 * provider maps it like any other transport failure.
 */
export async function withSignal<T> (p: Promise<T>, signal: AbortSignal | undefined, ms: number): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const done = (): void => { clearTimeout(timer); signal?.removeEventListener('abort', onAbort) }
    const onAbort = (): void => { done(); reject(Object.assign(new Error('aborted'), { code: 'ERR_CANCELED' })) }
    const timer = setTimeout(() => { done(); reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })) }, ms)
    if (signal?.aborted === true) { onAbort(); return }
    signal?.addEventListener('abort', onAbort, { once: true })
    p.then((v) => { done(); resolve(v) }, (e: unknown) => { done(); reject(e) })
  })
}

/** Network error codes that mean "cannot reach", not "refused". */
export function isNetworkError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  const name = (err as { name?: unknown } | null)?.name
  if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|ECONNABORTED|ERR_SOCKET_CONNECTION_TIMEOUT|UND_ERR_.*|ERR_NETWORK|ERR_CANCELED)$/.test(code)) return true
  if (name === 'TimeoutError' || name === 'AbortError') return true
  const cause = (err as { cause?: unknown } | null)?.cause
  if (cause !== undefined && cause !== err && cause !== null && typeof cause === 'object') return isNetworkError(cause)
  return false
}
