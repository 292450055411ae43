// Original file: proto/sidekey/v1/secrets.proto

import type { SecretInfo as _sidekey_v1_SecretInfo, SecretInfo__Output as _sidekey_v1_SecretInfo__Output } from '../../sidekey/v1/SecretInfo.js';

export interface ListResponse {
  'secrets'?: (_sidekey_v1_SecretInfo)[];
}

export interface ListResponse__Output {
  'secrets': (_sidekey_v1_SecretInfo__Output)[];
}
