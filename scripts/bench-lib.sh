# Shared by the peer benchmarks (sourced): needs $work (a scratch
# directory) and appends to $work/results, one "NAME seconds peak_rss_kib"
# line per timed run.

mocker_binary() { # the test packages installed; MOCKER_BIN, built from this tree unless given
    scripts/test-env.sh install
    if [[ -z ${MOCKER_BIN:-} ]]; then
        cargo build --release --locked -q
        MOCKER_BIN=$PWD/target/release/mocker
    fi
}

registry() { # registry NAME -> starts an empty loopback registry, prints host:port
    local dir=$work/reg-$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$dir/data"
    printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp: {addr: 127.0.0.1:%s}\n' \
        "$dir/data" "$port" >"$dir/config.yml"
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
        if curl -sf "http://127.0.0.1:$port/v2/" >/dev/null; then
            echo "127.0.0.1:$port"
            return
        fi
        sleep 0.1
    done
    echo "bench: the registry $1 did not start (see $dir/log)" >&2
    exit 1
}

settle() { # dirty pages written, the page cache dropped: every run starts cold
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

stop_registries() {
    local pid
    for pid in "$work"/reg-*/pid; do [[ -f $pid ]] && kill "$(cat "$pid")" 2>/dev/null || true; done
}

timed() { # timed NAME CMD... -> appends "NAME seconds peak_rss_kib"; a failure stops the run
    local name=$1
    shift
    sync
    if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr"; then
        echo "bench: $name failed: $*" >&2
        cat "$work/stderr" >&2
        exit 1
    fi
    echo "$name $(cat "$work/time")" >>"$work/results"
}

median() { # median NAME FIELD
    awk -v t="$1" -v f="$2" '$1==t {print $f}' "$work/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

report() { # report NAME... -> one line per tool: each run's seconds (KiB), the median
    local tool
    for tool in "$@"; do
        printf '%-14s %s (median %s s)\n' "$tool" \
            "$(awk -v t="$tool" '$1==t {printf "%s (%s KiB) ", $2, $3}' "$work/results")" "$(median "$tool" 2)"
    done
}

ratio() { # ratio A B -> median(A) / median(B)
    echo "scale=2; $(median "$1" 2) / $(median "$2" 2)" | bc
}
