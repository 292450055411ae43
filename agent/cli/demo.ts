// `npm start`: the example local store gets a demo value the first time, so
// the agent has something to serve on a machine with no cluster and no cloud.
import type { Logger } from 'pino'
import type { AgentConfig } from '../../core/config/load.js'
import { openLocalStore } from '../providers/local.js'

export function seedDemo (config: AgentConfig, logger: Logger): void {
  for (const [name, sc] of Object.entries(config.stores)) {
    if (sc.type !== 'local') continue
    const store = openLocalStore(sc, { logger })
    for (const spec of config.secrets) {
      for (const ref of spec.refs) {
        if (ref.store !== name || store.currentVersion(ref.path) !== undefined) continue
        const demo = ref.key !== undefined ? JSON.stringify({ [ref.key]: `demo-${ref.path}-${ref.key}` }) : `demo-${ref.path}-value`
        store.put(ref.path, Buffer.from(demo))
        logger.info({ store: name, secret: ref.path }, 'seeded a demo secret in the local store')
      }
    }
  }
}
