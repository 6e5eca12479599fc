#!/usr/bin/env python3
"""Helpers for tools/make-fat-testdata.sh: decode a FAT12/16/32 image with
nothing but struct (independently of mtools, dosfstools and fsimg).

  fat-testdata-facts.py facts IMG
      key=value lines: BPB geometry, cluster count and FAT type (by the
      cluster count rule), used clusters counted in the first FAT, the
      sectors an imager must copy, label, volume id, dirty flags, FSInfo.
      Fails if the FAT copies differ, if the filesystem does not span the
      image exactly, or if a FAT is too small for the cluster count.
  fat-testdata-facts.py check-free IMG RANGES MARKER
      every cluster in RANGES ("a-b,c") is free (0) in every FAT, and its data
      is not all zeros; the first cluster contains MARKER.
  fat-testdata-facts.py ranges
      reads `mshowfat` output ("::/f <3-10> <19-26>") on stdin, prints
      "3-10,19-26 2" (the ranges and the number of runs).
  fat-testdata-facts.py reset-next-free IMG
      FAT32: set the FSInfo next-free hint to 0xFFFFFFFF ("unknown"), so the
      next mtools allocation searches from cluster 2 again.
  fat-testdata-facts.py set-dirty IMG
      set the "volume dirty" bit in the primary boot sector (BS_Reserved1 /
      state byte, 0x25 on FAT12/16, 0x41 on FAT32, bit 0x01) and clear the
      clean-shutdown bit of FAT[1] (0x8000 / 0x08000000) in every FAT copy.
  fat-testdata-facts.py partclone-model IMG
      the used-sector count partclone.fat 0.3.23 computes (fatclone.c), FAT12
      quirk included: it reads FAT12 entries as 16-bit words (2 bytes per
      cluster, starting at FAT byte 4, shifted right by 4).
"""
import struct
import sys


class Fat:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if len(d) < 512 or d[510:512] != b"\x55\xaa":
            raise SystemExit("%s: no 55 AA boot signature" % path)
        (self.bps, self.spc, self.reserved, self.nfats, self.root_entries, tot16,
         self.media, fatsz16) = struct.unpack_from("<HBHBHHBH", d, 0x0B)
        (tot32,) = struct.unpack_from("<I", d, 0x20)
        self.total = tot16 if tot16 else tot32
        self.bpb32 = fatsz16 == 0
        if self.bpb32:
            (self.fatsz, self.ext_flags, self.fs_version, self.root_cluster,
             self.fsinfo_sector, self.backup_boot) = struct.unpack_from("<IHHIHH", d, 0x24)
            self.state_off = 0x41
            base = 0x42
        else:
            self.fatsz = fatsz16
            self.state_off = 0x25
            base = 0x26
        self.boot_sig = d[base]
        (self.volume_id,) = struct.unpack_from("<I", d, base + 1)
        self.label = d[base + 5:base + 16].decode("latin-1").rstrip(" ")
        self.fs_type_str = d[base + 16:base + 24].decode("latin-1").rstrip(" ")
        self.state = d[self.state_off]
        if self.bps not in (512, 1024, 2048, 4096) or self.spc == 0 or self.spc & (self.spc - 1):
            raise SystemExit("%s: implausible BPB (bps=%d spc=%d)" % (path, self.bps, self.spc))
        self.root_dir_sectors = (self.root_entries * 32 + self.bps - 1) // self.bps
        self.first_data_sector = self.reserved + self.nfats * self.fatsz + self.root_dir_sectors
        self.cluster_count = (self.total - self.first_data_sector) // self.spc
        self.tail_sectors = self.total - self.first_data_sector - self.cluster_count * self.spc
        if self.cluster_count < 4085:
            self.fat_type = 12
        elif self.cluster_count < 65525:
            self.fat_type = 16
        else:
            self.fat_type = 32
        self.bad = {12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}[self.fat_type]
        if (self.fat_type == 32) != self.bpb32:
            raise SystemExit("%s: FAT%d by cluster count but %s BPB" %
                             (path, self.fat_type, "FAT32" if self.bpb32 else "FAT12/16"))
        need = {12: ((self.cluster_count + 2) * 3 + 1) // 2, 16: (self.cluster_count + 2) * 2,
                32: (self.cluster_count + 2) * 4}[self.fat_type]
        if need > self.fatsz * self.bps:
            raise SystemExit("%s: FAT of %d sectors too small for %d clusters" %
                             (path, self.fatsz, self.cluster_count))

    def fat_bytes(self, i):
        off = (self.reserved + i * self.fatsz) * self.bps
        return self.data[off:off + self.fatsz * self.bps]

    def entry(self, n, fat=0):
        fb = self.fat_bytes(fat)
        if self.fat_type == 12:
            (v,) = struct.unpack_from("<H", fb, n + n // 2)
            return v >> 4 if n & 1 else v & 0xFFF
        if self.fat_type == 16:
            return struct.unpack_from("<H", fb, 2 * n)[0]
        return struct.unpack_from("<I", fb, 4 * n)[0] & 0x0FFFFFFF

    def used_clusters(self):
        fb = self.fat_bytes(0)
        cc = self.cluster_count
        if self.fat_type == 16:
            ents = struct.unpack_from("<%dH" % cc, fb, 4)
        elif self.fat_type == 32:
            ents = [e & 0x0FFFFFFF for e in struct.unpack_from("<%dI" % cc, fb, 8)]
        else:
            ents = [self.entry(n) for n in range(2, cc + 2)]
        return sum(1 for e in ents if e != 0 and e != self.bad)

    def cluster_offset(self, n):
        return (self.first_data_sector + (n - 2) * self.spc) * self.bps

    def cluster_data(self, n):
        off = self.cluster_offset(n)
        return self.data[off:off + self.spc * self.bps]

    def fat1_clean(self):
        """1/0 = FAT[1] clean-shutdown bit, None on FAT12 (no such bit)."""
        if self.fat_type == 12:
            return None
        raw = self.entry(1)
        return int(bool(raw & (0x8000 if self.fat_type == 16 else 0x08000000)))


def parse_ranges(s):
    out = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def cmd_facts(path):
    f = Fat(path)
    if len(f.data) != f.total * f.bps:
        raise SystemExit("%s: image is %d bytes but the filesystem is %d sectors x %d" %
                         (path, len(f.data), f.total, f.bps))
    for i in range(1, f.nfats):
        if f.fat_bytes(i) != f.fat_bytes(0):
            raise SystemExit("%s: FAT copy %d differs from FAT 0" % (path, i))
    used = f.used_clusters()
    used_sectors = f.first_data_sector + used * f.spc + f.tail_sectors
    kv = [
        ("fat_type", f.fat_type),
        ("bytes_per_sector", f.bps),
        ("sectors_per_cluster", f.spc),
        ("cluster_size", f.bps * f.spc),
        ("reserved_sectors", f.reserved),
        ("num_fats", f.nfats),
        ("fat_size_sectors", f.fatsz),
        ("root_entries", f.root_entries),
        ("root_dir_sectors", f.root_dir_sectors),
        ("first_data_sector", f.first_data_sector),
        ("total_sectors", f.total),
        ("cluster_count", f.cluster_count),
        ("tail_sectors", f.tail_sectors),
        ("used_clusters", used),
        ("free_clusters", f.cluster_count - used),
        ("used_sectors", used_sectors),
        ("used_bytes", used_sectors * f.bps),
        ("media", "0x%02x" % f.media),
        ("label", f.label),
        ("volume_id", "%08x" % f.volume_id),
    ]
    if f.fat_type == 32:
        kv += [("root_cluster", f.root_cluster), ("fsinfo_sector", f.fsinfo_sector),
               ("backup_boot_sector", f.backup_boot)]
        fi = f.data[f.fsinfo_sector * f.bps:(f.fsinfo_sector + 1) * f.bps]
        lead, = struct.unpack_from("<I", fi, 0)
        sig2, free_count, next_free = struct.unpack_from("<III", fi, 484)
        if lead != 0x41615252 or sig2 != 0x61417272:
            raise SystemExit("%s: bad FSInfo signatures" % path)
        if free_count != f.cluster_count - used:
            raise SystemExit("%s: FSInfo free count %d != %d free clusters in the FAT" %
                             (path, free_count, f.cluster_count - used))
        kv.append(("fsinfo_free_count", free_count))
    kv.append(("dirty", int(bool(f.state & 1))))
    clean = f.fat1_clean()
    if clean is not None:
        kv.append(("fat1_clean_shutdown", clean))
    for k, v in kv:
        print("%s=%s" % (k, v))


def cmd_check_free(path, ranges, marker):
    f = Fat(path)
    clusters = parse_ranges(ranges)
    if not clusters:
        raise SystemExit("no clusters given")
    for n in clusters:
        if not 2 <= n < f.cluster_count + 2:
            raise SystemExit("cluster %d out of range" % n)
        for i in range(f.nfats):
            if f.entry(n, i) != 0:
                raise SystemExit("cluster %d is not free in FAT %d (entry 0x%x)" % (n, i, f.entry(n, i)))
        if not any(f.cluster_data(n)):
            raise SystemExit("cluster %d holds only zeros" % n)
    if marker.encode() not in f.cluster_data(clusters[0]):
        raise SystemExit("cluster %d does not contain %r" % (clusters[0], marker))
    print("ok: %d clusters free and holding old data" % len(clusters))


def cmd_ranges():
    import re
    text = sys.stdin.read()
    runs = re.findall(r"<(\d+)(?:-(\d+))?>", text)
    if not runs:
        raise SystemExit("no cluster runs in mshowfat output: %r" % text)
    # merge runs that mshowfat printed separately but that are contiguous
    merged = []
    for a, b in runs:
        a, b = int(a), int(b or a)
        if merged and merged[-1][1] + 1 == a:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    print(",".join("%d-%d" % (a, b) if a != b else "%d" % a for a, b in merged), len(merged))


def cmd_reset_next_free(path):
    f = Fat(path)
    if f.fat_type != 32:
        return
    with open(path, "r+b") as fh:
        fh.seek(f.fsinfo_sector * f.bps + 492)
        fh.write(struct.pack("<I", 0xFFFFFFFF))


def cmd_set_dirty(path):
    f = Fat(path)
    with open(path, "r+b") as fh:
        fh.seek(f.state_off)
        fh.write(bytes([f.state | 0x01]))
        if f.fat_type in (16, 32):
            for i in range(f.nfats):
                off = (f.reserved + i * f.fatsz) * f.bps
                if f.fat_type == 16:
                    v = f.entry(1, i) & ~0x8000
                    fh.seek(off + 2)
                    fh.write(struct.pack("<H", v))
                else:
                    (raw,) = struct.unpack_from("<I", f.data, off + 4)
                    fh.seek(off + 4)
                    fh.write(struct.pack("<I", raw & ~0x08000000))


def cmd_partclone_model(path):
    f = Fat(path)
    used = 0
    if f.fat_type == 12:
        base = f.reserved * f.bps + 4
        for i in range(f.cluster_count):
            (w,) = struct.unpack_from("<H", f.data, base + 2 * i)
            if (w >> 4) != 0:      # (0xFFF7 can never match a 12-bit value)
                used += 1
    else:
        used = f.used_clusters()
    print(f.first_data_sector + used * f.spc + f.tail_sectors)


def main():
    a = sys.argv[1:]
    if a[:1] == ["facts"] and len(a) == 2:
        cmd_facts(a[1])
    elif a[:1] == ["check-free"] and len(a) == 4:
        cmd_check_free(a[1], a[2], a[3])
    elif a == ["ranges"]:
        cmd_ranges()
    elif a[:1] == ["reset-next-free"] and len(a) == 2:
        cmd_reset_next_free(a[1])
    elif a[:1] == ["set-dirty"] and len(a) == 2:
        cmd_set_dirty(a[1])
    elif a[:1] == ["partclone-model"] and len(a) == 2:
        cmd_partclone_model(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
