#!/usr/bin/env bash
# The test command: install what the tests need (Debian packages only), start
# the loopback test registries, run the whole suite, stop the registries.
# Needs root (apt, tmpfs mounts). Works on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/mocker-test.XXXXXX)
cleanup() {
    scripts/test-env.sh stop "$work" || true
    rm -rf "$work"
}
trap cleanup EXIT

scripts/test-env.sh start "$work"
# shellcheck disable=SC1091
source "$work/env"
cargo test --locked "$@"
