#!/usr/bin/env python3
"""Helpers for tools/make-disk-testdata.sh: deterministic filler bytes, the
extra files of each partition, and a plain-struct decoder of MBR/EBR/GPT
partition tables (independent of util-linux and gdisk, to cross-check them).

  disk-testdata-facts.py random LABEL SIZE
      SIZE incompressible bytes on stdout: SHAKE-256 of LABEL.
  disk-testdata-facts.py junk POOL LABEL SIZE
      SIZE bytes on stdout that look random but compress well: 4 KiB
      blocks, each a 32-byte header "JUNK <LABEL>... block NNNNNNNN\n"
      (LABEL cut or padded with dots so that the block number fits) followed
      by one of 16 random 4064-byte chunks of the pool POOL, picked by a
      generator seeded from LABEL.  (zstd --long stores each pool chunk
      once per disk, so a few MiB of it cost a few KiB.)
  disk-testdata-facts.py extras KIND DEST TAG
      write the extra files for one partition (KIND: rpi-boot, esp,
      rootfs, windows, plain) into DEST; TAG goes into PARTITION.TXT (and
      the host name of rootfs).
  disk-testdata-facts.py table IMG SECTOR_SIZE
      decode the partition table of IMG: the MBR in sector 0, the EBR chain
      of an extended partition, and the GPT (header at LBA 1, checked CRCs,
      the backup header in the last sector and the backup entry array,
      which must equal the primary one).  Prints key=value lines, then one
      "part N START SECTORS TYPE UUID NAME" line per partition (numbered
      like Linux: MBR primaries 1-4, logicals from 5; GPT entries by index).
      For a GPT disk the partitions are the GPT entries (the MBR is listed
      as mbrN_* keys only).
  disk-testdata-facts.py sfdisk-json
      reads `sfdisk -J` on stdin, prints the same "part ..." lines.
  disk-testdata-facts.py hidden IMG
      the hidden-sectors field (u32 at 0x1C) of the boot sector of IMG.

Everything random comes from SHAKE-256 of fixed labels (stable forever) and
random.Random(seed) with only randrange (stable across CPython versions).
"""
import hashlib
import json
import os
import random
import struct
import sys
import uuid
import zlib

BLOCK = 4096
HDR = 32


def shake(label, n):
    return hashlib.shake_256(("fsimg-disk-testdata:" + label).encode()).digest(n)


def cmd_random(label, size):
    sys.stdout.buffer.write(shake(label, size))


def cmd_junk(pool, label, size):
    chunks = [shake("pool:%s:%d" % (pool, i), BLOCK - HDR) for i in range(16)]
    rng = random.Random(int.from_bytes(shake("seed:" + label, 8), "little"))
    out = sys.stdout.buffer
    n = 0
    left = size
    while left > 0:
        tail = " block %08d\n" % n
        room = HDR - len(tail)
        h = ("JUNK " + label)[:room].ljust(room, ".") + tail
        h = h.encode("ascii")
        assert len(h) == HDR
        blk = h + chunks[rng.randrange(16)]
        out.write(blk[:left])
        left -= len(blk)
        n += 1


def text(label, n):
    """n bytes of compressible text lines."""
    rng = random.Random(int.from_bytes(shake("text:" + label, 8), "little"))
    words = ["partition", "table", "sector", "boot", "disk", "image", "volume", "clone",
             "entry", "header", "backup", "logical", "extended", "primary", "hybrid"]
    out = []
    size = 0
    i = 0
    while size < n:
        line = "%06d %s\n" % (i, " ".join(words[rng.randrange(len(words))] for _ in range(8)))
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()[:n]


def pe_like(label, n):
    """A fake PE/EFI binary: MZ header, then random and text."""
    b = bytearray(b"MZ" + b"\0" * 58 + struct.pack("<I", 0x80) + b"\0" * 64 + b"PE\0\0")
    b += shake(label, n // 2)
    b += text(label, n - len(b))
    return bytes(b[:n])


def write(dest, rel, data):
    p = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)


def cmd_extras(kind, dest, tag):
    os.makedirs(dest, exist_ok=True)
    write(dest, "PARTITION.TXT", ("fsimg disk test data: %s\n" % tag).encode())
    if kind == "rpi-boot":
        write(dest, "config.txt", b"# fsimg test\narm_64bit=1\ndtoverlay=vc4-kms-v3d\n"
              b"auto_initramfs=1\ndisable_overscan=1\n")
        write(dest, "cmdline.txt", b"console=serial0,115200 console=tty1 root=PARTUUID=5a8b3c1d-02 "
              b"rootfstype=ext4 fsck.repair=yes rootwait\n")
        write(dest, "kernel8.img", shake("rpi:kernel8", 96 * 1024) + text("rpi:kernel8", 160 * 1024))
        write(dest, "bootcode.bin", shake("rpi:bootcode", 20 * 1024))
        write(dest, "start4.elf", b"\x7fELF" + shake("rpi:start4", 40 * 1024) + text("rpi:start4", 60 * 1024))
        write(dest, "bcm2711-rpi-4-b.dtb", b"\xd0\x0d\xfe\xed" + text("rpi:dtb", 50 * 1024))
        write(dest, "overlays/vc4-kms-v3d.dtbo", b"\xd0\x0d\xfe\xed" + text("rpi:dtbo", 3000))
        write(dest, "overlays/README", text("rpi:overlays-readme", 8000))
    elif kind == "esp":
        write(dest, "EFI/BOOT/BOOTX64.EFI", pe_like("esp:bootx64", 64 * 1024))
        write(dest, "EFI/BOOT/fbx64.efi", pe_like("esp:fbx64", 24 * 1024))
        write(dest, "EFI/debian/grubx64.efi", pe_like("esp:grubx64", 80 * 1024))
        write(dest, "EFI/debian/shimx64.efi", pe_like("esp:bootx64", 64 * 1024))
        write(dest, "EFI/debian/grub.cfg", b"search.fs_uuid 00000000 root\nset prefix=($root)'/boot/grub'\n"
              b"configfile $prefix/grub.cfg\n")
        write(dest, "EFI/Microsoft/Boot/bootmgfw.efi", pe_like("esp:bootmgfw", 48 * 1024))
        write(dest, "EFI/Microsoft/Boot/BCD", shake("esp:bcd", 4096) + text("esp:bcd", 20 * 1024))
    elif kind == "rootfs":
        # a small Linux root: directories, executables, an empty file and
        # directory, fast and slow (> 60 bytes) symlinks, a hard link
        write(dest, "etc/hostname", ("%s\n" % tag.split(":")[0]).encode())
        write(dest, "etc/os-release", b'PRETTY_NAME="fsimg test rootfs"\nID=fsimg\nVERSION_ID="1"\n')
        write(dest, "etc/motd", text("rootfs:%s:motd" % tag, 1500))
        write(dest, "usr/bin/busybox", b"\x7fELF" + shake("rootfs:busybox", 32 * 1024) + text("rootfs:busybox", 96 * 1024))
        os.chmod(os.path.join(dest, "usr/bin/busybox"), 0o755)
        write(dest, "usr/lib/libc.so.6", b"\x7fELF" + shake("rootfs:libc", 16 * 1024) + text("rootfs:libc", 64 * 1024))
        write(dest, "usr/share/doc/fsimg/copyright", text("rootfs:copyright", 5000))
        write(dest, "var/log/syslog", text("rootfs:%s:syslog" % tag, 160 * 1024))
        write(dest, "home/user/notes.txt", text("rootfs:%s:notes" % tag, 3000))
        write(dest, "home/user/.profile", b"PATH=$HOME/bin:$PATH\n")
        write(dest, "var/empty-file", b"")
        os.makedirs(os.path.join(dest, "mnt"), exist_ok=True)
        os.makedirs(os.path.join(dest, "tmp"), exist_ok=True)
        os.chmod(os.path.join(dest, "tmp"), 0o1777)
        os.symlink("usr/bin", os.path.join(dest, "bin"))
        os.symlink("usr/lib", os.path.join(dest, "lib"))
        os.symlink("busybox", os.path.join(dest, "usr/bin/sh"))
        os.symlink("../share/doc/fsimg/" + "a-target-name-long-enough-for-a-slow-symlink/" * 2 + "copyright",
                   os.path.join(dest, "usr/bin/long-symlink"))
        os.symlink("/nonexistent/dangling", os.path.join(dest, "home/user/dangling"))
        os.link(os.path.join(dest, "usr/bin/busybox"), os.path.join(dest, "usr/bin/ash"))
    elif kind == "windows":
        write(dest, "bootmgr", shake("win:bootmgr", 16 * 1024) + text("win:bootmgr", 48 * 1024))
        write(dest, "Boot/BCD", shake("win:bcd", 4096) + text("win:bcd", 12 * 1024))
        write(dest, "Windows/System32/drivers/etc/hosts", b"127.0.0.1 localhost\r\n::1 localhost\r\n")
        write(dest, "Windows/System32/ntoskrnl.exe", pe_like("win:ntoskrnl", 128 * 1024))
        write(dest, "Windows/Logs/setup.log", text("win:%s:setup-log" % tag, 200 * 1024))
        write(dest, "Program Files/Test App/app.exe", pe_like("win:app", 40 * 1024))
        write(dest, "Users/Public/Documents/Read me.txt", text("win:readme", 6000))
        write(dest, "Users/Public/empty.txt", b"")
    elif kind != "plain":
        sys.exit("unknown extras kind %s" % kind)


# ---------------------------------------------------------------------------
# partition tables
# ---------------------------------------------------------------------------

class Bad(Exception):
    pass


def guid(b):
    return str(uuid.UUID(bytes_le=bytes(b))).upper()


def mbr_entries(sec):
    out = []
    for i in range(4):
        e = sec[446 + 16 * i:446 + 16 * (i + 1)]
        status, ptype = e[0], e[4]
        start, count = struct.unpack_from("<II", e, 8)
        out.append((status, ptype, start, count, bytes(e)))
    return out


def cmd_table(path, ss):
    with open(path, "rb") as f:
        img = f.read()
    size = len(img)
    if size % ss:
        raise Bad("image size %d is not a multiple of %d" % (size, ss))
    nsec = size // ss

    def sector(lba, n=1):
        return img[lba * ss:(lba + n) * ss]

    s0 = img[:512]
    if s0[510:512] != b"\x55\xaa":
        raise Bad("no 55 AA in sector 0")
    kv = []
    parts = []
    kv.append(("mbr_signature", "0x%08x" % struct.unpack_from("<I", s0, 440)[0]))
    ents = mbr_entries(s0)
    has_ee = False
    for i, (st, ty, start, cnt, _) in enumerate(ents, 1):
        if ty == 0:
            continue
        if st not in (0, 0x80):
            raise Bad("MBR entry %d: bad status 0x%02x" % (i, st))
        kv += [("mbr%d_boot" % i, "0x%02x" % st), ("mbr%d_type" % i, "0x%02x" % ty),
               ("mbr%d_start_lba" % i, start), ("mbr%d_sectors" % i, cnt)]
        if ty == 0xEE:
            has_ee = True
    gpt = has_ee and sector(1)[:8] == b"EFI PART"
    if has_ee and not gpt:
        raise Bad("0xEE entry but no GPT header at LBA 1 (sector size %d)" % ss)

    if not gpt:
        ebrs = []
        for i, (st, ty, start, cnt, _) in enumerate(ents, 1):
            if ty == 0:
                continue
            if start + cnt > nsec:
                raise Bad("MBR partition %d ends past the disk" % i)
            parts.append((i, start, cnt, "0x%02x" % ty, "", ""))
            if ty in (0x05, 0x0F, 0x85):
                if ebrs:
                    raise Bad("two extended partitions")
                ext_start, ext_end = start, start + cnt
                ebr = start
                n = 5
                while True:
                    if not ext_start <= ebr < ext_end:
                        raise Bad("EBR at %d outside the extended partition" % ebr)
                    if ebr in ebrs:
                        raise Bad("EBR chain loops back to %d" % ebr)
                    es = sector(ebr)
                    if es[510:512] != b"\x55\xaa":
                        raise Bad("EBR at %d: no 55 AA" % ebr)
                    ebrs.append(ebr)
                    ee = mbr_entries(es)
                    if any(e[1] for e in ee[2:]):
                        raise Bad("EBR at %d: entries 3/4 not empty" % ebr)
                    lst, lty, lstart, lcnt, _ = ee[0]
                    if lty:
                        a = ebr + lstart
                        if a + lcnt > ext_end:
                            raise Bad("logical %d ends past the extended partition" % n)
                        parts.append((n, a, lcnt, "0x%02x" % lty, "", ""))
                        n += 1
                    nty, nstart = ee[1][1], ee[1][2]
                    if not nty:
                        break
                    if nty not in (0x05, 0x0F, 0x85):
                        raise Bad("EBR at %d: link entry type 0x%02x" % (ebr, nty))
                    ebr = ext_start + nstart
                kv.append(("ebr_lbas", ",".join(str(e) for e in ebrs)))
    else:
        h = sector(1)
        (rev, hsize, hcrc, _res, my_lba, alt_lba, first, last) = struct.unpack_from("<IIIIQQQQ", h, 8)
        disk_guid = guid(h[56:72])
        ent_lba, nent, esize, ecrc = struct.unpack_from("<QIII", h, 72)
        hh = bytearray(h[:hsize])
        hh[16:20] = b"\0\0\0\0"
        if zlib.crc32(hh) != hcrc:
            raise Bad("primary GPT header CRC")
        if my_lba != 1 or alt_lba != nsec - 1:
            raise Bad("GPT header: my_lba %d alt_lba %d (disk has %d sectors)" % (my_lba, alt_lba, nsec))
        earr = img[ent_lba * ss:ent_lba * ss + nent * esize]
        if zlib.crc32(earr) != ecrc:
            raise Bad("GPT entry array CRC")
        b = sector(alt_lba)
        if b[:8] != b"EFI PART":
            raise Bad("no backup GPT header in the last sector")
        (brev, bhsize, bhcrc, _r, bmy, balt, bfirst, blast) = struct.unpack_from("<IIIIQQQQ", b, 8)
        bent_lba, bnent, besize, becrc = struct.unpack_from("<QIII", b, 72)
        bb = bytearray(b[:bhsize])
        bb[16:20] = b"\0\0\0\0"
        if zlib.crc32(bb) != bhcrc:
            raise Bad("backup GPT header CRC")
        if (bmy, balt, bfirst, blast, guid(b[56:72]), bnent, besize, becrc) != \
                (alt_lba, 1, first, last, disk_guid, nent, esize, ecrc):
            raise Bad("backup GPT header does not mirror the primary one")
        if img[bent_lba * ss:bent_lba * ss + nent * esize] != earr:
            raise Bad("backup GPT entry array differs from the primary one")
        arr_sectors = (nent * esize + ss - 1) // ss
        if bent_lba + arr_sectors != alt_lba:
            raise Bad("backup entry array is not right before the backup header")
        kv += [("gpt_disk_guid", disk_guid), ("gpt_revision", "0x%08x" % rev), ("gpt_header_size", hsize),
               ("gpt_first_usable_lba", first), ("gpt_last_usable_lba", last),
               ("gpt_entries_lba", ent_lba), ("gpt_entries", nent), ("gpt_entry_size", esize),
               ("gpt_entries_sectors", arr_sectors),
               ("gpt_backup_header_lba", alt_lba), ("gpt_backup_entries_lba", bent_lba)]
        for i in range(nent):
            e = earr[i * esize:(i + 1) * esize]
            if e[:16] == b"\0" * 16:
                continue
            a, z, attrs = struct.unpack_from("<QQQ", e, 32)
            name = e[56:128].decode("utf-16-le").split("\0")[0]
            if not first <= a <= z <= last:
                raise Bad("GPT entry %d: %d-%d outside the usable LBAs" % (i + 1, a, z))
            parts.append((i + 1, a, z - a + 1, guid(e[:16]), guid(e[16:32]), name))
            if attrs:
                kv.append(("gpt%d_attrs" % (i + 1), "0x%016x" % attrs))
    if gpt:
        # a hybrid MBR: every entry but the 0xEE one must mirror a GPT partition
        spans = set((p[1], p[2]) for p in parts)
        hybrid = 0
        for i, (st, ty, start, cnt, _) in enumerate(ents, 1):
            if ty in (0, 0xEE):
                continue
            if (start, cnt) not in spans:
                raise Bad("hybrid MBR entry %d (%d+%d) matches no GPT partition" % (i, start, cnt))
            hybrid += 1
        kv.append(("mbr_hybrid_entries", hybrid))
    # no overlaps (the extended container holds the logicals)
    iv = sorted((p[1], p[1] + p[2], p[0]) for p in parts if p[3] not in ("0x05", "0x0f", "0x85"))
    for (a0, a1, n0), (b0, b1, n1) in zip(iv, iv[1:]):
        if b0 < a1:
            raise Bad("partitions %d and %d overlap" % (n0, n1))
    for k, v in kv:
        print("%s=%s" % (k, v))
    for p in parts:
        print("part %d %d %d %s %s %s" % (p[0], p[1], p[2], p[3], p[4] or "-", p[5] or "-"))


def cmd_sfdisk_json(stream):
    t = json.load(stream)["partitiontable"]
    for p in t.get("partitions", []):
        node = p["node"]
        i = len(node)
        while i and node[i - 1].isdigit():
            i -= 1
        n = int(node[i:])
        ty = p["type"]
        if t["label"] == "dos":
            ty = "0x%02x" % int(ty, 16)
        print("part %d %d %d %s %s %s" % (n, p["start"], p["size"], ty,
                                          p.get("uuid", "-") or "-", p.get("name", "-") or "-"))


def main():
    a = sys.argv[1:]
    try:
        if a[:1] == ["random"] and len(a) == 3:
            cmd_random(a[1], int(a[2]))
        elif a[:1] == ["junk"] and len(a) == 4:
            cmd_junk(a[1], a[2], int(a[3]))
        elif a[:1] == ["extras"] and len(a) == 4:
            cmd_extras(a[1], a[2], a[3])
        elif a[:1] == ["table"] and len(a) == 3:
            cmd_table(a[1], int(a[2]))
        elif a[:1] == ["sfdisk-json"] and len(a) == 1:
            cmd_sfdisk_json(sys.stdin)
        elif a[:1] == ["hidden"] and len(a) == 2:
            with open(a[1], "rb") as f:
                print(struct.unpack_from("<I", f.read(512), 0x1C)[0])
        else:
            sys.exit(__doc__)
    except Bad as e:
        sys.exit("%s: %s" % (a[1], e))


if __name__ == "__main__":
    main()
