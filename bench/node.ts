// bench/node: the real node's figures (issue 8), per run: node start (scripts/testenv `node` from
// nothing to Ready), image build + import, webhook install from manifests/base, time from
// `kubectl apply` of a labelled Deployment to its app Ready, and the agent container's memory as
// the kubelet reports it (summary API: the cgroup's working set) 15 s after Ready. Needs root.
//
//   node dist/bench/node.js [--runs 3] [--secrets 1]
import { parseArgs } from 'node:util'
import { openbaoApi, stopServers, useServers } from '../test/helpers/testenv.js'
import {
  apply, appContainer, containerMemory, importImage, installInjector, readyPod, sleep, vaultKubernetesAuth, waitForInjection,
} from '../test/e2e/node-env.js'

const { values: args } = parseArgs({ options: { runs: { type: 'string', default: '3' }, secrets: { type: 'string', default: '1' } } })
const runs = Number(args.runs)
const nSecrets = Number(args.secrets)
const NS = 'bench'

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN }

interface Row { nodeStart: number, image: number, install: number, applyToReady: number, agentMiB: number | undefined }
const rows: Row[] = []
for (let i = 0; i < runs; i++) {
  const t0 = Date.now()
  const { node } = await useServers(undefined, ['node'])
  const nodeStart = (Date.now() - t0) / 1000
  const { openbao } = await useServers(undefined, ['openbao'], { bind: node.nodeIP })
  const image = await importImage(node)
  const bao = openbaoApi(openbao)
  await node.ensureNamespace(NS)
  await vaultKubernetesAuth(node, bao, NS, 'bench')
  const annotations: Record<string, string> = { 'sidekey.dev/role': 'app' }
  for (let s = 0; s < nSecrets; s++) {
    await bao('POST', `secret/data/${NS}/s${s}`, { data: { v: `bench-value-${s}` } })
    annotations[`sidekey.dev/secret-s${s}`] = `vault:secret/data/${NS}/s${s}#v`
  }
  const installed = await installInjector(node, { configure (cfg) { cfg.stores.vault = { type: 'vault', address: openbao.addr, authMount: 'kubernetes' } } })
  await waitForInjection(node, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'probe', namespace: NS, labels: { 'sidekey.dev/inject': 'true' }, annotations }, spec: { serviceAccountName: 'app', containers: [appContainer([])] } })
  const applied = Date.now()
  await apply(node, {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'app', namespace: NS },
    spec: { replicas: 1, selector: { matchLabels: { app: 'app' } }, template: { metadata: { labels: { app: 'app', 'sidekey.dev/inject': 'true' }, annotations }, spec: { serviceAccountName: 'app', containers: [appContainer(['s0'])] } } },
  })
  const pod = await readyPod(node, NS, 'app=app', 180_000)
  const applyToReady = (Date.now() - applied) / 1000
  await sleep(15_000)
  const mem = await containerMemory(node, NS, String(pod.metadata.name), 'sidekey-agent')
  rows.push({ nodeStart, image: image.seconds, install: installed.seconds, applyToReady, agentMiB: mem === undefined ? undefined : mem / 1048576 })
  const r = rows[rows.length - 1] as Row
  console.log(`run ${i + 1}: node ready ${r.nodeStart.toFixed(1)}s (API server ${node.apiReadySeconds}s, containerd + pause ${node.containerdReadySeconds}s), image ${r.image.toFixed(1)}s, injector installed ${r.install.toFixed(1)}s, apply -> app Ready ${r.applyToReady.toFixed(1)}s, agent memory ${r.agentMiB === undefined ? 'n/a (summary API did not list it)' : `${r.agentMiB.toFixed(1)} MiB`}`)
  await stopServers()
}
const mems = rows.map((r) => r.agentMiB).filter((m): m is number => m !== undefined)
console.log(`\nmedian of ${rows.length} runs, ${nSecrets} secret(s):`)
console.log(`  node start (nothing -> Ready):        ${median(rows.map((r) => r.nodeStart)).toFixed(1)} s`)
console.log(`  image build (cached) + import:        ${median(rows.map((r) => r.image)).toFixed(1)} s`)
console.log(`  injector install -> available:        ${median(rows.map((r) => r.install)).toFixed(1)} s`)
console.log(`  kubectl apply -> app Ready:           ${median(rows.map((r) => r.applyToReady)).toFixed(1)} s`)
console.log(`  agent container memory (kubelet):     ${mems.length > 0 ? `${median(mems).toFixed(1)} MiB` : 'n/a'}`)
process.exit(0)
