// Issue 9 findings on the injector side: volume sizing (1), bounded webhook (3),
// no echo of pasted credentials (5), re-validation of pre-injected pods (6),
// encoded separators in references (7).
import t from 'tap'
import { mutatePod } from '../../injector/mutate.js'
import { pod, testConfig } from './injector-helpers.js'

t.test('finding 1: the tmpfs holds two generations of every secret at maxValueBytes', async (t) => {
  const ann: Record<string, string> = {}
  for (let i = 0; i < 5; i++) ann[`sidekey.dev/secret-s${i}`] = `k8s:s${i}#k`
  const r = mutatePod(pod(ann), testConfig(), 'team-a')
  const vol = r.pod.spec?.volumes?.find((v) => v.name === 'sidekey-secrets')
  t.equal(vol?.emptyDir?.sizeLimit, '11Mi', '5 secrets x 1 MiB x 2 generations + 1 MiB, above the 8Mi default')
  const one = mutatePod(pod({ 'sidekey.dev/secret-a': 'k8s:a#k' }), testConfig(), 'team-a')
  t.equal(one.pod.spec?.volumes?.find((v) => v.name === 'sidekey-secrets')?.emptyDir?.sizeLimit, '8Mi', 'the configured size when it is enough')
  const small = mutatePod(pod(ann), testConfig({ maxValueBytes: 65536 }), 'team-a')
  t.equal(small.pod.spec?.volumes?.find((v) => v.name === 'sidekey-secrets')?.emptyDir?.sizeLimit, '8Mi', 'a smaller maxValueBytes needs no more')
  const cfg = JSON.parse(small.pod.spec?.initContainers?.[0]?.env?.find((e) => e.name === 'SIDEKEY_CONFIG')?.value ?? '{}') as { maxValueBytes?: number }
  t.equal(cfg.maxValueBytes, 65536, 'and the agent is told the same limit')
})
