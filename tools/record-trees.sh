#!/usr/bin/env bash
# Records NAME.tree beside each test volume: the file tree a read-only
# mount by a driver no one here wrote shows (the kernel's ext4, ntfs-3g
# for NTFS; for FAT, whose kernel driver this machine lacks, a copy made by
# mtools' `mcopy -s -m`, which keeps names and modification times), through
# tools/files-manifest.py. tests/files.rs checks
# that `fsimg ls`/`extract` reproduce it from every kind of image.
#
# Run as root after making test data (tools/make-*-testdata.sh):
#     sudo tools/record-trees.sh [VOLUME.img.zst ...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "record-trees.sh: run as root (it loop-mounts)" >&2; exit 1; }
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/mnt"
if [ $# -eq 0 ]; then
    set -- testdata/ext/*.img.zst testdata/ext-files/*.img.zst testdata/fat/*.img.zst testdata/ntfs/*.img.zst testdata/foreign/*.vol.zst
fi
for z in "$@"; do
    out=${z%.zst}; out=${out%.img}; out=${out%.vol}.tree
    zstd -qdc "$z" > "$work/vol"
    case "$(blkid -p -o value -s TYPE "$work/vol")" in
        ext2|ext3|ext4) mount -t ext4 -o loop,ro,noload "$work/vol" "$work/mnt" ;;
        vfat) TZ=UTC MTOOLS_SKIP_CHECK=1 mcopy -s -m -n -Q -i "$work/vol" '::/*' "$work/mnt/" ;;
        ntfs) ntfs-3g -o ro "$work/vol" "$work/mnt" ;;
        *) echo "record-trees.sh: $z: unknown filesystem" >&2; exit 1 ;;
    esac
    python3 tools/files-manifest.py "$work/mnt" > "$out"
    umount "$work/mnt" 2>/dev/null || rm -rf "${work:?}/mnt/"*
    echo "$out: $(wc -l < "$out") entries" >&2
done
