#!/usr/bin/env python3
"""Decode NTFS test images for tools/make-ntfs-testdata.sh.

Plain struct parsing of the image, written from the on-disk format and
independent of ntfs-3g (which made the images) -- so the numbers it prints
can be checked against ntfs-3g's own tools (ntfsclone, ntfscat, ntfsinfo) and
partclone.ntfs.

Usage:
  ntfs-testdata-facts.py facts IMG
      key=value facts from the boot sector and the MFT (see FACT_DOC)
  ntfs-testdata-facts.py ntfsclone IMG  < stream
      parse an `ntfsclone --save-image -o -` stream: header fields, and check
      every record: the saved clusters are exactly the clusters in use in
      $Bitmap plus the backup boot sector, and each holds the image's bytes
  ntfs-testdata-facts.py partclone IMG PCIMG
      parse a partclone 0002 image: header fields, header and bitmap CRCs,
      and compare its bitmap with $Bitmap
  ntfs-testdata-facts.py bitcount NBITS  < bitmap
      set bits among the first NBITS bits of a bitmap (e.g. ntfscat $Bitmap)
  ntfs-testdata-facts.py files MNT OUT
      walk a mounted volume: write the file list OUT (sorted by path:
      "SHA256  SIZE  PATH" for regular files, "dir  -  PATH" for directories)
      and print files=, dirs=, compressed_files=, sparse_files=,
      named_streams=
  ntfs-testdata-facts.py set-serial IMG HEX16
      write the volume serial number into the boot sector and the backup
      boot sector
  ntfs-testdata-facts.py ntfsinfo-data  < `ntfsinfo -v -F PATH IMG` output
      flags, data_size, allocated_size, compressed_size and the number of
      runs with clusters (holes not counted) of the unnamed $DATA
"""
import hashlib
import os
import stat
import struct
import sys
import zlib

MARKER = b"STALE-DATA-MARKER"

AT_ATTRIBUTE_LIST = 0x20
AT_FILE_NAME = 0x30
AT_VOLUME_NAME = 0x60
AT_VOLUME_INFORMATION = 0x70
AT_DATA = 0x80
AT_BITMAP = 0xB0
AT_END = 0xFFFFFFFF


class Bad(Exception):
    pass


def le(fmt, buf, off):
    return struct.unpack_from("<" + fmt, buf, off)[0]


# ---------------------------------------------------------------------------
# boot sector
# ---------------------------------------------------------------------------
def size_field(v, cluster_size):
    """clusters_per_mft_record / clusters_per_index_record: a positive value
    counts clusters, a negative one (signed byte) means 2**-v bytes."""
    v = struct.unpack("<b", bytes([v & 0xFF]))[0]
    return v * cluster_size if v > 0 else 1 << -v


def boot(img):
    with open(img, "rb") as f:
        bs = f.read(512)
        device_size = os.fstat(f.fileno()).st_size
    if bs[3:11] != b"NTFS    ":
        raise Bad("no NTFS OEM id")
    if bs[510:512] != b"\x55\xaa":
        raise Bad("no 55 AA signature")
    bps = le("H", bs, 0x0B)
    spc_raw = bs[0x0D]
    # values above 0x80 are negative powers of two (clusters > 64 KiB sectors)
    spc = spc_raw if spc_raw <= 0x80 else 1 << (256 - spc_raw)
    cs = bps * spc
    total_sectors = le("Q", bs, 0x28)
    b = {
        "bytes_per_sector": bps,
        "sectors_per_cluster": spc,
        "cluster_size": cs,
        "total_sectors": total_sectors,
        "total_clusters": total_sectors * bps // cs,
        "mft_lcn": le("Q", bs, 0x30),
        "mftmirr_lcn": le("Q", bs, 0x38),
        "mft_record_size": size_field(bs[0x40], cs),
        "index_record_size": size_field(bs[0x44], cs),
        "serial": "%016x" % le("Q", bs, 0x48),
        "device_size": device_size,
    }
    b["tail_bytes"] = device_size - b["total_clusters"] * cs
    return b


# ---------------------------------------------------------------------------
# MFT records and attributes
# ---------------------------------------------------------------------------
def fixup(rec, bps_stride=512):
    """Apply the update sequence array (stride 512 bytes, NTFS_BLOCK_SIZE)."""
    rec = bytearray(rec)
    usa_ofs = le("H", rec, 4)
    usa_count = le("H", rec, 6)
    usn = rec[usa_ofs:usa_ofs + 2]
    for i in range(1, usa_count):
        end = i * bps_stride
        if rec[end - 2:end] != usn:
            raise Bad("update sequence mismatch at %d" % end)
        rec[end - 2:end] = rec[usa_ofs + 2 * i:usa_ofs + 2 * i + 2]
    return bytes(rec)


def decode_runs(buf, off):
    """Mapping pairs -> [(vcn, lcn or None for a hole, length)]."""
    runs = []
    vcn = 0
    lcn = 0
    while True:
        h = buf[off]
        if h == 0:
            break
        ln, lo = h & 0x0F, h >> 4
        length = int.from_bytes(buf[off + 1:off + 1 + ln], "little", signed=True)
        if length <= 0:
            raise Bad("bad run length")
        if lo:
            lcn += int.from_bytes(buf[off + 1 + ln:off + 1 + ln + lo], "little", signed=True)
            runs.append((vcn, lcn, length))
        else:
            runs.append((vcn, None, length))
        vcn += length
        off += 1 + ln + lo
    return runs


class Attr:
    def __init__(self, rec, off):
        self.type = le("I", rec, off)
        self.length = le("I", rec, off + 4)
        self.non_resident = rec[off + 8]
        name_len = rec[off + 9]
        name_off = le("H", rec, off + 0x0A)
        self.name = rec[off + name_off:off + name_off + 2 * name_len].decode("utf-16-le")
        self.flags = le("H", rec, off + 0x0C)
        if self.non_resident:
            self.lowest_vcn = le("q", rec, off + 0x10)
            self.highest_vcn = le("q", rec, off + 0x18)
            self.allocated_size = le("q", rec, off + 0x28)
            self.data_size = le("q", rec, off + 0x30)
            self.initialized_size = le("q", rec, off + 0x38)
            self.runs = decode_runs(rec, off + le("H", rec, off + 0x20))
            self.value = None
        else:
            vlen = le("I", rec, off + 0x10)
            voff = le("H", rec, off + 0x14)
            self.value = rec[off + voff:off + voff + vlen]
            self.runs = []


def attributes(rec):
    off = le("H", rec, 0x14)
    used = le("I", rec, 0x18)
    while off < used:
        t = le("I", rec, off)
        if t == AT_END:
            break
        a = Attr(rec, off)
        if a.length == 0:
            raise Bad("zero-length attribute")
        yield a
        off += a.length


class Volume:
    def __init__(self, img):
        self.img = img
        self.b = boot(img)
        self.f = open(img, "rb")
        self.cs = self.b["cluster_size"]
        self.rs = self.b["mft_record_size"]
        # bootstrap: record 0 lies at mft_lcn
        self.f.seek(self.b["mft_lcn"] * self.cs)
        rec0 = self._check(self.f.read(self.rs), 0)
        self.mft_runs = None
        base_data = [a for a in attributes(rec0) if a.type == AT_DATA and a.name == ""]
        if len(base_data) != 1:
            raise Bad("$MFT has %d unnamed $DATA in its base record" % len(base_data))
        self.mft_runs = list(base_data[0].runs)
        self.mft_data_size = base_data[0].data_size
        self.mft_attr_list = any(a.type == AT_ATTRIBUTE_LIST for a in attributes(rec0))
        if self.mft_attr_list:
            # further pieces of $MFT:$DATA live in extent records
            pieces = [base_data[0]]
            for ref in self.attr_list_refs(rec0, AT_DATA, ""):
                if ref != 0:
                    pieces += [a for a in attributes(self.record(ref)) if a.type == AT_DATA and a.name == ""]
            pieces.sort(key=lambda a: a.lowest_vcn)
            self.mft_runs = [r for a in pieces for r in a.runs]
        self.mft_pieces_merged = self._merge(self.mft_runs)

    @staticmethod
    def _merge(runs):
        out = []
        for vcn, lcn, ln in runs:
            if out and lcn is not None and out[-1][1] is not None and out[-1][1] + out[-1][2] == lcn:
                out[-1] = (out[-1][0], out[-1][1], out[-1][2] + ln)
            else:
                out.append((vcn, lcn, ln))
        return out

    def _check(self, raw, n):
        if raw[:4] != b"FILE":
            raise Bad("MFT record %d: no FILE magic" % n)
        return fixup(raw)

    def attr_list_refs(self, rec, typ, name):
        for a in attributes(rec):
            if a.type != AT_ATTRIBUTE_LIST:
                continue
            data = a.value if not a.non_resident else self.read_runs(a.runs, a.data_size)
            off = 0
            while off < len(data):
                t = le("I", data, off)
                ln = le("H", data, off + 4)
                nl = data[off + 6]
                no = data[off + 7]
                nm = data[off + no:off + no + 2 * nl].decode("utf-16-le")
                ref = le("Q", data, off + 0x10) & 0xFFFFFFFFFFFF
                if t == typ and nm == name:
                    yield ref
                off += ln

    def read_runs(self, runs, size):
        out = bytearray()
        for vcn, lcn, ln in runs:
            if lcn is None:
                out += bytes(ln * self.cs)
            else:
                self.f.seek(lcn * self.cs)
                out += self.f.read(ln * self.cs)
        return bytes(out[:size])

    def record_raw(self, n):
        off = n * self.rs
        vcn, within = divmod(off, self.cs)
        for rv, lcn, ln in self.mft_runs:
            if rv <= vcn < rv + ln:
                self.f.seek((lcn + vcn - rv) * self.cs + within)
                return self.f.read(self.rs)
        raise Bad("MFT record %d is outside the $MFT runlist" % n)

    def record(self, n):
        return self._check(self.record_raw(n), n)

    def nr_records(self):
        return self.mft_data_size // self.rs

    def data_attr(self, n, typ=AT_DATA, name=""):
        for a in attributes(self.record(n)):
            if a.type == typ and a.name == name:
                return a
        raise Bad("record %d has no attribute 0x%x '%s'" % (n, typ, name))

    def bitmap(self):
        a = self.data_attr(6)
        return self.read_runs(a.runs, a.data_size)

    def label_version_flags(self):
        rec = self.record(3)
        label, ver, flags = "", None, None
        for a in attributes(rec):
            if a.type == AT_VOLUME_NAME:
                label = a.value.decode("utf-16-le")
            elif a.type == AT_VOLUME_INFORMATION:
                ver = "%d.%d" % (a.value[8], a.value[9])
                flags = le("H", a.value, 10)
        return label, ver, flags

    def walk(self):
        """Like ntfsclone's walk_clusters: every LCN of every non-resident
        attribute of every in-use MFT record (base and extent records).
        Returns (set of LCNs, number of in-use records, list of doubly
        referenced LCNs)."""
        used = set()
        twice = []
        in_use = 0
        self.resident_files = 0
        for n in range(self.nr_records()):
            raw = self.record_raw(n)
            if raw[:4] != b"FILE":
                continue
            flags = le("H", raw, 0x16)
            if not flags & 1:
                continue
            in_use += 1
            rec = fixup(raw)
            if n >= 16 and not flags & 2 and le("Q", rec, 0x20) == 0:
                # a user file (records 0-15 are the system files) whose
                # unnamed $DATA lives inside the record
                if any(a.type == AT_DATA and a.name == "" and not a.non_resident and a.value
                       for a in attributes(rec)):
                    self.resident_files += 1
            for a in attributes(rec):
                if not a.non_resident:
                    continue
                if n == 8 and a.name == "$Bad":
                    continue   # $BadClus:$Bad: one hole over the volume, or bad clusters
                for vcn, lcn, ln in a.runs:
                    if lcn is None:
                        continue
                    for c in range(lcn, lcn + ln):
                        if c in used:
                            twice.append(c)
                        used.add(c)
        return used, in_use, twice


def bits_set(bm, n):
    """indices of the set bits among the first n bits of bm"""
    out = []
    for byte_i in range(min(len(bm), (n + 7) // 8)):
        v = bm[byte_i]
        if not v:
            continue
        for bit in range(8):
            if v >> bit & 1:
                c = byte_i * 8 + bit
                if c < n:
                    out.append(c)
    return out


def ranges(nums):
    out = []
    for c in sorted(nums):
        if out and out[-1][1] + 1 == c:
            out[-1][1] = c
        else:
            out.append([c, c])
    return ",".join("%d" % a if a == b else "%d-%d" % (a, b) for a, b in out)


FACT_DOC = """\
bytes_per_sector, sectors_per_cluster, cluster_size, total_sectors (BPB at 0x28), mft_lcn,
mftmirr_lcn, mft_record_size, index_record_size, serial (at 0x48): the boot sector;
total_clusters = total_sectors*bytes_per_sector div cluster_size; device_size = image size;
tail_bytes = device_size - total_clusters*cluster_size (past the last cluster, incl. the backup
boot sector in the last sector); label, ntfs_version, volume_flags: $Volume (record 3);
mft_records = $MFT data size / record size; mft_records_in_use: records with the in-use flag;
mft_runs = runs in the mapping pairs of $MFT's unnamed $DATA (mft_extents: their LCN ranges);
bitmap_used_clusters: set bits of $Bitmap below total_clusters;
mft_walk_used_clusters: clusters referenced by the non-resident attributes of in-use records
(what ntfsclone counts, minus $BadClus:$Bad); resident_files: in-use base records >= 16 that
are not directories and whose unnamed $DATA is resident and not empty (hard links count once);
stale_marker_free_clusters / stale_marker_used_clusters: free / in-use clusters that contain
STALE-DATA-MARKER"""


def cmd_facts(img):
    v = Volume(img)
    b = v.b
    out = dict(b)
    label, ver, flags = v.label_version_flags()
    out["label"] = label
    out["ntfs_version"] = ver
    out["volume_flags"] = "0x%04x" % flags
    out["mft_records"] = v.nr_records()
    mft_bitmap = v.read_runs(v.data_attr(0, AT_BITMAP).runs, v.data_attr(0, AT_BITMAP).data_size) \
        if v.data_attr(0, AT_BITMAP).non_resident else v.data_attr(0, AT_BITMAP).value
    out["mft_records_in_use"] = len(bits_set(mft_bitmap, v.nr_records()))
    out["mft_runs"] = len(v.mft_runs)
    out["mft_extents"] = ",".join("%d-%d" % (lcn, lcn + ln - 1) for _, lcn, ln in v.mft_runs)
    out["mft_attribute_list"] = int(v.mft_attr_list)
    n = b["total_clusters"]
    bm = v.bitmap()
    if len(bm) * 8 < n:
        raise Bad("$Bitmap too short: %d bytes for %d clusters" % (len(bm), n))
    used = bits_set(bm, n)
    out["bitmap_used_clusters"] = len(used)
    walked, in_use, twice = v.walk()
    if twice:
        raise Bad("clusters referenced twice: %s" % ranges(twice))
    if in_use != out["mft_records_in_use"]:
        raise Bad("%d records with the in-use flag, $MFT:$BITMAP has %d" % (in_use, out["mft_records_in_use"]))
    out["mft_walk_used_clusters"] = len(walked)
    out["resident_files"] = v.resident_files
    used_set = set(used)
    if walked != used_set:
        raise Bad("MFT walk and $Bitmap differ: missing in $Bitmap %s, extra in $Bitmap %s"
                  % (ranges(walked - used_set), ranges(used_set - walked)))
    # stale data
    free_hits = used_hits = 0
    cs = v.cs
    v.f.seek(0)
    for c in range(n):
        blk = v.f.read(cs)
        if MARKER in blk:
            if c in used_set:
                used_hits += 1
            else:
                free_hits += 1
    out["stale_marker_free_clusters"] = free_hits
    out["stale_marker_used_clusters"] = used_hits
    for k, val in out.items():
        print("%s=%s" % (k, val))


def cmd_ntfsclone(img, stream):
    v = Volume(img)
    hdr = stream.read(56)
    if len(hdr) < 50 or hdr[:16] != b"\0ntfsclone-image":
        raise Bad("not an ntfsclone image (magic)")
    major, minor = hdr[16], hdr[17]
    cs = le("I", hdr, 18)
    device_size = le("Q", hdr, 22)
    nr_clusters = le("q", hdr, 30)
    inuse = le("Q", hdr, 38)
    data_off = le("I", hdr, 46)
    stream.read(data_off - 56) if data_off > 56 else None
    if cs != v.cs:
        raise Bad("ntfsclone cluster size %d != %d" % (cs, v.cs))
    pos = 0
    saved = []
    img = v.f
    last_len = None
    while True:
        c = stream.read(1)
        if not c:
            break
        if c == b"\0":
            cnt = le("q", stream.read(8), 0)
            if cnt == 0:
                raise Bad("gap of 0")
            pos += cnt
        elif c == b"\1":
            n = cs
            if (pos + 1) * cs >= device_size:
                n = device_size - pos * cs     # the backup boot sector, maybe short
            data = stream.read(n)
            if len(data) != n:
                raise Bad("short cluster %d" % pos)
            img.seek(pos * cs)
            if img.read(n) != data:
                raise Bad("ntfsclone's cluster %d differs from the image" % pos)
            saved.append(pos)
            last_len = n
            pos += 1
        else:
            raise Bad("bad command byte %r" % c)
    if not saved or saved[-1] != nr_clusters:
        raise Bad("last record is not the backup boot sector cluster %d" % nr_clusters)
    used = bits_set(v.bitmap(), v.b["total_clusters"])
    if saved[:-1] != used:
        raise Bad("ntfsclone saved %d clusters, $Bitmap has %d in use" % (len(saved) - 1, len(used)))
    print("ntfsclone_version=%d.%d" % (major, minor))
    print("ntfsclone_cluster_size=%d" % cs)
    print("ntfsclone_device_size=%d" % device_size)
    print("ntfsclone_total_clusters=%d" % nr_clusters)
    print("ntfsclone_used_clusters=%d" % inuse)
    print("ntfsclone_saved_records=%d" % len(saved))
    print("ntfsclone_last_record_bytes=%d" % last_len)


def pc_crc(data, seed=0xFFFFFFFF):
    """partclone's CRC32: reflected 0xEDB88320, init 0xFFFFFFFF, no final xor."""
    return ~zlib.crc32(data, ~seed & 0xFFFFFFFF) & 0xFFFFFFFF


def cmd_partclone(img, pcimg):
    v = Volume(img)
    with open(pcimg, "rb") as f:
        h = f.read(110)
        if h[:15] != b"partclone-image" or h[30:34] != b"0002":
            raise Bad("not a partclone 0002 image")
        if le("I", h, 106) != pc_crc(h[:106]):
            raise Bad("partclone header CRC mismatch")
        fs = h[36:52].rstrip(b"\0").decode()
        device_size = le("Q", h, 52)
        total = le("Q", h, 60)
        sb_used = le("Q", h, 68)
        used = le("Q", h, 76)
        bs = le("I", h, 84)
        bitmap_mode = h[105]
        if bitmap_mode != 1:
            raise Bad("bitmap mode %d, expected 1 (BIT)" % bitmap_mode)
        bm = f.read((total + 7) // 8)
        if le("I", f.read(4), 0) != pc_crc(bm):
            raise Bad("partclone bitmap CRC mismatch")
    pc_set = bits_set(bm, total)
    our = bits_set(v.bitmap(), v.b["total_clusters"])
    if pc_set != our:
        raise Bad("partclone bitmap (%d set) differs from $Bitmap (%d set)" % (len(pc_set), len(our)))
    print("partclone_fs=%s" % fs)
    print("partclone_device_size=%d" % device_size)
    print("partclone_total_blocks=%d" % total)
    print("partclone_superblock_used_blocks=%d" % sb_used)
    print("partclone_used_blocks=%d" % used)
    print("partclone_block_size=%d" % bs)


def cmd_bitcount(n, stream):
    print(len(bits_set(stream.read(), n)))


def cmd_files(mnt, out):
    lines = []
    files = dirs = 0
    compressed, sparse, streams = [], [], []
    for dirpath, dirnames, filenames in os.walk(mnt):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, mnt).replace(os.sep, "/")
            st = os.lstat(full)
            attr = struct.unpack("<I", os.getxattr(full, "system.ntfs_attrib", follow_symlinks=False))[0]
            if stat.S_ISDIR(st.st_mode):
                dirs += 1
                lines.append((rel, "dir  -  %s" % rel))
                continue
            if not stat.S_ISREG(st.st_mode):
                raise Bad("%s is neither a file nor a directory" % rel)
            files += 1
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            lines.append((rel, "%s  %d  %s" % (h.hexdigest(), st.st_size, rel)))
            if attr & 0x800:
                compressed.append(rel)
            if attr & 0x200:
                sparse.append(rel)
            for x in sorted(os.listxattr(full, follow_symlinks=False)):
                if x.startswith("user."):
                    data = os.getxattr(full, x, follow_symlinks=False)
                    streams.append("%s:%s:%d:%s" % (rel, x[5:], len(data), hashlib.sha256(data).hexdigest()))
    lines.sort(key=lambda t: t[0].encode())
    with open(out, "w", encoding="utf-8") as f:
        for _, line in lines:
            f.write(line + "\n")
    key = lambda s: s.encode()
    print("files=%d" % files)
    print("dirs=%d" % dirs)
    print("compressed_files=%s" % ",".join(sorted(compressed, key=key)))
    print("sparse_files=%s" % ",".join(sorted(sparse, key=key)))
    print("named_streams=%s" % ",".join(sorted(streams, key=key)))


def cmd_set_serial(img, hex16):
    b = boot(img)
    serial = struct.pack("<Q", int(hex16, 16))
    backup = b["total_sectors"] * b["bytes_per_sector"]
    with open(img, "r+b") as f:
        for off in (0, backup):
            f.seek(off)
            sec = f.read(512)
            if sec[3:11] != b"NTFS    ":
                raise Bad("no boot sector at %d" % off)
            f.seek(off + 0x48)
            f.write(serial)


def cmd_ntfsinfo_data(stream):
    """The first unnamed $DATA in `ntfsinfo -v` output."""
    cur = None
    found = None
    for line in stream.read().splitlines():
        line = line.strip()
        if line.startswith("Dumping attribute"):
            if cur is not None and cur.get("name", 0) == 0 and found is None:
                found = cur
            cur = {"runs": 0} if "$DATA" in line else None
            continue
        if cur is None:
            continue
        f = line.replace("Runlist:", "").split()
        if len(f) == 3 and f[0].startswith("0x") and f[2].startswith("0x"):
            if f[1].startswith("0x"):
                cur["runs"] += 1      # a run with clusters (holes not counted)
            continue
        if ":" not in line:
            continue
        k, _, val = line.partition(":")
        val = val.strip().split(" ")[0]
        if k == "Name length":
            cur["name"] = int(val)
        elif k == "Attribute flags":
            cur["flags"] = val
        elif k in ("Data size", "Allocated size", "Compressed size"):
            cur[k.lower().replace(" ", "_")] = int(val)
    if cur is not None and cur.get("name", 0) == 0 and found is None:
        found = cur
    if found is None:
        raise Bad("no unnamed $DATA in the ntfsinfo output")
    for k in ("flags", "data_size", "allocated_size", "compressed_size", "runs"):
        print("%s=%s" % (k, found.get(k, "")))


def main():
    a = sys.argv[1:]
    try:
        if a[:1] == ["facts"] and len(a) == 2:
            cmd_facts(a[1])
        elif a[:1] == ["ntfsclone"] and len(a) == 2:
            cmd_ntfsclone(a[1], sys.stdin.buffer)
        elif a[:1] == ["partclone"] and len(a) == 3:
            cmd_partclone(a[1], a[2])
        elif a[:1] == ["bitcount"] and len(a) == 2:
            cmd_bitcount(int(a[1]), sys.stdin.buffer)
        elif a[:1] == ["files"] and len(a) == 3:
            cmd_files(a[1], a[2])
        elif a[:1] == ["set-serial"] and len(a) == 3:
            cmd_set_serial(a[1], a[2])
        elif a[:1] == ["ntfsinfo-data"] and len(a) == 1:
            cmd_ntfsinfo_data(sys.stdin)
        elif a[:1] == ["doc"]:
            print(FACT_DOC)
        else:
            sys.exit(__doc__)
    except Bad as e:
        sys.exit("ntfs-testdata-facts: %s" % e)


if __name__ == "__main__":
    main()
