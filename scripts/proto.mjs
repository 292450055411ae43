#!/usr/bin/env node
// Generates the TypeScript types of proto/sidekey/v1 (committed in proto/gen),
// or with --check regenerates into a temp dir and fails when they drift.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'

const check = process.argv.includes('--check')
const out = check ? mkdtempSync(join(tmpdir(), 'sidekey-proto-')) : 'proto/gen'
execFileSync(process.execPath, ['node_modules/@grpc/proto-loader/build/bin/proto-loader-gen-types.js',
  '--longs=String', '--enums=String', '--defaults', '--oneofs', '--grpcLib=@grpc/grpc-js',
  '--importFileExtension=.js', `--outDir=${out}`, 'proto/sidekey/v1/secrets.proto'], { stdio: 'inherit' })

if (check) {
  const walk = (d) => readdirSync(d).flatMap((f) => statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)])
  const fresh = walk(out).map((f) => relative(out, f)).sort()
  const committed = walk('proto/gen').map((f) => relative('proto/gen', f)).sort()
  const drift = [...new Set([...fresh, ...committed])].filter((f) => {
    try { return readFileSync(join(out, f), 'utf8') !== readFileSync(join('proto/gen', f), 'utf8') } catch { return true }
  })
  rmSync(out, { recursive: true, force: true })
  if (drift.length > 0) {
    console.error(`proto/gen drifted from proto/sidekey/v1 (${drift.join(', ')}); run \`npm run proto:gen\` and commit`)
    process.exit(1)
  }
  console.log('proto/gen matches proto/sidekey/v1')
}
