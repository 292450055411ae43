// Shared by the e2e tests: runs the injector webhook in this process over
// HTTPS on 127.0.0.1 (a CA and a serving certificate made with openssl) and
// registers it with the real kube-apiserver from scripts/testenv through a
// MutatingWebhookConfiguration that mirrors manifests/base/mutatingwebhook.yaml,
// except that clientConfig is a loopback url instead of a Service and the
// namespaceSelector is narrowed to this test's namespace (a reused API server
// may serve other tests at the same time).
import { randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { parse as parseYaml } from 'yaml'
import type { Test } from 'tap'
import { startInjectorServer, type InjectorServer } from '../../injector/handler.js'
import { loadInjectorConfig } from '../../injector/config.js'
import type { KubeInfo } from '../helpers/testenv.js'
import { repoRoot } from '../helpers/testenv.js'

export const WEBHOOK_NAME = 'inject.sidekey.dev'

/** A short random suffix: names stay unique on a reused API server. */
export function suffix (): string {
  return randomBytes(3).toString('hex')
}

function openssl (args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? ''
    throw new Error(`e2e: openssl ${args[0] ?? ''} failed: ${stderr.trim() || (err as Error).message}`)
  }
}

export interface WebhookTls { dir: string, caCert: string, caPem: string, cert: string, key: string }

/** A CA and a serving certificate it signed, for `san` (default IP:127.0.0.1: what the API server dials). */
export function makeWebhookTls (san = 'IP:127.0.0.1,DNS:localhost'): WebhookTls {
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-e2e-tls-'))
  const caKey = join(dir, 'ca.key')
  const caCert = join(dir, 'ca.crt')
  const key = join(dir, 'tls.key')
  const csr = join(dir, 'tls.csr')
  const cert = join(dir, 'tls.crt')
  const ext = join(dir, 'ext.cnf')
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=sidekey-e2e-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', caKey, '-out', caCert])
  openssl(['req', '-new', ...ec, '-subj', '/CN=sidekey-injector.sidekey-system.svc', '-keyout', key, '-out', csr])
  writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n`)
  openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', cert])
  return { dir, caCert, caPem: readFileSync(caCert, 'utf8'), cert, key }
}

/** The webhook entry of manifests/base/mutatingwebhook.yaml, read from the repo so the test follows it. */
export function manifestWebhook (): Record<string, any> {
  const doc = parseYaml(readFileSync(join(repoRoot(), 'manifests/base/mutatingwebhook.yaml'), 'utf8')) as { webhooks?: Array<Record<string, any>> }
  const wh = doc.webhooks?.[0]
  if (wh === undefined) throw new Error('e2e: manifests/base/mutatingwebhook.yaml has no webhooks[0]')
  return wh
}

export interface E2eWebhook {
  readonly server: InjectorServer
  readonly configName: string
  readonly url: string
  /** What the admission log said (denials are logged as warnings). */
  readonly logs: string[]
}

export interface StartWebhookOptions {
  /** Namespaces the webhook applies to (namespaceSelector on kubernetes.io/metadata.name). */
  readonly namespaces: readonly string[]
  /** The injector config (loadInjectorConfig input). */
  readonly injectorConfig: Record<string, unknown>
  /** A labelled pod (in namespaces[0]) the API server must come back with mutated before we return. */
  readonly probe: Record<string, any>
  readonly waitMs?: number
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts the injector (in process), creates the MutatingWebhookConfiguration, and waits until the
 * API server actually calls it: it caches webhook configurations, so a probe pod is created until
 * one comes back injected (each unmutated probe is deleted). Gives up with an error after waitMs.
 */
export async function startWebhook (t: Test, kube: KubeInfo, o: StartWebhookOptions): Promise<E2eWebhook> {
  const tls = makeWebhookTls()
  t.teardown(() => rmSync(tls.dir, { recursive: true, force: true }))
  const logs: string[] = []
  const logger = pino({ level: 'debug' }, { write (s: string) { logs.push(s) } })
  const server = await startInjectorServer({ config: loadInjectorConfig(o.injectorConfig), certFile: tls.cert, keyFile: tls.key, host: '127.0.0.1', port: 0, logger })
  t.teardown(() => server.close())

  const configName = `sidekey-e2e-${suffix()}`
  const url = `${server.url}/mutate`
  const base = manifestWebhook()
  const { service: _service, ...clientRest } = base.clientConfig as Record<string, unknown>
  void _service
  const webhook = {
    ...base,
    clientConfig: { ...clientRest, url, caBundle: Buffer.from(tls.caPem).toString('base64') },
    namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [...o.namespaces] }] },
  }
  await kube.must('POST', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: configName, labels: { 'app.kubernetes.io/part-of': 'sidekey-e2e' } },
    webhooks: [webhook],
  })
  t.teardown(async () => { await kube.request('DELETE', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${configName}`) })

  const ns = o.namespaces[0] ?? 'default'
  const deadline = Date.now() + (o.waitMs ?? 30_000)
  let attempts = 0
  let last = ''
  for (;;) {
    attempts++
    const name = `probe-${suffix()}`
    const body = structuredClone(o.probe)
    body.metadata = { ...(body.metadata ?? {}), name, namespace: ns }
    const r = await kube.request<any>('POST', `/api/v1/namespaces/${ns}/pods`, body)
    if (r.status === 201) {
      await kube.request('DELETE', `/api/v1/namespaces/${ns}/pods/${name}?gracePeriodSeconds=0`)
      if (r.body?.metadata?.annotations?.['sidekey.dev/status'] === 'injected') {
        t.comment(`e2e: webhook ${configName} effective after ${attempts} probe pod(s)`)
        break
      }
      last = 'the probe pod was stored without injection'
    } else {
      last = `${r.status}: ${JSON.stringify(r.body).slice(0, 500)}`
    }
    if (Date.now() > deadline) {
      throw new Error(`e2e: the API server did not call the webhook at ${url} within ${(o.waitMs ?? 30_000) / 1000}s (${attempts} probes; last: ${last}); injector log:\n${logs.slice(-5).join('')}`)
    }
    await sleep(250)
  }
  return { server, configName, url, logs }
}

/** Creates a namespace for this test and deletes it at teardown (it stays Terminating: no namespace controller runs). */
export async function e2eNamespace (t: Test, kube: KubeInfo, prefix: string): Promise<string> {
  const ns = `${prefix}-${suffix()}`
  await kube.ensureNamespace(ns)
  t.teardown(async () => { await kube.request('DELETE', `/api/v1/namespaces/${ns}`) })
  return ns
}
