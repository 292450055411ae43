// Original file: proto/sidekey/v1/secrets.proto


export interface SecretInfo {
  'name'?: (string);
  'version'?: (string);
  'updatedAt'?: (string);
  'refs'?: (string)[];
  'ready'?: (boolean);
  'errorCode'?: (string);
}

export interface SecretInfo__Output {
  'name': (string);
  'version': (string);
  'updatedAt': (string);
  'refs': (string)[];
  'ready': (boolean);
  'errorCode': (string);
}
