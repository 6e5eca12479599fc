#!/usr/bin/env bash
# Build the deterministic whole-disk test images in testdata/disk/.
#
# Usage: tools/make-disk-testdata.sh [OUTDIR]      (default: testdata/disk)
#
# Needs root: loop devices (4096-byte-sector tables, and every check runs on
# a read-only loop device at the partition's offset) and an ntfs-3g (FUSE)
# mount to fill the NTFS partition.
#
# Each disk is a sparse file.  Its partition table is written by the real
# tools (sfdisk for MBR and the 4 KiB-sector GPT -- on a loop device with
# 4096-byte logical sectors, as sfdisk 2.38 has no --sector-size --, sgdisk
# for the other GPT disks and the hybrid MBR).  Every filesystem is made by
# its own mkfs on a separate file of exactly the partition's size (mkfs.fat
# and mkntfs are told the partition's start for their hidden-sectors field),
# filled (mtools, mke2fs -d, an ntfs-3g mount) and copied into the disk with
# dd conv=notrunc,sparse.  tools/disk-testdata-facts.py supplies the filler
# bytes (SHAKE-256 "random" for MBR boot code, compressible pseudo-random
# "junk" for big areas), the extra files of each partition, and decodes the
# finished table with plain struct parsing; the script checks that its
# partition list equals sfdisk -J's, that sgdisk -v finds no problems (GPT),
# and runs e2fsck -fn / fsck.fat -n / ntfsfix -n / blkid on every partition
# through a read-only loop device at its offset.  Any failed check aborts.
#
# Outputs, per disk NAME: NAME.img.zst (zstd -19 --long), NAME.expected
# (key=value, see testdata/disk/README), NAME.sfdisk (`sfdisk -d NAME.img`,
# run in the image's directory so the device is just "NAME.img").  For the
# 4096-byte-sector disk, NAME.sfdisk is what sfdisk 2.38 prints for the
# plain file (it assumes 512-byte sectors, so it shows the protective MBR),
# and NAME.sfdisk-4096 is `sfdisk -d` of a 4096-byte-sector loop device.
# Everything is built in a temporary directory; OUTDIR's NAME.* files are
# replaced only at the end, after every disk has passed its checks.
#
# Requirements: root, losetup with -b (util-linux), sfdisk, sgdisk (gdisk),
# dosfstools, mtools, e2fsprogs (mke2fs, debugfs, dumpe2fs, e2fsck), ntfs-3g
# (mkntfs, ntfs-3g, ntfsfix, ntfsinfo), mkswap, blkid, zstd, python3, a C
# compiler (the fixed-clock shim for ntfs-3g), /dev/fuse, the C.UTF-8 locale.
#
# Reproducibility: two runs give byte-identical images (checked with
# util-linux 2.38.1, gdisk 1.0.9, dosfstools 4.2, mtools 4.0.32, e2fsprogs
# 1.47.0, ntfs-3g 2022.10.3, zstd 1.5.4).  We pin:
#   - MBR label ids, GPT disk and partition GUIDs (partition GUIDs are
#     UUIDv5 of "fsimg-testdata/disk/NAME/pN"), GPT names;
#   - FAT: mkfs.fat --invariant -i VOLID (CRC32 of "fsimg-testdata/disk/
#     NAME/pN") -n LABEL -h START, mtools with SOURCE_DATE_EPOCH, TZ=UTC,
#     LC_ALL=C.UTF-8, a private mtools configuration, sorted copy order
#     (as tools/make-fat-testdata.sh);
#   - ext4: -U UUID -E hash_seed=UUID,lazy_itable_init=0,lazy_journal_init=0,
#     nodiscard, E2FSPROGS_FAKE_TIME, our own MKE2FS_CONFIG, and debugfs
#     rewriting owner/atime/ctime/mtime of every inode (as
#     tools/make-ext-testdata.sh);
#   - NTFS: mkntfs -T (zero time: its random generator is seeded with 0),
#     the serial then overwritten (tools/ntfs-testdata-facts.py set-serial),
#     ntfs-3g under an LD_PRELOAD shim whose wall clock is SOURCE_DATE_EPOCH,
#     files written in sorted order (as tools/make-ntfs-testdata.sh);
#   - swap: mkswap -U UUID -L LABEL -p 4096;
#   - filler bytes: SHAKE-256 of fixed labels.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/testdata/disk}
facts=$here/disk-testdata-facts.py
fatfacts=$here/fat-testdata-facts.py
ntfsfacts=$here/ntfs-testdata-facts.py

export LC_ALL=C.UTF-8 TZ=UTC
export SOURCE_DATE_EPOCH=1700000000
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
umask 022

fail() { echo "ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (loop devices, ntfs-3g mount)"
for tool in losetup sfdisk sgdisk mkfs.fat fsck.fat mcopy mmd mke2fs debugfs dumpe2fs e2fsck \
            mkntfs ntfs-3g ntfsfix ntfsinfo mkswap blkid mountpoint umount zstd python3 sha256sum cc dd; do
    command -v "$tool" >/dev/null || fail "missing tool: $tool"
done
[ -c /dev/fuse ] || fail "missing /dev/fuse (modprobe fuse?)"
locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' || fail "missing locale: C.UTF-8"
for f in "$facts" "$fatfacts" "$ntfsfacts"; do [ -f "$f" ] || fail "missing $f"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-disk.XXXXXX")
stage=$work/out
mnt=$work/mnt
mkdir "$stage" "$mnt"
: >"$work/loops"
ntfs3g_pid=""
cleanup() {
    local l
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt" || true; fi
    if [ -n "$ntfs3g_pid" ]; then wait "$ntfs3g_pid" 2>/dev/null || true; fi
    if [ -f "$work/loops" ]; then
        while read -r l; do [ -n "$l" ] && losetup -d "$l" 2>/dev/null || true; done <"$work/loops"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# Pinned environment for the filesystem tools
# ---------------------------------------------------------------------------
# mtools (see tools/make-fat-testdata.sh)
export HOME=$work
export MTOOLSRC=$work/mtoolsrc
: >"$MTOOLSRC"
export MTOOLS_SKIP_CHECK=1 MTOOLS_NO_VFAT=0 MTOOLS_LOWER_CASE=0 \
       MTOOLS_NAME_NUMERIC_TAIL=1 MTOOLS_FAT_COMPATIBILITY=0

# Our own mke2fs.conf (the e2fsprogs 1.47.0 default, as make-ext-testdata.sh).
export MKE2FS_CONFIG=$work/mke2fs.conf
cat >"$MKE2FS_CONFIG" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext3 = {
		features = has_journal
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		blocksize = 1024
		inode_ratio = 4096
	}
	floppy = {
		blocksize = 1024
		inode_ratio = 8192
	}
EOF

# The fixed-clock shim for ntfs-3g (see tools/make-ntfs-testdata.sh).
cat >"$work/fixedtime.c" <<'EOF'
/* LD_PRELOAD: the wall clock reads FSIMG_FIXED_TIME (seconds since 1970);
 * monotonic clocks (used by FUSE for its timeouts) are left alone. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
static time_t fixed(void) { const char *s = getenv("FSIMG_FIXED_TIME"); return s ? (time_t)atoll(s) : 0; }
int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) {
        ts->tv_sec = fixed();
        ts->tv_nsec = 0;
        return 0;
    }
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    return real(id, ts);
}
int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    if (tv) { tv->tv_sec = fixed(); tv->tv_usec = 0; }
    return 0;
}
time_t time(time_t *t) { time_t v = fixed(); if (t) *t = v; return v; }
EOF
cc -O2 -shared -fPIC -o "$work/fixedtime.so" "$work/fixedtime.c" -ldl || fail "cannot build the fixed-clock shim"
shim=$work/fixedtime.so

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
MiB=$((1 << 20))

# key=value from a facts file
get() { sed -n "s/^$2=//p" "$1" | head -n1; }
# value of "Key:   value" (dumpe2fs -h, ntfsinfo -m)
hdr() { sed -n "s/^[[:space:]]*$2:[[:space:]]*//p" "$1" | head -n1; }

# guid KEY: a pinned GUID, UUIDv5 of fsimg-testdata/disk/KEY, upper case
guid() { python3 -c 'import uuid,sys; print(str(uuid.uuid5(uuid.NAMESPACE_URL, "fsimg-testdata/disk/" + sys.argv[1])).upper())' "$1"; }
# volid KEY: 8 hex digits, CRC32 of fsimg-testdata/disk/KEY
volid() { python3 -c 'import zlib,sys; print("%08x" % zlib.crc32(("fsimg-testdata/disk/" + sys.argv[1]).encode()))' "$1"; }

# loop IMG OFFSET SIZE SECTOR_SIZE: a read-only loop device on that range
loop() {
    local dev
    dev=$(losetup -f --show -r -o "$2" --sizelimit "$3" -b "$4" "$1") || fail "losetup $1 at $2"
    echo "$dev" >>"$work/loops"
    [ "$(blockdev --getsize64 "$dev")" = "$3" ] || fail "$dev: size is not $3"
    echo "$dev"
}
unloop() {
    blockdev --flushbufs "$1" || true
    losetup -d "$1"
    sed -i "\\|^$1\$|d" "$work/loops"
}

# put DISK FILE OFFSET: FILE into DISK at byte OFFSET
put() { dd if="$2" of="$1" bs=1M seek="$3" oflag=seek_bytes conv=notrunc,sparse status=none; }

# bootcode DISK LABEL: 440 random bytes at 0 (the MBR boot code), without
# touching the disk signature, the entries or 55 AA.
bootcode() {
    local before after
    before=$(dd if="$1" bs=1 skip=440 count=72 status=none | sha256sum)
    python3 "$facts" random "$2" 440 | dd of="$1" bs=440 count=1 conv=notrunc status=none
    after=$(dd if="$1" bs=1 skip=440 count=72 status=none | sha256sum)
    [ "$before" = "$after" ] || fail "$1: writing the boot code changed the partition table"
}

# size_is FILE BYTES
size_is() { [ "$(stat -c %s "$1")" = "$2" ] || fail "$1 is $(stat -c %s "$1") bytes, not $2"; }

# ---------------------------------------------------------------------------
# Filesystem builders: each makes $work/fs.img of exactly SIZE bytes
# ---------------------------------------------------------------------------

# copy_tree FATIMG DIR (as tools/make-fat-testdata.sh)
copy_tree() {
    local img=$1 src=$2 d
    local -a dirs files
    mapfile -d '' dirs < <(cd "$src" && find . -type d -print0 | LC_ALL=C sort -z)
    for d in "${dirs[@]}"; do
        d=${d#.}; d=${d#/}
        [ -n "$d" ] && mmd -i "$img" "::/$d" </dev/null
        mapfile -d '' files < <(cd "$src/${d:-.}" && find . -mindepth 1 -maxdepth 1 -type f -print0 | LC_ALL=C sort -z)
        [ "${#files[@]}" -gt 0 ] || continue
        (cd "$src/${d:-.}" && mcopy -i "$img" -m "${files[@]}" "::/$d/" </dev/null)
    done
}

# mktree KIND TAG: a fresh source tree in $work/tree with fixed timestamps
mktree() {
    rm -rf "$work/tree"
    python3 "$facts" extras "$1" "$work/tree" "$2"
    find "$work/tree" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# mk_fat KEY SIZE SECTOR_SIZE HIDDEN LABEL EXTRAS MKFS-ARGS...
mk_fat() {
    local key=$1 size=$2 ss=$3 hidden=$4 label=$5 kind=$6
    shift 6
    local img=$work/fs.img id
    id=$(volid "$key")
    rm -f "$img"
    truncate -s "$size" "$img"
    mkfs.fat --invariant -i "$id" -n "$label" -h "$hidden" -S "$ss" "$@" "$img" >"$work/mkfs.log" 2>&1 ||
        { cat "$work/mkfs.log" >&2; fail "$key: mkfs.fat failed"; }
    mktree "$kind" "$key"
    copy_tree "$img" "$work/tree"
    fsck.fat -n "$img" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; fail "$key: fsck.fat -n"; }
    size_is "$img" "$size"
}

# mk_ext KEY SIZE LABEL EXTRAS MKE2FS-ARGS...
mk_ext() {
    local key=$1 size=$2 label=$3 kind=$4
    shift 4
    local img=$work/fs.img uuid p f
    uuid=$(guid "$key" | tr 'A-F' 'a-f')
    rm -f "$img"
    truncate -s "$size" "$img"
    mktree "$kind" "$key"
    mke2fs -q -F -t ext4 -L "$label" -U "$uuid" \
        -E "hash_seed=$uuid,lazy_itable_init=0,lazy_journal_init=0,nodiscard,root_owner=0:0" \
        -d "$work/tree" "$@" "$img" || fail "$key: mke2fs failed"
    # what mke2fs -d copies from the host: owner, atime, ctime (mtime too)
    {
        echo "set_current_time @$SOURCE_DATE_EPOCH"
        (cd "$work/tree" && find . -mindepth 1 | LC_ALL=C sort) | while IFS= read -r p; do
            p=${p#.}
            for f in uid gid; do echo "sif \"$p\" $f 0"; done
            for f in atime ctime mtime; do echo "sif \"$p\" $f @$SOURCE_DATE_EPOCH"; done
        done
    } >"$work/fix.debugfs"
    debugfs -w -f "$work/fix.debugfs" "$img" >"$work/fix.log" 2>&1
    if grep -E -i 'error|not found|invalid|unknown' "$work/fix.log" | grep -v '^debugfs [0-9]'; then
        fail "$key: debugfs inode fix-up reported problems"
    fi
    e2fsck -fn "$img" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; fail "$key: e2fsck -fn"; }
    size_is "$img" "$size"
}

mount_ntfs() {
    local img=$1 opts=$2 i
    LD_PRELOAD=$shim FSIMG_FIXED_TIME=$SOURCE_DATE_EPOCH \
        ntfs-3g -o "no_detach,$opts" "$img" "$mnt" >>"$work/ntfs-3g.log" 2>&1 &
    ntfs3g_pid=$!
    for i in $(seq 100); do
        mountpoint -q "$mnt" && return 0
        kill -0 "$ntfs3g_pid" 2>/dev/null || { tail -n 20 "$work/ntfs-3g.log" >&2; fail "ntfs-3g $img failed"; }
        sleep 0.1
    done
    fail "ntfs-3g $img: not mounted after 10 s"
}
umount_ntfs() {
    umount "$mnt"
    local rc=0
    wait "$ntfs3g_pid" || rc=$?
    ntfs3g_pid=""
    [ "$rc" = 0 ] || { tail -n 20 "$work/ntfs-3g.log" >&2; fail "ntfs-3g exited with status $rc"; }
}

# mk_ntfs KEY SIZE START_SECTOR LABEL EXTRAS MKNTFS-ARGS...
mk_ntfs() {
    local key=$1 size=$2 start=$3 label=$4 kind=$5
    shift 5
    local img=$work/fs.img serial d f
    rm -f "$img"
    truncate -s "$size" "$img"
    mkntfs -F -f -q -T -L "$label" -p "$start" -H 255 -S 63 "$@" "$img" >"$work/mkntfs.log" 2>&1 ||
        { cat "$work/mkntfs.log" >&2; fail "$key: mkntfs failed"; }
    serial=$(printf 'fsimg-testdata/disk/%s' "$key" | sha256sum | cut -c1-16)
    python3 "$ntfsfacts" set-serial "$img" "$serial"
    mktree "$kind" "$key"
    mount_ntfs "$img" rw
    # directories, then files, in bytewise order (the order decides the layout)
    (cd "$work/tree" && find . -mindepth 1 -type d | LC_ALL=C sort) | while IFS= read -r d; do
        mkdir "$mnt/$d"
    done
    (cd "$work/tree" && find . -type f | LC_ALL=C sort) | while IFS= read -r f; do
        cat "$work/tree/$f" >"$mnt/$f"
    done
    find "$mnt" -mindepth 1 -depth -exec touch -d "@$SOURCE_DATE_EPOCH" {} +
    umount_ntfs
    local rc=0
    ntfsfix -n "$img" >"$work/ntfsfix.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ] || ! grep -q 'processed successfully' "$work/ntfsfix.log"; then
        cat "$work/ntfsfix.log" >&2
        fail "$key: ntfsfix -n is not clean"
    fi
    size_is "$img" "$size"
}

# mk_swap KEY SIZE LABEL: junk, then a swap header over it
mk_swap() {
    local key=$1 size=$2 label=$3 img=$work/fs.img
    rm -f "$img"
    python3 "$facts" junk swap "$key" "$size" >"$img"
    chmod 600 "$img"
    mkswap -U "$(guid "$key" | tr 'A-F' 'a-f')" -L "$label" -p 4096 "$img" >"$work/mkswap.log" 2>&1 ||
        { cat "$work/mkswap.log" >&2; fail "$key: mkswap failed"; }
    size_is "$img" "$size"
}

# mk_raw KEY SIZE POOL: pseudo-random bytes, no filesystem
mk_raw() {
    rm -f "$work/fs.img"
    python3 "$facts" junk "$3" "$1" "$2" >"$work/fs.img"
    size_is "$work/fs.img" "$2"
}

# ---------------------------------------------------------------------------
# Checks and outputs for one finished disk
# ---------------------------------------------------------------------------
# FS[NAME:N] = ext4|fat32|fat16|ntfs|swap|raw, set by the disk builders
declare -A FS

# finish NAME SECTOR_SIZE TABLE(mbr|gpt|hybrid)
finish() {
    local name=$1 ss=$2 kind=$3
    local img=$work/$name.img t=$work/$name.table sz
    sz=$(stat -c %s "$img")
    echo "== $name: checking" >&2

    # ---- the table: our decoder against sfdisk -J ----
    python3 "$facts" table "$img" "$ss" >"$t" || fail "$name: disk-testdata-facts.py table failed"
    local sfd=$img dev=""
    if [ "$ss" != 512 ]; then
        dev=$(loop "$img" 0 "$sz" "$ss")
        sfd=$dev
    fi
    sfdisk -J "$sfd" >"$work/$name.json" 2>"$work/$name.sfdisk.err" || fail "$name: sfdisk -J failed"
    python3 "$facts" sfdisk-json <"$work/$name.json" >"$work/$name.sfparts"
    grep '^part ' "$t" >"$work/$name.ourparts" || true
    diff -u "$work/$name.sfparts" "$work/$name.ourparts" >&2 ||
        fail "$name: sfdisk -J and disk-testdata-facts.py table list different partitions"
    local sflabel
    sflabel=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["label"])' <"$work/$name.json")
    case $kind in
        mbr) [ "$sflabel" = dos ] || fail "$name: sfdisk sees a $sflabel label" ;;
        *) [ "$sflabel" = gpt ] || fail "$name: sfdisk sees a $sflabel label" ;;
    esac
    if [ "$kind" != mbr ]; then
        sgdisk -v "$sfd" >"$work/$name.sgdisk" 2>&1 || { cat "$work/$name.sgdisk" >&2; fail "$name: sgdisk -v failed"; }
        grep -q 'No problems found' "$work/$name.sgdisk" || { cat "$work/$name.sgdisk" >&2; fail "$name: sgdisk -v found problems"; }
        [ "$ss" = 512 ] || grep -q "Sector size (logical[/a-z]*): $ss" <(sgdisk -p "$sfd" 2>&1) ||
            fail "$name: sgdisk does not see $ss-byte sectors"
        local nhyb
        nhyb=$(get "$t" mbr_hybrid_entries)
        if [ "$kind" = hybrid ]; then
            [ "$nhyb" -ge 1 ] || fail "$name: no hybrid MBR entries"
        else
            [ "$nhyb" = 0 ] || fail "$name: MBR is not just protective"
        fi
        [ "$(dd if="$img" bs=1 skip="$ss" count=8 status=none)" = "EFI PART" ] ||
            fail "$name: no GPT header at byte $ss"
    fi
    # sfdisk -d for the tests: the plain file, as they run it
    (cd "$work" && sfdisk -d "$name.img" >"$stage/$name.sfdisk" 2>/dev/null) || fail "$name: sfdisk -d failed"
    if [ -n "$dev" ]; then
        mkdir -p "$work/dev"
        ln -sfn "$dev" "$work/dev/$name.img"
        (cd "$work/dev" && sfdisk -d "$name.img" >"$stage/$name.sfdisk-$ss" 2>/dev/null) || fail "$name: sfdisk -d $dev failed"
        grep -q "^sector-size: $ss\$" "$stage/$name.sfdisk-$ss" || fail "$name: sfdisk did not use $ss-byte sectors"
        rm "$work/dev/$name.img"
        unloop "$dev"
    fi

    # ---- every partition, through a read-only loop device ----
    local e=$work/$name.expected.body
    local -a nums=()
    local n start cnt ty uuid rest first=""
    local -A PST PSZ PTY PGUID PNAME
    while read -r _ n start cnt ty uuid rest; do
        case $ty in 0x05|0x0f|0x85) continue ;; esac
        nums+=("$n")
        PST[$n]=$((start * ss)); PSZ[$n]=$((cnt * ss))
        if [ "$kind" = mbr ]; then PTY[$n]=${ty#0x}; else PTY[$n]=$ty; PGUID[$n]=$uuid; PNAME[$n]=$rest; fi
        if [ -z "$first" ] || [ "${PST[$n]}" -lt "$first" ]; then first=${PST[$n]}; fi
    done <"$work/$name.ourparts"
    {
        echo "disk_size=$sz"
        echo "sector_size=$ss"
        echo "table=$kind"
        if [ "$kind" = mbr ]; then echo "disk_id=$(get "$t" mbr_signature)"; else echo "disk_id=$(get "$t" gpt_disk_guid)"; fi
        echo "partitions=${#nums[@]}"
    } >"$e"
    for n in "${nums[@]}"; do
        local fs=${FS[$name:$n]:-} off=${PST[$n]} len=${PSZ[$n]} d used="" hidden="" lg=$work/$name.p$n.log
        [ -n "$fs" ] || fail "$name: partition $n has no filesystem recorded"
        d=$(loop "$img" "$off" "$len" "$ss")
        case $fs in
            ext4)
                e2fsck -fn "$d" >"$lg" 2>&1 || { cat "$lg" >&2; fail "$name p$n: e2fsck -fn"; }
                dumpe2fs -h "$d" >"$lg.h" 2>/dev/null || fail "$name p$n: dumpe2fs -h"
                local bs bc fb
                bs=$(hdr "$lg.h" 'Block size'); bc=$(hdr "$lg.h" 'Block count'); fb=$(hdr "$lg.h" 'Free blocks')
                [ $((bc * bs)) = "$len" ] || fail "$name p$n: ext4 is $bc x $bs bytes, the partition $len"
                used=$(((bc - fb) * bs))
                ;;
            fat16|fat32)
                fsck.fat -n -v "$d" >"$lg" 2>&1 || { cat "$lg" >&2; fail "$name p$n: fsck.fat -n"; }
                ! grep -q 'Dirty bit' "$lg" || fail "$name p$n: dirty"
                dd if="$d" of="$work/part.img" bs=1M status=none
                python3 "$fatfacts" facts "$work/part.img" >"$lg.f" || fail "$name p$n: fat-testdata-facts.py"
                [ "fat$(get "$lg.f" fat_type)" = "$fs" ] || fail "$name p$n: FAT$(get "$lg.f" fat_type), not $fs"
                [ $(($(get "$lg.f" total_sectors) * $(get "$lg.f" bytes_per_sector))) = "$len" ] ||
                    fail "$name p$n: FAT does not fill the partition"
                local fl
                fl=$(grep -E ': [0-9]+ files, [0-9]+/[0-9]+ clusters$' "$lg" | tail -n1 | sed -E 's/.* ([0-9]+)\/([0-9]+) clusters$/\1 \2/')
                [ "$fl" = "$(get "$lg.f" used_clusters) $(get "$lg.f" cluster_count)" ] ||
                    fail "$name p$n: fsck.fat says $fl clusters used/total, the FAT $(get "$lg.f" used_clusters)/$(get "$lg.f" cluster_count)"
                used=$(get "$lg.f" used_bytes)
                hidden=$(python3 "$facts" hidden "$work/part.img")
                rm -f "$work/part.img"
                ;;
            ntfs)
                ntfsfix -n "$d" >"$lg" 2>&1 && grep -q 'processed successfully' "$lg" ||
                    { cat "$lg" >&2; fail "$name p$n: ntfsfix -n"; }
                ntfsinfo -m "$d" >"$lg.i" 2>/dev/null || fail "$name p$n: ntfsinfo -m"
                local cs tc fc
                cs=$(hdr "$lg.i" 'Cluster Size'); tc=$(hdr "$lg.i" 'Volume Size in Clusters')
                fc=$(hdr "$lg.i" 'Free Clusters'); fc=${fc%% *}
                [ "$(hdr "$lg.i" 'Volume Flags')" = 0x0000 ] || fail "$name p$n: NTFS volume flags are not 0"
                dd if="$d" of="$work/part.img" bs=1M status=none
                python3 "$ntfsfacts" facts "$work/part.img" >"$lg.f" || fail "$name p$n: ntfs-testdata-facts.py"
                [ "$(get "$lg.f" bitmap_used_clusters)" = $((tc - fc)) ] ||
                    fail "$name p$n: ntfsinfo says $((tc - fc)) used clusters, \$Bitmap $(get "$lg.f" bitmap_used_clusters)"
                # the used clusters, and the bytes after the last cluster (backup boot sector)
                used=$(((tc - fc) * cs + len - tc * cs))
                hidden=$(python3 "$facts" hidden "$work/part.img")
                rm -f "$work/part.img"
                ;;
            swap)
                blkid -p -o export "$d" >"$lg" || fail "$name p$n: blkid finds nothing"
                [ "$(get "$lg" TYPE)" = swap ] || fail "$name p$n: blkid says $(get "$lg" TYPE), not swap"
                ;;
            raw)
                local rc=0
                blkid -p -o export "$d" >"$lg" 2>&1 || rc=$?
                [ "$rc" = 2 ] || { cat "$lg" >&2; fail "$name p$n: blkid recognises something in a raw partition"; }
                [ "$(dd if="$d" bs=4096 count=1 status=none | tr -d '\0' | wc -c)" -gt 0 ] ||
                    fail "$name p$n: raw partition starts with zeros"
                ;;
            *) fail "$name p$n: unknown fs $fs" ;;
        esac
        unloop "$d"
        if [ -n "$hidden" ]; then
            # the hidden-sectors field counts the filesystem's own sectors
            # (= the disk's logical sectors here)
            [ "$hidden" = $((off / ss)) ] || fail "$name p$n: hidden sectors $hidden, the partition starts at LBA $((off / ss))"
        fi
        {
            echo "p${n}_start=$off"
            echo "p${n}_size=$len"
            echo "p${n}_type=${PTY[$n]}"
            echo "p${n}_fs=$fs"
            [ -n "$used" ] && echo "p${n}_used_bytes=$used"
            [ -n "$hidden" ] && echo "p${n}_hidden_sectors=$hidden"
            if [ "$kind" != mbr ]; then
                echo "p${n}_guid=${PGUID[$n]}"
                echo "p${n}_name=${PNAME[$n]}"
            fi
            true
        } >>"$e"
        printf '   p%-2s %-5s start=%-10s size=%-10s used=%s\n' "$n" "$fs" "$off" "$len" "${used:--}" >&2
    done

    # ---- whole-disk facts ----
    {
        if [ "$kind" = mbr ]; then
            local ext
            ext=$(awk '$5 ~ /^0x(05|0f|85)$/ {print $2, $3, $4}' "$work/$name.ourparts")
            if [ -n "$ext" ]; then
                set -- $ext
                echo "extended_number=$1"
                echo "extended_start=$(($2 * ss))"
                echo "extended_size=$(($3 * ss))"
                echo "ebr_lbas=$(get "$t" ebr_lbas)"
            fi
        else
            echo "gpt_first_usable_lba=$(get "$t" gpt_first_usable_lba)"
            echo "gpt_last_usable_lba=$(get "$t" gpt_last_usable_lba)"
            echo "gpt_backup_header_lba=$(get "$t" gpt_backup_header_lba)"
            local i mbr=""
            for i in 1 2 3 4; do
                [ -n "$(get "$t" "mbr${i}_type")" ] || continue
                mbr=${mbr:+$mbr,}$i:$(get "$t" "mbr${i}_type" | sed 's/^0x//'):$(get "$t" "mbr${i}_start_lba"):$(get "$t" "mbr${i}_sectors")
            done
            echo "mbr_entries=$mbr"
        fi
        echo "gap_sha256=$(head -c "$first" "$img" | sha256sum | cut -d' ' -f1)"
        echo "sector0_sha256=$(head -c "$ss" "$img" | sha256sum | cut -d' ' -f1)"
        echo "image_sha256=$(sha256sum "$img" | cut -d' ' -f1)"
    } >>"$e"

    # ---- outputs ----
    zstd -19 --long -q -f --no-progress "$img" -o "$stage/$name.img.zst"
    [ "$(zstd -dc --long "$stage/$name.img.zst" | sha256sum | cut -d' ' -f1)" = "$(get "$e" image_sha256)" ] ||
        fail "$name: the .zst does not decompress to the image"
    {
        echo "# $name -- generated by tools/make-disk-testdata.sh; do not edit."
        echo "# Byte offsets and sizes are in bytes from the start of the disk; see testdata/disk/README."
        echo "# disk_size, sector_size (logical), table (mbr|gpt|hybrid), disk_id (MBR: label id"
        echo "#   0x%08x; GPT/hybrid: disk GUID), partitions (count; an extended container not counted)."
        echo "# pN_*: partition N as Linux numbers it (MBR primaries 1-4, logicals 5+; GPT entry"
        echo "#   index + 1): start, size, type (MBR: 2 hex digits; GPT: type GUID), fs"
        echo "#   (ext4|fat32|fat16|ntfs|swap|raw), used_bytes (the filesystem's own count: ext:"
        echo "#   (Block count - Free blocks) * Block size from dumpe2fs -h; FAT: (reserved + FATs + root"
        echo "#   dir + used clusters + tail sectors) * bytes/sector, used clusters checked against"
        echo "#   fsck.fat -v; NTFS: (Volume Size in Clusters - Free Clusters) of ntfsinfo -m times the"
        echo "#   cluster size, plus the bytes after the last cluster incl. the backup boot sector;"
        echo "#   none for swap and raw), hidden_sectors (FAT/NTFS boot sector field = start LBA),"
        echo "#   guid and name (GPT)."
        echo "# extended_*, ebr_lbas: the MBR extended container and its EBR chain (sectors)."
        echo "# gpt_*_lba: from the primary header. mbr_entries: sector 0's entries (slot:type:start:sectors)."
        echo "# gap_sha256 = sha256 of bytes [0, first partition start); sector0_sha256 = of the first"
        echo "#   logical sector; image_sha256 = of the whole decompressed image."
        cat "$e"
    } >"$stage/$name.expected"
    printf '   %s: %s bytes, %s bytes of .zst\n' "$name" "$sz" "$(stat -c %s "$stage/$name.img.zst")" >&2
    [ "$(stat -c %s "$stage/$name.img.zst")" -le $((1100 * 1024)) ] ||
        echo "WARNING: $name.img.zst is over 1.1 MiB" >&2
    rm -f "$img"
}

# ---------------------------------------------------------------------------
# The disks
# ---------------------------------------------------------------------------

# 1. rpi: the Raspberry Pi OS layout. MBR 0x5a8b3c1d; FAT32 boot partition
# (type 0x0c) at sector 8192, ext4 root at 122880; 8 MiB free at the end.
# MBR boot code, and a 1 MiB "bootloader" at 1 MiB in the gap before p1.
disk_rpi() {
    local name=rpi img=$work/rpi.img
    echo "== $name" >&2
    truncate -s $((270336 * 512)) "$img"
    sfdisk -q --no-reread --no-tell-kernel "$img" >"$work/sfdisk.log" 2>&1 <<'EOF' || { cat "$work/sfdisk.log" >&2; fail "$name: sfdisk"; }
label: dos
label-id: 0x5a8b3c1d
unit: sectors

start=8192, size=114688, type=c
start=122880, size=131072, type=83
EOF
    mk_fat rpi/p1 $((114688 * 512)) 512 8192 BOOTFS rpi-boot -F 32
    put "$img" "$work/fs.img" $((8192 * 512)); FS[$name:1]=fat32
    mk_ext rpi/p2 $((131072 * 512)) rootfs rootfs -b 4096 -N 2048
    put "$img" "$work/fs.img" $((122880 * 512)); FS[$name:2]=ext4
    python3 "$facts" junk rpi-boot rpi:bootloader "$MiB" >"$work/blob"
    put "$img" "$work/blob" "$MiB"
    bootcode "$img" rpi:bootcode
    finish "$name" 512 mbr
}

# 2. gpt-dualboot: BIOS boot (GRUB core: junk), ESP, Windows NTFS, Linux
# ext4, swap over junk, and 2 MiB of junk under a made-up type GUID.
disk_gpt_dualboot() {
    local name=gpt-dualboot img=$work/gpt-dualboot.img
    echo "== $name" >&2
    truncate -s $((150 * MiB)) "$img"
    sgdisk -o -U 6E0C1A35-8D4B-4F6A-9B1C-0DA7B00DCAFE \
        -n 1:2048:+1M    -t 1:21686148-6449-6E6F-744E-656564454649 -u "1:$(guid $name/p1)" -c "1:BIOS boot partition" \
        -n 2:4096:+40M   -t 2:C12A7328-F81F-11D2-BA4B-00A0C93EC93B -u "2:$(guid $name/p2)" -c "2:EFI system partition" \
        -n 3:86016:+48M  -t 3:EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 -u "3:$(guid $name/p3)" -c "3:Basic data partition" \
        -n 4:184320:+48M -t 4:0FC63DAF-8483-4772-8E79-3D69D8477DE4 -u "4:$(guid $name/p4)" -c "4:Linux filesystem" \
        -n 5:282624:+8M  -t 5:0657FD6D-A4AB-43C4-84E5-0933C84B4F4F -u "5:$(guid $name/p5)" -c "5:Linux swap" \
        -n 6:299008:+2M  -t 6:11223344-5566-7788-99AA-BBCCDDEEFF00 -u "6:$(guid $name/p6)" -c "6:vendor blob" \
        -A 6:set:0 \
        "$img" >"$work/sgdisk.log" 2>&1 || { cat "$work/sgdisk.log" >&2; fail "$name: sgdisk"; }
    mk_raw $name/p1 "$MiB" grub
    put "$img" "$work/fs.img" $((2048 * 512)); FS[$name:1]=raw
    mk_fat $name/p2 $((40 * MiB)) 512 4096 ESP esp -F 32
    put "$img" "$work/fs.img" $((4096 * 512)); FS[$name:2]=fat32
    mk_ntfs $name/p3 $((48 * MiB)) 86016 Windows windows -s 512 -c 4096
    put "$img" "$work/fs.img" $((86016 * 512)); FS[$name:3]=ntfs
    mk_ext $name/p4 $((48 * MiB)) debian-root rootfs -b 4096 -N 2048
    put "$img" "$work/fs.img" $((184320 * 512)); FS[$name:4]=ext4
    mk_swap $name/p5 $((8 * MiB)) swap
    put "$img" "$work/fs.img" $((282624 * 512)); FS[$name:5]=swap
    mk_raw $name/p6 $((2 * MiB)) vendor
    put "$img" "$work/fs.img" $((299008 * 512)); FS[$name:6]=raw
    bootcode "$img" $name:bootcode
    finish "$name" 512 gpt
}

# 3. mbr-logical: primary ext4 (active), an extended partition with three
# logicals: ext4, FAT16 (0x06), ext4.
disk_mbr_logical() {
    local name=mbr-logical img=$work/mbr-logical.img
    echo "== $name" >&2
    truncate -s $((80 * MiB)) "$img"
    # (partition numbers >= 5 need the node names; each logical is 1 MiB
    # after its EBR, which sfdisk puts where the previous logical ends)
    (cd "$work" && sfdisk -q --no-reread --no-tell-kernel "$name.img") >"$work/sfdisk.log" 2>&1 <<'EOF' || { cat "$work/sfdisk.log" >&2; fail "$name: sfdisk"; }
label: dos
label-id: 0x11223344
unit: sectors

mbr-logical.img1 : start=2048, size=32768, type=83, bootable
mbr-logical.img2 : start=34816, size=106496, type=5
mbr-logical.img5 : start=36864, size=32768, type=83
mbr-logical.img6 : start=71680, size=32768, type=6
mbr-logical.img7 : start=106496, size=32768, type=83
EOF
    local -A at=([1]=2048 [5]=36864 [6]=71680 [7]=106496)
    local n start cnt ty rest
    while read -r _ n start cnt ty rest; do
        [ "$n" = 2 ] || [ "$start $cnt" = "${at[$n]} 32768" ] || fail "$name: sfdisk put p$n at $start+$cnt"
    done < <(sfdisk -J "$img" | python3 "$facts" sfdisk-json)
    mk_ext $name/p1 $((16 * MiB)) primary rootfs -b 4096 -N 1024
    put "$img" "$work/fs.img" $((at[1] * 512)); FS[$name:1]=ext4
    mk_ext $name/p5 $((16 * MiB)) logical5 plain -b 4096 -N 1024
    put "$img" "$work/fs.img" $((at[5] * 512)); FS[$name:5]=ext4
    mk_fat $name/p6 $((16 * MiB)) 512 "${at[6]}" DOSDATA windows -F 16
    put "$img" "$work/fs.img" $((at[6] * 512)); FS[$name:6]=fat16
    mk_ext $name/p7 $((16 * MiB)) logical7 plain -b 4096 -N 1024
    put "$img" "$work/fs.img" $((at[7] * 512)); FS[$name:7]=ext4
    bootcode "$img" $name:bootcode
    finish "$name" 512 mbr
}

# 4. gpt-4k: GPT with 4096-byte logical sectors (sfdisk on a loop device
# with -b 4096): ESP FAT32 with 4096-byte sectors (the smallest FAT32 there
# is then is about 256 MiB), ext4.
disk_gpt_4k() {
    local name=gpt-4k img=$work/gpt-4k.img dev
    echo "== $name" >&2
    truncate -s $((75264 * 4096)) "$img"
    dev=$(losetup -f --show -b 4096 "$img") || fail "$name: losetup"
    echo "$dev" >>"$work/loops"
    [ "$(blockdev --getss "$dev")" = 4096 ] || fail "$name: $dev does not have 4096-byte sectors"
    sfdisk -q --no-reread --no-tell-kernel "$dev" >"$work/sfdisk.log" 2>&1 <<EOF || { cat "$work/sfdisk.log" >&2; fail "$name: sfdisk"; }
label: gpt
label-id: 4B0D15C5-2F6E-4C1A-8E4A-40960000D15C
unit: sectors

start=256, size=66560, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$(guid $name/p1), name="EFI system partition"
start=66816, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$(guid $name/p2), name="root"
EOF
    sync
    unloop "$dev"
    mk_fat $name/p1 $((66560 * 4096)) 4096 256 ESP4K esp -F 32 -s 1
    put "$img" "$work/fs.img" $((256 * 4096)); FS[$name:1]=fat32
    mk_ext $name/p2 $((8192 * 4096)) root4k rootfs -b 4096 -N 1024
    put "$img" "$work/fs.img" $((66816 * 4096)); FS[$name:2]=ext4
    bootcode "$img" $name:bootcode
    finish "$name" 4096 gpt
}

# 5. hybrid: GPT (ESP FAT32, Linux ext4, Linux ext4) whose sector 0 is a
# hybrid MBR made by sgdisk -h 1:2: 0xEE over the gap, then 0xEF and 0x83
# entries for GPT partitions 1 and 2; partition 3 is in the GPT only.
disk_hybrid() {
    local name=hybrid img=$work/hybrid.img
    echo "== $name" >&2
    truncate -s $((90 * MiB)) "$img"
    sgdisk -o -U A7B1D000-4B0D-4C0A-9E00-0000B00C4A3B \
        -n 1:2048:+40M   -t 1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B -u "1:$(guid $name/p1)" -c "1:EFI system" \
        -n 2:83968:+32M  -t 2:0FC63DAF-8483-4772-8E79-3D69D8477DE4 -u "2:$(guid $name/p2)" -c "2:Linux root" \
        -n 3:149504:+16M -t 3:0FC63DAF-8483-4772-8E79-3D69D8477DE4 -u "3:$(guid $name/p3)" -c "3:Linux data" \
        "$img" >"$work/sgdisk.log" 2>&1 || { cat "$work/sgdisk.log" >&2; fail "$name: sgdisk"; }
    sgdisk -h 1:2 "$img" >"$work/sgdisk.log" 2>&1 || { cat "$work/sgdisk.log" >&2; fail "$name: sgdisk -h"; }
    mk_fat $name/p1 $((40 * MiB)) 512 2048 EFI esp -F 32
    put "$img" "$work/fs.img" $((2048 * 512)); FS[$name:1]=fat32
    mk_ext $name/p2 $((32 * MiB)) hybrid-root rootfs -b 4096 -N 1024
    put "$img" "$work/fs.img" $((83968 * 512)); FS[$name:2]=ext4
    mk_ext $name/p3 $((16 * MiB)) hybrid-data plain -b 4096 -N 512
    put "$img" "$work/fs.img" $((149504 * 512)); FS[$name:3]=ext4
    bootcode "$img" $name:bootcode
    finish "$name" 512 hybrid
}

disk_rpi
disk_gpt_dualboot
disk_mbr_logical
disk_gpt_4k
disk_hybrid

# ---------------------------------------------------------------------------
# Replace the outputs
# ---------------------------------------------------------------------------
mkdir -p "$out"
rm -f "$out"/*.img.zst "$out"/*.expected "$out"/*.sfdisk "$out"/*.sfdisk-*
cp "$stage"/* "$out"/
echo "done: $(du -cb "$out"/*.img.zst | tail -n1 | cut -f1) bytes of .zst in $out" >&2
