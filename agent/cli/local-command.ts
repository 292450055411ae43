// `sidekey local put NAME` (value from stdin), `rm NAME`, `list`.
import { Command } from 'commander'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { SidekeyError } from '../../core/errors.js'
import { QUIET_USAGE_ERRORS } from '../../core/error-answers.js'
import { pino } from 'pino'
import { createLogger } from '../logger.js'
import { openLocalStore } from '../providers/local.js'

async function readStdin (): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,252}$/

export async function main (argv: string[]): Promise<number> {
  const program = new Command('sidekey local')
    .description('manage the encrypted local store (key from SIDEKEY_LOCAL_KEY)')
    .option('--store <file>', 'store file', process.env.SIDEKEY_LOCAL_STORE ?? join(homedir(), '.config', 'sidekey', 'local.json'))
    .option('--dev', 'use the built-in development key when SIDEKEY_LOCAL_KEY is unset (never for real secrets)')
    .option('--max-bytes <n>', 'largest value accepted', '1048576')
    .exitOverride()
    .configureOutput(QUIET_USAGE_ERRORS)
  const open = () => {
    const o = program.opts<{ store: string, dev?: boolean }>()
    return openLocalStore({ type: 'local', path: o.store, keyEnv: 'SIDEKEY_LOCAL_KEY', dev: o.dev === true }, { logger: createLogger('warn', pino.destination({ dest: 2, sync: true })) }) // warnings on stderr: stdout is the command's output
  }
  const checkName = (name: string): void => {
    if (!NAME_RE.test(name)) throw new SidekeyError('SIDEKEY_E_CONFIG', `secret name "${name}" must be letters, digits, ".", "_", "-" or "/"`)
  }
  program.command('put <name>').description('store the value read from stdin as a new version').action(async (name: string) => {
    checkName(name)
    const value = await readStdin()
    const max = Number(program.opts<{ maxBytes: string }>().maxBytes)
    if (value.length > max) throw new SidekeyError('SIDEKEY_E_VALUE_TOO_LARGE', `the value is ${value.length} bytes, more than ${max}; store a smaller value or pass --max-bytes`)
    if (value.length === 0) throw new SidekeyError('SIDEKEY_E_CONFIG', 'the value on stdin is empty; pipe the value in, e.g. `printf %s "$KEY" | sidekey local put NAME`')
    const v = open().put(name, value)
    process.stdout.write(`${name} version ${v}\n`)
  })
  program.command('rm <name>').description('remove a secret and all its versions').action((name: string) => {
    checkName(name)
    if (!open().remove(name)) throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `no secret "${name}" in the local store; sidekey local list shows the names`)
    process.stdout.write(`${name} removed\n`)
  })
  program.command('list').description('names and versions, never values').option('--json', 'JSON output').action((o: { json?: boolean }) => {
    const items = open().list()
    if (o.json === true) process.stdout.write(JSON.stringify(items) + '\n')
    else for (const i of items) process.stdout.write(`${i.name}\tversion ${i.version}\t${i.updatedAt}\n`)
  })
  await program.parseAsync(argv, { from: 'user' })
  return 0
}
