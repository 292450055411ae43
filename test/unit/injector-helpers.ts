// Shared by the injector tests: a realistic injector config, fixtures, certs.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { V1Pod } from '@kubernetes/client-node'
import { loadInjectorConfig, type InjectorConfig } from '../../injector/config.js'
import { parseDocuments } from '../../injector/workloads.js'

export const REPO = fileURLToPath(new URL('../../../', import.meta.url))
export const FIXTURES = join(REPO, 'test/fixtures/pods')

export const CONFIG_INPUT = {
  image: 'ghcr.io/sidekey/sidekey:0.1.0',
  stores: {
    vault: { type: 'vault', address: 'https://vault.vault.svc:8200' },
    aws: { type: 'aws', region: 'us-east-1' },
    azure: { type: 'azure', tenantId: 'tenant-1' },
  },
  policy: {
    rules: [
      { name: 'teams', namespaces: ['team-*'], allow: ['vault:secret/data/{namespace}/*', 'aws:{namespace}/*', 'azure:kv-prod/*', 'k8s:*'], k8sNamespaces: ['shared'] },
      { name: 'sandbox', namespaces: ['sandbox'], allow: ['k8s:*'] },
    ],
  },
}

export function testConfig (overrides: Record<string, unknown> = {}): InjectorConfig {
  return loadInjectorConfig({ ...structuredClone(CONFIG_INPUT), ...overrides })
}

export function fixtureNames (): string[] {
  return readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')).sort()
}

export function loadFixture (name: string): unknown[] {
  return parseDocuments(readFileSync(join(FIXTURES, name), 'utf8'), name).filter((d) => d !== null)
}

/** A labelled pod with the given annotations and one container. */
export function pod (annotations: Record<string, string>, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: 'team-a', labels: { 'sidekey.dev/inject': 'true' }, annotations },
    spec: { containers: [{ name: 'app', image: 'busybox' }], ...spec },
  }
}

/** A self-signed certificate and key for 127.0.0.1 in a fresh temp dir. */
export function makeCert (dir = mkdtempSync(join(tmpdir(), 'sidekey-tls-')), cn = 'sidekey-injector'): { dir: string, cert: string, key: string } {
  const cert = join(dir, 'tls.crt')
  const key = join(dir, 'tls.key')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  return { dir, cert, key }
}

export function admissionReview (object: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'team-a',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object,
      dryRun: false,
      ...extra,
    },
  }
}
