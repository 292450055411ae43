// Watches a file for replacement or change by watching its directory, since
// editors and atomic writers replace files by rename (a watch on the file
// itself would follow the old inode). One fs.watch per directory is shared by
// every subscriber (an agent with 1,000 local secrets watches one store file),
// and each subscriber's callback is debounced so one save is one event.
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'

interface DirWatch {
  readonly watcher: FSWatcher | undefined
  /** file name -> subscribers */
  readonly subs: Map<string, Set<() => void>>
}

const dirs = new Map<string, DirWatch>()
const DEBOUNCE_MS = 20

function openDir (dir: string): DirWatch {
  const subs = new Map<string, Set<() => void>>()
  let watcher: FSWatcher | undefined
  try {
    watcher = watch(dir, { persistent: false }, (_event, changed) => {
      const targets = changed === null ? [...subs.values()] : [subs.get(changed)].filter((s) => s !== undefined)
      for (const set of targets) for (const fn of set) fn()
    })
    watcher.on('error', () => { /* directory went away: the interval poll still covers it */ })
  } catch {
    // No directory yet: the interval poll picks the file up when it appears.
  }
  return { watcher, subs }
}

export function watchFile (file: string, onChange: () => void): () => void {
  const dir = dirname(file)
  const name = basename(file)
  let d = dirs.get(dir)
  if (d === undefined) {
    d = openDir(dir)
    dirs.set(dir, d)
  }
  let timer: NodeJS.Timeout | undefined
  const debounced = (): void => {
    if (timer !== undefined) clearTimeout(timer)
    timer = setTimeout(onChange, DEBOUNCE_MS)
  }
  let set = d.subs.get(name)
  if (set === undefined) {
    set = new Set()
    d.subs.set(name, set)
  }
  set.add(debounced)
  const entry = d
  return () => {
    if (timer !== undefined) clearTimeout(timer)
    const s = entry.subs.get(name)
    s?.delete(debounced)
    if (s?.size === 0) entry.subs.delete(name)
    if (entry.subs.size === 0) {
      entry.watcher?.close()
      if (dirs.get(dir) === entry) dirs.delete(dir)
    }
  }
}
