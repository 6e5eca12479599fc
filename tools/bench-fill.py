#!/usr/bin/env python3
"""Deterministic filler for the benchmark volume (used by tools/make-bench-fs.sh).

Usage:
    bench-fill.py prefill FILE SIZE_BYTES SEED
        Write SIZE_BYTES of pseudorandom bytes to FILE (an "old disk": the
        free blocks of the filesystem made on it later hold this junk).

    bench-fill.py fill MOUNTPOINT TARGET_USED_BYTES DOOMED_BYTES SEED
                  [--stage CAPACITY USED DOOMED_LIST]
        Fill a freshly made, mounted filesystem until about
        TARGET_USED_BYTES of it are in use: small files (1-64 KiB) spread
        over hundreds of nested directories, medium files (64 KiB-4 MiB), a
        few large files (32-256 MiB), about half pseudorandom bytes and half
        compressible text.  Interleaved with them, about DOOMED_BYTES of
        further files are written and, at the end, deleted, so that free
        blocks scattered between the kept files hold stale data.
        Only directories and regular files, with 8.3 names and at most
        256 MiB each, so that the same tree fits FAT.

        With --stage, MOUNTPOINT is a staging directory that is copied into
        the volume afterwards (FAT through mtools, where the kernel has no
        vfat): CAPACITY and USED are the volume's (from `fatcap`), nothing is
        synced or deleted, and the doomed files' paths (relative to
        MOUNTPOINT) are written to DOOMED_LIST for the caller to delete once
        the tree is in the volume.

    bench-fill.py fatcap VOLUME
        Print "CAPACITY USED CLUSTER" in bytes for a FAT volume image: the
        data area, the clusters the FAT marks in use, the cluster size.

Everything (names, sizes, kinds, contents, order) comes from
random.Random(SEED), so the *contents* of the tree are identical between runs
with the same Python version; where the kernel puts the blocks is up to ext4.
"""
import os
import random
import struct
import sys

CHUNK = 4 << 20
KiB = 1 << 10
MiB = 1 << 20


def prefill(path, size, seed):
    rng = random.Random(f"prefill:{seed}")
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(CHUNK * 4, left)
            f.write(rng.randbytes(n))
            left -= n


def make_corpus(rng, size):
    """A text corpus of `size` bytes: lines of pseudo-words from a fixed
    vocabulary with a skewed distribution (compresses about 3x with zstd)."""
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    vocab = []
    for _ in range(4000):
        n = rng.randrange(2, 11)
        vocab.append("".join(rng.choices(letters, weights, k=n)))
    wweights = [1.0 / (i + 1) for i in range(len(vocab))]
    out = []
    total = 0
    line_no = 0
    while total < size:
        words = rng.choices(vocab, wweights, k=4096)
        # Break into lines of 6-16 words, with a line number.
        i = 0
        parts = []
        while i < len(words):
            k = rng.randrange(6, 17)
            line_no += 1
            parts.append(f"{line_no:08d} " + " ".join(words[i:i + k]) + ".\n")
            i += k
        s = "".join(parts).encode()
        out.append(s)
        total += len(s)
    return b"".join(out)[:size]


class Writer:
    def __init__(self, root, seed):
        self.root = root
        self.rng = random.Random(f"fill:{seed}")
        self.corpus = make_corpus(random.Random(f"corpus:{seed}"), 8 * MiB)
        self.dirs = []
        self.seq = 0

    def make_dirs(self, count):
        rng = self.rng
        self.dirs = [""]
        for i in range(count):
            # Parent: any existing dir not deeper than 5 levels.
            while True:
                parent = rng.choice(self.dirs)
                if parent.count("/") < 5:
                    break
            d = f"{parent}/d{i:04d}" if parent else f"d{i:04d}"
            os.mkdir(os.path.join(self.root, d))
            self.dirs.append(d)

    def text(self, n):
        """n bytes of text: slices of the corpus at pseudorandom offsets."""
        rng = self.rng
        parts = []
        got = 0
        while got < n:
            k = min(n - got, rng.randrange(4 * KiB, 256 * KiB))
            at = rng.randrange(0, len(self.corpus) - k)
            parts.append(self.corpus[at:at + k])
            got += k
        return b"".join(parts)

    def write_file(self, size, random_bytes, prefix):
        rng = self.rng
        self.seq += 1
        d = rng.choice(self.dirs)
        path = os.path.join(self.root, d, f"{prefix}{self.seq:06d}.{'bin' if random_bytes else 'txt'}")
        with open(path, "wb") as f:
            left = size
            while left > 0:
                n = min(CHUNK, left)
                f.write(rng.randbytes(n) if random_bytes else self.text(n))
                left -= n
        return path


def pick_size(rng, kind):
    if kind == "small":
        return rng.randrange(1 * KiB, 64 * KiB + 1)
    if kind == "medium":
        # Log-uniform between 64 KiB and 4 MiB.
        return int(64 * KiB * (64 ** rng.random()))
    return rng.randrange(32 * MiB, 256 * MiB + 1)


def fatcap(vol):
    """(capacity, used, cluster size) in bytes of a FAT12/16/32 image, from
    its boot sector and first FAT."""
    with open(vol, "rb") as f:
        bs = f.read(512)
        bps, spc, rsvd, nfats, rootents, tot16, _media, fatsz16 = struct.unpack_from("<HBHBHHBH", bs, 11)
        tot32, = struct.unpack_from("<I", bs, 32)
        fatsz = fatsz16 or struct.unpack_from("<I", bs, 36)[0]
        total = tot16 or tot32
        rootsecs = (rootents * 32 + bps - 1) // bps
        data_start = rsvd + nfats * fatsz + rootsecs
        clusters = (total - data_start) // spc
        f.seek(rsvd * bps)
        fat = f.read(fatsz * bps)
    if clusters < 4085:
        raise SystemExit("fatcap: FAT12 is not supported")
    if clusters < 65525:
        entries = struct.unpack_from(f"<{clusters + 2}H", fat)[2:]
        used = sum(1 for e in entries if e)
    else:
        entries = struct.unpack_from(f"<{clusters + 2}I", fat)[2:]
        used = sum(1 for e in entries if e & 0x0FFFFFFF)
    csize = bps * spc
    return clusters * csize, used * csize, csize


def fill(root, target, doomed_budget, seed, stage=None):
    if stage:
        cap, used_now, doomed_list = stage
    else:
        st = os.statvfs(root)
        used_now = (st.f_blocks - st.f_bfree) * st.f_frsize
        cap = st.f_blocks * st.f_frsize
    w = Writer(root, seed)
    ndirs = max(64, min(800, cap // (8 * MiB)))
    w.make_dirs(ndirs)
    # Directory blocks, inode overhead and extent blocks: small; allow 0.3%.
    data_budget = target - used_now - ndirs * 4096 - cap * 3 // 1000
    if data_budget <= 0:
        sys.exit(f"fill: nothing to do (used {used_now}, target {target})")
    rng = w.rng
    # Byte shares of the kept data: 25% small, 40% medium, 35% large.  With a
    # small budget the large share goes to medium files.
    large_share = 0.35 if data_budget >= 200 * MiB else 0.0
    shares = {"small": 0.25, "medium": 0.75 - large_share, "large": large_share}
    left = {k: int(v * data_budget) for k, v in shares.items()}
    # Doomed files (small and medium only) are interleaved with the kept
    # ones so that, by bytes, they keep pace with the kept data.
    frac = doomed_budget / (doomed_budget + data_budget)
    doomed = []
    doomed_bytes = kept_bytes = 0
    counts = {"small": 0, "medium": 0, "large": 0, "doomed": 0}

    def write_doomed():
        nonlocal doomed_bytes
        kind = "small" if rng.random() < 0.6 else "medium"
        dsize = min(pick_size(rng, kind), doomed_budget - doomed_bytes)
        doomed.append(w.write_file(dsize, rng.random() < 0.5, "x"))
        doomed_bytes += dsize
        counts["doomed"] += 1

    while sum(left.values()) > 0:
        while doomed_bytes < doomed_budget and doomed_bytes < frac * (doomed_bytes + kept_bytes):
            write_doomed()
        kinds = [k for k in left if left[k] > 0]
        kind = rng.choices(kinds, [left[k] for k in kinds])[0]
        size = min(pick_size(rng, kind), max(left[kind], 1 * KiB))
        w.write_file(size, rng.random() < 0.5, "f")
        left[kind] -= size
        kept_bytes += size
        counts[kind] += 1
        # Allocate in write order (delayed allocation would otherwise batch).
        if not stage and (kept_bytes + doomed_bytes) // (32 * MiB) != (kept_bytes + doomed_bytes - size) // (32 * MiB):
            os.sync()
    while doomed_bytes < doomed_budget:
        write_doomed()
    what = (f"fill: {ndirs} dirs, {counts['small']} small, {counts['medium']} medium, "
            f"{counts['large']} large files ({kept_bytes / MiB:.0f} MiB kept); "
            f"{counts['doomed']} files ({doomed_budget / MiB:.0f} MiB) written and deleted")
    if stage:
        with open(doomed_list, "w") as f:
            for p in doomed:
                f.write(os.path.relpath(p, root) + "\n")
        print(what)
        return
    os.sync()
    for p in doomed:
        os.unlink(p)
    os.sync()
    st = os.statvfs(root)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    print(f"{what}; used {used / MiB:.0f} MiB of {cap / MiB:.0f} MiB")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "prefill" and len(sys.argv) == 5:
        prefill(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) >= 2 and sys.argv[1] == "fill" and len(sys.argv) == 6:
        fill(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) == 10 and sys.argv[1] == "fill" and sys.argv[6] == "--stage":
        fill(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
             (int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]))
    elif len(sys.argv) == 3 and sys.argv[1] == "fatcap":
        print(*fatcap(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
