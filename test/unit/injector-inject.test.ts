import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { review } from '../../injector/admission.js'
import { FIXTURES, REPO, admissionReview, pod, testConfig } from './injector-helpers.js'

const BIN = join(REPO, 'dist/bin/sidekey.js')
const CONFIG = join(REPO, 'manifests/base/configmap.yaml')

function inject (args: string[], input?: string): { code: number | null, out: string, err: string } {
  const r = spawnSync(process.execPath, [BIN, 'inject', ...args], { input, encoding: 'utf8' })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

t.test('a Deployment template is mutated; the Service passes through', async (t) => {
  const r = inject(['-f', join(FIXTURES, 'deployment-mcp.yaml'), '-c', CONFIG])
  t.equal(r.code, 0, r.err)
  const docs = parseAllDocuments(r.out) as Array<{ toJS (): any }>
  t.equal(docs.length, 2)
  const [dep, svc] = docs.map((d) => d.toJS())
  t.equal(dep.kind, 'Deployment')
  t.equal(dep.spec.template.spec.initContainers[0].name, 'sidekey-agent')
  t.equal(dep.spec.template.metadata.annotations['sidekey.dev/status'], 'injected')
  t.equal(dep.spec.replicas, 2)
  t.same(svc, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'mcp-search', namespace: 'team-a' }, spec: { selector: { app: 'mcp-search' }, ports: [{ port: 80, targetPort: 3000 }] } })
})

t.test('CronJob and Job templates, from stdin', async (t) => {
  const text = ['cronjob.yaml', 'job.yaml'].map((f) => require_(f)).join('---\n')
  const r = inject(['-f', '-', '-c', CONFIG], text)
  t.equal(r.code, 0, r.err)
  const [cron, job] = (parseAllDocuments(r.out) as Array<{ toJS (): any }>).map((d) => d.toJS())
  t.equal(cron.spec.jobTemplate.spec.template.spec.initContainers[0].restartPolicy, 'Always')
  t.equal(job.spec.template.spec.initContainers[0].name, 'sidekey-agent-init')
})

t.test('invalid annotations exit 1 with the webhook\'s message', async (t) => {
  const bad = pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/refresh': 'often' })
  const r = inject(['-f', '-'], JSON.stringify(bad))
  t.equal(r.code, 1)
  t.equal(r.out, '')
  const webhook = review(admissionReview(bad), testConfig()).body as { response: { status: { message: string } } }
  t.equal(webhook.response.status.message, 'SIDEKEY_E_ANNOTATION: sidekey.dev/refresh: is not a duration; write it like 30s, 5m or 1h')
  t.equal(r.err, `sidekey inject: stdin document 1 (Pod/p): ${webhook.response.status.message}\n`)
})

t.test('input that is not Kubernetes YAML', async (t) => {
  const r = inject(['-f', '-'], 'a: [unclosed\n')
  t.equal(r.code, 1)
  t.match(r.err, /SIDEKEY_E_INPUT: stdin: document 1 is not valid YAML or JSON/)
  const r2 = inject(['-f', '-'], '- 1\n- 2\n')
  t.match(r2.err, /SIDEKEY_E_INPUT: stdin document 1: is not a Kubernetes object/)
  const r3 = inject(['-f', '/nonexistent.yaml'])
  t.match(r3.err, /SIDEKEY_E_INPUT: cannot read \/nonexistent.yaml: ENOENT/)
  t.equal(inject([]).code, 2, 'a missing -f is a usage error')
})

t.test('the example manifests inject cleanly with the shipped config', async (t) => {
  for (const f of ['notebook.yaml', 'mcp-server.yaml', 'job.yaml']) {
    const r = inject(['-f', join(REPO, 'manifests/examples', f), '-c', CONFIG])
    t.equal(r.code, 0, `${f}: ${r.err}`)
    t.match(r.out, /sidekey.dev\/status: injected/, f)
  }
})

function require_ (f: string): string {
  return readFileSync(join(FIXTURES, f), 'utf8')
}
