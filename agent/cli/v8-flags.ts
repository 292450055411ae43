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
