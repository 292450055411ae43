// Test helper: real test servers from scripts/testenv, started once per test process.
//
//   import t from 'tap';
//   import { useServers } from '../helpers/testenv.js';
//   const { openbao, kube } = await useServers(t, ['openbao', 'kube']);
//
// Each server is installed if needed (`scripts/testenv install`, cached under
// ~/.cache/sidekey/testenv), started on a free 127.0.0.1 port — or reused when one started by
// `scripts/testenv start NAME` is running (disable with SIDEKEY_TESTENV_REUSE=0) — and awaited
// until its health endpoint answers. Servers this process started are stopped at process exit
// or by stopServers() (a watchdog in scripts/testenv also stops them if the process dies).
// Nothing here holds the event loop (children and the fake AAD are unref'd), so it is usable
// outside tap too (bench/). A server that cannot be installed or started REJECTS with an Error
// naming the server and the reason (last lines of its log): tests fail, they never skip.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeAad, type FakeAad, type FakeAadOptions } from './fake-aad.js';

export type ServerName = 'openbao' | 'moto' | 'lowkey' | 'kube' | 'etcd' | 'aad' | 'node';

interface BaseInfo {
  name: string;
  version: string;
  pid: number;
  port: number;
  /** server log file */
  log: string;
  /** true when this is a server started by `scripts/testenv start` and reused */
  reused: boolean;
}

export interface OpenBaoInfo extends BaseInfo {
  name: 'openbao';
  /** http://127.0.0.1:<port> (VAULT_ADDR) */
  addr: string;
  rootToken: string;
  /** KV v2 mount of the dev server */
  kvMount: 'secret';
}

export interface MotoInfo extends BaseInfo {
  name: 'moto';
  /** http://127.0.0.1:<port>: the endpoint for every AWS service (Secrets Manager, STS, IAM ...) */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface LowkeyInfo extends BaseInfo {
  name: 'lowkey';
  /** https://localhost:<port>: the default vault (self-signed certificate: disable TLS verification) */
  vaultUrl: string;
  endpoint: string;
  /** PEM of lowkey-vault's self-signed server certificate, to trust it (e.g. `tlsOptions: { ca }`) */
  ca: string;
}

export interface EtcdInfo extends BaseInfo {
  name: 'etcd';
  endpoint: string;
}

export interface TokenRequestOptions {
  namespace?: string;
  serviceAccount: string;
  audiences: string[];
  expirationSeconds?: number;
  /** bind the token to an object (e.g. a Pod): { kind, name, uid } */
  boundObjectRef?: { kind: 'Pod' | 'Secret'; apiVersion?: string; name: string; uid?: string };
}

export interface KubeResponse<T = unknown> {
  status: number;
  body: T;
}

export interface KubeInfo extends BaseInfo {
  name: 'kube';
  /** https://127.0.0.1:<port> */
  server: string;
  /** JSON-lines audit log of requests on Secrets (Metadata level: no bodies, no values). */
  auditLog: string;
  etcd: string;
  caFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** PEM contents of caFile / clientCertFile / clientKeyFile */
  ca: string;
  cert: string;
  key: string;
  /** kubeconfig for the admin client certificate (O=system:masters) */
  kubeconfig: string;
  /** https://kubernetes.default.svc.cluster.local — `iss` of service-account tokens */
  serviceAccountIssuer: string;
  /** PEM public key that verifies service-account tokens (for OpenBao's kubernetes auth pem_keys, fake AAD) */
  serviceAccountKeyFile: string;
  serviceAccountSigningKeyFile: string;
  /** raw REST call as the admin user; body is JSON; resolves for any status */
  request<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<KubeResponse<T>>;
  /** like request but rejects unless 2xx */
  must<T = any>(method: string, path: string, body?: unknown): Promise<T>;
  /** create a namespace (ok if it exists) */
  ensureNamespace(name: string): Promise<void>;
  /** create a service account (ok if it exists); returns its uid */
  createServiceAccount(namespace: string, name: string): Promise<string>;
  /** TokenRequest API: POST /api/v1/namespaces/{ns}/serviceaccounts/{sa}/token; returns the JWT */
  tokenRequest(opts: TokenRequestOptions): Promise<string>;
  /** ClusterRoleBinding of a cluster role (e.g. system:auth-delegator) to a service account (ok if it exists) */
  bindClusterRole(bindingName: string, clusterRole: string, namespace: string, serviceAccount: string): Promise<void>;
}

/**
 * A one-node cluster that runs pods (scripts/testenv `node`): the API server (on the node IP), the
 * scheduler, the controller manager, containerd + runc + CNI and a kubelet. Root only.
 */
export interface NodeInfo extends Omit<KubeInfo, 'name'> {
  name: 'node';
  nodeName: string;
  /** the node's address on its bridge: pods reach the host (and servers bound to it) here */
  nodeIP: string;
  podCIDR: string;
  /** the node's run dir */
  dir: string;
  containerdSocket: string;
  /** path of the ctr binary (use with --address containerdSocket -n k8s.io) */
  ctr: string;
  podLogsDir: string;
  kubeletRootDir: string;
  /** seconds from start to the API server ready, and to containerd ready with images imported */
  apiReadySeconds: number;
  containerdReadySeconds: number;
}

export type AadInfo = FakeAad;

export interface ServerInfoMap {
  openbao: OpenBaoInfo;
  moto: MotoInfo;
  lowkey: LowkeyInfo;
  kube: KubeInfo;
  etcd: EtcdInfo;
  aad: AadInfo;
  node: NodeInfo;
}

export type Servers<N extends ServerName> = { [K in N]: ServerInfoMap[K] };

/** The bit of a tap `Test` we use: t.teardown is not used to stop servers (they live per process). */
export interface TestLike {
  comment?: (...args: unknown[]) => void;
}

const here = dirname(fileURLToPath(import.meta.url));

/** Repository root (works from test/helpers and from dist/test/helpers). */
export function repoRoot(): string {
  let d = here;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(d, 'scripts', 'testenv')) && existsSync(join(d, 'package.json'))) return d;
    d = dirname(d);
  }
  throw new Error(`testenv: cannot find the repository root (scripts/testenv) above ${here}`);
}

export function cacheDir(): string {
  return process.env['SIDEKEY_TESTENV_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'sidekey', 'testenv');
}

const started = new Map<string, Promise<unknown>>();
const owned: { pid: number; dir: string; graceMs: number }[] = [];
let aadInstance: FakeAad | undefined;
let cleanupRegistered = false;
const procDir = (): string => join(cacheDir(), 'run', `proc-${process.pid}`);

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* gone */
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stop every server this process started (idempotent). */
export async function stopServers(): Promise<void> {
  const list = owned.splice(0);
  for (const o of list) killGroup(o.pid, 'SIGTERM');
  // the node puts the host back (pods, mounts, bridge, sysctls) before it exits
  const deadline = Date.now() + Math.max(5000, ...list.map((o) => o.graceMs));
  while (list.some((o) => alive(o.pid)) && Date.now() < deadline) await sleep(100);
  for (const o of list) if (alive(o.pid)) killGroup(o.pid, 'SIGKILL');
  if (aadInstance) {
    const a = aadInstance;
    aadInstance = undefined;
    await a.close();
  }
  started.clear();
  try {
    rmSync(procDir(), { recursive: true, force: true });
  } catch (err) {
    // a mount left behind (the node failed to clean up): say so instead of crashing the caller
    process.stderr.write(`testenv: could not remove ${procDir()}: ${(err as Error).message}\n`);
  }
}

function registerCleanup(): void {
  if (cleanupRegistered) return;
  cleanupRegistered = true;
  process.on('exit', () => {
    for (const o of owned) killGroup(o.pid, 'SIGTERM');
    try {
      rmSync(procDir(), { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const o of owned) killGroup(o.pid, 'SIGTERM');
      process.kill(process.pid, sig);
    });
  }
  // remove private run dirs of dead test processes
  const runDir = join(cacheDir(), 'run');
  if (existsSync(runDir)) {
    for (const e of readdirSync(runDir)) {
      const m = /^proc-(\d+)$/.exec(e);
      if (!m || alive(Number(m[1]))) continue;
      // a node outlives its test process while it puts the host back (scripts/lib/node.sh): not yet
      if (existsSync(join(runDir, e, 'node')) && !existsSync(join(runDir, e, 'node', '.cleaned'))) continue;
      try {
        rmSync(join(runDir, e), { recursive: true, force: true });
      } catch {
        // still mounted: a node of that process is being cleaned up by its own watchdog; next time
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Error code of a server the package registry does not serve (scripts/testenv exit 3). */
export const UNAVAILABLE = 'SIDEKEY_TESTENV_UNAVAILABLE';

/**
 * The reason a server is blocked (the registry does not serve it), or undefined
 * when `err` is any other failure — which must fail the test, never be excused.
 */
export function blockedReason(err: unknown): string | undefined {
  if ((err as { code?: string } | undefined)?.code !== UNAVAILABLE) return undefined;
  return (err as Error).message;
}

function runScript(args: string[]): Promise<void> {
  return new Promise((resolveP, reject) => {
    const p = spawn(join(repoRoot(), 'scripts', 'testenv'), args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let errTail = '';
    p.stderr?.on('data', (c: Buffer) => {
      process.stderr.write(c);
      errTail = (errTail + c.toString('utf8')).slice(-8192);
    });
    p.on('error', (e) => reject(new Error(`testenv: cannot run scripts/testenv ${args.join(' ')}: ${e.message}`)));
    p.on('close', (code, sig) => {
      if (code === 0) {
        resolveP();
        return;
      }
      // eslint-disable-next-line no-control-regex
      const reasons = errTail.replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => l.includes('testenv: ERROR:') || l.includes('testenv: UNAVAILABLE:'));
      const err = new Error(`scripts/testenv ${args.join(' ')} failed (exit ${code ?? sig}): ${reasons.join(' | ') || errTail.split('\n').slice(-5).join(' | ')}`);
      // exit 3: the package registry does not serve the server at all (see scripts/testenv).
      if (code === 3) Object.assign(err, { code: UNAVAILABLE });
      reject(err);
    });
  });
}

interface HttpResult {
  status: number;
  text: string;
}

function httpCall(
  url: string,
  opts: { method?: string; body?: string; headers?: Record<string, string>; ca?: string; cert?: string; key?: string; insecure?: boolean; timeoutMs?: number } = {},
): Promise<HttpResult> {
  return new Promise((resolveP, reject) => {
    const u = new URL(url);
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
    const common = { method: opts.method ?? 'GET', headers, timeout: opts.timeoutMs ?? 10000 };
    const onRes = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveP({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    };
    const req =
      u.protocol === 'https:'
        ? httpsRequest(u, { ...common, ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.cert ? { cert: opts.cert } : {}), ...(opts.key ? { key: opts.key } : {}), rejectUnauthorized: !opts.insecure }, onRes)
        : httpRequest(u, common, onRes);
    req.on('timeout', () => req.destroy(new Error(`timeout calling ${url}`)));
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

type RawInfo = Record<string, unknown> & { pid: number; port: number };

async function ready(name: ServerName, info: RawInfo): Promise<boolean> {
  try {
    switch (name) {
      case 'openbao': {
        const r = await httpCall(`${String(info['addr'])}/v1/sys/health`, { timeoutMs: 2000 });
        return r.status === 200;
      }
      case 'moto': {
        const r = await httpCall(`${String(info['endpoint'])}/moto-api/`, { timeoutMs: 2000 });
        return r.status === 200;
      }
      case 'lowkey': {
        const r = await httpCall(`${String(info['endpoint'])}/ping`, { insecure: true, timeoutMs: 2000 });
        return r.status >= 200 && r.status < 300;
      }
      case 'etcd': {
        const r = await httpCall(`${String(info['endpoint'])}/health`, { timeoutMs: 2000 });
        return r.status === 200;
      }
      case 'node': {
        const r = await httpCall(`${String(info['server'])}/api/v1/nodes/${String(info['nodeName'])}`, {
          ca: readFileSync(String(info['caFile']), 'utf8'),
          cert: readFileSync(String(info['clientCertFile']), 'utf8'),
          key: readFileSync(String(info['clientKeyFile']), 'utf8'),
          timeoutMs: 2000,
        });
        if (r.status !== 200) return false;
        const node = JSON.parse(r.text) as { status?: { conditions?: Array<{ type: string; status: string }> } };
        return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
      }
      case 'kube': {
        const r = await httpCall(`${String(info['server'])}/readyz`, {
          ca: readFileSync(String(info['caFile']), 'utf8'),
          cert: readFileSync(String(info['clientCertFile']), 'utf8'),
          key: readFileSync(String(info['clientKeyFile']), 'utf8'),
          timeoutMs: 2000,
        });
        return r.status === 200;
      }
      default:
        return false;
    }
  } catch {
    return false;
  }
}

function readInfo(dir: string): RawInfo | undefined {
  const f = join(dir, 'info.json');
  if (!existsSync(f)) return undefined;
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as RawInfo;
  } catch {
    return undefined; // being written
  }
}

const TIMEOUT_MS: Record<string, number> = { openbao: 60000, moto: 60000, lowkey: 120000, etcd: 60000, kube: 120000, node: 300000 };

/** SIDEKEY_TESTENV_BIND for openbao and moto: listen on this address instead of 127.0.0.1 (e.g. a node's IP). */
let bindAddress: string | undefined;

async function startProcessServer(name: Exclude<ServerName, 'aad'>, t: TestLike | undefined): Promise<RawInfo & { reused: boolean }> {
  // reuse one started by `scripts/testenv start NAME` (not when it must listen elsewhere)
  if (process.env['SIDEKEY_TESTENV_REUSE'] !== '0' && bindAddress === undefined) {
    const shared = readInfo(join(cacheDir(), 'run', name));
    if (shared && alive(shared.pid) && (await ready(name, shared))) {
      t?.comment?.(`testenv: reusing running ${name} (pid ${shared.pid})`);
      return { ...shared, reused: true };
    }
  }
  await runScript(['install', name]);
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(name, t);
    } catch (err) {
      // a free port picked by `run` can be taken by a parallel test process before the server binds it
      const msg = err instanceof Error ? err.message : String(err);
      if (attempt >= 3 || !/address already in use|bind: address|EADDRINUSE/i.test(msg)) throw err;
      t?.comment?.(`testenv: ${name} lost a port race, retrying`);
    }
  }
}

async function launch(name: Exclude<ServerName, 'aad'>, t: TestLike | undefined): Promise<RawInfo & { reused: boolean }> {
  const dir = join(procDir(), name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const out = openSync(join(dir, 'run.log'), 'a');
  const child = spawn(join(repoRoot(), 'scripts', 'testenv'), ['run', name, dir, String(process.pid)], {
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, ...(bindAddress !== undefined ? { SIDEKEY_TESTENV_BIND: bindAddress } : {}) },
  });
  closeSync(out);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`testenv: ${name}: could not spawn scripts/testenv run`);
  owned.push({ pid, dir, graceMs: name === 'node' ? 60000 : 5000 });
  let exited: string | undefined;
  child.on('exit', (code, sig) => {
    exited = `exit ${code ?? sig}`;
  });
  child.unref();
  const t0 = Date.now();
  const timeout = TIMEOUT_MS[name] ?? 60000;
  const logs = (): string => {
    const info = readInfo(dir);
    const serverLog = info ? String(info['log']) : join(dir, 'server.log');
    return `--- ${join(dir, 'run.log')}\n${tail(join(dir, 'run.log'))}\n--- ${serverLog}\n${tail(serverLog)}`;
  };
  for (;;) {
    const info = readInfo(dir);
    if (info && (await ready(name, info))) {
      t?.comment?.(`testenv: ${name} ready in ${((Date.now() - t0) / 1000).toFixed(1)}s on port ${info.port}`);
      return { ...info, reused: false };
    }
    if (exited) throw new Error(`testenv: ${name} exited before it was ready (${exited}):\n${logs()}`);
    if (Date.now() - t0 > timeout) {
      killGroup(pid, 'SIGTERM');
      throw new Error(`testenv: ${name} was not ready after ${timeout / 1000}s:\n${logs()}`);
    }
    await sleep(150);
  }
}

function kubeInfo(raw: RawInfo & { reused: boolean }): KubeInfo {
  const ca = readFileSync(String(raw['caFile']), 'utf8');
  const cert = readFileSync(String(raw['clientCertFile']), 'utf8');
  const key = readFileSync(String(raw['clientKeyFile']), 'utf8');
  const server = String(raw['server']);
  const request = async <T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<KubeResponse<T>> => {
    const r = await httpCall(`${server}${path}`, {
      method,
      ca,
      cert,
      key,
      headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    let parsed: unknown = r.text;
    try {
      parsed = JSON.parse(r.text);
    } catch {
      /* not JSON */
    }
    return { status: r.status, body: parsed as T };
  };
  const must = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await request<T>(method, path, body);
    if (r.status < 200 || r.status > 299) throw new Error(`kube: ${method} ${path} -> ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const createOk = async (path: string, body: unknown): Promise<any> => {
    const r = await request<any>('POST', path, body);
    if (r.status === 201 || r.status === 200) return r.body;
    if (r.status === 409) return undefined;
    throw new Error(`kube: POST ${path} -> ${r.status}: ${JSON.stringify(r.body)}`);
  };
  return {
    ...(raw as unknown as Omit<KubeInfo, 'ca' | 'cert' | 'key' | 'request' | 'must' | 'ensureNamespace' | 'createServiceAccount' | 'tokenRequest' | 'bindClusterRole'>),
    ca,
    cert,
    key,
    request,
    must,
    ensureNamespace: async (name) => {
      await createOk('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    },
    createServiceAccount: async (namespace, name) => {
      await createOk(`/api/v1/namespaces/${namespace}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } });
      const sa = await must<{ metadata: { uid: string } }>('GET', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}`);
      return sa.metadata.uid;
    },
    tokenRequest: async (o) => {
      const ns = o.namespace ?? 'default';
      const spec: Record<string, unknown> = { audiences: o.audiences };
      if (o.expirationSeconds !== undefined) spec['expirationSeconds'] = o.expirationSeconds;
      if (o.boundObjectRef) spec['boundObjectRef'] = { apiVersion: 'v1', ...o.boundObjectRef };
      const tr = await must<{ status: { token: string } }>('POST', `/api/v1/namespaces/${ns}/serviceaccounts/${o.serviceAccount}/token`, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec,
      });
      return tr.status.token;
    },
    bindClusterRole: async (bindingName, clusterRole, namespace, serviceAccount) => {
      await createOk('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: bindingName },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole },
        subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace }],
      });
    },
  };
}

function peerCertificatePem(port: number): Promise<string> {
  return new Promise((resolveP, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      s.destroy();
      const b64 = c.raw.toString('base64').replace(/(.{64})/g, '$1\n');
      resolveP(`-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`.replace('\n\n-----END', '\n-----END'));
    });
    s.on('error', reject);
  });
}

async function startOne(name: ServerName, t: TestLike | undefined, aadOptions: FakeAadOptions | undefined): Promise<unknown> {
  if (name === 'aad') {
    aadInstance = await startFakeAad(aadOptions ?? {});
    return aadInstance;
  }
  const raw = await startProcessServer(name, t);
  if (name === 'kube' || name === 'node') return kubeInfo(raw);
  if (name === 'lowkey') return { ...raw, ca: await peerCertificatePem(raw.port) };
  return raw;
}

export interface UseServersOptions {
  /** openbao and moto listen on this address instead of 127.0.0.1 (a node's IP, so its pods reach them) */
  bind?: string;
  /** apps / federated credentials for the fake AAD (more can be added with aad.addApp) */
  aad?: FakeAadOptions;
}

/**
 * Start (or reuse) the named servers and wait until they are ready; resolves to their connection
 * info keyed by name. Servers start in parallel; each at most once per process. Rejects with an
 * Error saying which server failed and why.
 */
export async function useServers<N extends ServerName>(t: TestLike | undefined, names: readonly N[], options: UseServersOptions = {}): Promise<Servers<N>> {
  registerCleanup();
  if (options.bind !== undefined) bindAddress = options.bind;
  const uniq = [...new Set(names)];
  const results = await Promise.allSettled(
    uniq.map((n) => {
      let p = started.get(n);
      if (!p) {
        p = startOne(n, t, options.aad);
        started.set(n, p);
        p.catch(() => started.delete(n));
      }
      return p;
    }),
  );
  const failures: string[] = [];
  let allUnavailable = true;
  const out: Record<string, unknown> = {};
  results.forEach((r, i) => {
    const n = uniq[i] as N;
    if (r.status === 'fulfilled') out[n] = r.value;
    else {
      failures.push(`[${n}] ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`);
      if ((r.reason as { code?: string } | undefined)?.code !== UNAVAILABLE) allUnavailable = false;
    }
  });
  if (failures.length > 0) {
    const err = new Error(`testenv: could not start ${failures.length} server(s):\n${failures.join('\n')}`);
    if (allUnavailable) Object.assign(err, { code: UNAVAILABLE });
    throw err;
  }
  return out as Servers<N>;
}

/** A root-token call to OpenBao's HTTP API; rejects on a status >= 300 with the body's start. */
export function openbaoApi(o: { addr: string; rootToken: string }): (method: string, path: string, body?: unknown) => Promise<any> {
  return async (method, path, body) => {
    const r = await fetch(`${o.addr}/v1/${path}`, { method, headers: { 'x-vault-token': o.rootToken }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await r.text();
    if (r.status >= 300) throw new Error(`openbao ${method} ${path}: ${r.status} ${text.slice(0, 300)}`);
    return text === '' ? {} : JSON.parse(text);
  };
}

/** Path of scripts/testenv, for tests that want to call it. */
export function testenvScript(): string {
  return resolve(repoRoot(), 'scripts', 'testenv');
}
