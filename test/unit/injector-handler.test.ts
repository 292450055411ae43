import t from 'tap'
import { request as httpsRequest } from 'node:https'
import { connect } from 'node:tls'
import { copyFileSync } from 'node:fs'
import { pino } from 'pino'
import fjp from 'fast-json-patch'
import { startInjectorServer, type InjectorServer } from '../../injector/handler.js'
import { admissionReview, makeCert, pod, testConfig } from './injector-helpers.js'

interface Answer { status: number, body: any, text: string }

function call (s: InjectorServer, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${s.url}${path}`, { method, rejectUnauthorized: false, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let parsed: unknown
        try { parsed = JSON.parse(text) } catch { parsed = undefined }
        resolve({ status: res.statusCode ?? 0, body: parsed, text })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

function peerFingerprint (s: InjectorServer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port: s.port, rejectUnauthorized: false }, () => {
      resolve(sock.getPeerCertificate().fingerprint256)
      sock.end()
    })
    sock.on('error', reject)
  })
}

const tls = makeCert()
const server = await startInjectorServer({ config: testConfig(), certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, maxBodyBytes: 64 * 1024, tlsPollMs: 50, logger: pino({ level: 'silent' }) })
t.teardown(() => server.close())

const labelled = pod({ 'sidekey.dev/secret-openai': 'vault:secret/data/team-a/openai#api_key', 'sidekey.dev/role': 'app' })

t.test('POST /mutate injects and answers with the same uid and version', async (t) => {
  const original = structuredClone(labelled)
  const r = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(labelled)))
  t.equal(r.status, 200)
  t.equal(r.body.apiVersion, 'admission.k8s.io/v1')
  t.equal(r.body.kind, 'AdmissionReview')
  t.equal(r.body.response.uid, '705ab4f5-6393-11e8-b7cc-42010a800002')
  t.equal(r.body.response.allowed, true)
  t.equal(r.body.response.patchType, 'JSONPatch')
  const ops = JSON.parse(Buffer.from(r.body.response.patch, 'base64').toString())
  const mutated = fjp.applyPatch(original, ops).newDocument as typeof labelled
  t.equal(mutated.spec?.initContainers?.[0]?.name, 'sidekey-agent')
  t.equal(mutated.metadata?.annotations?.['sidekey.dev/status'], 'injected')
})

t.test('dry-run gets the same answer, and nothing else happens', async (t) => {
  const a = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(labelled)))
  const b = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(labelled, { dryRun: true })))
  t.same(b.body, a.body)
})

t.test('no-op answers: unlabelled, already injected, not CREATE', async (t) => {
  const unlabelled = structuredClone(labelled)
  delete unlabelled.metadata!.labels
  // A pod this injector injected (issue 9 finding 6: a bare status annotation is no longer enough).
  const { mutatePod } = await import('../../injector/mutate.js')
  const injected = mutatePod(structuredClone(labelled), testConfig(), 'team-a').pod
  for (const [what, body] of [
    ['unlabelled', admissionReview(unlabelled)],
    ['already injected', admissionReview(injected)],
    ['UPDATE', admissionReview(labelled, { operation: 'UPDATE' })],
  ] as const) {
    const r = await call(server, 'POST', '/mutate', JSON.stringify(body))
    t.equal(r.status, 200, what)
    t.same(r.body.response, { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true }, `${what}: allowed, no patch`)
  }
})

t.test('denials carry the code, the annotation and the rule', async (t) => {
  const bad = pod({ 'sidekey.dev/secret-openai': 'vault:secret/data/team-b/openai#api_key', 'sidekey.dev/role': 'app' })
  const r = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(bad)))
  t.equal(r.status, 200)
  t.equal(r.body.response.allowed, false)
  t.equal(r.body.response.status.code, 403)
  t.equal(r.body.response.status.message, 'SIDEKEY_E_POLICY: sidekey.dev/secret-openai: reference vault:secret/data/team-b/openai#api_key is not allowed in namespace "team-a" by policy rule "teams" (it allows vault:secret/data/team-a/*, aws:team-a/*, azure:kv-prod/*, k8s:*)')
  const ann = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(pod({ 'sidekey.dev/secret-openai': 'sk-live-0123456789abcdef' }))))
  t.equal(ann.body.response.status.code, 400)
  t.match(ann.body.response.status.message, /^SIDEKEY_E_ANNOTATION: sidekey.dev\/secret-openai: /)
  t.notMatch(ann.text, /sk-live-0123456789abcdef/, 'the pasted value is not echoed')
  const notPod = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview({}, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } })))
  t.equal(notPod.body.response.allowed, false)
  t.match(notPod.body.response.status.message, /handles v1 Pods only, got apps\/v1\/Deployment/)
  const noNs = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(pod({ 'sidekey.dev/secret-a': 'k8s:a' }), { namespace: 'prod' })))
  t.match(noNs.body.response.status.message, /namespace "prod" matches no policy rule/)
})

t.test('malformed input: 4xx, never a crash', async (t) => {
  const cases: Array<[string, string | Buffer, number, string, RegExp]> = [
    ['not JSON', '{"apiVersion":', 400, 'SIDEKEY_E_ADMISSION', /not JSON/],
    ['array', '[]', 400, 'SIDEKEY_E_ADMISSION', /JSON AdmissionReview object/],
    ['v1beta1', JSON.stringify({ ...admissionReview(labelled), apiVersion: 'admission.k8s.io/v1beta1' }), 400, 'SIDEKEY_E_ADMISSION', /admissionReviewVersions: \[v1\]/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), 400, 'SIDEKEY_E_ADMISSION', /uid/],
    ['too large', Buffer.alloc(70 * 1024, 0x20), 413, 'SIDEKEY_E_BODY_TOO_LARGE', /larger than 65536 bytes/],
  ]
  for (const [what, body, status, code, re] of cases) {
    const r = await call(server, 'POST', '/mutate', body)
    t.equal(r.status, status, what)
    t.equal(r.body.error.code, code, what)
    t.match(r.body.error.message, re, what)
  }
  t.equal((await call(server, 'GET', '/mutate')).status, 405)
  t.equal((await call(server, 'GET', '/nope')).status, 404)
  const withUid = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview({ spec: { containers: 'x' } })))
  t.equal(withUid.status, 200, 'a malformed pod with a uid gets an AdmissionReview')
  t.equal(withUid.body.response.allowed, false)
  t.match(withUid.body.response.status.message, /spec.containers must be a list/)
})

t.test('health, readiness and metrics', async (t) => {
  t.equal((await call(server, 'GET', '/healthz')).status, 200)
  t.equal((await call(server, 'GET', '/readyz')).status, 200)
  const m = await call(server, 'GET', '/metrics')
  t.equal(m.status, 200)
  t.match(m.text, /sidekey_injector_admissions_total\{outcome="injected"\} [1-9]/)
  t.match(m.text, /sidekey_injector_admissions_total\{outcome="skipped"\} 1/)
  t.match(m.text, /sidekey_injector_denials_total\{rule="teams"\} 1/)
  t.match(m.text, /sidekey_injector_denials_total\{rule="\(none\)"\} 1/)
  t.match(m.text, /sidekey_injector_admission_duration_seconds_bucket\{le="\+Inf",outcome="injected"\} [1-9]/)
})

t.test('the serving certificate is reloaded when its files change', async (t) => {
  const before = await peerFingerprint(server)
  const next = makeCert(undefined, 'rotated')
  // A key that does not match the cert (mid-rotation) is refused; the old pair keeps serving.
  copyFileSync(next.cert, tls.cert)
  t.equal(server.reloadTls(), false)
  t.equal(await peerFingerprint(server), before)
  copyFileSync(next.key, tls.key)
  let after = before
  for (let i = 0; i < 100 && after === before; i++) {
    await new Promise((r) => setTimeout(r, 50))
    after = await peerFingerprint(server)
  }
  t.not(after, before, 'the new certificate is served without a restart')
  const r = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(labelled)))
  t.equal(r.body.response.allowed, true)
  t.match((await call(server, 'GET', '/metrics')).text, /sidekey_injector_tls_reloads_total\{result="ok"\} 1/)
})
