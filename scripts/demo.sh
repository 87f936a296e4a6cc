#!/usr/bin/env bash
# The main job end to end on a fresh machine: install the tools, start a
# loopback registry filled with test images (built by umoci/skopeo, not by
# mocker), build mocker, pull images into a scratch root (downloaded,
# verified, unpacked into shared snapshots), show them, and run a container.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/mocker-demo.XXXXXX)
trap 'scripts/test-env.sh stop "$work"; rm -rf "$work"' EXIT
scripts/test-env.sh start "$work"
# shellcheck disable=SC1091
source "$work/env"
cargo build --release --locked -q
mocker() { target/release/mocker --root "$work/root" "$@"; }

set -x
mocker pull "$MOCKER_TEST_REGISTRY/busybox:latest"
mocker pull "$MOCKER_TEST_REGISTRY/multi:latest"
mocker images
mocker image export "$MOCKER_TEST_REGISTRY/multi:latest" | tar -tv | sed -n 1,12p
mocker run --rm --hostname demo "$MOCKER_TEST_REGISTRY/busybox:latest" sh -c 'echo "hello from $(hostname), pid $$"; ls /'

mocker system df
mocker system check
