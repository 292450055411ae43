// The writer's paths: under(dir)(name) is join(dir, name), for any dir and name.
import t from 'tap'
import { join } from 'node:path'
import { under } from '../../agent/writer.js'

t.test('under(dir)(name) equals join(dir, name)', async (t) => {
  const dirs = ['/', '', '.', '..', '/sidekey/secrets', '/sidekey/secrets/', '/a//b/./c/', 'rel/dir', './rel/../x', '/a/..data', '..data']
  const names = ['token', 'a.b-c_d', '..data', '..2026_12_02_06_40_00.000_abcdef', '..link_tmp_0a1b2c3d', '.sidekey-meta.json', 'x..', '', '.', '..', 'a/b', '../up', 'a\\b', '/abs']
  for (const d of dirs) {
    const f = under(d)
    for (const n of names) t.equal(f(n), join(d, n), `${JSON.stringify(d)} + ${JSON.stringify(n)}`)
  }
})
