// Readers in other processes, reading as fast as they can while the writer
// swaps a multi-file set at least 1,000 times, never see a partial file or a
// mixed set. Each file of generation N holds "N:<name>:<padding>:<checksum>".
import t from 'tap'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { AtomicWriter } from '../../agent/writer.js'
import { tempDir } from '../helpers/agent.js'

const NAMES = ['a', 'b', 'c', 'd', 'e']
const ROTATIONS = 1200

function content (gen: number, name: string): Buffer {
  // sizes vary per generation so a partial write would show as a bad checksum
  const body = `${gen}:${name}:${'x'.repeat(100 + ((gen * 37) % 4000))}`
  return Buffer.from(`${body}:${createHash('sha256').update(body).digest('hex')}`)
}

// Two reader styles: (1) resolve ..data once, read every file there (the set
// must be one generation); (2) open <dir>/<name> per file (each file whole).
const READER = `
const fs = require('fs'), path = require('path'), crypto = require('crypto')
const dir = process.argv[1], names = process.argv[2].split(',')
let sets = 0, files = 0, torn = 0, mixed = 0, vanished = 0, stop = false
process.on('message', () => { stop = true })
function check (buf) {
  const s = buf.toString(); const i = s.lastIndexOf(':')
  const body = s.slice(0, i)
  if (crypto.createHash('sha256').update(body).digest('hex') !== s.slice(i + 1)) { torn++; return -1 }
  return Number(body.split(':')[0])
}
function loop () {
  for (let k = 0; k < 200 && !stop; k++) {
    try {
      const gen = fs.readlinkSync(path.join(dir, '..data'))
      const gens = names.map((n) => check(fs.readFileSync(path.join(dir, gen, n))))
      if (gens.some((g) => g !== gens[0])) mixed++
      sets++
    } catch (e) { if (e.code === 'ENOENT') vanished++; else throw e }
    for (const n of names) {
      try { if (check(fs.readFileSync(path.join(dir, n))) >= 0) files++ } catch (e) { if (e.code === 'ENOENT') vanished++; else throw e }
    }
  }
  if (stop) { process.send({ sets, files, torn, mixed, vanished }); process.exit(0) }
  setImmediate(loop)
}
loop()
`

t.test(`${ROTATIONS} rotations of a ${NAMES.length}-file set under concurrent readers`, async (t) => {
  const dir = join(tempDir(t), 'secrets')
  const w = new AtomicWriter(dir)
  const write = async (gen: number): Promise<void> => {
    await w.write(NAMES.map((name) => ({ name, bytes: content(gen, name), mode: 0o444, version: String(gen), updatedAt: Date.now() })))
  }
  await write(0)
  const readers = [0, 1].map(() => spawn(process.execPath, ['-e', READER, dir, NAMES.join(',')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  const results = readers.map((r) => new Promise<Record<string, number>>((resolve, reject) => {
    r.once('message', (m) => resolve(m as Record<string, number>))
    r.once('exit', (code) => { if (code !== 0) reject(new Error(`reader exited ${code}`)) })
  }))
  for (let gen = 1; gen <= ROTATIONS; gen++) await write(gen)
  for (const r of readers) r.send('stop')
  const stats = await Promise.all(results)
  for (const s of stats) {
    t.equal(s.torn, 0, 'no partial file')
    t.equal(s.mixed, 0, 'no mixed set')
    t.ok((s.sets ?? 0) > 100, `reader resolved many sets (${s.sets})`)
    t.ok((s.files ?? 0) > 500, `reader read many files (${s.files})`)
  }
  const { readdirSync } = await import('node:fs')
  const gens = readdirSync(dir).filter((e) => /^\.\.\d{4}_/.test(e))
  t.ok(gens.length <= 2, 'old generations are pruned (current + previous kept)')
  t.same(NAMES.map((n) => content(ROTATIONS, n).toString()), NAMES.map((n) => readFileSync(join(dir, n), "utf8")), 'final set is the last generation')
})

