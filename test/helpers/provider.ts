// Calling a provider the way the refresher does, for the backend tests.
import type { SecretRef } from '../../core/reference.js'
import type { Have, Provider, RequestMeter, Snapshot } from '../../agent/providers/provider.js'

/** A full read: a sync with nothing in hand always answers with the data. */
export async function read (p: Provider, ref: SecretRef, signal?: AbortSignal): Promise<Snapshot> {
  const r = await p.sync(ref, undefined, signal)
  if (!r.changed) throw new Error(`${ref.raw}: a sync without \`have\` answered "unchanged"`)
  return r
}

/** A sync from `version`: the new version, or `'unchanged'`. */
export async function syncFrom (p: Provider, ref: SecretRef, have: string | Have): Promise<string> {
  const r = await p.sync(ref, typeof have === 'string' ? { version: have } : have)
  return r.changed ? r.version : 'unchanged'
}

/** A meter that counts backend requests by op. */
export class RequestCounts implements RequestMeter {
  readonly counts = new Map<string, number>()
  request (op: string): void { this.counts.set(op, (this.counts.get(op) ?? 0) + 1) }
}

/** A meter to hand a provider in its context; `counts` are the backend requests it sent, by op. */
export function meter (): RequestCounts { return new RequestCounts() }
