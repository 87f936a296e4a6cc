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

# mocker before 736527f renamed `export -o /dev/null`'s output over the
# device: a machine that ran that suite has a regular file there, which
# every discarded output then fills. Put the device back.
if [[ ! -c /dev/null ]]; then
    echo "test.sh: /dev/null is not a character device; recreating it" >&2
    rm -f /dev/null && mknod -m 666 /dev/null c 1 3
fi
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
