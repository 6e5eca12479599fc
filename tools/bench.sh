#!/usr/bin/env bash
# Benchmark fsimg against its peers (partclone, ntfsclone, e2image, and for a
# whole disk dd and the Clonezilla way) and the read limit, on a filled
# volume or disk kept in RAM.
#
# Usage: tools/bench.sh mount [see tools/bench-mount.sh]
#        tools/bench.sh [ext4|ntfs|fat32|exfat|xfs|btrfs|disk|all] [--size MIB] [--fill PCT] [--runs N]
#                       [--seed N] [--only SCENARIOS] [--label TEXT] [--smoke]
#                       [--no-md | --md FILE] [--profile] [--keep | --drop] [--no-pretouch]
#                       [--no-settle]
#   defaults: ext4, --runs 5; a volume --size 4096 --fill 40, the disk
#             --size 8192 --fill 20
#   all:      ext4, then ntfs, then fat32, then exfat, then xfs, then btrfs, then disk
#   xfs:      filled through a loop mount; no files scenarios (fsimg ls,
#             cat and extract do not read XFS)
#   btrfs:    mkfs.btrfs (one device, DUP metadata), filled through a loop
#             mount; peers partclone.btrfs and partclone | zstd (no files
#             scenario: fsimg does not read btrfs files)
#   disk:     a whole disk in the Raspberry Pi OS layout (MBR; partition 1
#             FAT32, 512 MiB at sector 8192; partition 2 ext4, the rest),
#             both partitions filled to PCT % (tools/make-bench-fs.sh --fs
#             disk); a sparse file, so it and its outputs take about
#             (PCT + 10) % + 4 x PCT % of SIZE in /dev/shm; with the default
#             size, if /dev/shm has less room, the largest power-of-two size
#             that fits is used instead, and said
#   --only:   comma-separated subset of save,clone,restore,zstd,limit,pipe,gzip,files
#             (and savefile, for the disk); files is cat and extract, which
#             can also be asked for alone (not for exfat: fsimg cat/extract
#             do not read exFAT)
#   --smoke:  the CI form, to see that every tool still runs and every output
#             checks out (the times mean little): volumes of 256 MiB at 40 %,
#             the disk 512 MiB at 20 %, one round, --no-md --no-settle
#             --no-pretouch (explicit --size/--fill/--runs win)
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
# dosfstools (mkfs.fat, fsck.fat), mtools, exfatprogs and exfat-fuse (for
# exfat), partclone (partclone.extfs, partclone.ntfs, partclone.fat32,
# partclone.vfat, partclone.exfat), zstd, GNU time
# (/usr/bin/time), coreutils, util-linux (sfdisk and losetup, for the disk;
# sfdisk is in Debian's fdisk package), and a C compiler for the partclone
# sleep shim (optional).  Only the tools of the scenarios asked for are
# needed.  On Debian/Ubuntu:
#   apt-get install e2fsprogs ntfs-3g dosfstools mtools exfatprogs exfat-fuse partclone zstd python3 time gcc fdisk
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
#   pipe     standard output through a pipe: fsimg -s -o - VOL | cat, fsimg -o - VOL | cat
#            (zero-filled), fsimg -s -z 3 -o - VOL | cat, fsimg -s -o - VOL | zstd -T0 -3,
#            beside ntfsclone -s -o - (NTFS), partclone.FS -c -o - and e2image -ra VOL -
#            (ext4) through the same, dd if=VOL bs=4M | cat, and the pipe floor:
#            fsimg's image and its sparse clone (the bytes of -o -) through
#            dd bs=4K|64K|1M | cat
#   gzip     fsimg -s -o - VOL | gzip -1 | ntfsclone -s -o - VOL | gzip -1 (NTFS)
#            | partclone.FS -c -s VOL -o - | gzip -1
#   files    files out of an image (IMG: fsimg -s -z -o IMG VOL, once, untimed)
#            against the restore-and-copy way, one timed script: fsimg -r -o
#            FILE IMG, mount -o loop,ro FILE MNT (NTFS: ntfs-3g -o ro; FAT: no
#            mount, mtools reads FILE), then the copy (umount, rm untimed):
#     cat      fsimg cat --stats IMG PATH >OUT | restore, mount, cp MNT/PATH OUT
#              (FAT: mcopy -i FILE ::PATH OUT); PATH is the file closest to
#              100 MiB (its name and size are in the table)
#     extract  fsimg extract IMG / -C DIR | restore, mount, cp -a MNT/. DIR
#              (FAT: mkdir DIR; mcopy -s -m -i FILE '::/*' DIR/)
#            with the records fsimg read (of the image's), checked: cat's
#            output against the file, each tree against the volume's
#            (tools/files-manifest.py: names, types, sizes, sha256, and for
#            ext4 modes and mtimes), the volume mounted read-only (FAT: copied
#            out with mcopy)
# partclone.FS is partclone.extfs, partclone.ntfs, partclone.fat32, partclone.xfs or partclone.btrfs.  On the
# disk (DISK), "the Clonezilla way" is what Clonezilla's savedisk does:
# sfdisk -d DISK, dd of sector 0 and of the gap before partition 1, then
# for each partition, through a loop device at its offset (losetup -f -o
# OFF --sizelimit SIZE, timed), partclone.vfat or partclone.extfs -c:
#   save     fsimg -s -o - DISK >/dev/null | the Clonezilla way, partclone -o - >/dev/null
#   savefile fsimg -s -o OUT DISK | the Clonezilla way into a directory
#   clone    fsimg -o OUT DISK | dd if=DISK of=OUT bs=4M conv=sparse
#   restore  fsimg -r -O OUT IMG | Clonezilla's restore: sfdisk OUT <table,
#            dd back the first 446 bytes and the gap, partclone -r onto a
#            loop device at each partition's offset (OUT pre-sized, untimed)
#   zstd     fsimg -s -z 3 -o OUT DISK | the Clonezilla way, partclone -o - | zstd -T0 -3
#   limit    pread of the used ranges only (of fsimg's sparse clone of the disk)
#   files    as for a volume, on the ext4 partition (fsimg cat/extract
#            --partition 2; the restore-and-copy way restores the whole disk
#            and mounts it with -o loop,ro,offset=OFF,sizelimit=SIZE)
# The tables go to stdout and, as markdown, are appended to docs/benchmarks.md,
# with the targets of issue 8 (and of cat and extract: at most 0.1x and 0.7x
# the restore-and-copy way, cat reading only the records that hold the file
# and the metadata on its path, peak RSS bounded by fsimg's record cache)
# said met or missed.
#
# tools/bench.sh mount [ARGS]: `fsimg mount` (issue 18), by
# tools/bench-mount.sh ARGS: a mounted image's sequential read against
# `fsimg -r -o - | dd`, 10,000 random 4 KiB reads, the server's peak RSS.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
if [ "${1:-}" = mount ]; then
    shift
    exec "$here/bench-mount.sh" "$@"
fi
fs=ext4 size="" fill="" runs="" smoke=0 seed=1 only="" md=$root/docs/benchmarks.md label="" profile=0 keep="" pretouch="" settle=""
while [ $# -gt 0 ]; do
    case $1 in
        ext4|ntfs|fat32|exfat|xfs|btrfs|disk|all) fs=$1; shift ;;
        --size) size=$2; shift 2 ;;
        --fill) fill=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --label) label=$2; shift 2 ;;
        --no-md) md=""; shift ;;
        --md) md=$2; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --profile) profile=1; shift ;;
        --keep) keep=1; shift ;;
        --no-pretouch) pretouch=0; shift ;;
        --no-settle) settle=--no-settle; shift ;;
        --drop) keep=0; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$smoke" = 1 ]; then
    runs=${runs:-1}
    md="" pretouch=0 settle=--no-settle
fi
runs=${runs:-5}
case $runs in ''|*[!0-9]*|0) echo "bench: --runs must be a positive number" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "bench: must run as root (the volume is filled through a loop or FUSE mount)" >&2; exit 1; }
case $fs in
    all)
        filesystems="ext4 ntfs fat32 exfat xfs btrfs disk"
        # NTFS and exFAT volumes are filled through ntfs-3g and exfat-fuse,
        # which need FUSE; a machine without it (some CI containers) still
        # runs the others.
        if [ ! -c /dev/fuse ]; then
            echo "bench: no /dev/fuse for ntfs-3g and exfat-fuse: skipping ntfs and exfat" >&2
            filesystems="ext4 fat32 xfs btrfs disk"
        fi
        ;;
    *) filesystems=$fs ;;
esac
[ -n "$keep" ] || { [ "$fs" = all ] && keep=0 || keep=1; }
tools="python3 zstd dd cksum /usr/bin/time"
for f in $filesystems; do
    case $f in
        ext4) tools="$tools mkfs.ext4 e2image dumpe2fs e2fsck partclone.extfs mount umount" ;;
        ntfs) tools="$tools mkntfs ntfs-3g ntfsclone ntfsfix ntfsinfo partclone.ntfs umount" ;;
        fat32) tools="$tools mkfs.fat fsck.fat mcopy mdel mshowfat partclone.fat32" ;;
        exfat) tools="$tools mkfs.exfat tune.exfat fsck.exfat mount.exfat-fuse losetup partclone.exfat" ;;
        xfs) tools="$tools mkfs.xfs xfs_repair partclone.xfs mount umount" ;;
        btrfs) tools="$tools mkfs.btrfs btrfs partclone.btrfs mount umount" ;;
        disk) tools="$tools sfdisk losetup truncate mkfs.fat fsck.fat mcopy mdel mkfs.ext4 e2fsck
                     partclone.vfat partclone.extfs mount umount" ;;
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

# KiB of /dev/shm the disk benchmark wants at SIZE MiB and FILL %, the disk
# included (see below).
disk_need() { echo $(( $1 * 1024 * ($2 + 10) / 100 + 4 * $1 * 1024 * $2 / 100 + 512 * 1024 )); }
# KiB free in /dev/shm, plus what a cached disk of FS, SIZE MiB, FILL % takes
# (it is counted in disk_need).
shm_room() {
    local have cached=0
    have=$(df -k --output=avail /dev/shm | tail -1)
    if [ "$1" = disk ]; then
        cached=$(find /dev/shm/fsimg-bench -maxdepth 1 -name "disk-${2}m-${3}p-s${seed}-*.img" \
                 -printf '%b\n' 2>/dev/null | awk '{ s += $1 / 2 } END { print int(s) }')
    fi
    echo $(( have + cached ))
}

for f in $filesystems; do
    # Size and fill: as given, else the scenario's default (--smoke: tiny).
    if [ "$f" = disk ]; then
        fsize=${size:-$([ "$smoke" = 1 ] && echo 512 || echo 8192)}
        ffill=${fill:-20}
    else
        # (mkfs.xfs refuses volumes under 300 MB.)
        fsize=${size:-$([ "$smoke" = 1 ] && { [ "$f" = xfs ] && echo 320 || echo 256; } || echo 4096)}
        ffill=${fill:-40}
    fi
    case $fsize$ffill in *[!0-9]*) echo "bench: --size and --fill must be numbers" >&2; exit 2 ;; esac
    if [ "$f" = disk ]; then
        # A sparse disk takes its used part and the deleted files' stale
        # data (10 %); up to four outputs of the used size exist at once
        # (restore: two images and one output, or a reference clone).
        if [ -z "$size" ]; then
            want=$fsize
            while [ "$fsize" -gt 512 ] && [ "$(shm_room disk "$fsize" "$ffill")" -lt "$(disk_need "$fsize" "$ffill")" ]; do
                fsize=$((fsize / 2))
            done
            [ "$fsize" = "$want" ] ||
                echo "bench: /dev/shm has too little room for a $want MiB disk" \
                     "(about $(( $(disk_need "$want" "$ffill") / 1024 )) MiB): using $fsize MiB" >&2
        fi
        need=$(disk_need "$fsize" "$ffill")
    else
        need=$(( fsize * 1024 * 3 / 2 ))
    fi
    vol=$("$here/make-bench-fs.sh" --fs "$f" --size "$fsize" --fill "$ffill" --seed "$seed")
    have=$(shm_room "$f" "$fsize" "$ffill")
    if [ "$have" -lt "$need" ]; then
        echo "bench: /dev/shm has $((have / 1024)) MiB free, want about $((need / 1024)) MiB" >&2
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
