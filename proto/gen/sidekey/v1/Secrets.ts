// Original file: proto/sidekey/v1/secrets.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { GetRequest as _sidekey_v1_GetRequest, GetRequest__Output as _sidekey_v1_GetRequest__Output } from '../../sidekey/v1/GetRequest.js';
import type { GetResponse as _sidekey_v1_GetResponse, GetResponse__Output as _sidekey_v1_GetResponse__Output } from '../../sidekey/v1/GetResponse.js';
import type { ListRequest as _sidekey_v1_ListRequest, ListRequest__Output as _sidekey_v1_ListRequest__Output } from '../../sidekey/v1/ListRequest.js';
import type { ListResponse as _sidekey_v1_ListResponse, ListResponse__Output as _sidekey_v1_ListResponse__Output } from '../../sidekey/v1/ListResponse.js';
import type { SecretEvent as _sidekey_v1_SecretEvent, SecretEvent__Output as _sidekey_v1_SecretEvent__Output } from '../../sidekey/v1/SecretEvent.js';
import type { WatchRequest as _sidekey_v1_WatchRequest, WatchRequest__Output as _sidekey_v1_WatchRequest__Output } from '../../sidekey/v1/WatchRequest.js';

export interface SecretsClient extends grpc.Client {
  Get(argument: _sidekey_v1_GetRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  Get(argument: _sidekey_v1_GetRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  Get(argument: _sidekey_v1_GetRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  Get(argument: _sidekey_v1_GetRequest, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  get(argument: _sidekey_v1_GetRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  get(argument: _sidekey_v1_GetRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  get(argument: _sidekey_v1_GetRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  get(argument: _sidekey_v1_GetRequest, callback: grpc.requestCallback<_sidekey_v1_GetResponse__Output>): grpc.ClientUnaryCall;
  
  List(argument: _sidekey_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  List(argument: _sidekey_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  List(argument: _sidekey_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  List(argument: _sidekey_v1_ListRequest, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _sidekey_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _sidekey_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _sidekey_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  list(argument: _sidekey_v1_ListRequest, callback: grpc.requestCallback<_sidekey_v1_ListResponse__Output>): grpc.ClientUnaryCall;
  
  Watch(argument: _sidekey_v1_WatchRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_sidekey_v1_SecretEvent__Output>;
  Watch(argument: _sidekey_v1_WatchRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_sidekey_v1_SecretEvent__Output>;
  watch(argument: _sidekey_v1_WatchRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_sidekey_v1_SecretEvent__Output>;
  watch(argument: _sidekey_v1_WatchRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_sidekey_v1_SecretEvent__Output>;
  
}

export interface SecretsHandlers extends grpc.UntypedServiceImplementation {
  Get: grpc.handleUnaryCall<_sidekey_v1_GetRequest__Output, _sidekey_v1_GetResponse>;
  
  List: grpc.handleUnaryCall<_sidekey_v1_ListRequest__Output, _sidekey_v1_ListResponse>;
  
  Watch: grpc.handleServerStreamingCall<_sidekey_v1_WatchRequest__Output, _sidekey_v1_SecretEvent>;
  
}

export interface SecretsDefinition extends grpc.ServiceDefinition {
  Get: MethodDefinition<_sidekey_v1_GetRequest, _sidekey_v1_GetResponse, _sidekey_v1_GetRequest__Output, _sidekey_v1_GetResponse__Output>
  List: MethodDefinition<_sidekey_v1_ListRequest, _sidekey_v1_ListResponse, _sidekey_v1_ListRequest__Output, _sidekey_v1_ListResponse__Output>
  Watch: MethodDefinition<_sidekey_v1_WatchRequest, _sidekey_v1_SecretEvent, _sidekey_v1_WatchRequest__Output, _sidekey_v1_SecretEvent__Output>
}
