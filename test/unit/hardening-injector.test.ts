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

t.test('finding 3: the webhook is bounded before any authentication', async (t) => {
  const { request: httpsRequest } = await import('node:https')
  const { connect: tlsConnect } = await import('node:tls')
  const { pino } = await import('pino')
  const { startInjectorServer, DEFAULT_MAX_BODY_BYTES } = await import('../../injector/handler.js')
  const { makeCert, admissionReview } = await import('./injector-helpers.js')
  const tls = makeCert()
  const server = await startInjectorServer({ config: testConfig(), certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, maxInFlight: 2, maxConnections: 6, logger: pino({ level: 'silent' }) })
  t.teardown(() => server.close())
  const post = (body: Buffer | string, opts: { hold?: boolean } = {}): { done: Promise<{ status: number, body: any }>, finish: () => void } => {
    let finish = (): void => {}
    const done = new Promise<{ status: number, body: any }>((resolve, reject) => {
      const len = Buffer.byteLength(body)
      const req = httpsRequest(`${server.url}/mutate`, { method: 'POST', rejectUnauthorized: false, agent: false, headers: { 'content-type': 'application/json', 'content-length': len } }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString()
          let parsed: unknown
          try { parsed = JSON.parse(text) } catch { parsed = text }
          resolve({ status: res.statusCode ?? 0, body: parsed })
        })
      })
      req.on('error', reject)
      if (opts.hold === true) {
        // Sends all but the last byte: the admission stays in flight until finish().
        const b = Buffer.from(body)
        req.write(b.subarray(0, b.length - 1))
        finish = () => { req.end(b.subarray(b.length - 1)) }
      } else {
        req.end(body)
      }
    })
    return { done, finish }
  }
  const review = JSON.stringify(admissionReview(pod({ 'sidekey.dev/secret-a': 'k8s:a#k' })))

  t.ok(DEFAULT_MAX_BODY_BYTES <= 1024 * 1024, `the default body limit (${DEFAULT_MAX_BODY_BYTES}) is sized to a Pod, not 3 MiB`)
  const big = post('['.padEnd(DEFAULT_MAX_BODY_BYTES + 10, ' ') + ']')
  t.equal((await big.done).status, 413, 'over the body limit -> 413')

  const tiny = post('[' + Array.from({ length: 150_000 }, () => '{}').join(',') + ']')
  const tr = await tiny.done
  t.equal(tr.status, 413, '150,000 tiny objects under the byte limit -> 413 before JSON.parse')
  t.match(tr.body, { code: 'SIDEKEY_E_ADMISSION', message: /more than 100000 objects/ })
  const deep = post('['.repeat(100) + ']'.repeat(100))
  t.equal((await deep.done).status, 413, 'nesting deeper than 64 -> 413')
  const braces = post(JSON.stringify(admissionReview(pod({ 'sidekey.dev/secret-a': 'k8s:a#k', note: '{['.repeat(60_000) }))))
  t.equal((await braces.done).status, 200, 'braces inside strings are not counted')

  const a = post(review, { hold: true })
  const b = post(review, { hold: true })
  await new Promise((resolve) => setTimeout(resolve, 200))
  const c = await post(review).done
  t.equal(c.status, 429, 'a third admission while two are in flight -> 429')
  t.match(c.body, { error: { code: 'SIDEKEY_E_BUSY', message: /2 admissions are in flight/ } })
  a.finish()
  b.finish()
  t.equal((await a.done).status, 200)
  t.equal((await b.done).status, 200)
  t.equal((await post(review).done).status, 200, 'served again once the slots are free')

  // maxConnections: sockets past the cap are closed by Node before TLS completes.
  const socks = await Promise.all(Array.from({ length: 10 }, async () => await new Promise<boolean>((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false }, () => resolve(true))
    s.on('error', () => resolve(false))
    s.on('close', () => resolve(false))
    t.teardown(() => s.destroy())
  })))
  t.equal(socks.filter((ok) => ok).length, 6, 'only maxConnections (6) sockets complete a handshake')
})
