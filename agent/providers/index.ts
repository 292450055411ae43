// Provider registry. Backends load lazily so an agent that uses only the
// local store never pays for the cloud SDKs in start-up time or memory.
import { SidekeyError } from '../../core/errors.js'
import type { StoreConfig } from '../../core/config/schema.js'
import type { Provider, ProviderContext, ProviderFactory } from './provider.js'

const loaders: Record<StoreConfig['type'], () => Promise<ProviderFactory>> = {
  env: async () => (await import('./env.js')).createEnvProvider as ProviderFactory,
  file: async () => (await import('./file.js')).createFileProvider as ProviderFactory,
  local: async () => (await import('./local.js')).createLocalProvider as ProviderFactory,
  vault: async () => (await import('./vault.js')).createVaultProvider as ProviderFactory,
  aws: async () => (await import('./aws.js')).createAwsProvider as ProviderFactory,
  azure: async () => (await import('./azure.js')).createAzureProvider as ProviderFactory,
  k8s: async () => (await import('./k8s.js')).createK8sProvider as ProviderFactory,
}

export async function createProvider (config: StoreConfig, ctx: ProviderContext): Promise<Provider> {
  const load = loaders[config.type]
  if (load === undefined) {
    throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${ctx.storeName}.type: unknown store type "${String((config as { type: unknown }).type)}"`, { field: `stores.${ctx.storeName}.type` })
  }
  const factory = await load()
  return await factory(config, ctx)
}
