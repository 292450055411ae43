// Original file: proto/sidekey/v1/secrets.proto


export interface GetRequest {
  'name'?: (string);
  'ifNoneMatch'?: (string);
  'waitMs'?: (number);
}

export interface GetRequest__Output {
  'name': (string);
  'ifNoneMatch': (string);
  'waitMs': (number);
}
