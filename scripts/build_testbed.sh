#!/usr/bin/env bash
# Builds, once, the control-plane binaries the test bed runs, and caches them
# outside the repository:
#   etcd 3.6.x, kube-apiserver and kube-controller-manager v1.35.4, KWOK v0.7.0.
# Needs Go and the Go module proxy; nothing else is downloaded.
# A second run with a warm cache only checks stamp files and returns at once.
# Prints the bin directory on its last line of stdout.
set -euo pipefail

K8S_VERSION="${MBCAS_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${MBCAS_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${MBCAS_KWOK_VERSION:-v0.7.0}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mbcas/testbed"
BIN="$CACHE/bin"
STAMP="$BIN/.stamp-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"

# shellcheck source=scripts/_k8s_module.sh
source "$(dirname "$0")/_k8s_module.sh"

log() { printf '[build_testbed] %s\n' "$*" >&2; }

if [[ -f "$STAMP" ]]; then
  echo "$BIN"
  exit 0
fi

go_setup "the test bed"
mkdir -p "$BIN" "$CACHE/src"

# --- etcd: a two-line wrapper around etcdmain.Main ------------------------
if [[ ! -x "$BIN/etcd" || ! -f "$BIN/.etcd-$ETCD_VERSION" ]]; then
  log "building etcd $ETCD_VERSION"
  dir="$CACHE/src/etcd"
  rm -rf "$dir" && mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command etcd runs the etcd server (a wrapper, since the upstream module has replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && go mod init mbcas.local/etcd >/dev/null 2>&1 &&
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 &&
    go mod tidy >&2 &&
    go build -trimpath -o "$BIN/etcd" .)
  touch "$BIN/.etcd-$ETCD_VERSION"
fi

# --- kube-apiserver and kube-controller-manager ----------------------------
if [[ ! -x "$BIN/kube-apiserver" || ! -x "$BIN/kube-controller-manager" || ! -f "$BIN/.k8s-$K8S_VERSION" ]]; then
  log "building kube-apiserver and kube-controller-manager $K8S_VERSION (takes several minutes on a cold cache)"
  dir="$CACHE/src/kubernetes"
  k8s_wrapper_module "$dir" "$K8S_VERSION"
  ldflags=$(k8s_ldflags "$K8S_VERSION")
  (cd "$dir" &&
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" >&2 &&
    log "compiling kube-apiserver" &&
    go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver &&
    log "compiling kube-controller-manager" &&
    go build -trimpath -ldflags "$ldflags" -o "$BIN/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager)
  touch "$BIN/.k8s-$K8S_VERSION"
fi

# --- KWOK --------------------------------------------------------------------
if [[ ! -x "$BIN/kwok" || ! -f "$BIN/.kwok-$KWOK_VERSION" ]]; then
  log "building kwok $KWOK_VERSION"
  GOBIN="$BIN" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
  touch "$BIN/.kwok-$KWOK_VERSION"
fi

touch "$STAMP"
log "test bed binaries ready in $BIN"
echo "$BIN"
