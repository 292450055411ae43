// The Key Vault clients share a few kept-alive connections: the SDK's own agent
// opened one for each request in flight (the refresher runs 32 at once), each
// TLS connection holding ~100 KiB while it stays open. Against the Key Vault
// stand-in (test/helpers/keyvault-standin.ts) behind a relay that counts them.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { useServers } from '../helpers/testenv.js'
import { startKeyVaultStandin, TENANT } from '../helpers/keyvault-standin.js'
import { entraIdentity } from '../helpers/azure-recordings.js'
import { createAzureProvider } from '../../agent/providers/azure.js'
import { parseRef } from '../../core/reference.js'
import { read } from '../helpers/provider.js'
import { startRelay } from './backend-harness.js'

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
