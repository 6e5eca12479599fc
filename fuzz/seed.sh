#!/bin/sh
# Seeds the fuzz corpora from testdata/ext and testdata/foreign (run from anywhere):
#  - corpus/image_reader: every ext test image saved as a special image with
#    the release binary, plain and zstd-compressed, plus two tiny raw ones;
#  - corpus/volume, ext_volume, fat_volume, ntfs_volume: tiny filesystems
#    made here by mkfs.ext4, mkfs.fat and mkntfs (2 MiB at most, the
#    targets' limit), filled with a few files through debugfs and mtools;
#    plus e2fsprogs' test images of 2 MiB at most from ../shared/corpus
#    where the machine has them;
#  - corpus/files_ext, files_fat, files_ntfs: the same volumes as the
#    FS_volume targets;
#  - corpus/xfs_volume: the testdata/xfs volumes in the sparse form of
#    fsimg::fuzz::SparseVolume (their non-zero used sectors);
#  - corpus/btrfs_volume: the metadata-only copies of testdata/btrfs as
#    sparse volumes (fuzz/fuzz_targets/btrfs_volume.rs);
#  - corpus/disk_table: 2 MiB disks with tables by sfdisk and sgdisk;
#  - corpus/mapfile: mapfiles as GNU ddrescue and fsimg write them;
#  - corpus/random_access: the image, ntfsclone and partclone seeds.
# Needs zstd. Safe to run again: it overwrites its own files.
set -eu
fuzz=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz")
cd "$root"
cargo build --release --quiet
bin=$root/target/release/fsimg
images=$fuzz/corpus/image_reader
mkdir -p "$images"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
for z in testdata/ext/*.img.zst; do
    name=$(basename "$z" .img.zst)
    zstd -dqc "$z" >"$tmp/$name.img"
    "$bin" -q -s -O "$images/$name.fsimg" "$tmp/$name.img"
    "$bin" -q -s -z -O "$images/$name-zstd.fsimg" "$tmp/$name.img"
    last=$tmp/$name.img
done
# Small seeds run fast: a 20,000-byte raw volume (one short cluster).
head -c 20000 "$last" >"$tmp/small.raw"
"$bin" -q -s --fs-type raw -O "$images/raw-small.fsimg" "$tmp/small.raw"
"$bin" -q -s -z --fs-type raw -O "$images/raw-small-zstd.fsimg" "$tmp/small.raw"
# Foreign images: the first 64 KiB of each test image made by ntfsclone and
# partclone, and tiny whole ones built here by the published layouts.
ntfsclone=$fuzz/corpus/ntfsclone_reader
partclone=$fuzz/corpus/partclone_reader
mkdir -p "$ntfsclone" "$partclone"
for z in testdata/foreign/*.zst; do
    name=$(basename "$z" .zst)
    case $name in
    *.ntfsclone) zstd -dqc "$z" | head -c 65536 >"$ntfsclone/$name" ;;
    *.ptcl) zstd -dqc "$z" | head -c 65536 >"$partclone/$name" ;;
    esac
done
python3 - "$ntfsclone" "$partclone" <<'PY'
import struct, sys, zlib
ntfsclone, partclone = sys.argv[1:]
def pc(s, d):
    return ~zlib.crc32(d, ~s & 0xFFFFFFFF) & 0xFFFFFFFF
# ntfsclone 10.1: 512-byte clusters, 4 of them and a 100-byte tail.
h = b"\0ntfsclone-image" + bytes([10, 1]) + struct.pack("<IQqQI", 512, 2148, 4, 2, 56)
h = h.ljust(56, b"\0")
recs = b"\x01" + b"A" * 512 + b"\x00" + struct.pack("<q", 2) + b"\x01" + b"B" * 512
recs += b"\x00" + struct.pack("<q", -2) + b"\x01" + b"C" * 512 + b"\x00" + struct.pack("<q", 1)
open(ntfsclone + "/tiny-10.1", "wb").write(h + recs + b"\x01" + b"D" * 100)
# partclone 0002: 20 blocks of 16 bytes, 9 stored, CRC32 every 3, reseeded.
blocks = [0, 1, 2, 5, 6, 9, 10, 11, 19]
for mode, size, name in [(0x20, 4, "crc32"), (0x00, 0, "none")]:
    head = bytearray(110)
    head[:16] = b"partclone-image\0"
    head[16:22] = b"0.3.23"
    head[30:34] = b"0002"
    struct.pack_into("<H", head, 34, 0xC0DE)
    head[36:39] = b"raw"
    struct.pack_into("<QQQQIIHHHHIBB", head, 52, 320, 20, 9, 9, 16, 18, 2, 64, mode, size, 3, 1, 1)
    struct.pack_into("<I", head, 106, pc(0xFFFFFFFF, bytes(head[:106])))
    bm = bytearray(3)
    for b in blocks:
        bm[b // 8] |= 1 << (b % 8)
    out = bytes(head) + bytes(bm) + struct.pack("<I", pc(0xFFFFFFFF, bytes(bm)))
    s, n = 0xFFFFFFFF, 0
    for b in blocks:
        d = bytes([b]) * 16
        out += d
        s, n = pc(s, d), n + 1
        if size and n == 3:
            out += struct.pack("<I", s)
            s, n = 0xFFFFFFFF, 0
    if size and n:
        out += struct.pack("<I", s)
    open(f"{partclone}/tiny-0002-{name}", "wb").write(out)
PY
echo "image_reader:   $(ls "$images" | wc -l) seeds in $images"
# Tiny volumes, made by each filesystem's own tools.
for d in volume ext_volume fat_volume exfat_volume ntfs_volume disk_table mapfile; do
    mkdir -p "$fuzz/corpus/$d"
done
seed_vol() { # TARGET NAME FILE (each volume also seeds files_FS)
    cp "$3" "$fuzz/corpus/$1/$2"
    cp "$3" "$fuzz/corpus/volume/$2"
    mkdir -p "$fuzz/corpus/files_${1%_volume}"
    cp "$3" "$fuzz/corpus/files_${1%_volume}/$2"
}
printf 'hello\n' >"$tmp/hello.txt"
for b in 1024 2048; do
    rm -f "$tmp/e.img"; truncate -s 2M "$tmp/e.img"
    mkfs.ext4 -q -F -b "$b" -N 64 "$tmp/e.img" 2>/dev/null
    debugfs -w -R "write $tmp/hello.txt hello.txt" "$tmp/e.img" >/dev/null 2>&1
    seed_vol ext_volume "ext4-$b" "$tmp/e.img"
done
rm -f "$tmp/e.img"; truncate -s 1M "$tmp/e.img"
mkfs.ext2 -q -F -b 1024 "$tmp/e.img"
seed_vol ext_volume ext2 "$tmp/e.img"
for f in 1 4; do
    rm -f "$tmp/f.img"; truncate -s 2M "$tmp/f.img"
    mkfs.fat -F 12 -s "$f" "$tmp/f.img" >/dev/null
    MTOOLS_SKIP_CHECK=1 mmd -i "$tmp/f.img" ::/DIR
    MTOOLS_SKIP_CHECK=1 mcopy -i "$tmp/f.img" "$tmp/hello.txt" ::/DIR/HELLO.TXT
    seed_vol fat_volume "fat12-s$f" "$tmp/f.img"
done
# exFAT (exfatprogs): 1 MiB with 4 KiB boundary alignment, so that the
# FAT, bitmap, up-case table and root directory sit in the first 40 KiB;
# no files (filling one needs a mount). The 1 MiB test image, with files.
if command -v mkfs.exfat >/dev/null; then
    for c in 512 4K; do
        rm -f "$tmp/x.img"; truncate -s 1M "$tmp/x.img"
        mkfs.exfat -c "$c" -b 4K "$tmp/x.img" >/dev/null
        cp "$tmp/x.img" "$fuzz/corpus/exfat_volume/exfat-c$c"
        cp "$tmp/x.img" "$fuzz/corpus/volume/exfat-c$c"
    done
fi
zstd -dcq "$root/testdata/exfat/exfat-tiny.img.zst" >"$fuzz/corpus/exfat_volume/exfat-tiny"
# e2fsprogs' own test images, most of them corrupt, where the machine has
# them (../shared/corpus/e2fsprogs; not committed): those of 2 MiB at most.
if [ -d "$root/../shared/corpus/e2fsprogs" ]; then
    for g in "$root"/../shared/corpus/e2fsprogs/*.img.gz; do
        gunzip -c "$g" >"$tmp/c.img" 2>/dev/null || continue
        if [ "$(wc -c <"$tmp/c.img")" -le 2097152 ]; then
            cp "$tmp/c.img" "$fuzz/corpus/ext_volume/e2fsprogs-$(basename "$g" .img.gz)"
            cp "$tmp/c.img" "$fuzz/corpus/files_ext/e2fsprogs-$(basename "$g" .img.gz)"
        fi
    done
fi
rm -f "$tmp/n.img"; truncate -s 2M "$tmp/n.img"
mkntfs -q -F -f "$tmp/n.img" >/dev/null 2>&1
seed_vol ntfs_volume ntfs "$tmp/n.img"
# XFS: each testdata/xfs volume cloned (free blocks read as zeros), then its
# non-zero sectors in fsimg::fuzz::SparseSource's form (u64 size; u64
# offset, u32 length, bytes), where that fits 2 MiB.
mkdir -p "$fuzz/corpus/xfs_volume"
for z in testdata/xfs/*.img.zst; do
    name=$(basename "$z" .img.zst)
    zstd -dqc "$z" >"$tmp/x.img"
    rm -f "$tmp/xc.img"
    "$bin" -q -f -o "$tmp/xc.img" "$tmp/x.img" || continue
    # The log's sectors are stamped with cycle numbers: keep its first 512.
    info=$("$bin" info "$tmp/x.img")
    bs=$(echo "$info" | sed -n 's/^block size  *//p')
    log=$(echo "$info" | sed -n 's/^log  *internal, \([0-9]*\) blocks at block \([0-9]*\) .*/\2 \1/p')
    python3 - "$tmp/xc.img" "$fuzz/corpus/xfs_volume/$name" "$bs" $log <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
per = int(sys.argv[3]) // 512
log, log_end = int(sys.argv[4]) * per, (int(sys.argv[4]) + int(sys.argv[5])) * per
n = min(len(data) // 512, 1 << 21)
out = bytearray(struct.pack("<Q", n * 512))
s = 0
nz = lambda i: not (log + 512 <= i < log_end) and any(data[i * 512:(i + 1) * 512])
while s < n:
    if not nz(s):
        s += 1
        continue
    e = s + 1
    while e < n and nz(e):
        e += 1
    out += struct.pack("<QI", s * 512, (e - s) * 512) + data[s * 512:e * 512]
    s = e
if len(out) <= 2 << 20:
    open(sys.argv[2], "wb").write(out)
PY
done
rm -f "$tmp/x.img" "$tmp/xc.img"
# btrfs: the metadata-only copy of each testdata/btrfs volume as a sparse
# volume (see fuzz_targets/btrfs_volume.rs): its non-zero 4 KiB blocks.
mkdir -p "$fuzz/corpus/btrfs_volume"
for z in testdata/btrfs/*.img.zst; do
    name=$(basename "$z" .img.zst)
    zstd -dqc "$z" >"$tmp/b.img"
    rm -f "$tmp/m.img"
    "$bin" -q -m -o "$tmp/m.img" "$tmp/b.img" 2>/dev/null || cp "$tmp/b.img" "$tmp/m.img"
    python3 - "$tmp/m.img" "$fuzz/corpus/btrfs_volume/$name" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
out = bytearray(struct.pack("<Q", len(data)))
unit, i = 4096, 0
while i < len(data):
    if data[i:i + unit].strip(b"\0"):
        j = i + unit
        while j < len(data) and data[j:j + unit].strip(b"\0"):
            j += unit
        j = min(j, len(data))
        out += struct.pack("<QI", i, j - i) + data[i:j]
        i = j
    else:
        i += unit
open(sys.argv[2], "wb").write(out[:2 << 20])
PY
done
# Disks: the first byte is the target's switch byte (512-byte sectors).
rm -f "$tmp/d.img"; truncate -s 2M "$tmp/d.img"
printf 'label: dos\nstart=64, size=512, type=83\nstart=600, size=3400, type=5\nstart=640, size=1000, type=83\nstart=1700, size=1000, type=7\n' |
    sfdisk -q "$tmp/d.img"
{ printf '\0'; cat "$tmp/d.img"; } >"$fuzz/corpus/disk_table/mbr-logical"
rm -f "$tmp/d.img"; truncate -s 2M "$tmp/d.img"
sgdisk -a 1 -n 1:34:+256K -t 1:EF00 -n 2:0:+512K -t 2:8300 -n 3:0:0 -t 3:0700 "$tmp/d.img" >/dev/null
{ printf '\0'; cat "$tmp/d.img"; } >"$fuzz/corpus/disk_table/gpt"
sgdisk -h 1:2 "$tmp/d.img" >/dev/null
{ printf '\2'; cat "$tmp/d.img"; } >"$fuzz/corpus/disk_table/hybrid"
# Mapfiles: an 8-byte little-endian volume size, then the text.
python3 - "$fuzz/corpus/mapfile" <<'PY'
import struct, sys
size = 10 << 20
text = ("# Mapfile. Created by GNU ddrescue version 1.27\n"
        "0x00100000     ?               1\n"
        "0x00000000  0x00100000  +\n0x00100000  0x00000200  *\n"
        "0x00100200  0x00000200  /\n0x00100400  0x00000400  -\n"
        "0x00100800  0x008FF800  ?\n")
open(sys.argv[1] + "/ddrescue", "wb").write(struct.pack("<Q", size) + text.encode())
PY
# Random access: the image reader's and the foreign readers' seeds.
mkdir -p "$fuzz/corpus/random_access"
cp "$images"/* "$fuzz/corpus/ntfsclone_reader"/* "$fuzz/corpus/partclone_reader"/* \
    "$fuzz/corpus/random_access/" 2>/dev/null || true
for d in volume ext_volume fat_volume exfat_volume ntfs_volume xfs_volume btrfs_volume disk_table mapfile random_access; do
    echo "$d: $(ls "$fuzz/corpus/$d" | wc -l) seeds"
done
echo "ntfsclone_reader: $(ls "$ntfsclone" | wc -l) seeds in $ntfsclone"
echo "partclone_reader: $(ls "$partclone" | wc -l) seeds in $partclone"
