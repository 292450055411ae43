// Azure Key Vault backend against lowkey-vault (the Key Vault API over HTTPS
// with a self-signed certificate), started by scripts/testenv. lowkey-vault
// accepts any bearer token and has no access policies or RBAC, so the denied
// read is shown against a stand-in answering like Key Vault (see the suite).
// Any failure to install or start lowkey-vault fails this file, with one
// exception: when the package registry does not serve lowkey-vault-app at all
// (scripts/testenv exit 3 — the case on this workplace's Maven Central). Then
// the Azure path is proven by the stand-in and the real service's recordings
// instead, and this file says so once, in one comment line of the run's
// summary (not a TODO on every run). SIDEKEY_LOWKEY_JAR points scripts/testenv
// at a local copy of the jar and runs the suite for real.
import t from 'tap'
import { SecretClient } from '@azure/keyvault-secrets'
import { useServers, blockedReason, type LowkeyInfo } from '../helpers/testenv.js'
import { azureSuite } from './azure-suite.js'
import { loadRecordings, recordingsDir } from '../helpers/azure-recordings.js'

let lowkey: LowkeyInfo | undefined
try {
  lowkey = (await useServers(t, ['lowkey'])).lowkey
} catch (err) {
  const blocked = blockedReason(err)
  if (blocked === undefined) throw err
  const why = (blocked.split('\n').pop() ?? blocked).split(' | ')[0]?.replace(/^.*?UNAVAILABLE:\s*/, '').replace(/ \(.*$/, '')
  // What stands in for it must be there: the recordings are read from ../shared (this throws, naming the path, when they are missing).
  const recordings = loadRecordings().length
  t.comment(`Azure Key Vault: lowkey-vault not used (${why ?? 'not served'}; SIDEKEY_LOWKEY_JAR=<jar> runs it); the Azure path ran against the Key Vault stand-in (azure-standin.test.js) and ${recordings} recordings of the real service (azure-standin-fidelity.test.js, azure-provider-fidelity.test.js)`)
  t.ok(recordings > 0, `${recordings} recordings of the real Key Vault service in ${recordingsDir()}`)
}
if (lowkey !== undefined) {
  t.comment(`Azure Key Vault: ran against lowkey-vault ${lowkey.version} (${lowkey.reused ? 'reused' : 'started'} on port ${lowkey.port})`)
  await suite(lowkey)
}

async function suite (lowkey: LowkeyInfo): Promise<void> {
  const { aad, kube } = await useServers(t, ['aad', 'kube'])
  // The test's own writer: lowkey-vault takes any bearer token.
  const admin = new SecretClient(lowkey.vaultUrl, { getToken: async () => ({ token: 'admin', expiresOnTimestamp: Date.now() + 3_600_000 }) }, { tlsOptions: { ca: lowkey.ca }, disableChallengeResourceVerification: true })

  await azureSuite(t, {
    port: lowkey.port,
    ca: lowkey.ca,
    async set (name, value) { return (await admin.setSecret(name, value)).properties.version as string },
  }, kube, aad, 'lowkey')
}
