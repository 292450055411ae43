// The promise-returning file calls the agent uses, built on node:fs's
// callback API with util.promisify: the same syscalls on the same thread
// pool. node:fs/promises is not used on the agent's path because importing it
// loads eight more of Node's modules at every start (readline, the REPL's
// history, fs.watch's watchers, Dir): Node 24, beside the modules the agent
// loads anyway, about 1.2 MiB of resident memory.
import { promisify } from 'node:util'
import * as fs from 'node:fs'

export const chmod = promisify(fs.chmod)
export const close = promisify(fs.close)
export const fstat = promisify(fs.fstat)
export const lstat = promisify(fs.lstat)
export const mkdir = promisify(fs.mkdir)
export const open = promisify(fs.open)
export const readdir = promisify(fs.readdir)
export const readFile = promisify(fs.readFile)
export const readlink = promisify(fs.readlink)
export const rename = promisify(fs.rename)
export const rm = promisify(fs.rm)
export const statfs = promisify(fs.statfs)
export const symlink = promisify(fs.symlink)
export const writeFile = promisify(fs.writeFile)
