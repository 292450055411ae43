// The writer makes small files with synchronous calls, a slice at a time, and
// the event loop runs between slices. A slice is bounded in bytes as well as
// in files, and a big value goes through the thread pool: 64 values of 1 MiB
// in one slice held the loop (the local endpoint, /ready) for ~30 ms, and at
// the largest maxValueBytes (16 MiB) for half a second. No time is asserted:
// the test counts the bytes copied synchronously between two turns of the loop.
import t, { type Test } from 'tap'
import * as fs from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '../helpers/agent.js'
import type { FileEntry } from '../../agent/writer.js'

const entry = (name: string, size: number): FileEntry => ({ name, bytes: Buffer.alloc(size, 0x61), mode: 0o444, version: '1', updatedAt: Date.now() })

async function syncBytesPerTurn (t: Test, entries: FileEntry[]): Promise<{ most: number, syncValues: number[] }> {
  let turn = 0
  const perTurn = new Map<number, number>()
  const syncValues: number[] = []
  const { AtomicWriter } = await t.mockImport<typeof import('../../agent/writer.js')>('../../agent/writer.js', {
    'node:fs': {
      ...fs,
      writeFileSync: (p: fs.PathOrFileDescriptor, data: Buffer, o?: fs.WriteFileOptions) => {
        syncValues.push(data.length)
        perTurn.set(turn, (perTurn.get(turn) ?? 0) + data.length)
        fs.writeFileSync(p, data, o)
      },
    },
  })
  let running = true
  const tick = (): void => { turn++; if (running) setImmediate(tick) }
  setImmediate(tick)
  const dir = join(tempDir(t), 'secrets')
  await new AtomicWriter(dir).write(entries)
  running = false
  for (const e of entries) t.equal(fs.readFileSync(join(dir, e.name)).length, e.bytes.length, `${e.name} written whole`)
  return { most: Math.max(0, ...perTurn.values()), syncValues }
}

t.test('big values are not copied on the event loop', async (t) => {
  const { most, syncValues } = await syncBytesPerTurn(t, Array.from({ length: 8 }, (_, i) => entry(`big${i}`, 1024 * 1024)))
  t.same(syncValues.filter((n) => n > 64 * 1024), [], 'no value over 64 KiB written synchronously')
  t.ok(most <= 64 * 1024, `at most 64 KiB copied between two turns (${most})`)
})

t.test('a slice of small values is bounded in bytes', async (t) => {
  const { most } = await syncBytesPerTurn(t, Array.from({ length: 100 }, (_, i) => entry(`s${i}`, 60 * 1024)))
  t.ok(most <= 1024 * 1024 + 64 * 1024, `at most 1 MiB and one value between two turns (${most})`)
})
