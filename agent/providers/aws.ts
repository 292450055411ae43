// AWS Secrets Manager backend.
//   aws:prod/anthropic[#key][@AWSCURRENT|@AWSPREVIOUS|@<custom stage>|@<versionId>]
//   aws:arn:aws:secretsmanager:<region>:<account>:secret:<name>   (region taken from the ARN)
// Credentials: web identity (IRSA) through the SDK's own fromTokenFile, which
// reads the projected token file each time it refreshes credentials; the
// client caches them until shortly before they expire. Rotation check:
// DescribeSecret's VersionIdsToStages (no value) before GetSecretValue.
import { hostname } from 'node:os'
import { SidekeyError, type ErrorCode } from '../../core/errors.js'
import type { SecretRef } from '../../core/reference.js'
import type { StoreConfigOf } from '../../core/config/schema.js'
import { parseDuration } from '../../core/duration.js'
import type { Have, Provider, ProviderContext, SecretData, Snapshot, SyncResult } from './provider.js'
import { checkSize, dataFromText, isNetworkError } from './secret-data.js'
import { versionSelector } from './aws-version.js'

type SM = typeof import('../aws-sdk.js')
type Client = InstanceType<SM['SecretsManagerClient']>
type CredentialProvider = (opts?: Record<string, unknown>) => Promise<{ accessKeyId: string, secretAccessKey: string, sessionToken?: string, expiration?: Date }>

export type AwsStoreConfig = StoreConfigOf<'aws'>

const ARN_RE = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+$/

export class AwsProvider implements Provider {
  readonly type = 'aws'
  private sm: SM | undefined
  private readonly clients = new Map<string, Client>()
  private credentials: CredentialProvider | undefined
  private readonly timeoutMs: number

  constructor (private readonly config: AwsStoreConfig, private readonly ctx: ProviderContext) {
    this.timeoutMs = config.timeout !== undefined ? parseDuration(config.timeout, `config.stores.${ctx.storeName}.timeout`) : 10_000
  }

  private region (ref: SecretRef): string {
    const m = ARN_RE.exec(ref.path)
    return this.config.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? m?.[1] ?? 'us-east-1'
  }

  /**
   * One client per region, also when the first sync asks for 1,000 secrets at
   * once: the first caller's promise is shared, so concurrent callers do not
   * each build a client, a credential provider and an STS session.
   */
  private readonly pending = new Map<string, Promise<{ sm: SM, client: Client }>>()

  private async client (ref: SecretRef): Promise<{ sm: SM, client: Client }> {
    const region = this.region(ref)
    const client = this.clients.get(region)
    if (client !== undefined && this.sm !== undefined) return { sm: this.sm, client }
    let p = this.pending.get(region)
    if (p === undefined) {
      p = this.makeClient(region)
      this.pending.set(region, p)
      p.then(() => this.pending.delete(region), () => this.pending.delete(region))
    }
    return await p
  }

  private async makeClient (region: string): Promise<{ sm: SM, client: Client }> {
    this.sm ??= await import('../aws-sdk.js')
    const sm = this.sm
    let client = this.clients.get(region)
    if (client === undefined) {
      this.credentials ??= await this.credentialProvider(region)
      const handler = { requestTimeout: this.timeoutMs, connectionTimeout: Math.min(this.timeoutMs, 5000) }
      client = new sm.SecretsManagerClient({
        region,
        maxAttempts: 2,
        requestHandler: handler,
        ...(this.config.endpoint !== undefined ? { endpoint: this.config.endpoint } : {}),
        ...(this.credentials !== undefined ? { credentials: this.credentials } : {}),
      })
      this.clients.set(region, client)
    }
    return { sm, client }
  }

  /** Web identity when a role and token file are known (config or the IRSA env vars); else the SDK's default chain. */
  private async credentialProvider (region: string): Promise<CredentialProvider | undefined> {
    const store = this.ctx.storeName
    const roleArn = this.config.roleArn ?? process.env.AWS_ROLE_ARN
    const tokenFile = this.config.tokenFile ?? process.env.AWS_WEB_IDENTITY_TOKEN_FILE
    if (roleArn === undefined && tokenFile === undefined) return undefined
    if (roleArn === undefined || tokenFile === undefined) {
      throw new SidekeyError('SIDEKEY_E_CONFIG', `config.stores.${store}: web identity needs both roleArn and tokenFile (or AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE); ${roleArn === undefined ? 'roleArn' : 'tokenFile'} is missing`, { field: `stores.${store}.${roleArn === undefined ? 'roleArn' : 'tokenFile'}` })
    }
    const { fromTokenFile } = this.sm ??= await import('../aws-sdk.js')
    const inner = fromTokenFile({
      roleArn,
      webIdentityTokenFile: tokenFile,
      roleSessionName: this.config.roleSessionName ?? process.env.AWS_ROLE_SESSION_NAME ?? `sidekey-${hostname()}`.replace(/[^\w+=,.@-]/g, '-').slice(0, 64),
      clientConfig: {
        region,
        maxAttempts: 2,
        requestHandler: { requestTimeout: this.timeoutMs, connectionTimeout: Math.min(this.timeoutMs, 5000) },
        ...(this.config.stsEndpoint !== undefined ? { endpoint: this.config.stsEndpoint } : {}),
      },
    }) as unknown as CredentialProvider
    const meter = this.ctx.meter
    const wrapped: CredentialProvider = async (opts) => {
      meter?.request('sts:AssumeRoleWithWebIdentity')
      try {
        return await inner(opts)
      } catch (err) {
        const name = (err as { name?: unknown }).name
        if (isNetworkError(err) && name !== 'CredentialsProviderError') {
          throw new SidekeyError('SIDEKEY_E_UNAVAILABLE', `store ${store}: cannot reach STS${this.config.stsEndpoint !== undefined ? ` at ${this.config.stsEndpoint}` : ''} to assume ${roleArn}`, { store })
        }
        throw new SidekeyError('SIDEKEY_E_AUTH', `store ${store}: AssumeRoleWithWebIdentity for ${roleArn} failed (${typeof name === 'string' ? name : 'error'}); check the token file ${tokenFile} (audience sts.amazonaws.com) and the role's trust policy`, { store, roleArn, error: typeof name === 'string' ? name : undefined })
      }
    }
    return wrapped
  }

  /** DescribeSecret (no value) names the current version; GetSecretValue only when it differs from `have`. */
  async sync (ref: SecretRef, have: Have | undefined, signal?: AbortSignal): Promise<SyncResult> {
    if (have !== undefined) {
      const current = await this.currentVersion(ref, signal)
      if (current === have.version) return { changed: false }
    }
    return { changed: true, ...(await this.read(ref, signal)) }
  }

  private async read (ref: SecretRef, signal: AbortSignal | undefined): Promise<Snapshot> {
    const { sm, client } = await this.client(ref)
    const out = await this.send(ref, 'GetSecretValue', async () => await client.send(new sm.GetSecretValueCommand({ SecretId: ref.path, ...versionSelector(ref.version) }), signal !== undefined ? { abortSignal: signal } : {}))
    let data: SecretData
    if (typeof out.SecretString === 'string') data = dataFromText(out.SecretString)
    else if (out.SecretBinary instanceof Uint8Array) data = { kind: 'bytes', bytes: Buffer.from(out.SecretBinary) }
    else throw new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: Secrets Manager answered with neither SecretString nor SecretBinary`, { ref: ref.raw })
    checkSize(data, ref, this.ctx.maxValueBytes)
    if (typeof out.VersionId !== 'string') throw new SidekeyError('SIDEKEY_E_BACKEND', `${ref.raw}: Secrets Manager answered without a VersionId`, { ref: ref.raw })
    // For the AWS-agent-compatible local API: the GetSecretValue fields that are not the value.
    const meta = {
      arn: out.ARN,
      name: out.Name,
      versionStages: out.VersionStages ?? [],
      createdDate: out.CreatedDate instanceof Date ? out.CreatedDate.getTime() : undefined,
      binary: typeof out.SecretString !== 'string',
    }
    return { data, version: out.VersionId, meta }
  }

  private async currentVersion (ref: SecretRef, signal: AbortSignal | undefined): Promise<string> {
    const sel = versionSelector(ref.version)
    // A version id names immutable content: nothing to ask.
    if (sel.VersionId !== undefined) return sel.VersionId
    const stage = sel.VersionStage ?? 'AWSCURRENT'
    const { sm, client } = await this.client(ref)
    const out = await this.send(ref, 'DescribeSecret', async () => await client.send(new sm.DescribeSecretCommand({ SecretId: ref.path }), signal !== undefined ? { abortSignal: signal } : {}))
    if (out.DeletedDate !== undefined) throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: the secret is scheduled for deletion`, { ref: ref.raw })
    for (const [id, stages] of Object.entries(out.VersionIdsToStages ?? {})) {
      if (stages.includes(stage)) return id
    }
    throw new SidekeyError('SIDEKEY_E_NOT_FOUND', `${ref.raw}: no version of the secret carries the stage ${stage}`, { ref: ref.raw, stage })
  }

  private async send<T> (ref: SecretRef, op: string, fn: () => Promise<T>): Promise<T> {
    this.ctx.meter?.request(op)
    try {
      return await fn()
    } catch (err) {
      throw this.mapError(err, ref, op)
    }
  }

  private mapError (err: unknown, ref: SecretRef, op: string): SidekeyError {
    if (err instanceof SidekeyError) return err
    const name = String((err as { name?: unknown }).name ?? 'Error')
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
    const details = { ref: ref.raw, store: this.ctx.storeName, error: name, ...(status !== undefined ? { status } : {}) }
    const e = (code: ErrorCode, msg: string): SidekeyError => new SidekeyError(code, `${ref.raw}: ${msg}`, details)
    // AWS error messages can quote request input; only the error name is kept.
    switch (name) {
      case 'ResourceNotFoundException':
        return e('SIDEKEY_E_NOT_FOUND', `Secrets Manager has no secret ${ref.path}${ref.version !== undefined ? ` with version ${ref.version}` : ''}`)
      case 'AccessDeniedException': case 'AccessDenied':
        return e('SIDEKEY_E_DENIED', `Secrets Manager denied ${op} (${name}); allow secretsmanager:${op} on this secret for the pod's role`)
      case 'UnrecognizedClientException': case 'InvalidSignatureException': case 'ExpiredTokenException': case 'InvalidClientTokenId': case 'IncompleteSignature': case 'SignatureDoesNotMatch': case 'MissingAuthenticationToken':
        return e('SIDEKEY_E_AUTH', `Secrets Manager rejected the credentials (${name}); check the role and the token file`)
      case 'InvalidRequestException':
        return e('SIDEKEY_E_NOT_FOUND', `Secrets Manager refused ${op} (${name}): the secret may be scheduled for deletion or the version has no value`)
      case 'DecryptionFailure':
        return e('SIDEKEY_E_DENIED', `Secrets Manager cannot decrypt the secret with its KMS key (${name}); allow kms:Decrypt for the pod's role`)
      case 'ThrottlingException': case 'InternalServiceError': case 'InternalServiceErrorException': case 'ServiceUnavailable': case 'ServiceUnavailableException': case 'RequestTimeout': case 'TimeoutError':
        return e('SIDEKEY_E_UNAVAILABLE', `Secrets Manager is unavailable (${name})`)
    }
    if (isNetworkError(err)) return e('SIDEKEY_E_UNAVAILABLE', `cannot reach Secrets Manager${this.config.endpoint !== undefined ? ` at ${this.config.endpoint}` : ''} (${String((err as { code?: unknown }).code ?? name)})`)
    if (status === 403) return e('SIDEKEY_E_DENIED', `Secrets Manager denied ${op} (HTTP 403)`)
    if (status === 401) return e('SIDEKEY_E_AUTH', `Secrets Manager rejected the credentials (HTTP 401)`)
    if (status !== undefined && status >= 500) return e('SIDEKEY_E_UNAVAILABLE', `Secrets Manager failed (HTTP ${status})`)
    return e('SIDEKEY_E_BACKEND', `Secrets Manager ${op} failed (${name}${status !== undefined ? `, HTTP ${status}` : ''})`)
  }

  async close (): Promise<void> {
    for (const c of this.clients.values()) c.destroy()
    this.clients.clear()
  }
}

export function createAwsProvider (config: AwsStoreConfig, ctx: ProviderContext): Provider {
  return new AwsProvider(config, ctx)
}
