// The two volumes the injector adds: the tmpfs the agent writes secrets to,
// and the projected service-account tokens the stores log in with.
import type { V1Volume, V1VolumeProjection } from '@kubernetes/client-node'
import { VOLUME_SECRETS, VOLUME_TOKEN } from './annotations.js'
import type { InjectorConfig } from './config.js'
import type { InjectionSpec } from './spec.js'

export function secretsVolume (config: InjectorConfig): V1Volume {
  return { name: VOLUME_SECRETS, emptyDir: { medium: 'Memory', sizeLimit: config.tmpfsSizeLimit } }
}

/** null when no store needs a token (env/file/local only). */
export function tokenVolume (spec: InjectionSpec, config: InjectorConfig): V1Volume | null {
  if (spec.tokens.length === 0) return null
  const sources: V1VolumeProjection[] = spec.tokens.map((t) => ({
    serviceAccountToken: { path: t.path, expirationSeconds: config.tokenExpirationSeconds, ...(t.audience !== undefined ? { audience: t.audience } : {}) },
  }))
  if (spec.needsClusterCa) sources.push({ configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } })
  return { name: VOLUME_TOKEN, projected: { sources } }
}
