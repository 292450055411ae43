// Offline inject: find the pod (or pod template) in each document of a
// YAML/JSON stream and run it through the same mutation as the webhook.
import type { V1Pod } from '@kubernetes/client-node'
import { parseAllDocuments, stringify } from 'yaml'
import { SidekeyError, isSidekeyError } from '../core/errors.js'
import type { InjectorConfig } from './config.js'
import { ANN_STATUS, LABEL_INJECT, PREFIX } from './annotations.js'
import { mutatePod, type Outcome } from './mutate.js'

export const WORKLOAD_KINDS = ['Pod', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob', 'Notebook'] as const

type Obj = Record<string, unknown>
function isObj (v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

export interface InjectedDocument {
  readonly doc: unknown
  /** null for documents that carry no pod (Services, ConfigMaps, ...): passed through unchanged. */
  readonly outcome: Outcome | null
  /** What the user should know about this document (containers left out, ...), for stderr. */
  readonly notes: readonly string[]
}

function describe (doc: Obj): string {
  const meta = isObj(doc.metadata) ? doc.metadata : {}
  return `${String(doc.kind)}/${typeof meta.name === 'string' ? meta.name : '<unnamed>'}`
}

/** The object holding {metadata, spec} of the pod this document creates, or null. */
export function templateHolder (doc: Obj): Obj | null {
  const spec = isObj(doc.spec) ? doc.spec : null
  switch (doc.kind) {
    case 'Pod': return doc
    // Kubeflow's Notebook (kubeflow.org) keeps a pod template at spec.template like the apps kinds.
    case 'Deployment': case 'StatefulSet': case 'DaemonSet': case 'ReplicaSet': case 'Job': case 'Notebook':
      return spec !== null && isObj(spec.template) ? spec.template : null
    case 'CronJob': {
      const jt = spec !== null && isObj(spec.jobTemplate) ? spec.jobTemplate : null
      const js = jt !== null && isObj(jt.spec) ? jt.spec : null
      return js !== null && isObj(js.template) ? js.template : null
    }
    default: return null
  }
}

/**
 * A pod (template) with sidekey.dev/* annotations that the webhook will not
 * select: the label is missing or not "true". The message, or undefined.
 */
export function unselectedWarning (meta: unknown, workloadMeta?: unknown): string | undefined {
  const m = isObj(meta) ? meta : {}
  const ann = isObj(m.annotations) ? m.annotations : {}
  const ours = Object.keys(ann).filter((k) => k.startsWith(PREFIX) && k !== ANN_STATUS)
  if (ours.length === 0) return undefined
  const labels = isObj(m.labels) ? m.labels : {}
  const v = labels[LABEL_INJECT]
  if (v === 'true') return undefined
  const wl = isObj(workloadMeta) && isObj(workloadMeta.labels) ? workloadMeta.labels : {}
  const where = workloadMeta !== undefined ? 'the pod template' : 'the pod'
  const hint = wl[LABEL_INJECT] !== undefined ? ` (it is on the workload itself; the webhook selects pods, so put it under spec.template.metadata.labels)` : ''
  const shown = typeof v === 'string' && /^[A-Za-z0-9._-]{0,63}$/.test(v) ? `is "${v}"` : v === undefined ? 'is missing' : 'is not a string'
  return `${where} has ${ours.length} sidekey.dev/* annotation(s) but its label ${LABEL_INJECT} ${shown}; set it to "true" or nothing is injected${hint}`
}

export function injectDocument (doc: unknown, config: InjectorConfig, defaultNamespace: string, where: string): InjectedDocument {
  if (doc === null || doc === undefined) return { doc, outcome: null, notes: [] }
  if (!isObj(doc) || typeof doc.kind !== 'string' || typeof doc.apiVersion !== 'string') {
    throw new SidekeyError('SIDEKEY_E_INPUT', `${where}: is not a Kubernetes object (apiVersion and kind are required)`, { document: where })
  }
  if (doc.kind === 'List' && Array.isArray(doc.items)) {
    let outcome: Outcome | null = null
    const notes: string[] = []
    const items = doc.items.map((it, i) => {
      const r = injectDocument(it, config, defaultNamespace, `${where} item ${i}`)
      if (r.outcome === 'injected' || outcome === null) outcome = r.outcome ?? outcome
      notes.push(...r.notes)
      return r.doc
    })
    return { doc: { ...doc, items }, outcome, notes }
  }
  if (!(WORKLOAD_KINDS as readonly string[]).includes(doc.kind)) return { doc, outcome: null, notes: [] }
  const holder = templateHolder(doc)
  if (holder === null) throw new SidekeyError('SIDEKEY_E_INPUT', `${where} (${describe(doc)}): has no pod template at the usual place`, { document: where })
  const meta = isObj(doc.metadata) ? doc.metadata : {}
  const namespace = typeof meta.namespace === 'string' && meta.namespace.length > 0 ? meta.namespace : defaultNamespace
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: holder.metadata ?? {}, spec: holder.spec } as V1Pod
  const unselected = unselectedWarning(holder.metadata, doc.kind === 'Pod' ? undefined : doc.metadata)
  let result
  try {
    result = mutatePod(pod, config, namespace)
  } catch (err) {
    if (isSidekeyError(err)) throw new SidekeyError(err.code, err.message, { ...err.details, document: `${where} (${describe(doc)})` })
    throw err
  }
  if (result.outcome !== 'injected') return { doc, outcome: result.outcome, notes: unselected !== undefined ? [`${where} (${describe(doc)}): warning: ${unselected}`] : [] }
  const notes: string[] = []
  const left = result.leftOut ?? []
  if (left.length > 0) {
    notes.push(`${where} (${describe(doc)}): left out ${left.map((l) => `${l.name} (${l.reason})`).join(', ')}; name containers in sidekey.dev/containers to choose them yourself`)
  }
  const mutated = { metadata: result.pod.metadata, spec: result.pod.spec }
  if (doc.kind === 'Pod') return { doc: { ...doc, ...mutated }, outcome: 'injected', notes }
  const clone = structuredClone(doc)
  const h = templateHolder(clone) as Obj
  h.metadata = mutated.metadata
  h.spec = mutated.spec
  return { doc: clone, outcome: 'injected', notes }
}

/** Parses a multi-document YAML/JSON stream into plain values. */
export function parseDocuments (text: string, source: string): unknown[] {
  const docs = parseAllDocuments(text)
  if (!Array.isArray(docs)) return []
  return docs.map((d, i) => {
    const err = d.errors[0]
    if (err !== undefined) {
      const line = err.linePos?.[0]?.line
      throw new SidekeyError('SIDEKEY_E_INPUT', `${source}: document ${i + 1} is not valid YAML or JSON${line !== undefined ? ` (line ${line})` : ''}; fix the syntax`, { document: i + 1 })
    }
    return d.toJS({ maxAliasCount: 100 }) as unknown
  })
}

export function injectText (text: string, config: InjectorConfig, defaultNamespace: string, source = 'input'): { yaml: string, outcomes: Array<Outcome | null>, notes: string[] } {
  const docs = parseDocuments(text, source)
  const out = docs.map((d, i) => injectDocument(d, config, defaultNamespace, `${source} document ${i + 1}`))
  const kept = out.filter((o) => o.doc !== null && o.doc !== undefined)
  return {
    yaml: kept.map((o) => stringify(o.doc, { lineWidth: 0 })).join('---\n'),
    outcomes: kept.map((o) => o.outcome),
    notes: out.flatMap((o) => o.notes),
  }
}
