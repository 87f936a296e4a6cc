# Sourced by the peer benchmarks: start containerd from Debian with its own
# root, state and socket under $work (no CRI plugin), and set ctr=(ctr
# --address …). The caller's cleanup kills $work/containerd.pid.
start_containerd() {
    cat >"$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd-root"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
TOML
    containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
    echo $! >"$work/containerd.pid"
    for _ in $(seq 100); do [[ -S $work/containerd.sock ]] && break; sleep 0.1; done
    ctr=(ctr --address "$work/containerd.sock")
}
