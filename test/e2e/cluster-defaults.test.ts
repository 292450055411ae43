// Issue 11 items 3, 4, 5 and 7 as the API server stores the pods: the
// webhook (in process, registered from manifests/base/mutatingwebhook.yaml)
// patches real pods, and what the API server kept is read back.
import t from 'tap'
import { useServers } from '../helpers/testenv.js'
import { e2eNamespace, startWebhook } from './webhook-env.js'

const { kube } = await useServers(t, ['kube'])
const ns = await e2eNamespace(t, kube, 'sidekey-e2e-cd')
await kube.createServiceAccount(ns, 'app')
const injectorConfig = {
  image: 'ghcr.io/sidekey/sidekey:e2e',
  imagePullPolicy: 'Never',
  stores: { vault: { type: 'vault', address: 'https://vault.vault.svc:8200' } },
}
const SECRET = { 'sidekey.dev/secret-openai': 'vault:secret/data/app/openai#api_key', 'sidekey.dev/role': 'app' }

function labelled (name: string, annotations: Record<string, string>, spec: Record<string, unknown> = {}): Record<string, any> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { 'sidekey.dev/inject': 'true' }, annotations },
    spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox:1.36', command: ['sleep', '3600'] }], ...spec },
  }
}

await startWebhook(t, kube, { namespaces: [ns], injectorConfig, probe: labelled('probe', SECRET) })

async function stored (body: Record<string, any>): Promise<any> {
  const r = await kube.request<any>('POST', `/api/v1/namespaces/${ns}/pods`, body)
  if (r.status !== 201) throw new Error(`POST pod ${String(body.metadata.name)}: ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`)
  return await kube.must<any>('GET', `/api/v1/namespaces/${ns}/pods/${String(body.metadata.name)}`)
}
const mounted = (c: any): boolean => (c?.volumeMounts ?? []).some((m: any) => m.name === 'sidekey-secrets')

t.test('Istio native-sidecar proxy: agent after the proxy, mesh containers without secrets (items 4, 5)', async (t) => {
  const pod = await stored(labelled('istio-native', SECRET, {
    initContainers: [
      { name: 'istio-validation', image: 'docker.io/istio/proxyv2:1.24.0', args: ['istio-iptables', '--run-validation'] },
      { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.24.0', restartPolicy: 'Always' },
      { name: 'migrate', image: 'busybox:1.36' },
    ],
  }))
  t.same(pod.spec.initContainers.map((c: any) => c.name), ['istio-validation', 'istio-proxy', 'sidekey-agent', 'migrate'])
  t.same(pod.spec.initContainers.map(mounted), [false, false, true, true])
  t.ok(mounted(pod.spec.containers[0]))
})

t.test('Istio regular proxy container, z2jh metadata blocker: left out; ports bypass the proxy (items 4, 5)', async (t) => {
  const pod = await stored(labelled('istio-classic', { ...SECRET, 'sidecar.istio.io/status': '{}' }, {
    initContainers: [
      { name: 'istio-init', image: 'docker.io/istio/proxyv2:1.22.0' },
      { name: 'block-cloud-metadata', image: 'quay.io/jupyterhub/k8s-network-tools:4.0.0' },
    ],
    containers: [
      { name: 'notebook', image: 'busybox:1.36' },
      { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.22.0' },
    ],
  }))
  t.same(pod.spec.initContainers.map((c: any) => [c.name, mounted(c)]), [['sidekey-agent', true], ['istio-init', false], ['block-cloud-metadata', false]])
  t.same(pod.spec.containers.map((c: any) => [c.name, mounted(c)]), [['notebook', true], ['istio-proxy', false]])
  t.equal(pod.metadata.annotations['traffic.sidecar.istio.io/excludeOutboundPorts'], '8200')
})

t.test('init-only: termination message path and sync deadline as stored (item 3)', async (t) => {
  const pod = await stored(labelled('job-like', { ...SECRET, 'sidekey.dev/inject-mode': 'init-only', 'sidekey.dev/sync-deadline': '2m' }, { restartPolicy: 'Never' }))
  const init = pod.spec.initContainers[0]
  t.equal(init.name, 'sidekey-agent-init')
  t.equal(init.terminationMessagePath, '/dev/termination-log')
  t.equal(init.terminationMessagePolicy, 'FallbackToLogsOnError')
  t.equal(init.env.find((e: any) => e.name === 'SIDEKEY_TERMINATION_MESSAGE_PATH')?.value, init.terminationMessagePath)
  t.equal(JSON.parse(init.env.find((e: any) => e.name === 'SIDEKEY_CONFIG').value).syncDeadline, '2m')
})

t.test('metrics port and scrape annotations as stored (item 7)', async (t) => {
  const pod = await stored(labelled('scraped', { ...SECRET, 'sidekey.dev/metrics-port': '9102' }))
  t.same(pod.spec.initContainers[0].ports, [{ name: 'sidekey-metrics', containerPort: 9102, protocol: 'TCP' }])
  t.match(pod.metadata.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9102', 'prometheus.io/path': '/metrics' })
})
