#!/usr/bin/env python3
"""Facts about an exFAT image, decoded with plain struct (independent of fsimg).

Usage:
  exfat-testdata-facts.py facts IMG        key=value lines (see the header of
                                           tools/make-exfat-testdata.sh)
  exfat-testdata-facts.py texfat IMG       patch IMG into a TexFAT volume (see
                                           make-exfat-testdata.sh)
  exfat-testdata-facts.py fill-tree DIR PROFILE   write the source tree
"""
import os
import struct
import sys


def boot(img):
    b = img[:512]
    assert b[3:11] == b"EXFAT   ", "not exFAT"
    f = {}
    (f["volume_length"],) = struct.unpack_from("<Q", b, 0x48)
    (f["fat_offset"], f["fat_length"], f["heap_offset"], f["cluster_count"],
     f["root_cluster"], f["serial"]) = struct.unpack_from("<IIIIII", b, 0x50)
    (f["volume_flags"],) = struct.unpack_from("<H", b, 0x6A)
    f["bps_shift"], f["spc_shift"], f["num_fats"] = b[0x6C], b[0x6D], b[0x6E]
    f["percent_in_use"] = b[0x70]
    return f


def checksum(region, ss):
    s = 0
    for i, x in enumerate(region[:11 * ss]):
        if i in (106, 107, 112):
            continue
        s = (((s >> 1) | ((s & 1) << 31)) + x) & 0xFFFFFFFF
    return s


def write_checksum(img, at, ss):
    s = checksum(img[at:at + 12 * ss], ss)
    img[at + 11 * ss:at + 12 * ss] = struct.pack("<I", s) * (ss // 4)


def geometry(f):
    ss = 1 << f["bps_shift"]
    cs = ss << f["spc_shift"]
    return ss, cs


def fat_entry(img, f, n, fat=0):
    ss, _ = geometry(f)
    at = (f["fat_offset"] + fat * f["fat_length"]) * ss + n * 4
    return struct.unpack_from("<I", img, at)[0]


def chain(img, f, first, count, fat=0):
    out, c = [], first
    while len(out) < count:
        out.append(c)
        c = fat_entry(img, f, c, fat)
    return out


def cluster_at(f, c):
    ss, cs = geometry(f)
    return f["heap_offset"] * ss + (c - 2) * cs


def root_entries(img, f):
    _, cs = geometry(f)
    c = f["root_cluster"]
    while 2 <= c <= f["cluster_count"] + 1:
        at = cluster_at(f, c)
        for i in range(cs // 32):
            yield at + 32 * i, img[at + 32 * i:at + 32 * i + 32]
        c = fat_entry(img, f, c)


def bitmaps(img, f):
    out = {}
    for at, e in root_entries(img, f):
        if e[0] == 0:
            break
        if e[0] == 0x81:
            first, length = struct.unpack_from("<IQ", e, 20)
            out[e[1] & 1] = (at, first, length)
    return out


def used_clusters(img, f, which):
    _, cs = geometry(f)
    at, first, length = bitmaps(img, f)[which]
    data = b"".join(img[cluster_at(f, c):cluster_at(f, c) + cs]
                    for c in chain(img, f, first, -(-length // cs)))
    n = f["cluster_count"]
    return sum(bin(x).count("1") for x in data[:n // 8]) + \
        (bin(data[n // 8] & ((1 << (n % 8)) - 1)).count("1") if n % 8 else 0)


def facts(path):
    img = open(path, "rb").read()
    f = boot(img)
    ss, cs = geometry(f)
    active = f["volume_flags"] & 1 if f["num_fats"] == 2 else 0
    used = used_clusters(img, f, active)
    heap_end = f["heap_offset"] + (f["cluster_count"] << f["spc_shift"])
    out = dict(f)
    out.update(
        bytes_per_sector=ss,
        cluster_size=cs,
        active_fat=active,
        dirty=(f["volume_flags"] >> 1) & 1,
        used_clusters=used,
        excess_sectors=f["volume_length"] - heap_end,
        used_bytes=f["heap_offset"] * ss + used * cs,
        image_size=len(img),
        serial="%08x" % f["serial"],
    )
    for k, v in out.items():
        print(f"{k}={v}")


def texfat(path):
    """NumberOfFats=2, FAT 2 a copy of FAT 1, a second allocation bitmap
    (BitmapFlags=1) in free clusters named by a new root entry, ActiveFat=1.
    FAT 1's bitmap gets one stale bit (a free cluster marked used) that FAT
    2's does not have: only the active bitmap counts."""
    img = bytearray(open(path, "rb").read())
    f = boot(img)
    ss, cs = geometry(f)
    assert f["num_fats"] == 1
    assert f["fat_offset"] + 2 * f["fat_length"] <= f["heap_offset"], "no room for FAT 2"
    b0 = bitmaps(img, f)[0]
    _, first, length = b0
    n = -(-length // cs)
    old = chain(img, f, first, n)
    # The clusters of bitmap 1 and the first free run of n clusters.
    bm = bytearray(b"".join(img[cluster_at(f, c):cluster_at(f, c) + cs] for c in old))

    def used(c):
        return bm[(c - 2) // 8] >> ((c - 2) % 8) & 1

    def setbit(buf, c):
        buf[(c - 2) // 8] |= 1 << ((c - 2) % 8)

    last = f["cluster_count"] + 1
    start = next(c for c in range(2, last - n + 1) if all(not used(c + k) for k in range(n)))
    new = list(range(start, start + n))
    for c in new:
        setbit(bm, c)
    stale = next(c for c in range(last, 1, -1) if not used(c))
    bm2 = bytearray(bm)
    setbit(bm, stale)
    fat1 = f["fat_offset"] * ss
    for i, c in enumerate(new):
        v = new[i + 1] if i + 1 < n else 0xFFFFFFFF
        struct.pack_into("<I", img, fat1 + c * 4, v)
    for i, c in enumerate(old):
        img[cluster_at(f, c):cluster_at(f, c) + cs] = bm[i * cs:(i + 1) * cs]
    for i, c in enumerate(new):
        img[cluster_at(f, c):cluster_at(f, c) + cs] = bm2[i * cs:(i + 1) * cs]
    flen = f["fat_length"] * ss
    img[fat1 + flen:fat1 + 2 * flen] = img[fat1:fat1 + flen]
    # The new bitmap entry in the root's first free slot, which must be
    # followed by the end-of-directory mark.
    for at, e in root_entries(img, f):
        if e[0] == 0:
            img[at:at + 32] = struct.pack("<BB18xIQ", 0x81, 1, start, length)
            break
    img[0x6E] = 2
    flags = struct.unpack_from("<H", img, 0x6A)[0] | 1
    struct.pack_into("<H", img, 0x6A, flags)
    write_checksum(img, 0, ss)
    # The backup region says the same (its flags are not used).
    img[12 * ss:24 * ss] = img[0:12 * ss]
    open(path, "wb").write(img)
    print(f"texfat_bitmap2={start}-{start + n - 1}")
    print(f"texfat_stale_cluster={stale}")


def lines(tag, n):
    return "".join(f"{tag} line {i:06d} of {n}\n" for i in range(n)).encode()


def fill_tree(d, profile):
    """A small tree: nested dirs, edge sizes around the cluster size, long
    names; sizes scaled to the cluster size so every volume fits."""
    cs = int(profile)
    os.makedirs(f"{d}/docs/nested/deeper", exist_ok=True)
    os.makedirs(f"{d}/photos/2024 trip", exist_ok=True)
    os.makedirs(f"{d}/empty dir", exist_ok=True)
    files = {
        "readme.txt": lines("readme", 10),
        "empty.bin": b"",
        "docs/one-cluster.bin": (lines("one", cs // 20 + 1))[:cs],
        "docs/cluster-minus-1.bin": (lines("minus", cs // 20 + 1))[:cs - 1],
        "docs/cluster-plus-1.bin": (lines("plus", cs // 20 + 2))[:cs + 1],
        "docs/nested/a file with a rather long name, over forty characters.txt": lines("long", 50),
        "docs/nested/deeper/deep.txt": lines("deep", 300),
        "photos/2024 trip/IMG_0001.JPG": lines("img1", max(200, cs // 8)),
        "photos/2024 trip/IMG_0002.JPG": lines("img2", max(400, cs // 6)),
        "photos/big.raw": lines("big", max(4000, cs // 2)),
    }
    for name, data in sorted(files.items()):
        with open(f"{d}/{name}", "wb") as fh:
            fh.write(data)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "facts":
        facts(sys.argv[2])
    elif cmd == "texfat":
        texfat(sys.argv[2])
    elif cmd == "fill-tree":
        fill_tree(sys.argv[2], sys.argv[3])
    elif cmd == "lines":
        sys.stdout.buffer.write(lines(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(f"unknown command {cmd}")
