// The audit lines of the local API name the version that was answered: one
// line per (caller, secret, version, outcome) with a count, for HTTP as for
// gRPC. (HTTP lines had no version: it was read back with res.getHeader, which
// knows nothing of headers passed to writeHead.)
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startTestAgent, tempDir } from '../helpers/agent.js'

t.test('HTTP and gRPC audit lines carry the version answered, counted per outcome', async (t) => {
  const root = tempDir(t)
  const f = join(root, 'src')
  const v = 'audit-v-' + randomBytes(6).toString('hex')
  writeFileSync(f, v)
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: `file:${f}` }], refresh: '1h' }, { root, values: [v] })
  await h.agent.synced

  const first = await h.get('k')
  t.equal(first.status, 200)
  const version = (first.etag ?? '').replace(/"/g, '')
  t.match(version, /^[0-9a-f]{16}$/)
  t.equal((await h.get('k')).status, 200)
  t.equal((await h.get('k', { 'if-none-match': first.etag ?? '' })).status, 304)
  t.equal((await h.get('nope')).status, 404)
  await new Promise<void>((resolve, reject) => h.grpc().Get({ name: 'k' }, h.metadata(), (err) => err !== null ? reject(err) : resolve()))

  await h.agent.close() // flushes the trail
  const access = h.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access')
  const sum = (pred: (l: Record<string, unknown>) => boolean): number => access.filter(pred).reduce((n, l) => n + Number(l.count), 0)
  t.equal(sum((l) => l.api === 'http' && l.status === 200 && l.secret === 'k' && l.version === version), 2, 'two 200s with the version')
  t.equal(sum((l) => l.api === 'http' && l.status === 304 && l.secret === 'k' && l.version === version), 1, 'one 304 with the version')
  t.equal(sum((l) => l.api === 'http' && l.status === 404 && l.secret === 'nope' && !('version' in l)), 1, 'an unknown secret: no version')
  t.equal(sum((l) => l.api === 'grpc' && l.status === 'OK' && l.secret === 'k' && l.version === version), 1, 'gRPC Get with the version')
  t.equal(sum((l) => l.api === 'http' && l.route === '/v1/secrets/:name'), 4, 'every HTTP access counted once')
})
