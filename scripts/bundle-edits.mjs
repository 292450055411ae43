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

// How the bundle imports Node's built-ins (scripts/bundle.mjs, BUILTIN_VIEW there says why), shared with the
// test that checks its output (test/unit/agent-bundle-start.test.ts).

/** What an import of a built-in reads: an object whose prototype is the module, with the `default` esbuild's __toESM gives. */
export const builtinView = (call) => `(m=>Object.create(m,{default:{value:m,enumerable:!0}}))(${call})`

/**
 * The CommonJS wrappers of built-ins (builtinsByRequire), their name in group 1: the chunks name theirs
 * (`var require_x=__commonJS({"builtin:<importer> -> node:x"(exports,module){module.exports=__require("node:x")}})`),
 * vendor-aws.js's are minified (`var w=F((a,b)=>{b.exports=N("node:x")})`).
 */
export const BUILTIN_WRAPPERS = {
  chunks: /\bvar (require_[\w$]+)=__commonJS\(\{"builtin:[^"]*"\(exports,(module\d*)\)\{\2\.exports=__require\("[^"]+"\)\}\}\)/g,
  minified: /\bvar ([\w$]+)=[\w$]+\(\(([\w$]+),([\w$]+)\)=>\{\3\.exports=[\w$]+\("[\w:/]+"\)\}\)/g,
}

/** A name as a regular expression's text. */
export const escName = (name) => name.replace(/\$/g, '\\$')

/** esbuild's __toESM in `file`: its own name in the chunks; in a minified file the one function with its body, else an error. */
export function toEsmName (src, minified, file) {
  if (!minified) return '__toESM'
  const defs = [...src.matchAll(/(?<![\w$.])([\w$]+)=\(([\w$]+),([\w$]+),([\w$]+)\)=>\(\4=\2!=null\?/g)]
  if (defs.length !== 1) throw new Error(`scripts/bundle-edits.mjs: ${file}: esbuild's __toESM found ${defs.length} times, not once: check toEsmName against this esbuild`)
  return defs[0][1]
}

/** The names of the functions whose result `src` gives to __toESM (`toEsm(w()` then `,` or `)`), each once. */
export const toEsmCalls = (src, toEsm) => new Set([...src.matchAll(new RegExp(`(?<![\\w$.])${escName(toEsm)}\\(([\\w$]+)\\(\\)[,)]`, 'g'))].map((m) => m[1]))
