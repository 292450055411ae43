// One descriptor per store type (core/stores.ts) is the only place a type is
// listed: every enum, default store, token projection, audience, egress port
// and provider module is derived from it. These tests go over STORES, so a
// new descriptor is checked by them without being named here.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { STORES, STORE_TYPES, DEFAULT_STORES, type StoreDescriptor } from '../../core/stores.js'
import { agentConfigSchema, storeSchemas } from '../../core/config/schema.js'
import { loadConfig } from '../../core/config/load.js'
import { injectorConfigSchema, loadInjectorConfig } from '../../injector/config.js'
import { TOKEN_DIR } from '../../injector/annotations.js'
import { buildSpec } from '../../injector/spec.js'
import { backendPorts, mutatePod } from '../../injector/mutate.js'
import { loadProviderFactory, factoryName } from '../../agent/providers/index.js'
import { REPO, pod } from './injector-helpers.js'

/** The smallest config of a type its schema accepts, plus what the injector needs (podRequires). */
function minimalStore (d: StoreDescriptor): Record<string, unknown> {
  const schema = d.schema as { required?: string[], properties: Record<string, { pattern?: string }> }
  const out: Record<string, unknown> = { type: d.type }
  for (const f of schema.required ?? []) {
    if (f === 'type') continue
    out[f] = schema.properties[f]?.pattern === '^https?://' ? 'https://backend.example:8443' : 'x'
  }
  for (const f of d.podRequires ?? []) out[f] = 'required-value'
  return out
}

t.test('the types are the descriptors, in every enum and default', async (t) => {
  t.same([...STORE_TYPES], STORES.map((d) => d.type))
  t.equal(new Set(STORE_TYPES).size, STORE_TYPES.length, 'no type twice')
  t.same([...DEFAULT_STORES], [...STORE_TYPES], 'a default store per type')
  t.same(Object.keys(storeSchemas), [...STORE_TYPES])
  for (const d of STORES) t.equal((storeSchemas as Record<string, unknown>)[d.type], d.schema, `${d.type}: its schema`)
  t.same([...agentConfigSchema.properties.stores.additionalProperties.properties.type.enum], [...STORE_TYPES], 'agent config enum')
  t.same([...injectorConfigSchema.properties.stores.additionalProperties.properties.type.enum], [...STORE_TYPES], 'injector config enum')
  const chart = JSON.parse(readFileSync(join(REPO, 'charts/sidekey/values.schema.json'), 'utf8')) as { properties: { stores: { additionalProperties: { properties: { type: { enum: string[] } } } } } }
  t.same(chart.properties.stores.additionalProperties.properties.type.enum, [...STORE_TYPES], 'charts/sidekey/values.schema.json lists the same types (a JSON file: update it with a new descriptor)')
})

t.test('every descriptor names a provider module that exports its factory', async (t) => {
  for (const d of STORES) {
    const factory = await loadProviderFactory(d.type, d.type)
    t.type(factory, 'function', `agent/providers/${d.module}.js exports ${factoryName(d.module)}`)
  }
  await t.rejects(loadProviderFactory('gcp', 'g'), { code: 'SIDEKEY_E_CONFIG', message: /config\.stores\.g\.type: unknown store type "gcp"/ })
})

t.test('the agent config accepts each type, and its default store when the descriptor has one', async (t) => {
  for (const d of STORES) {
    const cfg = loadConfig({ dir: '/tmp/sk-stores', secrets: [{ name: 'a', ref: `mine:a` }], stores: { mine: minimalStore(d) } })
    t.equal(cfg.stores.mine?.type, d.type, `${d.type}: configured`)
    const bare = { dir: '/tmp/sk-stores', secrets: [{ name: 'a', ref: `${d.type}:a` }] }
    if (d.unconfigured !== undefined) t.equal(loadConfig(bare).stores[d.type]?.type, d.type, `${d.type}: usable unconfigured`)
    else t.throws(() => loadConfig(bare), { code: 'SIDEKEY_E_REF_STORE' }, `${d.type}: must be configured`)
  }
})

t.test('the injector projects each descriptor\'s token with its audience, and derives the egress ports', async (t) => {
  for (const d of STORES) {
    const config = loadInjectorConfig({ image: 'sidekey:test', stores: { [d.type]: minimalStore(d) } })
    const ann: Record<string, string> = { 'sidekey.dev/secret-a': `${d.type}:a` }
    if (d.role !== undefined) ann['sidekey.dev/role'] = `${d.role.prefix?.value ?? ''}pod-role`
    const spec = buildSpec(ann, config)
    const store = spec.stores[d.type] as Record<string, unknown>
    if (d.role !== undefined) t.equal(store[d.role.field], ann['sidekey.dev/role'], `${d.type}: sidekey.dev/role sets ${d.role.field}`)
    if (d.token === undefined) {
      t.same(spec.tokens, [], `${d.type}: no token`)
      t.equal(store.tokenFile, undefined)
    } else {
      const audience = d.token.audience
      t.equal(store.tokenFile, `${TOKEN_DIR}/${d.token.fileName}`, `${d.type}: tokenFile in the token volume`)
      if (audience !== undefined) t.equal(config.audiences[audience.key], audience.default, `${d.type}: audiences.${audience.key} defaults to ${audience.default}`)
      t.same(spec.tokens, [audience !== undefined ? { path: d.token.fileName, audience: audience.default } : { path: d.token.fileName }], `${d.type}: the projected token`)
      t.equal(spec.needsClusterCa, d.token.clusterCa === true)
      const other = loadInjectorConfig({ image: 'sidekey:test', stores: { [d.type]: minimalStore(d) }, ...(audience !== undefined ? { audiences: { [audience.key]: 'custom-aud' } } : {}) })
      if (audience !== undefined) t.same(buildSpec(ann, other).tokens, [{ path: d.token.fileName, audience: 'custom-aud' }], `${d.type}: the audience is configurable`)
    }
    t.same(backendPorts(spec), [...new Set(d.egressPorts?.(store) ?? [])].sort((a, b) => a - b), `${d.type}: egress ports from the descriptor`)
    for (const f of d.podRequires ?? []) {
      const without = minimalStore(d)
      delete without[f]
      t.throws(() => buildSpec(ann, loadInjectorConfig({ image: 'sidekey:test', stores: { [d.type]: without } })), { code: 'SIDEKEY_E_ANNOTATION', message: new RegExp(`needs ${f}`) }, `${d.type}: needs ${f}`)
    }
    // The whole pod: the agent's own loader accepts the config built for it.
    t.equal(mutatePod(pod(ann), config, 'team-a').outcome, 'injected', `${d.type}: the pod is injected`)
  }
})

t.test('a pod may override exactly the descriptor\'s podOverridable fields', async (t) => {
  for (const d of STORES) {
    const config = loadInjectorConfig({ image: 'sidekey:test', stores: { [d.type]: minimalStore(d) } })
    const base: Record<string, string> = { 'sidekey.dev/secret-a': `${d.type}:a` }
    if (d.role !== undefined) base['sidekey.dev/role'] = `${d.role.prefix?.value ?? ''}pod-role`
    t.throws(() => buildSpec({ ...base, [`sidekey.dev/store-${d.type}`]: '{"address":"https://elsewhere.example"}' }, config), { code: 'SIDEKEY_E_ANNOTATION', message: /cannot be set from a pod/ }, `${d.type}: address is the platform's`)
    for (const f of d.podOverridable) {
      const v = f === 'kvVersion' ? 2 : `${f === d.role?.field ? d.role.prefix?.value ?? '' : ''}override`
      const spec = buildSpec({ ...base, [`sidekey.dev/store-${d.type}`]: JSON.stringify({ [f]: v }) }, config)
      t.equal((spec.stores[d.type] as Record<string, unknown>)[f], v, `${d.type}: ${f} may be overridden`)
    }
  }
})
