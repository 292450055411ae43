// Every label and annotation the injector reads or writes, one documented
// constant each (vault-k8s `annotations.go`). docs/injector.md lists the same
// keys; test/unit/injector-annotations.test.ts checks that it does.

export const PREFIX = 'sidekey.dev/'

/** Label that selects a pod for injection (the webhook's objectSelector). Value must be "true". */
export const LABEL_INJECT = 'sidekey.dev/inject'

/** `secret-<name>`: a reference `<store>:<path>[#<key>][@<version>]`, written to `<mount>/<name>`. */
export const ANN_SECRET_PREFIX = 'sidekey.dev/secret-'

/** `template-<name>`: file content built from references, `{{secret "<ref>"}}`, written to `<mount>/<name>`. */
export const ANN_TEMPLATE_PREFIX = 'sidekey.dev/template-'

/** `format-<name>`: `raw` (default), `json`, `env` or `yaml`, for a whole-secret reference. */
export const ANN_FORMAT_PREFIX = 'sidekey.dev/format-'

/** `mode-<name>`: octal file mode, default `0440` when the pod has an fsGroup, else `0444`. */
export const ANN_MODE_PREFIX = 'sidekey.dev/mode-'

/** `optional-<name>`: `"true"` lets the pod start before this secret exists (the agent's `required: false`). */
export const ANN_OPTIONAL_PREFIX = 'sidekey.dev/optional-'

/** Auth role for every store the pod uses: Vault role, AWS role ARN, Azure client id. */
export const ANN_ROLE = 'sidekey.dev/role'

/** `store-<store>`: JSON object overriding identity fields of one store (`role`, `authMount`, `namespace`, `roleArn`, `region`, `clientId`, `tenantId`). */
export const ANN_STORE_PREFIX = 'sidekey.dev/store-'

/** Refresh interval for every secret (`30s`, `5m`); the agent adds jitter. */
export const ANN_REFRESH = 'sidekey.dev/refresh'

/** `sidecar` (default), `init-only` (fetch once, exit; Jobs) or `legacy` (init container + regular sidecar). */
export const ANN_INJECT_MODE = 'sidekey.dev/inject-mode'

/** How the app hears of a rotation, one hook per line: `http:POST http://127.0.0.1:8080/reload` or `signal:HUP:<process>`. */
export const ANN_ON_CHANGE = 'sidekey.dev/on-change'

/** init-only / legacy: how long the init agent may take to fetch every required secret before it exits 1 (`5m`); sidecar: how long the startup probe waits. */
export const ANN_SYNC_DEADLINE = 'sidekey.dev/sync-deadline'

/** Opt-in: the agent serves GET /metrics (no values, no token) on this port of the pod IP; the pod gets prometheus.io/* scrape annotations. */
export const ANN_METRICS_PORT = 'sidekey.dev/metrics-port'

/** Comma-separated names of the containers (or init containers) that get the mount and env; default all. */
export const ANN_CONTAINERS = 'sidekey.dev/containers'

/** Where the secrets volume is mounted, default `/var/run/secrets/sidekey`. */
export const ANN_MOUNT_PATH = 'sidekey.dev/mount-path'

/** Written by the injector (`injected`); a pod that carries it is never mutated again. */
export const ANN_STATUS = 'sidekey.dev/status'

export const STATUS_INJECTED = 'injected'

export const INJECT_MODES = ['sidecar', 'init-only', 'legacy'] as const
export type InjectMode = typeof INJECT_MODES[number]

/** Exact keys (not prefixes), for the "unknown annotation" check. */
export const EXACT_KEYS: readonly string[] = [ANN_ROLE, ANN_REFRESH, ANN_SYNC_DEADLINE, ANN_METRICS_PORT, ANN_INJECT_MODE, ANN_ON_CHANGE, ANN_CONTAINERS, ANN_MOUNT_PATH, ANN_STATUS, LABEL_INJECT]

/** Per-name prefixes, longest first so `template-` never reads as something shorter. */
export const NAMED_PREFIXES: readonly string[] = [ANN_TEMPLATE_PREFIX, ANN_OPTIONAL_PREFIX, ANN_SECRET_PREFIX, ANN_FORMAT_PREFIX, ANN_STORE_PREFIX, ANN_MODE_PREFIX]

/** Everything the injector adds to a pod, by name; a pod that already has one of these is refused, not overwritten. */
export const VOLUME_SECRETS = 'sidekey-secrets'
export const VOLUME_TOKEN = 'sidekey-token'
export const CONTAINER_AGENT = 'sidekey-agent'
export const CONTAINER_AGENT_INIT = 'sidekey-agent-init'
export const TOKEN_DIR = '/var/run/secrets/sidekey-token'
/** The cluster CA (kube-root-ca.crt) in TOKEN_DIR, for stores that talk to the API server. */
export const CLUSTER_CA_FILE = 'ca.crt'
export const TOKEN_FILE_NAME = '.sidekey-token'
export const ENV_ADDR = 'SIDEKEY_ADDR'
export const ENV_TOKEN_FILE = 'SIDEKEY_TOKEN_FILE'
export const ENV_CONFIG = 'SIDEKEY_CONFIG'
export const ENV_TERMINATION_MESSAGE_PATH = 'SIDEKEY_TERMINATION_MESSAGE_PATH'
export const TERMINATION_MESSAGE_PATH = '/dev/termination-log'
