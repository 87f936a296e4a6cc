#!/usr/bin/env bash
# Peer comparison for issue "images out": push of the ~300 MB one-layer
# benchmark image (`single`, built by umoci in `test-env.sh start-bench`) to
# an empty loopback registry, `mocker push` from its store vs `skopeo copy`
# from the OCI layout umoci wrote, each run into a registry of its own
# (started and stopped outside the timing), alternating. Reports wall time
# and peak RSS per run and the ratio of the medians (target: mocker at most
# 1.2x skopeo).
# Usage: scripts/bench-push.sh [RUNS]; MOCKER_BIN=path uses a given binary,
# MOCKER_BENCH_ENV=dir reuses the images of `test-env.sh start-bench dir`.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

scripts/test-env.sh install
if [[ -z ${MOCKER_BIN:-} ]]; then
    cargo build --release --locked -q
    MOCKER_BIN=$PWD/target/release/mocker
fi
work=$(mktemp -d /tmp/mocker-bench-push.XXXXXX)
cleanup() {
    for pid in "$work"/reg-*/pid; do [[ -f $pid ]] && kill "$(cat "$pid")" 2>/dev/null || true; done
    [[ -n ${MOCKER_BENCH_ENV:-} ]] || scripts/test-env.sh stop "$work"
    ionice -c3 rm -rf "$work"
}
trap cleanup EXIT
if [[ -n ${MOCKER_BENCH_ENV:-} ]]; then
    bench=$MOCKER_BENCH_ENV
else
    echo "building the benchmark images (takes a few minutes)..." >&2
    scripts/test-env.sh start-bench "$work" >/dev/null
    bench=$work
fi
# shellcheck disable=SC1091
source "$bench/env"
"$MOCKER_BIN" --root "$work/root" pull -q "$MOCKER_BENCH_SINGLE" >/dev/null

registry() { # registry NAME -> starts an empty registry, prints host:port
    local dir=$work/reg-$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$dir/data"
    printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp: {addr: 127.0.0.1:%s}\n' \
        "$dir/data" "$port" >"$dir/config.yml"
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
        sleep 0.1
    done
    echo "127.0.0.1:$port"
}

timed() { # timed NAME CMD... -> appends "NAME seconds peak_rss_kib"
    local name=$1
    shift
    sync
    if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr"; then
        echo "bench-push: $name failed: $*" >&2
        cat "$work/stderr" >&2
        exit 1
    fi
    echo "$name $(cat "$work/time")" >>"$work/results"
}

: >"$work/results"
for i in $(seq "$runs"); do
    target=$(registry "mocker-$i")
    "$MOCKER_BIN" --root "$work/root" tag "$MOCKER_BENCH_SINGLE" "$target/single:latest"
    timed mocker "$MOCKER_BIN" --root "$work/root" push "$target/single:latest"
    target=$(registry "skopeo-$i")
    timed skopeo skopeo copy -q --dest-tls-verify=false "oci:$bench/oci:single" "docker://$target/single:latest"
done

size=$(du -sb "$work/root/blobs" | cut -f1)
echo "image: single, $((size / 1000000)) MB of blobs"
median() { awk -v t="$1" -v f="$2" '$1==t {print $f}' "$work/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for tool in mocker skopeo; do
    printf '%-7s %s (median %s s)\n' "$tool" "$(awk -v t="$tool" '$1==t {printf "%s (%s KiB) ", $2, $3}' "$work/results")" "$(median "$tool" 2)"
done
echo "push: mocker / skopeo = $(echo "scale=2; $(median mocker 2) / $(median skopeo 2)" | bc) (target: at most 1.2)"
