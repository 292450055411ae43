#!/usr/bin/env node
// Rewrites the error table in README.md from core/errors.ts's catalogue
// (run after `npm run build`); `npm test` checks every code is documented.
import { readFileSync, writeFileSync } from 'node:fs'
const { ERRORS } = await import('../dist/core/errors.js')
const peer = (p) => p === undefined ? '' : Object.entries(p).map(([k, v]) => `; ${k === 'aws' ? 'AWS' : 'Vault'} drop-in ${v}`).join('')
const rows = Object.entries(ERRORS).map(([code, e]) => `| \`${code}\` (${e.status}, \`${e.grpc}\`${peer(e.peer)}) | ${e.doc} |`).join('\n')
const readme = readFileSync('README.md', 'utf8')
const start = readme.indexOf('| code | when |\n|---|---|\n')
if (start === -1) throw new Error('README.md has no error table header')
const head = start + '| code | when |\n|---|---|\n'.length
const end = readme.indexOf('\n\n', head)
writeFileSync('README.md', readme.slice(0, head) + rows + readme.slice(end === -1 ? readme.length : end))
