#!/bin/sh
# Seeds the fuzz corpora from testdata/ext and testdata/foreign (run from anywhere):
#  - corpus/image_reader: every ext test image saved as a special image with
#    the release binary, plain and zstd-compressed, plus two tiny raw ones;
#  - corpus/ext_superblock: the first 64 KiB of every ext test image.
# Needs zstd. Safe to run again: it overwrites its own files.
set -eu
fuzz=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz")
cd "$root"
cargo build --release --quiet
bin=$root/target/release/fsimg
images=$fuzz/corpus/image_reader
supers=$fuzz/corpus/ext_superblock
mkdir -p "$images" "$supers"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
for z in testdata/ext/*.img.zst; do
    name=$(basename "$z" .img.zst)
    zstd -dqc "$z" >"$tmp/$name.img"
    head -c 65536 "$tmp/$name.img" >"$supers/$name"
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
echo "ext_superblock: $(ls "$supers" | wc -l) seeds in $supers"
echo "ntfsclone_reader: $(ls "$ntfsclone" | wc -l) seeds in $ntfsclone"
echo "partclone_reader: $(ls "$partclone" | wc -l) seeds in $partclone"
