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

/** The annotation each mesh reads to let traffic to some ports bypass its proxy (honoured by its init container and its CNI plugin). */
export const MESH_EXCLUDE_PORTS: Readonly<Record<'istio' | 'linkerd', string>> = {
  istio: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  linkerd: 'config.linkerd.io/skip-outbound-ports',
}

export type Mesh = keyof typeof MESH_EXCLUDE_PORTS

interface PodView {
  readonly annotations: Readonly<Record<string, string>>
  readonly labels: Readonly<Record<string, string>>
  readonly names: readonly string[]
}

/** Meshes whose proxy is in the pod, or that the pod asks for (their webhooks usually run before ours). */
export function meshesOf (p: PodView): Mesh[] {
  const out: Mesh[] = []
  const has = (...n: string[]): boolean => n.some((x) => p.names.includes(x))
  if (has('istio-proxy', 'istio-init', 'istio-validation') || p.annotations['sidecar.istio.io/status'] !== undefined ||
      p.annotations['sidecar.istio.io/inject'] === 'true' || p.labels['sidecar.istio.io/inject'] === 'true' || p.labels['istio.io/rev'] !== undefined) out.push('istio')
  if (has('linkerd-proxy', 'linkerd-init', 'linkerd-network-validator') || p.annotations['linkerd.io/proxy-version'] !== undefined ||
      p.annotations['linkerd.io/inject'] === 'enabled') out.push('linkerd')
  return out
}

/** Adds ports to a comma-separated port list annotation value, keeping what is there. */
export function mergePorts (existing: string | undefined, ports: readonly number[]): string {
  const list = (existing ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  for (const p of ports) if (!list.includes(String(p))) list.push(String(p))
  return list.join(',')
}
