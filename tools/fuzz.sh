#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 30: CI's
# smoke run), JOBS at a time, after seeding the corpora (fuzz/seed.sh), and
# prints a markdown table: target, seconds, runs, coverage, crashes.
# A crash fails the run; libFuzzer's output, with the input in base64, is
# printed, and the input stays under fuzz/artifacts/TARGET/.
#
# Usage: tools/fuzz.sh [--seconds N] [--jobs N] [--logs DIR] [TARGET...]
#   --logs DIR: keep each target's libFuzzer output as DIR/TARGET.log
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly compiler; a
# machine with only a stable toolchain (this project's machines cannot fetch
# another) builds with RUSTC_BOOTSTRAP=1, which lets stable rustc take the
# -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=30 jobs=1 keep="" targets=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --logs) keep=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^fsimg-fuzz$')
fi
cargo fuzz --help >/dev/null 2>&1 || { echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }
if cargo +nightly --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

# Longest input each target reads (see fuzz/README.md); -timeout catches hangs.
max_len() {
    case $1 in
        volume|ext_volume|fat_volume|exfat_volume|ntfs_volume|xfs_volume|btrfs_volume|files_ext|files_fat|files_ntfs) echo 2097152 ;;
        disk_table) echo 2097153 ;;
        random_access) echo 1048576 ;;
        *) echo 65536 ;;
    esac
}

export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
sh fuzz/seed.sh >/dev/null
"${fuzz[@]}" build
bins=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
if [ -n "$keep" ]; then
    mkdir -p "$keep"
    logs=$keep
else
    logs=$(mktemp -d)
    trap 'rm -rf "$logs"' EXIT
fi

run() {
    local t=$1 extra=()
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    # read_records' scoped thread trips LeakSanitizer now and then (see
    # fuzz/README.md): leaks are not what these targets look for. libFuzzer's
    # -detect_leaks=0 stops the check after each input; ASAN_OPTIONS stops
    # the one at exit, which otherwise fails a clean run (docs/fuzzing.md).
    extra=(-detect_leaks=0)
    # The binaries built above, run directly: a source edited meanwhile
    # does not rebuild them mid-run.
    "$bins/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" \
        -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        "${extra[@]}" >"$logs/$t.log" 2>&1
    echo $? >"$logs/$t.rc"
}

running=0
for t in "${targets[@]}"; do
    run "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=0
echo "| target | seconds | runs | coverage (edges) | features | corpus | crashes |"
echo "|---|---|---|---|---|---|---|"
for t in "${targets[@]}"; do
    log=$logs/$t.log
    rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '(DONE|pulse|REDUCE|NEW|INITED) +cov:' "$log" | tail -1 || true)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p')
    crashes=0
    if [ "$rc" != 0 ]; then
        crashes=1 failed=1
        echo "fuzz.sh: $t failed (exit $rc):" >&2
        tail -60 "$log" >&2
    fi
    echo "| \`$t\` | $seconds | ${runs:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $crashes |"
done
exit "$failed"
