// Original file: proto/sidekey/v1/secrets.proto


export interface WatchRequest {
  'names'?: (string)[];
}

export interface WatchRequest__Output {
  'names': (string)[];
}
