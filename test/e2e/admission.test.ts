// End to end through a real kube-apiserver: the injector runs in this process
// as an HTTPS webhook, registered with a MutatingWebhookConfiguration; every
// pod here is created with a plain REST call to the API server, and what the
// API server STORED is read back (GET), so the assertions cover the JSON patch
// as the API server applied it, its defaulting and its schema validation.
import t from 'tap'
import { useServers } from '../helpers/testenv.js'
import { e2eNamespace, startWebhook, WEBHOOK_NAME } from './webhook-env.js'

const { kube } = await useServers(t, ['kube'])
const ns = await e2eNamespace(t, kube, 'sidekey-e2e-adm')
const other = await e2eNamespace(t, kube, 'sidekey-e2e-adm-other')

const REF = `vault:secret/data/${ns}/openai#api_key`
const injectorConfig = {
  image: 'ghcr.io/sidekey/sidekey:e2e',
  imagePullPolicy: 'Never',
  stores: { vault: { type: 'vault', address: 'http://127.0.0.1:8200', authMount: 'kubernetes' } },
  policy: { rules: [{ name: 'e2e', namespaces: ['sidekey-e2e-adm-*'], allow: ['vault:secret/data/{namespace}/*', 'k8s:*'] }] },
}

function labelledPod (name: string, annotations: Record<string, string> = { 'sidekey.dev/secret-openai': REF, 'sidekey.dev/role': 'app' }): Record<string, any> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { 'sidekey.dev/inject': 'true', app: 'e2e' }, annotations },
    spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox:1.36', command: ['sleep', '3600'] }] },
  }
}

const hook = await startWebhook(t, kube, { namespaces: [ns, other], injectorConfig, probe: labelledPod('probe') })

const podsPath = (n = ns): string => `/api/v1/namespaces/${n}/pods`
async function admissions (): Promise<number> {
  const m = await hook.server.registry.getSingleMetric('sidekey_injector_admissions_total')?.get()
  return (m?.values ?? []).reduce((a, v) => a + v.value, 0)
}

t.test('a labelled pod is stored with the agent, volumes, mounts and env', async (t) => {
  const created = await kube.request<any>('POST', podsPath(), labelledPod('app-1'))
  t.equal(created.status, 201, 'POST pods -> 201', created.status !== 201 ? { body: created.body } : {})
  const pod = await kube.must<any>('GET', `${podsPath()}/app-1`)
  t.equal(pod.metadata.annotations['sidekey.dev/status'], 'injected', 'status annotation written')

  const inits: any[] = pod.spec.initContainers ?? []
  t.equal(inits.length, 1, 'one init container')
  const agent = inits[0]
  t.equal(agent?.name, 'sidekey-agent')
  t.equal(agent?.restartPolicy, 'Always', 'a native sidecar: restartPolicy Always in initContainers (kept by the API server)')
  t.same(agent?.startupProbe?.exec?.command, ['sidekey', 'get', '--ready'], 'startupProbe gates the app on the first sync')
  t.equal(agent?.image, 'ghcr.io/sidekey/sidekey:e2e')
  t.same(agent?.args, ['agent'])
  t.match(agent?.securityContext, { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
  t.match(agent?.resources, { requests: { cpu: '10m', memory: '48Mi' } })
  t.match(agent?.volumeMounts, [{ name: 'sidekey-secrets', mountPath: '/var/run/secrets/sidekey' }, { name: 'sidekey-token', mountPath: '/var/run/secrets/sidekey-token', readOnly: true }])

  const volumes: any[] = pod.spec.volumes ?? []
  const secrets = volumes.find((v) => v.name === 'sidekey-secrets')
  t.same(secrets?.emptyDir, { medium: 'Memory', sizeLimit: '8Mi' }, 'tmpfs volume')
  const token = volumes.find((v) => v.name === 'sidekey-token')
  t.match(token?.projected?.sources, [{ serviceAccountToken: { audience: 'vault', path: 'vault', expirationSeconds: 600 } }], 'projected token for audience vault')

  const app = pod.spec.containers[0]
  t.equal(app.name, 'app')
  t.match(app.volumeMounts, [{ name: 'sidekey-secrets', mountPath: '/var/run/secrets/sidekey', readOnly: true }], 'read-only mount in the app')
  const env = Object.fromEntries((app.env ?? []).map((e: any) => [e.name, e.value]))
  t.equal(env.SIDEKEY_ADDR, 'http://127.0.0.1:8099')
  t.equal(env.SIDEKEY_TOKEN_FILE, '/var/run/secrets/sidekey/.sidekey-token')

  const cfg = JSON.parse(agent.env.find((e: any) => e.name === 'SIDEKEY_CONFIG').value)
  t.match(cfg, { secrets: [{ name: 'openai', ref: REF }], dir: '/var/run/secrets/sidekey', stores: { vault: { type: 'vault', role: 'app', tokenFile: '/var/run/secrets/sidekey-token/vault' } } }, 'SIDEKEY_CONFIG carries the reference and the store')
})

t.test('an unlabelled pod is stored unchanged (the objectSelector keeps it from the webhook)', async (t) => {
  const before = await admissions()
  const body = labelledPod('plain-1')
  delete body.metadata.labels['sidekey.dev/inject']
  const created = await kube.request<any>('POST', podsPath(), body)
  t.equal(created.status, 201)
  const pod = await kube.must<any>('GET', `${podsPath()}/plain-1`)
  t.same(pod.metadata.annotations, body.metadata.annotations, 'annotations as sent: no status')
  t.same(pod.metadata.labels, { app: 'e2e' })
  t.equal(pod.spec.initContainers, undefined, 'no init containers')
  t.equal(pod.spec.volumes, undefined, 'no volumes')
  t.same(pod.spec.containers.map((c: any) => [c.name, c.image, c.command, c.env, c.volumeMounts]), [['app', 'busybox:1.36', ['sleep', '3600'], undefined, undefined]])
  t.equal(await admissions(), before, 'the webhook was not even called')
})

t.test('bad annotations are refused; the API server error carries our code and the annotation', async (t) => {
  const pasted = 'sk-live-e2e0123456789abcdef'
  const cases: Array<[string, Record<string, string>, number, string, RegExp]> = [
    ['a value pasted where a reference belongs', { 'sidekey.dev/secret-openai': pasted, 'sidekey.dev/role': 'app' }, 400, 'SIDEKEY_E_ANNOTATION', /sidekey\.dev\/secret-openai: /],
    ['a typo in an annotation name', { 'sidekey.dev/secrt-openai': REF, 'sidekey.dev/role': 'app' }, 400, 'SIDEKEY_E_ANNOTATION', /sidekey\.dev\/secrt-openai/],
    ['a reference outside the namespace policy', { 'sidekey.dev/secret-openai': 'vault:secret/data/someone-else/openai#api_key', 'sidekey.dev/role': 'app' }, 403, 'SIDEKEY_E_POLICY', /sidekey\.dev\/secret-openai: .*policy rule "e2e"/],
  ]
  for (const [i, [what, annotations, code, sidekeyCode, re]] of cases.entries()) {
    const name = `bad-${i}`
    const r = await kube.request<any>('POST', podsPath(), labelledPod(name, annotations))
    t.equal(r.status, code, `${what}: HTTP ${code} from the API server`)
    t.equal(r.body?.kind, 'Status', what)
    const msg = String(r.body?.message)
    t.match(msg, `admission webhook "${WEBHOOK_NAME}" denied the request: ${sidekeyCode}: `, `${what}: the API server relays our message`)
    t.match(msg, re, `${what}: it names the annotation`)
    t.notMatch(JSON.stringify(r.body), pasted, `${what}: the pasted value is not echoed`)
    t.equal((await kube.request('GET', `${podsPath()}/${name}`)).status, 404, `${what}: nothing stored`)
  }
  t.notMatch(hook.logs.join(''), pasted, 'nor logged by the injector')
})

t.test('dry-run (?dryRun=All, kubectl --dry-run=server) returns the mutated pod and creates nothing', async (t) => {
  const before = await admissions()
  const r = await kube.request<any>('POST', `${podsPath()}?dryRun=All`, labelledPod('dry-1'))
  t.equal(r.status, 201)
  t.equal(r.body.metadata.annotations['sidekey.dev/status'], 'injected', 'the answer is the mutated pod')
  t.equal(r.body.spec.initContainers?.[0]?.name, 'sidekey-agent')
  t.equal(await admissions(), before + 1, 'the webhook was called (sideEffects: None allows dry-run)')
  t.equal((await kube.request('GET', `${podsPath()}/dry-1`)).status, 404, 'GET afterwards: 404')
  const bad = await kube.request<any>('POST', `${podsPath()}?dryRun=All`, labelledPod('dry-2', { 'sidekey.dev/secret-openai': 'not a reference' }))
  t.equal(bad.status, 400, 'a dry run is refused the same way')
  t.match(bad.body?.message, /SIDEKEY_E_ANNOTATION: sidekey\.dev\/secret-openai/)
})

t.test('Deployments: the stored template is not mutated; a pod made from it is', async (t) => {
  // The webhook's rules match only pods (CREATE), so a Deployment's pod template is stored
  // as written; in a cluster the ReplicaSet controller creates the pods, and those are
  // mutated. No controller-manager runs in this test environment, so we create the pod
  // from the template ourselves, as the ReplicaSet controller would.
  const template = labelledPod('ignored')
  delete template.metadata.name
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'agent-app' },
    spec: { replicas: 1, selector: { matchLabels: { app: 'e2e' } }, template: { metadata: template.metadata, spec: template.spec } },
  }
  const before = await admissions()
  t.equal((await kube.request('POST', `/apis/apps/v1/namespaces/${ns}/deployments`, deployment)).status, 201)
  const stored = await kube.must<any>('GET', `/apis/apps/v1/namespaces/${ns}/deployments/agent-app`)
  const tpl = stored.spec.template
  t.equal(tpl.metadata.annotations['sidekey.dev/status'], undefined, 'no status annotation on the template')
  t.equal(tpl.spec.initContainers, undefined, 'no agent in the template')
  t.equal(tpl.spec.volumes, undefined, 'no volumes in the template')
  t.equal(tpl.spec.containers[0].volumeMounts, undefined, 'no mounts in the template')
  t.equal(await admissions(), before, 'the webhook never saw the Deployment')

  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { ...tpl.metadata, generateName: 'agent-app-' }, spec: tpl.spec }
  const created = await kube.request<any>('POST', podsPath(), pod)
  t.equal(created.status, 201)
  const got = await kube.must<any>('GET', `${podsPath()}/${created.body.metadata.name}`)
  t.equal(got.metadata.annotations['sidekey.dev/status'], 'injected', 'the pod from the template is injected')
  t.equal(got.spec.initContainers?.[0]?.name, 'sidekey-agent')
  t.equal(got.spec.initContainers?.[0]?.restartPolicy, 'Always')
})

t.test('a pod outside the webhook namespaces is untouched; re-creating an injected pod is a no-op', async (t) => {
  const outside = await e2eNamespace(t, kube, 'sidekey-e2e-outside')
  const r = await kube.request<any>('POST', podsPath(outside), labelledPod('x'))
  t.equal(r.status, 201)
  t.equal(r.body.metadata.annotations['sidekey.dev/status'], undefined, 'the namespaceSelector excludes it')

  // An already injected manifest (e.g. `kubectl get -o yaml | kubectl apply`) comes back as is.
  const injected = await kube.must<any>('GET', `${podsPath()}/app-1`)
  const again = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'app-1-again', labels: injected.metadata.labels, annotations: injected.metadata.annotations }, spec: injected.spec }
  delete again.spec.nodeName
  const r2 = await kube.request<any>('POST', podsPath(), again)
  t.equal(r2.status, 201, 'POST pods -> 201', r2.status !== 201 ? { body: r2.body } : {})
  t.equal(r2.body.spec.initContainers.length, 1, 'one agent, not two')
  t.same(r2.body.spec.volumes.map((v: any) => v.name).filter((n: string) => n.startsWith('sidekey-')).sort(), ['sidekey-secrets', 'sidekey-token'])
  // Issue 9 finding 6: the status annotation skips no check. The same pod in another
  // namespace reads this namespace's Vault path, which the policy does not allow there.
  const r3 = await kube.request<any>('POST', podsPath(other), { ...again, metadata: { ...again.metadata, name: 'app-1-elsewhere' } })
  t.equal(r3.status, 403, 'an injected pod copied to another namespace is re-checked against the policy', r3.status !== 403 ? { body: r3.body } : {})
  t.match(r3.body?.message, /SIDEKEY_E_POLICY/)
})
