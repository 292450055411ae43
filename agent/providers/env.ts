// env:NAME — a process environment variable. Useful for local runs and for
// migrating apps that read keys from env. Version is a content hash.
import type { StoreConfigOf } from '../../core/config/schema.js'
import type { SecretRef } from '../../core/reference.js'
import { against, type Have, type Provider, type ProviderContext, type SyncResult } from './provider.js'
import { bytesData, checkPinnedContent, checkSize, contentVersion, notFound } from './secret-data.js'

export function createEnvProvider (_config: StoreConfigOf<'env'>, ctx: ProviderContext): Provider {
  return {
    type: 'env',
    async sync (ref: SecretRef, have: Have | undefined): Promise<SyncResult> {
      const v = process.env[ref.path]
      if (v === undefined) throw notFound(ref, `environment variable ${ref.path} is not set`)
      const bytes = Buffer.from(v)
      const data = checkSize(bytesData(bytes), ref, ctx.maxValueBytes)
      const version = contentVersion(data)
      checkPinnedContent(ref, version)
      return against(have, { data, version })
    },
  }
}
