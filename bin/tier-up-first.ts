// The first module bin/sidekey.ts imports, so the first it evaluates: in the
// image (the bundle's first line raises V8's Maglev threshold), it puts the
// threshold back to V8's default before the entry's other modules and the
// command's built-ins load, so those come from the code cache Node embeds for
// them; bin/sidekey.ts raises it again before the agent's own code loads
// (agent/cli/v8-flags.ts says why).
import { lowerTierUp } from '../agent/cli/v8-flags.js'

// A function gets its tier-up budget from the flags of the moment its
// feedback is allocated (its first 8 calls). Node's FastBuffer (every
// Buffer's constructor) would get its first calls while the built-ins load,
// with the default, and reach Maglev in a first sync of 100 Vault secrets
// (their responses' buffers); its first calls here, before the threshold
// goes down, give it the image's.
for (let i = 0; i < 16; i++) Buffer.allocUnsafe(0)

/** Whether the process started with the image's tier-up flag (now lowered). */
export const startedRaised = lowerTierUp()
