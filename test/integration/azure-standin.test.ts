// Azure Key Vault backend against a Key Vault protocol stand-in, for
// machines where lowkey-vault cannot be installed (its jar is missing from
// some Maven Central mirrors). The stand-in (startKeyVaultStandin in
// azure-suite.ts) speaks the part of the Key Vault REST API the agent uses,
// the way Key Vault does, and checks the access tokens the fake Entra
// endpoint issues; identity is real: kube-apiserver tokens exchanged at the
// fake Entra token endpoint.
import t from 'tap'
import { useServers } from '../helpers/testenv.js'
import { azureSuite, startKeyVaultStandin } from './azure-suite.js'

const { aad, kube } = await useServers(t, ['aad', 'kube'])
const kv = await startKeyVaultStandin(aad)
t.teardown(async () => { await kv.close() })
await azureSuite(t, kv, kube, aad, 'standin')
