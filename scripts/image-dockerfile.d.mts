// Types of scripts/image-dockerfile.mjs, for test/unit/image.test.ts.
export declare const SUPPORTED: readonly string[]
export declare class ImageError extends Error {
  constructor (code: string, message: string)
  code: string
}
export type Step =
  | { op: 'WORKDIR', line: number, path: string }
  | { op: 'USER', line: number, user: string }
  | { op: 'ENV', line: number, pairs: Array<[string, string]> }
  | { op: 'RUN', line: number, command: string }
  | { op: 'ENTRYPOINT' | 'CMD', line: number, argv: string[] }
  | { op: 'COPY', line: number, from: string | null, sources: string[], dest: string }
export interface Stage { name: string | null, base: string, line: number, steps: Step[] }
export interface ImageConfig { User: string, Env: string[], WorkingDir: string, Entrypoint?: string[], Cmd?: string[] }
export interface IgnoreRule { negate: boolean, re: RegExp, pattern: string }
export declare function logicalLines (text: string): Array<{ line: number, text: string }>
export declare function parseDockerfile (text: string): Stage[]
export declare function resolvePath (workdir: string, p: string): string
export declare function stageConfig (baseConfig: Partial<ImageConfig>, stage: { steps: Step[] }): ImageConfig
export declare function parseDockerignore (text: string): IgnoreRule[]
export declare function isIgnored (rules: IgnoreRule[], relPath: string): boolean
