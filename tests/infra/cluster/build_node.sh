#!/usr/bin/env bash
# Build what a real node needs besides the kubelet (build.sh builds that): containerd, its runc shim
# and ctr from the Go module proxy, and a pause image (a static binary FROM scratch) made with
# buildah, so that no image is ever pulled. Cached under ~/.cache/luigi-kubeface, keyed by version.
#
# runc, the CNI plugins, iptables and buildah come from Debian (installed here with apt-get when
# missing, as root). Idempotent; the last line of stdout is the bin directory.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
PAUSE_VERSION=1  # bump when pause.go changes
CACHE_ROOT="${LUIGI_KUBEFACE_CACHE:-$HOME/.cache/luigi-kubeface}"
OUT="$CACHE_ROOT/node-containerd-${CONTAINERD_VERSION}-pause-${PAUSE_VERSION}"
BIN="$OUT/bin"
PAUSE_IMAGE="kubeface.local/pause:${PAUSE_VERSION}"
DEBIAN_PACKAGES=(runc containernetworking-plugins iptables nftables buildah debootstrap)

ready() {
  [[ -x "$BIN/containerd" && -x "$BIN/containerd-shim-runc-v2" && -x "$BIN/ctr" && -f "$OUT/pause.tar" ]] || return 1
  command -v runc >/dev/null && command -v buildah >/dev/null && command -v nft >/dev/null && command -v debootstrap >/dev/null \
    && [[ -x /usr/lib/cni/bridge ]]
}

if ready; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
exec 9>"$OUT/.build.lock"
flock 9
if ready; then echo "$BIN"; exit 0; fi

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "installing from Debian: ${missing[*]} ..." >&2
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi

export GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$BIN"
start=$SECONDS
if [[ ! -x "$BIN/containerd" || ! -x "$BIN/containerd-shim-runc-v2" || ! -x "$BIN/ctr" ]]; then
  echo "building containerd $CONTAINERD_VERSION ..." >&2
  go install -trimpath -ldflags "-s -w" -tags "no_btrfs no_devmapper no_zfs no_aufs" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
fi

# The pause image: the sandbox's first process only waits for its signal.
src="$OUT/src/pause"
mkdir -p "$src"
cat >"$src/go.mod" <<'GO'
module luigikubeface.local/pause

go 1.21
GO
cat >"$src/pause.go" <<'GO'
// Command pause holds a pod sandbox's namespaces until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() { // as PID 1 of its sandbox, reap whatever gets reparented to it
		for {
			var status syscall.WaitStatus
			if _, err := syscall.Wait4(-1, &status, 0, nil); err != nil {
				select {}
			}
		}
	}()
	<-stop
}
GO
(cd "$src" && go build -trimpath -ldflags "-s -w" -o "$src/pause" .)
store="$OUT/buildah"
# buildah makes these whatever --root says (a CNI lock, a blob-info cache): remove them if it made them.
traces=()
for p in /etc/cni /var/lib/containers /run/containers; do [[ -e "$p" ]] || traces+=("$p"); done
trap 'rm -rf "${traces[@]}"' EXIT
b=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
ctr="$("${b[@]}" from --pull=never scratch)"
"${b[@]}" copy "$ctr" "$src/pause" /pause >/dev/null
"${b[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
"${b[@]}" commit -q "$ctr" "$PAUSE_IMAGE" >/dev/null
"${b[@]}" rm "$ctr" >/dev/null
rm -f "$OUT/pause.tar.tmp"
"${b[@]}" push -q "$PAUSE_IMAGE" "docker-archive:$OUT/pause.tar.tmp:$PAUSE_IMAGE"
"${b[@]}" rmi -a -f >/dev/null 2>&1 || true
rm -rf "$store"
mv "$OUT/pause.tar.tmp" "$OUT/pause.tar"
echo "$PAUSE_IMAGE" >"$OUT/pause.name"
echo "built the node's containerd and pause image in $((SECONDS - start))s" >&2
ready
echo "$BIN"
