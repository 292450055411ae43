// The Dockerfile subset scripts/image interprets, as pure functions: parse the file into stages,
// derive the runtime image config, match .dockerignore patterns. scripts/image.mjs executes the
// stages; test/unit/image.test.ts parses the project's Dockerfile with these same functions, so an
// instruction the interpreter does not know fails the test instead of being skipped.
//
// Supported, because the Dockerfile uses them and nothing more: FROM image [AS name], WORKDIR,
// COPY [--from=stage] src... dest, RUN (shell form), ENV, USER, ENTRYPOINT, CMD, comments and
// line continuations. Anything else is an ImageError naming the line and what to change.

export const SUPPORTED = Object.freeze(['FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'ENTRYPOINT', 'CMD'])

export class ImageError extends Error {
  constructor (code, message) {
    super(message)
    this.name = 'ImageError'
    this.code = code
  }
}

// Docker's logical lines: comments are whole lines starting with '#' (also inside a continued
// instruction, where they are dropped); a trailing backslash joins the next line.
export function logicalLines (text) {
  const out = []
  let cur = null
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].replace(/\r$/, '')
    const trimmed = raw.trim()
    if (trimmed.startsWith('#')) continue
    if (trimmed === '') continue // blank lines, also inside a continuation (as Docker)
    const cont = /\\\s*$/.test(raw)
    const body = cont ? raw.replace(/\\\s*$/, '') : raw
    if (cur === null) cur = { line: i + 1, text: body }
    else cur.text += body
    if (!cont) { out.push(cur); cur = null }
  }
  if (cur !== null) throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${cur.line}: the file ends inside a line continuation; remove the trailing backslash`)
  return out
}

function jsonArray (args, line, what) {
  let v
  try { v = JSON.parse(args) } catch { return null }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: ${what} JSON form must be an array of strings`)
  }
  return v
}

function noVariables (args, line, op) {
  if (/\$/.test(args)) {
    throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: ${op} uses variable substitution ('$'), which scripts/image does not implement; write the value literally or teach scripts/image-dockerfile.mjs`)
  }
}

// ENV key=value [key=value...] (values may be double- or single-quoted) or the legacy ENV key value.
function parseEnv (args, line) {
  const pairs = []
  if (!/^[^\s=]+=/.test(args)) {
    const m = /^(\S+)\s+(.*)$/.exec(args)
    if (!m) throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: ENV needs key=value`)
    return [[m[1], m[2]]]
  }
  const re = /([^\s=]+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)\s*/y
  let pos = 0
  while (pos < args.length) {
    re.lastIndex = pos
    const m = re.exec(args)
    if (!m) throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: ENV cannot read '${args.slice(pos)}'; use key=value pairs`)
    let v = m[2]
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1')
    else if (v.startsWith("'")) v = v.slice(1, -1)
    pairs.push([m[1], v])
    pos = re.lastIndex
  }
  return pairs
}

// Parse a Dockerfile into stages: [{ name, base, line, steps: [{ op, line, ... }] }].
export function parseDockerfile (text) {
  const stages = []
  for (const { line, text: t } of logicalLines(text)) {
    const m = /^\s*([A-Za-z]+)(?:\s+(.*))?$/.exec(t)
    if (!m) throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: cannot read '${t.trim()}'`)
    const op = m[1].toUpperCase()
    const args = (m[2] ?? '').trim()
    if (!SUPPORTED.includes(op)) {
      throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: instruction ${op} is not supported by scripts/image (it supports ${SUPPORTED.join(', ')}); implement it in scripts/image-dockerfile.mjs and scripts/image.mjs or do without it`)
    }
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+[Aa][Ss]\s+(\S+))?$/.exec(args)
      if (!f || f[1].startsWith('--')) throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: FROM must be 'FROM image [AS name]' (no flags)`)
      noVariables(args, line, 'FROM')
      stages.push({ name: f[2] ?? null, base: f[1], line, steps: [] })
      continue
    }
    const stage = stages.at(-1)
    if (!stage) throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: ${op} before the first FROM`)
    if (args === '') throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: ${op} needs arguments`)
    switch (op) {
      case 'WORKDIR':
        noVariables(args, line, op)
        stage.steps.push({ op, line, path: args })
        break
      case 'USER':
        noVariables(args, line, op)
        if (!/^\d+(:\d+)?$/.test(args)) throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: USER '${args}': scripts/image supports numeric uid[:gid] only`)
        stage.steps.push({ op, line, user: args })
        break
      case 'ENV':
        stage.steps.push({ op, line, pairs: parseEnv(args, line) })
        break
      case 'RUN':
        if (args.startsWith('[')) throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: RUN exec (JSON) form is not supported by scripts/image; use the shell form`)
        if (args.startsWith('--')) throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: RUN flags (${args.split(/\s/)[0]}) are not supported by scripts/image`)
        stage.steps.push({ op, line, command: args })
        break
      case 'ENTRYPOINT':
      case 'CMD': {
        const arr = args.startsWith('[') ? jsonArray(args, line, op) : null
        stage.steps.push({ op, line, argv: arr ?? ['/bin/sh', '-c', args] })
        break
      }
      case 'COPY': {
        noVariables(args, line, op)
        if (args.startsWith('[')) throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: COPY JSON form is not supported by scripts/image; use 'COPY src... dest'`)
        const words = args.split(/\s+/)
        let from = null
        while (words[0]?.startsWith('--')) {
          const flag = words.shift()
          const fm = /^--from=(\S+)$/.exec(flag)
          if (!fm) throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: COPY flag ${flag} is not supported by scripts/image (only --from=stage)`)
          from = fm[1]
        }
        if (words.length < 2) throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: COPY needs at least one source and a destination`)
        if (words.some((w) => /[*?[]/.test(w))) throw new ImageError('IMAGE_E_UNSUPPORTED', `Dockerfile line ${line}: COPY wildcards are not supported by scripts/image; name the sources`)
        const dest = words.pop()
        if (from !== null && !stages.slice(0, -1).some((s) => s.name === from)) {
          throw new ImageError('IMAGE_E_PARSE', `Dockerfile line ${line}: COPY --from=${from} names no earlier stage (scripts/image copies from stages, not from images)`)
        }
        stage.steps.push({ op, line, from, sources: words, dest })
        break
      }
    }
  }
  if (stages.length === 0) throw new ImageError('IMAGE_E_PARSE', 'Dockerfile has no FROM')
  return stages
}

export function resolvePath (workdir, p) {
  const abs = p.startsWith('/') ? p : `${workdir.replace(/\/$/, '')}/${p}`
  const parts = []
  for (const seg of abs.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') parts.pop()
    else parts.push(seg)
  }
  return '/' + parts.join('/')
}

// The image config a stage ends with, from its base image's config and its own steps, with
// Docker's rules: ENV appends or replaces in order, WORKDIR resolves against the previous one,
// ENTRYPOINT clears an inherited CMD (one the stage set itself stays).
export function stageConfig (baseConfig, stage) {
  const env = [...(baseConfig.Env ?? [])]
  let workdir = baseConfig.WorkingDir || '/'
  let user = baseConfig.User ?? ''
  let entrypoint = baseConfig.Entrypoint ?? null
  let cmd = baseConfig.Cmd ?? null
  let cmdSet = false
  for (const step of stage.steps) {
    if (step.op === 'ENV') {
      for (const [k, v] of step.pairs) {
        const i = env.findIndex((e) => e.startsWith(`${k}=`))
        if (i >= 0) env[i] = `${k}=${v}`
        else env.push(`${k}=${v}`)
      }
    } else if (step.op === 'WORKDIR') workdir = resolvePath(workdir, step.path)
    else if (step.op === 'USER') user = step.user
    else if (step.op === 'ENTRYPOINT') {
      entrypoint = step.argv
      if (!cmdSet) cmd = null
    } else if (step.op === 'CMD') { cmd = step.argv; cmdSet = true }
  }
  const cfg = { User: user, Env: env, WorkingDir: workdir }
  if (entrypoint) cfg.Entrypoint = entrypoint
  if (cmd) cfg.Cmd = cmd
  return cfg
}

// .dockerignore as Docker reads it: one pattern per line, '#' comments, paths relative to the
// context root (no implicit '**/'), '*' and '?' within one segment, '**' across segments, '!'
// re-includes; a path is excluded when it or one of its parents matches the last matching rule.
export function parseDockerignore (text) {
  const rules = []
  for (let raw of text.split('\n')) {
    raw = raw.trim()
    if (raw === '' || raw.startsWith('#')) continue
    const negate = raw.startsWith('!')
    let p = negate ? raw.slice(1).trim() : raw
    p = resolvePath('/', p).slice(1)
    if (p === '') continue
    let re = ''
    for (let i = 0; i < p.length; i++) {
      const c = p[i]
      if (c === '*' && p[i + 1] === '*') {
        re += '.*'
        i++
        if (p[i + 1] === '/') i++
      } else if (c === '*') re += '[^/]*'
      else if (c === '?') re += '[^/]'
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
    rules.push({ negate, re: new RegExp(`^${re}$`), pattern: raw })
  }
  return rules
}

export function isIgnored (rules, relPath) {
  const segs = relPath.split('/').filter(Boolean)
  let excluded = false
  for (const rule of rules) {
    for (let n = 1; n <= segs.length; n++) {
      if (rule.re.test(segs.slice(0, n).join('/'))) { excluded = !rule.negate; break }
    }
  }
  return excluded
}
