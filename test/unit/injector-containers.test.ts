// Issue 11 item 4: by default only application containers get the secrets.
// Mesh proxies, their init containers and z2jh's block-cloud-metadata are
// left out (injector/infrastructure.ts is the one list); sidekey.dev/containers
// still decides when set; offline inject says on stderr what it left out.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import type { V1Container, V1Pod } from '@kubernetes/client-node'
import { mutatePod } from '../../injector/mutate.js'
import { REPO, loadFixture, pod, testConfig } from './injector-helpers.js'

const cfg = testConfig()
const mounted = (c: V1Container | undefined): boolean => (c?.volumeMounts ?? []).some((m) => m.name === 'sidekey-secrets')
const byName = (p: V1Pod, name: string): V1Container | undefined => [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].find((c) => c.name === name)

function zeroToJupyterHub (annotations: Record<string, string> = {}): V1Pod {
  return pod({ 'sidekey.dev/secret-openai': 'k8s:openai#api_key', ...annotations }, {
    initContainers: [{ name: 'block-cloud-metadata', image: 'quay.io/jupyterhub/k8s-network-tools:4.0.0', command: ['iptables', '-A', 'OUTPUT', '-d', '169.254.169.254', '-j', 'DROP'], securityContext: { privileged: true, runAsUser: 0 } }],
    containers: [{ name: 'notebook', image: 'quay.io/jupyter/base-notebook' }],
  })
}

t.test('Istio: istio-init and istio-proxy are left out, the app gets the mount', async (t) => {
  const p = loadFixture('istio.yaml')[0] as V1Pod
  const r = mutatePod(p, cfg, 'team-b')
  t.ok(mounted(byName(r.pod, 'mcp')))
  t.notOk(mounted(byName(r.pod, 'istio-proxy')))
  t.notOk(mounted(byName(r.pod, 'istio-init')))
  t.same(r.leftOut, [{ name: 'istio-init', reason: 'infrastructure (Istio)' }, { name: 'istio-proxy', reason: 'infrastructure (Istio)' }])
})

t.test('z2jh: the privileged block-cloud-metadata init container gets nothing', async (t) => {
  const r = mutatePod(zeroToJupyterHub(), cfg, 'team-a')
  t.notOk(mounted(byName(r.pod, 'block-cloud-metadata')))
  t.same(byName(r.pod, 'block-cloud-metadata'), zeroToJupyterHub().spec?.initContainers?.[0], 'unchanged')
  t.ok(mounted(byName(r.pod, 'notebook')))
  t.same(r.leftOut, [{ name: 'block-cloud-metadata', reason: 'infrastructure (JupyterHub (z2jh))' }])
})

t.test('other init containers still get the secrets (they run after the agent)', async (t) => {
  const r = mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a' }, { initContainers: [{ name: 'migrate', image: 'm' }] }), cfg, 'team-a')
  t.ok(mounted(byName(r.pod, 'migrate')))
  t.same(r.leftOut, [])
})

t.test('sidekey.dev/containers overrides the default, also for infrastructure', async (t) => {
  const r = mutatePod(zeroToJupyterHub({ 'sidekey.dev/containers': 'notebook,block-cloud-metadata' }), cfg, 'team-a')
  t.ok(mounted(byName(r.pod, 'block-cloud-metadata')))
  t.ok(mounted(byName(r.pod, 'notebook')))
  t.same(r.leftOut, [])
})

t.test('offline inject says on stderr what it left out', async (t) => {
  const r = spawnSync(process.execPath, [join(REPO, 'dist/bin/sidekey.js'), 'inject', '-f', '-', '-c', join(REPO, 'manifests/base/configmap.yaml')], { encoding: 'utf8', input: JSON.stringify(zeroToJupyterHub()) })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, 'sidekey inject: stdin document 1 (Pod/p): left out block-cloud-metadata (infrastructure (JupyterHub (z2jh))); name containers in sidekey.dev/containers to choose them yourself\n')
  t.match(r.stdout, /sidekey.dev\/status: injected/)
})

t.test('the agent container gets NODE_OPTIONS and one malloc arena (MALLOC_ARENA_MAX) by default; 0 sets none', async (t) => {
  const agentEnv = (c: ReturnType<typeof testConfig>): Record<string, string | undefined> => {
    const p = mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a#k' }), c, 'team-a').pod
    const agent = byName(p, 'sidekey-agent')
    return Object.fromEntries((agent?.env ?? []).map((e) => [e.name, e.value]))
  }
  const dflt = agentEnv(cfg)
  t.equal(dflt.MALLOC_ARENA_MAX, '1')
  t.equal(dflt.NODE_OPTIONS, '--max-semi-space-size=8')
  t.equal(agentEnv(testConfig({ agentMallocArenaMax: 4 })).MALLOC_ARENA_MAX, '4')
  t.notOk('MALLOC_ARENA_MAX' in agentEnv(testConfig({ agentMallocArenaMax: 0 })), '0: glibc decides')
  t.throws(() => testConfig({ agentMallocArenaMax: -1 }), { code: 'SIDEKEY_E_CONFIG' })
})
