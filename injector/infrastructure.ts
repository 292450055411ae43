// The one list of containers other tools inject into pods: service-mesh
// proxies and their init containers, and JupyterHub's metadata blocker. By
// default they do not get the secrets (a proxy has no use for an API key, and
// z2jh's block-cloud-metadata is privileged); `sidekey.dev/containers` can
// still name them.

export interface InfrastructureContainer {
  /** Who adds it, for messages. */
  readonly owner: string
  /** A service-mesh proxy (it carries the pod's traffic once it runs). */
  readonly proxy: boolean
}

export const INFRASTRUCTURE_CONTAINERS: ReadonlyMap<string, InfrastructureContainer> = new Map([
  ['istio-proxy', { owner: 'Istio', proxy: true }],
  ['istio-init', { owner: 'Istio', proxy: false }],
  ['istio-validation', { owner: 'Istio CNI', proxy: false }],
  ['linkerd-proxy', { owner: 'Linkerd', proxy: true }],
  ['linkerd-init', { owner: 'Linkerd', proxy: false }],
  ['linkerd-network-validator', { owner: 'Linkerd CNI', proxy: false }],
  ['kuma-sidecar', { owner: 'Kuma', proxy: true }],
  ['kuma-init', { owner: 'Kuma', proxy: false }],
  ['block-cloud-metadata', { owner: 'JupyterHub (z2jh)', proxy: false }],
])

export function infrastructureOf (name: string): InfrastructureContainer | undefined {
  return INFRASTRUCTURE_CONTAINERS.get(name)
}
