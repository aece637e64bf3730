#!/usr/bin/env bash
# Builds, once, what the local real node runs besides the test bed's control
# plane, and caches it outside the repository (beside the test bed):
#   kubelet, kube-proxy, kube-scheduler and kubectl v1.35.4 (the test bed's
#   wrapper module),
#   containerd v2.2.9 with its runc shim and ctr, CoreDNS v1.14.7 (a small main
#   with the plugins a cluster DNS needs), and the pause program of the
#   sandbox image.
# Needs Go and the Go module proxy; runc, iptables and the CNI plugins come
# from Debian (scripts/install_node_packages.sh).
# A second run with a warm cache only checks stamp files and returns at once.
# Prints the bin directory on its last line of stdout.
set -euo pipefail

K8S_VERSION="${MBCAS_K8S_VERSION:-v1.35.4}"
CONTAINERD_VERSION="${MBCAS_CONTAINERD_VERSION:-v2.2.9}"
COREDNS_VERSION="${MBCAS_COREDNS_VERSION:-v1.14.7}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mbcas/node"
BIN="$CACHE/bin"
STAMP="$BIN/.stamp-k8s-node-$K8S_VERSION-containerd-$CONTAINERD_VERSION-coredns-$COREDNS_VERSION-pause"

# shellcheck source=scripts/_k8s_module.sh
source "$(dirname "$0")/_k8s_module.sh"

log() { printf '[build_node] %s\n' "$*" >&2; }

if [[ -f "$STAMP" ]]; then
  echo "$BIN"
  exit 0
fi

go_setup "the node"
mkdir -p "$BIN" "$CACHE/src"

# --- kubelet, kube-proxy, kube-scheduler, kubectl ----------------------------
# (kubectl for deno task deploy and for people using the local cluster)
if [[ ! -f "$BIN/.k8s-node-$K8S_VERSION" ]]; then
  log "building kubelet, kube-proxy, kube-scheduler and kubectl $K8S_VERSION (minutes on a cold cache)"
  dir="$CACHE/src/kubernetes"
  k8s_wrapper_module "$dir" "$K8S_VERSION"
  ldflags=$(k8s_ldflags "$K8S_VERSION")
  (cd "$dir" &&
    go get "k8s.io/kubernetes/cmd/kubelet@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-proxy@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" >&2 &&
    for cmd in kubelet kube-proxy kube-scheduler kubectl; do
      log "compiling $cmd"
      go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd" || exit 1
    done)
  touch "$BIN/.k8s-node-$K8S_VERSION"
fi

# --- containerd 2.x ----------------------------------------------------------
# 2.x rather than Debian's 1.6: Kubernetes drops containerd 1.x support after
# 1.36, and with 1.x the kubelet cannot read the runtime's cgroup driver.
if [[ ! -f "$BIN/.containerd-$CONTAINERD_VERSION" ]]; then
  log "building containerd $CONTAINERD_VERSION"
  GOBIN="$BIN" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" >&2
  touch "$BIN/.containerd-$CONTAINERD_VERSION"
fi

# --- CoreDNS: the plugins a cluster DNS needs, nothing that forwards ---------
if [[ ! -f "$BIN/.coredns-$COREDNS_VERSION" ]]; then
  log "building coredns $COREDNS_VERSION"
  dir="$CACHE/src/coredns"
  rm -rf "$dir" && mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command coredns is CoreDNS with the plugins of a cluster DNS that answers
// only for the cluster (no forwarding: nothing leaves the machine).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// Order matters: it is the order in which the plugins see a query.
var directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
GO
  (cd "$dir" && go mod init mbcas.local/coredns >/dev/null 2>&1 &&
    go get "github.com/coredns/coredns@$COREDNS_VERSION" >&2 &&
    go mod tidy >&2 &&
    go build -trimpath -ldflags "-s -w" -o "$BIN/coredns" .)
  touch "$BIN/.coredns-$COREDNS_VERSION"
fi

# --- pause: the sandbox image's program --------------------------------------
if [[ ! -x "$BIN/pause" ]]; then
  log "building pause"
  dir="$CACHE/src/pause"
  rm -rf "$dir" && mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command pause sleeps until SIGINT or SIGTERM: the program of the pod
// sandbox image, which holds a pod's namespaces.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
GO
  (cd "$dir" && go mod init mbcas.local/pause >/dev/null 2>&1 &&
    go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .)
fi

touch "$STAMP"
log "node binaries ready in $BIN"
echo "$BIN"
