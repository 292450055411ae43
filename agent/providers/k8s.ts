// Kubernetes Secrets backend.
//   k8s:<name>[#key]              a Secret in the store's namespace (default: the pod's own)
//   k8s:<namespace>/<name>[#key]  another namespace (the injector's policy decides if allowed)
// The data is a map of the decoded values; the version is resourceVersion.
// Each referenced Secret is watched (one watch per Secret, field selector on
// its name). While the watch is connected, its events keep an in-memory copy
// of the Secret current, so rotation checks and fetches cost no API request;
// the watch reconnects with backoff after errors, drops the copy while
// disconnected (checks fall back to GET) and tells the refresher to resync.
import { existsSync, readFileSync } from 'node:fs'
import { SidekeyError } from '../../core/errors.js'
import type { SecretRef } from '../../core/reference.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import type { Have, SyncResult, Provider, ProviderContext } from './provider.js'
import { checkSize, isNetworkError, withSignal } from './secret-data.js'

const UTF8 = new TextDecoder('utf-8', { fatal: true })

type K8s = typeof import('@kubernetes/client-node')
type KubeConfig = InstanceType<K8s['KubeConfig']>
type CoreV1Api = InstanceType<K8s['CoreV1Api']>
type V1Secret = import('@kubernetes/client-node').V1Secret

export type K8sStoreConfig = StoreConfigOf<'k8s'>

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

interface Watched {
  readonly namespace: string
  readonly name: string
  readonly listeners: Set<() => void>
  /** The Secret as the watch last saw it; undefined while disconnected or before the first event. */
  secret?: V1Secret | undefined
  /** The watch saw the Secret deleted (or it does not exist yet). */
  live: boolean
  controller?: AbortController | undefined
  timer?: NodeJS.Timeout | undefined
  failures: number
  stopped: boolean
}

export class K8sProvider implements Provider {
  readonly type = 'k8s'
  private lib: K8s | undefined
  private kc: KubeConfig | undefined
  private api: CoreV1Api | undefined
  private readonly namespace: string
  private readonly watched = new Map<string, Watched>()

  constructor (private readonly config: K8sStoreConfig, private readonly ctx: ProviderContext) {
    this.namespace = config.namespace ?? readNamespace() ?? 'default'
  }

  private async client (): Promise<{ lib: K8s, kc: KubeConfig, api: CoreV1Api }> {
    if (this.lib !== undefined && this.kc !== undefined && this.api !== undefined) return { lib: this.lib, kc: this.kc, api: this.api }
    const lib = await import('@kubernetes/client-node')
    const kc = new lib.KubeConfig()
    const c = this.config
    const store = this.ctx.storeName
    try {
      if (c.kubeconfig !== undefined) {
        kc.loadFromFile(c.kubeconfig)
      } else if (c.server !== undefined || c.tokenFile !== undefined) {
        const server = c.server ?? inClusterServer()
        if (server === undefined) throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}.server: not set and KUBERNETES_SERVICE_HOST is not in the environment`, { field: `stores.${store}.server` })
        const caFile = c.caFile ?? (existsSync(`${SA_DIR}/ca.crt`) ? `${SA_DIR}/ca.crt` : undefined)
        kc.loadFromClusterAndUser(
          { name: 'sidekey', server, skipTLSVerify: false, ...(caFile !== undefined ? { caFile } : {}) },
          { name: 'sidekey', authProvider: { name: 'tokenFile', config: { tokenFile: c.tokenFile ?? `${SA_DIR}/token` } } },
        )
      } else if (process.env.KUBERNETES_SERVICE_HOST !== undefined) {
        kc.loadFromCluster()
      } else {
        kc.loadFromDefault()
      }
    } catch (err) {
      if (err instanceof SidekeyError) throw err
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}: cannot load the Kubernetes client settings (${(err as Error).name}); set server/tokenFile/caFile or kubeconfig`, { field: `stores.${store}` })
    }
    this.lib = lib
    this.kc = kc
    this.api = kc.makeApiClient(lib.CoreV1Api)
    return { lib, kc, api: this.api }
  }

  private locate (ref: SecretRef): { namespace: string, name: string } {
    const segs = ref.path.split('/')
    const bad = (): never => { throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: a Kubernetes reference is k8s:<name> or k8s:<namespace>/<name> (DNS labels)`, { ref: ref.raw }) }
    const dns = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/
    if (segs.length === 1) {
      if (!dns.test(segs[0] as string)) bad()
      return { namespace: this.namespace, name: segs[0] as string }
    }
    if (segs.length === 2 && dns.test(segs[0] as string) && dns.test(segs[1] as string)) return { namespace: segs[0] as string, name: segs[1] as string }
    return bad()
  }

  /** The Secret from the watch cache (or one GET); decoded only when its resourceVersion differs from `have`. */
  async sync (ref: SecretRef, have: Have | undefined, signal?: AbortSignal): Promise<SyncResult> {
    const secret = await this.secret(ref, signal)
    const version = secret.metadata?.resourceVersion ?? ''
    if (ref.version !== undefined && ref.version !== version) {
      throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: Kubernetes keeps no history; the Secret is at resourceVersion ${version}, not ${ref.version}`, { ref: ref.raw })
    }
    if (have !== undefined && have.version === version) return { changed: false }
    const map: Record<string, string> = {}
    for (const [k, v] of Object.entries(secret.data ?? {})) {
      try {
        map[k] = UTF8.decode(Buffer.from(v, 'base64'))
      } catch {
        // Values travel as text; a keystore or DER blob would be corrupted silently.
        throw new SidekeyError('SIDEKEY_E_FORMAT', `${ref.raw}: field "${k}" of the Secret is binary, not UTF-8 text; store it base64-encoded in the Secret (binary fields are not supported yet)`, { ref: ref.raw, field: k })
      }
    }
    const data = checkSize({ kind: 'map', map }, ref, this.ctx.maxValueBytes)
    return { changed: true, data, version }
  }

  /** The Secret from the live watch when there is one, else one GET. */
  private async secret (ref: SecretRef, signal: AbortSignal | undefined): Promise<V1Secret> {
    const { namespace, name } = this.locate(ref)
    const w = this.watched.get(`${namespace}/${name}`)
    if (w?.live === true && w.secret !== undefined) return w.secret
    const { api } = await this.client()
    this.ctx.meter?.request('get')
    try {
      const p = api.readNamespacedSecret({ name, namespace })
      return await withSignal(p, signal, GET_TIMEOUT_MS)
    } catch (err) {
      throw this.mapError(err, ref, namespace, name)
    }
  }

  private mapError (err: unknown, ref: SecretRef, namespace: string, name: string): SidekeyError {
    if (err instanceof SidekeyError) return err
    const status = (err as { code?: unknown }).code
    const details = { ref: ref.raw, store: this.ctx.storeName, namespace, name, ...(typeof status === 'number' ? { status } : {}) }
    if (typeof status === 'number') {
      if (status === 404) return new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: there is no Secret ${name} in namespace ${namespace}`, details)
      if (status === 403) return new SidekeyError('SIDEKEY_E_DENIED', `${ref.raw}: the service account may not get Secret ${name} in namespace ${namespace} (403); bind a Role with get (and watch) on secrets, resourceNames [${name}]`, details)
      if (status === 401) return new SidekeyError('SIDEKEY_E_AUTH', `${ref.raw}: the API server rejected the service-account token (401); check tokenFile`, details)
      if (status === 429 || status >= 500) return new SidekeyError('SIDEKEY_E_UNAVAILABLE', `${ref.raw}: the API server is unavailable (HTTP ${status})`, details)
      return new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: the API server answered HTTP ${status}`, details)
    }
    if (isNetworkError(err) || (err as { type?: unknown }).type === 'system') {
      return new SidekeyError('SIDEKEY_E_UNAVAILABLE', `${ref.raw}: cannot reach the Kubernetes API server (${String((err as { code?: unknown }).code ?? 'network error')})`, details)
    }
    return new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: reading the Secret failed (${(err as Error).name})`, details)
  }

  watch (ref: SecretRef, onChange: () => void): () => void {
    if (this.config.watch === false) return () => {}
    let key: string
    let loc: { namespace: string, name: string }
    try {
      loc = this.locate(ref)
      key = `${loc.namespace}/${loc.name}`
    } catch {
      return () => {} // fetch reports the bad reference
    }
    let w = this.watched.get(key)
    if (w === undefined) {
      w = { ...loc, listeners: new Set(), live: false, failures: 0, stopped: false }
      this.watched.set(key, w)
      void this.connect(w)
    }
    const watched = w
    watched.listeners.add(onChange)
    return () => {
      watched.listeners.delete(onChange)
      if (watched.listeners.size === 0) this.stop(key, watched)
    }
  }

  private notify (w: Watched): void {
    for (const l of w.listeners) {
      try { l() } catch { /* a listener's failure is its own */ }
    }
  }

  private async connect (w: Watched): Promise<void> {
    if (w.stopped) return
    let lib: K8s, kc: KubeConfig
    try {
      ({ lib, kc } = await this.client())
    } catch (err) {
      this.ctx.logger.warn({ store: this.ctx.storeName, code: (err as { code?: unknown }).code }, 'k8s watch cannot start: client settings')
      return
    }
    const watch = new lib.Watch(kc)
    const path = `/api/v1/namespaces/${encodeURIComponent(w.namespace)}/secrets`
    let ended = false
    let sawEvent = false
    const resync = w.failures > 0
    this.ctx.meter?.request('watch')
    const done = (err: unknown): void => {
      if (ended) return
      ended = true
      w.live = false
      w.secret = undefined
      w.controller = undefined
      if (w.stopped) return
      if (err !== null && err !== undefined) {
        w.failures++
        const status = (err as { statusCode?: unknown }).statusCode
        this.ctx.logger.warn({ store: this.ctx.storeName, namespace: w.namespace, secret: w.name, status, attempt: w.failures }, 'k8s watch failed; reconnecting with backoff (checks use GET meanwhile)')
      } else if (!sawEvent) {
        // Closed without a single event (server timeout on a missing Secret, or a proxy): back off gently.
        w.failures = Math.min(w.failures + 1, 3)
      } else {
        w.failures = 0
      }
      const delay = w.failures === 0 ? 0 : Math.min(30_000, 500 * 2 ** Math.min(w.failures - 1, 6))
      w.timer = setTimeout(() => { w.timer = undefined; void this.connect(w) }, delay)
      w.timer.unref()
    }
    try {
      w.controller = await watch.watch(path, { fieldSelector: `metadata.name=${w.name}`, allowWatchBookmarks: true, timeoutSeconds: 300 }, (phase: string, obj: unknown) => {
        if (ended || w.stopped) return
        if (phase === 'BOOKMARK') return
        if (phase === 'ERROR') {
          // e.g. 410 Gone: start over (a new watch lists the current state first).
          w.controller?.abort()
          done(Object.assign(new Error('watch error event'), { statusCode: (obj as { code?: unknown } | undefined)?.code }))
          return
        }
        sawEvent = true
        w.failures = 0
        if (phase === 'DELETED') w.secret = undefined
        else w.secret = obj as V1Secret
        this.notify(w)
      }, done)
      // stop() may have run while the watch was being opened: it could not abort it then.
      if (w.stopped) {
        w.controller.abort()
        return
      }
      if (!ended) {
        w.live = true
        // After an outage the refresher re-checks: the value may have changed meanwhile.
        if (resync) this.notify(w)
      }
    } catch (err) {
      done(err)
    }
  }

  private stop (key: string, w: Watched): void {
    w.stopped = true
    w.live = false
    if (w.timer !== undefined) clearTimeout(w.timer)
    w.controller?.abort()
    this.watched.delete(key)
  }

  async close (): Promise<void> {
    for (const [k, w] of [...this.watched]) this.stop(k, w)
  }
}

/** GET of one Secret: the client sets no timeout, and a half-open connection must not stall a source for good. */
const GET_TIMEOUT_MS = 10_000

function readNamespace (): string | undefined {
  try {
    const ns = readFileSync(`${SA_DIR}/namespace`, 'utf8').trim()
    if (ns !== '') return ns
  } catch { /* not in a pod */ }
  const env = process.env.POD_NAMESPACE
  return env !== undefined && env !== '' ? env : undefined
}

function inClusterServer (): string | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443'
  if (host === undefined) return undefined
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`
}

export function createK8sProvider (config: K8sStoreConfig, ctx: ProviderContext): Provider {
  return new K8sProvider(config, ctx)
}
