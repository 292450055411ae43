// Issue 11 item 6 through a real kube-apiserver: the ValidatingWebhookConfiguration
// of manifests/base/validatingwebhook.yaml (pointed at an in-process injector)
// makes `kubectl apply` of a Deployment with a sidekey.dev/* typo come back
// with a Warning header carrying the pod webhook's message, and (with
// workloadCheck: deny) refuses it; a correct Deployment gets no warning.
import t, { type Test } from 'tap'
import { request as httpsRequest } from 'node:https'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { parse as parseYaml } from 'yaml'
import { useServers, repoRoot, type KubeInfo } from '../helpers/testenv.js'
import { startInjectorServer } from '../../injector/handler.js'
import { loadInjectorConfig } from '../../injector/config.js'
import { e2eNamespace, makeWebhookTls, suffix } from './webhook-env.js'

const { kube } = await useServers(t, ['kube'])

/** A REST call as the admin user that also returns the response's Warning headers. */
async function apply (k: KubeInfo, path: string, body: unknown): Promise<{ status: number, warnings: string[], body: any }> {
  const text = JSON.stringify(body)
  return await new Promise((resolve, reject) => {
    const req = httpsRequest(`${k.server}${path}`, { method: 'POST', ca: k.ca, cert: k.cert, key: k.key, headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const raw = res.headers.warning
        const warnings = (Array.isArray(raw) ? raw : raw !== undefined ? [raw] : [])
        let parsed: unknown
        try { parsed = JSON.parse(Buffer.concat(chunks).toString()) } catch { parsed = undefined }
        resolve({ status: res.statusCode ?? 0, warnings, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(text)
  })
}

function deployment (name: string, annotations: Record<string, string>): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, 'sidekey.dev/inject': 'true' }, annotations },
        spec: { containers: [{ name: 'app', image: 'busybox:1.36', command: ['sleep', '3600'] }] },
      },
    },
  }
}

async function registerCheck (t: Test, ns: string, workloadCheck: 'warn' | 'deny'): Promise<void> {
  const tls = makeWebhookTls()
  t.teardown(() => rmSync(tls.dir, { recursive: true, force: true }))
  const server = await startInjectorServer({ config: loadInjectorConfig({ image: 'ghcr.io/sidekey/sidekey:e2e', workloadCheck }), certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }) })
  t.teardown(() => server.close())
  const manifest = parseYaml(readFileSync(join(repoRoot(), 'manifests/base/validatingwebhook.yaml'), 'utf8')) as { webhooks: Array<Record<string, any>> }
  const base = manifest.webhooks[0] as Record<string, any>
  const { service: _s, ...client } = base.clientConfig as Record<string, unknown>
  void _s
  const name = `sidekey-e2e-workloads-${suffix()}`
  await kube.must('POST', '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name, labels: { 'app.kubernetes.io/part-of': 'sidekey-e2e' } },
    webhooks: [{
      ...base,
      // Fail while the test waits for the API server to pick the configuration up, so "no warning" is never a skipped call.
      failurePolicy: 'Fail',
      clientConfig: { ...client, url: `${server.url}/validate`, caBundle: Buffer.from(tls.caPem).toString('base64') },
      namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [ns] }] },
    }],
  })
  t.teardown(async () => { await kube.request('DELETE', `/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${name}`) })
}

const TYPO = { 'sidekey.dev/secret-openai': 'k8s:openai#api_key', 'sidekey.dev/refesh': '5m' }

/** The API server caches webhook configurations: create (and delete) probes until the check answers. */
async function firstChecked (ns: string, make: (n: string) => Record<string, unknown>): Promise<{ status: number, warnings: string[], body: any }> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const name = `probe-${suffix()}`
    const r = await apply(kube, `/apis/apps/v1/namespaces/${ns}/deployments`, make(name))
    if (r.warnings.length > 0 || r.status >= 400) return r
    await kube.request('DELETE', `/apis/apps/v1/namespaces/${ns}/deployments/${name}`)
    if (Date.now() > deadline) throw new Error('e2e: the API server did not call the workload check within 30s')
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

t.test('warn: a typo in a Deployment template comes back as a Warning; the Deployment is stored', async (t) => {
  const ns = await e2eNamespace(t, kube, 'sidekey-e2e-wl')
  await registerCheck(t, ns, 'warn')
  const r = await firstChecked(ns, (n) => deployment(n, TYPO))
  t.equal(r.status, 201)
  t.match(r.warnings.join('\n'), /sidekey: Deployment\/probe-[a-z0-9]+: its pods will be refused: SIDEKEY_E_ANNOTATION: sidekey.dev\/refesh: is not a Sidekey annotation/)
  const ok = await apply(kube, `/apis/apps/v1/namespaces/${ns}/deployments`, deployment('good', { 'sidekey.dev/secret-openai': 'k8s:openai#api_key' }))
  t.equal(ok.status, 201)
  t.same(ok.warnings, [], 'a correct template: no warning')
})

t.test('deny: the same Deployment is refused with the message', async (t) => {
  const ns = await e2eNamespace(t, kube, 'sidekey-e2e-wld')
  await registerCheck(t, ns, 'deny')
  const r = await firstChecked(ns, (n) => deployment(n, TYPO))
  t.equal(r.status, 400)
  t.match(r.body?.message, /admission webhook "workloads.sidekey.dev" denied the request: sidekey: Deployment\/probe-[a-z0-9]+: its pods will be refused: SIDEKEY_E_ANNOTATION: sidekey.dev\/refesh/)
})
