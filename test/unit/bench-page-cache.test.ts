// bench/agent-process.ts dropPageCache: the benches drop the Node and bao
// binaries from the page cache before their runs, so each process's RSS counts
// the binary's pages as an exec reads them from disk, not as they happened to be
// cached (a bao just built by testenv measured 30 MiB more). Checked with
// util-linux's fincore, which reports how much of a file is cached.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { dropPageCache } from '../../bench/agent-process.js'

/** Bytes of `file` in the page cache, as fincore counts them. */
function cachedBytes (file: string): number {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`fincore ${file}: ${r.error?.message ?? r.stderr}`)
  return Number(r.stdout.trim())
}

const haveFincore = spawnSync('fincore', ['--version']).status === 0

// Where the benches' binaries are (~/.cache/sidekey). On a tmpfs the pages are the file itself, and nothing drops them.
const base = join(homedir(), '.cache/sidekey')
mkdirSync(base, { recursive: true })
const onTmpfs = spawnSync('stat', ['-f', '-c', '%T', base], { encoding: 'utf8' }).stdout.trim() === 'tmpfs'
const skip = !haveFincore ? 'no fincore (util-linux-extra) on this machine' : onTmpfs ? `${base} is on a tmpfs, whose pages nothing drops` : false

t.test('a file read into the page cache is out of it after dropPageCache', { skip }, async (t) => {
  const dir = mkdtempSync(join(base, '.page-cache-test-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'binary')
  writeFileSync(file, Buffer.alloc(4 << 20, 7))
  readFileSync(file)
  t.ok(cachedBytes(file) > 0, 'the file is cached once written and read')
  dropPageCache([file, join(dir, 'missing'), undefined])
  t.equal(cachedBytes(file), 0, 'none of it is cached after dropPageCache (a missing file or undefined is passed over)')
})
