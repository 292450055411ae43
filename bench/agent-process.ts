// How the benches run a Sidekey agent the way the injector runs it: the
// injector's default agentNodeOptions as NODE_OPTIONS and agentMallocArenaMax
// as MALLOC_ARENA_MAX, the Node flags of the bundle's first line (the image
// runs it as `sidekey`, through that line), on the image's Node
// (scripts/node24 installs it; default here when installed).
import { spawnSync } from 'node:child_process'
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { shebangFlags } from '../agent/cli/v8-flags.js'
import { injectorConfigSchema } from '../injector/config.js'

/**
 * Drops each of `files` (the Node and bao binaries) from the page cache, so the runs after it map
 * the binary as an exec reads it from disk. Each process's RSS counts the binary's pages it maps,
 * and how many a page fault maps at once depends on how the file got into the cache: bao straight
 * after testenv built it (its pages cached as the build wrote them) measured 106.7 MiB steady at 1
 * secret, 94 of them its binary's, and 77.1 (64.5 its binary's) once dropped; Node's binary, read from its
 * package, 40.5 either way. After an fsync (pages not yet written stay cached), `dd iflag=nocache
 * count=0` asks the kernel to drop the file's cached pages that no process maps (coreutils; a
 * failure is only reported).
 */
export function dropPageCache (files: ReadonlyArray<string | undefined>): void {
  for (const f of files) {
    if (f === undefined || !existsSync(f)) continue
    // Written pages not yet on disk stay cached: write them first.
    try {
      const fd = openSync(f, 'r')
      try { fsyncSync(fd) } finally { closeSync(fd) }
    } catch (err) {
      console.error(`dropPageCache: fsync of ${f}: ${(err as Error).message} (its pages stay cached as they are)`)
      continue
    }
    const r = spawnSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] })
    if (r.status !== 0) console.error(`dropPageCache: dd on ${f}: ${r.error?.message ?? r.stderr.toString().trim()} (its pages stay cached as they are)`)
  }
}

/**
 * A process's memory from one read of /proc/<pid>/status, in kB (0 for a field the kernel does not give):
 * RSS, its peak (VmHWM), and RSS's anonymous part (heap, malloc) and the pages of files it maps.
 */
export function procMemoryKb (pid: number): { rss: number, hwm: number, anon: number, file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0)
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') }
}

/** The agent container's NODE_OPTIONS, as the injector sets them by default ($AGENT_NODE_OPTIONS weighs another). */
export const AGENT_NODE_OPTIONS = process.env.AGENT_NODE_OPTIONS ?? String((injectorConfigSchema.properties.agentNodeOptions as { default: string }).default)

/** The image's Node (scripts/node24's install) when present, else this process's. */
export function imageNode (): string {
  const n = join(process.env.HOME ?? '', '.cache/sidekey/tools', `node-v${process.env.SIDEKEY_NODE24_VERSION ?? '24.22.3'}`, 'bin/node')
  return existsSync(n) ? n : process.execPath
}

/** The agent container's MALLOC_ARENA_MAX, as the injector sets it by default ('' when it sets none). */
export const AGENT_MALLOC_ARENA_MAX = ((n: number) => n > 0 ? String(n) : '')(Number((injectorConfigSchema.properties.agentMallocArenaMax as { default: number }).default))

/**
 * The environment of an agent process: `extra` and the injected NODE_OPTIONS and MALLOC_ARENA_MAX,
 * without the host's NODE_EXTRA_CA_CERTS, which the injector never sets. With it, Node 24 also
 * reads that file's certificates into its process-wide root store when a TLS context is given a CA
 * (the k8s and azure stores' caFile), though that context never uses the root store: with
 * /etc/ssl/certs/ca-certificates.crt, bench/store-memory at 1 secret (3 runs) had k8s 63.0 and
 * azure 62.6 MiB against 62.1 and 61.9 without it; vault (no TLS) the same either way.
 */
export function agentEnv (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra, NODE_OPTIONS: AGENT_NODE_OPTIONS }
  if (extra.NODE_EXTRA_CA_CERTS === undefined) delete env.NODE_EXTRA_CA_CERTS
  if (AGENT_MALLOC_ARENA_MAX !== '') env.MALLOC_ARENA_MAX = AGENT_MALLOC_ARENA_MAX
  else delete env.MALLOC_ARENA_MAX
  return env
}

/**
 * Node's arguments to run `script` as the image runs it: the flags its first line gives Node
 * (agent/cli/v8-flags.ts; none for dist/bin/sidekey.js or a bundle from before stop 22), then the script.
 */
export function nodeArgs (script: string, node: string): string[] {
  const fd = openSync(script, 'r')
  let flags: string[]
  try {
    const head = Buffer.alloc(512)
    const n = readSync(fd, head, 0, head.length, 0)
    flags = shebangFlags(head.subarray(0, n).toString('latin1').split('\n')[0] as string)
  } finally { closeSync(fd) }
  // The image's flags are Node 24's V8 names (agent/cli/v8-flags.ts): an older Node refuses them.
  if (flags.length > 0 && nodeMajor(node) < 24) throw new Error(`${script} gives Node 24's V8 flags on its first line (${flags.join(' ')}), which ${node} (Node ${nodeMajor(node)}) refuses: pass --node <Node 24> (scripts/node24 installs it)`)
  return [...flags, script]
}

const majors = new Map<string, number>()
function nodeMajor (node: string): number {
  let m = majors.get(node)
  if (m === undefined) {
    m = Number(spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.split('.')[0])
    majors.set(node, m)
  }
  return m
}

/**
 * `bao agent`'s command line (the OpenBao agent the benches measure Sidekey against, OpenBao's fork of the
 * agent vault-k8s injects): token auth from a file under `dir`, one template per KV v2 API path, path i
 * rendered to `dir`/secrets/s<i>; `refresh` sets its re-render interval, `initOnly` exit_after_auth.
 */
export function baoAgentArgs (bao: string, dir: string, o: { addr: string, token: string, paths: readonly string[], refresh?: string, initOnly?: boolean }): string[] {
  const out = join(dir, 'secrets')
  mkdirSync(out, { recursive: true })
  const tokenFile = join(dir, 'bao-token')
  writeFileSync(tokenFile, o.token)
  const cfg = join(dir, 'agent.json')
  writeFileSync(cfg, JSON.stringify({
    vault: { address: o.addr },
    auto_auth: { method: [{ type: 'token_file', config: { token_file_path: tokenFile } }] },
    ...(o.refresh !== undefined ? { template_config: { static_secret_render_interval: o.refresh } } : {}),
    ...(o.initOnly === true ? { exit_after_auth: true } : {}),
    log_level: 'warn',
    template: o.paths.map((path, i) => ({ contents: `{{ with secret "${path}" }}{{ .Data.data.v }}{{ end }}`, destination: join(out, `s${i}`) })),
  }))
  return [bao, 'agent', `-config=${cfg}`]
}
