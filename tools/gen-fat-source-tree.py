#!/usr/bin/env python3
"""Deterministically generate the source trees that tools/make-fat-testdata.sh
copies into its FAT images with mtools.

Usage: gen-fat-source-tree.py PROFILE DESTDIR

PROFILE is one of
  floppy  a few files and a subdirectory (fits a 1.44 MB floppy easily)
  small   the floppy files plus nested directories, edge sizes, a 64 KiB file
  full    long file names (incl. non-ASCII and a 240-character one), nested
          directories three levels deep, a directory with 120 entries that
          spans several clusters, edge sizes, medium files, the victim file
          and the fragmentation set

It writes
  DESTDIR/tree/                  copied into the image first
  DESTDIR/frag/small-NN.bin      (full only) 12 x 4 KiB, copied next; the
                                 odd-numbered ones are then deleted
  DESTDIR/frag/fragmented.bin    (full only) 96 KiB, copied into the gaps
The victim (tree/data/victim.bin, full only) is deleted last.

Everything is derived from fixed seeds: layout and sizes come from
random.Random(SEED) (only randrange is used, which is stable across CPython
versions) and all "random" bytes come from SHAKE-256 of a per-file label.
Timestamps are NOT set here; the shell script sets them afterwards.
"""
import hashlib
import os
import random
import sys

SEED = 20231115

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "the file allocation table maps every cluster to the next one",
    "a free cluster has a zero entry in the FAT",
    "long file names live in extra directory entries before the short one",
    "FAT32 keeps its root directory in an ordinary cluster chain",
    "deleted files leave their data behind in free clusters",
    "the boot sector of FAT32 has a backup copy at sector six",
    "the FSInfo sector caches the free cluster count",
]


def shake(label, n):
    """n pseudo-random, incompressible bytes, stable across Python versions."""
    return hashlib.shake_256(("fsimg-fat-testdata:" + label).encode()).digest(n)


def text_bytes(rng, n):
    """n bytes of compressible but non-repeating text (numbered lines)."""
    out = []
    size = 0
    start = rng.randrange(0, 1000000)
    i = 0
    while size < n:
        line = "%07d %s\r\n" % (start + i, SENTENCES[rng.randrange(len(SENTENCES))])
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()[:n]


def pattern(tag, n, rec_size=512):
    """n bytes of records of rec_size bytes, each saying which record it is
    (recognisable in the image, compresses well)."""
    out = bytearray()
    rec = 0
    while len(out) < n:
        r = ("%s record %08d " % (tag, rec)).encode()
        out += (r * (rec_size // len(r) + 1))[: rec_size - 1] + b"\n"
        rec += 1
    return bytes(out[:n])


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def half_random(label, rng, n, chunk):
    """n bytes alternating `chunk` bytes of random and `chunk` bytes of text."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += shake("%s:%d" % (label, i), chunk) if i % 2 == 0 else text_bytes(rng, chunk)
        i += 1
    return bytes(out[:n])


def floppy(rng, t):
    write(os.path.join(t, "README.TXT"), text_bytes(rng, 1500))
    write(os.path.join(t, "AUTOEXEC.BAT"), b"@ECHO OFF\r\nPROMPT $P$G\r\nPATH C:\\DOS\r\n")
    write(os.path.join(t, "CONFIG.SYS"), b"FILES=30\r\nBUFFERS=20\r\n")
    write(os.path.join(t, "Long name on a floppy.txt"), text_bytes(rng, 2600))
    write(os.path.join(t, "PROGRAM.BIN"), shake("floppy:program", 7000))
    write(os.path.join(t, "DOCS", "MANUAL.TXT"), text_bytes(rng, 6000))
    write(os.path.join(t, "DOCS", "notes.txt"), text_bytes(rng, 300))
    write(os.path.join(t, "DOCS", "LOGO.BIN"), shake("floppy:logo", 1200))


def small(rng, t):
    floppy(rng, t)
    for d in ("src", "src/lib", "src/lib/core"):
        for k in range(4):
            n = rng.randrange(0, 6000)
            name = "mod%d.%s" % (k, "o" if k == 3 else "c")
            data = shake("small:%s:%d" % (d, k), n // 4) if k == 3 else text_bytes(rng, n)
            write(os.path.join(t, d, name), data)
    for size in (0, 1, 511, 512, 513, 2047, 2048, 2049, 4096, 4097):
        write(os.path.join(t, "edges", "s%05d.dat" % size), text_bytes(rng, size))
    write(os.path.join(t, "data", "MEDIUM.BIN"), half_random("small:medium", rng, 64 * 1024, 8 * 1024))


def full(rng, dest):
    t = os.path.join(dest, "tree")
    write(os.path.join(t, "README.TXT"), text_bytes(rng, 3000))
    write(os.path.join(t, "lower.txt"), text_bytes(rng, 900))
    write(os.path.join(t, "Long File Name Document.txt"), text_bytes(rng, 5000))
    write(os.path.join(t, "mixed.Case.Name.Txt"), text_bytes(rng, 1234))
    write(os.path.join(t, "name with spaces and (parens) [1].dat"), shake("full:spaces", 2000))
    write(os.path.join(t, "caf\u00e9 \u00fcn\u00efc\u00f6d\u00e9 \u540d\u524d.txt"), text_bytes(rng, 777))
    longname = ("a-very-long-file-name-" * 12)[:236] + ".txt"
    assert len(longname) == 240
    write(os.path.join(t, longname), text_bytes(rng, 640))
    write(os.path.join(t, "empty.txt"), b"")

    # nested directories, three levels
    dirs = ["docs", "docs/notes", "docs/notes/deep", "src", "src/lib", "src/lib/core",
            "Program Files", "Program Files/Long Directory Name",
            "Program Files/Long Directory Name/Sub Folder Three"]
    n = 0
    for d in dirs:
        for k in range(4):
            size = rng.randrange(0, 9000)
            if n % 5 == 4:
                name = "blob%02d.bin" % n
                data = shake("full:small:%d" % n, size // 3)
            elif n % 3 == 0:
                name = "Nested File Number %02d.txt" % n
                data = text_bytes(rng, size)
            else:
                name = "FILE%02d.TXT" % n
                data = text_bytes(rng, size)
            write(os.path.join(t, d, name), data)
            n += 1

    # sizes on/next to sector and cluster edges (512 B .. 4 KiB clusters)
    for size in (1, 511, 512, 513, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 8192, 32768, 32769):
        write(os.path.join(t, "edges", "size-%05d.dat" % size), text_bytes(rng, size))

    # a directory with 120 long-named entries: the directory itself needs
    # several clusters (each entry takes 3 slots of 32 bytes)
    for i in range(120):
        write(os.path.join(t, "many", "entry number %03d in a big directory.txt" % i),
              text_bytes(rng, rng.randrange(50, 700)))

    write(os.path.join(t, "data", "medium-100k.bin"), half_random("full:m100k", rng, 100 * 1024, 16 * 1024))
    write(os.path.join(t, "data", "text-256k.txt"), text_bytes(rng, 256 * 1024))
    # The file that gets deleted last (mdel): recognisable stale content.
    write(os.path.join(t, "data", "victim.bin"), pattern("STALE-DELETED-DATA", 64 * 1024))

    # fragmentation set (copied after the tree)
    f = os.path.join(dest, "frag")
    for i in range(1, 13):
        write(os.path.join(f, "small-%02d.bin" % i), pattern("FRAG-FILLER-%02d" % i, 4096))
    write(os.path.join(f, "fragmented.bin"), pattern("FRAGMENTED-FILE", 96 * 1024))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("floppy", "small", "full"):
        sys.exit(__doc__)
    profile, dest = sys.argv[1], sys.argv[2]
    rng = random.Random(SEED)
    os.makedirs(dest, exist_ok=True)
    if profile == "floppy":
        floppy(rng, os.path.join(dest, "tree"))
    elif profile == "small":
        small(rng, os.path.join(dest, "tree"))
    else:
        full(rng, dest)


if __name__ == "__main__":
    main()
