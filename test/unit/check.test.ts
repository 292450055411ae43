// The layer rules of eslint.config.js (run by `npm run check`), exercised on
// in-memory snippets linted as if they sat in core/, agent/, injector/ or bin/:
// a rule that stops matching (a renamed directory, a changed import style)
// fails here instead of silently letting every import through.
import t, { type Test } from 'tap'
import { ESLint } from 'eslint'
import { fileURLToPath } from 'node:url'

const REPO = fileURLToPath(new URL('../../../', import.meta.url))

const eslint = new ESLint({ cwd: REPO })
const LAYER_RULES = new Set(['no-restricted-imports', 'no-restricted-syntax'])

async function layerErrors (tt: Test, file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${code}\n`, { filePath: `${REPO}${file}` })
  if (!result) throw new Error('eslint returned no result')
  tt.equal(result.fatalErrorCount, 0, `${file} parses`)
  return result.messages.filter((m) => m.ruleId !== null && LAYER_RULES.has(m.ruleId)).map((m) => m.message)
}

const forbidden: Array<[string, string, RegExp]> = [
  ['core/probe.ts', "import { createLogger } from '../agent/logger.js'\nexport { createLogger }", /core\/ .* must not import agent\/ or injector\//],
  ['core/probe.ts', "import type { Spec } from '../injector/spec.js'\nexport type { Spec }", /must not import agent\/ or injector\//],
  ['core/config/probe.ts', "export * from '../../injector/spec.js'", /must not import agent\/ or injector\//],
  ['core/config/probe.ts', "export const m = () => import('../../agent/logger.js')", /must not import agent\/ or injector\//],
  ['agent/probe.ts', "import { mutatePod } from '../injector/mutate.js'\nexport { mutatePod }", /agent\/ must not import injector\//],
  ['agent/providers/probe.ts', "export type M = typeof import('../../injector/mutate.js')", /agent\/ must not import injector\//],
  ['injector/probe.ts', "import { startAgent } from '../agent/agent.js'\nexport { startAgent }", /injector\/ must not import agent\//],
  ['injector/probe.ts', "export const m = async () => (await import('../agent/logger.js')).createLogger", /injector\/ must not import agent\//],
]
for (const [file, code, want] of forbidden) {
  t.test(`${file}: ${code.split('\n')[0]} is a layer violation`, async (t) => {
    const errors = await layerErrors(t, file, code)
    t.equal(errors.length, 1, errors.join('; '))
    t.match(errors[0], want)
  })
}

const allowed: Array<[string, string]> = [
  ['core/config/probe.ts', "import { SidekeyError } from '../errors.js'\nexport { SidekeyError }"],
  ['agent/probe.ts', "import { parseRef } from '../core/reference.js'\nexport { parseRef }"],
  ['agent/cli/probe.ts', "import { startAgent } from '../agent.js'\nexport { startAgent }"],
  ['agent/providers/probe.ts', "export const m = () => import('./env.js')"],
  ['injector/probe.ts', "import { SidekeyError } from '../core/errors.js'\nexport { SidekeyError }"],
  ['bin/probe.ts', "import { startAgent } from '../agent/agent.js'\nimport { mutatePod } from '../injector/mutate.js'\nexport { startAgent, mutatePod }"],
]
for (const [file, code] of allowed) {
  t.test(`${file}: ${code.split('\n')[0]} is allowed`, async (t) => {
    t.same(await layerErrors(t, file, code), [])
  })
}

t.test('an ordinary lint error is reported too (the linter runs at all)', async (t) => {
  const [result] = await eslint.lintText('const unused = 1\n', { filePath: `${REPO}agent/probe.ts` })
  t.same(result?.messages.map((m) => m.ruleId), ['@typescript-eslint/no-unused-vars'])
})
