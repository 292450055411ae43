// Spec + pod facts -> the agent config document the agent container reads
// from SIDEKEY_CONFIG. It is validated with the agent's own loader, so what
// the injector accepts the agent can run.
import { isSidekeyError } from '../core/errors.js'
import { loadConfig } from '../core/config/load.js'
import type { AgentConfigInput } from '../core/config/schema.js'
import { TOKEN_FILE_NAME } from './annotations.js'
import type { InjectorConfig } from './config.js'
import { annotationError, hideNonReferences, type InjectionSpec } from './spec.js'

export interface PodFacts {
  readonly namespace: string
  readonly fileOwner?: { readonly uid?: number, readonly gid?: number }
}

export function agentConfigDoc (spec: InjectionSpec, config: InjectorConfig, pod: PodFacts, exitAfterSync: boolean): AgentConfigInput {
  const stores: Record<string, Record<string, unknown>> = {}
  for (const [name, s] of Object.entries(spec.stores)) {
    stores[name] = s.type === 'k8s' && s.namespace === undefined ? { ...s, namespace: pod.namespace } : { ...s }
  }
  const doc = {
    secrets: spec.secrets.map((s) => ({
      name: s.name,
      ...(s.ref !== undefined ? { ref: s.ref.raw } : { template: s.template as string }),
      ...(s.format !== undefined ? { format: s.format } : {}),
      ...(s.mode !== undefined ? { mode: s.mode } : {}),
      ...(s.optional ? { required: false } : {}),
    })),
    dir: spec.mountPath,
    // init-only exits after the first sync: nothing to scrape.
    listen: { http: config.listen.http, grpc: config.listen.grpc, ...(spec.metricsPort !== undefined && !exitAfterSync ? { metrics: spec.metricsPort } : {}) },
    apiTokenFile: `${spec.mountPath}/${TOKEN_FILE_NAME}`,
    refresh: spec.refresh ?? config.refresh,
    ...(spec.onChange.length > 0 ? { onChange: [...spec.onChange] } : {}),
    stores,
    ...(config.maxValueBytes !== 1048576 ? { maxValueBytes: config.maxValueBytes } : {}),
    ...(exitAfterSync ? { exitAfterSync: true, syncDeadline: spec.syncDeadline ?? config.syncDeadline } : {}),
    ...(pod.fileOwner !== undefined && (pod.fileOwner.uid !== undefined || pod.fileOwner.gid !== undefined) ? { fileOwner: { ...pod.fileOwner } } : {}),
  }
  return doc as AgentConfigInput
}

/** The agent config as the JSON string for SIDEKEY_CONFIG, after the agent's loader accepted it. */
export function agentConfigJson (spec: InjectionSpec, config: InjectorConfig, pod: PodFacts, exitAfterSync: boolean): string {
  const doc = agentConfigDoc(spec, config, pod, exitAfterSync)
  try {
    loadConfig(doc)
  } catch (err) {
    const text = spec.secrets.map((s) => s.template ?? s.ref?.raw ?? '').join('\n')
    throw annotationError(spec.secrets[0]?.annotation ?? 'sidekey.dev/', `the agent would reject the config built from these annotations: ${isSidekeyError(err) ? hideNonReferences(err.message, text, Object.keys(config.stores)) : 'invalid'}`, { reason: isSidekeyError(err) ? err.code : 'unknown' })
  }
  return JSON.stringify(doc)
}
