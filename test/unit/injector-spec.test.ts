import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as A from '../../injector/annotations.js'
import { buildSpec } from '../../injector/spec.js'
import { loadInjectorConfig } from '../../injector/config.js'
import { isSidekeyError, type SidekeyError } from '../../core/errors.js'
import { REPO, testConfig } from './injector-helpers.js'

const cfg = testConfig()
const S = (k: string): string => A.PREFIX + k

function fail (ann: Record<string, string>, c = cfg): SidekeyError {
  try {
    buildSpec(ann, c)
  } catch (err) {
    if (isSidekeyError(err)) return err
    throw err
  }
  throw new Error('expected an error')
}

t.test('families of annotations become one frozen spec', async (t) => {
  const ann = {
    [S('secret-openai')]: 'vault:secret/data/team-a/openai#api_key@2',
    [S('format-openai')]: 'raw',
    [S('mode-openai')]: '0400',
    [S('template-env')]: 'OPENAI={{secret "vault:secret/data/team-a/openai#api_key"}}\nHF={{secret "k8s:hf#token"}}\n',
    [S('secret-db')]: 'k8s:db',
    [S('format-db')]: 'env',
    [S('optional-db')]: 'true',
    [S('role')]: 'notebook',
    [S('store-vault')]: '{"authMount":"k8s-prod"}',
    [S('refresh')]: '5m',
    [S('inject-mode')]: 'sidecar',
    [S('on-change')]: 'http:POST http://127.0.0.1:8080/reload\nsignal:HUP:python',
    [S('containers')]: 'app, worker',
    [S('mount-path')]: '/etc/secrets',
    'other.io/x': 'ignored',
  }
  const spec = buildSpec(ann, cfg)
  t.ok(Object.isFrozen(spec) && Object.isFrozen(spec.secrets) && Object.isFrozen(spec.secrets[0]))
  t.same(spec.secrets.map((s) => s.name), ['db', 'env', 'openai'], 'sorted by name')
  t.same(spec.secrets.map((s) => [s.annotation, s.format, s.mode, s.optional]), [
    ['sidekey.dev/secret-db', 'env', undefined, true],
    ['sidekey.dev/template-env', undefined, undefined, false],
    ['sidekey.dev/secret-openai', 'raw', '0400', false],
  ])
  t.same(spec.secrets[1]?.refs.map((r) => r.raw), ['vault:secret/data/team-a/openai#api_key', 'k8s:hf#token'])
  t.equal(spec.secrets[2]?.ref?.version, '2')
  t.same(spec.stores.vault, { type: 'vault', address: 'https://vault.vault.svc:8200', authMount: 'k8s-prod', role: 'notebook', tokenFile: '/var/run/secrets/sidekey-token/vault' })
  t.same(spec.stores.k8s, { type: 'k8s', tokenFile: '/var/run/secrets/sidekey-token/k8s', caFile: '/var/run/secrets/sidekey-token/ca.crt' })
  t.same(spec.tokens, [{ path: 'k8s' }, { path: 'vault', audience: 'vault' }], 'sorted by file')
  t.equal(spec.needsClusterCa, true)
  t.equal(spec.refresh, '5m')
  t.equal(spec.mode, 'sidecar')
  t.same(spec.onChange, ['http:POST http://127.0.0.1:8080/reload', 'signal:HUP:python'])
  t.equal(spec.needsSharedPid, true)
  t.same(spec.containers, ['app', 'worker'])
  t.equal(spec.mountPath, '/etc/secrets')
  t.equal(ann[S('refresh')], '5m', 'the input is not modified')
})

t.test('defaults come from the config, not from the pod', async (t) => {
  const spec = buildSpec({ [S('secret-a')]: 'k8s:a' }, cfg)
  t.equal(spec.mode, 'sidecar')
  t.equal(spec.mountPath, '/var/run/secrets/sidekey')
  t.equal(spec.refresh, undefined)
  t.equal(spec.containers, null)
  t.equal(spec.needsSharedPid, false)
  const legacy = testConfig({ nativeSidecars: false, defaultMode: 'sidecar' })
  t.equal(buildSpec({ [S('secret-a')]: 'k8s:a' }, legacy).mode, 'legacy', 'sidecar falls back to legacy without native sidecars')
  t.equal(buildSpec({ [S('secret-a')]: 'k8s:a', [S('inject-mode')]: 'init-only' }, legacy).mode, 'init-only')
})

t.test('role maps to each store type; store-<name> overrides it', async (t) => {
  const spec = buildSpec({
    [S('secret-a')]: 'aws:team-a/x#k',
    [S('secret-b')]: 'azure:kv-prod/y',
    [S('secret-c')]: 'vault:secret/data/team-a/z',
    [S('role')]: 'arn:aws:iam::1:role/r',
    [S('store-azure')]: '{"clientId":"cid"}',
    [S('store-vault')]: '{"role":"v"}',
  }, cfg)
  t.equal((spec.stores.aws as { roleArn?: string }).roleArn, 'arn:aws:iam::1:role/r')
  t.equal((spec.stores.azure as { clientId?: string }).clientId, 'cid')
  t.equal((spec.stores.vault as { role?: string }).role, 'v')
  t.same(spec.tokens.map((x) => x.audience), ['sts.amazonaws.com', 'api://AzureADTokenExchange', 'vault'])
})

const denials: Array<[string, Record<string, string>, string, RegExp]> = [
  ['no secret', { [S('role')]: 'x' }, 'sidekey.dev/secret-<name>', /names no secret/],
  ['unknown key', { [S('secrt-openai')]: 'k8s:a' }, 'sidekey.dev/secrt-openai', /is not a Sidekey annotation/],
  ['bad reference', { [S('secret-a')]: 'vault' }, 'sidekey.dev/secret-a', /store name before ":" is missing/],
  ['dot-dot path', { [S('secret-a')]: 'k8s:../etc/passwd' }, 'sidekey.dev/secret-a', /"\.\." segments/],
  ['pasted value in containers', { [S('secret-a')]: 'k8s:a', [S('containers')]: 'app,sk-live SECRETVALUE' }, 'sidekey.dev/containers', /entry 2 is not a container name \(.*not shown\)/],
  ['unknown store', { [S('secret-a')]: 'gcp:projects/x' }, 'sidekey.dev/secret-a', /names an unknown store, one the injector config does not offer \(the reference is not shown.*\); use one of: aws, azure, k8s, vault/],
  ['env store not offered', { [S('secret-a')]: 'env:OPENAI_API_KEY' }, 'sidekey.dev/secret-a', /an unknown store/],
  ['secret and template', { [S('secret-a')]: 'k8s:a', [S('template-a')]: '{{secret "k8s:a"}}' }, 'sidekey.dev/template-a', /also set/],
  ['template with a block', { [S('template-a')]: '{{#each x}}{{/each}}' }, 'sidekey.dev/template-a', /not allowed/],
  ['template without secret', { [S('template-a')]: 'plain' }, 'sidekey.dev/template-a', /uses no secret/],
  ['format orphan', { [S('secret-a')]: 'k8s:a', [S('format-b')]: 'json' }, 'sidekey.dev/format-b', /no sidekey.dev\/secret-b or sidekey.dev\/template-b/],
  ['bad format', { [S('secret-a')]: 'k8s:a', [S('format-a')]: 'toml' }, 'sidekey.dev/format-a', /one of raw, json, env, yaml/],
  ['format on template', { [S('template-a')]: '{{secret "k8s:a"}}', [S('format-a')]: 'json' }, 'sidekey.dev/format-a', /secret-<name> only/],
  ['bad mode', { [S('secret-a')]: 'k8s:a', [S('mode-a')]: '0999' }, 'sidekey.dev/mode-a', /octal/],
  ['bad optional', { [S('secret-a')]: 'k8s:a', [S('optional-a')]: 'yes' }, 'sidekey.dev/optional-a', /"true" or "false"/],
  ['bad name', { [S('secret-.hidden')]: 'k8s:a' }, 'sidekey.dev/secret-.hidden', /name after the prefix/],
  ['vault without role', { [S('secret-a')]: 'vault:secret/data/team-a/x' }, 'sidekey.dev/role', /Vault Kubernetes-auth role/],
  ['aws role not an ARN', { [S('secret-a')]: 'aws:team-a/x', [S('role')]: 'embed' }, 'sidekey.dev/role', /starting with "arn:"/],
  ['store override not JSON', { [S('secret-a')]: 'k8s:a', [S('store-k8s')]: 'role=x' }, 'sidekey.dev/store-k8s', /JSON object/],
  ['store override address', { [S('secret-a')]: 'vault:secret/data/team-a/x', [S('store-vault')]: '{"address":"https://evil"}' }, 'sidekey.dev/store-vault', /field "address" cannot be set from a pod/],
  ['store override unused', { [S('secret-a')]: 'k8s:a', [S('store-aws')]: '{"region":"x"}' }, 'sidekey.dev/store-aws', /no secret uses store "aws"/],
  ['bad mode name', { [S('secret-a')]: 'k8s:a', [S('inject-mode')]: 'daemon' }, 'sidekey.dev/inject-mode', /sidecar, init-only, legacy/],
  ['bad refresh', { [S('secret-a')]: 'k8s:a', [S('refresh')]: 'soon' }, 'sidekey.dev/refresh', /not a duration/],
  ['refresh too fast', { [S('secret-a')]: 'k8s:a', [S('refresh')]: '10ms' }, 'sidekey.dev/refresh', /between 1s and 24h/],
  ['on-change remote', { [S('secret-a')]: 'k8s:a', [S('on-change')]: 'http:POST http://evil.example/x' }, 'sidekey.dev/on-change', /127\.0\.0\.1/],
  ['on-change with init-only', { [S('secret-a')]: 'k8s:a', [S('inject-mode')]: 'init-only', [S('on-change')]: 'signal:HUP:app' }, 'sidekey.dev/on-change', /init-only/],
  ['containers empty', { [S('secret-a')]: 'k8s:a', [S('containers')]: ' , ' }, 'sidekey.dev/containers', /names no container/],
  ['containers bad name', { [S('secret-a')]: 'k8s:a', [S('containers')]: 'App_1' }, 'sidekey.dev/containers', /not a container name/],
  ['mount relative', { [S('secret-a')]: 'k8s:a', [S('mount-path')]: 'secrets' }, 'sidekey.dev/mount-path', /absolute/],
  ['mount dot-dot', { [S('secret-a')]: 'k8s:a', [S('mount-path')]: '/var/../etc' }, 'sidekey.dev/mount-path', /"\.\." segments/],
  ['mount over tokens', { [S('secret-a')]: 'k8s:a', [S('mount-path')]: '/var/run/secrets/sidekey-token' }, 'sidekey.dev/mount-path', /overlap/],
]

for (const [name, ann, annotation, re] of denials) {
  t.test(`denied: ${name}`, async (t) => {
    const err = fail(ann)
    t.equal(err.code, 'SIDEKEY_E_ANNOTATION')
    t.equal(err.details.annotation, annotation)
    t.ok(err.message.startsWith(annotation + ': '), `message names the annotation: ${err.message}`)
    t.match(err.message, re)
  })
}

t.test('an azure store without a tenant is refused at admission, not at pod start', async (t) => {
  const noTenant = testConfig({ stores: { azure: { type: 'azure' } }, policy: { rules: [] } })
  const ann = { [S('secret-a')]: 'azure:kv-prod/x', [S('role')]: 'cid' }
  t.throws(() => buildSpec(ann, noTenant), { code: 'SIDEKEY_E_ANNOTATION', message: /sidekey\.dev\/store-azure: store "azure" \(azure\) needs tenantId/ })
  const spec = buildSpec({ ...ann, [S('store-azure')]: '{"tenantId":"t-2"}' }, noTenant)
  t.equal((spec.stores.azure as { tenantId?: string }).tenantId, 't-2', 'the override supplies it')
})

t.test('a value pasted where a reference belongs is never echoed', async (t) => {
  const value = 'sk-proj-AbCdEf0123456789SECRETVALUE'
  for (const ann of [
    { [S('secret-openai')]: value },
    { [S('secret-openai')]: `${value}:x@bad version` },
    { [S('secret-openai')]: `vault:${value}#` },
    { [S('template-env')]: `OPENAI_API_KEY=${value}\n{{secret "nostore"}}` },
    { [S('template-env')]: `OPENAI_API_KEY=${value}\n{{${value}}}` },
    { [S('template-env')]: `OPENAI_API_KEY=${value}\n{{#if x}}{{/if}}` },
    { [S('template-env')]: `{{secret "${value}"}}` },
    { [S('template-env')]: `OPENAI_API_KEY=${value}` },
  ]) {
    const err = fail(ann)
    t.equal(err.code, 'SIDEKEY_E_ANNOTATION')
    t.notOk(err.message.includes(value) || err.message.includes('SECRETVALUE'), `not echoed: ${err.message}`)
    t.notOk(JSON.stringify(err.details).includes('SECRETVALUE'), 'nor in details')
  }
  // A reference is data, and is shown.
  t.match(fail({ [S('secret-a')]: 'vault:secret/data/team-a/x@v 1' }).message, /sidekey.dev\/secret-a/)
  // A reference to a store the config does not offer is not: `admin:Zq9hunter2` has that shape (issue 9, finding 5).
  t.notMatch(fail({ [S('secret-a')]: 'gcp:projects/p' }).message, /gcp:projects/)
})

t.test('injector config: validated field by field', async (t) => {
  const bad = (input: unknown, re: RegExp): void => {
    try {
      loadInjectorConfig(input)
      t.fail('expected failure')
    } catch (err) {
      t.ok(isSidekeyError(err, 'SIDEKEY_E_CONFIG'))
      t.match((err as Error).message, re)
    }
  }
  bad({}, /injector config: missing required field "image"/)
  bad({ image: 'x', mountPath: 'relative' }, /injector config.mountPath/)
  bad({ image: 'x', tokenExpirationSeconds: 60 }, /injector config.tokenExpirationSeconds: must be >= 600/)
  bad({ image: 'x', stores: { vault: { type: 'vault' } } }, /injector config.stores.vault: missing required field "address"/)
  bad({ image: 'x', stores: { vault: { type: 'vault', address: 'https://v', colour: 1 } } }, /unknown field "colour"/)
  bad({ image: 'x', policy: { rules: [{ name: 'a', namespaces: ['*'], allow: ['nostore'] }] } }, /policy.rules\[0\].allow\[0\]/)
  bad({ image: 'x', policy: { rules: [{ name: 'a', namespaces: ['*'], allow: [] }, { name: 'a', namespaces: ['*'], allow: [] }] } }, /"a" is used twice/)
  const c = loadInjectorConfig({ image: 'x' })
  t.same(c.resources, { requests: { cpu: '10m', memory: '48Mi' }, limits: { memory: '128Mi' } })
  t.same(Object.keys(c.stores), ['k8s'], 'k8s is always offered')
  t.ok(Object.isFrozen(c.stores))
})

t.test('every annotation constant is documented in docs/injector.md', async (t) => {
  const doc = readFileSync(join(REPO, 'docs/injector.md'), 'utf8')
  const keys = Object.entries(A).filter(([k, v]) => /^(ANN|LABEL)_/.test(k) && typeof v === 'string').map(([, v]) => String(v))
  t.ok(keys.length >= 14)
  for (const key of keys) t.ok(doc.includes(key.endsWith('-') ? key + '<' : key), `${key} is documented`)
})
