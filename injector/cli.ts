// `sidekey injector` (the webhook server) and `sidekey inject` (offline).
import { readFileSync } from 'node:fs'
import { Command, CommanderError, InvalidArgumentError } from 'commander'
import { SidekeyError, isSidekeyError } from '../core/errors.js'
import { QUIET_USAGE_ERRORS, reportCliError, usageError } from '../core/error-answers.js'
import { loadInjectorConfig, loadInjectorConfigFile, type InjectorConfig } from './config.js'
import { injectText } from './workloads.js'

/** The config `sidekey inject` uses without --config: only `k8s:` references, in the pod's namespace. */
export const OFFLINE_DEFAULT_CONFIG = { image: 'ghcr.io/sidekey/sidekey:0.1.0' }

function intArg (name: string) {
  return (v: string): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`)
    return n
  }
}

async function runCommand (program: Command, argv: string[]): Promise<number | undefined> {
  program.exitOverride()
  program.configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s), ...QUIET_USAGE_ERRORS })
  try {
    await program.parseAsync(argv, { from: 'user' })
    return undefined
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err
    const usage = usageError(err, program.name())
    return usage === undefined ? 0 : reportCliError(usage, program.name())
  }
}

function readInput (file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8')
  } catch (err) {
    throw new SidekeyError('SIDEKEY_E_INPUT', `cannot read ${file === '-' ? 'stdin' : file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { file })
  }
}

export async function injectMain (argv: string[]): Promise<number> {
  let code = 0
  const program = new Command('sidekey inject')
    .description('Print pods and workloads (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) as the webhook would mutate them.')
    .requiredOption('-f, --filename <file>', 'YAML or JSON input, several documents separated by ---; "-" for stdin')
    .option('-c, --config <file>', 'injector config (YAML/JSON, or the injector ConfigMap manifest)')
    .option('-n, --namespace <ns>', 'namespace for objects that name none', 'default')
    .action((o: { filename: string, config?: string, namespace: string }) => {
      let config: InjectorConfig
      try {
        config = o.config !== undefined ? loadInjectorConfigFile(o.config) : loadInjectorConfig(OFFLINE_DEFAULT_CONFIG)
        const out = injectText(readInput(o.filename), config, o.namespace, o.filename === '-' ? 'stdin' : o.filename)
        process.stdout.write(out.yaml)
        if (o.config === undefined) process.stderr.write('sidekey inject: no -c/--config given: only k8s: references are offered and the image is ' + OFFLINE_DEFAULT_CONFIG.image + '; pass -c <injector config or its ConfigMap> (e.g. manifests/base/configmap.yaml) to inject as your cluster does\n')
        for (const n of out.notes) process.stderr.write(`sidekey inject: ${n}\n`)
      } catch (err) {
        if (!isSidekeyError(err)) throw err
        code = reportCliError(err, 'sidekey inject')
        if (o.config === undefined && err.code === 'SIDEKEY_E_ANNOTATION' && err.details.reason === 'unknown-store') process.stderr.write('sidekey inject: without -c/--config only k8s: references are offered; pass -c <injector config or its ConfigMap>, e.g. -c manifests/base/configmap.yaml\n')
      }
    })
  return (await runCommand(program, argv)) ?? code
}

export async function injectorMain (argv: string[]): Promise<number> {
  let server: Awaited<ReturnType<typeof import('./handler.js').startInjectorServer>> | undefined
  const program = new Command('sidekey injector')
    .description('Run the mutating admission webhook (HTTPS POST /mutate, /healthz, /readyz, /metrics).')
    .requiredOption('-c, --config <file>', 'injector config (YAML/JSON)')
    .option('--tls-cert <file>', 'serving certificate (PEM); re-read when it changes', '/etc/sidekey/tls/tls.crt')
    .option('--tls-key <file>', 'serving key (PEM)', '/etc/sidekey/tls/tls.key')
    .option('--host <addr>', 'listen address', '0.0.0.0')
    .option('--port <n>', 'listen port', intArg('--port'), 8443)
    .option('--max-body-bytes <n>', 'largest AdmissionReview accepted', intArg('--max-body-bytes'), 1024 * 1024)
    .option('--max-in-flight <n>', 'admissions read or decided at once; more get 429', intArg('--max-in-flight'), 4)
    .option('--max-connections <n>', 'open connections; more are dropped', intArg('--max-connections'), 256)
    .option('--max-json-containers <n>', 'objects and arrays in one body; more get 413 before parsing', intArg('--max-json-containers'), 100_000)
    .option('--tls-poll-ms <n>', 'how often the certificate files are checked for changes', intArg('--tls-poll-ms'), 10_000)
    .action(async (o: { config: string, tlsCert: string, tlsKey: string, host: string, port: number, maxBodyBytes: number, maxInFlight: number, maxConnections: number, maxJsonContainers: number, tlsPollMs: number }) => {
      const config = loadInjectorConfigFile(o.config)
      const { startInjectorServer } = await import('./handler.js')
      server = await startInjectorServer({ config, certFile: o.tlsCert, keyFile: o.tlsKey, host: o.host, port: o.port, maxBodyBytes: o.maxBodyBytes, maxInFlight: o.maxInFlight, maxConnections: o.maxConnections, maxJsonContainers: o.maxJsonContainers, tlsPollMs: o.tlsPollMs })
    })
  const early = await runCommand(program, argv)
  if (early !== undefined) return early
  if (server === undefined) return 1
  const s = server
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      s.close().then(resolve, resolve)
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
  return 0
}
