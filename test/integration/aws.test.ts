// AWS Secrets Manager backend against a real moto server (Secrets Manager +
// STS + IAM). Web identity goes through moto's STS; denial and bad
// credentials use moto's IAM enforcement, switched on at run time
// (/moto-api/reset-auth) once the pod's role has its credentials, because
// moto then also demands a SigV4 signature on the (normally unsigned)
// AssumeRoleWithWebIdentity call. Request counts come from moto's recorder.
import t from 'tap'
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { SecretsManagerClient, CreateSecretCommand, PutSecretValueCommand, UpdateSecretVersionStageCommand } from '@aws-sdk/client-secrets-manager'
import { createAwsProvider } from '../../agent/providers/aws.js'
import type { Provider } from '../../agent/providers/provider.js'
import { parseRef } from '../../core/reference.js'
import { read, syncFrom, meter } from '../helpers/provider.js'
import { startServer, startRelay, startHarness, eventually, WAIT, trackProviders, errorCollector, outageRoundTrip } from './backend-harness.js'

const work = mkdtempSync(join(tmpdir(), 'sidekey-aws-'))
const recording = join(work, 'moto-recording.jsonl')
const moto = await startServer(t, 'moto', { MOTO_RECORDER_FILEPATH: recording })
const endpoint = `http://127.0.0.1:${moto.port}`
const relay = await startRelay(t, moto.port)
const relayed = `http://127.0.0.1:${relay.port}`
const ROLE = 'arn:aws:iam::123456789012:role/sidekey-app'
const tokenFile = join(work, 'token')
// moto's STS accepts any web identity token; this one is shaped like a projected SA token.
writeFileSync(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsic3RzLmFtYXpvbmF3cy5jb20iXSwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OmFwcDpkZWZhdWx0In0.c2ln')

const admin = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } })
t.teardown(() => { admin.destroy() })

const V1 = 'sk-aws-value-one-7f3a'
const V2 = 'sk-aws-value-two-91bc'
const VALUES = [V1, V2, 'plain-text-secret-55', 'denied-secret-value-66']

async function iam (params: Record<string, string>): Promise<string> {
  // IAM is a Query API; moto routes by the credential scope and does not check the signature while enforcement is off.
  const r = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0' },
    body: new URLSearchParams({ Version: '2010-05-08', ...params }).toString(),
  })
  const text = await r.text()
  if (!r.ok) throw new Error(`moto IAM ${params.Action ?? ''} failed: ${r.status} ${text.slice(0, 300)}`)
  return text
}

const ctx = { storeName: 'aws', logger: pino({ level: 'silent' }), maxValueBytes: 1 << 20 }
const storeConfig = { type: 'aws' as const, region: 'us-east-1', endpoint: relayed, stsEndpoint: relayed, roleArn: ROLE, tokenFile, timeout: '2s' }
const provider = trackProviders(t, (over: Record<string, unknown> = {}, c: typeof ctx & { meter?: ReturnType<typeof meter> } = ctx): Provider => createAwsProvider({ ...storeConfig, ...over } as never, c))

const { code, errors } = errorCollector()

await admin.send(new CreateSecretCommand({ Name: 'prod/openai', SecretString: JSON.stringify({ api_key: V1, org: 'org-1' }) }))
await admin.send(new CreateSecretCommand({ Name: 'prod/plain', SecretString: 'plain-text-secret-55' }))
await admin.send(new CreateSecretCommand({ Name: 'prod/binary', SecretBinary: Buffer.from([0, 1, 2, 254, 255]) }))
await admin.send(new CreateSecretCommand({ Name: 'other/denied', SecretString: 'denied-secret-value-66' }))

t.test('provider: read, JSON map, bytes, binary, version stages and ids, cheap version check', async (t) => {
  const m = meter()
  const p = provider({}, { ...ctx, meter: m })
  const ref = parseRef('aws:prod/openai')
  const r1 = await read(p, ref)
  t.same(r1.data, { kind: 'map', map: { api_key: V1, org: 'org-1' } }, 'a JSON SecretString is a map, so #key can pick api_key')
  const plain = await read(p, parseRef('aws:prod/plain'))
  t.same(plain.data, { kind: 'bytes', bytes: Buffer.from('plain-text-secret-55') }, 'a non-JSON string is bytes')
  const bin = await read(p, parseRef('aws:prod/binary'))
  t.same(bin.data, { kind: 'bytes', bytes: Buffer.from([0, 1, 2, 254, 255]) }, 'SecretBinary is bytes')

  const v1 = r1.version
  m.counts.clear()
  t.equal(await syncFrom(p, ref, v1), 'unchanged', 'DescribeSecret names the AWSCURRENT version the read returned')
  t.same([...m.counts], [['DescribeSecret', 1]], 'unchanged: DescribeSecret only, no value read')
  await admin.send(new PutSecretValueCommand({ SecretId: 'prod/openai', SecretString: JSON.stringify({ api_key: V2, org: 'org-1' }) }))
  m.counts.clear()
  const r2 = await p.sync(ref, { version: v1 })
  t.ok(r2.changed, 'a new value: the sync answers with it')
  const v2 = r2.changed ? r2.version : ''
  t.not(v2, v1, 'a new value gives a new current version')
  t.equal((r2 as { data?: { map: Record<string, string> } }).data?.map.api_key, V2)
  t.same([...m.counts], [['DescribeSecret', 1], ['GetSecretValue', 1]], 'changed: DescribeSecret, then one GetSecretValue')

  const prev = parseRef('aws:prod/openai@AWSPREVIOUS')
  t.equal(await syncFrom(p, prev, v1), 'unchanged', '@AWSPREVIOUS is the version that was current before')
  t.equal((await read(p, prev)).version, v1)
  t.equal(((await read(p, prev)).data as { map: Record<string, string> }).map.api_key, V1)
  const byId = parseRef(`aws:prod/openai@${v1}`)
  m.counts.clear()
  t.equal(await syncFrom(p, byId, v1), 'unchanged', 'a pinned version id is immutable')
  t.equal(m.counts.size, 0, 'so a sync with it in hand costs no request')
  t.equal(((await read(p, byId)).data as { map: Record<string, string> }).map.api_key, V1)

  await admin.send(new UpdateSecretVersionStageCommand({ SecretId: 'prod/openai', VersionStage: 'BLUE', MoveToVersionId: v1 }))
  t.equal(await syncFrom(p, parseRef('aws:prod/openai@BLUE'), v1), 'unchanged', 'a custom stage is followed like AWSCURRENT')
  t.equal(await syncFrom(p, parseRef('aws:prod/openai@BLUE'), v2), v1, 'and a sync from another version lands on the staged one')
  t.equal(m.counts.get('sts:AssumeRoleWithWebIdentity'), undefined, 'credentials are cached across calls')
})

t.test('provider: by ARN', async (t) => {
  const created = await admin.send(new CreateSecretCommand({ Name: 'arn-test', SecretString: JSON.stringify({ k: 'arn-value' }) }))
  const p = provider({ region: undefined })
  const r = await read(p, parseRef(`aws:${created.ARN as string}#k`))
  t.same(r.data, { kind: 'map', map: { k: 'arn-value' } })
})

t.test('provider: missing secret, missing version, bad token file', async (t) => {
  const p = provider()
  t.equal(await code(read(p, parseRef('aws:prod/nope'))), 'SIDEKEY_E_NOT_FOUND')
  t.equal(await code(syncFrom(p, parseRef('aws:prod/nope'), 'v')), 'SIDEKEY_E_NOT_FOUND')
  t.equal(await code(syncFrom(p, parseRef('aws:prod/openai@NOSUCHSTAGE'), 'v')), 'SIDEKEY_E_NOT_FOUND')
  t.equal(await code(read(provider({ tokenFile: join(work, 'missing-token') }), parseRef('aws:prod/openai'))), 'SIDEKEY_E_AUTH', 'no projected token: an auth error')
  t.equal(await code(read(provider({ roleArn: undefined }), parseRef('aws:prod/openai'))), 'SIDEKEY_E_CONFIG', 'a token file without a role is a config error')
})

t.test('agent: #key and whole-secret files, rotation reaches file, HTTP, gRPC Watch and onChange once', async (t) => {
  await admin.send(new CreateSecretCommand({ Name: 'agent/anthropic', SecretString: JSON.stringify({ key: V1, model: 'x' }) }))
  const h = await startHarness(t, {
    refresh: '1s',
    stores: { aws: storeConfig },
    secrets: [{ name: 'anthropic-key', ref: 'aws:agent/anthropic#key' }, { name: 'anthropic.env', ref: 'aws:agent/anthropic', format: 'env' }],
  })
  await h.agent.synced
  t.equal(h.file('anthropic-key'), V1)
  t.match(h.file('anthropic.env') ?? '', /key="sk-aws-value-one/)
  t.equal((await h.get('anthropic-key')).body, V1)
  const before = h.events.length
  await admin.send(new PutSecretValueCommand({ SecretId: 'agent/anthropic', SecretString: JSON.stringify({ key: V2, model: 'x' }) }))
  await eventually(() => h.file('anthropic-key') === V2, 'the file to rotate', WAIT)
  t.equal((await h.get('anthropic-key')).body, V2, 'the endpoint serves the new value')
  await eventually(() => h.events.slice(before).some((e) => e.name === 'anthropic-key' && e.kind === 'CHANGED'), 'a gRPC CHANGED event', WAIT)
  await eventually(() => h.notifications.length >= 1, 'onChange', WAIT)
  await new Promise((resolve) => setTimeout(resolve, 2500)) // two more refresh rounds: nothing else may fire
  t.equal(h.notifications.length, 1, 'onChange fired exactly once for one rotation')
  t.same(JSON.parse(h.notifications[0] as string).secrets.map((s: { name: string }) => s.name).sort(), ['anthropic-key', 'anthropic.env'])
  t.notMatch(h.logs.join('\n'), V2, 'the value is never logged')
})

t.test('agent: outage keeps serving the last good value, /metrics counts errors, recovery', async (t) => {
  await admin.send(new CreateSecretCommand({ Name: 'agent/outage', SecretString: V1 }))
  const h = await startHarness(t, { refresh: '1s', stores: { aws: storeConfig }, secrets: [{ name: 'k', ref: 'aws:agent/outage' }] })
  await h.agent.synced
  await outageRoundTrip(t, h, { store: 'aws', relay, before: V1, after: V2, writeDuringOutage: async () => await admin.send(new PutSecretValueCommand({ SecretId: 'agent/outage', SecretString: V2 })) })
})

interface Recorded { headers: Record<string, string>, body: string, body_encoded: boolean }
async function recorder (cmd: 'start-recording' | 'stop-recording' | 'reset-recording'): Promise<void> {
  const r = await fetch(`${endpoint}/moto-api/recorder/${cmd}`, { method: 'POST' })
  if (!r.ok) throw new Error(`moto recorder ${cmd}: ${r.status}`)
}
function recorded (): Array<{ op: string, secretId: string }> {
  if (!existsSync(recording)) return []
  return readFileSync(recording, 'utf8').split('\n').filter(Boolean).map((l) => {
    const e = JSON.parse(l) as Recorded
    const target = Object.entries(e.headers).find(([k]) => k.toLowerCase() === 'x-amz-target')?.[1] ?? ''
    const body = e.body_encoded ? Buffer.from(e.body, 'base64').toString('utf8') : e.body
    let secretId = ''
    try { secretId = String((JSON.parse(body) as { SecretId?: unknown }).SecretId ?? '') } catch { /* not JSON */ }
    return { op: target.replace(/^secretsmanager\./, ''), secretId }
  })
}

t.test('steady state: one DescribeSecret per secret per interval, no value fetch (counted by moto)', async (t) => {
  await admin.send(new CreateSecretCommand({ Name: 'load/a', SecretString: JSON.stringify({ x: 'load-a' }) }))
  await admin.send(new CreateSecretCommand({ Name: 'load/b', SecretString: 'load-b' }))
  const h = await startHarness(t, {
    refresh: '1s',
    stores: { aws: storeConfig },
    // Two files from load/a share one source: still one check per interval.
    secrets: [{ name: 'a1', ref: 'aws:load/a#x' }, { name: 'a2', ref: 'aws:load/a', format: 'json' }, { name: 'b', ref: 'aws:load/b' }],
  })
  await h.agent.synced
  await recorder('reset-recording')
  await recorder('start-recording')
  const start = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 5000))
  await recorder('stop-recording')
  const elapsed = Date.now() - start
  const reqs = recorded()
  const intervals = Math.ceil(elapsed / 1000) + 1
  for (const id of ['load/a', 'load/b']) {
    const mine = reqs.filter((r) => r.secretId === id)
    const checks = mine.filter((r) => r.op === 'DescribeSecret').length
    t.ok(checks >= 2 && checks <= intervals, `${id}: ${checks} DescribeSecret in ${elapsed} ms at a 1s interval (at most ${intervals})`)
    t.equal(mine.filter((r) => r.op === 'GetSecretValue').length, 0, `${id}: no GetSecretValue while nothing changed`)
  }
  t.equal(reqs.filter((r) => /AssumeRole/.test(r.op)).length, 0, 'no STS call in steady state')
})

t.test('IAM enforced: a read the role is not allowed is denied; a refused web-identity exchange is an auth error', async (t) => {
  await iam({ Action: 'CreateRole', RoleName: 'sidekey-app', AssumeRolePolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Federated: 'arn:aws:iam::123456789012:oidc-provider/kubernetes' }, Action: 'sts:AssumeRoleWithWebIdentity' }] }) })
  // moto evaluates Secrets Manager calls against resource "*", so the policy grants by action: metadata yes, value no.
  await iam({ Action: 'PutRolePolicy', RoleName: 'sidekey-app', PolicyName: 'describe-only', PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['secretsmanager:DescribeSecret'], Resource: '*' }] }) })
  const p = provider()
  const plainVersion = (await read(p, parseRef('aws:prod/plain'))).version // the pod's role gets its credentials while moto still lets STS through unsigned
  const reset = async (n: string): Promise<void> => { await fetch(`${endpoint}/moto-api/reset-auth`, { method: 'POST', body: n }) }
  await reset('0')
  t.teardown(async () => { await reset('inf') })
  t.equal(await syncFrom(p, parseRef('aws:prod/plain'), plainVersion), 'unchanged', 'DescribeSecret is allowed: the assumed-role credentials are accepted')
  t.equal(await code(read(p, parseRef('aws:prod/plain'))), 'SIDEKEY_E_DENIED', 'GetSecretValue is not in the policy: denied')
  t.equal(await code(read(provider(), parseRef('aws:prod/plain'))), 'SIDEKEY_E_AUTH', 'moto refuses the unsigned web-identity exchange while enforcing: an auth error')
})

t.test('no error message or detail carries a value', async (t) => {
  t.ok(errors.length > 0)
  const leaked = errors.filter((m) => VALUES.some((v) => m.includes(v)))
  t.same(leaked, [], `none of ${errors.length} error texts contains a value`)
})
