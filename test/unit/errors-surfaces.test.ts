// One path from error to answer: on every surface the code comes from the
// catalogue and the status sent is the catalogue's for that code. gRPC
// carries the code in trailing metadata, not in the message text.
import t from 'tap'
import { request as httpsRequest } from 'node:https'
import { spawnSync } from 'node:child_process'
import * as grpc from '@grpc/grpc-js'
import { pino } from 'pino'
import { ERRORS, type ErrorCode } from '../../core/errors.js'
import { peerStatus } from '../../core/error-answers.js'
import { GRPC_ERROR_CODE_KEY } from '../../agent/grpc-error.js'
import { startInjectorServer, type InjectorServer } from '../../injector/handler.js'
import { startTestAgent } from '../helpers/agent.js'
import { BIN } from '../helpers/cli.js'
import { admissionReview, makeCert, pod, testConfig } from './injector-helpers.js'

const grpcCall = async (fn: (cb: (err: grpc.ServiceError | null) => void) => void): Promise<grpc.ServiceError> =>
  await new Promise((resolve, reject) => fn((err) => err !== null ? resolve(err) : reject(new Error('the call succeeded'))))

t.test('gRPC: the catalogue\'s status, a clean message, the code in trailing metadata', async (t) => {
  const value = 'sk-surface-0123456789'
  process.env.SIDEKEY_TEST_SURFACE = value
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: 'env:SIDEKEY_TEST_SURFACE' }] }, { values: [value] })
  await h.agent.synced
  const c = h.grpc()
  const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 10_000 })
  const cases: Array<[string, ErrorCode, grpc.ServiceError]> = [
    ['unknown name', 'SIDEKEY_E_SECRET_UNKNOWN', await grpcCall((cb) => c.Get({ name: 'nope' }, h.metadata(), deadline(), cb))],
    ['not a name', 'SIDEKEY_E_BAD_REQUEST', await grpcCall((cb) => c.Get({ name: '../x' }, h.metadata(), deadline(), cb))],
    ['no token (interceptor)', 'SIDEKEY_E_UNAUTHENTICATED', await grpcCall((cb) => c.Get({ name: 'k' }, new grpc.Metadata(), deadline(), cb))],
  ]
  const wrong = new grpc.Metadata()
  wrong.set('x-sidekey-token', 'x'.repeat(43))
  cases.push(['wrong token (interceptor)', 'SIDEKEY_E_FORBIDDEN', await grpcCall((cb) => c.Get({ name: 'k' }, wrong, deadline(), cb))])
  for (const [what, code, err] of cases) {
    t.equal(err.code, grpc.status[ERRORS[code].grpc], `${what}: gRPC status ${ERRORS[code].grpc}`)
    t.same(err.metadata.get(GRPC_ERROR_CODE_KEY), [code], `${what}: ${code} in trailing metadata`)
    t.notMatch(err.details, /SIDEKEY_E_/, `${what}: the message does not carry the code`)
    t.ok(err.details.length > 10, `${what}: the message says what to change`)
  }
})

interface Answer { status: number, body: any, allow: string | undefined }
function call (s: InjectorServer, method: string, path: string, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${s.url}${path}`, { method, rejectUnauthorized: false, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        let parsed: unknown
        try { parsed = JSON.parse(Buffer.concat(chunks).toString()) } catch { parsed = undefined }
        resolve({ status: res.statusCode ?? 0, body: parsed, allow: res.headers.allow })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('webhook: every HTTP error is a catalogue code at its status', async (t) => {
  const tls = makeCert()
  const server = await startInjectorServer({ config: testConfig(), certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, maxBodyBytes: 64 * 1024, logger: pino({ level: 'silent' }) })
  t.teardown(() => server.close())
  const cases: Array<[string, Promise<Answer>, ErrorCode, number]> = [
    ['GET /mutate', call(server, 'GET', '/mutate'), 'SIDEKEY_E_METHOD', 405],
    ['POST /healthz', call(server, 'POST', '/healthz', '{}'), 'SIDEKEY_E_METHOD', 405],
    ['GET /nope', call(server, 'GET', '/nope'), 'SIDEKEY_E_ROUTE', 404],
    ['a body over --max-body-bytes', call(server, 'POST', '/mutate', Buffer.alloc(70 * 1024, 0x20)), 'SIDEKEY_E_BODY_TOO_LARGE', 413],
    ['not JSON', call(server, 'POST', '/mutate', '{"apiVersion":'), 'SIDEKEY_E_ADMISSION', 400],
    ['no uid', call(server, 'POST', '/validate', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} })), 'SIDEKEY_E_ADMISSION', 400],
  ]
  for (const [what, answer, code, status] of cases) {
    const r = await answer
    t.equal(r.status, status, `${what}: ${status}`)
    t.equal(r.body?.error?.code, code, `${what}: ${code}`)
    t.equal(ERRORS[code].status, r.status, `${what}: the catalogue's status for ${code} is the one sent`)
    t.type(r.body?.error?.message, 'string', what)
  }
  t.equal((await call(server, 'GET', '/mutate')).allow, 'POST', '405 names the method')

  // Inside an AdmissionReview: status.code is the catalogue's status of the code the message starts with.
  const denials = [
    pod({ 'sidekey.dev/secret-openai': 'vault:secret/data/team-b/openai#api_key', 'sidekey.dev/role': 'app' }),
    pod({ 'sidekey.dev/secret-openai': 'sk-live-0123456789abcdef' }),
  ]
  for (const p of denials) {
    const r = await call(server, 'POST', '/mutate', JSON.stringify(admissionReview(p)))
    const st = r.body.response.status as { code: number, message: string, reason: string }
    const code = /^(SIDEKEY_E_[A-Z_]+): /.exec(st.message)?.[1] as ErrorCode
    t.ok(code in ERRORS, `denial code ${code} is in the catalogue`)
    t.equal(st.code, ERRORS[code].status, `${code}: status.code is the catalogue's`)
    t.notMatch(st.message, /sk-live-0123456789abcdef/, 'a failed annotation value is not echoed')
  }
})

t.test('local HTTP API: method, route and auth errors are catalogue codes at their status', async (t) => {
  const h = await startTestAgent(t, { secrets: [{ name: 'k', ref: 'env:SIDEKEY_TEST_SURFACE_HTTP' }] })
  const cases: Array<[string, Promise<Response>, ErrorCode]> = [
    ['POST', fetch(`${h.base}/v1/secrets/k`, { method: 'POST', headers: { 'x-sidekey-token': h.token } }), 'SIDEKEY_E_METHOD'],
    ['unknown route', fetch(`${h.base}/nope`, { headers: { 'x-sidekey-token': h.token } }), 'SIDEKEY_E_ROUTE'],
    ['unknown /v1 route', fetch(`${h.base}/v1/nope`, { headers: { 'x-sidekey-token': h.token } }), 'SIDEKEY_E_ROUTE'],
    ['no token', fetch(`${h.base}/v1/secrets`), 'SIDEKEY_E_UNAUTHENTICATED'],
  ]
  for (const [what, answer, code] of cases) {
    const r = await answer
    t.equal(r.status, ERRORS[code].status, `${what}: ${ERRORS[code].status}`)
    t.match(await r.json(), { error: { code } }, `${what}: ${code}`)
  }
})

t.test('peer-compatible routes: a peer status differs from the catalogue\'s only where the catalogue says so', async (t) => {
  t.equal(peerStatus('SIDEKEY_E_SECRET_UNKNOWN', 'aws'), 400, 'AWS: unknown secret is ResourceNotFoundException 400')
  t.equal(peerStatus('SIDEKEY_E_SECRET_UNKNOWN', 'vault'), 403, 'Vault: not bound is 403 permission denied')
  t.equal(peerStatus('SIDEKEY_E_NOT_READY', 'aws'), ERRORS.SIDEKEY_E_NOT_READY.status, 'no override: the catalogue status')
})

t.test('CLI: one line `sidekey: CODE: message`, exit 2 for usage, 1 otherwise', async (t) => {
  const cli = (args: string[]): { code: number | null, err: string } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, SIDEKEY_LOCAL_STORE: '/nonexistent/sidekey-local.json', SIDEKEY_LOCAL_KEY: '' } })
    return { code: r.status, err: r.stderr }
  }
  const unknown = cli(['nope'])
  t.equal(unknown.code, 2)
  t.match(unknown.err, /^sidekey: SIDEKEY_E_USAGE: unknown command "nope"/)
  const flag = cli(['get', '--no-such-flag'])
  t.equal(flag.code, 2)
  t.match(flag.err, /^sidekey: SIDEKEY_E_USAGE: unknown option '--no-such-flag'/)
  t.notMatch(flag.err, /^error:/m, 'commander does not print its own line as well')
  // The agent reads its options with node:util's parseArgs: the same answers.
  const agentFlag = cli(['agent', '--no-such-flag=value-of-a-flag-xyz'])
  t.equal(agentFlag.code, 2)
  t.match(agentFlag.err, /^sidekey: SIDEKEY_E_USAGE: unknown option '--no-such-flag'; sidekey agent --help lists the options\n$/)
  t.notMatch(agentFlag.err, /value-of-a-flag-xyz/, 'the value given to an unknown option is not echoed')
  const agentMissing = cli(['agent', '--config'])
  t.equal(agentMissing.code, 2)
  t.match(agentMissing.err, /^sidekey: SIDEKEY_E_USAGE: option '-c, --config <value>' argument missing; sidekey agent --help lists the options\n$/)
  // Node's message for it is three sentences on three lines: one line here.
  const agentAmbiguous = cli(['agent', '-c', '--local-demo'])
  t.equal(agentAmbiguous.code, 2)
  t.match(agentAmbiguous.err, /^sidekey: SIDEKEY_E_USAGE: option '-c' argument is ambiguous; sidekey agent --help lists the options\n$/)
  const agentHelp = spawnSync(process.execPath, [BIN, 'agent', '-h'], { encoding: 'utf8' })
  t.equal(agentHelp.status, 0)
  t.match(agentHelp.stdout, /^Usage: sidekey agent \[options\]\n[\s\S]*-c, --config <file>[\s\S]*--local-demo/)
  const local = cli(['local', 'list'])
  t.equal(local.code, 1)
  t.match(local.err, /sidekey: SIDEKEY_E_LOCAL_KEY: /)
})
