#!/usr/bin/env bash
# Peer comparison for issue "layer unpack": pull (download + unpack) of a
# few-hundred-MB image from a loopback registry, in one run on one machine:
#   mocker pull                       (download + verify + unpack into snapshots)
#   ctr images pull --plain-http      (containerd from Debian, own root, overlayfs)
#   skopeo copy + umoci unpack        (download to an OCI layout, then unpack)
#   gzip -dc | tar -x of the same layers (the floor: no download, no verification)
# Each is run RUNS times (default 3) into a fresh root; wall seconds and the
# median are printed. Usage: scripts/bench-unpack.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

command -v containerd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null; }
scripts/test-env.sh install
cargo build --release --locked -q
mocker=$PWD/target/release/mocker
work=$(mktemp -d /tmp/mocker-bench.XXXXXX)
cleanup() {
    [[ -f $work/containerd.pid ]] && kill "$(cat "$work/containerd.pid")" 2>/dev/null || true
    scripts/test-env.sh stop "$work"
    for m in $(grep -o "$work[^ ]*" /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
echo "building the benchmark image (takes a minute)..." >&2
scripts/test-env.sh start-bench "$work" >/dev/null
# shellcheck disable=SC1091
source "$work/env"

# shellcheck source=scripts/containerd.sh
source scripts/containerd.sh
start_containerd

timed() { # timed NAME CMD... -> appends "NAME seconds"
    local name=$1
    shift
    sync
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$name $(echo "$end - $start" | bc)" >>"$work/results"
}

layers=$(skopeo inspect --raw --tls-verify=false "docker://$MOCKER_BENCH_IMAGE" | python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
: >"$work/results"
for i in $(seq "$runs"); do
    timed mocker "$mocker" --root "$work/mocker-$i" pull -q "$MOCKER_BENCH_IMAGE"
    timed ctr "${ctr[@]}" -n "bench$i" images pull --plain-http "$MOCKER_BENCH_IMAGE"
    timed skopeo+umoci sh -c "skopeo copy -q --src-tls-verify=false docker://$MOCKER_BENCH_IMAGE oci:$work/oci-$i:big && umoci unpack --image $work/oci-$i:big $work/bundle-$i"
    mkdir -p "$work/floor-$i"
    floor="cd $work/floor-$i"
    for d in $layers; do
        floor="$floor && gzip -dc $work/mocker-1/blobs/sha256/${d#sha256:} | tar -x"
    done
    timed "gzip|tar" sh -c "$floor"
done

size=$(du -sb "$work/mocker-1/blobs" | cut -f1)
unpacked=$(du -sb "$work/mocker-1/snapshots" | cut -f1)
echo "image: $MOCKER_BENCH_IMAGE, $((size / 1000000)) MB compressed, $((unpacked / 1000000)) MB unpacked"
printf '%-14s %s\n' tool "wall seconds per run"
for tool in mocker ctr skopeo+umoci "gzip|tar"; do
    all=$(awk -v t="$tool" '$1==t {print $2}' "$work/results" | tr '\n' ' ')
    median=$(awk -v t="$tool" '$1==t {print $2}' "$work/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-14s %s (median %s)\n' "$tool" "$all" "$median"
done
m=$(awk '$1=="mocker" {print $2}' "$work/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
c=$(awk '$1=="ctr" {print $2}' "$work/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "mocker / ctr = $(echo "scale=2; $m / $c" | bc) (target: at most 0.70)"
