// Lint for `npm run check`: @eslint/js + typescript-eslint recommended (not
// type-checked, so it needs no build and stays fast), plus the layer rules:
// core/ imports neither agent/ nor injector/, agent/ and injector/ do not
// import each other; bin/ (and test/, bench/) may import anything.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'

// One layer rule: `names` are the top-level directories the files may not
// reach with a relative import (static import/export-from, `import()` and
// `typeof import()` alike).
function layer (files, names, why) {
  const re = `^(\\.\\./)+(${names.join('|')})(/|$)`
  const message = `${why} (layer rule, see eslint.config.js)`
  return {
    files,
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: re, message }] }],
      'no-restricted-syntax': ['error',
        { selector: `ImportExpression > Literal.source[value=/${re.replaceAll('/', '\\/')}/]`, message },
        { selector: `TSImportType Literal[value=/${re.replaceAll('/', '\\/')}/]`, message }
      ]
    }
  }
}

export default tseslint.config(
  {
    ignores: ['dist/**', 'node_modules/**', 'proto/gen/**', 'charts/**', 'clients/**', '**/*.gen.ts']
  },
  {
    files: ['agent/**/*.ts', 'core/**/*.ts', 'injector/**/*.ts', 'bin/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'scripts/*.mjs', 'scripts/*.d.mts', 'eslint.config.js'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: { globals: globals.node },
    rules: {
      // The code already marks its deliberate side-effect constructions (prom-client gauges) with disables for this.
      'no-new': 'error',
      // A leading underscore marks a parameter kept for the signature's sake (render's _envName).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }]
    }
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // Tests and benches poke at untyped Kubernetes/JSON shapes (~140 sites); product code stays any-free.
      '@typescript-eslint/no-explicit-any': 'off'
    }
  },
  layer(['core/**/*.ts'], ['agent', 'injector'], 'core/ is shared by both programs: it must not import agent/ or injector/'),
  layer(['agent/**/*.ts'], ['injector'], 'agent/ must not import injector/'),
  layer(['injector/**/*.ts'], ['agent'], 'injector/ must not import agent/')
)
