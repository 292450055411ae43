// AdmissionReviews over TLS with keep-alive against one injector process
// (`sidekey injector`, spawned): admissions/s at saturation, then p50/p99 at
// a fixed 500/s. Prints figures and ends with one JSON line. Never asserted.
//   node dist/bench/admission.js [--sidekey dist/bundle/sidekey.js --node NODE]
// --sidekey runs another entry (the image's bundle: with its first line's Node
// flags, as the image runs it), --node another Node (the image's is 24).
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { admissionReview, makeCert } from './admission-fixtures.js'
import { nodeArgs } from './agent-process.js'

interface Histogram { p50: number, p90: number, p99: number, mean: number, max: number, average: number }
interface Result { requests: Histogram & { total: number }, latency: Histogram, non2xx: number, errors: number, duration: number }
type Autocannon = (opts: Record<string, unknown>) => Promise<Result>
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const seconds = Number(process.env.BENCH_SECONDS ?? 10)
const opt = (name: string, dflt: string): string => { const i = process.argv.indexOf(name); return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] as string : dflt }
const ENTRY = opt('--sidekey', join(REPO, 'dist/bin/sidekey.js'))
const NODE = opt('--node', process.execPath)

const { dir, cert, key } = makeCert(mkdtempSync(join(tmpdir(), 'sidekey-bench-')), 'bench')
writeFileSync(join(dir, 'config.json'), JSON.stringify({
  image: 'ghcr.io/sidekey/sidekey:0.1.0',
  stores: { vault: { type: 'vault', address: 'https://vault.vault.svc:8200' } },
  policy: { rules: [{ name: 'teams', namespaces: ['*'], allow: ['vault:secret/data/{namespace}/*', 'k8s:*'] }] },
}))

// A realistic notebook pod: two references, one template, an init container.
const review = JSON.stringify(admissionReview({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    generateName: 'jupyter-',
    labels: { 'sidekey.dev/inject': 'true', app: 'jupyterhub' },
    annotations: {
      'sidekey.dev/role': 'notebook',
      'sidekey.dev/secret-openai': 'vault:secret/data/team-a/openai#api_key',
      'sidekey.dev/secret-hf': 'k8s:hf#token',
      'sidekey.dev/template-env': 'OPENAI_API_KEY={{secret "vault:secret/data/team-a/openai#api_key"}}\n',
    },
  },
  spec: {
    securityContext: { runAsUser: 1000, fsGroup: 100 },
    initContainers: [{ name: 'setup', image: 'busybox', command: ['true'] }],
    containers: [{ name: 'notebook', image: 'quay.io/jupyter/scipy-notebook', env: [{ name: 'A', value: 'b' }], volumeMounts: [{ name: 'home', mountPath: '/home/jovyan' }] }],
    volumes: [{ name: 'home', emptyDir: {} }],
  },
}, { uid: '00000000-0000-0000-0000-000000000001' }))

const child = spawn(NODE, [...nodeArgs(ENTRY, NODE), 'injector', '--config', join(dir, 'config.json'), '--tls-cert', cert, '--tls-key', key, '--host', '127.0.0.1', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
const port = await new Promise<number>((resolve, reject) => {
  let buf = ''
  child.stdout.on('data', (c: Buffer) => {
    buf += c.toString()
    const m = /"port":(\d+)/.exec(buf)
    if (m !== null) resolve(Number(m[1]))
  })
  child.once('exit', (code) => reject(new Error(`injector exited with ${String(code)}`)))
})
child.stdout.resume()

const url = `https://127.0.0.1:${port}/mutate`
const common = { url, method: 'POST', headers: { 'content-type': 'application/json' }, body: review, duration: seconds, tlsOptions: { rejectUnauthorized: false } }
// Warm up the JIT.
await autocannon({ ...common, connections: 4, duration: 2 })
const sat = await autocannon({ ...common, connections: 16, pipelining: 1 })
const fixed = await autocannon({ ...common, connections: 8, overallRate: 500 })
child.kill('SIGTERM')

const f = (n: number): string => n.toFixed(2)
console.log(`injector admission bench (${seconds}s each, 1 injector process: ${[NODE, ...nodeArgs(ENTRY, NODE)].join(' ')}, TLS keep-alive, ${review.length} byte review)`)
console.log(`saturation (16 connections): ${f(sat.requests.average)} admissions/s, p50 ${f(sat.latency.p50)} ms, p99 ${f(sat.latency.p99)} ms, errors ${sat.errors}, non-2xx ${sat.non2xx}`)
console.log(`fixed 500/s (8 connections): ${f(fixed.requests.average)} admissions/s, p50 ${f(fixed.latency.p50)} ms, p99 ${f(fixed.latency.p99)} ms, max ${f(fixed.latency.max)} ms, errors ${fixed.errors}, non-2xx ${fixed.non2xx}`)
console.log(JSON.stringify({
  bench: 'admission',
  saturationPerSec: Math.round(sat.requests.average),
  saturationP99Ms: sat.latency.p99,
  at500: { perSec: Math.round(fixed.requests.average), p50Ms: fixed.latency.p50, p99Ms: fixed.latency.p99 },
  errors: sat.errors + fixed.errors,
  non2xx: sat.non2xx + fixed.non2xx,
}))
