// A drop-in for the AWS Secrets Manager Agent's local API (and the Lambda
// extension's): `GET /secretsmanager/get?secretId=&versionId=&versionStage=`
// with the SSRF token in `X-Aws-Parameters-Secrets-Token`, answering the
// GetSecretValue JSON shape. Only secrets this pod binds from an `aws` store
// (format raw) are served; the token is the agent's own local token. Checks
// run in the AWS agent's order (token, then parameters), with its statuses
// (bad token, bad parameter or unknown secret, not GET), which the catalogue
// records as each code's `peer.aws` status.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { SecretSpec } from '../../core/config/load.js'
import type { ErrorCode } from '../../core/errors.js'
import { peerStatus } from '../../core/error-answers.js'
import type { ServedSecret, ServedSet } from '../served.js'
import { presentedToken } from '../access-token.js'
import { versionSelector } from '../providers/aws-version.js'
import { header, quote, sendBody, type CompatRoute, type RouteOutcome } from './route.js'

export const AWS_GET_PATH = '/secretsmanager/get'
const ROUTE = 'aws:/secretsmanager/get'
const PARAMS = new Set(['secretId', 'versionId', 'versionStage', 'refreshNow'])

export interface AwsCompatOptions {
  readonly served: ServedSet
  /** The type of a configured store (`aws`, `vault`, ...). */
  readonly storeType: (store: string) => string | undefined
  readonly checkToken: (t: string | undefined) => 'ok' | 'missing' | 'wrong'
}

interface AwsMeta { arn?: string, name?: string, versionStages?: string[], createdDate?: number, binary?: boolean }

/** Every error this route answers: the AWS agent's body, the catalogue's status for the code (as the AWS agent answers it). */
function fail (res: ServerResponse, type: string, code: ErrorCode, message: string, secret?: string): RouteOutcome {
  return { route: ROUTE, ...(secret !== undefined ? { secret } : {}), status: sendBody(res, peerStatus(code, 'aws'), { __type: type, message, code }) }
}

/** The stage a bound reference follows, or undefined when it pins a version id. */
function stageOf (spec: SecretSpec): string | undefined {
  const sel = versionSelector(spec.ref?.version)
  return sel.VersionStage ?? (sel.VersionId !== undefined ? undefined : 'AWSCURRENT')
}

export function awsSecretsManagerRoute (o: AwsCompatOptions): CompatRoute {
  const bound = [...o.served.specs.values()].filter((s) => s.ref !== undefined && s.format === 'raw' && o.storeType(s.ref.store) === 'aws')

  return (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => {
    if (path !== AWS_GET_PATH) return undefined
    const token = header(req, 'x-aws-parameters-secrets-token') ?? header(req, 'x-vault-token') ?? presentedToken(req.headers['x-sidekey-token'], req.headers.authorization)
    const auth = o.checkToken(token)
    if (auth !== 'ok') {
      return fail(res, 'AccessDeniedException', auth === 'missing' ? 'SIDEKEY_E_UNAUTHENTICATED' : 'SIDEKEY_E_FORBIDDEN',
        auth === 'missing'
          ? 'Bad Token: send the token from SIDEKEY_TOKEN_FILE in X-Aws-Parameters-Secrets-Token'
          : 'Bad Token: X-Aws-Parameters-Secrets-Token does not match; read it again from SIDEKEY_TOKEN_FILE')
    }
    for (const k of query.keys()) {
      if (!PARAMS.has(k)) return fail(res, 'InvalidParameterException', 'SIDEKEY_E_BAD_REQUEST', `unknown parameter: ${quote(k)}; use secretId, versionId, versionStage or refreshNow`)
    }
    const refreshNow = query.get('refreshNow')
    if (refreshNow !== null && !/^(true|false|1|0)$/i.test(refreshNow)) return fail(res, 'InvalidParameterException', 'SIDEKEY_E_BAD_REQUEST', 'invalid refreshNow value; use true or false')
    const secretId = query.get('secretId') ?? ''
    if (secretId === '') return fail(res, 'InvalidParameterException', 'SIDEKEY_E_BAD_REQUEST', 'missing parameter secretId')
    const versionId = query.get('versionId') ?? undefined
    const versionStage = query.get('versionStage') ?? undefined

    const named = bound.filter((s) => {
      if (s.ref?.path === secretId) return true
      const m = o.served.get(s.name)?.meta as AwsMeta | undefined
      return m !== undefined && (m.arn === secretId || m.name === secretId)
    })
    if (named.length === 0) {
      return fail(res, 'ResourceNotFoundException', 'SIDEKEY_E_SECRET_UNKNOWN', `Secrets Manager can't find the specified secret: this pod binds no aws secret "${quote(secretId)}" with format raw; add an annotation sidekey.dev/secret-<name>: aws:${quote(secretId)}`)
    }
    const matching = named.filter((s) => {
      const e = o.served.get(s.name)
      if (versionId !== undefined) {
        if (e?.version !== versionId) return false
        return versionStage === undefined || ((e.meta as AwsMeta | undefined)?.versionStages ?? []).includes(versionStage)
      }
      return stageOf(s) === (versionStage ?? 'AWSCURRENT')
    })
    if (matching.length === 0) {
      const which = versionId !== undefined ? `VersionId: ${quote(versionId)}` : `staging label: ${quote(versionStage ?? 'AWSCURRENT')}`
      return fail(res, 'ResourceNotFoundException', 'SIDEKEY_E_NOT_FOUND', `Secrets Manager can't find the specified secret value for ${which}: this pod binds ${quote(secretId)} only at ${named.map((s) => s.ref?.version ?? 'AWSCURRENT').join(', ')}; bind aws:${quote(secretId)}@<version> to serve it`)
    }
    const whole = matching.find((s) => s.ref?.key === undefined)
    const served = whole !== undefined ? [whole] : matching
    const entries = served.map((s) => o.served.get(s.name))
    if (entries.some((e) => e === undefined)) {
      return fail(res, 'ServiceUnavailable', 'SIDEKEY_E_NOT_READY', `the secret ${quote(secretId)} has not been fetched yet; retry`, served[0]?.name as string)
    }
    const first = entries[0] as ServedSecret
    const meta = (first.meta ?? {}) as AwsMeta
    const value: Record<string, unknown> = {}
    if (whole !== undefined) {
      if (meta.binary === true) value.SecretBinary = first.value.toString('base64')
      else value.SecretString = first.value.toString('utf8')
    } else {
      // Only fields are bound: the secret is served as the JSON object of those fields.
      value.SecretString = JSON.stringify(Object.fromEntries(served.map((s, i) => [s.ref?.key as string, (entries[i] as ServedSecret).value.toString('utf8')])))
    }
    const body = {
      ARN: meta.arn ?? (served[0]?.ref?.path.startsWith('arn:') === true ? served[0].ref.path : undefined),
      Name: meta.name ?? served[0]?.ref?.path,
      VersionId: first.version,
      ...value,
      VersionStages: meta.versionStages ?? (versionStage !== undefined ? [versionStage] : []),
      CreatedDate: (meta.createdDate ?? first.updatedAt) / 1000,
    }
    return { route: ROUTE, secret: served[0]?.name as string, version: first.version, status: sendBody(res, 200, body) }
  }
}
