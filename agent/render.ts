// From a backend's whole secret to the bytes of one file: pick `#key`, then
// render the format. Errors name the reference, never the value.
import { createRequire } from 'node:module'
import { SidekeyError } from '../core/errors.js'
import type { SecretFormat } from '../core/config/schema.js'
import type { SecretRef } from '../core/reference.js'
import type { SecretData } from './providers/provider.js'
import { dataFromText } from './providers/secret-data.js'

/** A map when the bytes are a JSON object (the providers' own rule), else undefined. */
function jsonMap (bytes: Buffer): Record<string, string> | undefined {
  const d = dataFromText(bytes.toString('utf8'))
  return d.kind === 'map' ? { ...d.map } : undefined
}

/** The value a reference selects: the whole secret, or its `#key` field. */
export function select (ref: SecretRef, data: SecretData): SecretData {
  if (ref.key === undefined) return data
  const map = data.kind === 'map' ? data.map : jsonMap(data.bytes)
  if (map === undefined) {
    throw new SidekeyError('SIDEKEY_E_KEY_NOT_FOUND', `${ref.raw}: the secret is not a JSON object or key/value secret, so "#${ref.key}" cannot select a field; drop #${ref.key}`, { ref: ref.raw })
  }
  if (!Object.hasOwn(map, ref.key)) {
    throw new SidekeyError('SIDEKEY_E_KEY_NOT_FOUND', `${ref.raw}: the secret has no field "${ref.key}" (fields: ${Object.keys(map).slice(0, 20).join(', ') || 'none'})`, { ref: ref.raw })
  }
  return { kind: 'bytes', bytes: Buffer.from(map[ref.key] as string) }
}

// Loaded on first use (format: yaml only).
let yamlStringify: ((v: unknown) => string) | undefined
function toYaml (v: unknown): string {
  yamlStringify ??= (createRequire(import.meta.url)('yaml') as { stringify: (v: unknown) => string }).stringify
  return yamlStringify(v)
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

function envLine (name: string, value: string): string {
  // dotenv double-quoted form: escapes survive every common parser.
  const quoted = value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\$/g, '\\$')
  return `${name}="${quoted}"\n`
}

function asMap (data: SecretData): Record<string, string> | undefined {
  return data.kind === 'map' ? { ...data.map } : jsonMap(data.bytes)
}

/** Renders selected data into file bytes. */
export function render (data: SecretData, format: SecretFormat, where: string, _envName?: string): Buffer {
  switch (format) {
    case 'raw':
      return data.kind === 'bytes' ? data.bytes : Buffer.from(JSON.stringify(data.map))
    case 'json': {
      if (data.kind === 'map') return Buffer.from(JSON.stringify(data.map, null, 2) + '\n')
      const map = jsonMap(data.bytes)
      return Buffer.from(JSON.stringify(map ?? data.bytes.toString('utf8'), null, 2) + '\n')
    }
    case 'yaml': {
      const map = asMap(data)
      return Buffer.from(toYaml(map ?? (data.kind === 'bytes' ? data.bytes.toString('utf8') : '')))
    }
    case 'env': {
      const map = asMap(data)
      if (map === undefined) {
        throw new SidekeyError('SIDEKEY_E_FORMAT', `${where}: format env needs a key/value secret (a JSON object or KV map), but the value is not one (a single field or a plain string); use format raw, or reference the whole secret without #key`, { format: 'env' })
      }
      let out = ''
      for (const [k, v] of Object.entries(map)) {
        if (!ENV_NAME.test(k)) throw new SidekeyError('SIDEKEY_E_FORMAT', `${where}: field "${k}" is not a valid environment variable name; use format json or yaml, or rename the field`, { field: k })
        out += envLine(k, v)
      }
      return Buffer.from(out)
    }
  }
}
