// Helpers shared by the providers that hold plain content (env, file, local).
import { createHash } from 'node:crypto'
import { SidekeyError } from '../errors.js'
import type { SecretRef } from '../reference.js'
import type { SecretData } from './provider.js'

export function contentVersion (bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16)
}

export function bytesData (bytes: Buffer): SecretData {
  return { kind: 'bytes', bytes }
}

export function notFound (ref: SecretRef, where: string): SidekeyError {
  return new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: ${where}; check the reference or create the secret`, { ref: ref.raw })
}

export function checkSize (ref: SecretRef, size: number, max: number): void {
  if (size > max) {
    throw new SidekeyError('SIDEKEY_E_VALUE_TOO_LARGE', `${ref.raw}: the value is ${size} bytes, more than maxValueBytes (${max}); raise maxValueBytes or store a smaller value`, { ref: ref.raw, size, max })
  }
}

/** A content-addressed version pin: `@<16 hex>` must match the current content. */
export function checkPinnedContent (ref: SecretRef, version: string): void {
  if (ref.version !== undefined && ref.version !== version) {
    throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: version ${ref.version} is not the current content (this store keeps only the current one); drop @version`, { ref: ref.raw })
  }
}
