// The one place Sidekey talks HTTP to Vault/OpenBao, through node-vault:
// TLS (CA file, server name), namespace header, a timeout, and answers as
// {status, body} so callers map statuses to Sidekey codes. node-vault's own
// debug output is silenced: it prints request bodies (the login JWT).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { SidekeyError } from '../errors.js'

export interface VaultHttpOptions {
  readonly storeName: string
  readonly address: string
  readonly namespace?: string
  readonly caFile?: string
  readonly tlsServerName?: string
  readonly timeoutMs: number
}

export interface VaultCall {
  readonly method: 'GET' | 'POST' | 'PUT' | 'LIST'
  /** Without the leading `/v1/`. */
  readonly path: string
  readonly body?: Record<string, unknown>
  readonly token?: string
}

export interface VaultAnswer {
  readonly status: number
  readonly body: unknown
}

interface RawClient {
  handleVaultResponse: (r: unknown) => Promise<unknown>
  request: (o: Record<string, unknown>) => Promise<{ statusCode: number, body: unknown }>
}

export class VaultHttp {
  private readonly client: RawClient
  /** Requests sent, by method and first path segments; for tests and metrics. */
  readonly counts = new Map<string, number>()

  constructor (private readonly opts: VaultHttpOptions) {
    const require = createRequire(import.meta.url)
    const nodeVault = require('node-vault') as (cfg: Record<string, unknown>) => RawClient
    const requestOptions: Record<string, unknown> = { timeout: opts.timeoutMs }
    if (opts.caFile !== undefined) {
      try {
        requestOptions.ca = readFileSync(opts.caFile)
      } catch (err) {
        throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${opts.storeName}.caFile: cannot read ${opts.caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { field: `stores.${opts.storeName}.caFile` })
      }
    }
    if (opts.tlsServerName !== undefined) requestOptions.agentOptions = { servername: opts.tlsServerName }
    this.client = nodeVault({
      endpoint: opts.address,
      apiVersion: 'v1',
      // node-vault falls back to VAULT_TOKEN / VAULT_NAMESPACE from the environment; Sidekey passes both explicitly.
      token: '',
      ...(opts.namespace !== undefined && opts.namespace !== '' ? { namespace: opts.namespace } : {}),
      requestOptions,
      debug: () => {},
    })
    this.client.handleVaultResponse = async (r) => r
  }

  async call (c: VaultCall, signal: AbortSignal | undefined): Promise<VaultAnswer> {
    const kind = `${c.method} ${c.path.split('?')[0] ?? ''}`
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1)
    if (signal?.aborted === true) throw this.unavailable(c, undefined)
    const headers: Record<string, string> = { 'X-Vault-Request': 'true' }
    if (c.token !== undefined) headers['X-Vault-Token'] = c.token
    const p = this.client.request({ method: c.method, path: '/' + c.path, headers, ...(c.body !== undefined ? { json: c.body } : {}) })
    try {
      const r = signal === undefined ? await p : await raceAbort(p, signal)
      return { status: r.statusCode, body: r.body }
    } catch (err) {
      if (err instanceof SidekeyError) throw err
      throw this.unavailable(c, err)
    }
  }

  private unavailable (c: VaultCall, err: unknown): SidekeyError {
    const code = (err as { code?: unknown } | undefined)?.code
    const tls = typeof code === 'string' && /CERT|SSL|TLS|SELF_SIGNED|ERR_TLS/.test(code)
    const what = tls ? `TLS to ${this.opts.address} failed (${String(code)}); check caFile and tlsServerName` : `cannot reach Vault at ${this.opts.address}${typeof code === 'string' ? ` (${code})` : ''}`
    // The axios error carries request headers (the token): it is not kept as the cause.
    return new SidekeyError('SIDEKEY_E_UNAVAILABLE', `store ${this.opts.storeName}: ${what} for ${c.method} ${c.path.split('?')[0] ?? ''}`, { store: this.opts.storeName, ...(typeof code === 'string' ? { errno: code } : {}) })
  }
}

async function raceAbort<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(Object.assign(new Error('aborted'), { code: 'ERR_CANCELED' })) }
    signal.addEventListener('abort', onAbort, { once: true })
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v) }, (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e) })
  })
}
