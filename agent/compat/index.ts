// The peer-compatible local APIs, in the order the HTTP server asks them.
import type { AgentConfig } from '../../core/config/load.js'
import type { ServedSet } from '../served.js'
import type { CompatRoute } from './route.js'
import { awsSecretsManagerRoute } from './aws-secrets-manager.js'
import { vaultKvRoute } from './vault-kv.js'

export function compatRoutes (config: AgentConfig, served: ServedSet, checkToken: (t: string | undefined) => 'ok' | 'missing' | 'wrong'): CompatRoute[] {
  const storeType = (name: string): string | undefined => config.stores[name]?.type
  return [
    awsSecretsManagerRoute({ served, storeType, checkToken }),
    vaultKvRoute({ served, storeType, checkToken }),
  ]
}
