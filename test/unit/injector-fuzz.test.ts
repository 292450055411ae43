// Fuzzed AdmissionReview bodies and annotation values: the injector never
// throws, and every answer is a well-formed AdmissionReview or a 4xx.
import t, { type Test } from 'tap'
import { request as httpsRequest } from 'node:https'
import { pino } from 'pino'
import fjp from 'fast-json-patch'
import { Pod } from 'kubernetes-models/v1'
import { review } from '../../injector/admission.js'
import { ERRORS, type ErrorCode } from '../../core/errors.js'
import { startInjectorServer } from '../../injector/handler.js'
import { admissionReview, makeCert, pod, testConfig } from './injector-helpers.js'

const cfg = testConfig()
let seed = 0x5eed
const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff }
const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)] as T

const ALPHABET = 'abcXYZ019:/#@._-~{}"\\ \n\t\u0000\u00e9\u{1F511}*?$'
function randString (max = 40): string {
  let s = ''
  const n = Math.floor(rnd() * max)
  for (let i = 0; i < n; i++) s += pick([...ALPHABET])
  return s
}
function randValue (depth = 0): unknown {
  switch (Math.floor(rnd() * (depth > 2 ? 5 : 7))) {
    case 0: return null
    case 1: return rnd() < 0.5
    case 2: return Math.floor(rnd() * 2 ** 33) - 2 ** 32
    case 3: return randString()
    case 4: return pick(['', 'CREATE', 'Pod', 'v1', 'true', 'k8s:a', 'vault:secret/data/team-a/x#k', '{{secret "k8s:a"}}'])
    case 5: return Array.from({ length: Math.floor(rnd() * 4) }, () => randValue(depth + 1))
    default: return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [pick(['name', 'spec', 'metadata', 'containers', 'uid', randString(8)]), randValue(depth + 1)]))
  }
}

/** Replaces one random node of a JSON tree with a random value. */
function mutateTree (root: unknown): unknown {
  const doc = structuredClone(root)
  let node: any = doc
  for (let depth = 0; depth < 8; depth++) {
    if (node === null || typeof node !== 'object') break
    const keys = Object.keys(node)
    if (keys.length === 0) break
    const k = pick(keys)
    if (rnd() < 0.3 || node[k] === null || typeof node[k] !== 'object') {
      if (rnd() < 0.2) delete node[k]
      else node[k] = randValue()
      return doc
    }
    node = node[k]
  }
  return doc
}

const KEYS = ['secret-a', 'secret-b', 'template-t', 'format-a', 'mode-a', 'optional-a', 'role', 'store-vault', 'store-k8s', 'refresh', 'inject-mode', 'on-change', 'containers', 'mount-path', 'status', 'x-unknown']
function randomAnnotations (): Record<string, string> {
  const ann: Record<string, string> = { 'sidekey.dev/secret-a': pick(['k8s:a', 'vault:secret/data/team-a/x#k', randString()]) }
  const n = Math.floor(rnd() * 5)
  for (let i = 0; i < n; i++) {
    ann['sidekey.dev/' + pick(KEYS)] = pick([randString(), 'k8s:b#k@2', '0440', 'json', 'true', '30s', 'legacy', 'init-only', 'app', '/etc/s', '{"role":"r"}', `{{secret "${randString(10)}"}}`, 'http:POST http://127.0.0.1:1/x'])
  }
  return ann
}

function checkAnswer (t: Test, r: ReturnType<typeof review>, body: unknown): void {
  if (r.error !== undefined) {
    t.ok(r.error.status >= 400 && r.error.status < 500, 'an error answer is a 4xx')
    t.equal(r.error.code, 'SIDEKEY_E_ADMISSION')
    return
  }
  const out = r.body as { apiVersion: string, kind: string, response: { uid: unknown, allowed: unknown, patch?: string, status?: { code: number, message: string } } }
  const uid = (body as { request: { uid: unknown } }).request.uid
  if (out.apiVersion !== 'admission.k8s.io/v1' || out.kind !== 'AdmissionReview' || out.response.uid !== uid || typeof out.response.allowed !== 'boolean') {
    t.fail('malformed AdmissionReview answer', { body, out })
  }
  if (out.response.allowed === false && (typeof out.response.status?.message !== 'string' || !/^SIDEKEY_E_[A-Z_]+: /.test(out.response.status.message))) t.fail('denial without a coded message', { out })
  if (out.response.patch !== undefined) {
    const ops = JSON.parse(Buffer.from(out.response.patch, 'base64').toString())
    const obj = structuredClone((body as { request: { object: unknown } }).request.object)
    const mutated = fjp.applyPatch(obj, ops, true, false).newDocument
    try {
      new Pod(mutated as any).validate()
    } catch (err) {
      // The input itself may be schema-invalid (fuzzed); only the injected parts must be valid.
      const before = (() => { try { new Pod(structuredClone((body as any).request.object)).validate(); return true } catch { return false } })()
      if (before) t.fail('a valid pod became invalid', { err: (err as Error).message })
    }
  }
}

t.test('review() never throws on fuzzed bodies', async (t) => {
  const base = admissionReview(pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/containers': 'app' }))
  let injected = 0
  let denied = 0
  for (let i = 0; i < 3000; i++) {
    const body = i % 3 === 0 ? randValue() : mutateTree(i % 3 === 1 ? base : mutateTree(base))
    let r: ReturnType<typeof review> | undefined
    try {
      r = review(body, cfg)
    } catch (err) {
      t.fail(`review threw: ${(err as Error).stack}`, { body })
      continue
    }
    checkAnswer(t, r, body)
    if (r.outcome === 'injected') injected++
    if (r.outcome === 'denied') denied++
  }
  t.ok(injected > 100 && denied > 100, `a mix of outcomes (${injected} injected, ${denied} denied)`)
})

t.test('fuzzed annotation values: injected and schema-valid, or denied with a coded message', async (t) => {
  const outcomes = new Map<string, number>()
  for (let i = 0; i < 3000; i++) {
    const body = admissionReview(pod(randomAnnotations()))
    const r = review(body, cfg)
    checkAnswer(t, r, body)
    t.not(r.outcome, 'error', 'no internal error')
    outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1)
  }
  t.ok((outcomes.get('injected') ?? 0) > 50, `some injected: ${JSON.stringify([...outcomes])}`)
})

t.test('over HTTPS: every fuzzed body gets an AdmissionReview or a 4xx', async (t) => {
  const tls = makeCert()
  const s = await startInjectorServer({ config: cfg, certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }) })
  t.teardown(() => s.close())
  const base = admissionReview(pod({ 'sidekey.dev/secret-a': 'k8s:a' }))
  for (let i = 0; i < 300; i++) {
    const raw = i % 4 === 0 ? randString(200) : JSON.stringify(mutateTree(base))
    const { status, text } = await new Promise<{ status: number, text: string }>((resolve, reject) => {
      const req = httpsRequest(`${s.url}/mutate`, { method: 'POST', rejectUnauthorized: false }, (res) => {
        let text = ''
        res.on('data', (c) => { text += c })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      })
      req.on('error', reject)
      req.end(raw)
    })
    const parsed = JSON.parse(text)
    if (status === 200) t.equal(parsed.kind, 'AdmissionReview')
    else t.ok(status >= 400 && status < 500 && ['SIDEKEY_E_ADMISSION', 'SIDEKEY_E_BODY_TOO_LARGE'].includes(parsed.error?.code) && ERRORS[parsed.error.code as ErrorCode].status === status, `status ${status}`)
  }
  const health = await new Promise<number>((resolve) => httpsRequest(`${s.url}/healthz`, { rejectUnauthorized: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).end())
  t.equal(health, 200, 'still serving')
})
