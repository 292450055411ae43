// The gRPC rendering of an error: the catalogue's gRPC status, the error's
// own message as the status details (no code in the text), and the code in
// trailing metadata, so a client branches on `sidekey-error-code` without
// parsing the message.
import * as grpc from '@grpc/grpc-js'
import { ERRORS, type ErrorCode } from '../core/errors.js'

export const GRPC_ERROR_CODE_KEY = 'sidekey-error-code'

export interface GrpcErrorStatus extends grpc.StatusObject {
  /** The gRPC status name, for metrics and audit lines. */
  readonly name: string
}

export function grpcError (code: ErrorCode, message: string): GrpcErrorStatus {
  const metadata = new grpc.Metadata()
  metadata.set(GRPC_ERROR_CODE_KEY, code)
  const name = ERRORS[code].grpc
  return { code: grpc.status[name], details: message, metadata, name }
}
