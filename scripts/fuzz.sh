#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time (default 20 s each), seeded
# from fuzz/seeds. Installs cargo-fuzz from crates.io if missing. Uses the
# nightly toolchain when rustup has one, else stable with RUSTC_BOOTSTRAP.
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
for target in $("${fuzz[@]}" list); do
    mkdir -p "corpus/$target"
    echo "fuzzing $target for ${seconds}s" >&2
    "${fuzz[@]}" run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=0 2>&1 | grep -E '^(Done|==|SUMMARY)|panicked' || true
    if compgen -G "artifacts/$target/*" >/dev/null; then
        echo "fuzz target $target found a failing input: $(ls artifacts/"$target")" >&2
        exit 1
    fi
done
