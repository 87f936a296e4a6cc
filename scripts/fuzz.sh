#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time (default 20 s each), seeded
# from fuzz/seeds. Installs cargo-fuzz from crates.io if missing. Uses the
# nightly toolchain when rustup has one, else stable with RUSTC_BOOTSTRAP.
# FUZZ_TARGET_DIR, if set, is where the (~2 GB) fuzz build goes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
target_dir=()
[[ -n ${FUZZ_TARGET_DIR:-} ]] && target_dir=(--target-dir "$FUZZ_TARGET_DIR")

# Build first, with its output shown: a build failure must fail the run, not
# vanish in the filtered output of the fuzzing below.
"${fuzz[@]}" build "${target_dir[@]}"
for target in $("${fuzz[@]}" list); do
    mkdir -p "corpus/$target"
    echo "fuzzing $target for ${seconds}s" >&2
    set +e
    "${fuzz[@]}" run "${target_dir[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=0 >"corpus/$target.log" 2>&1
    status=$?
    set -e
    grep -E '^(Done|==|SUMMARY)|panicked' "corpus/$target.log" || true
    if compgen -G "artifacts/$target/*" >/dev/null; then
        echo "fuzz target $target found a failing input: $(ls artifacts/"$target")" >&2
        exit 1
    fi
    if ((status != 0)); then
        tail -20 "corpus/$target.log" >&2
        echo "fuzz target $target failed to run (exit $status)" >&2
        exit 1
    fi
done
