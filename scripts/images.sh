#!/usr/bin/env bash
# Builds the MBCAS images (mbcas-controller, mbcas-agent) from Containerfile.controller and
# Containerfile.agent at the repository root with podman if present, else docker, then loads
# them into minikube, where the minikube overlay runs them with imagePullPolicy: Never.
#
#   bash scripts/images.sh [--no-load]        (deno task images [-- --no-load])
#
#   --no-load                  build only
#   MBCAS_IMAGE_TAG=TAG        image tag (default: dev, which the minikube overlay uses)
#   MBCAS_CONTAINER_ENGINE=X   podman, docker or another docker-compatible CLI (default: podman if
#                              on PATH, else docker)
#   MBCAS_MINIKUBE_PROFILE=P   minikube profile to load into (default: minikube's current profile)
#
# With docker, instead of loading you can build straight into minikube's own Docker daemon:
#   eval "$(minikube docker-env)" && bash scripts/images.sh
# (this script sees MINIKUBE_ACTIVE_DOCKERD and then skips the load, which is not needed).
#
# Exit status: 0 built (and loaded), 1 something failed (the message says what), 2 bad option.
set -euo pipefail

say() { echo "images: $*"; }
fail() {
  echo "images: error: $*" >&2
  exit 1
}
usage() { sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

load=1
for arg in "$@"; do
  case "$arg" in
    --no-load) load=0 ;;
    --) ;; # `deno task images -- --no-load` passes the separator on
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "images: error: unknown option '$arg' (the only option is --no-load; see --help)" >&2
      exit 2
      ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${MBCAS_IMAGE_TAG:-dev}"
if ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "images: error: MBCAS_IMAGE_TAG='$tag' is not a valid image tag" >&2
  exit 2
fi

# 1. The engine.
engine="${MBCAS_CONTAINER_ENGINE:-}"
if [[ -n "$engine" ]]; then
  command -v -- "$engine" >/dev/null 2>&1 ||
    fail "MBCAS_CONTAINER_ENGINE=$engine: no such command on PATH (use podman or docker)"
elif command -v podman >/dev/null 2>&1; then
  engine=podman
elif command -v docker >/dev/null 2>&1; then
  engine=docker
else
  fail "no container engine found: neither podman nor docker is on PATH. Install podman (no daemon needed) or Docker, or set MBCAS_CONTAINER_ENGINE to a docker-compatible CLI."
fi
kind="$(basename -- "$engine")"
say "container engine: $engine"

# 2. Is it working? (docker needs a daemon; podman on macOS/Windows needs its VM.)
work="$(mktemp -d "${TMPDIR:-/tmp}/mbcas-images.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT
if ! "$engine" info >/dev/null 2>"$work/info.err"; then
  why="$(grep -v '^[[:space:]]*$' "$work/info.err" | tail -n 3 | tr '\n' ' ' | sed 's/ *$//')"
  case "$kind" in
    docker*)
      fail "the docker CLI is installed but no Docker daemon answers (${why:-docker info failed}). Start the daemon (sudo systemctl start docker, or Docker Desktop), or install podman (no daemon needed), or build inside minikube's daemon: eval \"\$(minikube docker-env)\" && bash scripts/images.sh"
      ;;
    podman*)
      fail "podman is installed but not working (${why:-podman info failed}). On macOS or Windows start its VM: podman machine init && podman machine start"
      ;;
    *)
      fail "$engine is installed but not working (${why:-$engine info failed})"
      ;;
  esac
fi

# 3. Build. podman names local images localhost/NAME, which would not match the overlay's
# mbcas-controller:dev inside minikube; the full docker.io/library/ name matches it everywhere.
refs=()
for component in controller agent; do
  file="Containerfile.$component"
  [[ -f "$root/$file" ]] || fail "$file not found in $root"
  image="mbcas-$component:$tag"
  case "$kind" in
    podman*) ref="docker.io/library/$image" ;;
    *) ref="$image" ;;
  esac
  say "building $image from $file (context $root)"
  (cd "$root" && "$engine" build -f "$file" -t "$ref" .) ||
    fail "building $image failed (see the $engine output above)"
  refs+=("$ref")
done
say "built: ${refs[*]}"
if [[ "$tag" != "dev" ]]; then
  say "note: the minikube overlay runs the :dev images; point it at :$tag with kustomize edit set image, or images: in a kustomization"
fi

# 4. Load into minikube.
elsewhere="To run them on another cluster, push them to a registry its nodes can pull from ($engine tag mbcas-controller:$tag REGISTRY/mbcas-controller:$tag && $engine push REGISTRY/mbcas-controller:$tag, the same for mbcas-agent) and set the overlay's images (kustomize edit set image mbcas-controller:dev=REGISTRY/mbcas-controller:$tag, or an images: entry in your overlay's kustomization.yaml)."
if [[ "$load" == 0 ]]; then
  say "not loading them anywhere (--no-load). $elsewhere"
  exit 0
fi
if [[ -n "${MINIKUBE_ACTIVE_DOCKERD:-}" && "$kind" == docker* ]]; then
  say "built inside minikube's Docker daemon (minikube docker-env, profile $MINIKUBE_ACTIVE_DOCKERD): nothing to load"
  exit 0
fi
if ! command -v minikube >/dev/null 2>&1; then
  say "minikube not found: the images are built but not loaded into any cluster. $elsewhere"
  exit 0
fi
mk=(minikube)
[[ -n "${MBCAS_MINIKUBE_PROFILE:-}" ]] && mk+=(-p "$MBCAS_MINIKUBE_PROFILE")
profile="${MBCAS_MINIKUBE_PROFILE:-current profile}"
if ! "${mk[@]}" status >/dev/null 2>&1; then
  fail "minikube ($profile) is not running: start it (minikube start --kubernetes-version=stable), or use --no-load to build only"
fi
for ref in "${refs[@]}"; do
  name="${ref#docker.io/library/}"
  archive="$work/${name%%:*}.tar"
  say "saving $name to a temporary archive"
  "$engine" save -o "$archive" "$ref" || fail "$engine save $ref failed"
  say "loading $name into minikube ($profile)"
  "${mk[@]}" image load "$archive" || fail "minikube image load failed for $name"
done
say "done: ${refs[*]} are in minikube ($profile)"
