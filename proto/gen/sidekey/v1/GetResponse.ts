// Original file: proto/sidekey/v1/secrets.proto


export interface GetResponse {
  'name'?: (string);
  'value'?: (Buffer | Uint8Array | string);
  'version'?: (string);
  'updatedAt'?: (string);
  'notModified'?: (boolean);
}

export interface GetResponse__Output {
  'name': (string);
  'value': (Buffer);
  'version': (string);
  'updatedAt': (string);
  'notModified': (boolean);
}
