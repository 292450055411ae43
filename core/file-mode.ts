// Secret files are read-only for everyone: a mode may only grant read bits,
// and must let the owner read. `0777` (writable, executable) or `0200`
// (nobody can read) is a mistake the agent and the injector refuse.

/** Why a mode string is not acceptable, or undefined when it is. */
export function modeProblem (mode: string): string | undefined {
  if (!/^0?[0-7]{3}$/.test(mode)) return 'must be an octal file mode such as 0440'
  const bits = parseInt(mode, 8)
  if ((bits & 0o333) !== 0) return 'grants write or execute; secret files are read-only, use read bits only (0400, 0440 or 0444)'
  if ((bits & 0o400) === 0) return 'does not let the owner read the file; use 0400, 0440 or 0444'
  return undefined
}
