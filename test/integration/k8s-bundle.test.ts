// What a bundled k8s agent (dist/bundle, what the image runs) loads of Node's
// built-ins while its watches run: at one Secret an HTTP/1.1 watch through
// node:https, node:http2 never loaded (~4.2 MiB of resident memory); beyond
// four Secrets HTTP/2 streams; never perf_hooks (the
// `performance` global's getter and its eight internal modules, for the
// store's retry and CA-check deadlines: a monotonic clock from
// process.hrtime does that). Against the testenv API server.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { useServers } from '../helpers/testenv.js'
import { injectorConfigSchema } from '../../injector/config.js'

const { kube } = await useServers(t, ['kube'])
const NS = 'sidekey-k8s-bundle'
const work = mkdtempSync(join(tmpdir(), 'sidekey-k8s-bundle-'))

for (const secrets of [1, 5]) {
t.test(`a bundled k8s agent at ${secrets} Secret(s) watches over ${secrets === 1 ? 'HTTP/1.1 without loading node:http2' : 'HTTP/2'}, without perf_hooks`, async (t) => {
  await kube.ensureNamespace(NS)
  await kube.createServiceAccount(NS, 'reader')
  await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'secret-reader' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }] })
  await kube.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'reader' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secret-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: NS }] })
  const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'lean' }, data: { v: Buffer.from('lean-value').toString('base64') } }
  const put = await kube.request('PUT', `/api/v1/namespaces/${NS}/secrets/lean`, body)
  if (put.status === 404) await kube.must('POST', `/api/v1/namespaces/${NS}/secrets`, body)
  // The other Secrets (a bundle that watches five).
  for (let i = 1; i < secrets; i++) {
    const other = { apiVersion: 'v1', kind: 'Secret', metadata: { name: `other-${i}` }, data: { v: Buffer.from(`other-${i}`).toString('base64') } }
    const r = await kube.request('PUT', `/api/v1/namespaces/${NS}/secrets/other-${i}`, other)
    if (r.status === 404) await kube.must('POST', `/api/v1/namespaces/${NS}/secrets`, other)
  }
  const tokenFile = join(work, 'token')
  writeFileSync(tokenFile, await kube.tokenRequest({ namespace: NS, serviceAccount: 'reader', audiences: [kube.serviceAccountIssuer], expirationSeconds: 3600 }))
  const dir = mkdtempSync(join(work, 'agent-'))
  const seen = join(dir, 'loaded.txt')
  const preload = join(dir, 'preload.cjs')
  writeFileSync(preload, `process.on('exit', () => { require('fs').writeFileSync(${JSON.stringify(seen)}, process.moduleLoadList.join('\\n')) })\n`)
  const config = {
    dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'api-token'), listen: { http: 0, grpc: 0 }, logLevel: 'warn',
    stores: { k8s: { type: 'k8s', server: kube.server, tokenFile, caFile: kube.caFile, namespace: NS } },
    secrets: [{ name: 'a', ref: 'k8s:lean#v' }, ...Array.from({ length: secrets - 1 }, (_, i) => ({ name: `other-${i + 1}`, ref: `k8s:other-${i + 1}#v` }))],
  }
  // The agent's NODE_OPTIONS, as the injector sets them (not tap's preload).
  const env: NodeJS.ProcessEnv = { ...process.env, SIDEKEY_CONFIG: JSON.stringify(config), NODE_OPTIONS: String((injectorConfigSchema.properties.agentNodeOptions as { default: string }).default) }
  const child = spawn(process.execPath, ['--require', preload, join(process.cwd(), 'dist/bundle/sidekey.js'), 'agent'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  t.teardown(() => { child.kill('SIGKILL') })
  const file = join(dir, 'secrets', 'a')
  for (let i = 0; i < 300 && !existsSync(file) && child.exitCode === null; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(existsSync(file) ? readFileSync(file, 'utf8') : undefined, 'lean-value', `the secret came from the API server${err !== '' ? `: ${err}` : ''}`)
  // A change the watch delivers: the file follows it (the watch opens after the first sync, so the update is sent until it is seen).
  await kube.must('PUT', `/api/v1/namespaces/${NS}/secrets/lean`, { ...body, data: { v: Buffer.from('lean-rotated').toString('base64') } })
  for (let i = 0; i < 600 && readFileSync(file, 'utf8') !== 'lean-rotated' && child.exitCode === null; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(readFileSync(file, 'utf8'), 'lean-rotated', `the watch delivered the change${err !== '' ? `: ${err}` : ''}`)
  child.kill('SIGTERM')
  await exited
  const loaded = readFileSync(seen, 'utf8').split('\n')
  if (secrets === 1) t.notOk(loaded.includes('NativeModule http2'), 'the watch ran over HTTP/1.1: node:http2 not loaded')
  else t.ok(loaded.includes('NativeModule http2'), 'the watches ran over HTTP/2')
  t.notOk(loaded.includes('NativeModule perf_hooks'), 'perf_hooks not loaded')
})
}
