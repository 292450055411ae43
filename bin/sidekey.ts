#!/usr/bin/env node
// One CLI, several programs. Each subcommand parses its own flags and loads
// only its own code, so `sidekey get` starts fast and the agent never loads
// the webhook.
import module from 'node:module'
import { SidekeyError } from '../core/errors.js'
import { reportCliError, usageError } from '../core/error-answers.js'
import { lowerTierUp, raiseTierUp, setAgentV8Flags } from '../agent/cli/v8-flags.js'

/** The built-ins loaded before the agent's V8 flags (see `builtins` below): the agent's. */
const AGENT_BUILTINS = ['node:os', 'node:crypto', 'node:http'] as const
/** `sidekey get`'s (the startup probe): commander's child_process and process, and node:http (its client). */
const GET_BUILTINS = ['node:child_process', 'node:process', 'node:http'] as const

// V8's compile cache (Node >= 22.1; the image runs 24, a host may run 20):
// code compiled once is reused by the next start. NODE_COMPILE_CACHE picks the
// directory (Node reads it itself); otherwise Node's default under the temp
// dir. A read-only or missing directory only means no cache, never an error.
;(module as { enableCompileCache?: () => unknown }).enableCompileCache?.()

// `agentV8`: the commands of the agent's container run with the agent's V8
// flags, set before their code loads (agent/cli/v8-flags.ts says why).
// `builtins`: Node's built-in modules the command's start loads anyway,
// loaded before those flags (and, in the image, with its tier-up flag put
// back to V8's default: run() below). Setting a V8 flag changes the flag
// hash V8 checks code caches against, so every built-in loaded while one is
// set misses the code cache Node ships for its own modules and is compiled
// from source. Loaded first, they come from that cache: for an agent with one
// Vault secret (Node 24) these accounted for 60 of its 161 built-ins, about
// 11% of its start-up CPU (it now loads 73: scripts/bundle.mjs says which it
// no longer does). Only modules every agent loads before or at its first
// publish (the refresher's hashes, the Vault client, the HTTP server), and
// those every `sidekey get` loads.
const commands: Record<string, { help: string, agentV8?: true, builtins?: readonly string[], run: () => Promise<(argv: string[]) => Promise<number>> }> = {
  agent: { help: 'run the in-pod agent (--config FILE or env SIDEKEY_CONFIG)', agentV8: true, builtins: AGENT_BUILTINS, run: async () => (await import('../agent/cli/agent-command.js')).main },
  get: { help: 'print a secret from the local endpoint (SIDEKEY_ADDR, SIDEKEY_TOKEN_FILE)', agentV8: true, builtins: GET_BUILTINS, run: async () => (await import('../agent/cli/get-command.js')).main },
  local: { help: 'manage the encrypted local store: put NAME (stdin), rm NAME, list', run: async () => (await import('../agent/cli/local-command.js')).main },
  injector: { help: 'run the mutating admission webhook', run: async () => (await import('../injector/cli.js')).injectorMain },
  inject: { help: 'offline: read pods/workloads (-f FILE|-), print them mutated', run: async () => (await import('../injector/cli.js')).injectMain },
}

function usage (): string {
  return ['usage: sidekey <command> [options]', '', ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(9)} ${c.help}`), '', 'sidekey <command> --help for its options'].join('\n')
}

async function run (): Promise<number> {
  const [name, ...rest] = process.argv.slice(2)
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n')
    return name === undefined ? 2 : 0
  }
  const cmd = commands[name]
  if (cmd === undefined) {
    const code = reportCliError(new SidekeyError('SIDEKEY_E_USAGE', `unknown command "${name.slice(0, 64)}"; the commands are ${Object.keys(commands).join(', ')}`))
    process.stderr.write(usage() + '\n')
    return code
  }
  // The image's tier-up flag (IMAGE_NODE_FLAGS) is for an agent's start and
  // idle time, and its startup probe's (`get`, short-lived, keeps it); the
  // webhook and the other commands run with V8's own. Lowered while the
  // built-ins load, so they come from Node's code cache (agent/cli/v8-flags.ts).
  const raised = lowerTierUp(cmd.agentV8 === true)
  for (const id of cmd.builtins ?? []) process.getBuiltinModule(id)
  if (cmd.agentV8 === true) {
    setAgentV8Flags()
    if (raised) raiseTierUp()
  }
  const main = await cmd.run()
  return await main(rest)
}

run().then((code) => {
  if (code !== 0) process.exitCode = code
}, (err: unknown) => {
  // A commander error (exitOverride): help is a success, anything else a usage error.
  const c = err as { code?: unknown, message?: unknown, exitCode?: unknown }
  if (typeof c.code === 'string' && c.code.startsWith('commander.') && typeof c.exitCode === 'number') {
    const usage = usageError({ code: c.code, message: String(c.message) }, `sidekey ${process.argv[2] ?? ''}`)
    process.exitCode = usage === undefined ? 0 : reportCliError(usage)
    return
  }
  process.exitCode = reportCliError(err)
})
