// local:NAME — the encrypted local store (see ../local-store.ts). Versions are
// the store's counters; `@N` pins one of the last versions kept.
import { SidekeyError } from '../../core/errors.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import type { SecretRef } from '../../core/reference.js'
import { LocalStore, DEV_KEY, parseLocalKey } from '../local-store.js'
import type { Have, Provider, ProviderContext, SyncResult } from './provider.js'
import { bytesData, checkSize, notFound } from './secret-data.js'
import { watchFile } from './watch-file.js'

export function openLocalStore (config: StoreConfigOf<'local'>, ctx: Pick<ProviderContext, 'logger'>): LocalStore {
  const envName = config.keyEnv ?? 'SIDEKEY_LOCAL_KEY'
  const raw = process.env[envName]
  if ((raw === undefined || raw === '') && config.dev === true) {
    ctx.logger.warn({ store: 'local', file: config.path }, 'using the built-in development key for the local store; set ' + envName + ' for anything real')
    return new LocalStore(requirePath(config), DEV_KEY)
  }
  return new LocalStore(requirePath(config), parseLocalKey(raw, envName))
}

function requirePath (config: StoreConfigOf<'local'>): string {
  if (config.path === undefined) throw new SidekeyError('SIDEKEY_E_CONFIG', 'config.stores.local.path: missing; set the path of the encrypted store file', { field: 'stores.local.path' })
  return config.path
}

function pinned (ref: SecretRef): number | undefined {
  if (ref.version === undefined) return undefined
  if (!/^\d+$/.test(ref.version)) throw new SidekeyError('SIDEKEY_E_REF_SYNTAX', `${ref.raw}: a local store version is a number (e.g. @3)`, { ref: ref.raw })
  return Number(ref.version)
}

export function createLocalProvider (config: StoreConfigOf<'local'>, ctx: ProviderContext): Provider {
  const store = openLocalStore(config, ctx)
  return {
    type: 'local',
    async sync (ref: SecretRef, have: Have | undefined): Promise<SyncResult> {
      const pin = pinned(ref)
      // The version counter first (a pinned version is immutable): the value only on change.
      const current = pin ?? store.currentVersion(ref.path)
      if (have !== undefined && current !== undefined && have.version === String(current)) return { changed: false }
      const got = store.get(ref.path, pin)
      if (got === undefined) throw notFound(ref, `the local store has no secret "${ref.path}"${ref.version !== undefined ? ` at version ${ref.version}` : ''} (add it with \`sidekey local put ${ref.path}\`)`)
      return { changed: true, data: checkSize(bytesData(got.value), ref, ctx.maxValueBytes), version: String(got.version) }
    },
    watch (_ref: SecretRef, onChange: () => void): () => void {
      return watchFile(store.file, onChange)
    },
  }
}
