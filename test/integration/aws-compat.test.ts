// The AWS Secrets Manager Agent drop-in (GET /secretsmanager/get) against a
// real agent fetching from a real moto server. The requests are the shapes the
// AWS agent's public README documents (curl with the SSRF header; the Python
// `requests`-style GET), answered with GetSecretValue's JSON and the AWS
// agent's status codes; only what the pod binds is served.
import t from 'tap'
import { SecretsManagerClient, CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { startServer, startHarness, eventually, WAIT } from './backend-harness.js'

const moto = await startServer(t, 'moto')
const endpoint = `http://127.0.0.1:${moto.port}`
const admin = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } })
t.teardown(() => { admin.destroy() })
process.env.AWS_ACCESS_KEY_ID = 'testing'
process.env.AWS_SECRET_ACCESS_KEY = 'testing'

const V1 = 'sk-compat-value-one-3e1f'
const V2 = 'sk-compat-value-two-8a2d'
const PLAIN = 'plain-compat-value-77'
const c1 = await admin.send(new CreateSecretCommand({ Name: 'prod/openai', SecretString: JSON.stringify({ api_key: V1, org: 'org-1' }) }))
await admin.send(new CreateSecretCommand({ Name: 'prod/plain', SecretString: PLAIN }))
await admin.send(new CreateSecretCommand({ Name: 'prod/binary', SecretBinary: Buffer.from([0, 1, 2, 254, 255]) }))
await admin.send(new CreateSecretCommand({ Name: 'prod/fields', SecretString: JSON.stringify({ key: 'field-value-42', other: 'never-served-value-43' }) }))
await admin.send(new CreateSecretCommand({ Name: 'prod/unbound', SecretString: 'unbound-value-99' }))

const h = await startHarness(t, {
  refresh: '1s',
  stores: { aws: { type: 'aws', region: 'us-east-1', endpoint, timeout: '2s' } },
  secrets: [
    { name: 'openai', ref: 'aws:prod/openai' },
    { name: 'plain', ref: 'aws:prod/plain' },
    { name: 'binary', ref: 'aws:prod/binary' },
    { name: 'field', ref: 'aws:prod/fields#key' },
    { name: 'openai-env', ref: 'aws:prod/openai', format: 'env' },
  ],
})
for (const v of [V1, V2, PLAIN, 'field-value-42', 'never-served-value-43', 'unbound-value-99']) h.values.add(v)
await h.agent.synced

// Async: the agent runs in this process, so a synchronous child would block it.
const run = promisify(execFile)

const get = async (query: string, headers: Record<string, string> = { 'X-Aws-Parameters-Secrets-Token': h.token }, method = 'GET'): Promise<{ status: number, body: Record<string, unknown> }> => {
  const r = await fetch(`${h.base}/secretsmanager/get?${query}`, { method, headers })
  const text = await r.text()
  return { status: r.status, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
}

t.test('GetSecretValue shape for a whole JSON secret, by name and by ARN', async (t) => {
  const r = await get('secretId=prod%2Fopenai')
  t.equal(r.status, 200)
  t.equal(r.body.ARN, c1.ARN, 'ARN from Secrets Manager')
  t.equal(r.body.Name, 'prod/openai')
  t.equal(r.body.VersionId, c1.VersionId)
  t.same(JSON.parse(r.body.SecretString as string), { api_key: V1, org: 'org-1' })
  t.same(r.body.VersionStages, ['AWSCURRENT'])
  t.type(r.body.CreatedDate, 'number', 'CreatedDate in epoch seconds, as the JSON protocol sends it')
  t.notOk('SecretBinary' in r.body)
  const byArn = await get(`secretId=${encodeURIComponent(c1.ARN as string)}`)
  t.equal(byArn.status, 200, 'the ARN names the same bound secret')
  t.equal(byArn.body.VersionId, c1.VersionId)
  const staged = await get('secretId=prod/openai&versionStage=AWSCURRENT')
  t.equal(staged.status, 200, 'versionStage=AWSCURRENT is the default binding')
  const byId = await get(`secretId=prod/openai&versionId=${c1.VersionId as string}`)
  t.equal(byId.status, 200, 'versionId of the served version')
})

t.test('text, binary and field-only bindings', async (t) => {
  const p = await get('secretId=prod/plain')
  t.equal(p.body.SecretString, PLAIN)
  const b = await get('secretId=prod/binary')
  t.equal(b.status, 200)
  t.equal(b.body.SecretBinary, Buffer.from([0, 1, 2, 254, 255]).toString('base64'), 'SecretBinary base64, as the JSON protocol sends it')
  t.notOk('SecretString' in b.body)
  const f = await get('secretId=prod/fields')
  t.same(JSON.parse(f.body.SecretString as string), { key: 'field-value-42' }, 'only the bound field is served, never the other one')
})

t.test('the AWS agent documented request shapes: curl and a Python GET', async (t) => {
  const curl = (await run('curl', ['-sS', '-w', '\n%{http_code}', '-H', `X-Aws-Parameters-Secrets-Token: ${h.token}`, `${h.base}/secretsmanager/get?secretId=prod/plain`], { encoding: 'utf8' })).stdout
  const [body, code] = curl.trimEnd().split('\n')
  t.equal(code, '200')
  t.equal((JSON.parse(body as string) as { SecretString: string }).SecretString, PLAIN)
  // The README's Python example, with urllib in place of requests (standard library only).
  const py = [
    'import json, os, urllib.request',
    'url = os.environ["BASE"] + "/secretsmanager/get?secretId=prod/openai"',
    'req = urllib.request.Request(url, headers={"X-Aws-Parameters-Secrets-Token": os.environ["TOKEN"]})',
    'secret = json.loads(urllib.request.urlopen(req).read())',
    'print(json.loads(secret["SecretString"])["org"], secret["VersionStages"][0])',
  ].join('\n')
  const out = (await run('python3', ['-c', py], { encoding: 'utf8', env: { ...process.env, BASE: h.base, TOKEN: h.token } })).stdout
  t.equal(out.trim(), 'org-1 AWSCURRENT')
})

t.test('status codes of the AWS agent for its error cases, with a Sidekey code', async (t) => {
  const none = await get('secretId=prod/plain', {})
  t.equal(none.status, 403, 'no token: 403')
  t.equal(none.body.code, 'SIDEKEY_E_UNAUTHENTICATED')
  const wrong = await get('secretId=prod/plain', { 'X-Aws-Parameters-Secrets-Token': 'not-the-token-1234' })
  t.equal(wrong.status, 403, 'wrong token: 403')
  t.equal(wrong.body.code, 'SIDEKEY_E_FORBIDDEN')
  t.notOk('SecretString' in wrong.body)
  const fwd = await get('secretId=prod/plain', { 'X-Aws-Parameters-Secrets-Token': h.token, 'X-Forwarded-For': '10.0.0.1' })
  t.equal(fwd.status, 400, 'X-Forwarded-For: 400 like the AWS agent')
  const post = await get('secretId=prod/plain', { 'X-Aws-Parameters-Secrets-Token': h.token }, 'POST')
  t.equal(post.status, 405, 'not GET: 405')
  const missing = await get('versionStage=AWSCURRENT')
  t.equal(missing.status, 400)
  t.match(missing.body.message, /missing parameter secretId/)
  t.equal(missing.body.code, 'SIDEKEY_E_BAD_REQUEST')
  const unknown = await get('secretId=prod/plain&abc=1')
  t.equal(unknown.status, 400)
  t.match(unknown.body.message, /unknown parameter: abc/)
  t.equal((await get('secretId=prod/plain&refreshNow=maybe')).status, 400, 'refreshNow must be a boolean')
  t.equal((await get('secretId=prod/plain&refreshNow=true')).status, 200, 'refreshNow=true is accepted (the agent keeps the value fresh anyway)')
  const unbound = await get('secretId=prod/unbound')
  t.equal(unbound.status, 400, 'a secret the pod does not bind: 400 ResourceNotFoundException, as Secrets Manager answers')
  t.equal(unbound.body.__type, 'ResourceNotFoundException')
  t.equal(unbound.body.code, 'SIDEKEY_E_SECRET_UNKNOWN')
  t.notOk(JSON.stringify(unbound.body).includes('unbound-value-99'), 'it is never fetched')
  const prev = await get('secretId=prod/openai&versionStage=AWSPREVIOUS')
  t.equal(prev.status, 400, 'a stage the pod does not bind: 400')
  t.equal(prev.body.code, 'SIDEKEY_E_NOT_FOUND')
  t.equal((await get('secretId=prod/openai&versionId=00000000-0000-0000-0000-000000000000')).status, 400, 'a version id that is not the bound one: 400')
})

t.test('rotation: the compat answer follows the published generation', async (t) => {
  const put = await admin.send(new PutSecretValueCommand({ SecretId: 'prod/openai', SecretString: JSON.stringify({ api_key: V2, org: 'org-1' }) }))
  await eventually(() => h.file('openai')?.includes(V2) === true, 'the file to rotate', WAIT)
  const r = await get('secretId=prod/openai')
  t.equal(r.body.VersionId, put.VersionId, 'new VersionId')
  t.equal((JSON.parse(r.body.SecretString as string) as { api_key: string }).api_key, V2)
  t.equal(JSON.parse(r.body.SecretString as string).api_key, JSON.parse(h.file('openai') as string).api_key, 'the same bytes as the file')
})

t.test('audit lines and metrics name the route and the secret, never a value', async (t) => {
  // Accesses are counted, one line per (caller, route, secret, version, status),
  // written within a second: the counts add up to every request.
  const lines = (): string[] => h.logs.filter((l) => l.includes('aws:/secretsmanager/get') && l.includes('"audit":true'))
  const accesses = (): number => lines().reduce((n, l) => n + (JSON.parse(l) as { count: number }).count, 0)
  t.ok(await eventually(() => accesses() > 5, 'the compat requests in the audit trail', 5000), 'every request is counted')
  t.ok(lines().some((l) => l.includes('"secret":"openai"')))
  const m = await h.metrics()
  t.match(m, /route="aws:\/secretsmanager\/get",status="200"/)
  t.match(m, /route="aws:\/secretsmanager\/get",status="403"/)
  for (const v of h.values) t.notOk(h.logs.join('\n').includes(v), 'no value in logs')
})
