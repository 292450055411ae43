// The two volumes the injector adds: the tmpfs the agent writes secrets to,
// and the projected service-account tokens the stores log in with.
import type { V1Volume, V1VolumeProjection } from '@kubernetes/client-node'
import { CLUSTER_CA_FILE, VOLUME_SECRETS, VOLUME_TOKEN } from './annotations.js'
import type { InjectorConfig } from './config.js'
import type { InjectionSpec } from './spec.js'

const UNITS: Readonly<Record<string, number>> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }
const MI = 1024 ** 2

/** Bytes of a Kubernetes quantity of the shapes the config schema accepts (`8Mi`, `16M`, `1Gi`). */
export function quantityBytes (q: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi)?$/.exec(q)
  if (m === null) return NaN
  return Math.ceil(Number(m[1]) * (UNITS[m[2] ?? ''] ?? NaN))
}

/**
 * The tmpfs must hold two generations of the worst case (every secret at
 * maxValueBytes) plus the token and metadata files; the configured size is
 * raised to that when it is smaller, so a rotation can never wedge the agent.
 */
export function secretsVolumeBytes (config: InjectorConfig, secrets: number): number {
  return 2 * secrets * config.maxValueBytes + MI
}

export function secretsVolume (config: InjectorConfig, spec: Pick<InjectionSpec, 'secrets'>): V1Volume {
  const need = secretsVolumeBytes(config, spec.secrets.length)
  const sizeLimit = quantityBytes(config.tmpfsSizeLimit) >= need ? config.tmpfsSizeLimit : `${Math.ceil(need / MI)}Mi`
  return { name: VOLUME_SECRETS, emptyDir: { medium: 'Memory', sizeLimit } }
}

/** null when no store needs a token (env/file/local only). */
export function tokenVolume (spec: InjectionSpec, config: InjectorConfig): V1Volume | null {
  if (spec.tokens.length === 0) return null
  const sources: V1VolumeProjection[] = spec.tokens.map((t) => ({
    serviceAccountToken: { path: t.path, expirationSeconds: config.tokenExpirationSeconds, ...(t.audience !== undefined ? { audience: t.audience } : {}) },
  }))
  if (spec.needsClusterCa) sources.push({ configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: CLUSTER_CA_FILE }] } })
  return { name: VOLUME_TOKEN, projected: { sources } }
}
