// Pods that really run (issue 8). A one-node cluster from scripts/testenv `node` (kube-apiserver,
// scheduler, controller manager, containerd, runc, CNI bridge, kubelet), the Sidekey image built
// from the Dockerfile by scripts/image, the webhook installed from manifests/base, OpenBao and moto
// listening on the node's IP. Every scenario asserts on what the app container itself sees (it
// answers GET :8081/observe on its pod IP, see APP in node-env.ts) or on what the kubelet reports.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseAllDocuments } from 'yaml'
import { existsSync, readFileSync } from 'node:fs'
import { cacheDir, openbaoApi, repoRoot, stopServers, useServers } from '../helpers/testenv.js'
import { ensureHelm } from '../helpers/tools.js'
import {
  apply, appContainer, containerLog, importImage, installInjector, killContainer, observe, podsSummary,
  readyPod, sleep, SYSTEM_NS, vaultKubernetesAuth, waitFor, waitForInjection, IMAGE,
} from './node-env.js'

if (process.getuid?.() !== 0) {
  t.fail('the node e2e suite needs root (kubelet, containerd and runc); run npm test as root, as CI does')
  process.exit(1)
}

const execFileP = promisify(execFile)

/** What the node changes on the host (docs/testenv.md#the-node), to compare before and after. */
async function hostState (): Promise<Record<string, unknown>> {
  const sysctl = Object.fromEntries(['net/ipv4/ip_forward', 'vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys', 'kernel/keys/root_maxbytes']
    .map((k) => [k, readFileSync(`/proc/sys/${k}`, 'utf8').trim()]))
  const links = (await execFileP('ip', ['-o', 'link', 'show'])).stdout.split('\n').map((l) => l.split(':')[1]?.trim().split('@')[0]).filter((x) => x !== undefined && x !== '').sort()
  const chains: string[] = []
  for (const table of ['filter', 'nat', 'mangle']) {
    const out = (await execFileP('iptables-save', ['-t', table])).stdout
    chains.push(...out.split('\n').filter((l) => l.startsWith(':') || l.startsWith('-A')).map((l) => `${table} ${l}`))
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes(join(cacheDir(), 'run')))
  const cgroups = ['memory', 'cpu', 'pids'].filter((c) => existsSync(`/sys/fs/cgroup/${c}/kubepods`))
  return { sysctl, links, chains, mounts, cgroups }
}
const hostBefore = await hostState()

const t0 = Date.now()
const { node } = await useServers(t, ['node'])
const nodeStart = (Date.now() - t0) / 1000
const { openbao, moto } = await useServers(t, ['openbao', 'moto'], { bind: node.nodeIP })
const image = await importImage(node)
t.comment(`node: ready in ${nodeStart.toFixed(1)}s (API server ${node.apiReadySeconds}s, containerd + pause image ${node.containerdReadySeconds}s); image built/imported in ${image.seconds.toFixed(1)}s`)

const NS = 'team-a'
const VALUE1 = 'sk-node-e2e-value-one-7d1c'
const VALUE2 = 'sk-node-e2e-value-two-94be'
const AWS_VALUE = 'sk-node-e2e-aws-5a2f'
const K8S_VALUE = 'sk-node-e2e-k8s-c03e'
const AWS_ROLE = 'arn:aws:iam::123456789012:role/sidekey-node-e2e'

const bao = openbaoApi(openbao)
async function sm (target: string, body: Record<string, unknown>): Promise<any> {
  const r = await fetch(moto.endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `secretsmanager.${target}`, authorization: `AWS4-HMAC-SHA256 Credential=${moto.accessKeyId}/20260101/${moto.region}/secretsmanager/aws4_request, SignedHeaders=host, Signature=0` },
    body: JSON.stringify(body),
  })
  const text = await r.text()
  if (r.status >= 300) throw new Error(`moto ${target}: ${r.status} ${text.slice(0, 300)}`)
  return JSON.parse(text)
}

// ---- the cluster side: namespace, service accounts, RBAC for k8s:, OpenBao's Kubernetes auth ----
await node.ensureNamespace(NS)
await node.ensureNamespace('team-b')
await vaultKubernetesAuth(node, bao, NS, 'team-a')
await apply(node, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'read-llm', namespace: NS }, rules: [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['llm'], verbs: ['get', 'list', 'watch'] }] })
await apply(node, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'read-llm', namespace: NS }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-llm' }, subjects: [{ kind: 'ServiceAccount', name: 'app', namespace: NS }] })
await apply(node, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'llm', namespace: NS }, stringData: { api_key: K8S_VALUE } })
await bao('POST', `secret/data/${NS}/openai`, { data: { api_key: VALUE1 } })
await sm('CreateSecret', { Name: `${NS}/anthropic`, SecretString: JSON.stringify({ key: AWS_VALUE }) })

// ---- the webhook, from the shipped manifests ----
const installed = await installInjector(node, {
  configure (cfg) {
    cfg.stores.vault = { type: 'vault', address: openbao.addr, authMount: 'kubernetes' }
    cfg.stores.aws = { type: 'aws', region: moto.region, endpoint: moto.endpoint, stsEndpoint: moto.endpoint }
  },
})
t.comment(`injector Deployment available in ${installed.seconds.toFixed(1)}s`)

// The API server caches webhook configurations: a dry-run labelled pod until it comes back injected.
const labelled = (name: string, annotations: Record<string, string>, spec: Record<string, any>): Record<string, any> => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS, labels: { 'sidekey.dev/inject': 'true', app: name }, annotations }, spec,
})
await waitForInjection(node, labelled('probe', { 'sidekey.dev/secret-openai': `vault:secret/data/${NS}/openai#api_key`, 'sidekey.dev/role': 'app' }, { serviceAccountName: 'app', containers: [appContainer(['openai'])] }))

const vaultAnnotations = { 'sidekey.dev/secret-openai': `vault:secret/data/${NS}/openai#api_key`, 'sidekey.dev/role': 'app', 'sidekey.dev/refresh': '2s' }

function deployment (name: string, annotations: Record<string, string>, names: string[], podSpec: Record<string, any> = {}): Record<string, any> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: NS },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, 'sidekey.dev/inject': 'true' }, annotations },
        spec: { serviceAccountName: 'app', terminationGracePeriodSeconds: 2, containers: [appContainer(names)], ...podSpec },
      },
    },
  }
}

const allContainers = (p: any): any[] => [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]

let mainPod: any
t.test('a labelled Deployment: projected token -> OpenBao (TokenReview), tmpfs file, SIDEKEY_ADDR, rotation without restarts', async (t) => {
  const applied = Date.now()
  await apply(node, deployment('notebook', { ...vaultAnnotations, 'sidekey.dev/on-change': 'http:POST http://127.0.0.1:8080/reload' }, ['openai']))
  mainPod = await readyPod(node, NS, 'app=notebook')
  t.comment(`kubectl apply -> app Ready: ${((Date.now() - applied) / 1000).toFixed(1)}s`)
  const agent = (mainPod.spec.initContainers ?? []).find((c: any) => c.name === 'sidekey-agent')
  t.equal(agent?.restartPolicy, 'Always', 'the agent is a native sidecar')
  t.equal(agent?.image, IMAGE)
  const seen = await observe(mainPod.status.podIP)
  t.equal(seen.files.openai, VALUE1, 'the app reads the file')
  t.equal(seen.mounts.length, 1, 'the mount path is one mount in the app container')
  t.match(seen.mounts[0], new RegExp(`^\\S+ ${String(seen.realDir)} tmpfs ro[, ]`), `a read-only tmpfs in /proc/mounts (${String(seen.mounts[0])})`)
  t.same(seen.api.openai, { status: 200, body: VALUE1 }, 'the same value over SIDEKEY_ADDR with the token')
  t.same(seen.boot.files, { openai: VALUE1 }, 'the file was there when the app process started')

  const rotated = Date.now()
  await bao('POST', `secret/data/${NS}/openai`, { data: { api_key: VALUE2 } })
  const after = await waitFor('the app to see the new KV version', 30_000, async () => {
    const o = await observe(mainPod.status.podIP)
    return o.files.openai === VALUE2 && o.api.openai?.body === VALUE2 ? o : undefined
  })
  t.comment(`rotation seen by the app (file and SIDEKEY_ADDR) after ${((Date.now() - rotated) / 1000).toFixed(1)}s (refresh 2s)`)
  t.equal(after.readErrors, 0, 'no failed read while the files were swapped')
  const hook = await waitFor('the onChange POST to reach the app', 15_000, async () => {
    const o = await observe(mainPod.status.podIP)
    return o.hooks.length > 0 ? o.hooks : undefined
  })
  t.equal(hook[0].method, 'POST')
  t.equal(hook[0].path, '/reload')
  t.match(JSON.parse(hook[0].body), { secrets: [{ name: 'openai' }] }, 'onChange http: names the secret, no value')
  t.notMatch(hook[0].body, VALUE2, 'no value in the hook body')
  const pod = await node.must<any>('GET', `/api/v1/namespaces/${NS}/pods/${String(mainPod.metadata.name)}`)
  t.same(allContainers(pod).map((c) => [c.name, c.restartCount]), allContainers(pod).map((c) => [c.name, 0]), 'restartCount 0 for every container')
})

t.test('the app container starts only after the agent\'s startup probe passed', async (t) => {
  const pod = await node.must<any>('GET', `/api/v1/namespaces/${NS}/pods/${String(mainPod.metadata.name)}`)
  const agent = pod.status.initContainerStatuses.find((c: any) => c.name === 'sidekey-agent')
  const app = pod.status.containerStatuses.find((c: any) => c.name === 'app')
  t.equal(agent.started, true, 'the kubelet marks the agent started (startup probe passed)')
  t.ok(Date.parse(app.state.running.startedAt) >= Date.parse(agent.state.running.startedAt), `app started ${String(app.state.running.startedAt)} >= agent started ${String(agent.state.running.startedAt)}`)
  const probe = pod.spec.initContainers.find((c: any) => c.name === 'sidekey-agent').startupProbe
  t.same(probe.exec.command, ['sidekey', 'get', '--ready'], 'the probe execs sidekey in the image')
  const seen = await observe(pod.status.podIP)
  t.equal(seen.boot.files.openai.startsWith('ERR:'), false, 'the secret existed when the app process started')
})

t.test('aws through moto with web identity from the projected token, and k8s with the watch', async (t) => {
  await apply(node, deployment('gateway', {
    'sidekey.dev/secret-anthropic': `aws:${NS}/anthropic#key`,
    'sidekey.dev/secret-llm': 'k8s:llm#api_key',
    'sidekey.dev/role': AWS_ROLE,
    'sidekey.dev/refresh': '2s',
  }, ['anthropic', 'llm']))
  const pod = await readyPod(node, NS, 'app=gateway')
  const seen = await observe(pod.status.podIP)
  t.equal(seen.files.anthropic, AWS_VALUE, 'aws: the app reads the value')
  t.equal(seen.files.llm, K8S_VALUE, 'k8s: the app reads the value')
  t.same(seen.api.llm, { status: 200, body: K8S_VALUE })
  const NEW = 'sk-node-e2e-k8s-rotated-11aa'
  await node.must('PUT', `/api/v1/namespaces/${NS}/secrets/llm`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'llm', namespace: NS }, stringData: { api_key: NEW } })
  const rotated = Date.now()
  await waitFor('the k8s watch to bring the new value', 30_000, async () => (await observe(pod.status.podIP)).files.llm === NEW ? true : undefined)
  t.comment(`k8s rotation seen by the app after ${((Date.now() - rotated) / 1000).toFixed(1)}s (watch)`)
  const AWS_NEW = 'sk-node-e2e-aws-rotated-77cd'
  await sm('PutSecretValue', { SecretId: `${NS}/anthropic`, SecretString: JSON.stringify({ key: AWS_NEW }) })
  await waitFor('the aws rotation', 30_000, async () => (await observe(pod.status.podIP)).files.anthropic === AWS_NEW ? true : undefined)
  t.pass('aws rotation seen by the app')
})

function job (name: string, annotations: Record<string, string>, file: string, expect: string): Record<string, any> {
  const check = `const v=require('fs').readFileSync('/var/run/secrets/sidekey/${file}','utf8');if(require('crypto').createHash('sha256').update(v).digest('hex')!==process.env.EXPECT_SHA256){console.error('unexpected value');process.exit(3)}console.log('ok')`
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: NS },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: { 'sidekey.dev/inject': 'true', job: name }, annotations },
        spec: {
          serviceAccountName: 'app',
          restartPolicy: 'Never',
          containers: [{ name: 'main', image: IMAGE, imagePullPolicy: 'Never', command: ['node', '-e', check], env: [{ name: 'EXPECT_SHA256', value: createHash('sha256').update(expect).digest('hex') }] }],
        },
      },
    },
  }
}

for (const mode of ['init-only', 'sidecar'] as const) {
  t.test(`a Job with inject-mode ${mode} completes`, async (t) => {
    const name = `batch-${mode}`
    await apply(node, job(name, { ...vaultAnnotations, 'sidekey.dev/inject-mode': mode }, 'openai', VALUE2))
    const done = await waitFor(`Job ${name} to finish`, 120_000, async () => {
      const j = await node.must<any>('GET', `/apis/batch/v1/namespaces/${NS}/jobs/${name}`)
      return (j.status?.succeeded ?? 0) > 0 || (j.status?.failed ?? 0) > 0 ? j : undefined
    }, async () => await podsSummary(node, NS))
    t.equal(done.status.succeeded, 1, `Job ${name} Succeeded`)
    const pods = await node.must<any>('GET', `/api/v1/namespaces/${NS}/pods?labelSelector=job%3D${name}`)
    const pod = pods.items[0]
    t.equal(pod.status.phase, 'Succeeded', 'the pod Succeeded')
    const agentName = mode === 'init-only' ? 'sidekey-agent-init' : 'sidekey-agent'
    t.ok((pod.spec.initContainers ?? []).some((c: any) => c.name === agentName), `${agentName} injected`)
    t.match(containerLog(node, pod, 'main'), /ok/, 'the job read the value')
  })
}

t.test('a denied pod is refused with the rule named; an unlabelled pod is untouched', async (t) => {
  const r = await node.request<any>('POST', `/api/v1/namespaces/${NS}/pods`, labelled('denied', { 'sidekey.dev/secret-x': 'vault:secret/data/team-b/openai#api_key', 'sidekey.dev/role': 'app' }, { serviceAccountName: 'app', containers: [appContainer(['x'])] }))
  t.equal(r.status, 403, 'refused (Forbidden)')
  t.match(r.body.message, /SIDEKEY_E_POLICY/)
  t.match(r.body.message, /policy rule "own-namespace"/, 'the rule is named')
  const plain = await apply(node, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'plain', namespace: NS, labels: { app: 'plain' } }, spec: { terminationGracePeriodSeconds: 1, containers: [appContainer([])] } })
  t.equal(plain.status, 201)
  t.equal(plain.body.metadata.annotations?.['sidekey.dev/status'], undefined, 'not injected')
  t.same(plain.body.spec.initContainers ?? [], [], 'no agent')
  const pod = await readyPod(node, NS, 'app=plain')
  t.equal(pod.spec.containers.length, 1, 'runs as written')
})

t.test('the agent container killed: the app keeps reading, the agent restarts and serves from disk', async (t) => {
  const before = await node.must<any>('GET', `/api/v1/namespaces/${NS}/pods/${String(mainPod.metadata.name)}`)
  const agentStatus = before.status.initContainerStatuses.find((c: any) => c.name === 'sidekey-agent')
  const readsBefore = await observe(before.status.podIP)
  // the backend goes away for this pod (read denied), so what it serves after the restart comes from disk
  await bao('PUT', 'sys/policies/acl/team-a', { policy: `path "secret/data/${NS}/nothing" { capabilities = ["read"] }\n` })
  t.teardown(async () => { await bao('PUT', 'sys/policies/acl/team-a', { policy: `path "secret/data/${NS}/*" { capabilities = ["read"] }\npath "secret/metadata/${NS}/*" { capabilities = ["read"] }\n` }) })
  await killContainer(node, agentStatus.containerID)
  const restarted = await waitFor('the agent to restart and be started again', 90_000, async () => {
    const p = await node.must<any>('GET', `/api/v1/namespaces/${NS}/pods/${String(mainPod.metadata.name)}`)
    const a = p.status.initContainerStatuses.find((c: any) => c.name === 'sidekey-agent')
    return a.restartCount >= 1 && a.started === true ? p : undefined
  }, async () => await podsSummary(node, NS))
  const seen = await waitFor('the restarted agent to answer', 30_000, async () => {
    const o = await observe(restarted.status.podIP)
    return o.api.openai?.status === 200 ? o : undefined
  })
  t.equal(seen.files.openai, VALUE2, 'the file is still there')
  t.equal(seen.api.openai.body, VALUE2, 'the restarted agent serves the value')
  const entry = (seen.list?.secrets ?? []).find((s: any) => s.name === 'openai')
  t.equal(entry?.origin, 'disk', 'served from what was on disk (the backend now denies the read)')
  t.equal(seen.readErrors, readsBefore.readErrors, 'the app never failed to read the file')
  t.ok(seen.reads > readsBefore.reads, 'the app kept reading')
  const app = restarted.status.containerStatuses.find((c: any) => c.name === 'app')
  t.equal(app.restartCount, 0, 'the app was not restarted')
})

for (const fsGroup of [undefined, 2000] as const) {
  t.test(`files' owner and mode as the app sees them, ${fsGroup === undefined ? 'without' : 'with'} fsGroup`, async (t) => {
    const name = fsGroup === undefined ? 'perm-plain' : 'perm-fsgroup'
    const sc = { runAsUser: 1234, runAsGroup: 1234, ...(fsGroup !== undefined ? { fsGroup } : {}) }
    await apply(node, deployment(name, vaultAnnotations, ['openai'], { securityContext: sc }))
    const pod = await readyPod(node, NS, `app=${name}`)
    const seen = await observe(pod.status.podIP)
    t.equal(seen.uid, 1234)
    t.equal(seen.files.openai, VALUE2, 'readable by the app')
    if (fsGroup === undefined) {
      t.same(seen.stat.openai, { uid: 1234, gid: 1234, mode: '0444' }, 'owned by the pod user, 0444')
    } else {
      t.same(seen.stat.openai, { uid: 1234, gid: fsGroup, mode: '0440' }, 'group fsGroup, 0440')
      t.ok(seen.groups.includes(fsGroup), 'the app is in fsGroup')
    }
  })
}

t.test('no secret value in the agent\'s or the injector\'s logs', async (t) => {
  await sleep(500)
  const pods = await node.must<any>('GET', `/api/v1/namespaces/${NS}/pods`)
  let checked = 0
  for (const p of pods.items) {
    for (const c of ['sidekey-agent', 'sidekey-agent-init']) {
      const log = containerLog(node, p, c)
      if (log === '') continue
      checked++
      for (const v of [VALUE1, VALUE2, AWS_VALUE, K8S_VALUE]) t.notMatch(log, v, `${String(p.metadata.name)}/${c}: no value`)
    }
  }
  t.ok(checked >= 3, `agent logs read: ${checked}`)
  const system = await node.must<any>('GET', `/api/v1/namespaces/${SYSTEM_NS}/pods`)
  let injectorLogs = 0
  for (const p of system.items) {
    const log = containerLog(node, p, 'injector')
    if (log === '') continue
    injectorLogs++
    for (const v of [VALUE1, VALUE2, AWS_VALUE, K8S_VALUE]) t.notMatch(log, v, `${String(p.metadata.name)}/injector: no value`)
  }
  t.ok(injectorLogs >= 1, `injector logs read: ${injectorLogs}`)
})

t.test('the webhook\'s Deployment down: labelled pods are refused, others created', async (t) => {
  const scale = async (n: number): Promise<void> => {
    const r = await node.request('PATCH', `/apis/apps/v1/namespaces/${SYSTEM_NS}/deployments/sidekey-injector/scale`, { spec: { replicas: n } }, { 'content-type': 'application/merge-patch+json' })
    if (r.status !== 200) throw new Error(`scale: ${r.status} ${JSON.stringify(r.body)}`)
  }
  await scale(0)
  t.teardown(async () => { await scale(2) })
  await waitFor('the injector pods to be gone', 60_000, async () => {
    const pods = await node.must<any>('GET', `/api/v1/namespaces/${SYSTEM_NS}/pods`)
    return pods.items.length === 0 ? true : undefined
  })
  const r = await node.request<any>('POST', `/api/v1/namespaces/${NS}/pods?dryRun=All`, labelled('while-down', vaultAnnotations, { serviceAccountName: 'app', containers: [appContainer(['openai'])] }))
  t.equal(r.status, 500, 'a labelled pod is refused (failurePolicy: Fail)')
  t.match(r.body.message, /inject\.sidekey\.dev/, 'the API server names the webhook')
  const ok = await node.request<any>('POST', `/api/v1/namespaces/${NS}/pods?dryRun=All`, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'unlabelled-while-down', namespace: NS }, spec: { containers: [appContainer([])] } })
  t.equal(ok.status, 201, 'an unlabelled pod is created (the objectSelector keeps the webhook out of its way)')
})

t.test('the Helm chart: rendered by helm, applied, and its webhook injects a pod that runs', async (t) => {
  t.setTimeout(1_800_000) // helm is built on first use (scripts/helm)
  const HELM = await ensureHelm()
  const CHART_NS = 'sidekey-chart'
  // the chart's webhook takes over: the base's configurations go (a cluster has one injector)
  for (const kind of ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations']) {
    await node.request('DELETE', `/apis/admissionregistration.k8s.io/v1/${kind}/sidekey-injector`)
  }
  const [repository, tag] = IMAGE.split(/:(?=[^:]+$)/) as [string, string]
  const rendered = await execFileP(HELM, ['template', 'sk', join(repoRoot(), 'charts', 'sidekey'), '--namespace', CHART_NS,
    '--set', `image.repository=${repository}`, '--set', `image.tag=${tag}`, '--set', 'image.pullPolicy=Never', '--set', 'replicas=1',
    '--set-json', `stores=${JSON.stringify({ vault: { type: 'vault', address: openbao.addr, authMount: 'kubernetes' } })}`], { maxBuffer: 8 << 20 })
  const objs = parseAllDocuments(rendered.stdout).map((d) => d.toJSON() as Record<string, any> | null).filter((o): o is Record<string, any> => o !== null)
  t.ok(objs.some((o) => o.kind === 'MutatingWebhookConfiguration'), 'the chart renders a MutatingWebhookConfiguration')
  await node.ensureNamespace(CHART_NS)
  const isWebhook = (o: Record<string, any>): boolean => String(o.kind).endsWith('WebhookConfiguration')
  for (const o of objs) if (!isWebhook(o)) await apply(node, o)
  await waitFor('the chart\'s injector to be available', 120_000, async () => {
    const d = await node.must<any>('GET', `/apis/apps/v1/namespaces/${CHART_NS}/deployments`)
    return d.items.length > 0 && d.items.every((x: any) => (x.status?.availableReplicas ?? 0) >= 1) ? true : undefined
  }, async () => await podsSummary(node, CHART_NS))
  for (const o of objs) if (isWebhook(o)) await apply(node, o)
  await waitForInjection(node, labelled('chart-probe', vaultAnnotations, { serviceAccountName: 'app', containers: [appContainer(['openai'])] }), 'the API server to call the chart\'s webhook')
  await apply(node, deployment('chart-app', vaultAnnotations, ['openai']))
  const pod = await readyPod(node, NS, 'app=chart-app')
  t.ok((pod.spec.initContainers ?? []).some((c: any) => c.name === 'sidekey-agent' && c.image === IMAGE), 'injected by the chart\'s webhook with the chart\'s image')
  const seen = await observe(pod.status.podIP)
  t.equal(seen.files.openai, VALUE2, 'the app reads the secret')
})

t.test('stopping the node puts the host back; a second node in the same process starts and stops clean', async (t) => {
  await stopServers()
  t.same(await hostState(), hostBefore, 'after the first node: sysctls, links, iptables, mounts and cgroups as before')
  const { node: again } = await useServers(t, ['node'])
  const n = await again.must<any>('GET', `/api/v1/nodes/${again.nodeName}`)
  t.ok(n.status.conditions.some((c: any) => c.type === 'Ready' && c.status === 'True'), 'the second node is Ready')
  await stopServers()
  t.same(await hostState(), hostBefore, 'after the second node (same run dir): the host as before')
})
