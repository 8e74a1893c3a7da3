#!/usr/bin/env bash
# Build kwok (sigs.k8s.io/kwok, Apache 2.0: the fake nodes and pods SIG Scalability and Kueue run
# against a real control plane, without kubelets) from the Go module proxy, cached under ~/.cache
# like the control plane (build.sh). Also keeps the Stages this version ships (node initialize and
# heartbeat, pod ready and delete) beside the binary: kwok itself starts with none.
# Idempotent. The last line of stdout is the folder holding `kwok` and `stages/`.
set -euo pipefail

KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
CACHE_ROOT="${LUIGI_KUBEFACE_CACHE:-$HOME/.cache/luigi-kubeface}"
OUT="$CACHE_ROOT/kwok-${KWOK_VERSION}"

if [[ -x "$OUT/kwok" && -f "$OUT/stages/pod-ready.yaml" ]]; then
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { echo "go toolchain not found" >&2; exit 1; }
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$CACHE_ROOT/go/mod}"
export GOCACHE="$CACHE_ROOT/go/build"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT/stages" "$GOMODCACHE" "$GOCACHE"
exec 9>"$OUT/.build.lock"
flock 9
if [[ ! -x "$OUT/kwok" ]]; then
  echo "building kwok ${KWOK_VERSION} ..." >&2
  GOBIN="$OUT" go install "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" >&2
fi
cd "$(mktemp -d)"
MODULE="$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp "$MODULE/kustomize/stage/node/fast/node-initialize.yaml" \
   "$MODULE/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
   "$MODULE/kustomize/stage/pod/fast/pod-ready.yaml" \
   "$MODULE/kustomize/stage/pod/fast/pod-delete.yaml" "$OUT/stages/"
chmod u+w "$OUT/stages/"*
echo "$OUT"
