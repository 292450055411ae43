// Templates combine several references into one file (.env, JSON, PEM bundle).
// Handlebars is the engine; only the `secret` helper is allowed so a template
// cannot reach into prototypes or other data: `{{secret "vault:kv/data/x#k"}}`.
import { createRequire } from 'node:module'
import type HandlebarsNS from 'handlebars'
import { SidekeyError } from './errors.js'
import { parseRef, type SecretRef } from './reference.js'

export interface ParsedTemplate {
  readonly source: string
  readonly refs: readonly SecretRef[]
  render (values: ReadonlyMap<string, string>): string
}

type Node = hbs.AST.Node

/**
 * Encoders a template may wrap around one secret, for values placed inside a
 * URL or a query: `postgres://u:{{urlencode (secret "vault:db#password")}}@h/db`.
 */
const ENCODERS: ReadonlyMap<string, (v: string) => string> = new Map([
  ['urlencode', (v: string) => encodeURIComponent(v)],
])

// Loaded on first use: most agents bind plain references and never pay for it.
let hbsModule: typeof HandlebarsNS | undefined
function handlebars (): typeof HandlebarsNS {
  hbsModule ??= createRequire(import.meta.url)('handlebars') as typeof HandlebarsNS
  return hbsModule
}

function templateError (where: string, what: string): SidekeyError {
  return new SidekeyError('SIDEKEY_E_TEMPLATE', `${where}: ${what}; write references as {{secret "<store>:<path>#<key>"}}`, { field: where })
}

export function parseTemplate (source: string, where = 'template'): ParsedTemplate {
  let ast: hbs.AST.Program
  try {
    ast = handlebars().parse(source)
  } catch (err) {
    // Handlebars' parse message quotes the offending line; templates hold references, not values.
    throw templateError(where, `does not parse (${(err as Error).message.split('\n')[0] ?? 'syntax error'})`)
  }
  const refs = new Map<string, SecretRef>()
  const visitSecret = (m: hbs.AST.MustacheStatement | hbs.AST.SubExpression): void => {
    const p = m.path as hbs.AST.PathExpression
    if (p.type !== 'PathExpression' || p.original !== 'secret') {
      // Helper names are not secrets: a word of letters is named (unquoted, so the value-hiding
      // of quoted fragments leaves it); anything with digits or signs may be a pasted token.
      const found = (p as { original?: unknown }).original
      throw templateError(where, `only the secret helper is allowed, found ${typeof found === 'string' && /^[A-Za-z][A-Za-z_]{0,31}$/.test(found) ? `helper ${found}` : `a ${p.type}`} (${[...ENCODERS.keys()].join(' or ')} may wrap it)`)
    }
    const arg = m.params[0]
    if (m.params.length !== 1 || arg === undefined || arg.type !== 'StringLiteral') throw templateError(where, 'secret takes exactly one quoted reference')
    if (m.hash !== undefined && m.hash.pairs.length > 0) throw templateError(where, 'secret takes no options')
    const ref = parseRef((arg as hbs.AST.StringLiteral).value)
    refs.set(ref.raw, ref)
  }
  const visit = (node: Node): void => {
    switch (node.type) {
      case 'Program':
        for (const s of (node as hbs.AST.Program).body) visit(s)
        return
      case 'ContentStatement':
      case 'CommentStatement':
        return
      case 'MustacheStatement': {
        const m = node as hbs.AST.MustacheStatement
        const p = m.path as hbs.AST.PathExpression
        const name = p.type === 'PathExpression' ? p.original : undefined
        if (name !== undefined && ENCODERS.has(name)) {
          // {{urlencode (secret "<ref>")}}: one encoder around one secret.
          const inner = m.params[0]
          if (m.params.length !== 1 || inner === undefined || inner.type !== 'SubExpression') throw templateError(where, `${name} takes one (secret "<ref>"), e.g. {{${name} (secret "vault:kv/data/db#password")}}`)
          visitSecret(inner as hbs.AST.SubExpression)
          return
        }
        visitSecret(m)
        return
      }
      default:
        throw templateError(where, `${node.type} is not allowed (no blocks or partials)`)
    }
  }
  visit(ast)
  if (refs.size === 0) throw templateError(where, 'uses no secret')
  const compiled = handlebars().compile(source, { noEscape: true, strict: true, knownHelpersOnly: true, knownHelpers: { secret: true, ...Object.fromEntries([...ENCODERS.keys()].map((k) => [k, true])) } })
  return Object.freeze({
    source,
    refs: Object.freeze([...refs.values()]),
    render (values: ReadonlyMap<string, string>): string {
      return compiled({}, {
        helpers: {
          ...Object.fromEntries(ENCODERS),
          secret: (raw: string) => {
            const v = values.get(raw)
            if (v === undefined) throw new SidekeyError('SIDEKEY_E_NOT_READY', `${where}: reference ${raw} has no value yet`, { ref: raw })
            return v
          },
        },
        allowProtoPropertiesByDefault: false,
        allowProtoMethodsByDefault: false,
      })
    },
  })
}
