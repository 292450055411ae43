// file:/path/to/file — a file on disk, re-read when it changes (a directory
// watch pushes, the interval poll is the fallback). Version is a content hash.
import { readFile } from '../fs-async.js'
import { isAbsolute, resolve } from 'node:path'
import { SidekeyError } from '../../core/errors.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import type { SecretRef } from '../../core/reference.js'
import { against, type Have, type Provider, type ProviderContext, type SyncResult } from './provider.js'
import { bytesData, checkPinnedContent, checkSize, contentVersion, notFound } from './secret-data.js'
import { watchFile } from './watch-file.js'

export function createFileProvider (config: StoreConfigOf<'file'>, ctx: ProviderContext): Provider {
  const pathOf = (ref: SecretRef): string => isAbsolute(ref.path) ? ref.path : resolve(config.baseDir ?? process.cwd(), ref.path)
  return {
    type: 'file',
    async sync (ref: SecretRef, have: Have | undefined): Promise<SyncResult> {
      let bytes: Buffer
      try {
        bytes = await readFile(pathOf(ref))
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT') throw notFound(ref, `file ${pathOf(ref)} does not exist`)
        if (code === 'EACCES' || code === 'EPERM') throw new SidekeyError('SIDEKEY_E_DENIED', `${ref.raw}: the agent may not read ${pathOf(ref)}; fix the file's permissions`, { ref: ref.raw })
        throw new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: cannot read ${pathOf(ref)} (${code ?? 'error'})`, { ref: ref.raw }, { cause: err })
      }
      const data = checkSize(bytesData(bytes), ref, ctx.maxValueBytes)
      const version = contentVersion(data)
      checkPinnedContent(ref, version)
      return against(have, { data, version })
    },
    watch (ref: SecretRef, onChange: () => void): () => void {
      return watchFile(pathOf(ref), onChange)
    },
  }
}
