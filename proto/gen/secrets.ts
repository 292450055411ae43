import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { GetRequest as _sidekey_v1_GetRequest, GetRequest__Output as _sidekey_v1_GetRequest__Output } from './sidekey/v1/GetRequest.js';
import type { GetResponse as _sidekey_v1_GetResponse, GetResponse__Output as _sidekey_v1_GetResponse__Output } from './sidekey/v1/GetResponse.js';
import type { ListRequest as _sidekey_v1_ListRequest, ListRequest__Output as _sidekey_v1_ListRequest__Output } from './sidekey/v1/ListRequest.js';
import type { ListResponse as _sidekey_v1_ListResponse, ListResponse__Output as _sidekey_v1_ListResponse__Output } from './sidekey/v1/ListResponse.js';
import type { SecretEvent as _sidekey_v1_SecretEvent, SecretEvent__Output as _sidekey_v1_SecretEvent__Output } from './sidekey/v1/SecretEvent.js';
import type { SecretInfo as _sidekey_v1_SecretInfo, SecretInfo__Output as _sidekey_v1_SecretInfo__Output } from './sidekey/v1/SecretInfo.js';
import type { SecretsClient as _sidekey_v1_SecretsClient, SecretsDefinition as _sidekey_v1_SecretsDefinition } from './sidekey/v1/Secrets.js';
import type { WatchRequest as _sidekey_v1_WatchRequest, WatchRequest__Output as _sidekey_v1_WatchRequest__Output } from './sidekey/v1/WatchRequest.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  sidekey: {
    v1: {
      GetRequest: MessageTypeDefinition<_sidekey_v1_GetRequest, _sidekey_v1_GetRequest__Output>
      GetResponse: MessageTypeDefinition<_sidekey_v1_GetResponse, _sidekey_v1_GetResponse__Output>
      ListRequest: MessageTypeDefinition<_sidekey_v1_ListRequest, _sidekey_v1_ListRequest__Output>
      ListResponse: MessageTypeDefinition<_sidekey_v1_ListResponse, _sidekey_v1_ListResponse__Output>
      SecretEvent: MessageTypeDefinition<_sidekey_v1_SecretEvent, _sidekey_v1_SecretEvent__Output>
      SecretInfo: MessageTypeDefinition<_sidekey_v1_SecretInfo, _sidekey_v1_SecretInfo__Output>
      Secrets: SubtypeConstructor<typeof grpc.Client, _sidekey_v1_SecretsClient> & { service: _sidekey_v1_SecretsDefinition }
      WatchRequest: MessageTypeDefinition<_sidekey_v1_WatchRequest, _sidekey_v1_WatchRequest__Output>
    }
  }
}

