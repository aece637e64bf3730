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

log() { printf '[build_testbed] %s\n' "$*" >&2; }

if [[ -f "$STAMP" ]]; then
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do
    [[ -x "$candidate/go" ]] && PATH="$candidate:$PATH"
  done
fi
command -v go >/dev/null 2>&1 || {
  log "error: the Go toolchain is required to build the test bed (go not on PATH)"
  exit 1
}

mkdir -p "$BIN" "$CACHE/src"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

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
  rm -rf "$dir" && mkdir -p "$dir"
  modfile=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  staging_version="v0${K8S_VERSION#v1}"
  {
    echo "module mbcas.local/kubernetes"
    echo
    echo "go $(sed -n 's/^go \(.*\)$/\1/p' "$modfile")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # Every staging module the upstream go.mod replaces with ./staging/... is
    # published on its own as v0.<minor>.<patch>.
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile" |
      while read -r module; do echo "	$module => $module $staging_version"; done
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

// Package tools pins the commands this module builds.
package tools
GO
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
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
