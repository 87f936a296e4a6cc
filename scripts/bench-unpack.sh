#!/usr/bin/env bash
# Peer comparison for the pull-speed issue, in one run on one machine: a
# pull (download + verify + unpack) from a loopback registry into a fresh
# root, for three shapes built by umoci from this machine's files:
#   single  one big gzip layer (usr/bin, gcc, python3, docs)
#   three   the same files in three layers
#   twenty  usr/bin in twenty small layers (the per-layer cost)
# Tools, each RUNS times (default 3), alternating:
#   mocker pull                        (wall seconds and peak RSS, GNU time)
#   ctr images pull --plain-http       (containerd from Debian, own root)
#   pigz -dc | tar -x                  (single only: the floor, the blob
#                                       already on disk, nothing verified)
# and the ratios the issue sets: mocker/ctr (<= 0.40 for single and three),
# mocker/floor (<= 1.25), peak RSS (<= 64 MiB).
# Every run starts from the same state: dirty pages written, the page cache
# dropped (else reclaiming earlier runs' cache is billed to the next one),
# then the registry's blobs read back in (the "network" is loopback).
# Usage: scripts/bench-unpack.sh [RUNS]; MOCKER_BIN=path compares a given
# binary instead of building this tree, MOCKER_BASE=path adds an older
# mocker to the same runs (before/after figures from one run), and
# MOCKER_BENCH_ENV=dir reuses the images of `test-env.sh start-bench dir`.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

need=()
for p in containerd pigz; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
mocker_binary
mocker=$MOCKER_BIN
work=$(mktemp -d /tmp/mocker-bench.XXXXXX)
cleanup() {
    [[ -f $work/containerd.pid ]] && kill "$(cat "$work/containerd.pid")" 2>/dev/null || true
    scripts/test-env.sh stop "$work"
    for m in $(grep -o "$work[^ ]*" /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
    # Several GB: gone at the end, not left to fill the disk.
    ionice -c3 rm -rf "$work"
}
trap cleanup EXIT
if [[ -n ${MOCKER_BENCH_ENV:-} ]]; then
    registry_data=$MOCKER_BENCH_ENV/registry/data
    # shellcheck disable=SC1091
    source "$MOCKER_BENCH_ENV/env"
else
    echo "building the benchmark images (takes a few minutes)..." >&2
    scripts/test-env.sh start-bench "$work" >/dev/null
    registry_data=$work/registry/data
    # shellcheck disable=SC1091
    source "$work/env"
fi

# shellcheck source=scripts/containerd.sh
source scripts/containerd.sh
start_containerd

timed() { # timed NAME CMD... -> appends "NAME seconds peak_rss_kib"
    local name=$1
    shift
    sync
    echo 3 >/proc/sys/vm/drop_caches
    find "$registry_data" -name data -type f -exec cat {} + >/dev/null
    [[ -z ${warm:-} ]] || cat "$warm" >/dev/null
    if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr"; then
        echo "bench-unpack: $name failed: $*" >&2
        cat "$work/stderr" >&2
        exit 1
    fi
    echo "$name $(cat "$work/time")" >>"$work/results"
}

single_blob=$(skopeo inspect --raw --tls-verify=false "docker://$MOCKER_BENCH_SINGLE" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
: >"$work/results"
for i in $(seq "$runs"); do
    for shape in single three twenty; do
        var=MOCKER_BENCH_${shape^^}
        timed "mocker-$shape" "$mocker" --root "$work/mocker-$shape-$i" pull -q "${!var}"
        timed "ctr-$shape" "${ctr[@]}" -n "bench-$shape-$i" images pull --plain-http "${!var}"
        if [[ -n ${MOCKER_BASE:-} ]]; then
            timed "base-$shape" "$MOCKER_BASE" --root "$work/base-$shape-$i" pull -q "${!var}"
        fi
    done
    mkdir -p "$work/floor-$i"
    warm=$work/mocker-single-1/blobs/sha256/${single_blob#sha256:} timed floor sh -c "pigz -dc $work/mocker-single-1/blobs/sha256/${single_blob#sha256:} | tar -x -C $work/floor-$i"
done

size=$(du -sb "$work/mocker-single-1/blobs" | cut -f1)
unpacked=$(du -sb "$work/mocker-single-1/snapshots" | cut -f1)
echo "single: one layer, $((size / 1000000)) MB gzip, $((unpacked / 1000000)) MB unpacked; three: the same files in 3 layers; twenty: usr/bin in 20 layers"
printf '%-14s %s\n' run "wall seconds (peak RSS) per run"
# shellcheck disable=SC2086
report mocker-single ctr-single floor mocker-three ctr-three mocker-twenty ctr-twenty ${MOCKER_BASE:+base-single base-three base-twenty}
echo "single: mocker / ctr   = $(ratio mocker-single ctr-single) (target: at most 0.40)"
echo "single: mocker / floor = $(ratio mocker-single floor) (target: at most 1.25)"
echo "three:  mocker / ctr   = $(ratio mocker-three ctr-three) (target: at most 0.40)"
echo "twenty: mocker / ctr   = $(ratio mocker-twenty ctr-twenty)"
echo "single: mocker peak RSS = $(($(median mocker-single 3) / 1024)) MiB (target: at most 64)"
