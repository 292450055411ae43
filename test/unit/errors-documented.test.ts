// Every error code is listed in the README (as fastify checks its catalogue).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { ERRORS, SidekeyError } from '../../core/errors.js'

const readme = readFileSync('README.md', 'utf8')
for (const code of Object.keys(ERRORS)) {
  t.ok(readme.includes(`\`${code}\``), `${code} is documented in README.md`)
}
t.test('errors carry code, status and details, and serialise without a stack', async (t) => {
  const e = new SidekeyError('SIDEKEY_E_NOT_FOUND', 'x: missing', { ref: 'vault:x' })
  t.equal(e.status, 404)
  t.same(e.toJSON(), { code: 'SIDEKEY_E_NOT_FOUND', message: 'x: missing', details: { ref: 'vault:x' } })
  t.ok(Object.isFrozen(e.details))
})
