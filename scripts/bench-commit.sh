#!/usr/bin/env bash
# Peer comparison for issue "images out": `commit` of the same change,
# mocker vs `podman commit`. The change is the ~730 MB of files the pull
# benchmark's `single` image holds (/usr/bin, /usr/lib/gcc, /usr/lib/python3,
# /usr/share/doc of this machine), copied into the writable layer of a
# stopped container of a busybox image (built by umoci, served by a
# loopback registry). Each run commits in fresh storage (no layer reuse),
# from a dropped page cache; the copy and the cache drop are not timed.
# podman's runtime cannot start containers on this machine (its rlimits),
# so both changes are copied in from the host: into podman's mounted
# container, and into mocker's upper directory — the same files either way.
# podman stores the layer uncompressed (it compresses on push); mocker
# stores the blob it will push, gzip (default) or zstd.
# Usage: scripts/bench-commit.sh [RUNS]; MOCKER_BIN=path uses a given binary.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

command -v podman >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
mocker_binary
work=$(mktemp -d /tmp/mocker-bench-commit.XXXXXX)
cleanup() {
    stop_registries
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
    ionice -c3 rm -rf "$work"
}
trap cleanup EXIT
change=(/usr/bin /usr/lib/gcc /usr/lib/python3 /usr/share/doc)

# The base: busybox and a shell, nothing else.
layout=$work/oci
umoci init --layout "$layout"
umoci new --image "$layout:base"
umoci unpack --image "$layout:base" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
ln -s busybox "$work/bundle/rootfs/bin/sh"
umoci repack --image "$layout:base" "$work/bundle" >/dev/null
umoci config --image "$layout:base" --os linux --architecture amd64 --config.cmd sh
base="$(registry base)/base:latest"
skopeo copy -q --dest-tls-verify=false "oci:$layout:base" "docker://$base"

mocker_run() { # mocker_run NAME [commit options...]
    local name=$1 root=$work/$1-$i upper
    shift
    local m=("$MOCKER_BIN" --root "$root")
    "${m[@]}" pull -q "$base" >/dev/null
    "${m[@]}" create --name ctr --network none "$base" >/dev/null
    upper=$("${m[@]}" inspect ctr | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["GraphDriver"]["Data"]["UpperDir"])')
    mkdir "$upper/copy" && cp -a "${change[@]}" "$upper/copy/"
    settle
    timed "$name" "${m[@]}" commit "$@" ctr committed:v1
    "${m[@]}" image inspect committed:v1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Manifest"]["layers"][-1]["size"])' >"$work/$name.size"
}

podman_run() {
    local p=(podman --root "$work/podman-$i/root" --runroot "$work/podman-$i/run" --storage-driver overlay
        --cgroup-manager cgroupfs --events-backend none) merged
    "${p[@]}" pull -q --tls-verify=false "docker://$base" >/dev/null
    "${p[@]}" create --name ctr "$base" >/dev/null
    merged=$("${p[@]}" mount ctr)
    mkdir "$merged/copy" && cp -a "${change[@]}" "$merged/copy/"
    "${p[@]}" umount ctr >/dev/null
    settle
    timed podman "${p[@]}" commit -q ctr committed:v1
    "${p[@]}" image inspect committed:v1 --format '{{.Size}}' >"$work/podman.size"
}

: >"$work/results"
for i in $(seq "$runs"); do
    mocker_run mocker
    podman_run
    mocker_run mocker-zstd --compression zstd
done

echo "change: $(du -scb "${change[@]}" | tail -1 | cut -f1 | awk '{printf "%d MB", $1/1e6}') of files; layer as stored: mocker gzip $(($(cat "$work/mocker.size") / 1000000)) MB, zstd $(($(cat "$work/mocker-zstd.size") / 1000000)) MB, podman image (uncompressed) $(($(cat "$work/podman.size") / 1000000)) MB"
report mocker mocker-zstd podman
echo "commit: mocker / podman = $(ratio mocker podman) (gzip), $(ratio mocker-zstd podman) (zstd)"
