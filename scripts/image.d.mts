// Types of scripts/image.mjs, for test/unit/image.test.ts.
import type { IgnoreRule, ImageConfig, Stage } from './image-dockerfile.mjs'
export declare const VERSIONS: Readonly<{ debian: string, node: string, npm: string, kubernetes: string }>
export declare const DEFAULT_NAME: string
export declare const PAUSE_NAME: string
export declare const BASES: Readonly<Record<string, { key: string, config: ImageConfig }>>
export declare function loadDockerfile (root?: string): { stages: Stage[], ignore: IgnoreRule[] }
export declare function imageConfig (stages: Stage[]): ImageConfig
export declare function inputKey (name: string, root?: string): string
export declare function cachedPath (name?: string): string
export declare function refName (name: string): string
export declare function main (argv: string[]): Promise<void>
