#!/usr/bin/env bash
# Profile one fsimg copy: perf stat (if perf works here), then strace -f with
# a summary of syscall counts, read and write sizes, and how much reading
# overlaps writing (tools/bench-strace-summary.py).
#
# Usage: tools/bench-profile.sh VOL [save|clone|zstd|restore]    (default: save)
#   save     fsimg -s -o - VOL > /dev/null
#   clone    fsimg -o /dev/shm/FILE VOL
#   zstd     fsimg -s -z 3 -o - VOL > /dev/null
#   restore  fsimg -r -o /dev/shm/FILE IMG, IMG made first (untimed) by fsimg -s
# FSIMG=path picks the binary (default target/release/fsimg).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fsimg=${FSIMG:-$here/../target/release/fsimg}
vol=${1:?usage: bench-profile.sh VOL [save|clone|zstd|restore]}
mode=${2:-save}
work=$(mktemp -d /dev/shm/fsimg-profile.XXXXXX)
trap 'rm -rf "$work"' EXIT
out=/dev/null
case $mode in
    save) args=(-q -s -o - "$vol") ;;
    zstd) args=(-q -s -z 3 -o - "$vol") ;;
    clone) args=(-q -o "$work/clone.img" "$vol") ;;
    restore) "$fsimg" -q -s -o "$work/image.fsimg" "$vol"
             args=(-q -r -o "$work/clone.img" "$work/image.fsimg") ;;
    *) echo "bench-profile: unknown mode $mode" >&2; exit 2 ;;
esac
echo "\`fsimg ${args[*]} > $out\`:"
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
    rm -f "$work/clone.img"
    echo '```'
    perf stat -e task-clock,context-switches,cpu-migrations,page-faults "$fsimg" "${args[@]}" 2>&1 >"$out" |
        sed -n '/Performance counter/,$p' | sed '/^$/d'
    echo '```'
else
    echo "(perf not available)"
fi
if command -v strace >/dev/null; then
    rm -f "$work/clone.img"
    strace -f -tt -T -s 0 -o "$work/strace.log" "$fsimg" "${args[@]}" >"$out"
    echo '```'
    python3 "$here/bench-strace-summary.py" "$work/strace.log"
    echo '```'
else
    echo "(strace not available)"
fi
