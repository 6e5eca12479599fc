#!/usr/bin/env python3
"""The read limit for the benchmark: read only the used blocks of an ext volume.

Usage:
    bench-readused.py ranges VOL > RANGES     used ranges (byte offset, length) from dumpe2fs
    bench-readused.py read VOL RANGES [CHUNK] pread each range in CHUNK-byte reads (default 4 MiB)

`ranges` runs `dumpe2fs VOL`, takes the block size, block count and the
"Free blocks:" lists of every group, and prints the complement as
"OFFSET LENGTH" lines in bytes.  `read` preads exactly those bytes into one
reused buffer (no copies, no output) and prints the bytes read, the number of
reads and the time it took on stderr.  It is what any tool that copies the
used blocks must at least do.
"""
import mmap
import os
import re
import subprocess
import sys
import time


def used_ranges(vol):
    out = subprocess.run(["dumpe2fs", vol], capture_output=True, text=True, check=True).stdout
    bs = int(re.search(r"^Block size:\s+(\d+)", out, re.M).group(1))
    count = int(re.search(r"^Block count:\s+(\d+)", out, re.M).group(1))
    first = int(re.search(r"^First block:\s+(\d+)", out, re.M).group(1))
    free = []
    for m in re.finditer(r"^\s+Free blocks: ?(.*)$", out, re.M):
        for part in m.group(1).split(","):
            part = part.strip()
            if not part:
                continue
            a, _, b = part.partition("-")
            free.append((int(a), int(b or a)))
    free.sort()
    used = []
    at = 0  # Blocks before first_data_block (1 KiB block size) count as used.
    del first
    for a, b in free:
        if a > at:
            used.append((at, a - at))
        at = max(at, b + 1)
    if at < count:
        used.append((at, count - at))
    return [(s * bs, n * bs) for s, n in used]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "ranges":
        for off, n in used_ranges(sys.argv[2]):
            print(off, n)
        return
    if len(sys.argv) in (4, 5) and sys.argv[1] == "read":
        chunk = int(sys.argv[4]) if len(sys.argv) == 5 else 4 << 20
        ranges = []
        with open(sys.argv[3]) as f:
            for line in f:
                o, n = line.split()
                ranges.append((int(o), int(n)))
        # Page-aligned buffer (as dd's): an unaligned one copies slower.
        buf = mmap.mmap(-1, chunk)
        mv = memoryview(buf)
        fd = os.open(sys.argv[2], os.O_RDONLY)
        total = reads = 0
        t0 = time.perf_counter()
        for off, n in ranges:
            end = off + n
            while off < end:
                k = min(chunk, end - off)
                got = os.preadv(fd, [mv[:k]], off)
                if got <= 0:
                    sys.exit(f"short read at {off}")
                off += got
                total += got
                reads += 1
        dt = time.perf_counter() - t0
        os.close(fd)
        mv.release()
        buf.close()
        print(f"read {total} bytes in {reads} reads of {len(ranges)} ranges in {dt:.3f} s "
              f"({total / dt / 2**20:.0f} MiB/s)", file=sys.stderr)
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
