// Which namespaces may read which stores and paths. The first rule whose
// namespace globs match the pod's namespace decides; a denial names the rule,
// the annotation and the reference (a reference is data, never a value).
import { SidekeyError } from '../core/errors.js'
import type { SecretRef } from '../core/reference.js'
import type { InjectorConfig, PolicyRule } from './config.js'
import type { InjectionSpec } from './spec.js'

/** Used when the config has no rules: any offered store, `k8s:` in the pod's own namespace only. */
export const DEFAULT_RULE: PolicyRule = Object.freeze({ name: '(default)', namespaces: Object.freeze(['*']), allow: Object.freeze(['*:*']), k8sNamespaces: Object.freeze([]) })

const globCache = new Map<string, RegExp>()
export function globMatch (pattern: string, value: string): boolean {
  let re = globCache.get(pattern)
  if (re === undefined) {
    re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 's')
    if (globCache.size > 10_000) globCache.clear()
    globCache.set(pattern, re)
  }
  return re.test(value)
}

export function ruleFor (namespace: string, config: InjectorConfig): PolicyRule | undefined {
  if (config.policy.rules.length === 0) return DEFAULT_RULE
  return config.policy.rules.find((r) => r.namespaces.some((g) => globMatch(g, namespace)))
}

function deny (message: string, rule: string, annotation: string, ref?: SecretRef): SidekeyError {
  return new SidekeyError('SIDEKEY_E_POLICY', message, { rule, annotation, ...(ref !== undefined ? { ref: ref.raw } : {}) })
}

/** Throws SIDEKEY_E_POLICY for the first reference the namespace may not use. */
export function checkPolicy (spec: InjectionSpec, namespace: string, config: InjectorConfig): void {
  const rule = ruleFor(namespace, config)
  if (rule === undefined) {
    throw deny(`namespace "${namespace}" matches no policy rule, so it may not use Sidekey; ask the platform team to add a rule for it under policy.rules in the injector config`, '(none)', spec.secrets[0]?.annotation ?? '')
  }
  const allow = rule.allow.map((a) => a.replaceAll('{namespace}', namespace))
  for (const s of spec.secrets) {
    for (const ref of s.refs) {
      const store = spec.stores[ref.store]
      if (store?.type === 'k8s') {
        const slash = ref.path.indexOf('/')
        const target = slash === -1 ? namespace : ref.path.slice(0, slash)
        if (target !== namespace && !rule.k8sNamespaces.some((g) => globMatch(g.replaceAll('{namespace}', namespace), target))) {
          // Neither the namespace segment nor the reference is quoted: it may be a pasted value.
          throw deny(`${s.annotation}: a k8s reference reads another namespace (not shown), but policy rule "${rule.name}" lets pods in "${namespace}" read Kubernetes secrets only in their own namespace${rule.k8sNamespaces.length > 0 ? ` and ${rule.k8sNamespaces.join(', ')}` : ''}`, rule.name, s.annotation)
        }
      }
      const ok = allow.some((a) => {
        const colon = a.indexOf(':')
        const st = a.slice(0, colon)
        return (st === '*' || st === ref.store) && globMatch(a.slice(colon + 1), ref.path)
      })
      if (!ok) {
        throw deny(`${s.annotation}: reference ${ref.raw} is not allowed in namespace "${namespace}" by policy rule "${rule.name}" (it allows ${allow.length > 0 ? allow.join(', ') : 'nothing'})`, rule.name, s.annotation, ref)
      }
    }
  }
}
