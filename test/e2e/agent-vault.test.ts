// The agent's Kubernetes-facing path, end to end: the injector (a webhook
// registered with the real kube-apiserver) mutates a pod; the agent config it
// put into the STORED pod (env SIDEKEY_CONFIG of sidekey-agent) is the one run
// here, with only its paths and ports moved to a temp dir. The projected
// token the kubelet would write is minted with the TokenRequest API exactly as
// the stored volume asks (service account, audience, expiry, bound to the
// pod); the agent logs in to OpenBao's Kubernetes auth with it, OpenBao
// reviews it against this same API server (TokenReview, reviewer bound to
// system:auth-delegator), and the agent writes the KV v2 secret to its dir.
import t from 'tap'
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { openbaoApi, useServers } from '../helpers/testenv.js'
import { eventually, startTestAgent, tempDir } from '../helpers/agent.js'
import { e2eNamespace, startWebhook, suffix } from './webhook-env.js'

const { kube, openbao } = await useServers(t, ['kube', 'openbao'])
const ns = await e2eNamespace(t, kube, 'sidekey-e2e-vault')
const run = suffix()

const VALUE = `sk-e2e-openai-${run}-9f8e7d6c`
const ORG = `org-e2e-${run}`

const bao = openbaoApi(openbao)

// ---- Kubernetes: a token reviewer for OpenBao, the app's service account, a stranger ----
await kube.createServiceAccount(ns, 'vault-reviewer')
const binding = `sidekey-e2e-reviewer-${run}`
await kube.bindClusterRole(binding, 'system:auth-delegator', ns, 'vault-reviewer')
t.teardown(async () => { await kube.request('DELETE', `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${binding}`) })
await kube.createServiceAccount(ns, 'app')
await kube.createServiceAccount(ns, 'stranger')
const reviewerJwt = await kube.tokenRequest({ namespace: ns, serviceAccount: 'vault-reviewer', audiences: [kube.serviceAccountIssuer], expirationSeconds: 7200 })

// ---- OpenBao: Kubernetes auth pointing at this API server, a role for ns/app, a KV v2 secret ----
const mount = `k8s-e2e-${run}`
await bao('POST', `sys/auth/${mount}`, { type: 'kubernetes' })
t.teardown(async () => { await bao('DELETE', `sys/auth/${mount}`).catch(() => undefined) })
await bao('POST', `auth/${mount}/config`, { kubernetes_host: kube.server, kubernetes_ca_cert: kube.ca, token_reviewer_jwt: reviewerJwt, disable_local_ca_jwt: true })
await bao('PUT', `sys/policies/acl/${mount}`, { policy: `path "secret/data/${ns}/*" { capabilities = ["read"] }\npath "secret/metadata/${ns}/*" { capabilities = ["read"] }\n` })
await bao('POST', `auth/${mount}/role/app`, { bound_service_account_names: ['app'], bound_service_account_namespaces: [ns], audience: 'vault', token_policies: [mount], token_ttl: '1h' })
await bao('POST', `secret/data/${ns}/openai`, { data: { api_key: VALUE, org: ORG } })

// ---- the injector, registered with the API server ----
const injectorConfig = {
  image: 'ghcr.io/sidekey/sidekey:e2e',
  stores: { vault: { type: 'vault', address: openbao.addr, authMount: mount, kvVersion: 2 } },
  policy: { rules: [{ name: 'e2e', namespaces: [ns], allow: ['vault:secret/data/{namespace}/*'] }] },
}
const annotations = {
  'sidekey.dev/secret-openai': `vault:secret/data/${ns}/openai#api_key`,
  'sidekey.dev/template-dotenv': `OPENAI_API_KEY={{secret "vault:secret/data/${ns}/openai#api_key"}}\nOPENAI_ORG={{secret "vault:secret/data/${ns}/openai#org"}}\n`,
  'sidekey.dev/role': 'app',
}
const podBody = (name: string): Record<string, any> => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels: { 'sidekey.dev/inject': 'true' }, annotations },
  spec: { serviceAccountName: 'app', containers: [{ name: 'app', image: 'busybox:1.36' }] },
})
await startWebhook(t, kube, { namespaces: [ns], injectorConfig, probe: podBody('probe') })

const created = await kube.request<any>('POST', `/api/v1/namespaces/${ns}/pods`, podBody('agent-app'))
if (created.status !== 201) throw new Error(`e2e: creating the labelled pod failed: ${created.status} ${JSON.stringify(created.body)}`)
const pod = await kube.must<any>('GET', `/api/v1/namespaces/${ns}/pods/agent-app`)
const agentContainer = (pod.spec.initContainers ?? []).find((c: any) => c.name === 'sidekey-agent')
const configJson: string | undefined = agentContainer?.env?.find((e: any) => e.name === 'SIDEKEY_CONFIG')?.value
if (configJson === undefined) throw new Error(`e2e: the stored pod has no sidekey-agent container with SIDEKEY_CONFIG: ${JSON.stringify(pod.spec).slice(0, 500)}`)
const podConfig = JSON.parse(configJson) as Record<string, any>
const tokenMount = agentContainer.volumeMounts.find((m: any) => m.name === 'sidekey-token')
const projected = pod.spec.volumes.find((v: any) => v.name === 'sidekey-token')?.projected?.sources?.find((s: any) => s.serviceAccountToken !== undefined)?.serviceAccountToken as { audience: string, path: string, expirationSeconds: number }

/** The stored agent config with its paths moved under root (tokens dir for the projected token) and ports 0. */
function localConfig (root: string, tokenDir: string): Record<string, any> {
  const cfg = structuredClone(podConfig)
  const move = (p: string): string => {
    if (p.startsWith(`${tokenMount.mountPath}/`)) return join(tokenDir, p.slice(tokenMount.mountPath.length + 1))
    if (p === cfg.dir || p.startsWith(`${String(podConfig.dir)}/`)) return join(root, 'secrets', p.slice(String(podConfig.dir).length))
    throw new Error(`e2e: unexpected path in the agent config: ${p}`)
  }
  cfg.apiTokenFile = move(cfg.apiTokenFile)
  for (const s of Object.values(cfg.stores as Record<string, any>)) if (typeof s.tokenFile === 'string') s.tokenFile = move(s.tokenFile)
  cfg.dir = join(root, 'secrets')
  cfg.listen = { http: 0, grpc: 0 }
  return cfg
}

/** Writes a token where the kubelet would project it (the `path` of the stored volume source). */
function projectToken (root: string, jwt: string): string {
  const dir = join(root, 'token')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, projected.path), jwt)
  return dir
}

t.test('the stored pod asks for what this test runs', async (t) => {
  t.equal(pod.spec.serviceAccountName, 'app')
  t.same(projected, { audience: 'vault', path: 'vault', expirationSeconds: 600 }, 'projected token: audience vault')
  t.match(podConfig, {
    stores: { vault: { type: 'vault', address: openbao.addr, authMount: mount, role: 'app', tokenFile: `${tokenMount.mountPath}/vault` } },
  })
  const byName = new Map((podConfig.secrets as Array<Record<string, string>>).map((s) => [s.name, s]))
  t.same([...byName.keys()].sort(), ['dotenv', 'openai'])
  t.equal(byName.get('openai')?.ref, `vault:secret/data/${ns}/openai#api_key`)
  t.equal(byName.get('dotenv')?.template, annotations['sidekey.dev/template-dotenv'])
})

t.test('a TokenRequest token (audience vault, bound to the pod) logs in; the KV v2 secret reaches the dir', async (t) => {
  const root = tempDir(t, 'sidekey-e2e-agent-')
  const jwt = await kube.tokenRequest({ namespace: ns, serviceAccount: pod.spec.serviceAccountName, audiences: [projected.audience], expirationSeconds: projected.expirationSeconds, boundObjectRef: { kind: 'Pod', name: pod.metadata.name, uid: pod.metadata.uid } })
  const tokenDir = projectToken(root, jwt)
  const h = await startTestAgent(t, localConfig(root, tokenDir), { root, values: [VALUE, ORG, jwt] })
  await h.agent.synced
  t.equal(readFileSync(join(h.dir, 'openai'), 'utf8'), VALUE, 'file written by the agent')
  t.equal(readFileSync(join(h.dir, 'dotenv'), 'utf8'), `OPENAI_API_KEY=${VALUE}\nOPENAI_ORG=${ORG}\n`, 'template rendered from two fields')
  const got = await h.get('openai')
  t.equal(got.status, 200)
  t.equal(got.body, VALUE, 'served on the local endpoint')
  t.equal(h.agent.board.ready, true, 'ready: the startupProbe would pass')
  t.same(h.agent.board.status().map((s) => s.error), [undefined, undefined], 'no errors')
})

const refusals: Array<[string, () => Promise<string>]> = [
  ['a token for another service account (not bound to the role)', async () => await kube.tokenRequest({ namespace: ns, serviceAccount: 'stranger', audiences: ['vault'], expirationSeconds: 600 })],
  ['a token for the pod\'s service account with another audience', async () => await kube.tokenRequest({ namespace: ns, serviceAccount: 'app', audiences: ['not-vault'], expirationSeconds: 600 })],
]
for (const [what, mint] of refusals) {
  t.test(`refused: ${what}`, async (t) => {
    const root = tempDir(t, 'sidekey-e2e-agent-')
    const jwt = await mint()
    const h = await startTestAgent(t, localConfig(root, projectToken(root, jwt)), { root, values: [VALUE, ORG, jwt] })
    await h.agent.synced.catch(() => undefined)
    const status = h.agent.board.status()
    t.comment(`agent error: ${status[0]?.error?.code ?? ''}: ${status[0]?.error?.message ?? ''}`)
    for (const s of status) {
      t.ok(s.error !== undefined && ['SIDEKEY_E_AUTH', 'SIDEKEY_E_DENIED'].includes(s.error.code), `${s.name}: ${s.error?.code ?? 'no error'}`)
      t.notMatch(s.error?.message ?? '', VALUE, `${s.name}: no value in the message`)
    }
    t.notOk(existsSync(join(h.dir, 'openai')), 'nothing written')
    t.equal(h.agent.board.ready, false, 'not ready: the app would not start')
    t.not((await h.get('openai')).status, 200, 'nothing served')
  })
}

t.test('refused: the pod-bound token after its pod is deleted (TokenReview checks the bound object)', async (t) => {
  const gone = await kube.request<any>('POST', `/api/v1/namespaces/${ns}/pods`, podBody('short-lived'))
  t.equal(gone.status, 201)
  const jwt = await kube.tokenRequest({ namespace: ns, serviceAccount: 'app', audiences: ['vault'], expirationSeconds: 600, boundObjectRef: { kind: 'Pod', name: 'short-lived', uid: gone.body.metadata.uid } })
  t.equal((await kube.request('DELETE', `/api/v1/namespaces/${ns}/pods/short-lived?gracePeriodSeconds=0`)).status, 200)
  // The API server's token authenticator looks the bound pod up in its informer cache: the deletion
  // reaches it a moment later (longer on a loaded machine). The agent is started once it has.
  const review = async (): Promise<{ authenticated?: boolean, error?: string }> => (await kube.must<any>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: jwt, audiences: ['vault'] } })).status
  await eventually(async () => (await review()).authenticated !== true, 'the API server to stop authenticating the token of the deleted pod', { ms: 30_000, everyMs: 100 })
  const root = tempDir(t, 'sidekey-e2e-agent-')
  const h = await startTestAgent(t, localConfig(root, projectToken(root, jwt)), { root, values: [VALUE, ORG, jwt] })
  await h.agent.synced.catch(() => undefined)
  const err = h.agent.board.status()[0]?.error
  t.comment(`agent error: ${err?.code ?? ''}: ${err?.message ?? ''}`)
  t.equal(err?.code, 'SIDEKEY_E_AUTH')
  t.notMatch(err?.message ?? '', VALUE, 'no value in the message')
  const after = await review()
  t.notOk(after.authenticated, 'the API server itself no longer authenticates the token')
  t.comment(`TokenReview: ${String(after.error)}`)
  t.notOk(existsSync(join(h.dir, 'openai')), 'nothing written')
})
