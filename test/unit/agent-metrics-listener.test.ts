// Issue 11 item 7: an opt-in metrics listener on the pod IP, /metrics only,
// no token, no values; the injector adds the port and the scrape annotations.
import t from 'tap'
import { networkInterfaces } from 'node:os'
import { freePort, startTestAgent } from '../helpers/agent.js'
import { mutatePod } from '../../injector/mutate.js'
import { pod, testConfig } from './injector-helpers.js'


/** An address of this host that is not loopback (the "pod IP"), if there is one. */
const podIp = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address

t.test('listen.metrics serves /metrics without a token on every interface, and nothing else', async (t) => {
  process.env.SK_METRICS_A = 'value-metrics-123456'
  const port = await freePort()
  const h = await startTestAgent(t, { secrets: [{ name: 'a', ref: 'env:SK_METRICS_A' }], listen: { http: 0, grpc: 0, metrics: port } }, { values: ['value-metrics-123456'] })
  await h.agent.synced
  t.equal(h.agent.metricsPort, port)
  const host = podIp ?? '127.0.0.1'
  const m = await fetch(`http://${host}:${port}/metrics`)
  t.equal(m.status, 200)
  const text = await m.text()
  t.match(text, /sidekey_ready 1/)
  t.match(text, /sidekey_secret_age_seconds\{secret="a"\}/)
  t.notMatch(text, /value-metrics/)
  const other = await fetch(`http://${host}:${port}/v1/secrets/a`, { headers: { 'x-sidekey-token': h.token } })
  t.equal(other.status, 404, 'no secrets on the metrics listener, even with the token')
  t.notMatch(await other.text(), /value-metrics/)
  if (podIp !== undefined) {
    await t.rejects(fetch(`http://${podIp}:${h.agent.httpPort}/v1/secrets`), 'the local endpoint is still 127.0.0.1 only')
  } else {
    t.comment('no non-loopback interface: the pod-IP checks ran on 127.0.0.1')
  }
})

t.test('the injector: sidekey.dev/metrics-port -> agent port, agent config and Prometheus annotations', async (t) => {
  const cfg = testConfig()
  const base = { 'sidekey.dev/secret-a': 'k8s:a', 'sidekey.dev/metrics-port': '9102' }
  const r = mutatePod(pod(base), cfg, 'team-a').pod
  const agent = r.spec!.initContainers![0]!
  t.same(agent.ports, [{ name: 'sidekey-metrics', containerPort: 9102, protocol: 'TCP' }])
  t.equal(JSON.parse(agent.env!.find((e) => e.name === 'SIDEKEY_CONFIG')!.value!).listen.metrics, 9102)
  t.match(r.metadata?.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9102', 'prometheus.io/path': '/metrics' })

  const app = mutatePod(pod({ ...base, 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080' }), cfg, 'team-a').pod
  t.equal(app.metadata?.annotations?.['prometheus.io/port'], '8080', 'the app\'s own scrape target is kept')

  const legacy = mutatePod(pod({ ...base, 'sidekey.dev/inject-mode': 'legacy' }), cfg, 'team-a').pod
  t.same(legacy.spec!.containers[1]!.ports?.[0]?.containerPort, 9102, 'legacy: on the long-running agent')
  t.equal(legacy.spec!.initContainers![0]!.ports, undefined, 'not on the init agent')

  t.equal(mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a' }), cfg, 'team-a').pod.metadata?.annotations?.['prometheus.io/scrape'], undefined, 'opt-in')
  for (const [v, re] of [['sk-live-abcdef', /must be a port number between 1024 and 65535/], ['80', /between 1024/], ['8099', /8099 is the agent's local HTTP port/]] as const) {
    let msg = ''
    try { mutatePod(pod({ ...base, 'sidekey.dev/metrics-port': v }), cfg, 'team-a') } catch (err) { msg = (err as Error).message }
    t.match(msg, re, v)
    if (v.startsWith('sk-')) t.notMatch(msg, /sk-live/, 'the value is not echoed')
  }
  t.throws(() => mutatePod(pod({ ...base, 'sidekey.dev/inject-mode': 'init-only' }), cfg, 'team-a'), { message: /metrics-port: has no effect with inject-mode init-only/ })
})
