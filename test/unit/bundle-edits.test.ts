// scripts/bundle-edits.mjs: the edits bundle.mjs makes to dependencies. A
// deferred name (a require moved into a function or getters) that a newer
// version of the dependency uses once more fails the build, as does a text
// that is no longer there.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import type * as BundleEdits from '../../scripts/bundle-edits.mjs'
import type { Deferred } from '../../scripts/bundle-edits.mjs'

// From the sources (dist/ has no scripts/), as test/unit/image.test.ts does.
const root = resolve(fileURLToPath(import.meta.url), '../../../..')
const { deferRequires, usesOf } = await import(pathToFileURL(resolve(root, 'scripts/bundle-edits.mjs')).href) as typeof BundleEdits

const dir = mkdtempSync(join(tmpdir(), 'sidekey-bundle-edits-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

// pino's lib/tools.js, cut down: the shape bundle.mjs edits.
const TOOLS = "const { isMainThread } = require('worker_threads')\nmodule.exports = (opts) => {\n  if (!opts.sync && isMainThread) {\n    return 1\n  }\n  return 0\n}\n"
const EDITS: Deferred[number][1] = [
  ["const { isMainThread } = require('worker_threads')", "const isMainThread = () => require('worker_threads').isMainThread"],
  ['if (!opts.sync && isMainThread) {', 'if (!opts.sync && isMainThread()) {'],
]

async function bundle (src: string, deferred: Deferred): Promise<string> {
  const file = join(dir, `tools-${Math.random().toString(36).slice(2)}.js`)
  writeFileSync(file, src)
  const out = await build({ entryPoints: [file], bundle: true, write: false, platform: 'node', format: 'cjs', logLevel: 'silent', plugins: [deferRequires(deferred)] })
  return out.outputFiles[0]?.text ?? ''
}

t.test('usesOf counts a name as an identifier, not a property or a quoted name', async (t) => {
  t.equal(usesOf("const assert = (...a) => require('assert')(...a)\nassert(x)\nfoo.assert(y)\nassertion()", 'assert'), 2)
  t.equal(usesOf('let $x = 1; $x += $x', '$x'), 3)
})

t.test('the edits apply, with the uses counted', async (t) => {
  const out = await bundle(TOOLS, [[/tools-[a-z0-9]+\.js$/, EDITS, { isMainThread: 2 }]])
  t.match(out, /isMainThread\(\)/, 'the check calls the deferred require')
  t.notMatch(out, /const \{ isMainThread \} = require/, 'no require at load')
})

t.test('a newer version that reads the deferred name once more fails the build', async (t) => {
  const newer = TOOLS + 'module.exports.main = isMainThread\n'
  await t.rejects(bundle(newer, [[/tools-[a-z0-9]+\.js$/, EDITS, { isMainThread: 2 }]]), /isMainThread is used 3 times after the edits, not 2/)
})

t.test('a text no longer there fails the build', async (t) => {
  const moved = TOOLS.replace("require('worker_threads')", "require('node:worker_threads')")
  await t.rejects(bundle(moved, [[/tools-[a-z0-9]+\.js$/, EDITS, { isMainThread: 2 }]]), /is not there exactly once/)
})
