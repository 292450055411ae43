// Azure Key Vault backend against a Key Vault protocol stand-in, for
// machines where lowkey-vault cannot be installed (its jar is missing from
// some Maven Central mirrors). The stand-in speaks the part of the Key Vault
// REST API the agent uses, the way Key Vault does: the 401 bearer challenge
// naming the Entra authority, access tokens checked against the fake Entra
// endpoint's signing key, audience and expiry, versioned secrets, and the
// SecretNotFound / ForbiddenByRbac error bodies; it also keeps a request log
// for the steady-state count. Identity is real: kube-apiserver tokens
// exchanged at the fake Entra token endpoint.
import t from 'tap'
import { createServer } from 'node:https'
import { execFileSync } from 'node:child_process'
import { createVerify, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { useServers } from '../helpers/testenv.js'
import { azureSuite, TENANT } from './azure-suite.js'

const { aad, kube } = await useServers(t, ['aad', 'kube'])

const dir = mkdtempSync(join(tmpdir(), 'sidekey-kv-standin-'))
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
const ca = readFileSync(join(dir, 'cert.pem'), 'utf8')

interface Version { value: string, created: number }
const secrets = new Map<string, Array<{ id: string } & Version>>()
const log: Array<{ method: string, path: string }> = []
let base = ''

function tokenOk (auth: string | undefined): boolean {
  const m = /^Bearer (.+)$/.exec(auth ?? '')
  if (m === null) return false
  const [h, p, s] = (m[1] as string).split('.')
  if (h === undefined || p === undefined || s === undefined) return false
  const v = createVerify('sha256')
  v.update(`${h}.${p}`)
  if (!v.verify(aad.signingPublicKey, Buffer.from(s, 'base64url'))) return false
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as { aud?: string, exp?: number }
  return claims.aud === 'https://vault.azure.net' && typeof claims.exp === 'number' && claims.exp * 1000 > Date.now()
}

const server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (req, res) => {
  const url = new URL(req.url ?? '/', base)
  log.push({ method: req.method ?? '', path: url.pathname })
  const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-ms-keyvault-service-version': '1.9.0', ...headers }).end(JSON.stringify(body))
  }
  if (!tokenOk(req.headers.authorization)) {
    send(401, { error: { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer or PoP token.' } }, { 'www-authenticate': `Bearer authorization="${aad.authorityHost}/${TENANT}", resource="https://vault.azure.net"` })
    return
  }
  const m = /^\/secrets\/([0-9A-Za-z-]+)(?:\/([0-9a-f]*))?\/?$/.exec(url.pathname)
  if (req.method !== 'GET' || m === null) { send(400, { error: { code: 'BadParameter', message: 'unsupported request' } }); return }
  const name = m[1] as string
  if (name.startsWith('denied-')) {
    send(403, { error: { code: 'Forbidden', message: `Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'`, innererror: { code: 'ForbiddenByRbac' } } })
    return
  }
  const versions = secrets.get(name) ?? []
  const v = m[2] !== undefined && m[2] !== '' ? versions.find((x) => x.id === m[2]) : versions.at(-1)
  if (v === undefined) { send(404, { error: { code: 'SecretNotFound', message: `A secret with (name/id) ${name}${m[2] !== undefined ? '/' + m[2] : ''} was not found in this key vault.` } }); return }
  send(200, { value: v.value, id: `${base}/secrets/${name}/${v.id}`, attributes: { enabled: true, created: Math.floor(v.created / 1000), updated: Math.floor(v.created / 1000), recoveryLevel: 'Recoverable+Purgeable', recoverableDays: 90 }, tags: {} })
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const port = (server.address() as AddressInfo).port
base = `https://localhost:${port}`
t.teardown(() => { server.closeAllConnections(); server.close(); rmSync(dir, { recursive: true, force: true }) })

await azureSuite(t, {
  port,
  ca,
  async set (name, value) {
    const id = randomBytes(16).toString('hex')
    const list = secrets.get(name) ?? []
    list.push({ id, value, created: Date.now() })
    secrets.set(name, list)
    return id
  },
  deniedSecret: 'denied-secret',
  requests: () => log.filter((r) => r.method === 'GET'),
}, kube, aad, 'standin')
