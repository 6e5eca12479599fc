#!/usr/bin/env bash
# Build the ntfsclone and partclone test images in testdata/foreign/.
#
# Usage: tools/make-foreign-testdata.sh [OUTDIR]    (default: testdata/foreign)
#
# Three small volumes are built and filled from tools/gen-foreign-source-tree.py:
#   ntfs   8 MiB + 512 bytes, 4 KiB clusters (mkntfs, filled through an ntfs-3g
#          mount, so this needs root and /dev/fuse). The odd size makes the last
#          ntfsclone record a 512-byte partial cluster: the backup boot sector.
#   ext4   4 MiB, 1 KiB blocks (mke2fs -d; no mount).
#   fat16  8 MiB, 512-byte clusters (mkfs.fat, mtools; no mount).
# In each a file (victim.bin) is deleted at the end, so free space holds stale
# data and "restored" can be told from "copied whole".
#
# The images are made by the real tools, then each is restored by the same
# tool's own restore, whose size and sha256 go into NAME.expected:
#   ntfs.ntfsclone           ntfsclone --save-image                 (10.1)
#   ntfs-metadata.ntfsclone  ntfsclone --metadata --save-image      (negative gaps)
#   ntfs.ptcl                partclone.ntfs -c                      (0002, CRC32)
#   ext4.ptcl                partclone.extfs -c                     (0002, CRC32, 1024 blocks/checksum)
#   ext4-k7-noreseed.ptcl    partclone.extfs -c -k 7 -K             (0002, CRC32 chained over 7-block strips)
#   fat16-nocsum.ptcl        partclone.fat -c -a0                   (0002, no checksums)
#   fat16.ptcl               partclone.fat -c                       (0002, CRC32, 2048 blocks/checksum)
#   ext4-0001.ptcl           ext4.ptcl rewritten as format 0001 by
#                            tools/partclone-0002-to-0001.py (partclone 0.3 cannot
#                            write 0001), then restored by partclone.restore,
#                            which must give the same bytes as ext4.ptcl.
# Restores: `ntfsclone -r -o OUT IMG` and `partclone.restore -s IMG -o -`.
#
# Everything is committed zstd -19 compressed: NAME.zst for images,
# NAME.vol.zst for the source volumes (the tests compare restores with them).
#
# Reproducibility: the ext4 and FAT volumes are deterministic (fixed UUID,
# volume id, clock); the NTFS one is not (mkntfs draws a random serial and
# ntfs-3g stamps the current time), so a rerun gives different NTFS bytes
# and new .expected values, equally valid.
#
# Requirements: root, ntfs-3g (mkntfs, ntfsclone, ntfs-3g), partclone,
# e2fsprogs, dosfstools, mtools, zstd, python3, file, coreutils.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/testdata/foreign}

export LC_ALL=C TZ=UTC
export SOURCE_DATE_EPOCH=1700000000
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
umask 022

for tool in mkntfs ntfs-3g ntfsclone partclone.ntfs partclone.extfs partclone.fat \
    partclone.restore partclone.info mke2fs mkfs.fat mcopy mdel zstd python3 file sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (the NTFS volume is filled through an ntfs-3g mount)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-foreign.XXXXXX")
cleanup() {
    mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out" "$work/mnt"

python3 "$here/gen-foreign-source-tree.py" "$work/tree"
find "$work/tree" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- volumes ---------------------------------------------------------------
ntfs=$work/ntfs.vol
truncate -s $((8 * 1024 * 1024 + 512)) "$ntfs"
mkntfs -q -F -T -Q -c 4096 -s 512 -p 0 -H 0 -S 0 -L FOREIGN "$ntfs"
ntfs-3g "$ntfs" "$work/mnt"
cp -r "$work/tree/." "$work/mnt/"
sync
rm "$work/mnt/victim.bin"
umount "$work/mnt"

ext4=$work/ext4.vol
mke2fs -q -t ext4 -b 1024 -L foreign -U 8a3b2c1d-0000-4000-8000-000000000009 \
    -E hash_seed=8a3b2c1d-0000-4000-8000-000000000009,root_owner=0:0 \
    -d "$work/tree" "$ext4" 4096
debugfs -w -R "rm /victim.bin" "$ext4" >/dev/null 2>&1
e2fsck -fn "$ext4" >/dev/null

fat=$work/fat16.vol
export HOME=$work MTOOLSRC=$work/mtoolsrc MTOOLS_SKIP_CHECK=1
: >"$MTOOLSRC"
mkfs.fat -F 16 -s 1 -S 512 --invariant -i 46534947 -n FOREIGN -C "$fat" 8192 >/dev/null
for d in dir dir/sub; do mmd -i "$fat" "::/$d"; done
for f in $(cd "$work/tree" && find . -type f | sort); do
    mcopy -m -i "$fat" "$work/tree/$f" "::/${f#./}"
done
mdel -i "$fat" ::/victim.bin
fsck.fat -n "$fat" >/dev/null

# --- images ------------------------------------------------------------------
pc() { # pc TOOL ARGS...: partclone, its log out of the way
    local tool=$1; shift
    "$tool" -q -L "$work/partclone.log" "$@" >/dev/null 2>&1 ||
        { cat "$work/partclone.log" >&2; echo "$tool $* failed" >&2; exit 1; }
}
ntfsclone -q -s -o "$work/ntfs.ntfsclone" "$ntfs" >/dev/null
ntfsclone -q -m -s -o "$work/ntfs-metadata.ntfsclone" "$ntfs" >/dev/null
pc partclone.ntfs -c -s "$ntfs" -o "$work/ntfs.ptcl"
pc partclone.extfs -c -s "$ext4" -o "$work/ext4.ptcl"
pc partclone.extfs -c -k 7 -K -s "$ext4" -o "$work/ext4-k7-noreseed.ptcl"
pc partclone.fat -c -a0 -s "$fat" -o "$work/fat16-nocsum.ptcl"
pc partclone.fat -c -s "$fat" -o "$work/fat16.ptcl"
python3 "$here/partclone-0002-to-0001.py" "$work/ext4.ptcl" "$work/ext4-0001.ptcl"

# --- expected values ---------------------------------------------------------
field() { sed -n "s|^$1 *||p" "$2" | head -1; }

describe() { # describe NAME SOURCE
    local name=$1 source=$2 img=$work/$1 info=$work/info restored=$work/restored
    rm -f "$restored"
    {
        echo "# $name -- generated by tools/make-foreign-testdata.sh; do not edit."
        echo "# source: the volume the image was made from (SOURCE.vol.zst beside this file)."
        echo "# restore_size/restore_sha256: the bytes the tool's own restore produced"
        echo "#   (restore_with); fsimg must produce exactly these."
        echo "# The other values come from the tools, not from fsimg: file(1) for ntfsclone"
        echo "#   images, partclone.info for partclone images."
        echo "source=$source"
        echo "source_sha256=$(sha256sum <"$work/$source.vol" | cut -d' ' -f1)"
        echo "image_size=$(stat -c %s "$img")"
        echo "image_sha256=$(sha256sum <"$img" | cut -d' ' -f1)"
        case $name in
        *.ntfsclone)
            # "ntfsclone image, version 10.1, cluster size 4096, device size N,
            #  T total clusters, U clusters in use"
            file -b "$img" | python3 -c '
import re, sys
m = re.match(r"ntfsclone image, version (\d+\.\d+), cluster size (\d+), device size (\d+), (\d+) total clusters, (\d+) clusters in use", sys.stdin.read())
assert m, "file(1) did not recognise the image"
for k, v in zip(["version", "cluster_size", "device_size", "nr_clusters", "inuse"], m.groups()):
    print(f"{k}={v}")'
            echo "format=ntfsclone"
            echo "restore_with=ntfsclone -r -o OUT IMG"
            ntfsclone -q -r -o "$restored" "$img" >/dev/null
            ;;
        *.ptcl)
            partclone.info -s "$img" -L "$work/partclone.log" >"$info" 2>&1
            echo "format=partclone"
            echo "version=$(field 'image format:' "$info")"
            echo "fs=$(field 'File system:' "$info")"
            echo "block_size=$(field 'Block size:' "$info" | cut -d' ' -f1)"
            echo "total_blocks=$(field 'Device size:' "$info" | sed 's/.*= \([0-9]*\) Blocks/\1/')"
            echo "used_blocks=$(field 'Space in use:' "$info" | sed 's/.*= \([0-9]*\) Blocks/\1/')"
            echo "checksum=$(field 'checksum algo:' "$info")"
            echo "blocks_per_checksum=$(field 'blocks/checksum:' "$info")"
            echo "restore_with=partclone.restore -s IMG -o -"
            partclone.restore -q -s "$img" -o - -L "$work/partclone.log" >"$restored" 2>/dev/null
            ;;
        esac
        echo "restore_size=$(stat -c %s "$restored")"
        echo "restore_sha256=$(sha256sum <"$restored" | cut -d' ' -f1)"
    } >"$out/$name.expected"
    zstd -q -19 -f "$img" -o "$out/$name.zst"
    chmod 644 "$out/$name.zst"
}

for v in ntfs ext4 fat16; do
    zstd -q -19 -f "$work/$v.vol" -o "$out/$v.vol.zst"
done
describe ntfs.ntfsclone ntfs
describe ntfs-metadata.ntfsclone ntfs
describe ntfs.ptcl ntfs
describe ext4.ptcl ext4
describe ext4-k7-noreseed.ptcl ext4
describe fat16-nocsum.ptcl fat16
describe fat16.ptcl fat16
describe ext4-0001.ptcl ext4

# The crafted 0001 image must restore, with the real partclone, to exactly what
# the 0002 image it came from restores to.
a=$(sed -n 's/^restore_sha256=//p' "$out/ext4.ptcl.expected")
b=$(sed -n 's/^restore_sha256=//p' "$out/ext4-0001.ptcl.expected")
[ "$a" = "$b" ] || { echo "partclone.restore disagrees on the crafted 0001 image" >&2; exit 1; }

du -cb "$out"/*.zst | tail -1
