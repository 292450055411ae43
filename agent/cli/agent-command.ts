// `sidekey agent --config FILE` (or env SIDEKEY_CONFIG): run the agent until
// SIGTERM; with exitAfterSync (init-only), write once and exit.
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { loadConfig, loadConfigFile, parseJson, type AgentConfig } from '../../core/config/load.js'
import { SidekeyError } from '../../core/errors.js'
import { createAuditLogger, createLogger } from '../logger.js'
import { startAgent } from '../agent.js'
import { restoreTierUp } from './v8-flags.js'
import { DEFAULT_TERMINATION_MESSAGE_PATH, awaitInitialSync, writeTerminationMessage } from '../init-sync.js'

const HELP = `Usage: sidekey agent [options]

run the in-pod agent

Options:
  -c, --config <file>  agent config JSON (default: env SIDEKEY_CONFIG)
  --local-demo         seed the example local store with a demo secret and
                       print how to fetch it
  -h, --help           display help for command
`

/**
 * The agent's two options, read with Node's own parser: commander (the other
 * commands' parser) and the node:child_process it loads cost the agent about
 * 5 ms of CPU at every start for these two flags. Words that are not options
 * are ignored, as before.
 */
function parseAgentArgs (argv: string[]): { config?: string, localDemo: boolean, help: boolean } {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, 'local-demo': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    })
    return { ...(values.config !== undefined ? { config: values.config } : {}), localDemo: values['local-demo'] === true, help: values.help === true }
  } catch (err) {
    // Node's message, first sentence: "Unknown option '--x'", "Option '-c, --config <value>' argument missing".
    const first = (err as Error).message.split(/\.\s/)[0] ?? 'bad arguments'
    throw new SidekeyError('SIDEKEY_E_USAGE', `${first.charAt(0).toLowerCase()}${first.slice(1)}; sidekey agent --help lists the options`)
  }
}

export async function main (argv: string[]): Promise<number> {
  const opts = parseAgentArgs(argv)
  if (opts.help) {
    process.stdout.write(HELP)
    return 0
  }

  let config: AgentConfig
  if (opts.config !== undefined) config = loadConfigFile(opts.config)
  else if (process.env.SIDEKEY_CONFIG !== undefined) config = loadConfig(parseJson(process.env.SIDEKEY_CONFIG, 'env SIDEKEY_CONFIG'))
  else throw new SidekeyError('SIDEKEY_E_CONFIG', 'no config: pass --config FILE or set SIDEKEY_CONFIG to the config JSON')

  const logger = createLogger(config.logLevel)
  // Loaded only for --local-demo: it opens the local store (its provider, node:crypto's ciphers).
  if (opts.localDemo === true) (await import('./demo.js')).seedDemo(config, logger)
  // The handlers go in before the start: without one, a SIGTERM takes Node's
  // default (the process dies by the signal, nothing closed), and a pod is
  // deleted whenever it is, during an agent's start too. One that comes
  // during the start stops the agent as soon as it has started. Each handler
  // runs once: a second SIGTERM takes Node's default, a force-quit.
  let signalled: string | undefined
  let onSignal = (signal: string): void => { signalled ??= signal }
  const onTerm = (): void => { onSignal('SIGTERM') }
  const onInt = (): void => { onSignal('SIGINT') }
  process.once('SIGTERM', onTerm)
  process.once('SIGINT', onInt)
  let agent: Awaited<ReturnType<typeof startAgent>>
  try {
    agent = await startAgent(config, { logger, auditLogger: createAuditLogger(config.logLevel), afterFirstSync: restoreTierUp })
  } catch (err) {
    process.off('SIGTERM', onTerm)
    process.off('SIGINT', onInt)
    throw err
  }

  let stopping = false
  const stopSignal = new AbortController()
  let stopped: () => void = () => {}
  const untilStopped = new Promise<void>((resolve) => { stopped = resolve })
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    stopSignal.abort()
    stopped()
    logger.info({ signal }, 'stopping')
    await agent.close()
    // init-only keeps its files: the app starts after the agent exits.
    if ((config.removeOnExit || opts.localDemo === true) && !config.exitAfterSync) {
      await agent.removeFiles()
      logger.info({ dir: config.dir }, 'removed the secret files (local run)')
    }
  }
  onSignal = (signal) => { void stop(signal) }
  if (signalled !== undefined) void stop(signalled)

  await agent.synced
  if (opts.localDemo === true) {
    const name = config.secrets[0]?.name ?? 'openai'
    process.stderr.write([
      '',
      `sidekey agent is serving ${config.secrets.length} secret(s) from the local store on http://127.0.0.1:${agent.httpPort}`,
      `  files:   ${config.dir}/`,
      `  env:     export SIDEKEY_ADDR=http://127.0.0.1:${agent.httpPort} SIDEKEY_TOKEN_FILE=${resolve(config.apiTokenFile)}`,
      '  fetch:   curl -H "X-Sidekey-Token: $(cat ' + config.apiTokenFile + ')" http://127.0.0.1:' + agent.httpPort + '/v1/secrets/' + name,
      `  list:    curl -H "X-Sidekey-Token: $(cat ${config.apiTokenFile})" http://127.0.0.1:${agent.httpPort}/v1/secrets`,
      `  rotate:  printf '{"api_key":"sk-rotated"}' | node dist/bin/sidekey.js local put ${config.secrets[0]?.ref?.path ?? name} --dev --store ${(config.stores.local as { path?: string } | undefined)?.path ?? ''}`,
      '  stop:    Ctrl-C',
      '',
    ].join('\n'))
  }
  if (config.exitAfterSync) {
    // init-only: every required secret must be on disk before the Job's app
    // starts, within the deadline; otherwise exit 1 with the code, also in the
    // termination message (the injector points this env at terminationMessagePath).
    const failure = await awaitInitialSync(agent.board, config.syncDeadlineMs, stopSignal.signal)
    await stop('exitAfterSync')
    if (failure === undefined) return 0
    logger.error({ code: failure.code, err: failure.message }, 'init-only sync failed')
    writeTerminationMessage(failure, process.env.SIDEKEY_TERMINATION_MESSAGE_PATH ?? DEFAULT_TERMINATION_MESSAGE_PATH)
    throw failure
  }
  // A pending promise does not keep the loop alive; the ref'ed servers do, and
  // nothing wakes the process until a signal or a request arrives.
  await untilStopped
  return 0
}
