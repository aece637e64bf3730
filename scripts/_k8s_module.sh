#!/usr/bin/env bash
# Shared by build_testbed.sh and build_node.sh: finding Go, and the wrapper Go
# module that builds commands of k8s.io/kubernetes (whose own go.mod replaces
# every staging module with ./staging/..., so `go install` cannot build it).
#   go_setup WHAT                    puts Go on PATH (or exits 1 naming WHAT) and sets
#                                    the build environment (static binaries, -mod=mod)
#   k8s_wrapper_module DIR VERSION   writes DIR/go.mod requiring k8s.io/kubernetes VERSION
#   k8s_ldflags VERSION              prints the -ldflags that make /version honest

go_setup() {
  if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin /usr/lib/go/bin; do
      [[ -x "$candidate/go" ]] && PATH="$candidate:$PATH"
    done
  fi
  command -v go >/dev/null 2>&1 || {
    log "error: the Go toolchain is required to build $1 (go not on PATH)"
    exit 1
  }
  export GOFLAGS="${GOFLAGS:-} -mod=mod"
  export CGO_ENABLED=0
}

k8s_wrapper_module() {
  local dir=$1 version=$2 modfile staging_version
  rm -rf "$dir" && mkdir -p "$dir"
  modfile=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  staging_version="v0${version#v1}"
  {
    echo "module mbcas.local/kubernetes"
    echo
    echo "go $(sed -n 's/^go \(.*\)$/\1/p' "$modfile")"
    echo
    echo "require k8s.io/kubernetes $version"
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
}

k8s_ldflags() {
  local version=$1 minor pkg flags="-s -w"
  minor="${version#v1.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}
