#!/usr/bin/env bash
# Memory and time on a huge, nearly empty volume (issue 8's memory target):
# a sparse 1 TiB volume in /dev/shm holding about 1 GiB of files.  fsimg's
# save to /dev/null and sparse clone are timed beside partclone's (and
# ntfsclone's or e2image's), and fsimg's peak RSS is held to 64 MiB plus one
# bit per cluster; its save must run in seconds (time proportional to the
# used bytes, not to the volume).
#
# Usage: tools/bench-huge.sh [ext4|ntfs|fat32|all] [--size GIB] [--used MIB]
#   defaults: all, --size 1024, --used 1024
#   FSIMG=path/to/fsimg uses that binary instead of `cargo build --release`.
#
# Needs root (loop and FUSE mounts), python3, /usr/bin/time, and the tools of
# the filesystems asked for: e2fsprogs, ntfs-3g (and /dev/fuse), dosfstools
# and mtools, partclone.  The volume file is sparse: only what mkfs writes
# and the files take RAM (about 1.3 GiB, plus the FATs: 2 x 128 MiB).
#
#   ext4   mkfs.ext4 -T largefile4 -J size=64 (4 MiB per inode, 64 MiB
#          journal: with the defaults, 16 GiB of inode tables and a 1 GiB
#          journal would be "used"), lazy inode table init
#   ntfs   mkntfs -f (quick), 4 KiB clusters
#   fat32  mkfs.fat -F 32 -s 64 (32 KiB clusters)
# The files (tools/bench-fill.py: small, medium and large, half random) are
# written to a staging directory in RAM and copied in through a loop mount,
# ntfs-3g or mcopy.  Prints a table; exits 1 if an output fails its check
# (fsimg verify, fsck of the clone) or a target is missed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
fs=all size=1024 used=1024
while [ $# -gt 0 ]; do
    case $1 in
        ext4|ntfs|fat32|all) fs=$1; shift ;;
        --size) size=$2; shift 2 ;;
        --used) used=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-huge: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "bench-huge: must run as root (loop and FUSE mounts)" >&2; exit 1; }
[ "$fs" = all ] && filesystems="ext4 ntfs fat32" || filesystems=$fs

if [ -z "${FSIMG:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    FSIMG=$root/target/release/fsimg
fi
work=$(mktemp -d /dev/shm/fsimg-huge.XXXXXX)
mnt=$work/mnt stage=$work/stage
mkdir -p "$mnt" "$stage"
fusepid=""
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || true; fi
    [ -n "$fusepid" ] && wait "$fusepid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
shim=""
if command -v cc >/dev/null &&
   cc -O2 -shared -fPIC -o "$work/nosleep.so" "$here/partclone-nosleep.c" 2>/dev/null; then
    shim=$work/nosleep.so
fi

echo "bench-huge: writing the ${used} MiB tree to a staging directory" >&2
python3 "$here/bench-fill.py" fill "$stage" $((used << 20)) 0 1 \
    --stage $((used << 21)) 0 "$work/doomed" >/dev/null  # CAPACITY: sizes the tree, not the volume

# time_of NAME CMD...: runs CMD (stdout to /dev/null) under /usr/bin/time;
# prints "NAME SECONDS PEAK_RSS_KIB".
time_of() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" ||
        { echo "bench-huge: $name failed:" >&2; tail -5 "$work/err" >&2; exit 1; }
    echo "$name $(cat "$work/time")"
}

status=0
for f in $filesystems; do
    vol=$work/$f.img
    rm -f "$vol"
    truncate -s "${size}G" "$vol"
    echo "bench-huge: $f: mkfs and copy in" >&2
    case $f in
    ext4)
        mkfs.ext4 -q -F -T largefile4 -J size=64 -E lazy_itable_init=1,nodiscard "$vol"
        mount -o loop,noatime "$vol" "$mnt"
        cp -a "$stage/." "$mnt/"
        umount "$mnt"
        e2fsck -fn "$vol" >/dev/null
        peers=("partclone.extfs -c" "e2image -ra")
        fsck=(e2fsck -fn)
        pc=partclone.extfs
        ;;
    ntfs)
        mkntfs -F -f -q "$vol" >/dev/null 2>&1
        ntfs-3g -o no_detach,noatime,big_writes "$vol" "$mnt" &
        fusepid=$!
        for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
        cp -r "$stage/." "$mnt/"
        umount "$mnt"
        wait "$fusepid"
        fusepid=""
        ntfsfix -n "$vol" >/dev/null
        peers=("partclone.ntfs -c" "ntfsclone -s")
        fsck=(ntfsfix -n)
        pc=partclone.ntfs
        ;;
    fat32)
        mkfs.fat -F 32 -s 64 "$vol" >/dev/null
        (cd "$stage" && MTOOLS_SKIP_CHECK=1 mcopy -s -Q -m -i "$vol" ./* ::/)
        fsck.fat -n "$vol" >/dev/null
        peers=("partclone.fat32 -c")
        fsck=(fsck.fat -n)
        pc=partclone.fat32
        ;;
    esac
    info=$("$FSIMG" info "$vol")
    ubytes=$(awk -F'  +' '$1 == "used bytes" { print $2 }' <<<"$info")
    clusters=$(awk -F'  +' '$1 == "total clusters" { print $2 }' <<<"$info")
    csize=$(awk -F'  +' '$1 == "cluster size" { print $2 }' <<<"$info")
    limit_kib=$(( (64 << 10) + clusters / 8 / 1024 ))
    rows=()
    rows+=("$(time_of "fsimg -s -o -" "$FSIMG" -q -s -o - "$vol")")
    "$FSIMG" -q -s -o - "$vol" | "$FSIMG" verify - >/dev/null ||
        { echo "bench-huge: $f: fsimg verify of the image failed" >&2; status=1; }
    rows+=("$(time_of "fsimg -o" "$FSIMG" -q -o "$work/clone" "$vol")")
    "${fsck[@]}" "$work/clone" >/dev/null 2>&1 ||
        { echo "bench-huge: $f: ${fsck[*]} of fsimg's clone failed" >&2; status=1; }
    rm -f "$work/clone"
    for p in "${peers[@]}"; do
        case $p in
        partclone*) rows+=("$(time_of "$p" env ${shim:+LD_PRELOAD=$shim} $pc -c -s "$vol" -o - -q -L "$work/pc.log")") ;;
        e2image*) rows+=("$(time_of "$p" e2image -ra "$vol" -)") ;;
        ntfsclone*) rows+=("$(time_of "$p" ntfsclone -s -o - "$vol")") ;;
        esac
    done
    echo
    echo "$f: ${size} GiB sparse volume, $((ubytes >> 20)) MiB used, $clusters clusters of $csize bytes"
    printf '%-22s %9s %13s %12s\n' tool "time s" "peak RSS MiB" "used MiB/s"
    for r in "${rows[@]}"; do
        t=$(awk '{ print $(NF - 1) }' <<<"$r") rss=$(awk '{ print $NF }' <<<"$r")
        name=$(awk '{ NF -= 2; print }' <<<"$r")
        printf '%-22s %9s %13.1f %12.0f\n' "$name" "$t" "$(bc -l <<<"$rss / 1024")" \
            "$(bc -l <<<"$ubytes / 1048576 / ($t + 0.001)")"
    done
    for r in "${rows[@]:0:2}"; do
        name=$(awk '{ NF -= 2; print }' <<<"$r") rss=$(awk '{ print $NF }' <<<"$r")
        if [ "$rss" -le "$limit_kib" ]; then
            echo "target met: $name peak RSS $((rss >> 10)) MiB <= 64 MiB + one bit per cluster ($((limit_kib >> 10)) MiB)"
        else
            echo "target MISSED: $name peak RSS $((rss >> 10)) MiB > 64 MiB + one bit per cluster ($((limit_kib >> 10)) MiB)"
            status=1
        fi
    done
    rm -f "$vol"
done
exit $status
