// Shared by the node e2e suite and bench/node: a real one-node cluster (scripts/testenv `node`:
// kubelet + containerd + runc + CNI), the Sidekey image built from the Dockerfile (scripts/image)
// and imported into containerd, and the webhook installed from the shipped manifests
// (manifests/base, with only what a platform engineer sets: image, stores, TLS secret, caBundle).
import { execFile, execFileSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse as parseYaml, parseAllDocuments } from 'yaml'
import type { KubeResponse, NodeInfo } from '../helpers/testenv.js'
import { repoRoot } from '../helpers/testenv.js'
import { makeWebhookTls } from './webhook-env.js'

const run = promisify(execFile)
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
export const IMAGE = 'docker.io/sidekey/sidekey:e2e'
export const SYSTEM_NS = 'sidekey-system'

/** Builds the image from the Dockerfile (cached by scripts/image) and imports it into the node's containerd. */
export async function importImage (node: NodeInfo): Promise<{ archive: string, seconds: number }> {
  const t0 = Date.now()
  // SIDEKEY_E2E_IMAGE_ARCHIVE: an archive already built (a dev loop that did not change the image)
  let archive = process.env['SIDEKEY_E2E_IMAGE_ARCHIVE'] ?? ''
  if (archive === '') {
    // Not tap's NODE_OPTIONS (its --import loaders live in this checkout, not in the image's build stage).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP')))
    const { stdout } = await run(join(repoRoot(), 'scripts', 'image'), ['build', '--name', IMAGE], { maxBuffer: 16 << 20, env })
    archive = stdout.trim().split('\n').pop() ?? ''
  }
  await run(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', 'images', 'import', archive], { maxBuffer: 16 << 20 })
  return { archive, seconds: (Date.now() - t0) / 1000 }
}

/** `ctr tasks kill -s SIGKILL` on a container of a pod (containerID from the pod's status). */
export async function killContainer (node: NodeInfo, containerId: string): Promise<void> {
  const id = containerId.replace(/^containerd:\/\//, '')
  await run(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'kill', '-s', 'SIGKILL', id])
}

/** The webhook's serving certificate for the Service's DNS name (what the API server verifies). */
export function webhookTls (): { crt: string, key: string, ca: string } {
  const tls = makeWebhookTls(`DNS:sidekey-injector.${SYSTEM_NS}.svc,DNS:sidekey-injector.${SYSTEM_NS}.svc.cluster.local`)
  try {
    return { crt: readFileSync(tls.cert, 'utf8'), key: readFileSync(tls.key, 'utf8'), ca: tls.caPem }
  } finally {
    rmSync(tls.dir, { recursive: true, force: true })
  }
}

const API_PATHS: Record<string, (ns: string) => string> = {
  Namespace: () => '/api/v1/namespaces',
  ServiceAccount: (ns) => `/api/v1/namespaces/${ns}/serviceaccounts`,
  ConfigMap: (ns) => `/api/v1/namespaces/${ns}/configmaps`,
  Secret: (ns) => `/api/v1/namespaces/${ns}/secrets`,
  Service: (ns) => `/api/v1/namespaces/${ns}/services`,
  Pod: (ns) => `/api/v1/namespaces/${ns}/pods`,
  Role: (ns) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`,
  RoleBinding: (ns) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`,
  ClusterRoleBinding: () => '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
  Deployment: (ns) => `/apis/apps/v1/namespaces/${ns}/deployments`,
  NetworkPolicy: (ns) => `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`,
  Job: (ns) => `/apis/batch/v1/namespaces/${ns}/jobs`,
  PodDisruptionBudget: (ns) => `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`,
  MutatingWebhookConfiguration: () => '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
  ValidatingWebhookConfiguration: () => '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
}

/** The collection path of an object (by kind), for POST. */
export function collectionPath (obj: Record<string, any>): string {
  const f = API_PATHS[String(obj.kind)]
  if (f === undefined) throw new Error(`node-env: no API path for kind ${String(obj.kind)}`)
  return f(String(obj.metadata?.namespace ?? 'default'))
}

/** POST an object; a 409 (exists) is fine. */
export async function apply (node: NodeInfo, obj: Record<string, any>): Promise<KubeResponse<any>> {
  const r = await node.request<any>('POST', collectionPath(obj), obj)
  if (r.status !== 201 && r.status !== 200 && r.status !== 409) throw new Error(`node-env: creating ${String(obj.kind)} ${String(obj.metadata?.name)}: ${r.status} ${JSON.stringify(r.body).slice(0, 800)}`)
  return r
}

/** manifests/base as `kubectl apply -k` would send it: kustomization namespace and labels applied. */
export function baseManifests (): Array<Record<string, any>> {
  const dir = join(repoRoot(), 'manifests', 'base')
  const k = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { namespace: string, resources: string[], labels?: Array<{ pairs: Record<string, string> }> }
  const labels = Object.assign({}, ...(k.labels ?? []).map((l) => l.pairs)) as Record<string, string>
  const out: Array<Record<string, any>> = []
  for (const file of k.resources) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      const obj = doc.toJSON() as Record<string, any> | null
      if (obj === null) continue
      obj.metadata = { ...(obj.metadata ?? {}), labels: { ...(obj.metadata?.labels ?? {}), ...labels } }
      const clusterScoped = ['Namespace', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration', 'ClusterRoleBinding'].includes(String(obj.kind))
      if (!clusterScoped) obj.metadata.namespace = k.namespace
      if (obj.kind === 'RoleBinding') for (const s of obj.subjects ?? []) if (s.kind === 'ServiceAccount') s.namespace ??= k.namespace
      if (String(obj.kind).endsWith('WebhookConfiguration')) for (const w of obj.webhooks ?? []) if (w.clientConfig?.service !== undefined) w.clientConfig.service.namespace = k.namespace
      out.push(obj)
    }
  }
  return out
}

export interface InstallOptions {
  /** edits of the injector config (the ConfigMap's config.yaml) a platform team makes: stores, policy */
  readonly configure: (config: Record<string, any>) => void
}

/**
 * Installs the webhook from manifests/base: the image set in the Deployment and the ConfigMap
 * (pull policy Never: the node has the image, no registry), the TLS Secret, the caBundle.
 * Waits until the Deployment is available and the API server calls the webhook.
 */
export async function installInjector (node: NodeInfo, o: InstallOptions): Promise<{ seconds: number }> {
  const t0 = Date.now()
  const tls = webhookTls()
  const objs = baseManifests()
  for (const obj of objs) {
    if (obj.kind === 'Deployment') {
      for (const c of obj.spec.template.spec.containers) { c.image = IMAGE; c.imagePullPolicy = 'Never' }
    }
    if (obj.kind === 'ConfigMap') {
      const cfg = parseYaml(obj.data['config.yaml']) as Record<string, any>
      cfg.image = IMAGE
      cfg.imagePullPolicy = 'Never'
      o.configure(cfg)
      obj.data['config.yaml'] = JSON.stringify(cfg, null, 2)
    }
    if (String(obj.kind).endsWith('WebhookConfiguration')) {
      for (const w of obj.webhooks) w.clientConfig.caBundle = Buffer.from(tls.ca).toString('base64')
    }
  }
  const ns = objs.find((x) => x.kind === 'Namespace')
  if (ns !== undefined) await apply(node, ns)
  await apply(node, { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'sidekey-injector-tls', namespace: SYSTEM_NS }, stringData: { 'tls.crt': tls.crt, 'tls.key': tls.key } })
  const webhooks = (obj: Record<string, any>): boolean => String(obj.kind).endsWith('WebhookConfiguration')
  for (const obj of objs) if (obj.kind !== 'Namespace' && !webhooks(obj)) await apply(node, obj)
  await waitFor('the injector Deployment to be available', 180_000, async () => {
    const d = await node.must<any>('GET', `/apis/apps/v1/namespaces/${SYSTEM_NS}/deployments/sidekey-injector`)
    return (d.status?.availableReplicas ?? 0) >= 1 ? true : undefined
  }, async () => await podsSummary(node, SYSTEM_NS))
  for (const obj of objs) if (webhooks(obj)) await apply(node, obj)
  return { seconds: (Date.now() - t0) / 1000 }
}

/**
 * Waits until the API server calls the webhook: it caches webhook configurations, so a dry-run of
 * `pod` (a labelled pod) is sent until it comes back injected. Nothing is created.
 */
export async function waitForInjection (node: NodeInfo, pod: Record<string, any>, what = 'the API server to call the webhook'): Promise<void> {
  const ns = String(pod.metadata?.namespace ?? 'default')
  await waitFor(what, 60_000, async () => {
    const r = await node.request<any>('POST', `/api/v1/namespaces/${ns}/pods?dryRun=All`, pod)
    return r.status === 201 && r.body.metadata?.annotations?.['sidekey.dev/status'] === 'injected' ? true : undefined
  })
}

/**
 * OpenBao's Kubernetes auth at `auth/kubernetes` for pods of `ns` running as service account `app`
 * (the recipe of docs/deploy.md): a token reviewer bound to system:auth-delegator, the API server
 * and its CA, a policy reading `secret/data/<ns>/*`, role `app` for audience `vault`.
 */
export async function vaultKubernetesAuth (node: NodeInfo, bao: (method: string, path: string, body?: unknown) => Promise<unknown>, ns: string, policy: string): Promise<void> {
  await waitFor('the default service account', 60_000, async () => (await node.request('GET', `/api/v1/namespaces/${ns}/serviceaccounts/default`)).status === 200 ? true : undefined)
  await node.createServiceAccount(ns, 'app')
  await node.createServiceAccount(ns, 'vault-reviewer')
  await node.bindClusterRole(`sidekey-${ns}-reviewer`, 'system:auth-delegator', ns, 'vault-reviewer')
  const reviewerJwt = await node.tokenRequest({ namespace: ns, serviceAccount: 'vault-reviewer', audiences: [node.serviceAccountIssuer], expirationSeconds: 7200 })
  await bao('POST', 'sys/auth/kubernetes', { type: 'kubernetes' })
  await bao('POST', 'auth/kubernetes/config', { kubernetes_host: node.server, kubernetes_ca_cert: node.ca, token_reviewer_jwt: reviewerJwt, disable_local_ca_jwt: true })
  await bao('PUT', `sys/policies/acl/${policy}`, { policy: `path "secret/data/${ns}/*" { capabilities = ["read"] }\npath "secret/metadata/${ns}/*" { capabilities = ["read"] }\n` })
  await bao('POST', 'auth/kubernetes/role/app', { bound_service_account_names: ['app'], bound_service_account_namespaces: [ns], audience: 'vault', token_policies: [policy], token_ttl: '1h' })
}

/** Polls fn until it returns a value (not undefined); throws with what `explain` says after ms. */
export async function waitFor<T> (what: string, ms: number, fn: () => Promise<T | undefined>, explain?: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + ms
  let lastErr = ''
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) {
      lastErr = (err as Error).message
    }
    if (Date.now() > deadline) {
      const more = explain !== undefined ? await explain().catch((e) => String(e)) : ''
      throw new Error(`node e2e: timed out after ${ms / 1000}s waiting for ${what}${lastErr !== '' ? ` (last error: ${lastErr})` : ''}\n${more}`)
    }
    await sleep(250)
  }
}

/** Pods of a namespace with phase, container states and the last events: for failure messages. */
export async function podsSummary (node: NodeInfo, ns: string): Promise<string> {
  const pods = await node.must<any>('GET', `/api/v1/namespaces/${ns}/pods`)
  const ev = await node.must<any>('GET', `/api/v1/namespaces/${ns}/events`)
  const lines: string[] = []
  for (const p of pods.items) {
    const cs = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]
      .map((c: any) => `${String(c.name)}: ${JSON.stringify(c.state)} restarts=${String(c.restartCount)} ready=${String(c.ready)}`)
    lines.push(`pod ${String(p.metadata.name)} ${String(p.status?.phase)} ${cs.join('; ')}`)
  }
  for (const e of ev.items.slice(-15)) lines.push(`event ${String(e.involvedObject?.name)}: ${String(e.reason)} ${String(e.message).slice(0, 300)}`)
  return lines.join('\n')
}

/** The container log as the kubelet wrote it (podLogsDir/<ns>_<pod>_<uid>/<container>/N.log). */
export function containerLog (node: NodeInfo, pod: Record<string, any>, container: string): string {
  const dir = join(node.podLogsDir, `${String(pod.metadata.namespace)}_${String(pod.metadata.name)}_${String(pod.metadata.uid)}`, container)
  try {
    return execFileSync('sh', ['-c', `cat "${dir}"/*.log 2>/dev/null`], { encoding: 'utf8' })
  } catch {
    return ''
  }
}

/**
 * The app the pods run (in the Sidekey image: node is there), as `node -e APP`. It records at its
 * start which files existed, reads every file every 50 ms (counting failures), takes onChange
 * POSTs on 127.0.0.1:8080, and answers GET :8081/observe on the pod IP with what it sees: file
 * contents, owner and mode, the mount in /proc/mounts, the same values over SIDEKEY_ADDR.
 * Env: SK_NAMES (comma-separated file names), SK_DIR (mount path).
 */
export const APP = String.raw`
const http = require('http'), fs = require('fs');
const dir = process.env.SK_DIR || '/var/run/secrets/sidekey';
const names = (process.env.SK_NAMES || '').split(',').filter(Boolean);
const read = (n) => { try { return fs.readFileSync(dir + '/' + n, 'utf8'); } catch (e) { return 'ERR:' + e.code; } };
const boot = { at: Date.now(), files: Object.fromEntries(names.map((n) => [n, read(n)])) };
const hooks = []; let reads = 0, readErrors = 0;
setInterval(() => { for (const n of names) { reads++; if (read(n).startsWith('ERR:')) readErrors++; } }, 50);
http.createServer((q, r) => { let b = ''; q.on('data', (c) => b += c); q.on('end', () => { hooks.push({ at: Date.now(), method: q.method, path: q.url, body: b }); r.end('ok'); }); }).listen(8080, '127.0.0.1');
http.createServer(async (q, r) => {
  const out = { boot, hooks, reads, readErrors, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), files: {}, stat: {}, api: {},
    // /var/run is a link to /run in Debian-based images: /proc/mounts names the real path
    realDir: (() => { try { return fs.realpathSync(dir); } catch (e) { return 'ERR:' + e.code; } })(),
    mounts: [] };
  out.mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1] === out.realDir);
  for (const n of names) {
    out.files[n] = read(n);
    try { const s = fs.statSync(dir + '/' + n); out.stat[n] = { uid: s.uid, gid: s.gid, mode: (s.mode & 0o777).toString(8).padStart(4, '0') }; } catch (e) { out.stat[n] = { error: e.code }; }
  }
  if (process.env.SIDEKEY_ADDR) {
    let tok = ''; try { tok = fs.readFileSync(process.env.SIDEKEY_TOKEN_FILE, 'utf8').trim(); } catch (e) { out.tokenError = e.code; }
    for (const n of names) {
      try { const res = await fetch(process.env.SIDEKEY_ADDR + '/v1/secrets/' + n, { headers: { 'x-sidekey-token': tok } }); out.api[n] = { status: res.status, body: await res.text() }; } catch (e) { out.api[n] = { error: String(e) }; }
    }
    try { const res = await fetch(process.env.SIDEKEY_ADDR + '/v1/secrets', { headers: { 'x-sidekey-token': tok } }); out.list = await res.json(); } catch (e) { out.list = { error: String(e) }; }
  }
  r.setHeader('content-type', 'application/json'); r.end(JSON.stringify(out));
}).listen(8081, '0.0.0.0');
`

/** A container spec running APP, ready when it answers on 8081. */
export function appContainer (names: string[], extra: Record<string, any> = {}): Record<string, any> {
  return {
    name: 'app',
    image: IMAGE,
    imagePullPolicy: 'Never',
    command: ['node', '-e', APP],
    env: [{ name: 'SK_NAMES', value: names.join(',') }],
    ports: [{ containerPort: 8081, name: 'observe' }],
    readinessProbe: { httpGet: { path: '/observe', port: 8081 }, periodSeconds: 1 },
    ...extra,
  }
}

/** GET http://<podIP>:8081/observe (the host reaches pod IPs over the node's bridge). */
export async function observe (podIP: string): Promise<any> {
  const r = await fetch(`http://${podIP}:8081/observe`, { signal: AbortSignal.timeout(5000) })
  if (r.status !== 200) throw new Error(`observe ${podIP}: ${r.status}`)
  return await r.json()
}

/** The single Running+Ready pod with these labels in ns. */
export async function readyPod (node: NodeInfo, ns: string, selector: string, ms = 120_000): Promise<any> {
  return await waitFor(`a Ready pod ${selector} in ${ns}`, ms, async () => {
    const pods = await node.must<any>('GET', `/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}`)
    return pods.items.find((p: any) => p.metadata.deletionTimestamp === undefined && p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'))
  }, async () => await podsSummary(node, ns))
}

/** Memory of a container from the kubelet's summary API (the cgroup's working set), in bytes. */
export async function containerMemory (node: NodeInfo, ns: string, pod: string, container: string): Promise<number | undefined> {
  const r = await node.request<any>('GET', `/api/v1/nodes/${node.nodeName}/proxy/stats/summary`)
  if (r.status !== 200) return undefined
  const p = (r.body.pods ?? []).find((x: any) => x.podRef?.namespace === ns && x.podRef?.name === pod)
  const c = (p?.containers ?? []).find((x: any) => x.name === container)
  return c?.memory?.workingSetBytes
}
