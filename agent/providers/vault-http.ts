// The one place Sidekey talks HTTP to Vault/OpenBao, through node-vault:
// TLS (CA file, server name), namespace header, a timeout, and answers as
// {status, body} so callers map statuses to Sidekey codes. node-vault's own
// debug output is silenced: it prints request bodies (the login JWT).
//
// node-vault builds the URL and headers; the request itself goes through
// undici (node-vault's `request-promise` option takes the function that sends
// a request): one keep-alive pool per store, with the store's CA and server
// name, at most 4 connections, and the store's timeout as the connect, headers
// and body timeouts. node-vault's own axios transport is not used, so
// VAULT_SKIP_VERIFY in the environment cannot turn certificate checks off.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { SidekeyError } from '../../core/errors.js'
import { HttpClient, HttpTransportError } from '../http-client.js'
import type { RequestMeter } from './provider.js'

export interface VaultHttpOptions {
  readonly storeName: string
  readonly address: string
  readonly namespace?: string
  readonly caFile?: string
  readonly tlsServerName?: string
  readonly timeoutMs: number
  /** Told of every request sent (method and path, no query). */
  readonly meter?: RequestMeter
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

/** What node-vault hands its `request-promise` transport, and what it expects back. */
interface RpOptions {
  method: string
  uri: string
  headers?: Record<string, string>
  json?: unknown
  signal?: AbortSignal
}

interface RpAnswer { statusCode: number, body: unknown, request: { path: string } }

interface RawClient {
  handleVaultResponse: (r: unknown) => Promise<unknown>
  request: (o: Record<string, unknown>) => Promise<{ statusCode: number, body: unknown }>
}

export class VaultHttp {
  private readonly client: RawClient
  private readonly transport: HttpClient

  constructor (private readonly opts: VaultHttpOptions) {
    const nodeVault = createRequire(import.meta.url)('node-vault') as (cfg: Record<string, unknown>) => RawClient
    let ca: Buffer | undefined
    if (opts.caFile !== undefined) {
      try {
        ca = readFileSync(opts.caFile)
      } catch (err) {
        throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${opts.storeName}.caFile: cannot read ${opts.caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { field: `stores.${opts.storeName}.caFile` })
      }
    }
    this.transport = new HttpClient({
      connections: 4,
      connectTimeoutMs: opts.timeoutMs,
      headersTimeoutMs: opts.timeoutMs,
      bodyTimeoutMs: opts.timeoutMs,
      tls: { ...(ca !== undefined ? { ca } : {}), ...(opts.tlsServerName !== undefined ? { servername: opts.tlsServerName } : {}) },
    })
    const send = async (o: RpOptions): Promise<RpAnswer> => {
      const headers: Record<string, string> = { ...o.headers }
      let body: string | undefined
      if (o.json !== undefined && o.json !== null && typeof o.json === 'object') {
        body = JSON.stringify(o.json)
        headers['content-type'] = 'application/json'
      }
      const r = await this.transport.request({ method: o.method, url: o.uri, headers, ...(body !== undefined ? { body } : {}), ...(o.signal !== undefined ? { signal: o.signal } : {}) })
      const text = r.body.toString('utf8')
      let parsed: unknown = text
      if (text !== '') {
        try { parsed = JSON.parse(text) } catch { /* not JSON: the text, as axios gave it */ }
      }
      return { statusCode: r.status, body: parsed, request: { path: new URL(o.uri).pathname } }
    }
    this.client = nodeVault({
      endpoint: opts.address,
      apiVersion: 'v1',
      // node-vault falls back to VAULT_TOKEN / VAULT_NAMESPACE from the environment; Sidekey passes both explicitly.
      token: '',
      ...(opts.namespace !== undefined && opts.namespace !== '' ? { namespace: opts.namespace } : {}),
      'request-promise': { defaults: () => send },
      debug: () => {},
    })
    this.client.handleVaultResponse = async (r) => r
  }

  async call (c: VaultCall, signal: AbortSignal | undefined): Promise<VaultAnswer> {
    this.opts.meter?.request(`${c.method} ${c.path.split('?')[0] ?? ''}`)
    if (signal?.aborted === true) throw this.unavailable(c, undefined)
    const headers: Record<string, string> = { 'X-Vault-Request': 'true' }
    if (c.token !== undefined) headers['X-Vault-Token'] = c.token
    try {
      const r = await this.client.request({ method: c.method, path: '/' + c.path, headers, ...(c.body !== undefined ? { json: c.body } : {}), ...(signal !== undefined ? { signal } : {}) })
      return { status: r.statusCode, body: r.body }
    } catch (err) {
      if (err instanceof SidekeyError) throw err
      throw this.unavailable(c, err)
    }
  }

  /** Closes the store's connections; calls in flight fail. */
  async close (): Promise<void> {
    await this.transport.destroy()
  }

  private unavailable (c: VaultCall, err: unknown): SidekeyError {
    const code = err instanceof HttpTransportError ? err.code : (err as { code?: unknown } | undefined)?.code
    const tls = typeof code === 'string' && /CERT|SSL|TLS|SELF_SIGNED|ERR_TLS/.test(code)
    const what = tls ? `TLS to ${this.opts.address} failed (${String(code)}); check caFile and tlsServerName` : `cannot reach Vault at ${this.opts.address}${typeof code === 'string' ? ` (${code})` : ''}`
    // The transport's error is not kept as the cause: only its code is (never a header or body).
    return new SidekeyError('SIDEKEY_E_UNAVAILABLE', `store ${this.opts.storeName}: ${what} for ${c.method} ${c.path.split('?')[0] ?? ''}`, { store: this.opts.storeName, ...(typeof code === 'string' ? { errno: code } : {}) })
  }
}
