// The AWS SDK v3 pieces the aws provider (providers/aws.ts) uses, in one module: the bundle
// (scripts/bundle.mjs) builds this file and everything it imports into one
// file of its own (vendor-aws.js), loaded by the provider's first client.
export { SecretsManagerClient, GetSecretValueCommand, DescribeSecretCommand } from '@aws-sdk/client-secrets-manager'
export { fromTokenFile } from '@aws-sdk/credential-providers'
