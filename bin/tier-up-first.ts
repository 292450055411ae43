// The first module bin/sidekey.ts imports, so the first evaluated: in the
// image (the bundle's first line raises V8's Maglev threshold), it puts the
// threshold back to V8's default before any other module of the entry loads
// a built-in, so those come from the code cache Node embeds for them;
// bin/sidekey.ts raises it again before the agent's own code loads
// (agent/cli/v8-flags.ts says why).
import { restoreTierUp } from '../agent/cli/v8-flags.js'

/** Whether the process started with the image's tier-up flag (now lowered). */
export const startedRaised = restoreTierUp()
