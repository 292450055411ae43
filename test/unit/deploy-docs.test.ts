// Issue 11 item 9: the deploy path is documented, and the two places that
// name the image (injector Deployment, agent image in the ConfigMap) agree.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { loadInjectorConfigFile } from '../../injector/config.js'
import { REPO } from './injector-helpers.js'

t.test('the base Deployment and the ConfigMap name the same image', async (t) => {
  const dep = parse(readFileSync(join(REPO, 'manifests/base/deployment.yaml'), 'utf8')) as { spec: { template: { spec: { containers: Array<{ image: string }> } } } }
  const cfg = loadInjectorConfigFile(join(REPO, 'manifests/base/configmap.yaml'))
  t.equal(cfg.image, dep.spec.template.spec.containers[0]?.image)
})

t.test('docs/deploy.md covers the image, both image locations and every backend recipe, and names real tests', async (t) => {
  const doc = readFileSync(join(REPO, 'docs/deploy.md'), 'utf8')
  for (const s of ['docker build', 'kustomize edit set image', 'configmap.yaml', 'audience=vault', 'sts:AssumeRoleWithWebIdentity', 'sts.amazonaws.com', 'federated-credential create', 'api://AzureADTokenExchange', 'kind: Role', 'verbs: [get, list, watch]']) {
    t.ok(doc.includes(s), s)
  }
  for (const m of doc.matchAll(/`(test\/[a-z0-9/-]+\.test\.ts)`/g)) t.ok(existsSync(join(REPO, m[1] as string)), `${m[1] as string} exists`)
  // The overlay patch in the doc targets the ConfigMap the base really ships.
  const cm = parse(readFileSync(join(REPO, 'manifests/base/configmap.yaml'), 'utf8')) as { metadata: { name: string } }
  t.ok(doc.includes(`target: {kind: ConfigMap, name: ${cm.metadata.name}}`))
  t.match(readFileSync(join(REPO, 'README.md'), 'utf8'), /docs\/deploy\.md/)
})
