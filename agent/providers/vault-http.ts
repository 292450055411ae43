// The one place Sidekey talks HTTP to Vault/OpenBao: `<address>/v1/<path>`,
// X-Vault-Token and X-Vault-Namespace, a JSON body, and answers as
// {status, body} so callers map statuses to Sidekey codes.
//
// Requests go through node:http (node:https; agent/http-client.ts): one keep-alive pool per store, with the store's
// CA and server name, at most 4 connections, and the store's timeout as the
// connect, headers and body timeouts. Nothing is read from the environment
// (VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, VAULT_SKIP_VERIFY): a store's
// config is the whole of it. (A client library such as node-vault would load
// axios and its dependencies, about a quarter of the agent's start-up CPU, to
// build what is one URL and two headers.)
import { readFileSync } from 'node:fs'
import { SidekeyError } from '../../core/errors.js'
import { HttpClient, HttpTransportError, type HttpAnswer } from '../http-client.js'
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

export class VaultHttp {
  private readonly transport: HttpClient
  /** `<address>/v1/`, the address without a trailing slash. */
  private readonly base: string

  constructor (private readonly opts: VaultHttpOptions) {
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
    this.base = `${opts.address.replace(/\/$/, '')}/v1/`
  }

  async call (c: VaultCall, signal: AbortSignal | undefined): Promise<VaultAnswer> {
    this.opts.meter?.request(`${c.method} ${c.path.split('?')[0] ?? ''}`)
    if (signal?.aborted === true) throw this.unavailable(c, undefined)
    // The token and namespace are the store's only: never VAULT_TOKEN / VAULT_NAMESPACE from the agent's environment.
    const headers: Record<string, string> = { 'X-Vault-Request': 'true' }
    if (c.token !== undefined) headers['X-Vault-Token'] = c.token
    if (this.opts.namespace !== undefined && this.opts.namespace !== '') headers['X-Vault-Namespace'] = this.opts.namespace
    let body: string | undefined
    if (c.body !== undefined) {
      body = JSON.stringify(c.body)
      headers['content-type'] = 'application/json'
    }
    let r: HttpAnswer
    try {
      r = await this.transport.request({ method: c.method, url: this.base + c.path, headers, ...(body !== undefined ? { body } : {}), ...(signal !== undefined ? { signal } : {}) })
    } catch (err) {
      throw this.unavailable(c, err)
    }
    const text = r.body.toString('utf8')
    let parsed: unknown = text
    if (text !== '') {
      try { parsed = JSON.parse(text) } catch { /* not JSON: the text itself */ }
    }
    return { status: r.status, body: parsed }
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
