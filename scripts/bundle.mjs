// Bundles the compiled CLI (dist/bin/sidekey.js) into dist/bundle/: one entry
// file plus chunks that load only when used (each provider, the cloud SDKs,
// grpc-js, the webhook), so a start reads a few files instead of hundreds of
// modules from node_modules, and the image needs no node_modules at all.
//
// Four things the bundler cannot see on its own (or should not do as written):
// - `createRequire(import.meta.url)('x')`, synchronous loads on first use:
//   rewritten to `require('x')`, which esbuild bundles (evaluated on first
//   call, as before). Two of them, handlebars (templates) and yaml (format
//   yaml), are half a megabyte of code that most agents never run: each is a
//   CommonJS file of its own beside the chunks (vendor-<name>.cjs), read by
//   that `require` on first use, so a start parses none of it.
// - runtime files found through import.meta.url: the gRPC .proto
//   (agent/grpc-server.ts, '../../proto/...'). dist/bundle/ sits at the same
//   depth as dist/agent/, so it resolves to the same <root>/proto (/app/proto
//   in the image).
// - Node's built-in modules: an ESM `import` of one makes Node build its ESM
//   facade, which reads every export, lazy getters included. On Node 24
//   `node:http`'s WebSocket getter loads Node's own undici (about 50 ms of CPU)
//   and `node:crypto`'s webcrypto getter the Web Crypto classes. The bundle
//   takes built-ins through `require` instead, and reads each one's exports
//   from the module itself, a property only when the code uses it
//   (builtinView below, in place of esbuild's interop copy).
// - requires at a dependency's top for code Sidekey never runs (undici's
//   HTTP/2 client, pino's worker-thread transports): each moves into the
//   call that uses it (DEFERRED below; esbuild still bundles the module,
//   evaluated on first call).
//   Node 24 defines many exports of its built-ins as lazy properties that
//   load their module when read, and reading a property's descriptor reads
//   it: esbuild's interop object, which asks each export's descriptor for its
//   enumerability, loaded node:util's parseArgs, diff and setTraceSigInt
//   (node:worker_threads and its six modules) and node:fs's Dir and
//   SyncWriteStream at every start. The built-ins no longer go through it
//   (builtinView); for the CommonJS packages that still do, it asks
//   propertyIsEnumerable, which reads no value (INTEROP below).
// - the Azure SDK's HTTP runtime (@typespec/ts-http-runtime) asks
//   `typeof FormData` and `x instanceof ReadableStream` of every request and
//   answer. Those globals are Node's lazy getters: FormData loads Node's own
//   undici (fetch, WebSocket, ...) and ReadableStream the web streams, ~3 MiB
//   of an azure agent's resident memory (1 secret, Node 24) though it never
//   builds either. The checks ask the value's tag instead
//   (Object.prototype.toString: "[object FormData]"), which is true of the
//   same objects and reads no global.
// An ESM bundle has no `require`, `__filename` or `__dirname`; CommonJS
// dependencies use them, so each chunk starts with a banner defining them,
// from process.getBuiltinModule: an `import` of node:module, node:url and
// node:path would build their ESM facades, which read every export (node:module's
// SourceMap loads Node's source-map support). A chunk keeps only the lines of
// the banner its code uses (BANNER_LINES below): 7 of the 62 chunks use
// `require`, 2 `__filename` or `__dirname`, and each line is path and URL
// work at every chunk's load (createRequire, fileURLToPath).
//
// Whitespace and syntax are minified, names are not (stack traces keep them):
// V8 holds every loaded chunk's source in the heap for as long as the process
// runs, and the comments esbuild keeps otherwise carry non-ASCII characters
// that make a whole chunk a two-byte string (undici's: 1.5 MiB instead of
// 0.5). About 3 MiB less resident memory for the agent.
import { chmod, readFile, rm, writeFile } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { resolve } from 'node:path'
import { build } from 'esbuild'
import { BUILTIN_WRAPPERS, builtinView, deferRequires, escName, toEsmCalls, toEsmName } from './bundle-edits.mjs'
import { IMAGE_SHEBANG } from '../dist/agent/cli/v8-flags.js'

const LAZY_REQUIRE = /\bcreateRequire\(import\.meta\.url\)\((['"][^'"]+['"])\)/g

const VENDOR = ['handlebars', 'yaml']
const vendorFile = (name) => `./vendor-${name}.cjs`

const lazyRequire = {
  name: 'lazy-require',
  setup (b) {
    b.onLoad({ filter: /[\\/]dist[\\/].*\.js$/, namespace: 'file' }, async (args) => {
      const src = await readFile(args.path, 'utf8')
      if (!src.includes('createRequire(import.meta.url)')) return undefined
      const contents = src.replace(LAZY_REQUIRE, (_, q) => VENDOR.includes(q.slice(1, -1)) ? `require(${JSON.stringify(vendorFile(q.slice(1, -1)))})` : `require(${q})`)
      return { contents, loader: 'js' }
    })
    // Resolved at run time, from the chunk's own directory (the banner's `require`).
    b.onResolve({ filter: /^\.\/vendor-[a-z-]+\.cjs$/ }, (args) => ({ path: args.path, external: true }))
  },
}

/**
 * Requires moved from a module's top into the call that uses them, each
 * rewritten in its file as [file, [text, replacement]..., { name: uses }]. The
 * module is still bundled, and evaluated on the first call. A dependency whose
 * file no longer has a text fails the build instead of loading that module
 * again unnoticed. The last element counts each deferred name's uses after
 * the edits (usesOf): the name now holds a function or getters where the
 * module had the value itself, so a newer version that uses it once more
 * (`isMainThread` read as a boolean elsewhere, `assert.ok`, `instanceof
 * ThreadStream`) fails the build too instead of getting a function.
 */
const DEFERRED = [
  // undici's HTTP/2 client: undici's Client requires it at load, and it loads
  // `node:http2` and with it `node:tls` (about 15 ms of CPU at every agent
  // start, Node 24). Sidekey never enables allowH2, so no connection
  // negotiates h2 and the code never runs.
  [/[\\/]node_modules[\\/]undici[\\/]lib[\\/]dispatcher[\\/]client\.js$/, [
    ["const connectH2 = require('./client-h2.js')", "const connectH2 = (client, socket) => require('./client-h2.js')(client, socket)"],
  ], { connectH2: 2 }],
  // pino's worker-thread transports (thread-stream, with node:worker_threads
  // and node:assert) and the main-thread check of an asynchronous
  // destination: the agent's two loggers write synchronously to stdout
  // (agent/logger.ts), so neither runs. With sonic-boom's assert (one check of
  // an fd-less stream), three of Node's modules and their eleven internal ones
  // that every agent loaded at start: about 1 MiB of resident memory (Node 24).
  [/[\\/]node_modules[\\/]pino[\\/]lib[\\/]tools\.js$/, [
    ["const { isMainThread } = require('worker_threads')", "const isMainThread = () => require('worker_threads').isMainThread"],
    ['if (!opts.sync && isMainThread) {', 'if (!opts.sync && isMainThread()) {'],
  ], { isMainThread: 2 }],
  [/[\\/]node_modules[\\/]pino[\\/]lib[\\/]transport\.js$/, [
    ["const ThreadStream = require('thread-stream')", "const ThreadStream = function (opts) { return new (require('thread-stream'))(opts) }"],
  ], { ThreadStream: 2 }],
  [/[\\/]node_modules[\\/]sonic-boom[\\/]index\.js$/, [
    ["const assert = require('assert')", "const assert = (...args) => require('assert')(...args)"],
  ], { assert: 2 }],
  // The Azure SDK's HTTP runtime (@typespec/ts-http-runtime): its proxy
  // policy's two agents (https-proxy-agent, http-proxy-agent, with
  // agent-base, debug, supports-color and Node's assert, tty and tls), made
  // only when the environment names a proxy, and zlib, only for an answer
  // that came gzip- or deflate-encoded. The azure agent at 1 secret loaded all
  // of them at start (Node 24, bench/store-memory).
  [/[\\/]node_modules[\\/]@typespec[\\/]ts-http-runtime[\\/]dist[\\/]esm[\\/]policies[\\/]proxyPolicy\.js$/, [
    ['import { HttpsProxyAgent } from "https-proxy-agent";\n', 'const HttpsProxyAgent = function (...args) { return new (require("https-proxy-agent").HttpsProxyAgent)(...args); };\n'],
    ['import { HttpProxyAgent } from "http-proxy-agent";\n', 'const HttpProxyAgent = function (...args) { return new (require("http-proxy-agent").HttpProxyAgent)(...args); };\n'],
  ], { HttpsProxyAgent: 2, HttpProxyAgent: 2 }],
  [/[\\/]node_modules[\\/]@typespec[\\/]ts-http-runtime[\\/]dist[\\/]esm[\\/]nodeHttpClient\.js$/, [
    ['import zlib from "node:zlib";\n', 'const zlib = { createGunzip: (...args) => require("node:zlib").createGunzip(...args), createInflate: (...args) => require("node:zlib").createInflate(...args) };\n'],
  ], { zlib: 3 }],
  // Each request's x-ms-client-request-id came from globalThis.crypto, whose
  // getter loads the Web Crypto classes: node:crypto's randomUUID is the
  // function Web Crypto's calls (node:crypto is loaded).
  [/[\\/]node_modules[\\/]@typespec[\\/]ts-http-runtime[\\/]dist[\\/]esm[\\/]util[\\/]uuidUtils\.js$/, [
    ['    return crypto.randomUUID();\n', '    return require("node:crypto").randomUUID();\n'],
  ], { crypto: 0 }],
]

// The aws provider's SDK (agent/aws-sdk.ts and all it imports): one
// ES module of its own, built without splitting, that the provider imports on
// its first client. Split with the rest, it was 25 chunks and 145 imports
// between them for the loader to resolve, enough calls to make Node's own
// path and URL functions hot: V8 compiled them with Maglev and TurboFan, whose
// code (several MiB of the node binary) then stays resident.
const AWS_SDK = { entry: 'dist/agent/aws-sdk.js', file: './vendor-aws.js' }

/** An import specifier for one of Sidekey's compiled modules (dist/...), for edits that make a dependency call it. */
const ownModule = (path) => JSON.stringify(resolve('dist', path))
/** The agent's promisified node:fs callbacks (agent/fs-async.ts), for edits that replace node:fs/promises. */
const FS_ASYNC = ownModule('agent/fs-async.js')

/**
 * The same for vendor-aws.js: the SDK's NodeHttpHandler loads node:https (and
 * with it node:tls) when it loads, and makes its https Agent when it makes its
 * config, also for an http:// endpoint (a local Secrets Manager, moto): about
 * 1.6 MiB of the agent's resident memory. Here node:https loads on first use
 * and the Agent is made the first time the config's httpsAgent is read (an
 * https request): the same Agent, options, externalAgent and destroy as
 * before (an https.Agent, the one `instanceof` the check dropped, has destroy).
 */
const AWS_SDK_DEFERRED = [
  // Four more of Node's modules the SDK loads when it loads, for code an
  // agent's GetSecretValue and DescribeSecret never run or run without them
  // (Node 24, 1 secret, moto; each checked with bench/store-memory):
  // - node:zlib, for zlib.crc32: only event streams (EventStreamCodec) make a
  //   Crc32Node, and Secrets Manager has none. The class is chosen by the
  //   first `new Crc32Node()`, from the same test of zlib.crc32.
  [/[\\/]node_modules[\\/]@smithy[\\/]core[\\/]dist-es[\\/]submodules[\\/]checksum[\\/]crc32[\\/]Crc32Node\.js$/, [
    ['import * as zlib from "node:zlib";\n', ''],
    ['const zlibCrc32 = typeof zlib.crc32 === "function" ? zlib.crc32 : undefined;\nexport const Crc32Node = zlibCrc32 ? buildNativeClass(zlibCrc32) : Crc32Js;\n', 'let Crc32Chosen;\nexport const Crc32Node = function Crc32Node() {\n    Crc32Chosen ??= (() => { const zlib = require("node:zlib"); return typeof zlib.crc32 === "function" ? buildNativeClass(zlib.crc32) : Crc32Js; })();\n    return new Crc32Chosen();\n};\n'],
  ], { Crc32Node: 3 }],
  // - the Web Crypto classes (globalThis.crypto's getter), read at load for
  //   crypto.randomUUID (each request's amz-sdk-invocation-id): node:crypto's
  //   randomUUID is the function Web Crypto's calls, and node:crypto is loaded.
  [/[\\/]node_modules[\\/]@smithy[\\/]core[\\/]dist-es[\\/]submodules[\\/]serde[\\/]uuid[\\/]v4\.js$/, [
    ['    if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") {\n        return () => crypto.randomUUID();\n    }\n', '    const { randomUUID } = require("node:crypto");\n    if (typeof randomUUID === "function") {\n        return () => randomUUID();\n    }\n'],
  ], { crypto: 0 }],
  // - the web streams (globalThis.ReadableStream's getter), read by the
  //   check of every answer's body (an http.IncomingMessage): the check asks
  //   the value's tag instead, which is true of the same objects (as for the
  //   Azure SDK, WEB_GLOBAL_CHECK below).
  [/[\\/]node_modules[\\/]@smithy[\\/]core[\\/]dist-es[\\/]submodules[\\/]serde[\\/]util-stream[\\/]stream-type-check\.js$/, [
    ['export const isReadableStream = (stream) => typeof ReadableStream === "function" &&\n    (stream?.constructor?.name === ReadableStream.name || stream instanceof ReadableStream);\n', 'export const isReadableStream = (stream) => stream?.constructor?.name === "ReadableStream" || Object.prototype.toString.call(stream) === "[object ReadableStream]";\n'],
  ], { ReadableStream: 1 }],
  // - node:fs/promises (and the eight modules it loads, agent/fs-async.ts),
  //   for the shared config files' readFile: node:fs's callback readFile,
  //   promisified (agent/fs-async.ts, as the agent's own reads), is the same read.
  [/[\\/]node_modules[\\/]@smithy[\\/]core[\\/]dist-es[\\/]submodules[\\/]config[\\/]shared-ini-file-loader[\\/]readFile\.js$/, [
    ['import { readFile as fsReadFile } from "node:fs/promises";\n', `import { readFile as fsReadFile } from ${FS_ASYNC};\n`],
  ], { fsReadFile: 2 }],
  [/[\\/]node_modules[\\/]@smithy[\\/]core[\\/]dist-es[\\/]submodules[\\/]config[\\/]shared-ini-file-loader[\\/]getSSOTokenFromFile\.js$/, [
    ['import { readFile } from "node:fs/promises";\n', `import { readFile } from ${FS_ASYNC};\n`],
  ], { readFile: 2 }],
  // Not a module: the signature's date. SigV4 stamps every request with
  // toISOString, and on Node 24 that makes V8 ask ICU for the local time
  // zone's display name (core/utc-dates.ts): ICU's zone name tables, about
  // 1 MiB, stay resident. The same string from the UTC fields.
  [/[\\/]node_modules[\\/]@smithy[\\/]signature-v4[\\/]dist-es[\\/]utilDate\.js$/, [
    ['export const iso8601 = (time) => toDate(time)\n    .toISOString()\n', `import { isoTime } from ${ownModule('core/utc-dates.js')};\nexport const iso8601 = (time) => isoTime(toDate(time).getTime())\n`],
  ], { isoTime: 2 }],
  [/[\\/]node_modules[\\/]@smithy[\\/]node-http-handler[\\/]dist-es[\\/]node-https\.js$/, [
    ['import node_https from "node:https";', 'let https;\nconst node_https = { get Agent () { return (https ??= require("node:https")).Agent }, get request () { return (https ??= require("node:https")).request } };'],
  ]],
  [/[\\/]node_modules[\\/]@smithy[\\/]node-http-handler[\\/]dist-es[\\/]node-http-handler\.js$/, [
    ['        this.config?.httpsAgent?.destroy();\n', '        if (this.config !== undefined && Object.getOwnPropertyDescriptor(this.config, "httpsAgent")?.get !== undefined) this.httpsAgentMade?.destroy();\n        else this.config?.httpsAgent?.destroy();\n'],
    ['        let httpAgentPromise;\n        return {\n', '        let httpAgentPromise;\n        const handler = this;\n        if (typeof httpsAgent?.destroy === "function") {\n            this.externalAgent = true;\n            this.httpsAgentMade = httpsAgent;\n        }\n        return {\n'],
    ['            httpsAgent: (() => {\n                if (httpsAgent instanceof node_https.Agent || typeof httpsAgent?.destroy === "function") {\n                    this.externalAgent = true;\n                    return httpsAgent;\n                }\n                return new node_https.Agent({ keepAlive, maxSockets, ...httpsAgent });\n            })(),\n', '            get httpsAgent() {\n                return (handler.httpsAgentMade ??= new node_https.Agent({ keepAlive, maxSockets, ...httpsAgent }));\n            },\n'],
 ], { node_https: 4 }],
]

const awsSdkApart = {
  name: 'aws-sdk-apart',
  setup (b) {
    b.onResolve({ filter: /^\.\.\/aws-sdk\.js$/ }, (args) => /[\\/]dist[\\/]agent[\\/]providers$/.test(args.resolveDir) ? { path: AWS_SDK.file, external: true } : undefined)
  },
}

// `typeof G !== "undefined" && x instanceof G` and `x instanceof G` for the lazy web globals, in the Azure SDK's HTTP runtime.
const WEB_GLOBAL_CHECK = /(?:typeof (FormData|File|ReadableStream) !== "undefined" && )?([A-Za-z_$][\w$.]*) instanceof (FormData|File|ReadableStream)\b/g
const webGlobalsByTag = {
  name: 'web-globals-by-tag',
  setup (b) {
    const seen = new Set()
    b.onLoad({ filter: /[\\/]node_modules[\\/]@typespec[\\/]ts-http-runtime[\\/]dist[\\/]esm[\\/].*\.js$/ }, async (args) => {
      const src = await readFile(args.path, 'utf8')
      const contents = src.replace(WEB_GLOBAL_CHECK, (all, guard, x, g) => {
        if (guard !== undefined && guard !== g) return all
        seen.add(args.path.replace(/.*[\\/]esm[\\/]/, ''))
        return `(Object.prototype.toString.call(${x}) === "[object ${g}]")`
      })
      return contents === src ? undefined : { contents, loader: 'js' }
    })
    // A newer runtime whose checks moved fails the build instead of loading Node's undici again unnoticed.
    b.onEnd(() => {
      for (const f of ['formData.js', 'util/typeGuards-node.js']) {
        if (![...seen].some((p) => p.replace(/\\/g, '/') === f)) throw new Error(`@typespec/ts-http-runtime: no FormData/ReadableStream check found in ${f}; check scripts/bundle.mjs against this version`)
      }
    })
  },
}

const builtinsByRequire = {
  name: 'builtins-by-require',
  setup (b) {
    const builtin = new Set(builtinModules)
    b.onResolve({ filter: /^[a-z0-9_:/]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, '')
      if (!builtin.has(name)) return undefined
      if (args.kind === 'require-call') return { path: args.path, external: true }
      // One wrapper per importing file, so it sits in that file's chunk: a
      // wrapper shared by several would get a chunk file of its own.
      return { path: `${args.importer} -> ${args.path}`, namespace: 'builtin', pluginData: args.path }
    })
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.pluginData)})`, loader: 'js' }))
  },
}

/** The banner's lines, each with the names whose use needs it. */
const BANNER_LINES = [
  ["const require = process.getBuiltinModule('node:module').createRequire(import.meta.url)", ['require']],
  ["const __filename = process.getBuiltinModule('node:url').fileURLToPath(import.meta.url)", ['__filename', '__dirname']],
  ["const __dirname = process.getBuiltinModule('node:path').dirname(__filename)", ['__dirname']],
]
const banner = { js: BANNER_LINES.map(([line]) => line).join('\n') }

/** Whether minified code uses the binding `name`: the name as a token of its own, not a property (`.name`, `?.name`; a spread, `...name`, is a use). */
const usesName = (code, name) => new RegExp(`(?<![\\w$#])(?<![^.]\\.)(?<!^\\.)${name.replace(/\$/g, '\\$')}(?![\\w$])`).test(code)

/**
 * Drops the banner's lines the chunk's code does not use. A name is kept
 * whenever it appears as a token (a string or a shorthand with that text keeps
 * it too: a line too many, never one too few).
 */
function pruneBanner (src, file) {
  const text = banner.js + '\n'
  const at = src.indexOf(text)
  if (at === -1) throw new Error(`scripts/bundle.mjs: ${file} does not carry the banner: check pruneBanner against this esbuild`)
  const code = src.slice(at + text.length)
  const kept = BANNER_LINES.filter(([, users]) => users.some((n) => usesName(code, n))).map(([line]) => line + '\n')
  return src.slice(0, at) + kept.join('') + code
}

/** What the agent's bundle and the vendor files share. */
const common = {
  outdir: 'dist/bundle',
  bundle: true,
  platform: 'node',
  target: 'node20',
  legalComments: 'none',
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
}

/** The agent's ES module builds (its chunks, vendor-aws.js). */
const esm = {
  ...common,
  format: 'esm',
  // Node's ESM loader prefers the `module` entry of packages that have one.
  mainFields: ['module', 'main'],
  banner,
  metafile: true,
}

await rm('dist/bundle', { recursive: true, force: true })
const result = await build({
  ...esm,
  entryPoints: { sidekey: 'dist/bin/sidekey.js' },
  splitting: true,
  chunkNames: '[name]-[hash]',
  // `open` (start a browser) is only @azure/identity's interactive browser
  // sign-in, which no Sidekey config selects. Bundled, its chunk could not
  // even load: its own top-level `const __dirname` clashes with the banner's
  // (a SyntaxError). Left out, that import finds no module in the image.
  external: ['open'],
  plugins: [lazyRequire, deferRequires(DEFERRED), webGlobalsByTag, builtinsByRequire, awsSdkApart],
})
// vendor-aws.js with its local names minified: V8 keeps a loaded file's
// source for as long as the process runs, and the SDK's long local names
// (550 KB of source, 330 KB minified) also sit in its scope infos. keepNames
// gives every function and class its own name back (`.name`, stack traces):
// the SDK's errors, commands and clients read the same. About 0.4 MiB of the
// aws agent's resident memory at 1 secret (Node 24, moto). Sidekey's own
// chunks keep their names: minified, they were no smaller resident (the
// names keepNames puts back cost what the shorter source saved).
const awsSdk = await build({
  ...esm,
  minifyIdentifiers: true,
  keepNames: true,
  entryPoints: { [AWS_SDK.file.slice(2, -3)]: AWS_SDK.entry },
  plugins: [deferRequires(AWS_SDK_DEFERRED), builtinsByRequire],
})
await build({
  ...common,
  entryPoints: Object.fromEntries(VENDOR.map((name) => [vendorFile(name).slice(2, -4), name])),
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
})
// esbuild's runtime (in the first chunk, and in vendor-aws.js) copies a CommonJS module's exports
// onto the object an `import` sees, each as a getter, and reads each export's
// descriptor for its enumerability; on Node 24 that loaded every lazy export of
// a built-in (see the header). The built-ins now skip the copy (builtinView
// below), the CommonJS packages (pino, ...) keep it, and a lazy property of
// theirs would be read the same way. propertyIsEnumerable gives the same answer for
// an own property without reading it. An esbuild that writes this otherwise
// fails the build. The chunks have `enumerable:!(desc=__getOwnPropDesc(from,key))||desc.enumerable`,
// vendor-aws.js the same with minified names (`enumerable:!(o=QI(e,s))||o.enumerable`).
const INTEROP = [/enumerable:!\(([\w$]+)=([\w$]+)\(([\w$]+),([\w$]+)\)\)\|\|\1\.enumerable/g, 'enumerable:Object.prototype.propertyIsEnumerable.call($3,$4)']
for (const [what, r] of [['the chunks', result], ['vendor-aws.js', awsSdk]]) {
  let interop = 0
  for (const file of Object.keys(r.metafile.outputs).filter((f) => f.endsWith('.js'))) {
    const src = await readFile(file, 'utf8')
    const n = src.match(INTEROP[0])?.length ?? 0
    interop += n
    await writeFile(file, pruneBanner(n === 0 ? src : src.replace(INTEROP[0], INTEROP[1]), file))
  }
  if (interop !== 1) throw new Error(`scripts/bundle.mjs: esbuild's __copyProps was found ${interop} times in ${what}, not once: check INTEROP against this esbuild`)
}
// A built-in taken through `require` (builtinsByRequire) is imported through
// esbuild's __toESM, which copies each of the module's exports onto a new
// object as a getter: over a hundred imports in the chunks and a few dozen in
// vendor-aws.js, node:fs's ~100 exports, node:crypto's ~80, ... thousands of
// closures made at every start for the few names the code reads, and a getter
// call at each read. Each import reads the module itself instead, through an
// object whose prototype it is, with the `default` __toESM gives it: the same
// values, read when the code reads them (a lazy export still loads on first
// use). Its keys, own properties and writes differ from the copy's (only
// `default` is its own; a write would land on it instead of throwing), and
// a direct method call would run with it as `this`: the build fails unless
// every use of a view is a member read, `(0,view.name)(...)`, `new
// view.name(...)` or `view.default...` (what esbuild writes for named and
// default imports), and unless every built-in the metafile lists went through
// it. The wrappers sit in the file of the code that imports them
// (scripts/bundle-edits.mjs: builtinView, BUILTIN_WRAPPERS, toEsmName).
/**
 * Throws unless every use of the view bound to `name` in `src` is one the view answers as the copy did
 * (see above); `code` is `src` with its quoted strings blanked (a view named `fs` also appears in "node:fs").
 */
function checkViewUses (src, code, name, file) {
  for (const m of code.matchAll(new RegExp(`(?<![\\w$.])${escName(name)}(?![\\w$])`, 'g'))) {
    const at = m.index
    const after = src.slice(at + name.length, at + name.length + 2)
    const call = /^\.([\w$]+)\(/.exec(src.slice(at + name.length, at + name.length + 200))
    const ok = after[0] === '.'
      ? call === null || call[1] === 'default' || src.slice(at - 3, at) === '(0,' || src.slice(at - 4, at) === 'new '
      : (after[0] === '=' && after[1] !== '=' && after[1] !== '>') || /\bvar [\w$,]*$/.test(src.slice(Math.max(0, at - 300), at))
    if (!ok) throw new Error(`scripts/bundle.mjs: ${file} uses the built-in view ${name} as "${src.slice(Math.max(0, at - 20), at + name.length + 20)}", which it may not answer as esbuild's copy did: check builtinView against this code`)
  }
}
/** Rewrites the built-in imports of one build's outputs; how many. */
async function builtinViews (r, wrapperRe, minified) {
  let n = 0
  for (const [file, { inputs }] of Object.entries(r.metafile.outputs).filter(([f]) => f.endsWith('.js'))) {
    const src = await readFile(file, 'utf8')
    const wrappers = new Set([...src.matchAll(wrapperRe)].map((m) => m[1]))
    const listed = Object.keys(inputs).filter((k) => k.startsWith('builtin:')).length
    if (wrappers.size !== listed) throw new Error(`scripts/bundle.mjs: ${file} holds ${listed} built-in wrappers (its metafile inputs) but BUILTIN_WRAPPERS finds ${wrappers.size}: check it against this esbuild`)
    if (wrappers.size === 0) continue
    const toEsm = toEsmName(src, minified, file)
    // Only a binding's value (`x=__toESM(w(),1)`) or a dynamic import's (`.then(()=>__toESM(w()))`, which the
    // SDK destructures): any other site (a re-export's __reExport copies own keys) is left and fails below.
    const views = new Set()
    const out = src.replace(new RegExp(`(?:([\\w$]+)=|\\(\\)=>)${escName(toEsm)}\\(([\\w$]+)\\(\\)(?:,1)?\\)`, 'g'), (all, binding, w) => {
      if (!wrappers.has(w)) return all
      n++
      if (binding === undefined) return `()=>${builtinView(`${w}()`)}`
      views.add(binding)
      return `${binding}=${builtinView(`${w}()`)}`
    })
    const left = [...toEsmCalls(out, toEsm)].filter((w) => wrappers.has(w))
    if (left.length > 0) throw new Error(`scripts/bundle.mjs: ${file} takes the built-in wrappers ${left.join(', ')} through __toESM where they are not a binding's value: check builtinView against this code`)
    const code = out.replace(/"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/g, (q) => ' '.repeat(q.length))
    for (const v of views) checkViewUses(out, code, v, file)
    await writeFile(file, out)
  }
  return n
}
const inChunks = await builtinViews(result, BUILTIN_WRAPPERS.chunks, false)
const inAwsSdk = await builtinViews(awsSdk, BUILTIN_WRAPPERS.minified, true)
if (inChunks === 0 || inAwsSdk === 0) {
  throw new Error('scripts/bundle.mjs: no import of a built-in through __toESM found in the chunks or in vendor-aws.js: check BUILTIN_WRAPPERS against this esbuild')
}
// Crc32Node (also exported as Crc32) is a function that makes its class on
// first use (AWS_SDK_DEFERRED); its file's own uses are counted there, and no
// other module of the SDK may treat it as the class.
// Checked in the SDK's own files (vendor-aws.js's names are minified).
{
  const sdkFiles = Object.keys(awsSdk.metafile.inputs).filter((f) => !f.startsWith('builtin:') && /(?:^|[\\/])node_modules[\\/]/.test(f) && !/[\\/]Crc32Node\.js$/.test(f))
  if (sdkFiles.length < 100) throw new Error(`scripts/bundle.mjs: only ${sdkFiles.length} of vendor-aws.js's inputs are under node_modules: check the Crc32 guard's filter against this layout`)
  for (const input of sdkFiles) {
    const asClass = /(?:instanceof|extends)\s+Crc32(?:Node)?\b|\bCrc32(?:Node)?\.prototype\b/.exec(await readFile(input, 'utf8'))
    if (asClass !== null) throw new Error(`scripts/bundle.mjs: ${input} uses Crc32 as a class ("${asClass[0]}"), which the Crc32Node edit makes a function: check AWS_SDK_DEFERRED against this SDK`)
  }
}
// The chunks are ES modules whatever package.json sits above them (the image copies none).
await writeFile('dist/bundle/package.json', '{ "type": "module" }\n')
// The image runs the bundle as `sidekey` through its first line, which gives
// Node the image's V8 flags (agent/cli/v8-flags.ts says why).
{
  const entry = await readFile('dist/bundle/sidekey.js', 'utf8')
  if (!entry.startsWith('#!/usr/bin/env node\n')) throw new Error('scripts/bundle.mjs: dist/bundle/sidekey.js does not start with "#!/usr/bin/env node": check esbuild\'s hashbang against bin/sidekey.ts')
  await writeFile('dist/bundle/sidekey.js', IMAGE_SHEBANG + entry.slice(entry.indexOf('\n')))
}
await chmod('dist/bundle/sidekey.js', 0o755)
if (process.argv.includes('--meta')) console.log(JSON.stringify(result.metafile))
