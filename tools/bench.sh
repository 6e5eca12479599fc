#!/usr/bin/env bash
# Benchmark fsimg against its peers (partclone, ntfsclone, e2image) and the
# read limit, on a filled volume kept in RAM.
#
# Usage: tools/bench.sh [ext4|ntfs|fat32|all] [--size MIB] [--fill PCT] [--runs N]
#                       [--seed N] [--only SCENARIOS] [--label TEXT]
#                       [--no-md | --md FILE] [--profile] [--keep | --drop] [--no-pretouch]
#                       [--no-settle]
#   defaults: ext4, --size 4096, --fill 40, --runs 5
#   all:      ext4, then ntfs, then fat32
#   --only:   comma-separated subset of save,clone,restore,zstd,limit
#   --no-md:  print the tables only, do not append to docs/benchmarks.md
#   --md FILE: append to FILE instead of docs/benchmarks.md
#   --profile: also run tools/bench-profile.sh (perf stat, strace summary) on
#             fsimg's save to /dev/null, its clone and its restore, printed
#             and appended
#   --keep / --drop: keep each volume cached in /dev/shm after its run, or
#             remove it; default: keep with one filesystem, drop with `all`
#             (three cached 4 GiB volumes would crowd the RAM)
#   --no-pretouch: do not write and free ~2x the used bytes of memory before
#             each run that writes a file (done by default: on a VM, pages the
#             host took back make the next run that fills them 1x-5x slower
#             at random; see tools/bench.py)
#   --no-settle: do not wait, before each run, for the guest to finish handing
#             freed memory back to the host (done by default where the kernel
#             counts it: while it runs, every tool runs up to 4x slower)
#   FSIMG=path/to/fsimg uses that binary instead of `cargo build --release`.
#
# Needs root (the volumes are filled through a loop or FUSE mount, FAT
# through mtools), python3, e2fsprogs (mkfs.ext4, e2image, dumpe2fs,
# e2fsck), ntfs-3g (mkntfs, ntfs-3g, ntfsclone, ntfsfix) and /dev/fuse,
# dosfstools (mkfs.fat, fsck.fat), mtools, partclone (partclone.extfs,
# partclone.ntfs, partclone.fat32), zstd, GNU time (/usr/bin/time),
# coreutils, and a C compiler for the partclone sleep shim (optional).
# Only the tools of the filesystems asked for are needed.  On Debian/Ubuntu:
#   apt-get install e2fsprogs ntfs-3g dosfstools mtools partclone zstd python3 time gcc
#
# Each volume is built by tools/make-bench-fs.sh and cached in /dev/shm, so it
# and every output stay in RAM (needs about 2.5x the volume size free in
# /dev/shm).  Scenarios, each with one untimed warm-up (its output checked:
# a wrong result fails the run) and N timed rounds, each running every tool
# once, in a seeded shuffled order:
#   save     fsimg -s -o - VOL >/dev/null | ntfsclone -s -o - VOL (NTFS)
#            | partclone.FS -c -s VOL -o - >/dev/null | e2image -ra VOL - (ext4)
#   clone    fsimg -o OUT VOL | ntfsclone -o OUT VOL (NTFS) | e2image -ra VOL OUT (ext4)
#            | partclone.FS -b -s VOL -O OUT
#   restore  fsimg -r -o OUT IMG | ntfsclone -r -o OUT NIMG (NTFS)
#            | partclone.FS -r -s PCIMG -O OUT
#   zstd     fsimg -s -z 3 -o - VOL >OUT | ntfsclone -s -o - VOL | zstd -T0 -3 >OUT (NTFS)
#            | partclone.FS -c -s VOL -o - | zstd -T0 -3 >OUT
#   limit    dd if=VOL bs=4M (time x used fraction) | pread of the used ranges only
# partclone.FS is partclone.extfs, partclone.ntfs or partclone.fat32.  The
# tables go to stdout and, as markdown, are appended to docs/benchmarks.md,
# with the targets of issue 8 said met or missed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
fs=ext4 size=4096 fill=40 runs=5 seed=1 only="" md=$root/docs/benchmarks.md label="" profile=0 keep="" pretouch="" settle=""
while [ $# -gt 0 ]; do
    case $1 in
        ext4|ntfs|fat32|all) fs=$1; shift ;;
        --size) size=$2; shift 2 ;;
        --fill) fill=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --label) label=$2; shift 2 ;;
        --no-md) md=""; shift ;;
        --md) md=$2; shift 2 ;;
        --profile) profile=1; shift ;;
        --keep) keep=1; shift ;;
        --no-pretouch) pretouch=0; shift ;;
        --no-settle) settle=--no-settle; shift ;;
        --drop) keep=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $runs in ''|*[!0-9]*|0) echo "bench: --runs must be a positive number" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "bench: must run as root (the volume is filled through a loop or FUSE mount)" >&2; exit 1; }
case $fs in
    all)
        filesystems="ext4 ntfs fat32"
        # NTFS volumes are filled through ntfs-3g, which needs FUSE; a
        # machine without it (some CI containers) still runs the others.
        if [ ! -c /dev/fuse ]; then
            echo "bench: no /dev/fuse for ntfs-3g: skipping ntfs" >&2
            filesystems="ext4 fat32"
        fi
        ;;
    *) filesystems=$fs ;;
esac
[ -n "$keep" ] || { [ "$fs" = all ] && keep=0 || keep=1; }
tools="python3 zstd dd cksum /usr/bin/time"
for f in $filesystems; do
    case $f in
        ext4) tools="$tools mkfs.ext4 e2image dumpe2fs e2fsck partclone.extfs" ;;
        ntfs) tools="$tools mkntfs ntfs-3g ntfsclone ntfsfix partclone.ntfs" ;;
        fat32) tools="$tools mkfs.fat fsck.fat mcopy mdel partclone.fat32" ;;
    esac
done
for tool in $tools; do
    command -v "$tool" >/dev/null || { echo "bench: missing tool: $tool" >&2; exit 1; }
done

if [ -z "${FSIMG:-}" ]; then
    echo "bench: cargo build --release" >&2
    (cd "$root" && cargo build --release -q)
    FSIMG=$root/target/release/fsimg
fi
[ -x "$FSIMG" ] || { echo "bench: no fsimg binary at $FSIMG" >&2; exit 1; }
# What was built: commit, and whether the tree had changes.
desc=$("$FSIMG" --version 2>/dev/null | head -1 || echo fsimg)
if git -C "$root" rev-parse --short HEAD >/dev/null 2>&1; then
    desc="$desc, commit $(git -C "$root" rev-parse --short HEAD)"
    [ -z "$(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] ||
        desc="$desc + uncommitted changes"
fi

work=$(mktemp -d /dev/shm/fsimg-bench-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A private copy, so a rebuild during the run cannot swap the binary.
cp "$FSIMG" "$work/fsimg"
FSIMG=$work/fsimg

# partclone's progress thread sleeps 2 s at a time and is joined at the end;
# preload a shim that shortens the sleep (tools/partclone-nosleep.c).
shim=""
if command -v cc >/dev/null &&
   cc -O2 -shared -fPIC -o "$work/partclone-nosleep.so" "$here/partclone-nosleep.c" 2>/dev/null; then
    shim=$work/partclone-nosleep.so
else
    echo "bench: no C compiler: partclone is timed stock (rounded up to 2 s steps)" >&2
fi

for f in $filesystems; do
    vol=$("$here/make-bench-fs.sh" --fs "$f" --size "$size" --fill "$fill" --seed "$seed")
    need=$(( size * 1024 * 3 / 2 ))
    have=$(df -k --output=avail /dev/shm | tail -1)
    if [ "$have" -lt "$need" ]; then
        echo "bench: /dev/shm has $((have / 1024)) MiB free, want about $((need / 1024)) MiB for outputs" >&2
    fi
    FSIMG_DESC=$desc python3 "$here/bench.py" --fsimg "$FSIMG" --vol "$vol" --runs "$runs" --work "$work/$f" \
        ${md:+--md "$md"} ${label:+--label "$label"} ${only:+--only "$only"} ${shim:+--shim "$shim"} \
        ${pretouch:+--pretouch "$pretouch"} $settle
    if [ "$profile" = 1 ]; then
        prof=$( { FSIMG=$FSIMG "$here/bench-profile.sh" "$vol" save
                  FSIMG=$FSIMG "$here/bench-profile.sh" "$vol" clone
                  FSIMG=$FSIMG "$here/bench-profile.sh" "$vol" restore; } )
        printf '%s\n' "$prof"
        if [ -n "$md" ]; then
            printf '\n#### Profile of fsimg on this volume\n\n%s\n\n' "$prof" >>"$md"
        fi
    fi
    rm -rf "${work:?}/$f"
    if [ "$keep" = 0 ]; then
        echo "bench: dropping $vol from /dev/shm" >&2
        rm -f "$vol" "$vol.ok" "$vol.meta"
    fi
done
