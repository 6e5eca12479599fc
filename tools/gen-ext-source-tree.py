#!/usr/bin/env python3
"""Deterministically generate the source tree that tools/make-ext-testdata.sh
feeds to `mke2fs -d`.

Usage: gen-ext-source-tree.py DESTDIR

Everything is derived from fixed seeds: the directory layout and sizes come
from random.Random(SEED) (only randrange/choice/random are used, which are
stable across CPython versions), and all "random" bytes come from SHAKE-256
of a per-file label, which is stable forever.  Timestamps are NOT set here;
the shell script normalises them afterwards.
"""
import hashlib
import os
import random
import sys

SEED = 20231114

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "block group descriptors live right after the superblock",
    "a sparse file has holes that read back as zeros",
    "free blocks may still hold stale data from deleted files",
    "extents map logical blocks to physical block ranges",
    "the journal is a circular log of metadata updates",
    "bigalloc allocates space in clusters of several blocks",
    "flex_bg packs bitmaps and inode tables together",
]


def shake(label, n):
    """n pseudo-random, incompressible bytes, stable across Python versions."""
    return hashlib.shake_256(("fsimg-testdata:" + label).encode()).digest(n)


def text_bytes(rng, n):
    """n bytes of highly compressible but non-repeating text: numbered lines
    built from a few fixed sentences (keeps the .zst images small)."""
    out = []
    size = 0
    start = rng.randrange(0, 1000000)
    i = 0
    while size < n:
        line = "%07d %s\n" % (start + i, SENTENCES[rng.randrange(len(SENTENCES))])
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()[:n]


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def half_random(label, rng, n, chunk):
    """n bytes alternating `chunk` bytes of random and `chunk` bytes of text."""
    out = bytearray()
    i = 0
    while len(out) < n:
        if i % 2 == 0:
            out += shake("%s:%d" % (label, i), chunk)
        else:
            out += text_bytes(rng, chunk)
        i += 1
    return bytes(out[:n])


def main():
    dest = sys.argv[1]
    rng = random.Random(SEED)
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, 0o755)

    # --- nested directories (3 levels) with ~50 small files (0 B .. 8 KiB) ---
    dirs = [
        "docs",
        "docs/notes",
        "docs/notes/deep",
        "src/lib",
        "src/lib/core",
        "var/cache/tmp",
    ]
    for d in dirs:
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    for d in ["docs", "docs/notes", "src", "src/lib", "var", "var/cache"]:
        os.chmod(os.path.join(dest, d), 0o755)
    os.chmod(os.path.join(dest, "docs/notes/deep"), 0o750)
    os.chmod(os.path.join(dest, "src/lib/core"), 0o755)
    os.chmod(os.path.join(dest, "var/cache/tmp"), 0o1777)

    n = 0
    for d in dirs:
        for k in range(7):
            size = rng.randrange(0, 8193)
            name = "file%02d.%s" % (n, "bin" if n % 4 == 3 else "txt")
            path = os.path.join(dest, d, name)
            if n % 4 == 3:
                data = shake("small:%d" % n, size)
            else:
                data = text_bytes(rng, size)
            write(path, data, 0o600 if n % 5 == 0 else 0o644)
            n += 1

    # Files whose sizes sit exactly on / next to 1, 2 and 4 KiB block edges.
    for size in (1, 511, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8192):
        write(os.path.join(dest, "edges", "size-%05d.dat" % size), text_bytes(rng, size))
    os.chmod(os.path.join(dest, "edges"), 0o755)

    write(os.path.join(dest, "empty"), b"")
    write(os.path.join(dest, "README.txt"), text_bytes(rng, 1500))
    write(os.path.join(dest, "run.sh"), b"#!/bin/sh\necho fsimg test\n", 0o755)

    # --- medium files: half random / half compressible ---
    write(os.path.join(dest, "data", "medium-100k.bin"),
          half_random("m100k", rng, 100 * 1024, 50 * 1024))
    write(os.path.join(dest, "data", "medium-192k.bin"),
          half_random("m192k", rng, 192 * 1024, 16 * 1024))
    # 1 MiB: 128 KiB random, rest text, so every image stays well under 1 MiB
    # compressed.  Random chunks are spread through the file.
    big = bytearray()
    for i in range(8):
        big += shake("m1m:%d" % i, 16 * 1024)
        big += text_bytes(rng, 112 * 1024)
    write(os.path.join(dest, "data", "nested", "medium-1m.bin"), bytes(big))
    os.chmod(os.path.join(dest, "data"), 0o755)
    os.chmod(os.path.join(dest, "data", "nested"), 0o755)

    # The file that gets deleted (debugfs rm) in some images.  Its content is
    # a recognisable, highly compressible pattern so the stale blocks can be
    # identified in the image afterwards: each 512-byte record says which
    # record it is.
    victim = bytearray()
    rec = 0
    while len(victim) < 1024 * 1024:
        r = ("STALE-DELETED-DATA record %08d " % rec).encode()
        victim += (r * (512 // len(r) + 1))[:511] + b"\n"
        rec += 1
    write(os.path.join(dest, "data", "victim.bin"), bytes(victim))

    # --- sparse file: 8 MiB apparent, data at 0, 1 MiB and 5 MiB, hole at the end ---
    sp = os.path.join(dest, "sparse.bin")
    with open(sp, "wb") as f:
        f.write(b"S" * 4096)
        f.seek(1024 * 1024)
        f.write(shake("sparse1", 4096))
        f.seek(5 * 1024 * 1024)
        f.write(text_bytes(rng, 8192))
        f.truncate(8 * 1024 * 1024)
    os.chmod(sp, 0o644)

    # --- long file name (255 bytes) ---
    longname = ("long-name-" + "x" * 255)[:251] + ".txt"
    assert len(longname) == 255
    write(os.path.join(dest, longname), text_bytes(rng, 700))

    # --- symlinks: fast (< 60 bytes, in the inode) and slow (> 60 bytes, in a block) ---
    links = os.path.join(dest, "links")
    os.makedirs(links, exist_ok=True)
    os.chmod(links, 0o755)
    os.symlink("../README.txt", os.path.join(links, "short"))
    os.symlink("../" + longname, os.path.join(links, "long"))
    os.symlink("/nonexistent/dangling/target", os.path.join(links, "dangling"))
    # a hard link
    os.link(os.path.join(dest, "README.txt"), os.path.join(links, "hardlink-README.txt"))


if __name__ == "__main__":
    main()
