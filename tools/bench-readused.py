#!/usr/bin/env python3
"""The read limit for the benchmark: read only the used bytes of a volume.

Usage:
    bench-readused.py ranges CLONE > RANGES   data extents of a sparse clone
    bench-readused.py read VOL RANGES [CHUNK] pread each range in CHUNK-byte reads (default 4 MiB)
    bench-readused.py copy VOL RANGES OUT [CHUNK]
                                              the same, each read pwritten at its offset to
                                              OUT, a new file of VOL's size (a sparse clone)
    bench-readused.py write VOL RANGES OUT [CHUNK]
                                              only the pwrites of `copy`, from a buffer filled
                                              once (no reads): the floor of filling the pages

`ranges` walks CLONE, a sparse clone of the volume (fsimg -o, which writes
exactly the used clusters of any filesystem it knows and leaves the rest as
holes), with SEEK_DATA/SEEK_HOLE and prints its data extents as
"OFFSET LENGTH" lines in bytes.  On tmpfs the extents are whole pages, so
with clusters smaller than a page (FAT) they round the used clusters out to
4 KiB.  `read` preads exactly those bytes of VOL into one reused buffer (no
copies, no output) and prints the bytes read, the number of reads and the
time it took on stderr.  It is what any tool that copies the used clusters
must at least do.  `copy` also pwrites each read to OUT: a plain,
one-thread copy of the used ranges into a sparse file, the yardstick for a
sparse clone (a copy that overlaps its reads and writes on two threads can
beat it).  `write` leaves the reads out: what writing the used bytes into
new pages of OUT costs by itself, which no sparse clone can go below.
"""
import errno
import mmap
import os
import sys
import time


def data_extents(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        at = 0
        out = []
        while at < end:
            try:
                start = os.lseek(fd, at, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data after `at`
                    break
                raise
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, stop - start))
            at = stop
        return out
    finally:
        os.close(fd)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "ranges":
        for off, n in data_extents(sys.argv[2]):
            print(off, n)
        return
    write = len(sys.argv) in (5, 6) and sys.argv[1] == "write"
    copy = len(sys.argv) in (5, 6) and sys.argv[1] == "copy" or write
    if len(sys.argv) in (4, 5) and sys.argv[1] == "read" or copy:
        n_args = 5 if copy else 4
        chunk = int(sys.argv[n_args]) if len(sys.argv) == n_args + 1 else 4 << 20
        ranges = []
        with open(sys.argv[3]) as f:
            for line in f:
                o, n = line.split()
                ranges.append((int(o), int(n)))
        # Page-aligned buffer (as dd's): an unaligned one copies slower.
        buf = mmap.mmap(-1, chunk)
        mv = memoryview(buf)
        fd = os.open(sys.argv[2], os.O_RDONLY)
        if write:
            os.preadv(fd, [mv], 0)
        out = -1
        total = reads = 0
        t0 = time.perf_counter()
        if copy:
            out = os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.ftruncate(out, os.fstat(fd).st_size)
        for off, n in ranges:
            end = off + n
            while off < end:
                k = min(chunk, end - off)
                got = k if write else os.preadv(fd, [mv[:k]], off)
                if got <= 0:
                    sys.exit(f"short read at {off}")
                if copy and os.pwritev(out, [mv[:got]], off) != got:
                    sys.exit(f"short write at {off}")
                off += got
                total += got
                reads += 1
        if copy:
            os.close(out)
        dt = time.perf_counter() - t0
        os.close(fd)
        mv.release()
        buf.close()
        print(f"{'wrote' if write else 'read'} {total} bytes in {reads} reads of {len(ranges)} ranges in {dt:.3f} s "
              f"({total / dt / 2**20:.0f} MiB/s)", file=sys.stderr)
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
