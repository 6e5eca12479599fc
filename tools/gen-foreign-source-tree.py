#!/usr/bin/env python3
"""Writes the small, deterministic source tree the foreign-format test
volumes are filled from (tools/make-foreign-testdata.sh).

Usage: gen-foreign-source-tree.py DIR

Most content is made of 512-byte records that name their file and record
number: it compresses well with zstd -19 yet no two sectors are equal, so a
block restored to the wrong place is always noticed. One small file is
pseudo-random (SHAKE-256 of a fixed seed). victim.bin is written so that the
script can delete it and leave stale data in free clusters.
"""

import hashlib
import os
import sys


def records(name, count):
    out = bytearray()
    for i in range(count):
        rec = f"fsimg foreign test data: {name} record {i:08d} ".encode()
        rec += b"." * (512 - len(rec) - 1) + b"\n"
        out += rec
    return bytes(out)


def main():
    root = sys.argv[1]
    files = {
        "readme.txt": b"".join(
            f"line {i}: ntfsclone and partclone images restored by fsimg\n".encode()
            for i in range(200)
        ),
        "numbers.txt": "".join(f"{i}\n" for i in range(1, 20001)).encode(),
        "empty.txt": b"",
        "dir/records.bin": records("dir/records.bin", 400),
        "dir/sub/small.txt": b"a small file\n",
        "dir/sub/random.bin": hashlib.shake_256(b"fsimg foreign").digest(12288),
        "victim.bin": records("victim.bin STALE-DELETED-DATA", 128),
    }
    for rel, data in sorted(files.items()):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
