#!/usr/bin/env bash
# Benchmark `fsimg mount` (issue 18) on a filled volume kept in RAM, saved
# with -z (zstd level 3, as a user would), against `fsimg -r -o - IMG`:
#
#   sequential  dd if=MNT/volume bs=1M of=/dev/null, a fresh mount each
#               round (so that no page of the exposed file is cached),
#               against  fsimg -r -o - IMG | dd bs=1M of=/dev/null,  in
#               alternating order; throughput ratio = restore time / mount
#               time (the issue's target: at least 0.7); the server's peak
#               RSS (GNU time of `fsimg mount -f`) against the cache size
#               plus 32 MiB
#   random      10,000 reads of 4 KiB at offsets from a fixed seed
#               (Python's random.Random(SEED), 4 KiB aligned), with
#               POSIX_FADV_RANDOM so the kernel reads no more than asked, on
#               a fresh mount: median, 90th and 99th percentile latency, and
#               the records the server decoded (cache misses) and found in
#               its cache (hits), from its summary at unmount
#
# Usage: tools/bench-mount.sh [--fs ext4|ntfs|fat32] [--size MIB] [--fill PCT]
#                             [--runs N] [--seed N] [--cache SIZE] [--smoke]
#   defaults: ext4, 4096 MiB, 40 %, 3 runs, seed 1, --cache 64M
#   --smoke:  256 MiB, one run (to see that it still works)
#   FSIMG=path/to/fsimg uses that binary instead of `cargo build --release`.
#
# Before each timed run it waits for free page reporting to end (see
# settle below).
#
# Needs root (tools/make-bench-fs.sh fills the volume through a loop or
# FUSE mount; the mount's read-ahead is raised through sysfs), /dev/fuse,
# python3, GNU time (/usr/bin/time) and what make-bench-fs.sh needs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fs=ext4 size=4096 fill=40 runs=3 seed=1 cache=64M
while [ $# -gt 0 ]; do
    case $1 in
        --fs) fs=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --fill) fill=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --cache) cache=$2; shift 2 ;;
        --smoke) size=256 runs=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-mount: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "bench-mount: run as root" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench-mount: no /dev/fuse" >&2; exit 1; }

work=$(mktemp -d /dev/shm/fsimg-bench-mount.XXXXXX)
mnt=$work/mnt
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" 2>/dev/null || umount -l "$mnt" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$mnt"

if [ -n "${FSIMG:-}" ]; then
    cp "$FSIMG" "$work/fsimg"
else
    (cd "$here/.." && cargo build --release -q)
    cp "$here/../target/release/fsimg" "$work/fsimg"
fi
F=$work/fsimg

vol=$("$here/make-bench-fs.sh" --fs "$fs" --size "$size" --fill "$fill" --seed "$seed")
img=$work/vol.fsimg
"$F" -q -s -z -o "$img" "$vol"
vol_bytes=$(stat -c %s "$vol")
img_bytes=$(stat -c %s "$img")
echo "bench-mount: $vol ($((vol_bytes >> 20)) MiB, $fill % full), image $((img_bytes >> 20)) MiB (-z), cache $cache, $(nproc) CPUs" >&2

# Mounts IMG in the foreground under GNU time (peak RSS to $work/rss,
# the server's summary to $work/log) and waits for the mount.
mount_fg() {
    /usr/bin/time -f %M -o "$work/rss" "$F" mount -f --cache-size "$cache" "$img" "$mnt" 2>"$work/log" &
    server=$!
    for _ in $(seq 500); do
        mountpoint -q "$mnt" && return 0
        sleep 0.01
    done
    echo "bench-mount: not mounted: $(cat "$work/log")" >&2
    exit 1
}
unmount_fg() {
    "$F" umount "$mnt"
    wait "$server"
}
now() { date +%s.%N; }
# Before each timed run: wait (at most 20 s) until the guest has stopped
# handing freed memory back to the host (free page reporting, where the
# kernel counts it), as tools/bench.py does: an unmount frees the 4 GiB the
# page cache held of the exposed file, and while that is reported every
# program here runs up to 2x slower.
reported=/sys/module/page_reporting/parameters/reported_kib
settle() {
    [ -r "$reported" ] || return 0
    local before after waited=0
    before=$(cat "$reported")
    while [ "$waited" -lt 10 ]; do
        sleep 2
        after=$(cat "$reported")
        [ $((after - before)) -lt $((96 * 1024)) ] && return 0
        before=$after waited=$((waited + 1))
    done
}

restore_t=() mount_t=() rss=()
for r in $(seq "$runs"); do
    for which in $( [ $((r % 2)) = 1 ] && echo "restore mount" || echo "mount restore"); do
        settle
        if [ "$which" = restore ]; then
            t0=$(now)
            "$F" -q -r -o - "$img" | dd bs=1M of=/dev/null status=none
            t1=$(now)
            restore_t+=("$(echo "$t1 - $t0" | bc -l)")
        else
            mount_fg
            t0=$(now)
            dd if="$mnt/volume" bs=1M of=/dev/null status=none
            t1=$(now)
            unmount_fg
            mount_t+=("$(echo "$t1 - $t0" | bc -l)")
            rss+=("$(cat "$work/rss")")
        fi
    done
done

settle
mount_fg
python3 - "$mnt/volume" "$seed" >"$work/random" <<'EOF'
import os, random, statistics, sys, time
path, seed = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
size = os.fstat(fd).st_size
rng = random.Random(seed)
lat = []
for _ in range(10000):
    off = rng.randrange(size // 4096) * 4096
    t = time.perf_counter_ns()
    if len(os.pread(fd, 4096, off)) != 4096:
        sys.exit("short read")
    lat.append((time.perf_counter_ns() - t) / 1000)
lat.sort()
print(f"{statistics.median(lat):.0f} {lat[len(lat) * 9 // 10]:.0f} {lat[len(lat) * 99 // 100]:.0f} {sum(lat) / 1e6:.2f}")
EOF
unmount_fg
random_rss=$(cat "$work/rss")
read -r med p90 p99 total <"$work/random"
summary=$(grep ' unmounted: ' "$work/log" | sed 's/^fsimg: [^:]*: //')

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mr=$(median "${restore_t[@]}") mm=$(median "${mount_t[@]}")
peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
cache_kib=$(python3 -c "import sys; s=sys.argv[1].upper().rstrip('IB'); m={'K':1,'M':1024,'G':1<<20}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s)//1024)" "$cache")
gib=$(echo "$vol_bytes / 1073741824" | bc -l)
echo
echo "| $fs, $((vol_bytes >> 20)) MiB, $fill % full, -z | time (median of $runs) | throughput |"
echo "|---|---|---|"
printf '| fsimg -r -o - IMG \\| dd bs=1M | %.2f s | %.0f MiB/s |\n' "$mr" "$(echo "$gib * 1024 / $mr" | bc -l)"
printf '| dd bs=1M of the mounted volume | %.2f s | %.0f MiB/s (%.2fx the restore) |\n' "$mm" "$(echo "$gib * 1024 / $mm" | bc -l)" "$(echo "$mr / $mm" | bc -l)"
printf '| server peak RSS | %d MiB (random reads: %d MiB) | cache %s + 32 MiB = %d MiB allowed |\n' "$((peak / 1024))" "$((random_rss / 1024))" "$cache" "$(((cache_kib + 32768) / 1024))"
printf '| 10,000 random 4 KiB reads | %.2f s | median %d us, p90 %d us, p99 %d us |\n' "$total" "$med" "$p90" "$p99"
echo "| server at unmount | $summary | |"
echo "rounds: restore ${restore_t[*]}; mount ${mount_t[*]}; peak RSS KiB ${rss[*]}" >&2
