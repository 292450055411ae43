import t from 'tap'
import { parseRef, formatRef } from '../../core/reference.js'
import { isSidekeyError } from '../../core/errors.js'

const good: Array<[string, Record<string, string>]> = [
  ['vault:secret/data/openai#api_key', { store: 'vault', path: 'secret/data/openai', key: 'api_key' }],
  ['aws:prod/anthropic#key', { store: 'aws', path: 'prod/anthropic', key: 'key' }],
  ['aws:prod/anthropic@AWSPREVIOUS', { store: 'aws', path: 'prod/anthropic', version: 'AWSPREVIOUS' }],
  ['aws:arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf', { store: 'aws', path: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf' }],
  ['azure:kv-prod/openai-key', { store: 'azure', path: 'kv-prod/openai-key' }],
  ['azure:kv-prod/openai-key@0123456789abcdef', { store: 'azure', path: 'kv-prod/openai-key', version: '0123456789abcdef' }],
  ['k8s:openai#api_key', { store: 'k8s', path: 'openai', key: 'api_key' }],
  ['env:OPENAI_API_KEY', { store: 'env', path: 'OPENAI_API_KEY' }],
  ['local:openai', { store: 'local', path: 'openai' }],
  ['vault:secret/data/app#db.password@3', { store: 'vault', path: 'secret/data/app', key: 'db.password', version: '3' }],
  ['vault-eu:kv/app', { store: 'vault-eu', path: 'kv/app' }],
]
for (const [raw, want] of good) {
  t.test(`parses ${raw}`, async (t) => {
    const r = parseRef(raw)
    t.same({ ...r }, { ...want, raw })
    t.equal(formatRef(r), raw, 'round-trips')
    t.ok(Object.isFrozen(r))
  })
}

const bad: Array<[unknown, RegExp]> = [
  ['', /empty/],
  ['openai', /store name before ":" is missing/],
  [':path', /store name before ":" is missing/],
  ['Vault:x', /lowercase/],
  ['vault:', /path after "<store>:" is empty/],
  ['vault:#key', /path after "<store>:" is empty/],
  ['vault:x#', /key after "#" is empty/],
  ['vault:x#a#b', /only one "#"/],
  ['vault:x@', /version/],
  ['vault:x@v 1', /whitespace/],
  ['vault:x@a/b', /version "a\/b"/],
  ['file:../../etc/shadow', /"\.\." segments/],
  ['vault:secret/data/team-a/%2e%2e/team-b/key', /"\.\." segments \(also percent-encoded\)/],
  ['vault:secret/data/team-a/%2E./x', /percent-encoded/],
  ['vault:secret/./x', /"\." or "\.\." segments/],
  ['vault:a\nb', /control characters/],
  [42, /must be a string, got number/],
  [null, /got null/],
  ['sk-live-SECRETVALUE\tmore', /whitespace or control characters \(not shown/],
  ['vault:' + 'x'.repeat(3000), /longer than 2048/],
]
for (const [raw, msg] of bad) {
  t.test(`rejects ${JSON.stringify(raw)?.slice(0, 40)}`, async (t) => {
    try {
      parseRef(raw)
      t.fail('should throw')
    } catch (err) {
      t.ok(isSidekeyError(err, 'SIDEKEY_E_REF_SYNTAX'), 'coded SIDEKEY_E_REF_SYNTAX')
      t.match((err as Error).message, msg)
      t.match((err as Error).message, /expected <store>:<path>/, 'says what the grammar is')
    }
  })
}

t.test('a value pasted where a reference belongs is never quoted back', async (t) => {
  const pasted = [
    '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----',
    'sk-live-SECRETVALUE\tmore',
    'sk-' + 'A1b2C3d4'.repeat(300),
  ]
  for (const v of pasted) {
    try {
      parseRef(v)
      t.fail('should throw')
    } catch (err) {
      const msg = (err as Error).message + JSON.stringify((err as { details?: unknown }).details)
      t.notOk(msg.includes('MIIEvQIBADANBg') || msg.includes('SECRETVALUE') || msg.includes('A1b2C3d4'), 'no part of the value in the error')
    }
  }
})
