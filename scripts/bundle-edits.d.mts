// Types of scripts/bundle-edits.mjs, for test/unit/bundle-edits.test.ts.
import type { Plugin } from 'esbuild'
/** [file filter, [text, replacement][], { deferred name: its uses after the edits }?] */
export type Deferred = Array<[RegExp, Array<[string, string]>, Record<string, number>?]>
export declare function usesOf (src: string, name: string): number
export declare function deferRequires (deferred: Deferred): Plugin
