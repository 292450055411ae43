# shellcheck shell=bash
# scripts/lib/node.sh — the `node` server of scripts/testenv (sourced by it): a one-node cluster
# that really runs pods. etcd + kube-apiserver + kube-scheduler + kube-controller-manager, and a
# node: containerd (CRI) with runc and the CNI bridge plugin, and a kubelet.
#
# The host is changed, and put back by node_cleanup on every exit path (EXIT trap; TERM/INT from
# `testenv stop` or the watchdog end up there too):
#   - a bridge $NODE_BRIDGE with the node IP $NODE_IP: the pods' network (CNI bridge, host-local IPAM)
#     and the address the API server, the kubelet and the test servers (OpenBao, moto) bind to;
#   - one iptables chain SIDEKEY-NODE (nat): 10.0.0.1:443 -> the API server, the rule kube-proxy would
#     write for the `kubernetes` Service (no kube-proxy runs); any other chain the kubelet adds is removed;
#   - the sysctls the kubelet sets (vm.overcommit_memory, kernel.panic, ...) and net.ipv4.ip_forward: recorded, restored;
#   - mounts (pod volumes, tmpfs, overlay rootfs, netns, shm): all under the run dir, unmounted;
#   - cgroups under kubepods/: processes killed, directories removed.
# Only one node runs at a time on a machine (lock $RUNDIR/node.lock).

NODE_IP="${SIDEKEY_TESTENV_NODE_IP:-10.231.0.1}"
NODE_CIDR="${NODE_IP%.*.*}.0.0/16"
NODE_POD_RANGE_START="${NODE_IP%.*.*}.1.2"
NODE_POD_RANGE_END="${NODE_IP%.*.*}.1.250"
NODE_BRIDGE="sk0"
NODE_NAME="sidekey-node"
NODE_SYSCTLS=(net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
NODE_PAUSE_IMAGE="registry.k8s.io/pause:3.10"

node_log() { printf 'testenv[node]: %s\n' "$*" >&2; }

# Kill every process in the kubepods cgroups (the pods' containers), then remove the cgroups.
node_kill_pods() {
  local c pids
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [ -d "$c" ] || continue
    pids="$(find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)"
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  done
  sleep 0.3
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# Undo what a node started in $1 did to the host. Idempotent; safe on a half-started node.
node_cleanup() {
  local dir="$1" d="$2"
  [ -n "$dir" ] || return 0
  # best effort to the end: one failing step (a file already gone) must not skip the rest
  set +e +o pipefail
  [ -f "$dir/.cleaned" ] && return 0
  node_log "cleaning up the host"
  # the control plane and the node daemons first, so nothing restarts a container we kill
  local f pid
  for f in kubelet kube-controller-manager kube-scheduler; do
    [ -f "$dir/$f.pid" ] && kill -TERM "$(cat "$dir/$f.pid")" 2>/dev/null || true
  done
  sleep 0.5
  node_kill_pods
  # the shims run in their own process groups: find them by the containerd socket they serve
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $dir/containerd/containerd.sock" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for f in containerd kube-apiserver etcd; do
    [ -f "$dir/$f.pid" ] && kill -TERM "$(cat "$dir/$f.pid")" 2>/dev/null || true
  done
  local i
  for i in $(seq 1 50); do
    local any=0
    for f in kubelet kube-controller-manager kube-scheduler containerd kube-apiserver etcd; do
      [ -f "$dir/$f.pid" ] && kill -0 "$(cat "$dir/$f.pid")" 2>/dev/null && any=1
    done
    [ "$any" = 0 ] && break
    sleep 0.1
  done
  for f in kubelet kube-controller-manager kube-scheduler containerd kube-apiserver etcd; do
    [ -f "$dir/$f.pid" ] && kill -KILL "$(cat "$dir/$f.pid")" 2>/dev/null || true
  done
  node_kill_pods
  # mounts under the run dir, deepest first (pod volumes, overlay rootfs, shm, netns)
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || node_log "WARNING: could not unmount $m"
  done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
  # network
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  if command -v iptables >/dev/null 2>&1; then
    iptables -t nat -D PREROUTING -j SIDEKEY-NODE 2>/dev/null || true
    iptables -t nat -D OUTPUT -j SIDEKEY-NODE 2>/dev/null || true
    iptables -t nat -F SIDEKEY-NODE 2>/dev/null || true
    iptables -t nat -X SIDEKEY-NODE 2>/dev/null || true
    # chains the kubelet may have added (KUBE-*), when they were not there before
    if [ -f "$dir/iptables.before" ]; then
      local t ch
      for t in filter nat mangle; do
        for ch in $(iptables-save -t "$t" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
          grep -q "^:$ch " "$dir/iptables.before" && continue
          iptables-save -t "$t" | grep -E "^-A [A-Z-]+ .*-j $ch( |$)" | sed 's/^-A/-D/' | while read -r rule; do
            eval "iptables -t $t $rule" 2>/dev/null || true
          done
          iptables -t "$t" -F "$ch" 2>/dev/null || true
          iptables -t "$t" -X "$ch" 2>/dev/null || true
        done
      done
    fi
  fi
  # sysctls the kubelet changed
  if [ -f "$dir/sysctl.before" ]; then
    local k v
    while read -r k v; do
      [ -n "$k" ] && [ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ] && sysctl -q -w "$k=$v" >/dev/null 2>&1 || true
    done < "$dir/sysctl.before"
  fi
  touch "$dir/.cleaned"
  node_log "host restored"
}

# Remove what a node killed with SIGKILL (no trap ran) left behind: its run dir is known from the lock file.
node_cleanup_stale() {
  local prev
  prev="$(cat "$RUNDIR/node.dir" 2>/dev/null || true)"
  if [ -n "$prev" ] && [ -d "$prev" ] && [ ! -f "$prev/.cleaned" ]; then
    node_log "a previous node in $prev did not clean up: cleaning it now"
    node_cleanup "$prev" ""
    set -eo pipefail   # node_cleanup turned errexit off for itself
  fi
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
}

node_wait() {
  local what="$1" tries="$2"; shift 2
  local i
  for i in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "node: $what not ready after $((tries / 10))s (logs in $NODE_DIR)"
}

run_node() {
  local dir="$1" d; d="$(install_dir node)"
  installed_or_die kube
  installed_or_die etcd
  local kd ed; kd="$(install_dir kube)"; ed="$(install_dir etcd)"
  [ "$(id -u)" = 0 ] || die "node: the kubelet, containerd and runc need root"
  apt_ensure iptables debootstrap
  mkdir -p "$RUNDIR"
  exec 8>"$RUNDIR/node.lock"
  flock -n 8 || die "node: another node is running on this machine (lock $RUNDIR/node.lock); stop it with scripts/testenv stop node"
  node_cleanup_stale
  # this run may reuse the path of the last one: its "cleaned" mark must not stop this run's cleanup
  rm -f "$dir/.cleaned"
  echo "$dir" > "$RUNDIR/node.dir"
  NODE_DIR="$dir"
  local t0; t0="$(now)"

  # record what is changed on the host, then make sure it is put back
  local k
  for k in "${NODE_SYSCTLS[@]}"; do echo "$k $(sysctl -n "$k" 2>/dev/null)"; done > "$dir/sysctl.before"
  { iptables-save -t filter; iptables-save -t nat; iptables-save -t mangle; } > "$dir/iptables.before" 2>/dev/null || true
  trap 'node_cleanup "$NODE_DIR" ""' EXIT
  trap 'exit 143' TERM INT HUP

  # network: the bridge carries the node IP; pods get addresses on it from host-local IPAM
  ip link add "$NODE_BRIDGE" type bridge || die "node: cannot create the bridge $NODE_BRIDGE (ip link add type bridge)"
  ip addr add "$NODE_IP/16" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  sysctl -q -w net.ipv4.ip_forward=1 >/dev/null 2>&1 || true

  # control plane (as `kube`, but on the node IP and with the admission plugins a real cluster has)
  local port eport epeer sport cport kport khport
  port="$(free_port)"; eport="$(free_port)"; epeer="$(free_port)"; sport="$(free_port)"; cport="$(free_port)"; kport="$(free_port)"; khport="$(free_port)"
  gen_kube_pki "$dir/pki" "$NODE_IP"
  local server="https://$NODE_IP:$port" issuer="https://kubernetes.default.svc.cluster.local"
  write_kubeconfig "$dir" "$server"
  "$ed/bin/etcd" --data-dir "$dir/etcd-data" --name testenv \
    --listen-client-urls "http://127.0.0.1:$eport" --advertise-client-urls "http://127.0.0.1:$eport" \
    --listen-peer-urls "http://127.0.0.1:$epeer" --initial-advertise-peer-urls "http://127.0.0.1:$epeer" \
    --initial-cluster "testenv=http://127.0.0.1:$epeer" --unsafe-no-fsync --log-level warn >>"$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  node_wait etcd 100 curl -fsS "http://127.0.0.1:$eport/health"
  "$kd/bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$eport" \
    --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port="$port" \
    --cert-dir="$dir/pki" --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" \
    --kubelet-client-certificate="$dir/pki/admin.crt" --kubelet-client-key="$dir/pki/admin.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer="$issuer" --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" --api-audiences="$issuer" \
    --authorization-mode=Node,RBAC --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --enable-aggregator-routing=true --enable-priority-and-fairness=false --storage-backend=etcd3 \
    --v=1 >>"$dir/server.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"
  local curlk=(curl -fsS --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key")
  node_wait kube-apiserver 1200 "${curlk[@]}" "$server/readyz"
  local t_api; t_api="$(elapsed "$t0")"
  "$d/bin/kube-scheduler" --kubeconfig="$dir/kubeconfig" --authentication-kubeconfig="$dir/kubeconfig" \
    --authorization-kubeconfig="$dir/kubeconfig" --bind-address=127.0.0.1 --secure-port="$sport" \
    --leader-elect=false --v=1 >>"$dir/scheduler.log" 2>&1 &
  echo $! > "$dir/kube-scheduler.pid"
  "$d/bin/kube-controller-manager" --kubeconfig="$dir/kubeconfig" --authentication-kubeconfig="$dir/kubeconfig" \
    --authorization-kubeconfig="$dir/kubeconfig" --bind-address=127.0.0.1 --secure-port="$cport" \
    --leader-elect=false --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --use-service-account-credentials=false --controllers='*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route' \
    --v=1 >>"$dir/controller-manager.log" 2>&1 &
  echo $! > "$dir/kube-controller-manager.pid"

  # containerd, with the CRI plugin on runc and CNI
  mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam" "$dir/kubelet" "$dir/pod-logs"
  cat > "$dir/containerd/config.toml" <<EOF
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$NODE_PAUSE_IMAGE'
  [plugins.'io.containerd.cri.v1.runtime']
    # this sandbox lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$d/bin/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$d/cni/bin']
      conf_dir = '$dir/cni/net.d'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
EOF
  cat > "$dir/cni/net.d/10-sidekey.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sidekey-node",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{"subnet": "$NODE_CIDR", "rangeStart": "$NODE_POD_RANGE_START", "rangeEnd": "$NODE_POD_RANGE_END", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
EOF
  PATH="$d/bin:$PATH" "$d/bin/containerd" --config "$dir/containerd/config.toml" >>"$dir/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  local ctr=("$d/bin/ctr" --address "$dir/containerd/containerd.sock" -n k8s.io)
  node_wait containerd 300 "${ctr[@]}" version
  # images: the pause image (compiled from the kubernetes module's pause.c) and any archive in
  # SIDEKEY_TESTENV_NODE_IMAGES (colon-separated), e.g. the Sidekey image from scripts/image
  local archives=() a
  "$ROOT/scripts/image" pause --out "$dir/pause.oci.tar" >>"$dir/images.log" 2>&1 \
    || { tail -n 20 "$dir/images.log" >&2; die "node: scripts/image pause failed (see $dir/images.log)"; }
  archives+=("$dir/pause.oci.tar")
  if [ -n "${SIDEKEY_TESTENV_NODE_IMAGES:-}" ]; then
    IFS=: read -r -a extra <<<"$SIDEKEY_TESTENV_NODE_IMAGES"
    archives+=("${extra[@]}")
  fi
  for a in "${archives[@]}"; do
    "${ctr[@]}" images import "$a" >>"$dir/images.log" 2>&1 \
      || { tail -n 20 "$dir/images.log" >&2; die "node: ctr images import $a failed (see $dir/images.log)"; }
  done
  local t_ctd; t_ctd="$(elapsed "$t0")"

  # the kubelet
  cat > "$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $kport
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $khport
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
podLogsDir: $dir/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "0%", nodefs.available: "0%", imagefs.available: "0%"}
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
serializeImagePulls: false
EOF
  "$d/bin/kubelet" --config="$dir/kubelet/config.yaml" --kubeconfig="$dir/kubeconfig" --root-dir="$dir/kubelet" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1 >>"$dir/kubelet.log" 2>&1 &
  echo $! > "$dir/kubelet.pid"

  cat > "$dir/info.json.tmp" <<EOF
{"name":"node","version":"$NODE_VERSION","pid":$$,"port":$port,"server":"$server","etcd":"http://127.0.0.1:$eport",
 "caFile":"$dir/pki/ca.crt","clientCertFile":"$dir/pki/admin.crt","clientKeyFile":"$dir/pki/admin.key",
 "kubeconfig":"$dir/kubeconfig","serviceAccountIssuer":"$issuer",
 "serviceAccountKeyFile":"$dir/pki/sa.pub","serviceAccountSigningKeyFile":"$dir/pki/sa.key","log":"$dir/kubelet.log",
 "auditLog":"","nodeName":"$NODE_NAME","nodeIP":"$NODE_IP","podCIDR":"$NODE_CIDR","dir":"$dir",
 "containerdSocket":"$dir/containerd/containerd.sock","ctr":"$d/bin/ctr","podLogsDir":"$dir/pod-logs",
 "kubeletRootDir":"$dir/kubelet","apiReadySeconds":$t_api,"containerdReadySeconds":$t_ctd}
EOF
  # the kubernetes Service's ClusterIP, as kube-proxy would route it, for pods (and this host)
  iptables -t nat -N SIDEKEY-NODE
  iptables -t nat -A SIDEKEY-NODE -d 10.0.0.1/32 -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:$port"
  iptables -t nat -I PREROUTING -j SIDEKEY-NODE
  iptables -t nat -I OUTPUT -j SIDEKEY-NODE
  mv "$dir/info.json.tmp" "$dir/info.json"
  node_log "control plane in ${t_api}s, containerd and images in ${t_ctd}s; kubelet starting"

  # stay up while the children do; a dead daemon ends the node (and the cleanup runs)
  local f
  while :; do
    for f in etcd kube-apiserver kube-scheduler kube-controller-manager containerd kubelet; do
      if ! kill -0 "$(cat "$dir/$f.pid")" 2>/dev/null; then
        node_log "ERROR: $f exited; last lines of its log:"
        tail -n 20 "$dir/${f#kube-}.log" "$dir/$f.log" >&2 2>/dev/null || true
        exit 1
      fi
    done
    sleep 1
  done
}

node_ready() {
  local dir="$1" info="$1/info.json"
  [ -f "$info" ] || return 1
  local out
  out="$(curl -fsS --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    "$(info_field "$info" server)/api/v1/nodes/$NODE_NAME" 2>/dev/null)" || return 1
  node -e 'const n=JSON.parse(process.argv[1]);const c=(n.status?.conditions??[]).find(c=>c.type==="Ready");process.exit(c?.status==="True"?0:1)' "$out"
}
