// Bad configs fail at start with a coded error that names the field.
import t from 'tap'
import { loadConfig } from '../../core/config/load.js'
import { isSidekeyError, type ErrorCode } from '../../core/errors.js'
import { parseTemplate } from '../../core/template.js'

const base = { dir: '/tmp/sidekey-x', secrets: [{ name: 'a', ref: 'env:A' }] }
const cases: Array<[string, unknown, ErrorCode, RegExp]> = [
  ['not an object', [], 'SIDEKEY_E_CONFIG', /must be a JSON object/],
  ['missing dir', { secrets: [] }, 'SIDEKEY_E_CONFIG', /missing required field "dir"/],
  ['unknown top field', { ...base, refesh: '1s' }, 'SIDEKEY_E_CONFIG', /unknown field "refesh"/],
  ['bad format', { ...base, secrets: [{ name: 'a', ref: 'env:A', format: 'toml' }] }, 'SIDEKEY_E_CONFIG', /config\.secrets\[0\]\.format: must be one of "raw", "json", "env", "yaml"/],
  ['ref and template', { ...base, secrets: [{ name: 'a', ref: 'env:A', template: '{{secret "env:A"}}' }] }, 'SIDEKEY_E_CONFIG', /secrets\[0\]: set exactly one of "ref" or "template"/],
  ['bad name', { ...base, secrets: [{ name: '../x', ref: 'env:A' }] }, 'SIDEKEY_E_CONFIG', /secrets\[0\]\.name/],
  ['dup name', { ...base, secrets: [{ name: 'a', ref: 'env:A' }, { name: 'a', ref: 'env:B' }] }, 'SIDEKEY_E_CONFIG', /"a" is used twice/],
  ['bad ref', { ...base, secrets: [{ name: 'a', ref: 'nostore' }] }, 'SIDEKEY_E_REF_SYNTAX', /config\.secrets\[0\]: invalid secret reference "nostore"/],
  ['unknown store', { ...base, secrets: [{ name: 'a', ref: 'gcp:x' }] }, 'SIDEKEY_E_REF_STORE', /store "gcp", which is not configured/],
  ['vault without address', { ...base, secrets: [{ name: 'a', ref: 'vault:secret/data/x' }] }, 'SIDEKEY_E_REF_STORE', /add it under "stores"/],
  ['bad store field', { ...base, stores: { v: { type: 'vault', adress: 'http://x' } } }, 'SIDEKEY_E_CONFIG', /config\.stores\.v: (missing required field "address"|unknown field "adress")/],
  ['bad store type', { ...base, stores: { v: { type: 'gcp' } } }, 'SIDEKEY_E_CONFIG', /stores\.v\.type: must be one of/],
  ['bad refresh', { ...base, refresh: 'soon' }, 'SIDEKEY_E_CONFIG', /config\.refresh: must match pattern/],
  ['bad mode', { ...base, secrets: [{ name: 'a', ref: 'env:A', mode: '0999' }] }, 'SIDEKEY_E_CONFIG', /secrets\[0\]\.mode/],
  ['bad onChange', { ...base, onChange: ['http:POST http://example.com/reload'] }, 'SIDEKEY_E_CONFIG', /onChange\[0\]/],
  ['signal to pid 0', { ...base, onChange: ['signal:HUP:0'] }, 'SIDEKEY_E_CONFIG', /onChange\[0\]/],
  ['bad port', { ...base, listen: { http: 70000 } }, 'SIDEKEY_E_CONFIG', /listen\.http: must be <= 65535/],
  ['template with other helper', { ...base, secrets: [{ name: 'a', template: '{{#each x}}{{/each}}' }] }, 'SIDEKEY_E_TEMPLATE', /not allowed/],
  ['template without secret', { ...base, secrets: [{ name: 'a', template: 'plain' }] }, 'SIDEKEY_E_TEMPLATE', /uses no secret/],
  ['template lookup', { ...base, secrets: [{ name: 'a', template: '{{constructor}}' }] }, 'SIDEKEY_E_TEMPLATE', /only the secret helper is allowed, found helper constructor/],
  ['template bad ref', { ...base, secrets: [{ name: 'a', template: '{{secret "x"}}' }] }, 'SIDEKEY_E_REF_SYNTAX', /invalid secret reference "x"/],
  ['template unparsable', { ...base, secrets: [{ name: 'a', template: '{{secret "env:A"' }] }, 'SIDEKEY_E_TEMPLATE', /does not parse/],
]
for (const [what, input, code, msg] of cases) {
  t.test(what, async (t) => {
    try {
      loadConfig(input)
      t.fail('should throw')
    } catch (err) {
      t.ok(isSidekeyError(err), 'a SidekeyError')
      t.equal((err as { code: string }).code, code)
      t.match((err as Error).message, msg)
    }
  })
}

t.test('defaults are filled and the result is frozen', async (t) => {
  const c = loadConfig({ ...base, fileOwner: { gid: 1000 } })
  t.equal(c.refreshMs, 30_000)
  t.equal(c.listen.host, '127.0.0.1')
  t.equal(c.listen.http, 8099)
  t.equal(c.secrets[0]?.mode, 0o440, '0440 when a group owner is set')
  t.equal(c.secrets[0]?.format, 'raw')
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.secrets[0]))
  t.same(Object.keys(c.stores), ['env'], 'default store added for env:')
})

t.test('templates render only the secret helper, unescaped', async (t) => {
  const tpl = parseTemplate('A={{secret "env:A"}}\nB={{ secret "vault:kv/data/b#k" }}\n')
  t.same(tpl.refs.map((r) => r.raw), ['env:A', 'vault:kv/data/b#k'])
  t.equal(tpl.render(new Map([['env:A', '<&>'], ['vault:kv/data/b#k', 'x"y']])), 'A=<&>\nB=x"y\n')
})
