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
  t.match(tr.body, { error: { code: 'SIDEKEY_E_BODY_TOO_LARGE', message: /more than 100000 objects/ } })
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

/** Shapes of credentials people paste where a reference belongs (all fake). */
export const PASTED: readonly string[] = [
  'admin:Zq9hunter2', 'redis:S3cretP4ssW0rd', 'hvs:CAESIJlWh3mT0kqeXzPp9v', 'akia:AKIAIOSFODNN7EXAMPLE', 'root:toor-4821x',
  'postgres:pgPassw0rd99', 'user:correct-horse-battery', 'mysql:MyS3cr3tPwd', 'ftp:anon-pass-77', 'api:live_51HxQk2eZvKYlo',
  'token:ghp_1234567890abcdefghijABCDEFGHIJ12', 'pass:Tr0ub4dor-and-3', 'secret:whsec_MfKQ9r8GKYqrTw', 'key:AIzaSyD-9tSrke72PouQ',
  'bearer:ya29.a0AfH6SMBx-fake', 'basic:dXNlcjpwYXNzd29yZA', 'hunter2:hunter2hunter2', 'sa:svc-acct-pw-2024',
  'sk-proj-Abc123Def456Ghi789Jkl', 'sk-ant-api03-FakeKeyValue0099', 'AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'ghp_1234567890abcdefghijABCDEFGHIJ34', 'github_pat_11ABCDEFG0123456789_abcdefghij', 'glpat-xxxxXXXXxxxxXXXX1234',
  'xoxb-1234567890-0987654321-AbCdEfGhIjKl', 'xoxp-1111-2222-3333-abcdefabcdef', 'hvs.CAESIJlWh3mT0kqeXzPp9vQ', 's.Qf1s5zigZ4LX6vwx',
  'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEFghiJKL', '-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC',
  'postgres://app:pgS3cret@db.internal:5432/app', 'mongodb+srv://u:MongoPw77@cluster0.example.net', 'https://user:tok3nValue@github.com/x.git',
  'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abcDEF123==', 'AccountKey=Zm9vYmFyYmF6cXV4MTIz', 'Bearer abcdef0123456789',
  'npm_abcdefghijklmnopqrstuvwxyz0123456789', 'pypi-AgEIcHlwaS5vcmcCJGFiY2Rl', 'sk_live_51HxQk2eZvKYloFakeKey', 'rk_live_51HxQk2eZvKYloFake',
  'SG.ngeVfQFYQlKU0ufo8x5d1A.TwL2iGABf9DHoTf', 'dop_v1_0123456789abcdef0123456789abcdef', 'shpat_0123456789abcdef0123456789ab',
  'ATATT3xFfGF0T4nfakeatlassiantoken', 'AC0123456789abcdef0123456789abcdef', 'zq9hunter2', 'correcthorsebattery', 'p4ssw0rd-prod-2024',
  'MySuperSecretPassword!', 'Zq9hunter2', 'S3cretP4ssW0rd', 'letmein-prod-99', 'changeme123456', 'supersecret-db-pw',
  'ghs_16C7e42F292c6912E7710c838347Ae178B4a', 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQ', 'age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqq',
]

t.test('finding 5: no pasted credential is echoed by a denial, the webhook log or inject', async (t) => {
  const { Writable } = await import('node:stream')
  const { request: httpsRequest } = await import('node:https')
  const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { pino } = await import('pino')
  const { review } = await import('../../injector/admission.js')
  const { startInjectorServer } = await import('../../injector/handler.js')
  const { injectMain } = await import('../../injector/cli.js')
  const { stringify } = await import('yaml')
  const { makeCert, admissionReview } = await import('./injector-helpers.js')
  t.ok(PASTED.length >= 50, `${PASTED.length} shapes`)

  const logs: string[] = []
  const stream = new Writable({ write (c: Buffer, _e, cb) { logs.push(c.toString()); cb() } })
  const tls = makeCert()
  const config = testConfig()
  const server = await startInjectorServer({ config, certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, logger: pino({ level: 'debug' }, stream) })
  t.teardown(() => server.close())
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-pasted-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const post = async (body: string): Promise<string> => await new Promise((resolve, reject) => {
    const req = httpsRequest(`${server.url}/mutate`, { method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => resolve(text))
    })
    req.on('error', reject)
    req.end(body)
  })
  const inject = async (p: unknown): Promise<string> => {
    const file = join(dir, 'pod.yaml')
    writeFileSync(file, stringify(p))
    let err = ''
    const orig = process.stderr.write.bind(process.stderr)
    const origOut = process.stdout.write.bind(process.stdout)
    process.stderr.write = ((s: string | Uint8Array) => { err += s.toString(); return true }) as typeof process.stderr.write
    process.stdout.write = (() => true) as typeof process.stdout.write
    try {
      await injectMain(['-f', file, '-n', 'team-a'])
    } finally {
      process.stderr.write = orig
      process.stdout.write = origOut
    }
    return err
  }

  const S = (k: string): string => `sidekey.dev/${k}`
  const ok = { [S('secret-a')]: 'k8s:a#k' }
  const placements: Array<[string, (v: string) => Record<string, string>]> = [
    ['secret-<name>', (v) => ({ [S('secret-x')]: v })],
    ['template-<name>', (v) => ({ [S('template-x')]: v })],
    ['template reference', (v) => ({ [S('template-x')]: `KEY={{secret "${v.replaceAll('"', '')}"}}` })],
    ['k8s namespace segment', (v) => ({ [S('secret-x')]: `k8s:${v}/name#k` })],
    // (not `k8s:<v>` alone: a DNS-shaped v is a valid name of a Secret in an offered store, i.e. a reference)
    ['k8s name', (v) => ({ [S('secret-x')]: `k8s:${v}` })],
    ['format-<name>', (v) => ({ ...ok, [S('format-a')]: v })],
    ['mode-<name>', (v) => ({ ...ok, [S('mode-a')]: v })],
    ['optional-<name>', (v) => ({ ...ok, [S('optional-a')]: v })],
    ['store-<store>', (v) => ({ [S('secret-a')]: 'vault:secret/data/team-a/x#k', [S('store-vault')]: v })],
    ['role (aws)', (v) => ({ [S('secret-a')]: 'aws:team-a/x#k', [S('role')]: v })],
    ['refresh', (v) => ({ ...ok, [S('refresh')]: v })],
    ['inject-mode', (v) => ({ ...ok, [S('inject-mode')]: v })],
    ['on-change', (v) => ({ ...ok, [S('on-change')]: v })],
    ['containers', (v) => ({ ...ok, [S('containers')]: v })],
    ['mount-path', (v) => ({ ...ok, [S('mount-path')]: v })],
  ]
  const leaks: string[] = []
  let cases = 0
  for (const v of PASTED) {
    // The value itself, and the part after a "word:" prefix, must appear nowhere.
    const needles = [v, ...(v.includes(':') ? [v.slice(v.indexOf(':') + 1)] : [])].filter((n) => n.length >= 6)
    for (const [where, make] of placements) {
      const annotations = make(v)
      if (where === 'k8s namespace segment' && !/^[a-z0-9-]+$/.test(v)) continue // only where it can be a namespace
      if (where === 'k8s name' && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v)) continue // a valid Secret name: a reference, allowed
      const p = pod(annotations)
      const r = review(admissionReview(p), config)
      const resp = JSON.stringify(r.body)
      if ((r.body as { response?: { allowed?: boolean } }).response?.allowed !== false) leaks.push(`${where}: ${v.length}-char value was not denied`)
      const before = logs.length
      const wire = await post(JSON.stringify(admissionReview(p)))
      const logged = logs.slice(before).join('')
      const stderr = await inject(p)
      cases++
      if (stderr === '') leaks.push(`${where}: inject printed no denial`)
      for (const n of needles) {
        if (resp.includes(n)) leaks.push(`${where}: admission response echoes a ${v.length}-char value`)
        if (wire.includes(n)) leaks.push(`${where}: webhook answer echoes a ${v.length}-char value`)
        if (logged.includes(n)) leaks.push(`${where}: webhook log echoes a ${v.length}-char value`)
        if (stderr.includes(n)) leaks.push(`${where}: inject stderr echoes a ${v.length}-char value`)
      }
    }
  }
  t.ok(cases >= 50 * 13, `${cases} cases`)
  t.same(leaks, [], 'nothing echoed, every case denied')

  // The opposite bug: helper names are not secrets and are named.
  const r = review(admissionReview(pod({ [S('template-x')]: '{{lookup "k8s:a"}}' })), config)
  t.match(JSON.stringify(r.body), /only the secret helper is allowed, found helper lookup/)
})

t.test('finding 6: a pod that says it is injected is checked like any other', async (t) => {
  const fjp = (await import('fast-json-patch')).default
  const { review } = await import('../../injector/admission.js')
  const { admissionReview } = await import('./injector-helpers.js')
  const config = testConfig()
  const ann = { 'sidekey.dev/secret-a': 'vault:secret/data/team-a/openai#k', 'sidekey.dev/role': 'app' }
  const injected = mutatePod(pod(ann), config, 'team-a').pod
  const again = review(admissionReview(injected), config)
  t.equal(again.outcome, 'already-injected', 'our own injection passes (re-invocation, kubectl apply of an injected manifest)')

  // As the API server stores it: defaults filled in.
  const defaulted = structuredClone(injected)
  for (const c of [...defaulted.spec?.initContainers ?? [], ...defaulted.spec?.containers ?? []]) {
    c.terminationMessagePath = '/dev/termination-log'
    for (const e of c.env ?? []) if (e.valueFrom?.fieldRef !== undefined) e.valueFrom.fieldRef.apiVersion = 'v1'
  }
  for (const v of defaulted.spec?.volumes ?? []) if (v.projected !== undefined) v.projected.defaultMode = 420
  t.equal(review(admissionReview(defaulted), config).outcome, 'already-injected', 'API-server defaults do not count as a difference')

  // A pod the previous injector made (no MALLOC_ARENA_MAX), or one made under another agentMallocArenaMax: a
  // malloc tuning knob, not what the agent runs or reaches, so a committed `sidekey inject` output still admits.
  for (const arenas of [undefined, '4']) {
    const older = structuredClone(injected)
    const env = (older.spec?.initContainers?.[0]?.env ?? [])
    const at = env.findIndex((e) => e.name === 'MALLOC_ARENA_MAX')
    t.ok(at !== -1, 'the injector sets MALLOC_ARENA_MAX')
    if (arenas === undefined) env.splice(at, 1)
    else env[at] = { name: 'MALLOC_ARENA_MAX', value: arenas }
    t.equal(review(admissionReview(older), config).outcome, 'already-injected', `MALLOC_ARENA_MAX ${arenas ?? 'absent'}: still our injection`)
  }

  const tamper = (what: string, fn: (p: typeof injected) => void): void => {
    const p = structuredClone(injected)
    fn(p)
    const r = review(admissionReview(p), config)
    t.equal(r.outcome, 'denied', `${what} -> denied`)
    t.match(JSON.stringify(r.body), /SIDEKEY_E_CONFLICT.*not the ones this injector builds/, what)
  }
  const agent = (p: typeof injected) => p.spec?.initContainers?.[0] as NonNullable<NonNullable<typeof injected.spec>['containers']>[number]
  tamper('another image', (p) => { agent(p).image = 'evil.example/agent:latest' })
  tamper('other args', (p) => { agent(p).args = ['agent', '--local-demo'] })
  tamper('a command', (p) => { agent(p).command = ['/bin/sh', '-c', 'cat /var/run/secrets/sidekey-token/vault'] })
  tamper('privileged', (p) => { agent(p).securityContext = { ...agent(p).securityContext, privileged: true } })
  tamper('extra env (NODE_OPTIONS)', (p) => { agent(p).env?.push({ name: 'NODE_OPTIONS', value: '--require /tmp/x.js' }) })
  tamper('a config the policy forbids', (p) => {
    const e = agent(p).env?.find((x) => x.name === 'SIDEKEY_CONFIG') as { value: string }
    e.value = e.value.replace('secret/data/team-a/openai', 'secret/data/team-b/openai')
  })
  tamper('a hostPath secrets volume', (p) => {
    const v = p.spec?.volumes?.find((x) => x.name === 'sidekey-secrets') as unknown as Record<string, unknown>
    delete v.emptyDir
    v.hostPath = { path: '/' }
  })
  const hand = pod({ ...ann, 'sidekey.dev/status': 'injected' }, { initContainers: [{ name: 'sidekey-agent', image: 'ghcr.io/sidekey/sidekey:0.1.0', args: ['agent'], env: [{ name: 'SIDEKEY_CONFIG', value: '{"secrets":[{"name":"x","ref":"vault:secret/data/team-b/openai#k"}],"dir":"/s"}' }] }] })
  const r = review(admissionReview(hand), config)
  t.equal(r.outcome, 'denied', 'a hand-written agent with the status annotation is denied')
  const forbidden = review(admissionReview(pod({ 'sidekey.dev/secret-a': 'vault:secret/data/team-b/openai#k', 'sidekey.dev/role': 'app', 'sidekey.dev/status': 'injected' })), config)
  t.match(forbidden, { outcome: 'denied', rule: 'teams' }, 'annotations the policy forbids are denied even with the status annotation')
  t.ok(fjp !== undefined)
})

t.test('finding 7: encoded separators cannot escape a policy glob', async (t) => {
  const { parseRef } = await import('../../core/reference.js')
  const { review } = await import('../../injector/admission.js')
  const { admissionReview } = await import('./injector-helpers.js')
  for (const path of ['secret/data/team-a/..%2Fteam-b%2Fopenai', 'secret/data/team-a/..%2fteam-b', 'secret/data/team-a/%2E%2E/team-b', 'secret/data/team-a/..%5Cteam-b', 'secret/data/team-a/..\\team-b', 'secret/data/team-a/x%2Fy']) {
    t.throws(() => parseRef(`vault:${path}#k`), { code: 'SIDEKEY_E_REF_SYNTAX' }, path)
    const r = review(admissionReview(pod({ 'sidekey.dev/secret-a': `vault:${path}#k`, 'sidekey.dev/role': 'app' })), testConfig())
    t.equal(r.outcome, 'denied', `${path} is denied at admission`)
  }
  t.doesNotThrow(() => parseRef('vault:secret/data/team-a/open%20ai#k'), 'other percent-encodings are left alone')
})
