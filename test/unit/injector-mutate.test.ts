import t, { type Test } from 'tap'
import fjp from 'fast-json-patch'
import { Pod } from 'kubernetes-models/v1'
import type { V1Container, V1Pod } from '@kubernetes/client-node'
import { mutatePod } from '../../injector/mutate.js'
import { createPatch, escapePointer } from '../../injector/patch.js'
import { injectDocument } from '../../injector/workloads.js'
import { isSidekeyError, type SidekeyError } from '../../core/errors.js'
import { loadConfig } from '../../core/config/load.js'
import { fixtureNames, loadFixture, pod, testConfig } from './injector-helpers.js'

const cfg = testConfig()

function podOf (doc: Record<string, unknown>): V1Pod {
  const kind = doc.kind as string
  const spec = doc.spec as Record<string, any>
  const tpl = kind === 'Pod' ? doc : kind === 'CronJob' ? spec.jobTemplate.spec.template : spec.template
  return { apiVersion: 'v1', kind: 'Pod', metadata: tpl.metadata, spec: tpl.spec }
}

function agentEnvConfig (c: V1Container | undefined): Record<string, any> {
  const v = c?.env?.find((e) => e.name === 'SIDEKEY_CONFIG')?.value
  if (v === undefined) throw new Error('no SIDEKEY_CONFIG')
  return JSON.parse(v)
}

/** The original container, minus what the injector may add (the mount and the two env vars at the end). */
function keptUnchanged (t: Test, before: V1Container, after: V1Container | undefined, where: string): void {
  t.ok(after !== undefined, `${where}: still there`)
  if (after === undefined) return
  const { env: e1, volumeMounts: m1, ...rest1 } = before
  const { env: e2, volumeMounts: m2, ...rest2 } = after
  t.same(rest2, rest1, `${where}: unchanged apart from env and mounts`)
  t.same((e2 ?? []).slice(0, (e1 ?? []).length), e1 ?? [], `${where}: original env kept, in order`)
  t.same((m2 ?? []).slice(0, (m1 ?? []).length), m1 ?? [], `${where}: original mounts kept, in order`)
  t.ok((e2 ?? []).slice((e1 ?? []).length).every((e) => e.name === 'SIDEKEY_ADDR' || e.name === 'SIDEKEY_TOKEN_FILE'), `${where}: only Sidekey env added`)
}

for (const file of fixtureNames()) {
  t.test(`fixture ${file}`, async (t) => {
    for (const doc of loadFixture(file) as Array<Record<string, unknown>>) {
      const ns = (doc.metadata as { namespace?: string }).namespace ?? 'default'
      if (!['Pod', 'Deployment', 'Job', 'CronJob'].includes(doc.kind as string)) {
        t.same(injectDocument(doc, cfg, ns, file).doc, doc, `${doc.kind as string} passes through`)
        continue
      }
      const original = podOf(doc)
      const frozenCopy = structuredClone(original)
      const r = mutatePod(original, cfg, ns)
      t.same(original, frozenCopy, 'the input pod is not modified')
      if (file === 'unlabelled.yaml') {
        t.equal(r.outcome, 'skipped')
        t.equal(r.pod, original)
        continue
      }
      t.equal(r.outcome, 'injected')
      const m = r.pod

      // Schema-valid Pod.
      t.doesNotThrow(() => new Pod(structuredClone(m) as any).validate(), 'mutated pod validates against the Pod schema')

      // Patch: applying it to the original gives exactly the mutated pod.
      const ops = createPatch(original, m)
      t.ok(ops.every((o) => o.op === 'add'), 'only add operations')
      const applied = fjp.applyPatch(structuredClone(original), structuredClone(ops) as fjp.Operation[], true, false).newDocument
      t.same(applied, JSON.parse(JSON.stringify(m)), 'patch(original) deep-equals the mutated pod')
      t.equal(fjp.validate(ops as fjp.Operation[], structuredClone(original)), undefined, 'fast-json-patch validates the ops')

      // Originals unchanged.
      const os = original.spec!
      const ms = m.spec!
      for (const v of os.volumes ?? []) t.same(ms.volumes?.find((x) => x.name === v.name), v, `volume ${v.name} unchanged`)
      for (const c of os.containers) keptUnchanged(t, c, ms.containers.find((x) => x.name === c.name), `container ${c.name}`)
      for (const c of os.initContainers ?? []) keptUnchanged(t, c, ms.initContainers?.find((x) => x.name === c.name), `init container ${c.name}`)
      t.same(ms.containers.slice(0, os.containers.length).map((c) => c.name), os.containers.map((c) => c.name), 'container order kept')
      for (const [k, v] of Object.entries(original.metadata?.annotations ?? {})) t.equal(m.metadata?.annotations?.[k], v)
      t.equal(m.metadata?.annotations?.['sidekey.dev/status'], 'injected')

      // The agent: hardened, its config accepted by the agent's loader.
      const agent = ms.initContainers?.[0]
      t.match(agent?.name, /^sidekey-agent(-init)?$/, 'the agent runs before every other init container')
      t.same(agent?.securityContext?.capabilities, { drop: ['ALL'] })
      t.equal(agent?.securityContext?.readOnlyRootFilesystem, true)
      t.equal(agent?.securityContext?.allowPrivilegeEscalation, false)
      t.equal(agent?.securityContext?.runAsNonRoot, true)
      t.not(agent?.securityContext?.runAsUser, 0)
      t.same(agent?.securityContext?.seccompProfile, { type: 'RuntimeDefault' })
      t.same(agent?.resources?.requests, { cpu: '10m', memory: '48Mi' })
      const agentCfg = agentEnvConfig(agent)
      t.doesNotThrow(() => loadConfig(agentCfg), 'the agent accepts its config')
      t.equal(agentCfg.apiTokenFile, `${agentCfg.dir}/.sidekey-token`)
      t.equal(agent?.env?.find((e) => e.name === 'SIDEKEY_ADDR')?.value, `http://127.0.0.1:${String(agentCfg.listen.http)}`, 'the probe finds the agent on its configured port')

      // Second pass: a no-op.
      const again = mutatePod(m, cfg, ns)
      t.equal(again.outcome, 'already-injected')
      t.same(createPatch(m, again.pod), [], 'second pass yields an empty patch')
    }
  })
}

t.test('the patch of a minimal pod, operation by operation', async (t) => {
  const p = pod({ 'sidekey.dev/secret-openai': 'k8s:openai#key' })
  const r = mutatePod(p, cfg, 'team-a')
  const ops = createPatch(p, r.pod)
  // initContainers sit before containers (the order they run in, and kubectl's).
  t.same(ops.map((o) => [o.op, o.path]), [
    ['add', '/metadata/annotations/sidekey.dev~1status'],
    ['add', '/spec/initContainers'],
    ['add', '/spec/containers/0/env'],
    ['add', '/spec/containers/0/volumeMounts'],
    ['add', '/spec/volumes'],
  ])
  t.same((ops[0] as { value: unknown }).value, 'injected')
  t.same((ops[2] as { value: unknown }).value, [{ name: 'SIDEKEY_ADDR', value: 'http://127.0.0.1:8099' }, { name: 'SIDEKEY_TOKEN_FILE', value: '/var/run/secrets/sidekey/.sidekey-token' }])
  t.same((ops[3] as { value: unknown }).value, [{ name: 'sidekey-secrets', mountPath: '/var/run/secrets/sidekey', readOnly: true }])
  t.same((ops[4] as { value: unknown }).value, [
    { name: 'sidekey-secrets', emptyDir: { medium: 'Memory', sizeLimit: '8Mi' } },
    { name: 'sidekey-token', projected: { sources: [{ serviceAccountToken: { path: 'k8s', expirationSeconds: 600 } }, { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } }] } },
  ])
  const agent = ((ops[1] as { value: V1Container[] }).value)[0]!
  t.equal(agent.restartPolicy, 'Always')
  t.same(agent.startupProbe?.exec?.command, ['sidekey', 'get', '--ready'])
  t.same(agent.securityContext?.runAsUser, 65532)
  t.same(agentEnvConfig(agent), {
    secrets: [{ name: 'openai', ref: 'k8s:openai#key' }],
    dir: '/var/run/secrets/sidekey',
    listen: { http: 8099, grpc: 8098 },
    apiTokenFile: '/var/run/secrets/sidekey/.sidekey-token',
    refresh: '30s',
    stores: { k8s: { type: 'k8s', tokenFile: '/var/run/secrets/sidekey-token/k8s', caFile: '/var/run/secrets/sidekey-token/ca.crt', namespace: 'team-a' } },
  })
})

t.test('existing init containers: the agent is inserted at index 0, others shift', async (t) => {
  const p = pod({ 'sidekey.dev/secret-a': 'k8s:a' }, { initContainers: [{ name: 'setup', image: 'x', env: [{ name: 'A', value: '1' }] }], volumes: [{ name: 'data', emptyDir: {} }] })
  const ops = createPatch(p, mutatePod(p, cfg, 'team-a').pod)
  t.same(ops.map((o) => [o.op, o.path]), [
    ['add', '/metadata/annotations/sidekey.dev~1status'],
    ['add', '/spec/initContainers/0'],
    ['add', '/spec/initContainers/1/env/1'],
    ['add', '/spec/initContainers/1/env/2'],
    ['add', '/spec/initContainers/1/volumeMounts'],
    ['add', '/spec/containers/0/env'],
    ['add', '/spec/containers/0/volumeMounts'],
    ['add', '/spec/volumes/1'],
    ['add', '/spec/volumes/2'],
  ])
})

t.test('modes place the agent differently', async (t) => {
  const base = { 'sidekey.dev/secret-a': 'k8s:a' }
  const side = mutatePod(pod(base), cfg, 'team-a').pod.spec!
  t.same([side.initContainers?.map((c) => c.name), side.containers.map((c) => c.name)], [['sidekey-agent'], ['app']])

  const init = mutatePod(pod({ ...base, 'sidekey.dev/inject-mode': 'init-only' }), cfg, 'team-a').pod.spec!
  t.same([init.initContainers?.map((c) => c.name), init.containers.map((c) => c.name)], [['sidekey-agent-init'], ['app']])
  t.equal(init.initContainers?.[0]?.restartPolicy, undefined)
  t.equal(init.initContainers?.[0]?.startupProbe, undefined)
  t.equal(agentEnvConfig(init.initContainers?.[0]).exitAfterSync, true)
  t.equal(init.containers[0]?.env, undefined, 'no endpoint env in init-only mode (nothing serves it)')

  const legacy = mutatePod(pod({ ...base, 'sidekey.dev/inject-mode': 'legacy' }), cfg, 'team-a').pod.spec!
  t.same([legacy.initContainers?.map((c) => c.name), legacy.containers.map((c) => c.name)], [['sidekey-agent-init'], ['app', 'sidekey-agent']])
  t.equal(agentEnvConfig(legacy.initContainers?.[0]).exitAfterSync, true)
  t.equal(agentEnvConfig(legacy.containers[1]).exitAfterSync, undefined)
  t.equal(legacy.containers[1]?.restartPolicy, undefined)
})

t.test('ownership follows runAsUser and fsGroup', async (t) => {
  const a = { 'sidekey.dev/secret-a': 'k8s:a' }
  const cases: Array<[Record<string, number>, Record<string, number> | undefined, number, number | undefined]> = [
    [{}, undefined, 65532, 65532],
    [{ runAsUser: 1000, fsGroup: 100 }, { uid: 1000, gid: 100 }, 1000, 1000],
    [{ fsGroup: 2000, runAsGroup: 3000 }, { gid: 2000 }, 65532, undefined],
    [{ runAsUser: 0 }, undefined, 65532, 65532],
  ]
  for (const [sc, owner, uid, gid] of cases) {
    const agent = mutatePod(pod(a, { securityContext: sc }), cfg, 'team-a').pod.spec!.initContainers![0]!
    t.same(agentEnvConfig(agent).fileOwner, owner, `fileOwner for ${JSON.stringify(sc)}`)
    t.equal(agent.securityContext?.runAsUser, uid)
    t.equal(agent.securityContext?.runAsGroup, gid)
  }
})

t.test('containers annotation and signal hooks', async (t) => {
  const p = pod({ 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/containers': 'worker', 'sidekey.dev/on-change': 'signal:HUP:python' }, {
    containers: [{ name: 'app', image: 'x' }, { name: 'worker', image: 'y' }],
  })
  const s = mutatePod(p, cfg, 'team-a').pod.spec!
  t.equal(s.containers[0]?.volumeMounts, undefined, 'app not chosen')
  t.equal(s.containers[1]?.volumeMounts?.[0]?.name, 'sidekey-secrets')
  t.equal(s.shareProcessNamespace, true)
})

const conflicts: Array<[string, Partial<NonNullable<V1Pod['spec']>>, Record<string, string>, string, RegExp]> = [
  ['volume name', { volumes: [{ name: 'sidekey-secrets', emptyDir: {} }] }, {}, 'SIDEKEY_E_CONFLICT', /volume named "sidekey-secrets"/],
  ['token volume name', { volumes: [{ name: 'sidekey-token', emptyDir: {} }] }, {}, 'SIDEKEY_E_CONFLICT', /volume named "sidekey-token"/],
  ['container name', { containers: [{ name: 'sidekey-agent', image: 'x' }] }, {}, 'SIDEKEY_E_CONFLICT', /container named "sidekey-agent"/],
  ['init container name', { initContainers: [{ name: 'sidekey-agent-init', image: 'x' }] }, {}, 'SIDEKEY_E_CONFLICT', /container named "sidekey-agent-init"/],
  ['mount path', { containers: [{ name: 'app', image: 'x', volumeMounts: [{ name: 'd', mountPath: '/var/run/secrets/sidekey' }] }], volumes: [{ name: 'd', emptyDir: {} }] }, {}, 'SIDEKEY_E_CONFLICT', /already mounts volume "d"/],
  ['unknown container', {}, { 'sidekey.dev/containers': 'ghost' }, 'SIDEKEY_E_ANNOTATION', /entry 1 is not a container or init container of this pod \(it has: app/],
  ['signal without shared pid', { shareProcessNamespace: false }, { 'sidekey.dev/on-change': 'signal:HUP:app' }, 'SIDEKEY_E_ANNOTATION', /shareProcessNamespace/],
  ['no containers', { containers: [] }, {}, 'SIDEKEY_E_ADMISSION', /no spec.containers/],
]
for (const [name, spec, ann, code, re] of conflicts) {
  t.test(`refused: ${name}`, async (t) => {
    const p = pod({ 'sidekey.dev/secret-a': 'k8s:a', ...ann }, spec)
    let err: SidekeyError | undefined
    try { mutatePod(p, cfg, 'team-a') } catch (e) { if (isSidekeyError(e)) err = e }
    t.equal(err?.code, code)
    t.match(err?.message, re)
  })
}

t.test('RFC 6901 escaping and the generic diff', async (t) => {
  t.equal(escapePointer('a/b~c'), 'a~1b~0c')
  const a = { metadata: { annotations: { 'x~/y': '1' } }, list: [1, 2], named: [{ name: 'b' }] }
  const b = { metadata: { annotations: { 'x~/y': '2', 'k/~': 'v' } }, list: [1, 2, 3], named: [{ name: 'a' }, { name: 'b', v: 1 }] }
  const ops = createPatch(a, b)
  t.same(ops, [
    { op: 'replace', path: '/metadata/annotations/x~0~1y', value: '2' },
    { op: 'add', path: '/metadata/annotations/k~1~0', value: 'v' },
    { op: 'add', path: '/list/2', value: 3 },
    { op: 'add', path: '/named/0', value: { name: 'a' } },
    { op: 'add', path: '/named/1/v', value: 1 },
  ])
  t.same(fjp.applyPatch(structuredClone(a), ops as fjp.Operation[]).newDocument, b)
})
