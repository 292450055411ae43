// Original file: proto/sidekey/v1/secrets.proto


// Original file: proto/sidekey/v1/secrets.proto

export const _sidekey_v1_SecretEvent_Kind = {
  KIND_UNSPECIFIED: 'KIND_UNSPECIFIED',
  CURRENT: 'CURRENT',
  CHANGED: 'CHANGED',
} as const;

export type _sidekey_v1_SecretEvent_Kind =
  | 'KIND_UNSPECIFIED'
  | 0
  | 'CURRENT'
  | 1
  | 'CHANGED'
  | 2

export type _sidekey_v1_SecretEvent_Kind__Output = typeof _sidekey_v1_SecretEvent_Kind[keyof typeof _sidekey_v1_SecretEvent_Kind]

export interface SecretEvent {
  'name'?: (string);
  'version'?: (string);
  'updatedAt'?: (string);
  'kind'?: (_sidekey_v1_SecretEvent_Kind);
}

export interface SecretEvent__Output {
  'name': (string);
  'version': (string);
  'updatedAt': (string);
  'kind': (_sidekey_v1_SecretEvent_Kind__Output);
}
