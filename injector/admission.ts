// The AdmissionReview boundary: narrow an untrusted body once into our own
// types, decide, and build the answer with the same uid and apiVersion.
// No HTTP here, so the decision is testable and fuzzable on its own.
import type { V1Pod } from '@kubernetes/client-node'
import { SidekeyError, isSidekeyError, k8sReason } from '../core/errors.js'
import type { InjectorConfig } from './config.js'
import { mutatePod, type Outcome } from './mutate.js'
import { createPatch } from './patch.js'
import { templateHolder, unselectedWarning } from './workloads.js'

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1'

export interface AdmissionRequest {
  readonly uid: string
  readonly kind: { readonly group: string, readonly version: string, readonly kind: string }
  readonly namespace?: string
  readonly operation: string
  readonly object: unknown
  readonly dryRun: boolean
}

export interface AdmissionResponse {
  uid: string
  allowed: boolean
  /** Shown by kubectl as "Warning: ..." (the workload check). */
  warnings?: string[]
  status?: { code: number, message: string, reason?: string }
  patchType?: 'JSONPatch'
  patch?: string
}

export interface AdmissionReviewOut {
  apiVersion: typeof ADMISSION_API_VERSION
  kind: 'AdmissionReview'
  response: AdmissionResponse
}

export type ReviewOutcome = Outcome | 'denied' | 'ignored' | 'error' | 'warned' | 'valid'

interface ReviewFacts {
  readonly outcome: ReviewOutcome | 'malformed'
  /** For denials: the policy rule or the error code. */
  readonly rule?: string
  readonly dryRun?: boolean
  readonly namespace?: string
}

/**
 * An AdmissionReview to answer (HTTP 200), or, when the body has no uid to
 * answer, the error the handler answers over HTTP (the catalogue's status).
 */
export type ReviewResult = ReviewFacts & ({ readonly body: AdmissionReviewOut, readonly error?: undefined } | { readonly error: SidekeyError, readonly body?: undefined })

function isRecord (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function malformed (message: string): ReviewResult {
  return { error: new SidekeyError('SIDEKEY_E_ADMISSION', message), outcome: 'malformed' }
}

/** The message a denial carries; `sidekey inject` prints the same. */
export function denialMessage (err: SidekeyError): string {
  return `${err.code}: ${err.message}`
}

/**
 * The one rendering of an error in an AdmissionReview: the catalogue's status
 * as `status.code`, its Kubernetes reason, and `CODE: message` (or `text`, a
 * message already built around the error, as the workload check's).
 */
export function admissionStatus (err: SidekeyError, text = denialMessage(err)): NonNullable<AdmissionResponse['status']> {
  const reason = k8sReason(err.status)
  return { code: err.status, message: text, ...(reason !== undefined ? { reason } : {}) }
}

function answer (uid: string, response: Omit<AdmissionResponse, 'uid'>): AdmissionReviewOut {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } }
}

/** Narrows the request part of an AdmissionReview, or says what is wrong. */
export function narrowRequest (body: unknown): AdmissionRequest | { error: string, uid?: string } {
  if (!isRecord(body)) return { error: 'the body must be a JSON AdmissionReview object' }
  if (body.apiVersion !== ADMISSION_API_VERSION) return { error: `apiVersion must be ${ADMISSION_API_VERSION}; set admissionReviewVersions: [v1] in the MutatingWebhookConfiguration` }
  if (body.kind !== 'AdmissionReview') return { error: 'kind must be AdmissionReview' }
  const r = body.request
  if (!isRecord(r)) return { error: 'request is missing' }
  if (typeof r.uid !== 'string' || r.uid.length === 0 || r.uid.length > 256) return { error: 'request.uid must be a non-empty string' }
  const uid = r.uid
  const k = r.kind
  if (!isRecord(k) || typeof k.kind !== 'string' || typeof k.version !== 'string' || typeof k.group !== 'string') return { error: 'request.kind must be {group, version, kind}', uid }
  if (typeof r.operation !== 'string') return { error: 'request.operation must be a string', uid }
  if (r.namespace !== undefined && typeof r.namespace !== 'string') return { error: 'request.namespace must be a string', uid }
  if (r.dryRun !== undefined && typeof r.dryRun !== 'boolean') return { error: 'request.dryRun must be a boolean', uid }
  return {
    uid,
    kind: { group: k.group, version: k.version, kind: k.kind },
    ...(typeof r.namespace === 'string' && r.namespace.length > 0 ? { namespace: r.namespace } : {}),
    operation: r.operation,
    object: r.object,
    dryRun: r.dryRun === true,
  }
}

/** Checks that an object is shaped like a Pod where the injector reads it. */
export function narrowPod (o: unknown): V1Pod {
  const bad = (what: string): never => { throw new SidekeyError('SIDEKEY_E_ADMISSION', `request.object ${what}`) }
  if (!isRecord(o)) bad('must be a Pod object')
  const pod = o as Record<string, unknown>
  const meta = pod.metadata
  if (meta !== undefined && !isRecord(meta)) bad('metadata must be an object')
  const m = (meta ?? {}) as Record<string, unknown>
  for (const f of ['labels', 'annotations'] as const) {
    const v = m[f]
    if (v === undefined || v === null) continue
    if (!isRecord(v) || Object.values(v).some((x) => typeof x !== 'string')) bad(`metadata.${f} must map strings to strings`)
  }
  const spec = pod.spec
  if (!isRecord(spec)) bad('spec must be an object')
  const s = spec as Record<string, unknown>
  for (const f of ['containers', 'initContainers', 'ephemeralContainers', 'volumes'] as const) {
    const v = s[f]
    if (v === undefined || v === null) continue
    if (!Array.isArray(v) || v.some((c) => !isRecord(c) || typeof c.name !== 'string')) bad(`spec.${f} must be a list of objects with a name`)
    if (f === 'containers' || f === 'initContainers') {
      for (const c of v as Array<Record<string, unknown>>) {
        for (const g of ['env', 'volumeMounts'] as const) {
          const l = c[g]
          if (l !== undefined && l !== null && (!Array.isArray(l) || l.some((e) => !isRecord(e) || typeof e.name !== 'string'))) bad(`spec.${f}[${String(c.name)}].${g} must be a list of objects with a name`)
        }
      }
    }
  }
  if (s.securityContext !== undefined && s.securityContext !== null && !isRecord(s.securityContext)) bad('spec.securityContext must be an object')
  const psc = (s.securityContext ?? {}) as Record<string, unknown>
  for (const f of ['runAsUser', 'runAsGroup', 'fsGroup'] as const) {
    if (psc[f] !== undefined && psc[f] !== null && !Number.isInteger(psc[f])) bad(`spec.securityContext.${f} must be an integer`)
  }
  return o as V1Pod
}

/** One admission decision. Never throws. */
export function review (body: unknown, config: InjectorConfig): ReviewResult {
  const req = narrowRequest(body)
  if ('error' in req) {
    if (req.uid === undefined) return malformed(req.error)
    return {
      body: answer(req.uid, { allowed: false, status: admissionStatus(new SidekeyError('SIDEKEY_E_ADMISSION', req.error)) }),
      outcome: 'denied',
      rule: 'SIDEKEY_E_ADMISSION',
    }
  }
  const base = { dryRun: req.dryRun, ...(req.namespace !== undefined ? { namespace: req.namespace } : {}) }
  if (req.operation !== 'CREATE') return { ...base, body: answer(req.uid, { allowed: true }), outcome: 'ignored' }
  try {
    if (req.kind.kind !== 'Pod' || req.kind.group !== '' || req.kind.version !== 'v1') {
      throw new SidekeyError('SIDEKEY_E_ADMISSION', `the webhook handles v1 Pods only, got ${req.kind.group === '' ? '' : req.kind.group + '/'}${req.kind.version}/${req.kind.kind.slice(0, 64)}; fix the rules of the MutatingWebhookConfiguration`)
    }
    const pod = narrowPod(req.object)
    const namespace = req.namespace ?? pod.metadata?.namespace ?? 'default'
    const result = mutatePod(pod, config, namespace)
    if (result.outcome !== 'injected') return { ...base, body: answer(req.uid, { allowed: true }), outcome: result.outcome }
    const patch = Buffer.from(JSON.stringify(createPatch(pod, result.pod))).toString('base64')
    return { ...base, body: answer(req.uid, { allowed: true, patchType: 'JSONPatch', patch }), outcome: 'injected' }
  } catch (err) {
    const e = isSidekeyError(err) ? err : new SidekeyError('SIDEKEY_E_INTERNAL', 'the injector failed on this pod; see the injector log', {}, { cause: err })
    const rule = e.code === 'SIDEKEY_E_POLICY' && typeof e.details.rule === 'string' ? e.details.rule : e.code
    return {
      ...base,
      body: answer(req.uid, { allowed: false, status: admissionStatus(e) }),
      outcome: isSidekeyError(err) ? 'denied' : 'error',
      rule,
    }
  }
}

/** Workload kinds whose pod template the validating webhook checks, by API group. */
export const TEMPLATE_KINDS: Readonly<Record<string, readonly string[]>> = {
  apps: ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet'],
  batch: ['Job', 'CronJob'],
  'kubeflow.org': ['Notebook'],
}

/** Admission warnings are one line each; the API server also caps their total. */
const MAX_WARNING_CHARS = 512

function warningText (s: string): string {
  // eslint-disable-next-line no-control-regex
  const one = s.replace(/[\x00-\x1f\x7f]+/g, ' ')
  return one.length > MAX_WARNING_CHARS ? one.slice(0, MAX_WARNING_CHARS - 1) + '…' : one
}

/**
 * The workload check (POST /validate): runs a workload's pod template through
 * the same code as the pod webhook, so a typo in a sidekey.dev/* annotation
 * shows at `kubectl apply` instead of as a ReplicaSet FailedCreate event
 * later. `warn` answers allowed with warnings; `deny` refuses. Never throws.
 */
export function reviewWorkload (body: unknown, config: InjectorConfig, mode: 'warn' | 'deny' = config.workloadCheck): ReviewResult {
  const req = narrowRequest(body)
  if ('error' in req) {
    if (req.uid === undefined) return malformed(req.error)
    return { body: answer(req.uid, { allowed: true }), outcome: 'ignored' }
  }
  const base = { dryRun: req.dryRun, ...(req.namespace !== undefined ? { namespace: req.namespace } : {}) }
  const allow = (outcome: ReviewOutcome): ReviewResult => ({ ...base, body: answer(req.uid, { allowed: true }), outcome })
  if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return allow('ignored')
  if (!(TEMPLATE_KINDS[req.kind.group] ?? []).includes(req.kind.kind) || !isRecord(req.object)) return allow('ignored')
  const doc = req.object
  const holder = templateHolder(doc)
  if (holder === null) return allow('ignored')
  const meta = isRecord(doc.metadata) ? doc.metadata : {}
  const name = `${req.kind.kind}/${typeof meta.name === 'string' ? meta.name.slice(0, 253) : '<unnamed>'}`
  let problem: SidekeyError | undefined
  let warning = unselectedWarning(holder.metadata, doc.metadata)
  if (warning === undefined) {
    try {
      const pod = narrowPod({ apiVersion: 'v1', kind: 'Pod', metadata: holder.metadata ?? {}, spec: holder.spec })
      mutatePod(pod, config, req.namespace ?? (typeof meta.namespace === 'string' ? meta.namespace : 'default'))
    } catch (err) {
      problem = isSidekeyError(err) ? err : new SidekeyError('SIDEKEY_E_INTERNAL', 'the injector failed on this pod template; see the injector log', {}, { cause: err })
      warning = `its pods will be refused: ${denialMessage(problem)}`
    }
  }
  if (warning === undefined) return allow('valid')
  const text = warningText(`sidekey: ${name}: ${warning}`)
  if (mode === 'deny' && problem !== undefined) {
    return {
      ...base,
      body: answer(req.uid, { allowed: false, status: admissionStatus(problem, text) }),
      outcome: 'denied',
      rule: problem.code === 'SIDEKEY_E_POLICY' && typeof problem.details.rule === 'string' ? problem.details.rule : problem.code,
    }
  }
  return { ...base, body: answer(req.uid, { allowed: true, warnings: [text] }), outcome: 'warned', ...(problem !== undefined ? { rule: problem.code } : {}) }
}
