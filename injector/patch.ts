// RFC 6902 JSON patch from the original pod to the mutated pod, with RFC 6901
// pointer escaping. The mutation only adds, so the diff is a list of `add`
// operations for new keys and new array elements; lists of named objects
// (containers, volumes, env) are matched by name so an insertion at the front
// is one `add`, not a rewrite of every element.

export type PatchOp =
  | { readonly op: 'add', readonly path: string, readonly value: unknown }
  | { readonly op: 'replace', readonly path: string, readonly value: unknown }
  | { readonly op: 'remove', readonly path: string }

/** RFC 6901: "~" -> "~0", "/" -> "~1" (in that order). */
export function escapePointer (token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1')
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

export function deepEqual (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false
    return a.every((x, i) => deepEqual(x, b[i]))
  }
  if (isObject(a)) {
    if (!isObject(b)) return false
    const ka = Object.keys(a).filter((k) => a[k] !== undefined)
    const kb = Object.keys(b).filter((k) => b[k] !== undefined)
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]))
  }
  return false
}

/** Names of a list of named objects, or null when some element has no unique string name. */
function names (arr: readonly unknown[]): string[] | null {
  const out: string[] = []
  for (const x of arr) {
    const n = isObject(x) ? x.name : undefined
    if (typeof n !== 'string') return null
    out.push(n)
  }
  return new Set(out).size === out.length ? out : null
}

function diffArray (a: readonly unknown[], b: readonly unknown[], path: string, ops: PatchOp[]): void {
  const na = names(a)
  const nb = names(b)
  if (na !== null && nb !== null) {
    const common = nb.filter((n) => na.includes(n))
    // Keyed diff applies when nothing was removed and the kept elements keep their order.
    if (common.length === na.length && common.every((n, i) => na[i] === n)) {
      b.forEach((el, i) => {
        const j = na.indexOf(nb[i] as string)
        if (j === -1) ops.push({ op: 'add', path: `${path}/${i}`, value: el })
        else diff(a[j], el, `${path}/${i}`, ops)
      })
      return
    }
  } else if (b.length >= a.length && a.every((x, i) => deepEqual(x, b[i]))) {
    for (let i = a.length; i < b.length; i++) ops.push({ op: 'add', path: `${path}/${i}`, value: b[i] })
    return
  } else if (a.length === b.length) {
    a.forEach((x, i) => diff(x, b[i], `${path}/${i}`, ops))
    return
  }
  ops.push({ op: 'replace', path, value: b })
}

function diff (a: unknown, b: unknown, path: string, ops: PatchOp[]): void {
  if (deepEqual(a, b)) return
  if (isObject(a) && isObject(b)) {
    for (const k of Object.keys(a)) {
      if (a[k] !== undefined && b[k] === undefined) ops.push({ op: 'remove', path: `${path}/${escapePointer(k)}` })
    }
    for (const [k, v] of Object.entries(b)) {
      if (v === undefined) continue
      const p = `${path}/${escapePointer(k)}`
      if (a[k] === undefined) ops.push({ op: 'add', path: p, value: v })
      else diff(a[k], v, p, ops)
    }
    return
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    diffArray(a, b, path, ops)
    return
  }
  ops.push({ op: 'replace', path, value: b })
}

/** The operations that turn `original` into `mutated`. */
export function createPatch (original: unknown, mutated: unknown): PatchOp[] {
  const ops: PatchOp[] = []
  diff(original, mutated, '', ops)
  return ops
}
