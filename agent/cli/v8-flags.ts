// V8 flags for the processes of the agent's container: `sidekey agent` and
// `sidekey get` (its startup probe). bin/sidekey.ts sets them before it loads
// either command's code.
import { setFlagsFromString } from 'node:v8'

/**
 * WebAssembly (undici's HTTP parser, llhttp) stays on Liftoff. Tiering it up
 * to TurboFan after a few hundred responses costs a one-time ~20 MiB of
 * compiler memory that glibc keeps (Node 24, vault store, 1,000 secrets:
 * steady RSS 102 -> 92 MiB), and the background tier-up compiles kept a V8
 * worker busy while the agent was idle (1 Vault secret, Node 24: ~43 ms of
 * CPU a minute on that thread, ~0.2 ms with these flags; perf stat per
 * thread). JavaScript keeps Maglev and TurboFan: without them the local GET
 * serves 9.4k instead of 48k requests/s. Set at run time: NODE_OPTIONS may not
 * carry them, and no wasm function is hot yet (--liftoff-only alone is read
 * at start-up; the two tier-up flags make it hold when set later).
 */
export const AGENT_V8_FLAGS = '--liftoff-only --no-wasm-tier-up --no-wasm-dynamic-tiering'

/**
 * V8's memory saver mode (V8 13, Node 24; Node 20's V8 has no such flag and
 * would print an error): the heap grown by the first sync's burst of
 * responses shrinks back instead of staying at its high-water mark. Node 24,
 * aws store, 1,000 secrets: steady RSS 116 -> 86 MiB.
 */
export const AGENT_V8_FLAGS_NODE24 = '--memory-saver-mode'

/**
 * Sets the flags. They are part of the hash V8 stamps on the code it
 * compiles, and Node's compile cache (the image's /app/compile-cache) holds
 * one entry per file: code compiled with other flags is rejected and compiled
 * again. So every command of the agent's container sets them, at the same
 * point, before its own code loads: the undici chunk `sidekey get --ready`
 * compiled without them, as the image's last warm-up start, was rejected by
 * every agent.
 */
export function setAgentV8Flags (): void {
  setFlagsFromString(AGENT_V8_FLAGS)
  if (Number(process.versions.node.split('.')[0]) >= 24) setFlagsFromString(AGENT_V8_FLAGS_NODE24)
}

/**
 * The V8 flag the image's `sidekey` gives Node on its command line: the
 * bundle's first line is `#!/usr/bin/env -S node` and this (scripts/bundle.mjs
 * writes it; bench/agent-process reads it back to run agents as the image
 * does). Maglev's tier-up threshold 50x V8 13's default (after 20,000 calls
 * instead of 400): set at run time it would come too late, since V8 gives a
 * function its tier-up budget when it first allocates its feedback, and
 * Node's own loader functions warm up before any of Sidekey's code runs.
 * TurboFan's threshold counts from Maglev's tier (V8 13: Ignition and
 * Sparkplug tier up to Maglev when it is on), so this one flag holds both
 * compilers back through start-up; raiseTierUp() raises TurboFan's too (50x,
 * at run time: a function gets it when it reaches Maglev), for what a first
 * sync of 1,000 secrets makes hot enough for Maglev.
 *
 * With the default, the only functions hot enough to compile while an agent
 * starts and idles are Node's: the ES module loader resolves each of the
 * bundle's ~30 files twice, and its path and URL functions run per character
 * (an env or Vault agent at 1 secret: 9 to 13 functions to Maglev). The first
 * Maglev compile touches ~2.2 MiB of the compilers' machine code in the node
 * binary, resident from then on (1 Vault secret, steady RSS 59.9 -> 57.7 MiB;
 * floor-tools' pagemap: Maglev's and TurboFan's text pages). With it, an
 * agent compiles nothing through start-up and its first sync, nor while idle
 * (the checks run code the first sync warmed); after the first sync
 * restoreTierUp() puts V8's default back for what runs first after it (the
 * local endpoint's request path).
 *
 * A V8 flag also changes the hash V8 checks on the code cache the node binary
 * embeds for Node's built-in modules, so a built-in loaded while it is set is
 * compiled from source (Node 24: crypto and http with what they load, ~15
 * ms of CPU more at every start). This flag, put back to its default value at run time,
 * gives the default hash back (TurboFan's does not: set back to 3,000 the
 * cache was still refused, hence one flag on the command line):
 * bin/sidekey.ts lowers it (lowerTierUp) while it loads the built-ins a
 * command needs and raises it again (raiseTierUp) before the agent's own
 * code loads, so those built-ins come from Node's cache
 * (NODE_DEBUG_NATIVE=CODE_CACHE: "accepted") and the functions that warmed
 * up before keep their high budget. (node:v8, and the streams it loads, come
 * before: setFlagsFromString is its.)
 *
 * The agent, its startup probe (`sidekey get`, which keeps it: it is
 * short-lived) and the Dockerfile's compile-cache warm-up of both run with
 * it, so that cache matches them; the webhook and the other commands put the
 * default back at once (bin/sidekey.ts). NODE_OPTIONS may not carry V8's
 * tier-up flags, so an operator cannot set them there.
 *
 * Node 24's V8 names and defaults (the image's Node; Node 20's V8 has no
 * TurboFan flag and another Maglev default), so only the bundle carries it,
 * not dist/bin/sidekey.js (package.json's bin), and the run-time changes
 * below are made on Node 24 or later only.
 */
export const IMAGE_NODE_FLAGS = ['--invocation-count-for-maglev=20000'] as const

/** The tier-up thresholds raiseTierUp() sets at run time: IMAGE_NODE_FLAGS's, and TurboFan's 50x V8 13's default. */
export const RAISED_TIER_UP = [...IMAGE_NODE_FLAGS, '--invocation-count-for-turbofan=150000'] as const

/** V8 13's own tier-up thresholds, the ones RAISED_TIER_UP raise (test/unit/agent-bundle-start reads them from `node --v8-options`). */
export const TIER_UP_DEFAULTS = ['--invocation-count-for-maglev=400', '--invocation-count-for-turbofan=3000'] as const

/**
 * Whether this process was started with IMAGE_NODE_FLAGS (the image's
 * `sidekey`) on Node 24 or later. Node 20's V8 takes Maglev's flag too (with
 * another default, 100) but has no TurboFan one: run there through the
 * bundle's first line, the thresholds are left as they came.
 */
function startedRaised (): boolean {
  return Number(process.versions.node.split('.')[0]) >= 24 && IMAGE_NODE_FLAGS.every((f) => process.execArgv.includes(f))
}

/**
 * Puts Maglev's threshold back to V8's default when the process was started
 * with IMAGE_NODE_FLAGS, and says whether it did: bin/sidekey.ts, before a
 * command's built-ins load (see IMAGE_NODE_FLAGS). TurboFan's is left as it
 * is: set, even to its default, it would change the hash again.
 *
 * A function that first allocates its feedback (its first 8 calls) while the
 * threshold is down gets V8's default budget, and Node's own that loading
 * the built-ins calls first are used by every request later: FastBuffer and
 * alignPool (each Buffer), canBeRequiredByUsers (each built-in asked for) and
 * hideStackFrames' wrappedFn (each validator). With their first calls there,
 * FastBuffer reached Maglev in a first sync of 100 Vault secrets and
 * wrappedFn in one of 100 AWS secrets (bench/store-memory with --trace-opt:
 * 1 to 2 MiB more resident); their first calls here, before, give them the
 * image's.
 */
export function lowerTierUp (forAgent: boolean): boolean {
  if (!startedRaised()) return false
  // Only for a command that raises the threshold again (the agent, its
  // probe): the webhook's own first calls then come with V8's default.
  if (forAgent) {
    for (let i = 0; i < 16; i++) {
      Buffer.alloc(0)
      Buffer.from('x')
      process.getBuiltinModule('node:fs')
    }
  }
  setFlagsFromString(TIER_UP_DEFAULTS[0])
  return true
}

/**
 * Puts V8's tier-up thresholds back to their defaults when the process was
 * started with IMAGE_NODE_FLAGS: the agent calls it once its first sync is
 * done (every source tried once and published; a restart that adopted its
 * files serves before that, and a slow backend is still being read when the
 * local endpoint starts at GRPC_WAIT_MS). A function's budget is fixed when
 * it first allocates its feedback (after 8 calls), so what ran through
 * start-up and the first sync (Node's loader, the stores' code, which the
 * idle checks run again) keeps the high one and an idle agent still compiles
 * nothing, while the request path tiers up as V8 would by default, and again
 * as soon after a deoptimization. With the high threshold kept, a busy endpoint spent 25%
 * more CPU per request (bench/local-endpoint: 39.7 against 31.7 µs, a loaded
 * machine).
 */
export function restoreTierUp (): void {
  if (startedRaised()) setFlagsFromString(TIER_UP_DEFAULTS.join(' '))
}

/** Sets RAISED_TIER_UP, at run time, after lowerTierUp() let built-ins load from Node's code cache. */
export function raiseTierUp (): void {
  setFlagsFromString(RAISED_TIER_UP.join(' '))
}

/** The bundle's first line: Node through env(1) with IMAGE_NODE_FLAGS (`env -S`: coreutils >= 8.30; Debian bookworm has 9.1). */
export const IMAGE_SHEBANG = `#!/usr/bin/env -S node ${IMAGE_NODE_FLAGS.join(' ')}`

/** The Node flags a bundle's first line carries (none for `#!/usr/bin/env node`, as bundles before stop 22 have). */
export function shebangFlags (firstLine: string): string[] {
  if (!firstLine.startsWith('#!/usr/bin/env -S node')) return []
  const m = /^#!\/usr\/bin\/env -S node((?: --[a-z0-9-]+(?:=\S+)?)*)$/.exec(firstLine)
  if (m === null) throw new Error(`cannot read the Node flags of the first line "${firstLine.slice(0, 200)}": expected "#!/usr/bin/env -S node --flag[=value] ..."`)
  return (m[1] as string).split(' ').filter((f) => f !== '')
}
