#!/usr/bin/env bash
# Peer comparison for the runtime issue, in one run on one machine.
# 1. Start latency of a container running /bin/true from the test busybox
#    image, RUNS times each (default 30), wall time per run:
#      mocker run --rm --network none IMAGE /bin/true
#      mocker run --rm IMAGE /bin/true          (bridge: veth + address)
#      crun run / runc run on an equivalent bundle (umoci unpack of the same
#        image: pid, mount, uts, ipc and net namespaces, a cgroup, /bin/true)
#      ctr run --rm (containerd from Debian, its own root; runc underneath)
#    crun refuses this machine's hybrid cgroup layout, so it runs inside
#    `unshare -m` with /sys/fs/cgroup/unified unmounted there.
#    Each is timed twice: back to back, and with 100 ms idle before each run.
#    The gap matters on cgroup v1: moving a process into a cgroup waits for
#    an RCU grace period (10-20 ms here) unless another migration happened
#    moments before, so a tool that runs back to back faster than a grace
#    period (crun) pays it only once.
# 2. 100 containers running detached at once: `mocker ps` latency and the
#    memory of each monitor (RSS and PSS from /proc/<pid>/smaps_rollup).
# Usage: scripts/bench-start.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}

need=()
for p in crun runc containerd umoci; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
scripts/test-env.sh install
cargo build --release --locked -q
mocker=$PWD/target/release/mocker
work=$(mktemp -d /tmp/mocker-bench-start.XXXXXX)
export MOCKER_ROOT=$work/mocker MOCKER_BRIDGE=mkbench0 MOCKER_BRIDGE_SUBNET=10.213.0.0/16
cleanup() {
    for id in $("$mocker" ps -aq 2>/dev/null); do "$mocker" rm -f "$id" >/dev/null 2>&1 || true; done
    "$mocker" container prune -f >/dev/null 2>&1 || true
    [[ -f $work/containerd.pid ]] && kill "$(cat "$work/containerd.pid")" 2>/dev/null || true
    scripts/test-env.sh stop "$work"
    for m in $(grep -o "$work[^ ]*" /proc/mounts | sort -r); do umount "$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
echo "starting the test registry and building its images..." >&2
scripts/test-env.sh start "$work" >/dev/null
# shellcheck disable=SC1091
source "$work/env"
image=$MOCKER_TEST_REGISTRY/busybox:latest
"$mocker" pull -q "$image" >/dev/null

# The same image as an OCI bundle, made by umoci from the test layout.
umoci unpack --image "$MOCKER_TEST_OCI_LAYOUT:busybox" "$work/bundle" >/dev/null
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
# Hard rlimits above ours cannot be set here (no CAP_SYS_RESOURCE).
c["process"].pop("rlimits", None)
ns = [{"type": t} for t in ("pid", "mount", "uts", "ipc", "network")]
c["linux"]["namespaces"] = ns
# A cgroup of its own, as mocker gives each container: without a path crun
# creates none, which is not the same work.
c["linux"]["cgroupsPath"] = "/mocker-bench-peer"
json.dump(c, open(path, "w"))
PY

# shellcheck source=scripts/containerd.sh
source scripts/containerd.sh
start_containerd
"${ctr[@]}" images pull --plain-http "$image" >/dev/null

# time_runs NAME CMD... : run CMD (with {} replaced by the run number) RUNS
# times after one warm-up; wall seconds appended to results.
cat >"$work/timer.py" <<'PY'
import os, subprocess, sys, time
name, runs, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
gap = float(os.environ.get("GAP", "0"))
def once(i):
    time.sleep(gap)
    args = [a.replace("{}", str(i)) for a in cmd]
    t = time.perf_counter()
    r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"{name}: {args} failed: {r.stderr.decode()}")
    return time.perf_counter() - t
once(0)
times = sorted(once(i) for i in range(1, runs + 1))
median = times[len(times) // 2]
print(f"{name:<28} median {median*1000:7.1f} ms   mean {sum(times)/len(times)*1000:7.1f} ms   min {times[0]*1000:6.1f} ms")
PY
timer=(python3 "$work/timer.py")
for gap in 0 0.1; do
    export GAP=$gap
    echo "start latency of /bin/true, $runs runs each, ${gap}s idle before each run:"
    "${timer[@]}" "mocker run (--network none)" "$runs" "$mocker" run --rm --network none "$image" /bin/true
    "${timer[@]}" "mocker run (bridge)" "$runs" "$mocker" run --rm "$image" /bin/true
    "${timer[@]}" "runc run" "$runs" runc run --bundle "$work/bundle" "bench-runc-{}"
    # crun cannot use this host's hybrid layout: give it a private mount
    # namespace where the empty unified hierarchy is not mounted.
    unshare -m --propagation private bash -c "umount /sys/fs/cgroup/unified 2>/dev/null; $(printf '%q ' "${timer[@]}") 'crun run' $runs crun run --bundle $work/bundle bench-crun-{}"
    "${timer[@]}" "ctr run --rm" "$runs" "${ctr[@]}" run --rm "$image" "bench-ctr-{}" /bin/true
done
export GAP=0
echo
echo "100 containers running detached (sleep), then:"
for i in $(seq 100); do "$mocker" run -d --network none "$image" sleep 100000 >/dev/null; done
"${timer[@]}" "mocker ps (100 running)" 20 "$mocker" ps
"${timer[@]}" "mocker ps -a (100 running)" 20 "$mocker" ps -a
python3 - "$MOCKER_ROOT" <<'PY'
import glob, json, os, sys
rss, pss = [], []
for state in glob.glob(os.path.join(sys.argv[1], "containers/*/state.json")):
    pid = json.load(open(state))["monitor_pid"]
    fields = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if parts[0] in ("Rss:", "Pss:"):
            fields[parts[0]] = int(parts[1])
    rss.append(fields["Rss:"]); pss.append(fields["Pss:"])
n = len(rss)
print(f"monitors: {n}; RSS per monitor mean {sum(rss)/n/1024:.2f} MiB (max {max(rss)/1024:.2f}); "
      f"PSS per monitor mean {sum(pss)/n/1024:.2f} MiB (memory actually used each, shared pages split)")
PY
