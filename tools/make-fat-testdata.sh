#!/usr/bin/env bash
# Build the deterministic FAT12/16/32 test images in testdata/fat/.
#
# Usage: tools/make-fat-testdata.sh [OUTDIR]      (default: testdata/fat)
#
# Every image is made with `mkfs.fat` on a file and filled with mtools
# (mmd, mcopy -m, mdel) from a generated source tree (see
# tools/gen-fat-source-tree.py) -- nothing is ever mounted, so no root
# privileges are needed.  Some images get a fragmented file (12 small files
# written, every other one deleted, then a big file written into the gaps)
# and a deleted file whose clusters are free but still hold stale data.
# Each image is checked with `fsck.fat -n`, decoded with
# tools/fat-testdata-facts.py (plain struct, independent of the other tools),
# compressed to NAME.img.zst and described by NAME.expected.
#
# Requirements: dosfstools (mkfs.fat, fsck.fat), mtools (mmd, mcopy, mdel,
# mshowfat), zstd, python3, coreutils, the C.UTF-8 locale.
# Optional: partclone.fat (adds partclone_used_bytes=).
#
# Reproducibility: the output is byte-identical between runs on the same
# dosfstools/mtools/zstd versions (checked with dosfstools 4.2, mtools
# 4.0.32, zstd 1.5.4).  We pin:
#   - mkfs.fat --invariant (fixed boot code time stamps), -i VOLID (derived
#     from the image name) and -n LABEL;
#   - the clock mtools uses for new directory entries: mtools honours
#     SOURCE_DATE_EPOCH (mmd, the "." and ".." entries, anything copied
#     without -m); files are copied with mcopy -m, which keeps their mtime,
#     and every source file and directory has mtime SOURCE_DATE_EPOCH;
#   - TZ=UTC (FAT stores local time) and LC_ALL=C.UTF-8 (mtools converts
#     file names to the UTF-16 long names through the locale's charset);
#   - the mtools configuration: HOME and MTOOLSRC point into the work
#     directory and the MTOOLS_* variables that change names are set;
#   - the copy order: `mcopy -s` would copy in readdir order, which depends
#     on the host filesystem, so directories are created with mmd and files
#     copied with mcopy -m one directory at a time in sorted (bytewise) order.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/testdata/fat}
facts=$here/fat-testdata-facts.py

export LC_ALL=C.UTF-8 TZ=UTC
export SOURCE_DATE_EPOCH=1700000000
umask 022

for tool in mkfs.fat fsck.fat mcopy mmd mdel mshowfat zstd python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' || { echo "missing locale: C.UTF-8" >&2; exit 1; }
partclone=""
for p in partclone.fat /usr/sbin/partclone.fat; do
    if command -v "$p" >/dev/null; then partclone=$(command -v "$p"); break; fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-fat.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A private, empty mtools configuration; the environment overrides the
# system-wide /etc/mtools.conf for the settings that change what is written.
export HOME=$work
export MTOOLSRC=$work/mtoolsrc
: >"$MTOOLSRC"
export MTOOLS_SKIP_CHECK=1 MTOOLS_NO_VFAT=0 MTOOLS_LOWER_CASE=0 \
       MTOOLS_NAME_NUMERIC_TAIL=1 MTOOLS_FAT_COMPATIBILITY=0

fail() { echo "ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Source trees
# ---------------------------------------------------------------------------
for profile in floppy small full; do
    python3 "$here/gen-fat-source-tree.py" "$profile" "$work/src-$profile"
    find "$work/src-$profile" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
done

VICTIM=/data/victim.bin
FRAGFILE=/frag/fragmented.bin

# copy_tree IMG DIR: every directory of DIR (sorted, parents first) is
# created with mmd, then its regular files are copied with one mcopy -m, in
# sorted order.
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

# chain IMG PATH -> "a-b,c-d RUNS" (the file's cluster chain, from mshowfat)
chain() { mshowfat -i "$1" "::$2" </dev/null | python3 "$facts" ranges; }

# key=value from a facts file
get() { sed -n "s/^$2=//p" "$1" | head -n1; }

declare -A DELETED FRAG FRAGRUNS FROM

# build NAME PROFILE SECTORS SECTOR_SIZE LABEL EXTRAS MKFS-ARGS...
#   EXTRAS: comma list of "delete" (delete $VICTIM last) and "frag" (make
#   $FRAGFILE fragmented); "-" for none.
build() {
    local name=$1 profile=$2 sectors=$3 ssize=$4 label=$5 extras=$6
    shift 6
    local img=$work/$name.img src=$work/src-$profile
    local volid
    volid=$(python3 -c 'import sys, zlib; print("%08x" % zlib.crc32(("fsimg-testdata/fat/" + sys.argv[1]).encode()))' "$name")
    echo "== $name: mkfs.fat $* ($sectors x $ssize)" >&2

    rm -f "$img"
    truncate -s $((sectors * ssize)) "$img"
    mkfs.fat --invariant -i "$volid" -n "$label" "$@" "$img" >"$work/$name.mkfs.log"
    [ "$(python3 "$facts" facts "$img" | sed -n 's/^volume_id=//p')" = "$volid" ] ||
        fail "$name: volume id is not $volid"

    copy_tree "$img" "$src/tree"

    if [[ ,$extras, == *,frag,* ]]; then
        # 12 small files, back to back; delete the odd ones; the big file
        # (larger than the 6 gaps together) has to fill every gap and go on
        # after small-12.  mtools starts its free-cluster search at the
        # FAT32 FSInfo next-free hint, which mdel does not move back, so the
        # hint is reset to "unknown" (0xFFFFFFFF) first.
        local i
        local -a smalls=() odd=()
        for i in 01 02 03 04 05 06 07 08 09 10 11 12; do smalls+=("small-$i.bin"); done
        for i in 01 03 05 07 09 11; do odd+=("::/frag/small-$i.bin"); done
        mmd -i "$img" ::/frag </dev/null
        (cd "$src/frag" && mcopy -i "$img" -m "${smalls[@]}" ::/frag/ </dev/null)
        mdel -i "$img" "${odd[@]}" </dev/null
        python3 "$facts" reset-next-free "$img"
        (cd "$src/frag" && mcopy -i "$img" -m fragmented.bin ::/frag/ </dev/null)
        local c
        c=$(chain "$img" "$FRAGFILE")
        FRAG[$name]=${c% *}
        FRAGRUNS[$name]=${c##* }
        [ "${FRAGRUNS[$name]}" -ge 7 ] ||
            fail "$name: $FRAGFILE has only ${FRAGRUNS[$name]} runs (${FRAG[$name]}); expected the 6 gaps + 1"
    fi

    if [[ ,$extras, == *,delete,* ]]; then
        local c
        c=$(chain "$img" "$VICTIM")
        DELETED[$name]=${c% *}
        mdel -i "$img" "::$VICTIM" </dev/null
        mshowfat -i "$img" "::$VICTIM" </dev/null >/dev/null 2>&1 && fail "$name: $VICTIM still present after mdel"
        python3 "$facts" check-free "$img" "${DELETED[$name]}" STALE-DELETED-DATA >/dev/null ||
            fail "$name: deleted clusters ${DELETED[$name]} are not free with stale data"
    fi
    finish "$name" 0
}

# derive NEW FROM: a copy of FROM's image with the dirty flags set
derive_dirty() {
    local name=$1 from=$2
    echo "== $name: $from with the dirty flags set" >&2
    cp "$work/$from.img" "$work/$name.img"
    FROM[$name]=$from
    python3 "$facts" set-dirty "$work/$name.img"
    [ -n "${DELETED[$from]:-}" ] && DELETED[$name]=${DELETED[$from]}
    [ -n "${FRAG[$from]:-}" ] && { FRAG[$name]=${FRAG[$from]}; FRAGRUNS[$name]=${FRAGRUNS[$from]}; }
    finish "$name" 1
}

# finish NAME DIRTY: check, describe, compress
finish() {
    local name=$1 dirty=$2
    local img=$work/$name.img f=$work/$name.facts
    python3 "$facts" facts "$img" >"$f"

    # ---- fsck.fat ----
    local fsck_log=$work/$name.fsck.log rc=0
    fsck.fat -n -v "$img" >"$fsck_log" 2>&1 || rc=$?
    if [ "$dirty" = 0 ]; then
        [ "$rc" = 0 ] || { cat "$fsck_log" >&2; fail "$name: fsck.fat -n exit status $rc"; }
        [ "$(get "$f" dirty)" = 0 ] || fail "$name: dirty flag set"
    else
        grep -q 'Dirty bit is set' "$fsck_log" || { cat "$fsck_log" >&2; fail "$name: fsck.fat does not report the dirty bit"; }
        [ "$(get "$f" dirty)" = 1 ] || fail "$name: dirty flag not set"
        [ "$(get "$f" fat1_clean_shutdown)" = 0 ] || fail "$name: FAT[1] clean-shutdown bit still set"
    fi
    local fl fsck_files fsck_used fsck_total
    fl=$(grep -E '^.*: [0-9]+ files, [0-9]+/[0-9]+ clusters$' "$fsck_log" | tail -n1)
    [ -n "$fl" ] || { cat "$fsck_log" >&2; fail "$name: no 'N files, U/T clusters' line from fsck.fat"; }
    fsck_files=$(sed -E 's/.*: ([0-9]+) files, ([0-9]+)\/([0-9]+) clusters$/\1/' <<<"$fl")
    fsck_used=$(sed -E 's/.*: ([0-9]+) files, ([0-9]+)\/([0-9]+) clusters$/\2/' <<<"$fl")
    fsck_total=$(sed -E 's/.*: ([0-9]+) files, ([0-9]+)\/([0-9]+) clusters$/\3/' <<<"$fl")
    [ "$fsck_used" = "$(get "$f" used_clusters)" ] ||
        fail "$name: fsck.fat says $fsck_used used clusters, the FAT has $(get "$f" used_clusters)"
    [ "$fsck_total" = "$(get "$f" cluster_count)" ] ||
        fail "$name: fsck.fat says $fsck_total clusters, the BPB gives $(get "$f" cluster_count)"

    # ---- partclone.fat (optional) ----
    local pc_used="" pc_note="" pc_model=""
    if [ -n "$partclone" ]; then
        local pclog=$work/$name.partclone.log
        rm -f "$pclog"
        if "$partclone" -c -s "$img" -O /dev/null -L "$pclog" >/dev/null 2>&1; then
            local pc_blocks pc_bs
            pc_blocks=$(sed -n 's/^Space in use:.*= *\([0-9]*\) Blocks.*/\1/p' "$pclog" | head -n1)
            pc_bs=$(sed -n 's/^Block size: *\([0-9]*\) Byte.*/\1/p' "$pclog" | head -n1)
            { [ -n "$pc_blocks" ] && [ -n "$pc_bs" ]; } || fail "$name: cannot parse $pclog"
            pc_used=$((pc_blocks * pc_bs))
            pc_model=$(( $(python3 "$facts" partclone-model "$img") * $(get "$f" bytes_per_sector) ))
            [ "$pc_used" = "$pc_model" ] ||
                echo "WARNING: $name: partclone.fat used $pc_used bytes, model of fatclone.c says $pc_model" >&2
        else
            pc_note=$(grep -i -E 'error|valid|fail' "$pclog" | head -n1 | sed 's/^[a-z]*\.c: //')
            # -I (--ignore_fschk) does not help in 0.3.23: the FAT[1] check
            # in get_used_block() exits regardless; say so if it still fails.
            if ! "$partclone" -I -c -s "$img" -O /dev/null -L "$pclog.I" >/dev/null 2>&1; then
                pc_note="$pc_note (also with -I)"
            fi
            echo "NOTE: $name: partclone.fat -c fails (${pc_note:-no message}); omitting partclone_used_bytes" >&2
        fi
    fi

    local sha size
    sha=$(sha256sum "$img" | cut -d' ' -f1)
    size=$(stat -c %s "$img")
    zstd -19 -q -f --no-progress "$img" -o "$out/$name.img.zst"

    local fat_type tail
    fat_type=$(get "$f" fat_type)
    tail=$(get "$f" tail_sectors)
    {
        echo "# $name -- generated by tools/make-fat-testdata.sh; do not edit."
        echo "# Sector counts are in sectors of bytes_per_sector; cluster numbers start at 2."
        echo "# From the boot sector (BPB): bytes_per_sector, sectors_per_cluster, reserved_sectors,"
        echo "#   num_fats, fat_size_sectors (BPB_FATSz16, or BPB_FATSz32 when that is 0),"
        echo "#   root_entries, total_sectors (BPB_TotSec16, or BPB_TotSec32 when that is 0), media,"
        echo "#   label and volume_id (extended BPB), and on FAT32 root_cluster, fsinfo_sector,"
        echo "#   backup_boot_sector."
        echo "# Derived: cluster_size = bytes_per_sector*sectors_per_cluster;"
        echo "#   root_dir_sectors = ceil(root_entries*32/bytes_per_sector) (0 on FAT32);"
        echo "#   first_data_sector = reserved_sectors + num_fats*fat_size_sectors + root_dir_sectors;"
        echo "#   cluster_count = (total_sectors - first_data_sector) div sectors_per_cluster;"
        echo "#   fat_type by the cluster count rule (<4085: 12, <65525: 16, else 32);"
        echo "#   tail_sectors = total_sectors - first_data_sector - cluster_count*sectors_per_cluster"
        echo "#   (sectors after the last whole cluster, outside every cluster)."
        echo "# used_clusters = entries 2..cluster_count+1 of the first FAT that are neither 0 (free)"
        echo "#   nor the bad-cluster mark (0xFF7/0xFFF7/0x0FFFFFF7); free_clusters = the rest."
        echo "#   All FAT copies are identical. It equals fsck_used_clusters."
        echo "# fsck_files, fsck_used_clusters, fsck_total_clusters: the 'N files, U/T clusters' line"
        echo "#   of fsck.fat -n -v (dosfstools; N counts files and directories)."
        echo "# used_sectors = first_data_sector + used_clusters*sectors_per_cluster + tail_sectors:"
        echo "#   what an imager must copy (boot sector and the rest of the reserved area, incl. FSInfo"
        echo "#   and the backup boot sector on FAT32, every FAT, the FAT12/16 root directory, the used"
        echo "#   clusters and the tail). used_bytes = used_sectors*bytes_per_sector."
        [ "$fat_type" = 32 ] &&
        echo "# fsinfo_free_count = FSI_Free_Count of the FSInfo sector (checked = free_clusters)."
        echo "# dirty = bit 0x01 of the boot sector state byte (BS_Reserved1: offset 0x25 on"
        echo "#   FAT12/16, 0x41 on FAT32) in the primary boot sector."
        [ "$fat_type" != 12 ] &&
        echo "# fat1_clean_shutdown = FAT[1] bit 0x8000 (FAT16) / 0x08000000 (FAT32); 0 = not clean."
        echo "# image_size/image_sha256 describe the decompressed image (= total_sectors*bytes_per_sector)."
        [ -n "${DELETED[$name]:-}" ] &&
        echo "# deleted_file was removed with mdel; deleted_clusters are free in every FAT but still hold"
        [ -n "${DELETED[$name]:-}" ] &&
        echo "#   its old content (records 'STALE-DELETED-DATA record NNNNNNNN')."
        [ -n "${FRAG[$name]:-}" ] &&
        echo "# fragmented_file was written into the gaps left by deleting every other one of 12 small"
        [ -n "${FRAG[$name]:-}" ] &&
        echo "#   files; fragmented_clusters is its cluster chain (mshowfat), fragmented_runs its run count."
        [ "$dirty" = 1 ] &&
        echo "# This is ${FROM[$name]}.img with both dirty flags set (the boot sector flag only in the primary"
        [ "$dirty" = 1 ] &&
        echo "#   boot sector, as Linux does; fsck.fat -n reports 'Dirty bit is set' and a difference"
        [ "$dirty" = 1 ] &&
        echo "#   from the backup boot sector at offset 65 and exits 1)."
        if [ -n "$pc_used" ]; then
            echo "# partclone_used_bytes = 'Space in use' (blocks x 'Block size') from partclone.fat -c."
            if [ "$fat_type" = 12 ]; then
                echo "#   On FAT12 it is NOT a reference: partclone.fat 0.3.23 reads FAT12 entries as 16-bit words"
                echo "#   (2 bytes per cluster from FAT byte 4, shifted right by 4), so it marks the wrong clusters."
            else
                echo "#   It counts the same sectors as used_sectors (reserved area, FATs, root directory, used"
                echo "#   clusters, tail)."
            fi
        fi
        [ -n "$pc_note" ] &&
        echo "# partclone_used_bytes omitted: partclone.fat -c refuses this image: $pc_note"
        [ -n "$pc_note" ] &&
        echo "#   (partclone.fat checks the FAT[1] clean-shutdown bit, not the boot sector flag)."
        cat "$f"
        echo "fsck_files=$fsck_files"
        echo "fsck_used_clusters=$fsck_used"
        echo "fsck_total_clusters=$fsck_total"
        echo "image_size=$size"
        echo "image_sha256=$sha"
        if [ -n "${DELETED[$name]:-}" ]; then
            echo "deleted_file=$VICTIM"
            echo "deleted_clusters=${DELETED[$name]}"
        fi
        if [ -n "${FRAG[$name]:-}" ]; then
            echo "fragmented_file=$FRAGFILE"
            echo "fragmented_clusters=${FRAG[$name]}"
            echo "fragmented_runs=${FRAGRUNS[$name]}"
        fi
        [ -n "$pc_used" ] && echo "partclone_used_bytes=$pc_used"
        true
    } >"$out/$name.expected"

    local used_bytes
    used_bytes=$(get "$f" used_bytes)
    if [ -n "$pc_used" ] && [ "$pc_used" != "$used_bytes" ]; then
        echo "NOTE: $name: partclone used $pc_used bytes != used_bytes $used_bytes (diff $((pc_used - used_bytes)))" >&2
    fi
    printf '%-18s FAT%-2s bps=%-4s spc=%-2s clusters=%-6s used=%-5s used_sectors=%-6s tail=%s zst=%s\n' \
        "$name" "$fat_type" "$(get "$f" bytes_per_sector)" "$(get "$f" sectors_per_cluster)" \
        "$(get "$f" cluster_count)" "$(get "$f" used_clusters)" "$(get "$f" used_sectors)" "$tail" \
        "$(stat -c %s "$out/$name.img.zst")" >&2
}

# expect NAME KEY VALUE: a property the image was made for
expect() {
    local v
    v=$(get "$out/$1.expected" "$2")
    [ "$v" = "$3" ] || fail "$1: $2=$v, expected $3"
}

# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
mkdir -p "$out"
rm -f "$out"/*.img.zst "$out"/*.expected

# 1.44 MB floppy: mkfs.fat picks the standard floppy layout for 1440 KiB
# (2 FATs of 9 sectors, 224 root entries, 1 sector per cluster, media 0xF0).
build fat12-floppy floppy 2880 512 FLOPPY - -F 12
expect fat12-floppy fat_type 12
expect fat12-floppy root_entries 224
expect fat12-floppy sectors_per_cluster 1
# 4 MiB FAT12 with 2 KiB clusters.
build fat12-small small 8192 512 FAT12SMALL - -F 12 -s 4
expect fat12-small fat_type 12
expect fat12-small sectors_per_cluster 4
# 32 MiB FAT16, 2 FATs, 2 KiB clusters; LFNs, nested dirs, fragmented + deleted file.
build fat16 full 65536 512 FAT16 frag,delete -F 16 -f 2 -s 4
expect fat16 fat_type 16
# 64 MiB FAT32, 512-byte clusters (so >= 65525 clusters).
build fat32 full 131072 512 FAT32 frag,delete -F 32 -s 1
expect fat32 fat_type 32
# FAT32 on 4096-byte logical sectors: 65792 sectors (257 MiB) is about the
# smallest FAT32 there is with one sector per cluster.
build fat32-4k-sector full 65792 4096 FAT32-4K frag,delete -F 32 -S 4096 -s 1
expect fat32-4k-sector fat_type 32
expect fat32-4k-sector bytes_per_sector 4096
# FAT16 with one FAT, 4 KiB clusters and a partial cluster at the end:
# mkfs.fat rounds the size down to whole tracks, so 63 sectors per track
# (40950 = 650 x 63 sectors) and a cluster-aligned data area give 6 tail
# sectors.
build fat16-1fat-tail full 40950 512 FAT16TAIL delete -F 16 -f 1 -s 8 -g 255/63
expect fat16-1fat-tail fat_type 16
expect fat16-1fat-tail num_fats 1
expect fat16-1fat-tail tail_sectors 6
# fat32 with the dirty flags set.
derive_dirty fat32-dirty fat32
expect fat32-dirty dirty 1

echo "done: $(du -cb "$out"/*.img.zst | tail -n1 | cut -f1) bytes of .zst in $out" >&2
