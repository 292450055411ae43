// Shared by the injector tests: a realistic injector config, fixtures, certs.
import { readFileSync, readdirSync } from 'node:fs'
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

export { makeCert, admissionReview } from '../../bench/admission-fixtures.js'
