#!/usr/bin/env bash
# Build a real Kubernetes control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager) from the Go module proxy, cached under ~/.cache.
#
# Why wrapper modules: `go install k8s.io/kubernetes/cmd/...@vX` cannot work
# because Kubernetes' go.mod requires its staging modules at v0.0.0 and maps
# them with `replace` (ignored for dependencies). A throwaway main module that
# requires k8s.io/kubernetes and replaces every staging module with its
# published v0.Y.Z tag resolves the same graph. etcd gets its own wrapper.
#
# Idempotent: exits at once when all four binaries exist. The last line of
# stdout is the bin directory. Override versions with K8S_VERSION / ETCD_VERSION.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${LUIGI_KUBEFACE_CACHE:-$HOME/.cache/luigi-kubeface}"
OUT="$CACHE_ROOT/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
BIN="$OUT/bin"
BINARIES=(etcd kube-apiserver kube-scheduler kube-controller-manager kubelet)

all_built() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}

if all_built; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "go toolchain not found" >&2; exit 1; }

export GOMODCACHE="$CACHE_ROOT/go/mod"
export GOCACHE="$CACHE_ROOT/go/build"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

# Serialise concurrent builds (e.g. parallel test sessions) on one lock file.
exec 9>"$OUT/.build.lock"
flock 9
if all_built; then echo "$BIN"; exit 0; fi

GO_LINE="$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/').0"

build_k8s() {
  local dir="$OUT/src/k8s" minor major gomod
  major="${K8S_VERSION#v}"; major="${major%%.*}"
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  mkdir -p "$dir"
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod" ]] || { echo "cannot download go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
  {
    echo "module luigikubeface.local/k8sbuild"
    echo
    echo "go $GO_LINE"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # Staging modules: required at v0.0.0 and/or replaced with ./staging/...
    { awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"
      sed -n -E 's#^[[:space:]]*(k8s\.io/[^ ]+) => \./staging/.*#\1#p' "$gomod"
    } | sort -u | while read -r m; do
      echo "	$m => $m v0.${minor}.${K8S_VERSION#v*.*.}"
    done
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'EOF'
//go:build tools

// Package tools pins the Kubernetes commands built from this module.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
  (cd "$dir" && go mod tidy -e >/dev/null 2>"$dir/tidy.log" || { cat "$dir/tidy.log" >&2; exit 1; })
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  local cmd
  for cmd in kube-apiserver kube-scheduler kube-controller-manager kubelet; do
    [[ -x "$BIN/$cmd" ]] && continue
    echo "building $cmd $K8S_VERSION ..." >&2
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

build_etcd() {
  local dir="$OUT/src/etcd" m
  [[ -x "$BIN/etcd" ]] && return 0
  mkdir -p "$dir"
  {
    echo "module luigikubeface.local/etcdbuild"
    echo
    echo "go $GO_LINE"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo
    # Pin the sibling modules to the same release (server's own go.mod maps them to ../).
    echo "replace ("
    for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
      echo "	go.etcd.io/etcd/$m => go.etcd.io/etcd/$m $ETCD_VERSION"
    done
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'EOF'
//go:build tools

// Package tools pins the etcd server command built from this module.
package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
  (cd "$dir" && go mod tidy -e >/dev/null 2>"$dir/tidy.log" || { cat "$dir/tidy.log" >&2; exit 1; })
  echo "building etcd $ETCD_VERSION ..." >&2
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

start=$SECONDS
build_etcd
build_k8s
echo "built control plane in $((SECONDS - start))s" >&2
all_built
echo "$BIN"
