// Azure Key Vault backend against lowkey-vault (the Key Vault API over HTTPS
// with a self-signed certificate), started by scripts/testenv. lowkey-vault
// accepts any bearer token and has no access policies or RBAC, so the denied
// read is shown against a stand-in answering like Key Vault (see the suite).
// Any failure to install or start lowkey-vault fails this file, with one
// exception: when the package registry does not serve lowkey-vault-app at all
// (scripts/testenv exit 3 — the case on this workplace's Maven Central), the
// suite is reported as a TODO that names the blocker, so the run shows it on
// every CI run without counting a broken build. SIDEKEY_LOWKEY_JAR points
// scripts/testenv at a local copy of the jar and runs the suite for real.
import t from 'tap'
import { SecretClient } from '@azure/keyvault-secrets'
import { useServers, blockedReason, type LowkeyInfo } from '../helpers/testenv.js'
import { azureSuite } from './azure-suite.js'

let lowkey: LowkeyInfo | undefined
try {
  lowkey = (await useServers(t, ['lowkey'])).lowkey
} catch (err) {
  const blocked = blockedReason(err)
  if (blocked === undefined) throw err
  t.test('Azure Key Vault backend against lowkey-vault', { todo: `BLOCKED: ${blocked.split('\n').pop() ?? blocked}` }, async (t) => {
    t.fail(`lowkey-vault cannot be installed here: ${blocked}`)
  })
}
if (lowkey !== undefined) await suite(lowkey)

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
