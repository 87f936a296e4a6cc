#!/usr/bin/env bash
# Peer comparison for issue "storage engine": pull of a multi-layer image of a
# few hundred MB from a loopback registry, mocker vs `skopeo copy
# docker://… oci:DIR`, in one run on one machine. Reports wall time and peak
# RSS (GNU time) for each run, and the median. Usage: scripts/bench-pull.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

scripts/test-env.sh install
cargo build --release --locked -q
mocker=$PWD/target/release/mocker
work=$(mktemp -d /tmp/mocker-bench.XXXXXX)
trap 'scripts/test-env.sh stop "$work"' EXIT
echo "building the benchmark image (takes a minute)..." >&2
scripts/test-env.sh start-bench "$work" >/dev/null
# shellcheck disable=SC1091
source "$work/env"

measure() { # measure NAME CMD... -> "NAME wall_s rss_mib"
    local name=$1
    shift
    sync
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>&1
    read -r wall rss_kb <"$work/time"
    echo "$name $wall $((rss_kb / 1024))"
}

: >"$work/results"
for i in $(seq "$runs"); do
    measure mocker "$mocker" --root "$work/mocker-$i" pull -q "$MOCKER_BENCH_IMAGE" >>"$work/results"
    measure skopeo skopeo copy -q --src-tls-verify=false "docker://$MOCKER_BENCH_IMAGE" "oci:$work/skopeo-$i:big" >>"$work/results"
done

size=$(du -sb "$work/mocker-1/blobs" | cut -f1)
echo "image: $MOCKER_BENCH_IMAGE, $((size / 1000000)) MB of blobs"
printf '%-8s %4s %10s %14s\n' tool run wall_s peak_rss_MiB
awk '{ n[$1]++; printf "%-8s %4d %10s %14s\n", $1, n[$1], $2, $3 }' "$work/results"
for tool in mocker skopeo; do
    median=$(awk -v t=$tool '$1==t {print $2}' "$work/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    rss=$(awk -v t=$tool '$1==t {print $3}' "$work/results" | sort -n | tail -1)
    echo "median $tool: ${median}s wall, max peak RSS ${rss} MiB"
done
