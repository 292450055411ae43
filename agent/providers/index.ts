// Provider registry. Backends load lazily so an agent that uses only the
// local store never pays for the cloud SDKs in start-up time or memory.
// Which module serves a store type is its descriptor's (core/stores.ts):
// agent/providers/<module>.js exporting create<Module>Provider.
//
// Each module is named by a literal import() below, not a template
// (`import(\`./${m}.js\`)`): for a template the bundler makes every file of
// this folder an entry of its own (vault-auth, vault-http, secret-data, ...),
// and each then sat in a file of its own beside its one user, one more file
// for a start to resolve, link and evaluate (test/unit/agent-bundle-start).
import { SidekeyError } from '../../core/errors.js'
import { storeDescriptor } from '../../core/stores.js'
import type { StoreConfig } from '../../core/config/schema.js'
import type { Provider, ProviderContext, ProviderFactory } from './provider.js'

/** The factory a provider module exports: `k8s` -> createK8sProvider. */
export function factoryName (module: string): string {
  return `create${module.charAt(0).toUpperCase()}${module.slice(1)}Provider`
}

/** The provider modules, by descriptor `module`. */
const MODULES: Readonly<Record<string, () => Promise<Record<string, unknown>>>> = {
  vault: async () => await import('./vault.js'),
  aws: async () => await import('./aws.js'),
  azure: async () => await import('./azure.js'),
  k8s: async () => await import('./k8s.js'),
  env: async () => await import('./env.js'),
  file: async () => await import('./file.js'),
  local: async () => await import('./local.js'),
}

/** Loads the provider module of a store type and returns its factory. */
export async function loadProviderFactory (type: string, storeName: string): Promise<ProviderFactory> {
  const d = storeDescriptor(type)
  if (d === undefined) {
    throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${storeName}.type: unknown store type "${type}"`, { field: `stores.${storeName}.type` })
  }
  const load = Object.hasOwn(MODULES, d.module) ? MODULES[d.module] : undefined
  // A descriptor without its provider file is a build defect, not a user error; say which file.
  if (load === undefined) throw new Error(`agent/providers/index.ts loads no module "${d.module}" (store type "${type}"): add it to MODULES`)
  const factory = (await load())[factoryName(d.module)]
  if (typeof factory !== 'function') throw new Error(`agent/providers/${d.module}.js does not export ${factoryName(d.module)} (store type "${type}")`)
  return factory as ProviderFactory
}

export async function createProvider (config: StoreConfig, ctx: ProviderContext): Promise<Provider> {
  const factory = await loadProviderFactory(String((config as { type: unknown }).type), ctx.storeName)
  return await factory(config, ctx)
}
