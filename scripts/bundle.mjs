// Bundles the compiled CLI (dist/bin/sidekey.js) into dist/bundle/: one entry
// file plus chunks that load only when used (each provider, the cloud SDKs,
// grpc-js, the webhook), so a start reads a few files instead of hundreds of
// modules from node_modules, and the image needs no node_modules at all.
//
// Two things the bundler cannot see on its own:
// - `createRequire(import.meta.url)('x')`, the lazy synchronous loads of
//   handlebars, yaml and node-vault: rewritten to `require('x')`, which esbuild
//   bundles (evaluated on first call, as before).
// - runtime files found through import.meta.url: the gRPC .proto
//   (agent/grpc-server.ts, '../../proto/...'). dist/bundle/ sits at the same
//   depth as dist/agent/, so it resolves to the same <root>/proto (/app/proto
//   in the image).
// An ESM bundle has no `require`, `__filename` or `__dirname`; CommonJS
// dependencies use them, so each chunk starts with a banner defining them.
//
// Whitespace and syntax are minified, names are not (stack traces keep them):
// V8 holds every loaded chunk's source in the heap for as long as the process
// runs, and the comments esbuild keeps otherwise carry non-ASCII characters
// that make a whole chunk a two-byte string (undici's: 1.5 MiB instead of
// 0.5). About 3 MiB less resident memory for the agent.
import { builtinModules } from 'node:module'
import { chmod, readFile, rm, writeFile } from 'node:fs/promises'
import { build } from 'esbuild'

const LAZY_REQUIRE = /\bcreateRequire\(import\.meta\.url\)\((['"][^'"]+['"])\)/g

const lazyRequire = {
  name: 'lazy-require',
  setup (b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, async (args) => {
      const src = await readFile(args.path, 'utf8')
      if (!src.includes('createRequire(import.meta.url)')) return undefined
      return { contents: src.replace(LAZY_REQUIRE, 'require($1)'), loader: 'js' }
    })
  },
}

// `import { x } from 'node:http'` in an ES module makes Node build the whole
// namespace of the built-in, which runs every lazy getter on it: node:http's
// WebSocket, CloseEvent and MessageEvent load Node's internal undici, crypto's
// webcrypto, util's and fs's lazy parts load theirs. A require() touches only
// the properties the code reads. So every static import of a built-in becomes
// a require() of it (the chunk's banner defines `require`), evaluated where
// the import was. Node 24, agent with the file store: 76 modules and about
// 3 MiB less resident memory.
const BUILTIN = new RegExp(`^(node:)?(${builtinModules.map((m) => m.replace(/[/]/g, '\\/')).join('|')})$`)
const builtinsByRequire = {
  name: 'builtins-by-require',
  setup (b) {
    b.onResolve({ filter: BUILTIN }, (args) => args.kind === 'import-statement' ? { path: args.path, namespace: 'builtin-by-require' } : undefined)
    b.onLoad({ filter: /.*/, namespace: 'builtin-by-require' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)})`, loader: 'js' }))
  },
}

await rm('dist/bundle', { recursive: true, force: true })
const result = await build({
  entryPoints: { sidekey: 'dist/bin/sidekey.js' },
  outdir: 'dist/bundle',
  bundle: true,
  platform: 'node',
  format: 'esm',
  splitting: true,
  target: 'node20',
  chunkNames: '[name]-[hash]',
  // Node's ESM loader prefers the `module` entry of packages that have one.
  mainFields: ['module', 'main'],
  banner: {
    js: [
      "import { createRequire as __skCreateRequire } from 'node:module'",
      "import { fileURLToPath as __skFileURLToPath } from 'node:url'",
      "import { dirname as __skDirname } from 'node:path'",
      'const require = __skCreateRequire(import.meta.url)',
      'const __filename = __skFileURLToPath(import.meta.url)',
      'const __dirname = __skDirname(__filename)',
    ].join('\n'),
  },
  legalComments: 'none',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  metafile: true,
  plugins: [lazyRequire, builtinsByRequire],
})
// The chunks are ES modules whatever package.json sits above them (the image copies none).
await writeFile('dist/bundle/package.json', '{ "type": "module" }\n')
await chmod('dist/bundle/sidekey.js', 0o755)
if (process.argv.includes('--meta')) console.log(JSON.stringify(result.metafile))
