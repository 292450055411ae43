// The Key Vault clients share a few kept-alive connections: the SDK's own agent
// opened one for each request in flight (the refresher runs 32 at once), each
// TLS connection holding ~100 KiB while it stays open. Against the Key Vault
// stand-in (test/helpers/keyvault-standin.ts) behind a relay that counts them.
// And what a bundled azure agent leaves unloaded without a proxy: @azure/identity
// and MSAL (Sidekey makes the token exchange), @azure/keyvault-secrets and
// core-rest-pipeline (Sidekey reads the secret: agent/providers/azure-keyvault.ts),
// Node's own undici (FormData's getter), the SDK's proxy agents (Node's assert
// and tty with them) and zlib; and behind a proxy, that the SDK's clients load.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tlsExports from 'node:tls'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { pino } from 'pino'
import { useServers } from '../helpers/testenv.js'
import { startConnectProxy } from '../helpers/connect-proxy.js'
import { startKeyVaultStandin, TENANT } from '../helpers/keyvault-standin.js'
import { entraIdentity } from '../helpers/azure-recordings.js'
import { createAzureProvider } from '../../agent/providers/azure.js'
import { parseRef } from '../../core/reference.js'
import { read } from '../helpers/provider.js'
import { startRelay } from './backend-harness.js'
import { injectorConfigSchema } from '../../injector/config.js'

const { aad } = await useServers(t, ['aad'])
const kv = await startKeyVaultStandin(aad)
t.teardown(async () => { await kv.close() })
const relay = await startRelay(t, kv.port)
t.teardown(async () => { await relay.close() })
const work = mkdtempSync(join(tmpdir(), 'sidekey-azure-conn-'))
const id = entraIdentity(aad, TENANT)
const tokenFile = join(work, 'token')
writeFileSync(tokenFile, id.assertion())
const caFile = join(work, 'ca.pem')
writeFileSync(caFile, kv.ca + '\n' + aad.ca)

t.test('40 reads at once use at most 8 connections, kept for the next ones', async (t) => {
  const N = 40
  for (let i = 0; i < N; i++) await kv.set(`conn-${i}`, `conn-value-${i}`)
  const p = createAzureProvider({ type: 'azure', vaultUrl: `https://localhost:${relay.port}`, tenantId: TENANT, clientId: id.clientId, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true } as never, { storeName: 'azure', logger: pino({ level: 'silent' }), maxValueBytes: 1 << 20 })
  t.teardown(async () => { await p.close?.() })
  await read(p, parseRef('azure:conn-0')) // the token exchange and the challenge first
  const values = await Promise.all(Array.from({ length: N }, async (_, i) => await read(p, parseRef(`azure:conn-${i}`))))
  t.same(values.map((v) => v.data), Array.from({ length: N }, (_, i) => ({ kind: 'bytes', bytes: Buffer.from(`conn-value-${i}`) })), 'every value')
  t.ok(relay.connections() >= 1 && relay.connections() <= 8, `${relay.connections()} connections open to Key Vault (at most 8)`)
})

t.test("the store's first TLS context waits for Node's bundled root certificates (their parse thread and this one shared one malloc heap)", async (t) => {
  // node:tls's exports object, which agent/providers/azure.ts calls through its default import.
  const tls = tlsExports as { getCACertificates?: (type: string) => readonly string[] }
  const original = tls.getCACertificates
  const asked: string[] = []
  tls.getCACertificates = (type: string) => { asked.push(type); return original?.(type) ?? [] }
  t.teardown(() => { if (original !== undefined) tls.getCACertificates = original; else delete tls.getCACertificates })
  await kv.set('settle-0', 'settle-value')
  const p = createAzureProvider({ type: 'azure', vaultUrl: `https://localhost:${relay.port}`, tenantId: TENANT, clientId: id.clientId, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true } as never, { storeName: 'azure', logger: pino({ level: 'silent' }), maxValueBytes: 1 << 20 })
  t.teardown(async () => { await p.close?.() })
  t.same(asked, [], 'nothing before the first read')
  await read(p, parseRef('azure:settle-0'))
  await read(p, parseRef('azure:settle-0'))
  t.same(asked, ['bundled'], 'the bundled list asked for once, for the one context')
})

/**
 * A preload (node --import) that writes to `seen` every module the ESM loader loads (the
 * bundle's chunks, as file: URLs) and, at exit, Node's built-ins (process.moduleLoadList).
 */
function loadTracer (dir: string): { preload: string, seen: string } {
  const seen = join(dir, 'loaded.txt')
  writeFileSync(seen, '')
  const hooks = join(dir, 'hooks.mjs')
  writeFileSync(hooks, `import { appendFileSync } from 'node:fs'
export async function load (url, context, next) { if (url.startsWith('file:')) appendFileSync(${JSON.stringify(seen)}, url + '\\n'); return await next(url, context) }
`)
  const preload = join(dir, 'preload.mjs')
  writeFileSync(preload, `import { register } from 'node:module'; import { appendFileSync } from 'node:fs'
register(${JSON.stringify(pathToFileURL(hooks).href)})
process.on('exit', () => { appendFileSync(${JSON.stringify(seen)}, process.moduleLoadList.join('\\n') + '\\n') })
`)
  return { preload, seen }
}

/** The bundle's files among a loadTracer's lines. */
const loadedChunks = (lines: string[]): string[] => lines.filter((l) => l.startsWith('file:') && l.includes('/dist/bundle/')).map((u) => fileURLToPath(u))

/** The bundle's chunks of @azure/keyvault-secrets (its user agent) and of core-rest-pipeline (its logger's name). */
const SDK_CHUNK = /azsdk-js-keyvault-secrets|createClientLogger\d*\("core-rest-pipeline"\)/
const BUNDLE = join(process.cwd(), 'dist/bundle')
t.ok(readdirSync(BUNDLE).some((f) => f.endsWith('.js') && SDK_CHUNK.test(readFileSync(join(BUNDLE, f), 'utf8'))), 'the bundle has a chunk SDK_CHUNK finds (else the checks below could not fail)')

t.test('a bundled azure agent loads neither @azure/identity, MSAL, @azure/keyvault-secrets nor Node\'s undici', async (t) => {
  await kv.set('lean-0', 'lean-value')
  const dir = mkdtempSync(join(work, 'agent-'))
  const { preload, seen } = loadTracer(dir)
  const config = {
    dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0 }, logLevel: 'warn', exitAfterSync: true,
    stores: { azure: { type: 'azure', vaultUrl: `https://localhost:${kv.port}`, tenantId: TENANT, clientId: id.clientId, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true } },
    secrets: [{ name: 'a', ref: 'azure:lean-0' }],
  }
  // The agent's NODE_OPTIONS, as the injector sets them (not tap's preload).
  const env: NodeJS.ProcessEnv = { ...process.env, SIDEKEY_CONFIG: JSON.stringify(config), NODE_OPTIONS: String((injectorConfigSchema.properties.agentNodeOptions as { default: string }).default) }
  for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy']) delete env[k]
  const child = spawn(process.execPath, ['--import', pathToFileURL(preload).href, join(process.cwd(), 'dist/bundle/sidekey.js'), 'agent'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  t.equal(await new Promise<number | null>((resolve) => child.once('exit', resolve)), 0, err)
  t.equal(readFileSync(join(dir, 'secrets', 'a'), 'utf8'), 'lean-value', 'the secret came from Key Vault')
  const loaded = readFileSync(seen, 'utf8').split('\n')
  const chunks = loadedChunks(loaded)
  t.ok(chunks.length > 5, `${chunks.length} chunks loaded`)
  t.same(chunks.filter((f) => /@azure\/(identity|msal-node)\b/.test(readFileSync(f, 'utf8'))), [], 'no chunk of @azure/identity or MSAL')
  t.same(chunks.filter((f) => SDK_CHUNK.test(readFileSync(f, 'utf8'))), [], 'no chunk of @azure/keyvault-secrets or core-rest-pipeline: Sidekey\'s own Get Secret')
  t.ok(loaded.includes('NativeModule tls'), 'the built-ins are listed')
  t.notOk(loaded.includes('NativeModule internal/deps/undici/undici'), 'no Node undici')
  // The proxy agents are made only behind a proxy, zlib only decodes a compressed answer.
  t.same(['assert', 'tty', 'zlib'].filter((m) => loaded.includes(`NativeModule ${m}`)), [], 'no assert, tty or zlib')
})

t.test('a bundled azure agent behind an https proxy tunnels through it (the proxy agents load then) and gets its secret', async (t) => {
  await kv.set('proxied-0', 'proxied-value')
  // A CONNECT proxy: each tunnel's target is recorded.
  const { url: proxyUrl, tunnels } = await startConnectProxy(t)
  const dir = mkdtempSync(join(work, 'proxied-'))
  const { preload, seen } = loadTracer(dir)
  const config = {
    dir: join(dir, 'secrets'), apiTokenFile: join(dir, 'token'), listen: { http: 0 }, logLevel: 'warn', exitAfterSync: true,
    stores: { azure: { type: 'azure', vaultUrl: `https://localhost:${kv.port}`, tenantId: TENANT, clientId: id.clientId, tokenFile, authorityHost: aad.authorityHost, caFile, disableChallengeResourceVerification: true } },
    secrets: [{ name: 'a', ref: 'azure:proxied-0' }],
  }
  const env: NodeJS.ProcessEnv = { ...process.env, SIDEKEY_CONFIG: JSON.stringify(config), NODE_OPTIONS: String((injectorConfigSchema.properties.agentNodeOptions as { default: string }).default) }
  for (const k of ['HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy', 'https_proxy']) delete env[k]
  env.HTTPS_PROXY = proxyUrl
  // The stand-ins' certificates are trusted through the store's caFile only, not Node's own extra CA file.
  delete env.NODE_EXTRA_CA_CERTS
  const child = spawn(process.execPath, ['--import', pathToFileURL(preload).href, join(process.cwd(), 'dist/bundle/sidekey.js'), 'agent'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stdout.on('data', (c: Buffer) => { if (err.length < 20_000) err += c.toString() })
  child.stderr.on('data', (c: Buffer) => { if (err.length < 20_000) err += c.toString() })
  // A hang guard, not a time limit on the agent: an agent that cannot get through keeps retrying.
  const guard = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
  t.teardown(() => { clearTimeout(guard); child.kill('SIGKILL') })
  t.equal(await new Promise<number | null>((resolve) => child.once('exit', resolve)), 0, `the agent exits after its sync (tunnels: ${tunnels.join(', ')}) ${err}`)
  t.equal(readFileSync(join(dir, 'secrets', 'a'), 'utf8'), 'proxied-value', 'the secret came from Key Vault')
  t.ok(tunnels.includes(`localhost:${kv.port}`), `Key Vault was reached through the proxy: ${tunnels.join(', ')}`)
  t.ok(tunnels.includes(new URL(aad.authorityHost).host), `the Entra authority was reached through the proxy (@azure/identity on the store's CA): ${tunnels.join(', ')}`)
  // What the agent printed holds neither the value nor the CA it was given.
  const pem = (kv.ca + aad.ca).split('\n').filter((l) => l.length > 40)
  t.notOk(err.includes('proxied-value') || pem.some((l) => err.includes(l)), 'no secret value or CA content in the agent\'s output')
  t.ok(readFileSync(seen, 'utf8').split('\n').includes('NativeModule tty'), 'the proxy agents loaded (with debug\'s tty)')
  // Behind a proxy the reads go through the SDK's client (its proxy agent): its chunks load.
  const chunks = loadedChunks(readFileSync(seen, 'utf8').split('\n'))
  t.ok(chunks.some((f) => SDK_CHUNK.test(readFileSync(f, 'utf8'))), '@azure/keyvault-secrets read the secret through the proxy')
})
