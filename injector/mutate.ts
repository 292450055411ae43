// Pod + injector config -> the mutated pod (a new object; the input is never
// touched). Either everything is injected or the pod is refused with a typed
// error: nothing is half-done.
import type { V1Container, V1Pod } from '@kubernetes/client-node'
import { SidekeyError } from '../core/errors.js'
import { storeDescriptor } from '../core/stores.js'
import {
  ANN_CONTAINERS, ANN_MODE_PREFIX, ANN_ON_CHANGE, ANN_STATUS, CONTAINER_AGENT, CONTAINER_AGENT_INIT, LABEL_INJECT, STATUS_INJECTED,
  VOLUME_SECRETS, VOLUME_TOKEN,
} from './annotations.js'
import type { V1Volume } from '@kubernetes/client-node'
import type { InjectorConfig } from './config.js'
import { agentConfigJson, type PodFacts } from './agent-config.js'
import { agentContainer, withSecrets, type AgentIdentity } from './containers.js'
import { MESH_EXCLUDE_PORTS, infrastructureOf, meshesOf, mergePorts } from './infrastructure.js'
import { checkPolicy } from './policy.js'
import { annotationError, buildSpec, type InjectionSpec } from './spec.js'
import { secretsVolume, tokenVolume } from './volumes.js'

export type Outcome = 'injected' | 'skipped' | 'already-injected'

/** A container that did not get the secrets by default, and why. */
export interface LeftOut {
  readonly name: string
  readonly reason: string
}

export interface MutateResult {
  readonly outcome: Outcome
  readonly pod: V1Pod
  readonly spec?: InjectionSpec
  /** Containers left out by the default choice (empty when sidekey.dev/containers names them). */
  readonly leftOut?: readonly LeftOut[]
}

export function isSelected (pod: V1Pod): boolean {
  return pod.metadata?.labels?.[LABEL_INJECT] === 'true'
}

export function isInjected (pod: V1Pod): boolean {
  return pod.metadata?.annotations?.[ANN_STATUS] === STATUS_INJECTED
}

function conflict (what: string, name: string): SidekeyError {
  return new SidekeyError('SIDEKEY_E_CONFLICT', `the pod already has a ${what} named "${name}", which Sidekey injects; rename it (Sidekey never overwrites it)`, { name })
}

/** TCP ports the agent's stores talk to, from each store type's descriptor. */
export function backendPorts (spec: InjectionSpec): number[] {
  const out = new Set<number>()
  for (const s of Object.values(spec.stores)) {
    for (const p of storeDescriptor(s.type)?.egressPorts?.(s as Readonly<Record<string, unknown>>) ?? []) out.add(p)
  }
  return [...out].sort((a, b) => a - b)
}

/** The same spec with `initContainers` right before `containers`, the order they run in (and kubectl prints). */
function orderedSpec (s: NonNullable<V1Pod['spec']>): NonNullable<V1Pod['spec']> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(s)) {
    if (k === 'initContainers') continue
    if (k === 'containers') out.initContainers = s.initContainers
    out[k] = v
  }
  return out as unknown as NonNullable<V1Pod['spec']>
}

const SA_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount'

/** JSON with sorted keys, so objects the API server re-encoded compare equal. */
function canonical (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/**
 * glibc's arena count (injector config agentMallocArenaMax): memory tuning, not
 * what the agent runs or reaches. Left out of the comparison, so a pod an
 * earlier injector made (without it) or one made under another setting is
 * still this injector's own: a committed `sidekey inject` output keeps admitting.
 */
const TUNING_ENV = new Set(['MALLOC_ARENA_MAX'])

/** What of an agent container decides what it runs and can reach (not fields the API server defaults). */
function agentShape (c: V1Container): string {
  const env = (c.env ?? []).filter((e) => !TUNING_ENV.has(e.name)).map((e) => {
    const ref = e.valueFrom?.fieldRef
    return ref?.apiVersion === 'v1' ? { ...e, valueFrom: { ...e.valueFrom, fieldRef: { fieldPath: ref.fieldPath } } } : e
  })
  // The ServiceAccount admission plugin adds its token mount to every container, ours included.
  const mounts = (c.volumeMounts ?? []).filter((m) => m.mountPath !== SA_MOUNT)
  return canonical({ name: c.name, image: c.image, command: c.command, args: c.args, env, envFrom: c.envFrom, securityContext: c.securityContext, volumeMounts: mounts, volumeDevices: c.volumeDevices, lifecycle: c.lifecycle, workingDir: c.workingDir, restartPolicy: c.restartPolicy })
}

function volumeShape (v: V1Volume): string {
  const projected = v.projected !== undefined && v.projected.defaultMode === 420 ? { ...v.projected, defaultMode: undefined } : v.projected
  return canonical({ ...v, projected })
}

const isAgent = (c: V1Container): boolean => c.name === CONTAINER_AGENT || c.name === CONTAINER_AGENT_INIT
const ours = (v: V1Volume): boolean => v.name === VOLUME_SECRETS || v.name === VOLUME_TOKEN

/**
 * A pod that arrives saying it is injected (re-invocation, `kubectl apply` of
 * an injected manifest, or a hand-written agent) is injected again from its
 * annotations on a stripped copy; its agent containers and volumes must be
 * exactly those, so no check (image, args, securityContext, config against
 * policy) is skipped by writing the status annotation.
 */
function revalidateInjected (pod: V1Pod, config: InjectorConfig, namespace: string): void {
  const spec = pod.spec
  const strip = (cs: V1Container[] | undefined): V1Container[] | undefined => cs?.filter((c) => !isAgent(c)).map((c) => ({ ...c, volumeMounts: (c.volumeMounts ?? []).filter((m) => m.name !== VOLUME_SECRETS) }))
  const annotations = { ...pod.metadata?.annotations }
  delete annotations[ANN_STATUS]
  const stripped: V1Pod = {
    ...pod,
    metadata: { ...pod.metadata, annotations },
    spec: {
      ...spec,
      containers: strip(spec?.containers) ?? [],
      ...(spec?.initContainers !== undefined ? { initContainers: strip(spec.initContainers) ?? [] } : {}),
      ...(spec?.volumes !== undefined ? { volumes: spec.volumes.filter((v) => !ours(v)) } : {}),
    },
  }
  const expected = mutatePod(stripped, config, namespace).pod
  const agents = (p: V1Pod): string[] => [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].filter(isAgent).map(agentShape).sort()
  const vols = (p: V1Pod): string[] => (p.spec?.volumes ?? []).filter(ours).map(volumeShape).sort()
  if (canonical(agents(pod)) !== canonical(agents(expected)) || canonical(vols(pod)) !== canonical(vols(expected))) {
    throw new SidekeyError('SIDEKEY_E_CONFLICT', `the pod carries ${ANN_STATUS}: ${STATUS_INJECTED}, but its agent containers or volumes are not the ones this injector builds from its annotations (image, command, args, env, securityContext, mounts or volumes differ); remove the status annotation, the ${CONTAINER_AGENT} container and the ${VOLUME_SECRETS} / ${VOLUME_TOKEN} volumes, and let the webhook inject`, { name: CONTAINER_AGENT })
  }
}

/** Decides what to do with one pod; `namespace` is the admission request's namespace. */
export function mutatePod (pod: V1Pod, config: InjectorConfig, namespace: string): MutateResult {
  if (!isSelected(pod)) return { outcome: 'skipped', pod }
  if (isInjected(pod)) {
    revalidateInjected(pod, config, namespace)
    return { outcome: 'already-injected', pod }
  }
  const podSpec = pod.spec
  if (podSpec === undefined || !Array.isArray(podSpec.containers) || podSpec.containers.length === 0) {
    throw new SidekeyError('SIDEKEY_E_ADMISSION', 'the pod has no spec.containers; nothing to inject into', {})
  }
  const spec = buildSpec(pod.metadata?.annotations, config)
  checkPolicy(spec, namespace, config)

  const containers = podSpec.containers
  const initContainers = podSpec.initContainers ?? []
  const volumes = podSpec.volumes ?? []
  for (const v of volumes) if (v.name === VOLUME_SECRETS || v.name === VOLUME_TOKEN) throw conflict('volume', v.name)
  for (const c of [...containers, ...initContainers, ...(podSpec.ephemeralContainers ?? [])]) {
    if (c.name === CONTAINER_AGENT || c.name === CONTAINER_AGENT_INIT) throw conflict('container', c.name)
  }
  // The agent goes first, so the app's init containers can read the secrets,
  // except after a mesh proxy that is itself a native sidecar: then the
  // agent's backend calls go through a proxy that is already running. The
  // init containers before the agent (the mesh's own) could not read them.
  let agentAt = 0
  initContainers.forEach((c, i) => { if (infrastructureOf(c.name)?.proxy === true && c.restartPolicy === 'Always') agentAt = i + 1 })
  // A mesh whose proxy is not (yet) a native sidecar: redirection may be
  // active before the proxy runs (istio-cni, linkerd-cni), and the proxy
  // starts only after the agent is ready. The agent's backend ports bypass
  // the proxy instead, through the mesh's own annotation.
  const meshes = agentAt === 0
    ? meshesOf({ annotations: pod.metadata?.annotations ?? {}, labels: pod.metadata?.labels ?? {}, names: [...initContainers, ...containers].map((c) => c.name) })
    : []
  const beforeAgent = new Set(initContainers.slice(0, agentAt).map((c) => c.name))
  const leftOut: LeftOut[] = []
  let chosen: Set<string>
  if (spec.containers === null) {
    chosen = new Set()
    for (const c of [...initContainers, ...containers]) {
      const infra = infrastructureOf(c.name)
      if (infra !== undefined) leftOut.push({ name: c.name, reason: `infrastructure (${infra.owner})` })
      else if (beforeAgent.has(c.name)) leftOut.push({ name: c.name, reason: 'init container that runs before the agent' })
      else chosen.add(c.name)
    }
  } else {
    chosen = new Set(spec.containers)
    for (const [i, name] of [...chosen].entries()) {
      if (!containers.some((c) => c.name === name) && !initContainers.some((c) => c.name === name)) {
        // The entry is not quoted (it may be a pasted value); the pod's own names are.
        throw annotationError(ANN_CONTAINERS, `entry ${i + 1} is not a container or init container of this pod (it has: ${[...containers, ...initContainers].map((c) => c.name).join(', ')})`)
      }
      if (beforeAgent.has(name)) throw annotationError(ANN_CONTAINERS, `names init container "${name}", which runs before the agent and would find no secrets; remove it from the list`)
    }
  }
  for (const c of [...containers, ...initContainers]) {
    if (!chosen.has(c.name)) continue
    const clash = (c.volumeMounts ?? []).find((m) => m.mountPath === spec.mountPath)
    if (clash !== undefined) throw new SidekeyError('SIDEKEY_E_CONFLICT', `container "${c.name}" already mounts volume "${clash.name}" at ${spec.mountPath}; set sidekey.dev/mount-path to another directory`, { name: c.name })
  }
  if (spec.needsSharedPid && podSpec.shareProcessNamespace === false) {
    throw annotationError(ANN_ON_CHANGE, 'a signal: hook needs shareProcessNamespace, which the pod sets to false; use an http:POST hook or allow a shared process namespace')
  }

  // Ownership: run as the pod's non-root user, so 0440 files are readable by the app; fsGroup gives group access.
  const sc = podSpec.securityContext ?? {}
  const podUid = sc.runAsUser !== undefined && sc.runAsUser !== 0 ? sc.runAsUser : undefined
  const identity: AgentIdentity = {
    runAsUser: podUid ?? config.agentUser,
    ...(sc.runAsGroup === undefined || sc.runAsGroup === 0 ? { runAsGroup: podUid ?? config.agentUser } : {}),
  }
  const facts: PodFacts = {
    namespace,
    ...(podUid !== undefined || sc.fsGroup !== undefined
      ? { fileOwner: { ...(podUid !== undefined ? { uid: podUid } : {}), ...(sc.fsGroup !== undefined ? { gid: sc.fsGroup } : {}) } }
      : {}),
  }

  // A mode without "other" read must still let every chosen container read:
  // group read needs the pod's fsGroup, owner-only read needs the same uid.
  const ownerUid = podUid ?? config.agentUser
  for (const s of spec.secrets) {
    if (s.mode === undefined) continue
    const bits = parseInt(s.mode, 8)
    if ((bits & 0o004) !== 0 || ((bits & 0o040) !== 0 && sc.fsGroup !== undefined)) continue
    const reader = [...containers, ...initContainers].find((c) => chosen.has(c.name) && (c.securityContext?.runAsUser ?? sc.runAsUser) !== ownerUid)
    if (reader === undefined) continue
    const uid = reader.securityContext?.runAsUser ?? sc.runAsUser
    throw annotationError(ANN_MODE_PREFIX + s.name, `${s.mode} lets only ${(bits & 0o040) !== 0 ? 'the owner and group' : 'the owner'} read, but container "${reader.name}" runs as ${uid === undefined ? 'the image\'s user' : `uid ${uid}`} and the files are owned by uid ${ownerUid}${sc.fsGroup === undefined ? ' with no fsGroup' : ''}; use 0444, set spec.securityContext.fsGroup with 0440, or run the pod as uid ${ownerUid}`)
  }

  const tokenVol = tokenVolume(spec, config)
  const withToken = tokenVol !== null
  const serving = spec.mode !== 'init-only'
  const env = { addr: serving, tokenFile: serving }
  const patchApp = (c: V1Container): V1Container => chosen.has(c.name) ? withSecrets(c, spec, config, env) : c

  const serves = spec.mode !== 'init-only'
  const metricsOpt = spec.metricsPort !== undefined && serves ? { metricsPort: spec.metricsPort } : {}
  // Prometheus' kubernetes_sd pod role reads these; an app that already
  // declares its own scrape target keeps it (the port is also named sidekey-metrics for a PodMonitor).
  const scrape: Record<string, string> = {}
  const own = pod.metadata?.annotations ?? {}
  if (spec.metricsPort !== undefined && serves && own['prometheus.io/scrape'] === undefined && own['prometheus.io/port'] === undefined) {
    scrape['prometheus.io/scrape'] = 'true'
    scrape['prometheus.io/port'] = String(spec.metricsPort)
    scrape['prometheus.io/path'] = '/metrics'
  }
  let newInit: V1Container[]
  let newContainers: V1Container[] = containers.map(patchApp)
  if (spec.mode === 'sidecar') {
    const agent = agentContainer(spec, config, { name: CONTAINER_AGENT, configJson: agentConfigJson(spec, config, facts, false), nativeSidecar: true, identity, withToken, ...metricsOpt })
    newInit = [...initContainers.slice(0, agentAt), agent, ...initContainers.slice(agentAt).map(patchApp)]
  } else {
    const json = agentConfigJson(spec, config, facts, true)
    const init = agentContainer(spec, config, { name: CONTAINER_AGENT_INIT, configJson: json, nativeSidecar: false, identity, withToken })
    newInit = [...initContainers.slice(0, agentAt), init, ...initContainers.slice(agentAt).map(patchApp)]
    if (spec.mode === 'legacy') {
      const sidecar = agentContainer(spec, config, { name: CONTAINER_AGENT, configJson: agentConfigJson(spec, config, facts, false), nativeSidecar: false, identity, withToken, ...metricsOpt })
      newContainers = [...newContainers, sidecar]
    }
  }

  const meshAnnotations: Record<string, string> = {}
  const ports = backendPorts(spec)
  for (const m of meshes) {
    if (ports.length > 0) meshAnnotations[MESH_EXCLUDE_PORTS[m]] = mergePorts(pod.metadata?.annotations?.[MESH_EXCLUDE_PORTS[m]], ports)
  }

  const mutated: V1Pod = {
    ...pod,
    metadata: { ...pod.metadata, annotations: { ...pod.metadata?.annotations, ...meshAnnotations, ...scrape, [ANN_STATUS]: STATUS_INJECTED } },
    spec: orderedSpec({
      ...podSpec,
      ...(spec.needsSharedPid ? { shareProcessNamespace: true } : {}),
      initContainers: newInit,
      containers: newContainers,
      volumes: [...volumes, secretsVolume(config, spec), ...(tokenVol !== null ? [tokenVol] : [])],
    }),
  }
  return { outcome: 'injected', pod: mutated, spec, leftOut }
}
