// Provider registry. Backends load lazily so an agent that uses only the
// local store never pays for the cloud SDKs in start-up time or memory.
// Which module serves a store type is its descriptor's (core/stores.ts):
// agent/providers/<module>.js exporting create<Module>Provider.
import { SidekeyError } from '../../core/errors.js'
import { storeDescriptor } from '../../core/stores.js'
import type { StoreConfig } from '../../core/config/schema.js'
import type { Provider, ProviderContext, ProviderFactory } from './provider.js'

/** The factory a provider module exports: `k8s` -> createK8sProvider. */
export function factoryName (module: string): string {
  return `create${module.charAt(0).toUpperCase()}${module.slice(1)}Provider`
}

/** Loads the provider module of a store type and returns its factory. */
export async function loadProviderFactory (type: string, storeName: string): Promise<ProviderFactory> {
  const d = storeDescriptor(type)
  if (d === undefined) {
    throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${storeName}.type: unknown store type "${type}"`, { field: `stores.${storeName}.type` })
  }
  const mod = await import(`./${d.module}.js`) as Record<string, unknown>
  const factory = mod[factoryName(d.module)]
  // A descriptor without its provider file is a build defect, not a user error; say which file.
  if (typeof factory !== 'function') throw new Error(`agent/providers/${d.module}.js does not export ${factoryName(d.module)} (store type "${type}")`)
  return factory as ProviderFactory
}

export async function createProvider (config: StoreConfig, ctx: ProviderContext): Promise<Provider> {
  const factory = await loadProviderFactory(String((config as { type: unknown }).type), ctx.storeName)
  return await factory(config, ctx)
}
