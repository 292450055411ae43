// Issue 11 item 6: a workload whose pod template has a sidekey.dev/* mistake
// is flagged when it is applied (admission warnings from POST /validate, or a
// refusal with workloadCheck: deny), with the same message the pod webhook
// would give its pods later; offline inject warns on templates it would skip.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { pino } from 'pino'
import { review, reviewWorkload } from '../../injector/admission.js'
import { startInjectorServer } from '../../injector/handler.js'
import { REPO, admissionReview, makeCert, pod, testConfig } from './injector-helpers.js'

const cfg = testConfig()
const GOOD = { 'sidekey.dev/secret-openai': 'vault:secret/data/team-a/openai#api_key', 'sidekey.dev/role': 'app' }

function template (annotations: Record<string, string>, labels: Record<string, string> = { 'sidekey.dev/inject': 'true' }): Record<string, unknown> {
  return { metadata: { labels: { app: 'x', ...labels }, annotations }, spec: { containers: [{ name: 'app', image: 'busybox' }] } }
}
const deployment = (tpl: Record<string, unknown>, labels: Record<string, string> = {}): Record<string, unknown> => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'llm-gateway', namespace: 'team-a', labels }, spec: { replicas: 2, selector: { matchLabels: { app: 'x' } }, template: tpl } })
const cronJob = (tpl: Record<string, unknown>): Record<string, unknown> => ({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'nightly', namespace: 'team-a' }, spec: { schedule: '0 3 * * *', jobTemplate: { spec: { template: tpl } } } })
const notebook = (tpl: Record<string, unknown>): Record<string, unknown> => ({ apiVersion: 'kubeflow.org/v1', kind: 'Notebook', metadata: { name: 'alice', namespace: 'team-a' }, spec: { template: tpl } })
const kindOf = (group: string, kind: string) => ({ kind: { group, version: 'v1', kind }, resource: { group, version: 'v1', resource: kind.toLowerCase() + 's' } })

function warnings (obj: Record<string, unknown>, group: string, config = cfg, operation = 'CREATE'): { allowed: boolean, warnings?: string[], status?: { message: string } } {
  return (reviewWorkload(admissionReview(obj, { ...kindOf(group, obj.kind as string), operation }), config).body as { response: any }).response
}

t.test('a typo in a Deployment template is a warning at apply time, with the pod webhook\'s message', async (t) => {
  const ann = { ...GOOD, 'sidekey.dev/refesh': '5m' }
  const r = warnings(deployment(template(ann)), 'apps')
  t.equal(r.allowed, true)
  const podDenial = (review(admissionReview(pod(ann)), cfg).body as { response: { status: { message: string } } }).response.status.message
  t.equal(podDenial.startsWith('SIDEKEY_E_ANNOTATION: sidekey.dev/refesh: is not a Sidekey annotation'), true)
  t.same(r.warnings, [`sidekey: Deployment/llm-gateway: its pods will be refused: ${podDenial}`])
  t.same(warnings(deployment(template(ann)), 'apps', cfg, 'UPDATE').warnings, r.warnings, 'on update too')
})

t.test('CronJob and Kubeflow Notebook templates are checked; valid ones get no warning', async (t) => {
  t.match(warnings(cronJob(template({ ...GOOD, 'sidekey.dev/inject-mode': 'init-olny' })), 'batch').warnings?.[0], /^sidekey: CronJob\/nightly: its pods will be refused: SIDEKEY_E_ANNOTATION: sidekey.dev\/inject-mode: must be one of/)
  t.match(warnings(notebook(template({ ...GOOD, 'sidekey.dev/secret-x': 'vault:secret/data/other-team/x#k' })), 'kubeflow.org').warnings?.[0], /^sidekey: Notebook\/alice: its pods will be refused: SIDEKEY_E_POLICY: /)
  t.equal(warnings(deployment(template(GOOD)), 'apps').warnings, undefined)
  t.equal(warnings(deployment(template({}, {})), 'apps').warnings, undefined, 'no sidekey annotations, no label: nothing to say')
  t.match(warnings(deployment(template({})), 'apps').warnings?.[0], /names no secret/, 'the label without a secret is flagged')
})

t.test('annotations without the label on the template are flagged', async (t) => {
  t.match(warnings(deployment(template(GOOD, {})), 'apps').warnings?.[0], /the pod template has 2 sidekey.dev\/\* annotation\(s\) but its label sidekey.dev\/inject is missing; set it to "true"/)
  t.match(warnings(deployment(template(GOOD, { 'sidekey.dev/inject': 'yes' })), 'apps').warnings?.[0], /label sidekey.dev\/inject is "yes"/)
  t.match(warnings(deployment(template(GOOD, {}), { 'sidekey.dev/inject': 'true' }), 'apps').warnings?.[0], /it is on the workload itself; .*spec.template.metadata.labels/)
})

t.test('a value pasted where a reference belongs never appears in the warning', async (t) => {
  const r = warnings(deployment(template({ 'sidekey.dev/secret-openai': 'sk-live-abcdef1234567890' })), 'apps')
  t.match(r.warnings?.[0], /SIDEKEY_E_ANNOTATION: sidekey.dev\/secret-openai/)
  t.notMatch(JSON.stringify(r), /sk-live-abcdef/)
})

t.test('workloadCheck: deny refuses the workload; warnings are one bounded line', async (t) => {
  const r = warnings(deployment(template({ ...GOOD, 'sidekey.dev/refesh': '5m' })), 'apps', testConfig({ workloadCheck: 'deny' }))
  t.equal(r.allowed, false)
  t.match(r.status?.message, /^sidekey: Deployment\/llm-gateway: its pods will be refused: SIDEKEY_E_ANNOTATION/)
  const long = warnings(deployment(template({ ...GOOD, 'sidekey.dev/containers': 'a'.repeat(60) + ',nope' })), 'apps').warnings?.[0] ?? ''
  t.ok(long.length <= 512 && !long.includes('\n'))
  t.equal(reviewWorkload(admissionReview(pod(GOOD)), cfg).outcome, 'ignored', 'pods are the mutating webhook\'s')
})

t.test('POST /validate on the webhook server answers with warnings', async (t) => {
  const tls = makeCert()
  const server = await startInjectorServer({ config: cfg, certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }) })
  t.teardown(() => server.close())
  const body = JSON.stringify(admissionReview(deployment(template({ ...GOOD, 'sidekey.dev/refesh': '5m' })), kindOf('apps', 'Deployment')))
  const answer = await new Promise<any>((resolve, reject) => {
    const req = httpsRequest(`${server.url}/validate`, { method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString())))
    })
    req.on('error', reject)
    req.end(body)
  })
  t.equal(answer.response.allowed, true)
  t.match(answer.response.warnings[0], /refesh/)
  t.match(await server.registry.metrics(), /sidekey_injector_admissions_total\{outcome="warned"\} 1/)
})

t.test('the manifests register the workload check', async (t) => {
  const { readFileSync } = await import('node:fs')
  const { parse } = await import('yaml')
  const v = parse(readFileSync(join(REPO, 'manifests/base/validatingwebhook.yaml'), 'utf8')) as { webhooks: Array<{ clientConfig: { service: { path: string } }, failurePolicy: string, rules: Array<{ resources: string[] }> }> }
  t.equal(v.webhooks[0]?.clientConfig.service.path, '/validate')
  t.equal(v.webhooks[0]?.failurePolicy, 'Ignore')
  t.same(v.webhooks[0]?.rules.flatMap((r) => r.resources), ['deployments', 'statefulsets', 'daemonsets', 'replicasets', 'jobs', 'cronjobs', 'notebooks'])
  t.match(readFileSync(join(REPO, 'manifests/base/kustomization.yaml'), 'utf8'), /validatingwebhook\.yaml/)
})

t.test('offline inject warns on a pod with sidekey.dev/* annotations but no label', async (t) => {
  const r = spawnSync(process.execPath, [join(REPO, 'dist/bin/sidekey.js'), 'inject', '-f', join(REPO, 'test/fixtures/pods/unlabelled.yaml'), '-c', join(REPO, 'manifests/base/configmap.yaml')], { encoding: 'utf8' })
  t.equal(r.status, 0)
  t.match(r.stderr, /document 1 \(Pod\/plain\): warning: the pod has 1 sidekey.dev\/\* annotation\(s\) but its label sidekey.dev\/inject is missing; set it to "true"/)
})
