// Fixtures shared by the admission bench and the injector tests: a
// self-signed certificate and an AdmissionReview envelope. Plain node (no
// tap), so the bench can import it.
import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A self-signed certificate and key (tls.crt, tls.key) for 127.0.0.1 and localhost, in a fresh temp dir. */
export function makeCert (dir = mkdtempSync(join(tmpdir(), 'sidekey-tls-')), cn = 'sidekey-injector'): { dir: string, cert: string, key: string } {
  const cert = join(dir, 'tls.crt')
  const key = join(dir, 'tls.key')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  return { dir, cert, key }
}

/** An AdmissionReview for a CREATE of `object` (a pod) in team-a; `extra` overrides request fields. */
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
