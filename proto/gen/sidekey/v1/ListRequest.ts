// Original file: proto/sidekey/v1/secrets.proto


export interface ListRequest {
}

export interface ListRequest__Output {
}
