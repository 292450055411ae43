// Pod + injector config -> the mutated pod (a new object; the input is never
// touched). Either everything is injected or the pod is refused with a typed
// error: nothing is half-done.
import type { V1Container, V1Pod } from '@kubernetes/client-node'
import { SidekeyError } from '../agent/errors.js'
import {
  ANN_CONTAINERS, ANN_ON_CHANGE, ANN_STATUS, CONTAINER_AGENT, CONTAINER_AGENT_INIT, LABEL_INJECT, STATUS_INJECTED,
  VOLUME_SECRETS, VOLUME_TOKEN,
} from './annotations.js'
import type { V1Volume } from '@kubernetes/client-node'
import type { InjectorConfig } from './config.js'
import { agentConfigJson, type PodFacts } from './agent-config.js'
import { agentContainer, withSecrets, type AgentIdentity } from './containers.js'
import { checkPolicy } from './policy.js'
import { annotationError, buildSpec, type InjectionSpec } from './spec.js'
import { secretsVolume, tokenVolume } from './volumes.js'

export type Outcome = 'injected' | 'skipped' | 'already-injected'

export interface MutateResult {
  readonly outcome: Outcome
  readonly pod: V1Pod
  readonly spec?: InjectionSpec
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

const SA_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount'

/** JSON with sorted keys, so objects the API server re-encoded compare equal. */
function canonical (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/** What of an agent container decides what it runs and can reach (not fields the API server defaults). */
function agentShape (c: V1Container): string {
  const env = (c.env ?? []).map((e) => {
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
  const chosen = new Set(spec.containers ?? [...containers, ...initContainers].map((c) => c.name))
  for (const [i, name] of [...chosen].entries()) {
    if (!containers.some((c) => c.name === name) && !initContainers.some((c) => c.name === name)) {
      // The entry is not quoted (it may be a pasted value); the pod's own names are.
      throw annotationError(ANN_CONTAINERS, `entry ${i + 1} is not a container or init container of this pod (it has: ${[...containers, ...initContainers].map((c) => c.name).join(', ')})`)
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

  const tokenVol = tokenVolume(spec, config)
  const withToken = tokenVol !== null
  const serving = spec.mode !== 'init-only'
  const env = { addr: serving, tokenFile: serving }
  const patchApp = (c: V1Container): V1Container => chosen.has(c.name) ? withSecrets(c, spec, config, env) : c

  let newInit: V1Container[]
  let newContainers: V1Container[] = containers.map(patchApp)
  if (spec.mode === 'sidecar') {
    const agent = agentContainer(spec, config, { name: CONTAINER_AGENT, configJson: agentConfigJson(spec, config, facts, false), nativeSidecar: true, identity, withToken })
    newInit = [agent, ...initContainers.map(patchApp)]
  } else {
    const json = agentConfigJson(spec, config, facts, true)
    const init = agentContainer(spec, config, { name: CONTAINER_AGENT_INIT, configJson: json, nativeSidecar: false, identity, withToken })
    newInit = [init, ...initContainers.map(patchApp)]
    if (spec.mode === 'legacy') {
      const sidecar = agentContainer(spec, config, { name: CONTAINER_AGENT, configJson: agentConfigJson(spec, config, facts, false), nativeSidecar: false, identity, withToken })
      newContainers = [...newContainers, sidecar]
    }
  }

  const mutated: V1Pod = {
    ...pod,
    metadata: { ...pod.metadata, annotations: { ...pod.metadata?.annotations, [ANN_STATUS]: STATUS_INJECTED } },
    spec: {
      ...podSpec,
      ...(spec.needsSharedPid ? { shareProcessNamespace: true } : {}),
      initContainers: newInit,
      containers: newContainers,
      volumes: [...volumes, secretsVolume(config, spec), ...(tokenVol !== null ? [tokenVol] : [])],
    },
  }
  return { outcome: 'injected', pod: mutated, spec }
}
