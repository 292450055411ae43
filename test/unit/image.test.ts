// The image the e2e node runs is built by scripts/image from the Dockerfile, not beside it. This
// file fails when the two drift: an instruction the interpreter would not run, a runtime config
// that is not the Dockerfile's, and (when an image is cached or can be built here) an archive whose
// config or files are not what the Dockerfile promises users.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createGunzip } from 'node:zlib'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type * as DockerfileModule from '../../scripts/image-dockerfile.mjs'
import type * as ImageModule from '../../scripts/image.mjs'
import { IMAGE_SHEBANG } from '../../agent/cli/v8-flags.js'

const root = process.cwd()
const df = await import(pathToFileURL(resolve(root, 'scripts/image-dockerfile.mjs')).href) as typeof DockerfileModule
const image = await import(pathToFileURL(resolve(root, 'scripts/image.mjs')).href) as typeof ImageModule
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')

// An independent, naive reading of the Dockerfile: the first word of every line that is not a
// comment, not blank and not the continuation of the previous line.
function instructionLines (text: string): Array<{ op: string, rest: string }> {
  const out: Array<{ op: string, rest: string }> = []
  let continued = false
  for (const line of text.split('\n')) {
    const trimmed = line.trim()
    if (trimmed.startsWith('#')) continue
    if (!continued && trimmed !== '') {
      const [op = '', ...rest] = trimmed.split(/\s+/)
      out.push({ op: op.toUpperCase(), rest: rest.join(' ') })
    }
    continued = /\\\s*$/.test(line)
  }
  return out
}

t.test('every instruction of the Dockerfile is one scripts/image runs, none skipped', async (t) => {
  const naive = instructionLines(dockerfile)
  const stages = df.parseDockerfile(dockerfile)
  for (const { op } of naive) t.ok(df.SUPPORTED.includes(op), `${op} is supported by scripts/image`)
  t.equal(stages.length + stages.reduce((n, s) => n + s.steps.length, 0), naive.length, 'the parser read as many instructions as the file has')
  t.same(stages.map((s) => s.base), naive.filter((i) => i.op === 'FROM').map((i) => i.rest.split(/\s+/)[0]), 'FROM images in order')
  for (const s of stages) t.ok(s.base in image.BASES, `base ${s.base} is one scripts/image can make`)
  t.doesNotThrow(() => image.loadDockerfile(root), 'loadDockerfile accepts the project Dockerfile')
})

t.test('the runtime config scripts/image gives is the Dockerfile\'s last stage', async (t) => {
  const cfg = image.imageConfig(df.parseDockerfile(dockerfile))
  const last = instructionLines(dockerfile.slice(dockerfile.lastIndexOf('\nFROM ')))
  const lastOf = (op: string): string => last.filter((i) => i.op === op).at(-1)?.rest ?? ''
  t.equal(cfg.User, lastOf('USER'), 'User')
  t.same(cfg.Entrypoint, JSON.parse(lastOf('ENTRYPOINT')), 'Entrypoint')
  t.same(cfg.Cmd, JSON.parse(lastOf('CMD')), 'Cmd')
  t.equal(cfg.WorkingDir, lastOf('WORKDIR'), 'WorkingDir')
  // The contract users and the injected pods rely on.
  t.equal(cfg.User, '65532:65532')
  t.same(cfg.Entrypoint, ['sidekey'])
  t.equal(cfg.WorkingDir, '/app')
  t.ok(cfg.Env.includes('NODE_ENV=production'), 'NODE_ENV from ENV')
  t.ok(cfg.Env.includes(`NODE_VERSION=${image.VERSIONS.node}`), 'NODE_VERSION from the base')
  t.match(cfg.Env.find((e) => e.startsWith('PATH=')), /(^|:)\/usr\/local\/bin(:|$)/, 'PATH reaches /usr/local/bin/sidekey')
  const runs = df.parseDockerfile(dockerfile).at(-1)?.steps.flatMap((s) => s.op === 'RUN' ? [s.command] : []) ?? []
  t.match(runs.join('\n'), /ln -s \/app\/dist\/bundle\/sidekey\.js \/usr\/local\/bin\/sidekey/, 'sidekey is linked onto PATH')
})

t.test('the parser refuses what it does not implement, with the line named', async (t) => {
  const refused = (text: string, code: string, re: RegExp): void => {
    t.throws(() => df.parseDockerfile(text), { code, message: re }, text.replace(/\n/g, ' | '))
  }
  refused('FROM node:24-bookworm-slim\nADD a /a\n', 'IMAGE_E_UNSUPPORTED', /line 2: instruction ADD/)
  refused('FROM node:24-bookworm-slim\nARG X=1\n', 'IMAGE_E_UNSUPPORTED', /instruction ARG/)
  refused('FROM node:24-bookworm-slim\nCOPY --chown=1:1 a /a\n', 'IMAGE_E_UNSUPPORTED', /--chown/)
  refused('FROM node:24-bookworm-slim\nRUN ["true"]\n', 'IMAGE_E_UNSUPPORTED', /exec \(JSON\) form/)
  refused('FROM node:24-bookworm-slim\nWORKDIR $HOME\n', 'IMAGE_E_UNSUPPORTED', /variable substitution/)
  refused('FROM node:24-bookworm-slim\nCOPY --from=nope /a /a\n', 'IMAGE_E_PARSE', /names no earlier stage/)
  refused('FROM node:24-bookworm-slim\nRUN true \\\n', 'IMAGE_E_PARSE', /line continuation/)
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-image-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'Dockerfile'), 'FROM node:20-alpine\nUSER 1\n')
  t.throws(() => image.loadDockerfile(dir), { code: 'IMAGE_E_BASE', message: /base image 'node:20-alpine' is unknown/ })
  const s = df.parseDockerfile('FROM node:24-bookworm-slim AS b\n# c\nRUN a \\\n# inside\n  && b\nENTRYPOINT x y\n')
  t.same(s[0]?.steps, [{ op: 'RUN', line: 3, command: 'a   && b' }, { op: 'ENTRYPOINT', line: 6, argv: ['/bin/sh', '-c', 'x y'] }])
})

t.test('.dockerignore keeps the build context to what the Dockerfile copies', async (t) => {
  const rules = df.parseDockerignore(readFileSync(join(root, '.dockerignore'), 'utf8'))
  for (const p of ['node_modules', 'dist/bin/sidekey.js', 'test/unit/x.ts', '.git/HEAD']) t.ok(df.isIgnored(rules, p), `${p} excluded`)
  for (const p of ['bin/sidekey.ts', 'agent/cli/test.ts', 'proto/sidekey.proto', 'package-lock.json']) t.notOk(df.isIgnored(rules, p), `${p} included`)
  t.doesNotThrow(() => image.inputKey(image.DEFAULT_NAME, root), 'every COPY source is in the context')
})

// ---- the built archive ------------------------------------------------------------------------

function sh (cmd: string, args: string[], opts: { input?: string } = {}): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts })
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}

async function archivePath (): Promise<{ path?: string, skip?: string }> {
  const cached = sh(join(root, 'scripts/image'), ['path'])
  if (cached.status === 0) return { path: cached.stdout.trim() }
  if (process.getuid?.() !== 0) return { skip: 'no image cached for the current inputs and building one needs root' }
  if (sh('sh', ['-c', 'command -v debootstrap']).status !== 0) return { skip: 'no image cached and debootstrap is not installed (apt-get install -y debootstrap)' }
  // A first build (debootstrap, npm ci) takes minutes: tell the runner before starting it.
  t.setTimeout(1_800_000)
  t.comment('no image cached for the current inputs: running scripts/image build')
  const child = spawn(join(root, 'scripts/image'), ['build'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  if (code !== 0) throw new Error(`scripts/image build failed (exit ${code})`)
  return { path: out.trim() }
}

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

t.test('the image archive: config and files as the Dockerfile says', { timeout: 1_800_000 }, async (t) => {
  const found = await archivePath()
  if (found.path === undefined) {
    t.comment(`SKIP archive checks: ${found.skip ?? ''}`)
    t.pass(`archive checks skipped: ${found.skip ?? ''}`)
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'sidekey-image-archive-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  t.equal(sh('tar', ['-xf', found.path, '-C', dir]).status, 0, 'archive unpacks')
  t.same(JSON.parse(readFileSync(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' })
  const blob = (digest: string): Buffer => readFileSync(join(dir, 'blobs', 'sha256', digest.replace(/^sha256:/, '')))
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, size: number, annotations: Record<string, string> }> }
  const m = index.manifests[0]
  t.equal(index.manifests.length, 1)
  if (m === undefined) return
  t.equal(m.annotations['io.containerd.image.name'], image.DEFAULT_NAME)
  t.equal(m.annotations['org.opencontainers.image.ref.name'], image.refName(image.DEFAULT_NAME))
  t.equal(sha(blob(m.digest)), m.digest, 'manifest digest')
  const manifest = JSON.parse(blob(m.digest).toString()) as { config: { digest: string, size: number }, layers: Array<{ digest: string, size: number }> }
  t.equal(sha(blob(manifest.config.digest)), manifest.config.digest, 'config digest')
  t.equal(blob(manifest.config.digest).length, manifest.config.size, 'config size')
  const config = JSON.parse(blob(manifest.config.digest).toString()) as { config: DockerfileModule.ImageConfig, rootfs: { diff_ids: string[] }, os: string, architecture: string }
  t.same(config.config, image.imageConfig(df.parseDockerfile(dockerfile)), 'the archive\'s config is the Dockerfile\'s')
  t.equal(`${config.os}/${config.architecture}`, 'linux/amd64')
  const rootfs = join(dir, 'rootfs')
  t.equal(manifest.layers.length, config.rootfs.diff_ids.length)
  for (const [i, l] of manifest.layers.entries()) {
    const gz = blob(l.digest)
    t.equal(sha(gz), l.digest, `layer ${i} digest`)
    t.equal(gz.length, l.size, `layer ${i} size`)
    const diff = createHash('sha256')
    await pipeline(createReadStream(join(dir, 'blobs', 'sha256', l.digest.slice(7))), createGunzip(), new Writable({ write (c, _e, cb) { diff.update(c); cb() } }))
    t.equal(`sha256:${diff.digest('hex')}`, config.rootfs.diff_ids[i], `layer ${i} diff_id`)
    t.equal(sh('sh', ['-c', `mkdir -p "${rootfs}" && tar -xzf "${join(dir, 'blobs', 'sha256', l.digest.slice(7))}" -C "${rootfs}" --numeric-owner`]).status, 0, `layer ${i} unpacks`)
  }
  // The runtime stage runs the esbuild bundle (scripts/bundle.mjs): every dependency is inside it.
  t.equal(readlinkSync(join(rootfs, 'usr/local/bin/sidekey')), '/app/dist/bundle/sidekey.js', 'sidekey on PATH')
  t.equal(statSync(join(rootfs, 'app/dist/bundle/sidekey.js')).mode & 0o777, 0o755, 'sidekey.js executable')
  t.equal(readFileSync(join(rootfs, 'app/dist/bundle/sidekey.js'), 'latin1').split('\n')[0], IMAGE_SHEBANG, 'shebang: Node with the image\'s flags')
  t.same(JSON.parse(readFileSync(join(rootfs, 'app/dist/bundle/package.json'), 'utf8')), { type: 'module' }, 'the chunks are ES modules')
  for (const gone of ['usr/local/lib/node_modules/npm', 'usr/local/bin/npm', 'usr/local/bin/npx', 'app/node_modules', 'app/dist/bin', 'app/dist/agent', 'app/dist/test', 'app/dist/bench', 'app/dist/scripts']) {
    t.equal(lstatSync(join(rootfs, gone), { throwIfNoEntry: false }), undefined, `no /${gone}`)
  }
  t.same(readdirSync(join(rootfs, 'app/proto')).sort(), readdirSync(join(root, 'proto')).sort(), '/app/proto as in the repository')
  t.equal(sh('find', [join(rootfs, 'app/dist'), '-name', '*.map']).stdout, '', 'no source maps')
  t.equal(lstatSync(join(rootfs, 'app/dist/bundle/sidekey.js')).uid, 0, 'files owned by root, as COPY makes them')
  if (process.getuid?.() !== 0) {
    t.comment('SKIP running the image: chroot needs root')
    return
  }
  const inImage = (userspec: string, argv: string[]): { status: number | null, stdout: string, stderr: string } =>
    sh('chroot', [...(userspec ? [`--userspec=${userspec}`] : []), rootfs, '/usr/bin/env', '-i',
      '-C', config.config.WorkingDir, ...config.config.Env, ...argv])
  t.equal(inImage('', ['/usr/local/bin/node', '--version']).stdout.trim(), `v${image.VERSIONS.node}`, 'node in the image')
  const user = config.config.User
  const help = inImage(user, [...(config.config.Entrypoint ?? []), ...(config.config.Cmd ?? [])])
  t.equal(help.status, 0, `entrypoint + cmd as ${user}: ${help.stderr}`)
  t.match(help.stdout, /^usage: sidekey <command>/, 'sidekey --help')
  const ready = inImage(user, ['sidekey', 'get', '--ready'])
  t.equal(ready.status, 1, 'sidekey get --ready fails without an agent')
  t.match(ready.stderr, /SIDEKEY_E_CLIENT: cannot reach the agent/, 'with the client error')
  t.notMatch(ready.stderr, /\n\s+at /, 'and no stack trace')
  // The webhook's code (a chunk of its own) runs from the bundle: mutate a pod offline.
  const pod = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { 'sidekey.dev/inject': 'true' }, annotations: { 'sidekey.dev/secret-openai': 'k8s:openai#api_key' } }, spec: { containers: [{ name: 'app', image: 'busybox' }] } })
  const injected = sh('chroot', [`--userspec=${user}`, rootfs, '/usr/bin/env', '-i', '-C', config.config.WorkingDir, ...config.config.Env, 'sidekey', 'inject', '-f', '-'], { input: pod })
  t.equal(injected.status, 0, `sidekey inject in the image: ${injected.stderr}`)
  t.match(injected.stdout, /sidekey-agent/, 'the pod gains the agent')
})
