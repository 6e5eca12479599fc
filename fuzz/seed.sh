#!/bin/sh
# Seeds the fuzz corpora from testdata/ext (run from anywhere):
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
echo "image_reader:   $(ls "$images" | wc -l) seeds in $images"
echo "ext_superblock: $(ls "$supers" | wc -l) seeds in $supers"
