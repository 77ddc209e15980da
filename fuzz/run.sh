#!/usr/bin/env bash
# Builds the fuzz targets (cargo-fuzz, libFuzzer) and runs each for a bounded
# time, one after the other. `make fuzz` calls it.
#
#   fuzz/run.sh [TARGET...]         # default: every target in fuzz/Cargo.toml
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 30)
#   FUZZ_RSS_MB      libFuzzer -rss_limit_mb (default 2048): more is a crash
#   FUZZ_TIMEOUT     libFuzzer -timeout, seconds one input may take (default 25)
#   FUZZ_SANITIZER   cargo-fuzz --sanitizer (default none: every crate under
#                    test is safe Rust with #![forbid(unsafe_code)]; ASan would
#                    double the build time and halve the executions)
#   FUZZ_TOOLCHAIN   rustup toolchain for cargo-fuzz (default nightly)
#   FUZZ_TARGET_DIR  cargo target dir (default target/fuzz at the repo root)
#   FUZZ_WORK        scratch: grown corpora and logs (default target/fuzz-work)
#
# Inputs libFuzzer finds go to $FUZZ_WORK/corpus/<target>; the checked-in
# seeds in fuzz/corpus/<target> are only read. A crashing input is written to
# fuzz/artifacts/<target>/ and its path printed; replay it with
#   cargo +nightly fuzz run <target> <that path>
#
# Exit status: 0 when no target crashed, 1 when one did (or failed to run),
# 2 when the setup is missing (nightly toolchain, dist/filters for `filters`).
#
# What installs itself: cargo-fuzz (`cargo install cargo-fuzz --locked`) when
# `cargo fuzz` is missing. What does not: the nightly toolchain, which
# cargo-fuzz needs for libFuzzer's coverage instrumentation. It cannot be
# downloaded on machines without access to the Rust release servers, so the
# script stops with exit 2 and says so; `rustup toolchain install nightly
# --profile minimal` installs it where those servers can be reached.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir="$root/fuzz"
seconds=${FUZZ_SECONDS:-30}
rss_mb=${FUZZ_RSS_MB:-2048}
timeout=${FUZZ_TIMEOUT:-25}
sanitizer=${FUZZ_SANITIZER:-none}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
target_dir=${FUZZ_TARGET_DIR:-$root/target/fuzz}
work=${FUZZ_WORK:-$root/target/fuzz-work}
nice=""
command -v nice >/dev/null 2>&1 && nice="nice -n 19"

say() { printf 'fuzz: %s\n' "$*"; }

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    say "the '$toolchain' Rust toolchain is missing; cargo-fuzz needs nightly for libFuzzer's"
    say "coverage instrumentation. Install it with: rustup toolchain install nightly --profile minimal"
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    # Outside the repo, so rust-toolchain.toml does not apply to the install.
    (cd / && $nice cargo install cargo-fuzz --locked) || {
        say "cannot install cargo-fuzz"
        exit 2
    }
fi

if [ "$#" -gt 0 ]; then
    targets="$*"
else
    targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$fuzz_dir/Cargo.toml" | grep -v '^mesh-wasm-fuzz$')
fi
# One line, space-separated, so the checks below can match whole names.
# shellcheck disable=SC2086
targets=$(echo $targets)

case " $targets " in
*" filters "*)
    for module in security_headers metrics rate_limit canary_router jwt_auth bundle; do
        if [ ! -f "${FUZZ_DIST_DIR:-$root/dist/filters}/$module.wasm" ]; then
            say "${FUZZ_DIST_DIR:-dist/filters}/$module.wasm is missing: run 'make build' first (the filters target runs the shipped modules)"
            exit 2
        fi
    done
    ;;
esac

say "building: $targets (sanitizer $sanitizer, toolchain $toolchain)"
cd "$root" || exit 2
# `cargo fuzz build` builds one target or all of them.
one=""
case "$targets" in *" "*) ;; *) one=$targets ;; esac
# shellcheck disable=SC2086
$nice cargo "+$toolchain" fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir" $one || {
    say "build failed"
    exit 1
}

bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"
mkdir -p "$work/logs"
status=0
summary=""
for target in $targets; do
    corpus="$work/corpus/$target"
    seeds="$fuzz_dir/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    log="$work/logs/$target.log"
    mkdir -p "$corpus" "$seeds" "$artifacts"
    say "running $target for ${seconds}s (log: $log)"
    # shellcheck disable=SC2086
    $nice "$bin_dir/$target" "$corpus" "$seeds" \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout="$timeout" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
    code=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ "$code" -eq 0 ]; then
        result="ok"
    else
        status=1
        result="CRASH (exit $code)${crash:+ $crash}"
        say "$target failed; the last lines of its log:"
        tail -n 30 "$log" | sed 's/^/    /'
        [ -n "$crash" ] && say "crash input: $crash"
    fi
    summary="$summary$(printf '%-26s %12s executions  %s' "$target" "${runs:-?}" "$result")
"
done

say "summary (${seconds}s per target):"
printf '%s' "$summary" | sed 's/^/    /'
exit "$status"
