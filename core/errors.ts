// One catalogue of every error Sidekey raises. Callers branch on `err.code`,
// never on message text. Every message says what to change; none carries a
// secret value (references are data and may appear, values never do).

/** gRPC status names (grpc-js `status`), in code order; core/ does not load grpc-js. */
export const GRPC_STATUS_NAMES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'] as const
export type GrpcStatusName = typeof GRPC_STATUS_NAMES[number]

export interface ErrorInfo {
  /** HTTP status used when the error crosses the local API, the metrics listener or the webhook. */
  readonly status: number
  /** gRPC status used when the error crosses the local gRPC API (the code itself goes in trailing metadata). */
  readonly grpc: GrpcStatusName
  /**
   * The status a peer-compatible route (agent/compat/) answers instead, where
   * the peer's own agent answers another one (AWS: 400 for an unknown secret;
   * Vault: 403 "permission denied" for any path the token may not read).
   */
  readonly peer?: { readonly aws?: number, readonly vault?: number }
  /** One line for the README table: when this happens. */
  readonly doc: string
}

export const ERRORS = {
  SIDEKEY_E_CONFIG: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'The agent or injector configuration does not match the schema; the message names the field.' },
  SIDEKEY_E_CONFIG_FILE: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'The configuration file cannot be read or is not valid JSON.' },
  SIDEKEY_E_REF_SYNTAX: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'A secret reference does not follow `<store>:<path>[#<key>][@<version>]`.' },
  SIDEKEY_E_REF_STORE: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'A reference names a store that is not configured and is not a default store.' },
  SIDEKEY_E_TEMPLATE: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'A template does not parse, or uses a helper other than `secret`.' },
  SIDEKEY_E_DURATION: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'A duration is not of the form `500ms`, `30s`, `5m`, `1h`.' },
  SIDEKEY_E_NOT_FOUND: { status: 404, grpc: 'NOT_FOUND', peer: { aws: 400 }, doc: 'The backend has no secret at the reference (or no such version).' },
  SIDEKEY_E_KEY_NOT_FOUND: { status: 404, grpc: 'NOT_FOUND', doc: 'The secret exists but has no field named by `#key`.' },
  SIDEKEY_E_DENIED: { status: 403, grpc: 'PERMISSION_DENIED', doc: 'The backend refused the read: the pod identity lacks permission.' },
  SIDEKEY_E_AUTH: { status: 401, grpc: 'UNAUTHENTICATED', doc: 'Login to the backend failed: bad, expired or wrong-audience credential.' },
  SIDEKEY_E_BACKEND: { status: 502, grpc: 'UNAVAILABLE', doc: 'The backend failed or answered something that is not a secret.' },
  SIDEKEY_E_UNAVAILABLE: { status: 503, grpc: 'UNAVAILABLE', doc: 'The backend cannot be reached.' },
  SIDEKEY_E_VALUE_TOO_LARGE: { status: 413, grpc: 'RESOURCE_EXHAUSTED', doc: 'A secret value exceeds `maxValueBytes`.' },
  SIDEKEY_E_FORMAT: { status: 422, grpc: 'FAILED_PRECONDITION', doc: 'A value cannot be rendered in the requested format (e.g. `env` of a non-map).' },
  SIDEKEY_E_LOCAL_KEY: { status: 500, grpc: 'FAILED_PRECONDITION', doc: 'The local store key is missing or malformed (`SIDEKEY_LOCAL_KEY`, 32 bytes base64 or hex).' },
  SIDEKEY_E_LOCAL_DECRYPT: { status: 500, grpc: 'FAILED_PRECONDITION', doc: 'The local store cannot be decrypted: wrong key or the file was tampered with.' },
  SIDEKEY_E_LOCAL_STORE: { status: 500, grpc: 'FAILED_PRECONDITION', doc: 'The local store file is not a Sidekey store (bad JSON or shape).' },
  SIDEKEY_E_WRITE: { status: 500, grpc: 'INTERNAL', doc: 'The agent could not write the secrets directory.' },
  SIDEKEY_E_UNAUTHENTICATED: { status: 401, grpc: 'UNAUTHENTICATED', peer: { aws: 403, vault: 403 }, doc: 'A local API request carried no token.' },
  SIDEKEY_E_FORBIDDEN: { status: 403, grpc: 'PERMISSION_DENIED', doc: 'A local API request carried a wrong token.' },
  SIDEKEY_E_FORWARDED: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'A local API request carried `X-Forwarded-For`; the endpoint serves only the pod itself.' },
  SIDEKEY_E_SECRET_UNKNOWN: { status: 404, grpc: 'NOT_FOUND', peer: { aws: 400, vault: 403 }, doc: 'The local API has no secret with that name.' },
  SIDEKEY_E_NOT_READY: { status: 503, grpc: 'UNAVAILABLE', doc: 'The secret has not been fetched yet.' },
  SIDEKEY_E_BAD_REQUEST: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'A local API request has a malformed parameter (e.g. `?wait=`).' },
  SIDEKEY_E_CLIENT: { status: 400, grpc: 'FAILED_PRECONDITION', doc: '`sidekey get` cannot reach the agent or lacks `SIDEKEY_ADDR` / `SIDEKEY_TOKEN_FILE`.' },
  SIDEKEY_E_ON_CHANGE: { status: 500, grpc: 'INTERNAL', doc: 'An `onChange` hook could not be delivered (target not found, POST failed).' },
  SIDEKEY_E_ANNOTATION: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'A `sidekey.dev/*` annotation is malformed; the message names it.' },
  SIDEKEY_E_POLICY: { status: 403, grpc: 'PERMISSION_DENIED', doc: 'The injector policy forbids a reference for this namespace; the message names the rule.' },
  SIDEKEY_E_CONFLICT: { status: 409, grpc: 'ALREADY_EXISTS', doc: 'An injected name (volume, container) already exists in the pod.' },
  SIDEKEY_E_ADMISSION: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'The AdmissionReview request is malformed or not a Pod.' },
  SIDEKEY_E_DEADLINE: { status: 504, grpc: 'DEADLINE_EXCEEDED', doc: 'init-only: a required secret was not fetched within `syncDeadline` (`sidekey.dev/sync-deadline`); the message names it and its last error.' },
  SIDEKEY_E_BUSY: { status: 429, grpc: 'RESOURCE_EXHAUSTED', doc: 'The webhook has `--max-in-flight` admissions in flight; the API server retries.' },
  SIDEKEY_E_CAPACITY: { status: 503, grpc: 'RESOURCE_EXHAUSTED', doc: 'A local API cap is reached (connections, watchers, long-polls, gRPC streams); retry later.' },
  SIDEKEY_E_HOST: { status: 421, grpc: 'INVALID_ARGUMENT', doc: 'A local API request named a `Host` other than a loopback address (DNS rebinding).' },
  SIDEKEY_E_INPUT: { status: 400, grpc: 'INVALID_ARGUMENT', doc: '`sidekey inject` input is not YAML/JSON of a supported kind.' },
  SIDEKEY_E_METHOD: { status: 405, grpc: 'UNIMPLEMENTED', doc: 'A request used a method the endpoint does not serve: the local API and the metrics listener are GET-only, the webhook takes POST.' },
  SIDEKEY_E_ROUTE: { status: 404, grpc: 'UNIMPLEMENTED', doc: 'No such path on the local API, the metrics listener or the webhook; the message names the paths there are.' },
  SIDEKEY_E_BODY_TOO_LARGE: { status: 413, grpc: 'RESOURCE_EXHAUSTED', doc: 'An AdmissionReview is over `--max-body-bytes`, has more than `--max-json-containers` objects and arrays, or nests deeper than 64.' },
  SIDEKEY_E_HEADERS_TOO_LARGE: { status: 431, grpc: 'RESOURCE_EXHAUSTED', doc: 'A local API request has more than 16 KiB of headers.' },
  SIDEKEY_E_REQUEST_TIMEOUT: { status: 408, grpc: 'DEADLINE_EXCEEDED', doc: 'A local API request was not received within `limits.headersTimeout`.' },
  SIDEKEY_E_STOPPING: { status: 503, grpc: 'UNAVAILABLE', doc: 'The webhook is shutting down: `/readyz` answers 503 so the Service stops sending it admissions.' },
  SIDEKEY_E_INTERNAL: { status: 500, grpc: 'INTERNAL', doc: 'Sidekey failed while answering (a bug, not your input); the component\'s log has the cause.' },
  SIDEKEY_E_USAGE: { status: 400, grpc: 'INVALID_ARGUMENT', doc: 'The command line is wrong (unknown command, option or argument); `sidekey <command> --help` lists them. Exit code 2.' },
} as const satisfies Record<string, ErrorInfo>

export type ErrorCode = keyof typeof ERRORS

/** Kubernetes' StatusReason for an HTTP status (metav1.StatusReason*), as an AdmissionReview denial carries it. */
const K8S_REASONS: Readonly<Record<number, string>> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 409: 'Conflict',
  413: 'RequestEntityTooLarge', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
}

export function k8sReason (status: number): string | undefined {
  return K8S_REASONS[status]
}

export class SidekeyError extends Error {
  override readonly name = 'SidekeyError'
  readonly code: ErrorCode
  readonly status: number
  readonly grpc: GrpcStatusName
  /** Extra machine-readable fields (field path, reference, rule); never values. */
  readonly details: Readonly<Record<string, unknown>>

  constructor (code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.status = ERRORS[code].status
    this.grpc = ERRORS[code].grpc
    this.details = Object.freeze({ ...details })
  }

  toJSON (): { code: ErrorCode, message: string, details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details }
  }
}

export function isSidekeyError (err: unknown, code?: ErrorCode): err is SidekeyError {
  return err instanceof SidekeyError && (code === undefined || err.code === code)
}

/** Wraps anything thrown into a SidekeyError without copying foreign messages that might echo a value. */
export function toSidekeyError (err: unknown, fallback: ErrorCode, message: string, details: Record<string, unknown> = {}): SidekeyError {
  if (err instanceof SidekeyError) return err
  return new SidekeyError(fallback, message, details, { cause: err })
}
