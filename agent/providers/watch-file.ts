// Watches a file for replacement or change by watching its directory, since
// editors and atomic writers replace files by rename (a watch on the file
// itself would follow the old inode). Debounced so one save is one event.
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'

export function watchFile (file: string, onChange: () => void): () => void {
  const name = basename(file)
  let timer: NodeJS.Timeout | undefined
  let w: FSWatcher | undefined
  try {
    w = watch(dirname(file), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name) return
      if (timer !== undefined) clearTimeout(timer)
      timer = setTimeout(onChange, 20)
    })
    w.on('error', () => { /* directory went away: polling still covers it */ })
  } catch {
    // No directory yet: the interval poll picks the file up when it appears.
  }
  return () => {
    if (timer !== undefined) clearTimeout(timer)
    w?.close()
  }
}
