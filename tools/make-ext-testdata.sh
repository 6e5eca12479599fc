#!/usr/bin/env bash
# Build the deterministic ext2/3/4 test images in testdata/ext/.
#
# Usage: tools/make-ext-testdata.sh [OUTDIR]      (default: testdata/ext)
#
# Every image is made with `mke2fs -d` from a generated source tree (see
# tools/gen-ext-source-tree.py) -- nothing is ever mounted, so no root
# privileges are needed.  Some images then get a large file deleted with
# `debugfs -w` so that its blocks are free but still hold stale data.
# Each image is compressed to NAME.img.zst and described by NAME.expected.
#
# Requirements: e2fsprogs (mke2fs, debugfs, dumpe2fs, e2fsck), zstd, python3,
# coreutils.  Optional: partclone.extfs (adds partclone_used_blocks=).
#
# Reproducibility: the output is byte-identical between runs on the same
# e2fsprogs/zstd versions (checked with e2fsprogs 1.47.0, zstd 1.5.x).  We pin
# the UUID, hash seed, label, clock (E2FSPROGS_FAKE_TIME and debugfs
# set_current_time), the mke2fs.conf (our own copy, not /etc/mke2fs.conf),
# the source tree content, its modes and timestamps, and afterwards rewrite
# every inode's uid/gid/atime/ctime/mtime with debugfs, because mke2fs -d
# copies them from the source files and st_ctime cannot be set from user
# space (and st_atime changes whenever mke2fs reads the tree).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/testdata/ext}

export LC_ALL=C TZ=UTC
export SOURCE_DATE_EPOCH=1700000000
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
umask 022

for tool in mke2fs debugfs dumpe2fs e2fsck zstd python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
have_partclone=0
if command -v partclone.extfs >/dev/null; then have_partclone=1; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-ext.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Our own mke2fs.conf so the host's /etc/mke2fs.conf cannot change the result.
# (Same as the e2fsprogs 1.47.0 default.)
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

# ---------------------------------------------------------------------------
# Source tree
# ---------------------------------------------------------------------------
src=$work/src
python3 "$here/gen-ext-source-tree.py" "$src"
# Fixed timestamps on everything (symlinks themselves too).
find "$src" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# debugfs commands that normalise what mke2fs -d copies from the host:
# owner, ctime (cannot be set from user space) and atime (reading the tree
# for the previous image bumps it) -- mtime too, for good measure.
fixcmds=$work/fix-inodes.debugfs
{
    echo "set_current_time @$SOURCE_DATE_EPOCH"
    (cd "$src" && find . -mindepth 1 | sort) | while IFS= read -r p; do
        p=${p#.}
        for f in uid gid; do echo "sif \"$p\" $f 0"; done
        for f in atime ctime mtime; do echo "sif \"$p\" $f @$SOURCE_DATE_EPOCH"; done
    done
} >"$fixcmds"

VICTIM=/data/victim.bin

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
fail() { echo "ERROR: $*" >&2; exit 1; }

# value of "Key:   value" from dumpe2fs -h output in $1
hdr() { sed -n "s/^$2:[[:space:]]*//p" "$1" | head -n1; }

# print "a-b,c,d-e" for a sorted list of integers on stdin
ranges() {
    awk 'NR==1{s=$1;p=$1;next} $1==p+1{p=$1;next}
         {printf "%s%s", sep, (s==p?s:s"-"p); sep=","; s=$1; p=$1}
         END{if (NR) printf "%s%s", sep, (s==p?s:s"-"p); print ""}'
}

# [XOPTS=extended,opts] build NAME SIZE DELETE(yes|no) MKE2FS-ARGS...
build() {
    local name=$1 size=$2 delete=$3
    shift 3
    local img=$work/$name.img
    local uuid
    uuid=$(python3 -c 'import uuid,sys; print(uuid.uuid5(uuid.NAMESPACE_URL, "fsimg-testdata/ext/" + sys.argv[1]))' "$name")
    echo "== $name: mke2fs $* ($size)" >&2

    rm -f "$img"
    truncate -s "$size" "$img"
    # mke2fs keeps only the last -E, so per-image extended options come in
    # through $XOPTS and are merged here.
    local label=${name:0:16}    # ext labels are at most 16 bytes
    mke2fs -q -F -L "$label" -U "$uuid" \
        -E "hash_seed=$uuid,lazy_itable_init=0,lazy_journal_init=0,nodiscard,root_owner=0:0${XOPTS:+,$XOPTS}" \
        -d "$src" "$@" "$img"

    debugfs -w -f "$fixcmds" "$img" >"$work/$name.fix.log" 2>&1
    if grep -E -i 'error|not found|invalid|unknown' "$work/$name.fix.log" | grep -v '^debugfs [0-9]'; then
        fail "$name: debugfs inode fix-up reported problems"
    fi

    local deleted_blocks=""
    if [ "$delete" = yes ]; then
        # every block the victim owns (data + indirect/extent-tree blocks),
        # recorded before deletion
        deleted_blocks=$(debugfs -R "blocks $VICTIM" "$img" 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' | sort -n | ranges)
        [ -n "$deleted_blocks" ] || fail "$name: could not list blocks of $VICTIM"
        printf 'set_current_time @%s\nrm %s\n' "$SOURCE_DATE_EPOCH" "$VICTIM" >"$work/$name.rm.debugfs"
        debugfs -w -f "$work/$name.rm.debugfs" "$img" >"$work/$name.rm.log" 2>&1
        if debugfs -R "stat $VICTIM" "$img" 2>&1 | grep -q '^Inode:'; then
            fail "$name: $VICTIM still present after rm"
        fi
    fi

    # The image must be clean.
    if ! e2fsck -fn "$img" >"$work/$name.fsck.log" 2>&1; then
        cat "$work/$name.fsck.log" >&2
        fail "$name: e2fsck -fn is not clean"
    fi

    # ---- facts from dumpe2fs ----
    local h=$work/$name.dumpe2fs-h full=$work/$name.dumpe2fs
    dumpe2fs -h "$img" >"$h" 2>/dev/null
    dumpe2fs "$img" >"$full" 2>/dev/null
    local bs cs bc fb fdb feats bpg ngroups buninit desc
    bs=$(hdr "$h" 'Block size')
    cs=$(hdr "$h" 'Cluster size'); cs=${cs:-$bs}
    bc=$(hdr "$h" 'Block count')
    fb=$(hdr "$h" 'Free blocks')
    fdb=$(hdr "$h" 'First block')
    feats=$(hdr "$h" 'Filesystem features')
    bpg=$(hdr "$h" 'Blocks per group')
    desc=$(hdr "$h" 'Group descriptor size'); desc=${desc:-32}
    ngroups=$(grep -c '^Group [0-9]*:' "$full")
    buninit=$(grep '^Group [0-9]*:' "$full" | grep -c 'BLOCK_UNINIT' || true)
    local ratio=$((cs / bs))

    # Cross-check 1: the per-group free counts in the descriptors
    # ("N free blocks" -- clusters when bigalloc) add up to the superblock.
    local sumgrp
    sumgrp=$(awk '/^  [0-9]+ free (blocks|clusters), /{s+=$1} END{print s+0}' "$full")
    [ $((sumgrp * ratio)) -eq "$fb" ] ||
        fail "$name: sum of group free counts ($sumgrp x $ratio) != superblock free blocks ($fb)"
    # Cross-check 2: the free ranges listed from the bitmaps add up too.
    local sumbm
    # (with bigalloc dumpe2fs prints each range as first block of the first
    # cluster .. first block of the last cluster)
    sumbm=$(python3 - "$full" "$ratio" <<'EOF'
import re, sys
ratio = int(sys.argv[2])
total = 0
for line in open(sys.argv[1]):
    m = re.match(r"\s+Free blocks: (.*)$", line)
    if not m or not m.group(1).strip():
        continue
    for part in m.group(1).split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            total += ((int(b) - int(a)) // ratio + 1) * ratio
        else:
            total += ratio
print(total)
EOF
)
    [ "$sumbm" -eq "$fb" ] ||
        fail "$name: free ranges from the bitmaps ($sumbm) != superblock free blocks ($fb)"

    local used=$((bc - fb))

    # Stale data really is still there after the deletion.
    if [ "$delete" = yes ]; then
        local first=${deleted_blocks%%[-,]*}
        dd if="$img" bs="$bs" skip="$first" count=1 status=none | grep -q -a 'STALE-DELETED-DATA' ||
            fail "$name: deleted file's first block $first does not hold the stale pattern"
        # ... and that block is free in the bitmap.
        debugfs -R "testb $first" "$img" 2>/dev/null | grep -q 'not in use' ||
            fail "$name: block $first of the deleted file is still marked in use"
    fi

    # ---- partclone (optional) ----
    local pc_used="" pc_note=""
    if [ "$have_partclone" = 1 ]; then
        local pclog=$work/$name.partclone.log
        rm -f "$pclog"
        if partclone.extfs -q -c -s "$img" -O /dev/null -L "$pclog" >/dev/null 2>&1; then
            pc_used=$(sed -n 's/^Space in use:.*= *\([0-9]*\) Blocks.*/\1/p' "$pclog" | head -n1)
            local pc_bs
            pc_bs=$(sed -n 's/^Block size: *\([0-9]*\) Byte.*/\1/p' "$pclog" | head -n1)
            if [ -n "$pc_used" ] && [ "$pc_bs" != "$bs" ]; then
                echo "WARNING: $name: partclone block size $pc_bs != $bs; converting" >&2
                pc_used=$((pc_used * pc_bs / bs))
            fi
        else
            pc_note=$(grep -v -E '^(Partclone v|Starting to clone|Reading Super|memory needed|bitmap [0-9]|Calculating bitmap)' "$pclog" | head -n1)
            echo "WARNING: $name: partclone.extfs failed ($pc_note), omitting partclone_used_blocks" >&2
        fi
    fi

    # ---- outputs ----
    local sha
    sha=$(sha256sum "$img" | cut -d' ' -f1)
    zstd -19 -q -f --no-progress "$img" -o "$out/$name.img.zst"
    {
        echo "# $name -- generated by tools/make-ext-testdata.sh; do not edit."
        echo "# All counts are in filesystem blocks of block_size bytes unless noted."
        echo "# used_blocks = blocks_count - free_blocks: every block the block bitmaps"
        echo "#   mark in use PLUS blocks 0..first_data_block-1 (block 0 on 1 KiB-block"
        echo "#   filesystems, which no bitmap covers but which holds the boot sector)."
        echo "#   For bigalloc, whole clusters count (free_blocks is in blocks = free clusters * cluster_size/block_size)."
        echo "# used_bytes = used_blocks * block_size."
        echo "# free_blocks is dumpe2fs -h 'Free blocks'; it was cross-checked against the sum"
        echo "#   of the per-group descriptor counts and against the free ranges in the bitmaps."
        echo "# block_uninit_groups = groups flagged BLOCK_UNINIT in dumpe2fs."
        echo "# image_size/image_sha256 describe the decompressed image."
        [ "$delete" = yes ] && echo "# deleted_file was removed with debugfs rm; deleted_blocks (block numbers: its data plus"
        [ "$delete" = yes ] && echo "#   indirect/extent blocks) are now free but still hold the old content."
        [ -n "$pc_used" ] && echo "# partclone_used_blocks = 'Space in use' from partclone.extfs -c (in blocks of block_size)."
        [ -n "$pc_note" ] && echo "# partclone_used_blocks omitted: partclone.extfs -c fails on this image: $pc_note"
        echo "block_size=$bs"
        echo "cluster_size=$cs"
        echo "blocks_count=$bc"
        echo "free_blocks=$fb"
        echo "first_data_block=$fdb"
        echo "used_blocks=$used"
        echo "used_bytes=$((used * bs))"
        echo "features=$feats"
        echo "label=$label"
        echo "uuid=$uuid"
        echo "blocks_per_group=$bpg"
        echo "groups=$ngroups"
        echo "desc_size=$desc"
        echo "block_uninit_groups=$buninit"
        echo "image_size=$(stat -c %s "$img")"
        echo "image_sha256=$sha"
        if [ "$delete" = yes ]; then
            echo "deleted_file=$VICTIM"
            echo "deleted_blocks=$deleted_blocks"
        fi
        [ -n "$pc_used" ] && echo "partclone_used_blocks=$pc_used"
        true
    } >"$out/$name.expected"

    if [ -n "$pc_used" ] && [ "$pc_used" != "$used" ]; then
        echo "NOTE: $name: partclone used $pc_used != used_blocks $used (diff $((pc_used - used)))" >&2
    fi
    printf '%-22s bs=%-5s groups=%-3s uninit=%-3s used=%-6s zst=%s\n' "$name" "$bs" "$ngroups" "$buninit" "$used" \
        "$(stat -c %s "$out/$name.img.zst")" >&2
    rm -f "$img"
}

# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
mkdir -p "$out"
rm -f "$out"/*.img.zst "$out"/*.expected

# ext2, 1 KiB blocks, 32-bit, 4 groups (backups in 1 and 3), deleted file.
build ext2-1k 16M yes -t ext2 -b 1024 -g 4096 -N 512
# ext3 (has_journal), 2 KiB blocks, 4 groups.
build ext3-2k 16M no -t ext3 -b 2048 -g 2048 -N 512
# ext4 defaults (64bit, flex_bg, metadata_csum, extents), 4 KiB blocks,
# 8 groups so that the unused ones stay BLOCK_UNINIT, deleted file.
build ext4-default 32M yes -t ext4 -b 4096 -g 1024 -N 512
# ext4 without 64bit and flex_bg: 32-byte descriptors, per-group metadata.
build ext4-no64-noflex 32M no -t ext4 -O ^64bit,^flex_bg -b 4096 -g 1024 -N 512
# meta_bg (needs ^resize_inode), 1 KiB blocks, 64 groups -> 16 64-byte
# descriptors per block -> 4 meta groups.
build ext4-metabg 32M no -t ext4 -O meta_bg,^resize_inode -b 1024 -g 512 -N 1024
# bigalloc, 4 KiB blocks, 16 KiB clusters; -g is clusters per group here
# (512 clusters = 2048 blocks -> 4 groups).
build ext4-bigalloc 32M no -t ext4 -O bigalloc -C 16384 -b 4096 -g 512 -N 512
# sparse_super2 with 2 backups (groups 1 and last), no resize inode.
XOPTS=num_backup_sb=2 \
build ext4-sparse-super2 32M no -t ext4 -O sparse_super2,^resize_inode -b 4096 -g 1024 -N 512
# ext2 without sparse_super: a superblock + GDT backup in every group.
# mke2fs refuses resize_inode without sparse_super ("reserved online resize
# blocks not supported on non-sparse filesystem"), hence ^resize_inode.
build ext2-nosparse 16M no -t ext2 -O ^sparse_super,^resize_inode -b 1024 -g 1024 -N 512
# 64bit (64-byte descriptors) with the older crc16 gdt_csum (uninit_bg)
# instead of metadata_csum; BLOCK_UNINIT groups.
build ext4-64bit-gdtcsum 32M no -t ext4 -O ^metadata_csum,uninit_bg -b 4096 -g 1024 -N 512

echo "done: $(du -cb "$out"/*.img.zst | tail -n1 | cut -f1) bytes of .zst in $out" >&2
