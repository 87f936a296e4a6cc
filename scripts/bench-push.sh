#!/usr/bin/env bash
# Peer comparison for issue "images out": push of the ~300 MB one-layer
# benchmark image (`single`, built by umoci in `test-env.sh start-bench`) to
# an empty loopback registry, `mocker push` from its store vs `skopeo copy`
# from the OCI layout umoci wrote, each run into a registry of its own
# (started and stopped outside the timing), alternating, each from a
# dropped page cache (both read their blobs from disk). Reports wall time
# and peak RSS per run and the ratio of the medians (target: mocker at most
# 1.2x skopeo).
# Usage: scripts/bench-push.sh [RUNS]; MOCKER_BIN=path uses a given binary,
# MOCKER_BENCH_ENV=dir reuses the images of `test-env.sh start-bench dir`.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
mocker_binary
work=$(mktemp -d /tmp/mocker-bench-push.XXXXXX)
cleanup() {
    stop_registries
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

: >"$work/results"
for i in $(seq "$runs"); do
    target=$(registry "mocker-$i")
    "$MOCKER_BIN" --root "$work/root" tag "$MOCKER_BENCH_SINGLE" "$target/single:latest"
    settle
    timed mocker "$MOCKER_BIN" --root "$work/root" push "$target/single:latest"
    target=$(registry "skopeo-$i")
    settle
    timed skopeo skopeo copy -q --dest-tls-verify=false "oci:$bench/oci:single" "docker://$target/single:latest"
done

size=$(du -sb "$work/root/blobs" | cut -f1)
echo "image: single, $((size / 1000000)) MB of blobs"
report mocker skopeo
echo "push: mocker / skopeo = $(ratio mocker skopeo) (target: at most 1.2)"
