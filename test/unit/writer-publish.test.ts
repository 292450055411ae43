// A set's files appear together, with the ..data swap: a first write (and a
// name new to the set) has its <name> links in place before the swap, so at
// the moment the set is published every file reads its new content, and
// before it none of the new names reads as a file.
import t from 'tap'
import { existsSync, readFileSync, readlinkSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { AtomicWriter, type FileEntry } from '../../agent/writer.js'
import { tempDir } from '../helpers/agent.js'

const entry = (name: string, value: string): FileEntry => ({ name, bytes: Buffer.from(value), mode: 0o444, version: '1', updatedAt: Date.now() })

t.test('a first write: every file reads its content at the swap', async (t) => {
  const dir = join(tempDir(t), 'secrets')
  const names = Array.from({ length: 50 }, (_, i) => `s${i}`)
  const w = new AtomicWriter(dir)
  let atSwap: string[] | undefined
  await w.write(names.map((n) => entry(n, `v1-${n}`)), () => {
    // Synchronously, right after the rename of ..data: what a reader finds now.
    atSwap = names.map((n) => existsSync(join(dir, n)) ? readFileSync(join(dir, n), 'utf8') : '(none)')
  })
  t.same(atSwap, names.map((n) => `v1-${n}`), 'every file is there with the swap')
  for (const n of names) t.equal(readlinkSync(join(dir, n)), `..data/${n}`, `${n} is our link`)
  t.same(readdirSync(dir).filter((e) => e.startsWith('..link_tmp_')), [], 'no temporary link left')
})

t.test('a name added to the set appears with the swap; one dropped goes after it', async (t) => {
  const dir = join(tempDir(t), 'secrets')
  const w = new AtomicWriter(dir)
  await w.write([entry('a', 'a1'), entry('b', 'b1')])
  let atSwap: Record<string, string> | undefined
  const read = (): Record<string, string> => Object.fromEntries(['a', 'b', 'c'].map((n) => [n, existsSync(join(dir, n)) ? readFileSync(join(dir, n), 'utf8') : '(none)']))
  await w.write([entry('a', 'a2'), entry('c', 'c2')], () => { atSwap = read() })
  t.same(atSwap, { a: 'a2', b: '(none)', c: 'c2' }, 'at the swap: the new set (b is not in it)')
  t.same(read(), { a: 'a2', b: '(none)', c: 'c2' })
  t.notOk(existsSync(join(dir, 'b')), 'the dropped name\'s link is removed')
})
