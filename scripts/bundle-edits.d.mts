// Types of scripts/bundle-edits.mjs, for test/unit/bundle-edits.test.ts and test/unit/agent-bundle-start.test.ts.
import type { Plugin } from 'esbuild'
/** [file filter, [text, replacement][], { deferred name: its uses after the edits }?] */
export type Deferred = Array<[RegExp, Array<[string, string]>, Record<string, number>?]>
export declare function usesOf (src: string, name: string): number
export declare function deferRequires (deferred: Deferred): Plugin
export declare function builtinView (call: string): string
export declare const BUILTIN_WRAPPERS: { readonly chunks: RegExp, readonly minified: RegExp }
export declare function escName (name: string): string
export declare function toEsmName (src: string, minified: boolean, file: string): string
export declare function toEsmCalls (src: string, toEsm: string): Set<string>
