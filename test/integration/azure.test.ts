// Azure Key Vault backend against lowkey-vault (the Key Vault API over HTTPS
// with a self-signed certificate), started by scripts/testenv. lowkey-vault
// accepts any bearer token and has no access policies or RBAC, so the denied
// read is shown against a stand-in answering like Key Vault (see the suite).
// When lowkey-vault cannot be installed (its jar is not on every Maven
// Central mirror; SIDEKEY_LOWKEY_JAR points scripts/testenv at a local copy)
// this file fails with testenv's message: it never skips.
import t from 'tap'
import { SecretClient } from '@azure/keyvault-secrets'
import { useServers } from '../helpers/testenv.js'
import { azureSuite } from './azure-suite.js'

const { lowkey, aad, kube } = await useServers(t, ['lowkey', 'aad', 'kube'])
// The test's own writer: lowkey-vault takes any bearer token.
const admin = new SecretClient(lowkey.vaultUrl, { getToken: async () => ({ token: 'admin', expiresOnTimestamp: Date.now() + 3_600_000 }) }, { tlsOptions: { ca: lowkey.ca }, disableChallengeResourceVerification: true })

await azureSuite(t, {
  port: lowkey.port,
  ca: lowkey.ca,
  async set (name, value) { return (await admin.setSecret(name, value)).properties.version as string },
}, kube, aad, 'lowkey')
