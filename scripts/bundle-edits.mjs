// Source edits scripts/bundle.mjs makes to dependencies as esbuild loads
// them (its DEFERRED tables say which and why); apart so a test can run them.
import { readFile } from 'node:fs/promises'

/** How often `name` occurs in `src` as an identifier: not a property (`.name`), not a quoted name (`'name'`); a word inside a longer string (`"[object name]"`) counts. */
export const usesOf = (src, name) => src.match(new RegExp(`(?<![\\w$.'"])${name.replace(/\$/g, '\\$')}(?![\\w$'"])`, 'g'))?.length ?? 0

export const deferRequires = (deferred) => ({
  name: 'defer-requires',
  setup (b) {
    for (const [filter, edits, uses = {}] of deferred) {
      b.onLoad({ filter, namespace: 'file' }, async (args) => {
        let src = await readFile(args.path, 'utf8')
        for (const [text, replacement] of edits) {
          if (src.split(text).length !== 2) throw new Error(`${args.path}: "${text}" is not there exactly once; check scripts/bundle.mjs against this version`)
          src = src.replace(text, replacement)
        }
        // A deferred name now holds a function where the module had a value: a use the edits do not know would see that function.
        for (const [name, count] of Object.entries(uses)) {
          const n = usesOf(src, name)
          if (n !== count) throw new Error(`${args.path}: ${name} is used ${n} times after the edits, not ${count}; a newer version uses the deferred name elsewhere: check scripts/bundle.mjs against it`)
        }
        return { contents: src, loader: 'js' }
      })
    }
  },
})
