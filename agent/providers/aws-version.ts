// Which GetSecretValue field a reference's version names. Its own module: the
// local API's AWS-compatible route (agent/compat/aws-secrets-manager.ts) needs
// it in every agent, the aws provider only in an agent with an aws store.

/** Version ids are UUIDs (32-64 chars); anything shorter is a staging label. */
const VERSION_ID_RE = /^[0-9a-fA-F-]{32,64}$/

export function versionSelector (v: string | undefined): { VersionStage?: string, VersionId?: string } {
  if (v === undefined) return {}
  if (/^AWS[A-Z]+$/.test(v) || !VERSION_ID_RE.test(v)) return { VersionStage: v }
  return { VersionId: v }
}
