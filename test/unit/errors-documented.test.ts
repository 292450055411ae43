// Every error code is listed in the README (as fastify checks its catalogue),
// and no surface answers with a status of its own: every HTTP status, gRPC
// status and code-in-text comes from core/errors.ts.
import t from 'tap'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { STATUS_CODES } from 'node:http'
import { join } from 'node:path'
import ts from 'typescript'
import { ERRORS, GRPC_STATUS_NAMES, SidekeyError } from '../../core/errors.js'

const readme = readFileSync('README.md', 'utf8')
for (const code of Object.keys(ERRORS)) {
  t.ok(readme.includes(`\`${code}\``), `${code} is documented in README.md`)
}
t.test('errors carry code, status, gRPC status and details, and serialise without a stack', async (t) => {
  const e = new SidekeyError('SIDEKEY_E_NOT_FOUND', 'x: missing', { ref: 'vault:x' })
  t.equal(e.status, 404)
  t.equal(e.grpc, 'NOT_FOUND')
  t.same(e.toJSON(), { code: 'SIDEKEY_E_NOT_FOUND', message: 'x: missing', details: { ref: 'vault:x' } })
  t.ok(Object.isFrozen(e.details))
})

t.test('every catalogue entry has an HTTP status, a gRPC status and a doc line', async (t) => {
  for (const [code, e] of Object.entries(ERRORS)) {
    t.ok(STATUS_CODES[e.status] !== undefined && e.status >= 400, `${code}: ${e.status} is an HTTP error status`)
    t.ok(GRPC_STATUS_NAMES.includes(e.grpc) && (e.grpc as string) !== 'OK', `${code}: ${e.grpc} is a gRPC error status`)
    t.ok(e.doc.length > 10, `${code} has a doc line`)
  }
})

// What the scan looks for outside core/errors.ts:
// - a number that is an HTTP error status (4xx/5xx), unless it is compared
//   with (a status read from an answer, not sent);
// - a gRPC status by name (`grpc.status.NOT_FOUND`, 'NOT_FOUND');
// - a hand-built error body (`{ code: 'SIDEKEY_E_...' }`);
// - a code written into message text (`'SIDEKEY_E_X: ...'`).
// agent/providers/ is left out: providers read backends' statuses, they answer nothing.
const ROOTS = ['agent', 'injector', 'bin', 'core']
const SKIP = new Set([join('core', 'errors.ts'), join('agent', 'providers')])
const COMPARE = new Set([ts.SyntaxKind.EqualsEqualsEqualsToken, ts.SyntaxKind.ExclamationEqualsEqualsToken, ts.SyntaxKind.EqualsEqualsToken, ts.SyntaxKind.ExclamationEqualsToken, ts.SyntaxKind.LessThanToken, ts.SyntaxKind.LessThanEqualsToken, ts.SyntaxKind.GreaterThanToken, ts.SyntaxKind.GreaterThanEqualsToken])
const GRPC_ERRORS = new Set<string>(GRPC_STATUS_NAMES.filter((n) => n !== 'OK'))

function sources (dir: string): string[] {
  if (SKIP.has(dir)) return []
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    if (SKIP.has(p)) return []
    if (statSync(p).isDirectory()) return sources(p)
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : []
  })
}

/** An object literal passed to a logger (`log.warn({ code, ... }, msg)`): a log line, not an answer. */
function isLogLine (o: ts.Node, sf: ts.SourceFile): boolean {
  const call = o.parent
  return call !== undefined && ts.isCallExpression(call) && /\.(trace|debug|info|warn|error|fatal)$/.test(call.expression.getText(sf))
}

/** Status literals and hand-made error answers in one source file, as `file:line: what`. */
export function strayStatuses (file: string, text: string): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true)
  // A gRPC status name is only one in a file that speaks gRPC ('ABORTED' is also an undici code).
  const speaksGrpc = text.includes('@grpc/grpc-js')
  const found: string[] = []
  const at = (n: ts.Node, what: string): void => { found.push(`${file}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}: ${what}`) }
  const visit = (n: ts.Node): void => {
    if (ts.isNumericLiteral(n)) {
      const v = Number(n.text)
      const p = n.parent
      const compared = ts.isBinaryExpression(p) && COMPARE.has(p.operatorToken.kind)
      if (v >= 400 && v <= 599 && STATUS_CODES[v] !== undefined && !compared) at(n, `status literal ${n.text}`)
    } else if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) || ts.isTemplateHead(n) || ts.isTemplateMiddle(n) || ts.isTemplateTail(n)) {
      if (speaksGrpc && GRPC_ERRORS.has(n.text)) at(n, `gRPC status name '${n.text}'`)
      if (/SIDEKEY_E_[A-Z_]+: /.test(n.text)) at(n, `code in message text: ${n.text.slice(0, 40)}`)
      if (/^SIDEKEY_E_/.test(n.text) && ts.isPropertyAssignment(n.parent) && n.parent.name.getText(sf) === 'code' && !isLogLine(n.parent.parent, sf)) at(n, `hand-built error body with code ${n.text}`)
    } else if (ts.isPropertyAccessExpression(n) && GRPC_ERRORS.has(n.name.text) && /(^|\.)(status|Status)$/.test(n.expression.getText(sf))) {
      at(n, `gRPC status ${n.getText(sf)}`)
    }
    ts.forEachChild(n, visit)
  }
  visit(sf)
  return found
}

t.test('the scan sees every kind of stray status it looks for', async (t) => {
  const sample = [
    'res.writeHead(405, {})', 'res.statusCode = 500', 'sendJson(res, 413, body)', 'const s = closing ? 503 : 200',
    'fail(grpc.status.NOT_FOUND, m)', "record(call, 'Get', 'UNAVAILABLE')", "x = { code: 'SIDEKEY_E_ADMISSION', message }",
    "write(`sidekey: SIDEKEY_E_NOT_FOUND: no secret ${n}`)", 'status: { code: 403, message }',
  ].join('\n') + "\nimport * as grpc from '@grpc/grpc-js'"
  t.equal(strayStatuses('sample.ts', sample).length, 9, strayStatuses('sample.ts', sample).join('\n'))
  t.same(strayStatuses('ok.ts', "if (res.status === 503) retry(); res.writeHead(200); port(443); const code = ERRORS[c].status; log.warn({ code: 'SIDEKEY_E_ON_CHANGE' }, 'x'); e = 'ABORTED'"), [], 'comparisons, successes, log lines and non-statuses pass')
})

t.test('no status literal lives outside the catalogue (agent/, injector/, bin/, core/)', async (t) => {
  const stray = ROOTS.flatMap(sources).flatMap((f) => strayStatuses(f, readFileSync(f, 'utf8')))
  t.same(stray, [], `answer through the surface's renderer with a catalogue code instead:\n${stray.join('\n')}`)
})
