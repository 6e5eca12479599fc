#!/usr/bin/env python3
"""Deterministically fill a freshly made, mounted NTFS volume (ntfs-3g) for
tools/make-ntfs-testdata.sh.

Usage: gen-ntfs-source-tree.py PROFILE MOUNTPOINT [--compress] [--fill]

Unlike gen-fat-source-tree.py and gen-ext-source-tree.py this does not build
a tree to copy: NTFS layout depends on the order of operations (which file
gets which clusters, when the $MFT grows and where to), so the files are
written straight into the mounted volume, one by one, in a fixed order.

PROFILE is one of
  full   (ntfs-4k) nested directories four levels deep, ~350 small files
         that stay resident in their MFT records (< 600 bytes), a directory
         with 200 entries (non-resident $INDEX_ALLOCATION), edge sizes, medium
         files, sparse files, a hard link, a file with a non-resident named
         stream (alternate data stream), three files written interleaved
         (fragmented), Unicode and 255-character names
  small  the same kinds of things in fewer and smaller files

Options
  --compress  also make compressed/ with the compressed attribute (0x800)
              set through ntfs-3g's system.ntfs_attrib_be xattr, so that the
              files created in it are compressed (ntfs-3g compresses only on
              volumes with clusters of 4 KiB or less)
  --fill      after the tree: write 512 KiB filler files (fill/fill-NNN.bin)
              until the volume is full, so that data spills into the MFT
              zone; delete every other filler; write frag/into-holes.bin into
              the holes (fragmented); create late/ with small files, so the
              $MFT has to grow somewhere else than right after itself (a
              second $MFT data run); finally delete the remaining fillers.
  Without --fill, two victim files are written and deleted instead.

Every deleted file consists of lines that start with STALE-DATA-MARKER; no
live file contains that string, so after unmounting the marker is found in
free clusters -- and in in-use clusters only where ntfs-3g allocated a
cluster without writing all of it (seen: the $MFT's allocated but not yet
initialised tail, when it grew into a deleted filler's clusters).

It prints key=value lines on stdout that the shell script checks against
the finished volume: compressed=, sparse=, fragmented=, deleted=, streams=.

Everything is derived from fixed seeds: sizes come from random.Random(SEED)
(only randrange is used, which is stable across CPython versions) and all
"random" bytes come from SHAKE-256 of a per-file label.  Timestamps: every
file and directory gets mtime/atime SOURCE_DATE_EPOCH (default 1700000000)
at the end; the shell script additionally pins the clock of ntfs-3g itself.
"""
import errno
import hashlib
import os
import random
import struct
import sys

SEED = 20240229
MARKER = b"STALE-DATA-MARKER"
FILL_SIZE = 512 * 1024

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "every file is a record in the master file table",
    "small files live inside their MFT record and own no cluster",
    "the volume bitmap has one bit for every cluster",
    "a sparse file has runs without clusters",
    "compressed files are stored in units of sixteen clusters",
    "the backup boot sector sits at the very end of the volume",
    "the MFT mirror keeps a copy of the first four records",
]


def shake(label, n):
    """n pseudo-random, incompressible bytes, stable across Python versions."""
    return hashlib.shake_256(("fsimg-ntfs-testdata:" + label).encode()).digest(n)


def text_bytes(rng, n):
    """n bytes of compressible but non-repeating text (numbered lines)."""
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


def pattern(tag, n, rec_size=512):
    """n bytes of identical records of rec_size bytes that say what they are
    (recognisable in the image, compress to almost nothing)."""
    r = ("%s " % tag).encode()
    rec = (r * (rec_size // len(r) + 1))[: rec_size - 1] + b"\n"
    return (rec * (n // rec_size + 1))[:n]


def half_random(label, rng, n, chunk):
    """n bytes alternating `chunk` bytes of random and `chunk` bytes of text."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += shake("%s:%d" % (label, i), chunk) if i % 2 == 0 else text_bytes(rng, chunk)
        i += 1
    return bytes(out[:n])


class Volume:
    def __init__(self, mnt):
        self.mnt = mnt
        self.facts = {"compressed": [], "sparse": [], "fragmented": [], "deleted": [], "streams": []}

    def p(self, rel):
        return os.path.join(self.mnt, rel)

    def mkdir(self, rel):
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            d = self.p("/".join(parts[:i]))
            if not os.path.isdir(d):
                os.mkdir(d)

    def write(self, rel, data):
        d = os.path.dirname(rel)
        if d:
            self.mkdir(d)
        with open(self.p(rel), "wb") as f:
            f.write(data)

    def sparse(self, rel, size, pieces):
        """A file of `size` bytes with data only at the given (offset, bytes)."""
        d = os.path.dirname(rel)
        if d:
            self.mkdir(d)
        with open(self.p(rel), "wb") as f:
            for off, data in pieces:
                f.seek(off)
                f.write(data)
            f.truncate(size)
        self.facts["sparse"].append(rel)

    def set_compressed(self, rel):
        """Set FILE_ATTRIBUTE_COMPRESSED on a directory: files created in it
        afterwards are compressed."""
        path = self.p(rel)
        attr = struct.unpack("<I", os.getxattr(path, "system.ntfs_attrib"))[0]
        os.setxattr(path, "system.ntfs_attrib_be", struct.pack(">I", attr | 0x800))

    def interleave(self, rels, size, chunk):
        """Write the files round-robin, `chunk` bytes at a time, each chunk
        fsync'ed, so their clusters alternate on disk."""
        fs = []
        for rel in rels:
            d = os.path.dirname(rel)
            if d:
                self.mkdir(d)
            fs.append(open(self.p(rel), "wb"))
        for off in range(0, size, chunk):
            for rel, f in zip(rels, fs):
                f.write(pattern("INTERLEAVED %s chunk %06d" % (os.path.basename(rel), off // chunk), chunk))
                f.flush()
                os.fsync(f.fileno())
        for f in fs:
            f.close()
        self.facts["fragmented"].extend(rels)

    def delete(self, rel):
        os.remove(self.p(rel))
        self.facts["deleted"].append(rel)

    def stream(self, rel, name, data):
        """A named $DATA stream, through ntfs-3g's streams_interface=xattr."""
        os.setxattr(self.p(rel), "user." + name, data)
        self.facts["streams"].append("%s:%s" % (rel, name))


def tree_full(v, rng, compress):
    v.write("README.txt", text_bytes(rng, 3000))
    v.write("empty.txt", b"")
    v.write("name with spaces (1).txt", text_bytes(rng, 1234))
    v.write("caf\u00e9 \u00fcn\u00efc\u00f6d\u00e9 \u540d\u524d.txt", text_bytes(rng, 777))
    longname = ("a-very-long-ntfs-file-name-" * 10)[:251] + ".txt"
    assert len(longname) == 255
    v.write(longname, text_bytes(rng, 640))
    v.mkdir("links")
    os.link(v.p("README.txt"), v.p("links/hardlink-README.txt"))

    # nested directories, up to four levels, four small files each
    dirs = ["docs", "docs/notes", "docs/notes/deep", "docs/notes/deep/deeper",
            "src", "src/lib", "src/lib/core",
            "Program Files", "Program Files/Long Directory Name",
            "Program Files/Long Directory Name/Sub Folder Three"]
    n = 0
    for d in dirs:
        v.mkdir(d)
        for k in range(4):
            size = rng.randrange(1, 600)
            if n % 5 == 4:
                v.write("%s/blob%02d.bin" % (d, n), shake("full:small:%d" % n, size))
            else:
                v.write("%s/file%02d.txt" % (d, n), text_bytes(rng, size))
            n += 1
        # one non-resident file per directory as well
        v.write("%s/bigger%02d.txt" % (d, n), text_bytes(rng, rng.randrange(2000, 12000)))

    # a directory with 200 entries: its index needs $INDEX_ALLOCATION
    for i in range(200):
        v.write("many/entry number %03d in a big directory.txt" % i,
                text_bytes(rng, rng.randrange(20, 600)))
    # 100 tiny files
    for i in range(100):
        v.write("tiny/t%03d" % i, text_bytes(rng, rng.randrange(1, 200)))

    # sizes on and next to the resident limit, sectors and clusters
    for size in (0, 1, 511, 512, 513, 600, 680, 700, 720, 800, 1023, 1024, 1025,
                 4095, 4096, 4097, 8191, 8192, 8193, 65536, 65537):
        v.write("edges/size-%05d.dat" % size, text_bytes(rng, size))

    v.write("data/medium-100k.bin", half_random("full:m100k", rng, 100 * 1024, 16 * 1024))
    v.write("data/text-256k.txt", text_bytes(rng, 256 * 1024))
    v.write("data/medium-1m.bin",
            text_bytes(rng, 448 * 1024) + shake("full:m1m", 32 * 1024) + pattern("MEDIUM-1M tail", 544 * 1024))

    # sparse files: data in the middle, holes around; a file that starts
    # with a hole and ends with data
    v.sparse("sparse/sparse.bin", 8 << 20,
             [(0, text_bytes(rng, 5000)), (1 << 20, text_bytes(rng, 4096)),
              ((5 << 20) + 1000, text_bytes(rng, 10000))])
    v.sparse("sparse/hole-first.bin", 3 * (1 << 20) + 100 * 1024,
             [(3 << 20, text_bytes(rng, 100 * 1024))])

    if compress:
        v.mkdir("compressed")
        v.set_compressed("compressed")
        v.write("compressed/text-128k.txt", text_bytes(rng, 128 * 1024))
        v.write("compressed/random-16k.bin", shake("full:comp-random", 16 * 1024))
        v.write("compressed/mixed-96k.bin", half_random("full:comp-mixed", rng, 96 * 1024, 16 * 1024))
        v.write("compressed/small.txt", text_bytes(rng, 400))
        v.write("compressed/pattern-1m.bin", pattern("COMPRESSIBLE", 1 << 20))
        # compressed and with a hole of whole compression units
        with open(v.p("compressed/with-hole.bin"), "wb") as f:
            f.write(text_bytes(rng, 40000))
            f.seek(1 << 20)
            f.write(text_bytes(rng, 40000))
        for rel in ("text-128k.txt", "mixed-96k.bin", "pattern-1m.bin", "with-hole.bin"):
            v.facts["compressed"].append("compressed/" + rel)

    v.write("streams/with-ads.txt", text_bytes(rng, 900))
    v.stream("streams/with-ads.txt", "ads", text_bytes(rng, 12000) + shake("full:ads", 8000))
    v.write("streams/small-ads.txt", text_bytes(rng, 100))
    v.stream("streams/small-ads.txt", "tiny", b"a resident named stream\n")

    v.interleave(["frag/interleaved-a.bin", "frag/interleaved-b.bin", "frag/interleaved-c.bin"],
                 512 * 1024, 32 * 1024)


def tree_small(v, rng, compress):
    v.write("README.txt", text_bytes(rng, 2000))
    v.write("empty.txt", b"")
    v.write("caf\u00e9 \u540d\u524d.txt", text_bytes(rng, 300))
    dirs = ["docs", "docs/notes", "docs/notes/deep", "src", "src/lib", "src/lib/core"]
    n = 0
    for d in dirs:
        v.mkdir(d)
        for k in range(6):
            size = rng.randrange(1, 600)
            if n % 5 == 4:
                v.write("%s/blob%02d.bin" % (d, n), shake("small:small:%d" % n, size))
            else:
                v.write("%s/file%02d.txt" % (d, n), text_bytes(rng, size))
            n += 1
        v.write("%s/bigger%02d.txt" % (d, n), text_bytes(rng, rng.randrange(2000, 12000)))
    for i in range(40):
        v.write("many/entry number %03d.txt" % i, text_bytes(rng, rng.randrange(20, 600)))
    for size in (0, 1, 511, 512, 513, 700, 4095, 4096, 4097, 65536, 65537):
        v.write("edges/size-%05d.dat" % size, text_bytes(rng, size))
    v.write("data/medium-100k.bin", half_random("small:m100k", rng, 100 * 1024, 16 * 1024))
    v.write("data/text-128k.txt", text_bytes(rng, 128 * 1024))
    v.sparse("sparse/sparse.bin", 4 << 20,
             [(0, text_bytes(rng, 3000)), ((2 << 20) + 700, text_bytes(rng, 9000))])
    if compress:
        v.mkdir("compressed")
        v.set_compressed("compressed")
        v.write("compressed/text-200k.txt", text_bytes(rng, 200 * 1024))
        v.write("compressed/random-16k.bin", shake("small:comp-random", 16 * 1024))
        v.write("compressed/pattern-256k.bin", pattern("COMPRESSIBLE", 256 * 1024))
        v.facts["compressed"] += ["compressed/text-200k.txt", "compressed/pattern-256k.bin"]
    v.write("streams/with-ads.txt", text_bytes(rng, 300))
    v.stream("streams/with-ads.txt", "ads", text_bytes(rng, 6000) + shake("small:ads", 3000))
    v.interleave(["frag/interleaved-a.bin", "frag/interleaved-b.bin"], 256 * 1024, 16 * 1024)


def fill(v, rng, late_files):
    """See --fill in the module doc."""
    v.mkdir("fill")
    blob = None
    n = 0
    while True:
        rel = "fill/fill-%03d.bin" % n
        data = pattern("STALE-DATA-MARKER %s" % rel, FILL_SIZE)
        try:
            v.write(rel, data)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            v.delete(rel)          # the partial one
            break
        n += 1
        if n > 10000:
            raise SystemExit("the volume never filled up")
    # every other one, keeping the last whole one, so that no hole joins the
    # free space where the partial one was
    for i in range(n - 2, -1, -2):
        v.delete("fill/fill-%03d.bin" % i)
    v.write("frag/into-holes.bin", pattern("INTO-HOLES", 8 << 20))
    v.facts["fragmented"].append("frag/into-holes.bin")
    # small files in batches, each followed by a data file: every time the
    # $MFT grows, the clusters after its last run may have been taken
    for i in range(late_files):
        v.write("late/late file %03d.txt" % i, text_bytes(rng, rng.randrange(20, 600)))
        if i % 40 == 39:
            v.write("late/spacer-%03d.txt" % i, pattern("SPACER %03d" % i, 64 * 1024))
    for i in range(n - 1, -1, -2):
        v.delete("fill/fill-%03d.bin" % i)
    os.rmdir(v.p("fill"))


def victims(v):
    for i in range(2):
        rel = "victim-%d.bin" % i
        v.write(rel, pattern("STALE-DATA-MARKER %s" % rel, 256 * 1024))
    for i in range(2):
        v.delete("victim-%d.bin" % i)


def set_times(v, epoch):
    """mtime/atime = epoch for everything, children before their directory."""
    for dirpath, dirnames, filenames in os.walk(v.mnt, topdown=False):
        for name in sorted(filenames) + sorted(dirnames):
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(v.mnt, (epoch, epoch))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = set(a for a in sys.argv[1:] if a.startswith("--"))
    if len(args) != 2 or args[0] not in ("full", "small") or opts - {"--compress", "--fill"}:
        sys.exit(__doc__)
    profile, mnt = args
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
    rng = random.Random(SEED)
    v = Volume(mnt)
    if profile == "full":
        tree_full(v, rng, "--compress" in opts)
    else:
        tree_small(v, rng, "--compress" in opts)
    if "--fill" in opts:
        fill(v, rng, 160 if profile == "full" else 60)
    else:
        victims(v)
    set_times(v, epoch)
    for k in ("compressed", "sparse", "fragmented", "deleted", "streams"):
        print("%s=%s" % (k, ",".join(v.facts[k])))


if __name__ == "__main__":
    main()
