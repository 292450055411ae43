// JSON-schema fragments shared by the agent-config schema and the store
// descriptors (core/stores.ts), kept apart so neither imports the other.
export const duration = { type: 'string', pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)$' } as const
export const port = { type: 'integer', minimum: 0, maximum: 65535 } as const
export const path = { type: 'string', minLength: 1, maxLength: 4096 } as const
