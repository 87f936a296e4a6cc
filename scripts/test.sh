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
# Unit and integration tests (no doc tests: the library has none), then one
# summary line over every test binary.
set +e
cargo test --locked --no-fail-fast --tests "$@" 2>&1 | tee "$work/test.log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -E '^test result:' "$work/test.log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc)
failed=$(grep -E '^test result:' "$work/test.log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc)
echo "summary: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
