// Issue 11 item 5: service meshes. With a proxy that is a native sidecar the
// agent is placed after it (its backend calls go through a running proxy);
// otherwise the agent's backend ports bypass the proxy through the mesh's own
// annotation, so with istio-cni / linkerd-cni (redirection before any
// container starts) the agent does not wait for a proxy that waits for it.
import t from 'tap'
import fjp from 'fast-json-patch'
import type { V1Pod } from '@kubernetes/client-node'
import { backendPorts, mutatePod } from '../../injector/mutate.js'
import { createPatch } from '../../injector/patch.js'
import { loadFixture, pod, testConfig } from './injector-helpers.js'

const cfg = testConfig()
const VAULT = { 'sidekey.dev/secret-openai': 'vault:secret/data/team-a/openai#api_key', 'sidekey.dev/role': 'app' }
const names = (p: V1Pod): string[] => (p.spec?.initContainers ?? []).map((c) => c.name)

function istioNative (extra: Record<string, string> = {}): V1Pod {
  return pod({ ...VAULT, 'sidecar.istio.io/status': '{"initContainers":["istio-validation","istio-proxy"]}', ...extra }, {
    initContainers: [
      { name: 'istio-validation', image: 'docker.io/istio/proxyv2:1.24.0', args: ['istio-iptables', '--run-validation'] },
      { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.24.0', restartPolicy: 'Always', startupProbe: { httpGet: { path: '/healthz/ready', port: 15021 } } },
      { name: 'migrate', image: 'm' },
    ],
  })
}

t.test('Istio with a native-sidecar proxy (istio-cni): the agent starts after the proxy', async (t) => {
  const p = istioNative()
  const r = mutatePod(p, cfg, 'team-a')
  t.same(names(r.pod), ['istio-validation', 'istio-proxy', 'sidekey-agent', 'migrate'])
  t.equal(r.pod.metadata?.annotations?.['traffic.sidecar.istio.io/excludeOutboundPorts'], undefined, 'no bypass needed')
  t.same(r.leftOut?.map((l) => l.name), ['istio-validation', 'istio-proxy'])
  t.ok(r.pod.spec?.initContainers?.[3]?.volumeMounts?.some((m) => m.name === 'sidekey-secrets'), 'migrate, after the agent, reads the secrets')
  // The patch inserts at index 2 and reproduces the mutated pod.
  const ops = createPatch(p, r.pod)
  t.ok(ops.some((o) => o.op === 'add' && o.path === '/spec/initContainers/2'))
  t.same(fjp.applyPatch(structuredClone(p), structuredClone(ops) as fjp.Operation[], true, false).newDocument, JSON.parse(JSON.stringify(r.pod)))
  t.throws(() => mutatePod(istioNative({ 'sidekey.dev/containers': 'app,istio-validation' }), cfg, 'team-a'), { code: 'SIDEKEY_E_ANNOTATION', message: /names init container "istio-validation", which runs before the agent/ })
})

t.test('Istio with a regular proxy container: the agent goes first and its backend ports bypass the proxy', async (t) => {
  const p = loadFixture('istio.yaml')[0] as V1Pod
  const r = mutatePod(p, cfg, 'team-b')
  t.same(names(r.pod), ['sidekey-agent', 'istio-init'])
  t.equal(r.pod.metadata?.annotations?.['traffic.sidecar.istio.io/excludeOutboundPorts'], '443', 'Key Vault and Entra on 443')

  const asked = pod({ ...VAULT, 'sidecar.istio.io/inject': 'true', 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' })
  t.equal(mutatePod(asked, cfg, 'team-a').pod.metadata?.annotations?.['traffic.sidecar.istio.io/excludeOutboundPorts'], '5432,8200', 'merged with what the pod excludes already')
})

t.test('Linkerd asked for by annotation: skip-outbound-ports', async (t) => {
  const r = mutatePod(pod({ ...VAULT, 'linkerd.io/inject': 'enabled' }), cfg, 'team-a')
  t.equal(r.pod.metadata?.annotations?.['config.linkerd.io/skip-outbound-ports'], '8200')
  t.equal(r.pod.metadata?.annotations?.['traffic.sidecar.istio.io/excludeOutboundPorts'], undefined)
})

t.test('no mesh: no mesh annotations', async (t) => {
  const r = mutatePod(pod(VAULT), cfg, 'team-a')
  t.same(Object.keys(r.pod.metadata?.annotations ?? {}).filter((k) => !k.startsWith('sidekey.dev/')), [])
})

t.test('backend ports come from the store addresses', async (t) => {
  const c = testConfig({ stores: { vault: { type: 'vault', address: 'http://openbao.bao.svc:8300' }, aws: { type: 'aws', endpoint: 'https://vpce-1.secretsmanager.us-east-1.vpce.amazonaws.com' } } })
  const r = mutatePod(pod({ 'sidekey.dev/secret-a': 'vault:secret/data/team-a/a#k', 'sidekey.dev/secret-b': 'aws:team-a/b', 'sidekey.dev/secret-c': 'k8s:c', 'sidekey.dev/role': 'arn:aws:iam::1:role/x' }), c, 'team-a')
  t.same(backendPorts(r.spec!), [443, 8300])
})
