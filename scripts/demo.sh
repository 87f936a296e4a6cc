#!/usr/bin/env bash
# The main job end to end on a fresh machine: install the tools, start a
# loopback registry filled with test images (built by umoci/skopeo, not by
# mocker), build mocker, pull images into a scratch root (downloaded,
# verified, unpacked into shared snapshots), show them, and run a container.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/mocker-demo.XXXXXX)
export MOCKER_BRIDGE=mkdemo0 MOCKER_BRIDGE_SUBNET=10.214.0.0/24
cleanup() {
    for id in $(target/release/mocker --root "$work/root" ps -aq 2>/dev/null); do
        target/release/mocker --root "$work/root" rm -f "$id" >/dev/null 2>&1 || true
    done
    # The bridge and its rules stay between containers, as docker0 does.
    target/release/mocker --root "$work/root" container prune -f >/dev/null 2>&1 || true
    scripts/test-env.sh stop "$work"
    rm -rf "$work"
}
trap cleanup EXIT
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

# A detached web server on the bridge, published on loopback.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mocker run -d --name web -p "127.0.0.1:$port:80" "$MOCKER_TEST_REGISTRY/toolbox:latest" httpd -f -p 80 -h /www
mocker ps
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/index.html" && break; sleep 0.1; done
mocker exec web sh -c 'echo "exec in $(hostname): $(ip -4 -o addr show eth0 | awk "{print \$4}")"'
mocker stop -t 1 web
mocker ps -a
mocker logs web
mocker rm web

mocker system df
mocker system check
