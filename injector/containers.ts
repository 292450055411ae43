// The agent container(s) and the changes to the app containers.
import type { V1Container, V1EnvVar, V1SecurityContext } from '@kubernetes/client-node'
import { parseDuration } from '../core/duration.js'
import { ENV_ADDR, ENV_CONFIG, ENV_TERMINATION_MESSAGE_PATH, ENV_TOKEN_FILE, TERMINATION_MESSAGE_PATH, TOKEN_DIR, TOKEN_FILE_NAME, VOLUME_SECRETS, VOLUME_TOKEN } from './annotations.js'
import type { InjectorConfig } from './config.js'
import type { InjectionSpec } from './spec.js'

export interface AgentIdentity {
  readonly runAsUser: number
  /** Unset: inherit the pod's runAsGroup. */
  readonly runAsGroup?: number
}

export interface AgentContainerOptions {
  readonly name: string
  /** JSON for SIDEKEY_CONFIG. */
  readonly configJson: string
  /** Native sidecar: restartPolicy Always plus a startupProbe on /ready. */
  readonly nativeSidecar: boolean
  readonly identity: AgentIdentity
  readonly withToken: boolean
  /** The opt-in metrics port (serving agents only). */
  readonly metricsPort?: number
}

export function agentSecurityContext (identity: AgentIdentity): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: identity.runAsUser,
    ...(identity.runAsGroup !== undefined ? { runAsGroup: identity.runAsGroup } : {}),
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  }
}

export function agentContainer (spec: InjectionSpec, config: InjectorConfig, o: AgentContainerOptions): V1Container {
  const resources: { requests?: Record<string, string>, limits?: Record<string, string> } = {}
  if (config.resources.requests !== undefined) resources.requests = { ...config.resources.requests }
  if (config.resources.limits !== undefined) resources.limits = { ...config.resources.limits }
  return {
    name: o.name,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    args: ['agent'],
    env: [
      { name: ENV_CONFIG, value: o.configJson },
      // The startupProbe (`sidekey get --ready`) finds the agent's port here.
      { name: 'SIDEKEY_ADDR', value: `http://127.0.0.1:${config.listen.http}` },
      { name: 'SIDEKEY_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'SIDEKEY_POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      // Where an init-only agent that gives up writes `<code>: <reason>`; the same path as terminationMessagePath.
      { name: ENV_TERMINATION_MESSAGE_PATH, value: TERMINATION_MESSAGE_PATH },
      ...(config.agentNodeOptions !== '' ? [{ name: 'NODE_OPTIONS', value: config.agentNodeOptions }] : []),
      ...(config.agentMallocArenaMax > 0 ? [{ name: 'MALLOC_ARENA_MAX', value: String(config.agentMallocArenaMax) }] : []),
    ],
    ...(o.nativeSidecar
      ? {
          restartPolicy: 'Always',
          startupProbe: { exec: { command: [...config.probeCommand] }, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: Math.max(1, Math.ceil(parseDuration(spec.syncDeadline ?? config.syncDeadline, 'syncDeadline') / 1000)) },
        }
      : {}),
    ...(o.metricsPort !== undefined ? { ports: [{ name: 'sidekey-metrics', containerPort: o.metricsPort, protocol: 'TCP' }] } : {}),
    resources,
    securityContext: agentSecurityContext(o.identity),
    volumeMounts: [
      { name: VOLUME_SECRETS, mountPath: spec.mountPath },
      ...(o.withToken ? [{ name: VOLUME_TOKEN, mountPath: TOKEN_DIR, readOnly: true }] : []),
    ],
    terminationMessagePath: TERMINATION_MESSAGE_PATH,
    terminationMessagePolicy: 'FallbackToLogsOnError',
  }
}

/** A copy of an app container with the read-only mount and, unless the user set them, the env. */
export function withSecrets (c: V1Container, spec: InjectionSpec, config: InjectorConfig, withEnv: { addr: boolean, tokenFile: boolean }): V1Container {
  const env: V1EnvVar[] = [...(c.env ?? [])]
  const has = (n: string): boolean => env.some((e) => e.name === n)
  if (withEnv.addr && !has(ENV_ADDR)) env.push({ name: ENV_ADDR, value: `http://127.0.0.1:${config.listen.http}` })
  if (withEnv.tokenFile && !has(ENV_TOKEN_FILE)) env.push({ name: ENV_TOKEN_FILE, value: `${spec.mountPath}/${TOKEN_FILE_NAME}` })
  return {
    ...c,
    ...(env.length > 0 ? { env } : {}),
    volumeMounts: [...(c.volumeMounts ?? []), { name: VOLUME_SECRETS, mountPath: spec.mountPath, readOnly: true }],
  }
}
