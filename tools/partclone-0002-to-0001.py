#!/usr/bin/env python3
"""Rewrites a partclone image of format 0002 as format 0001.

Usage: partclone-0002-to-0001.py IN.0002 OUT.0001

partclone 0.3.x writes only format 0002, so the 0001 test image is built
from the layout in ../shared/research/peers.md section 2.2 (partclone's
image_desc_v1) and then checked by the caller with the real
`partclone.restore`, which still reads 0001:

  0     15  magic "partclone-image" (no NUL)
  15    15  filesystem name, NUL-padded
  30     4  "0001"
  34     2  padding (0)
  36     4  block size (int)
  40     8  device size
  48     8  total blocks
  56     8  used blocks
  64  4096  options buffer (unused, 0)
  4160      one byte per block (1 = stored), then "BiTmAgIc", then every
            stored block followed by a 4-byte CRC. The CRC is partclone's
            CRC32 (reflected 0xEDB88320, initial 0xFFFFFFFF, no final XOR)
            computed over the block's FIRST BYTE repeated block-size times
            (the 0001 bug), chained over all blocks, never reseeded.

This parser reads only what it needs of 0002 and checks the header and
bitmap CRCs and, for CRC32 images, every strip checksum, so the input is
known good.
"""

import struct
import sys
import zlib


def pc_crc(state, data):
    """partclone's CRC32 update: no pre/post inversion."""
    return ~zlib.crc32(data, ~state & 0xFFFFFFFF) & 0xFFFFFFFF


def main():
    src, dst = sys.argv[1], sys.argv[2]
    img = open(src, "rb").read()
    head = img[:110]
    assert head[:15] == b"partclone-image", "not a partclone image"
    assert head[30:34] == b"0002", "not format 0002"
    (crc,) = struct.unpack_from("<I", head, 106)
    assert pc_crc(0xFFFFFFFF, head[:106]) == crc, "header CRC"
    fs = head[36:52].split(b"\0")[0]
    device_size, total, _sb_used, used, bs = struct.unpack_from("<QQQQI", head, 52)
    mode, cs_size, bpc, _reseed, bitmap_mode = struct.unpack_from("<HHIBB", head, 96)
    reseed = head[104]
    assert bitmap_mode == 1, "only BIT bitmaps"
    assert mode in (0x00, 0x20), "only NONE and CRC32 images"
    nbytes = (total + 7) // 8
    bitmap = img[110 : 110 + nbytes]
    (bcrc,) = struct.unpack_from("<I", img, 110 + nbytes)
    assert pc_crc(0xFFFFFFFF, bitmap) == bcrc, "bitmap CRC"
    pos = 110 + nbytes + 4
    blocks = [b for b in range(total) if bitmap[b >> 3] >> (b & 7) & 1]
    assert len(blocks) == used, "bitmap count"

    out = bytearray()
    out += b"partclone-image"
    out += fs.ljust(15, b"\0")
    out += b"0001" + b"\0\0"
    out += struct.pack("<iQQQ", bs, device_size, total, used)
    out += bytes(4096)
    assert len(out) == 4160
    mask = bytearray(total)
    for b in blocks:
        mask[b] = 1
    out += mask + b"BiTmAgIc"

    state = 0xFFFFFFFF
    v2state = 0xFFFFFFFF
    in_strip = 0
    for _ in blocks:
        data = img[pos : pos + bs]
        assert len(data) == bs, "truncated 0002 image"
        pos += bs
        if mode == 0x20:
            v2state = pc_crc(v2state, data)
            in_strip += 1
            if in_strip == bpc:
                assert struct.unpack_from("<I", img, pos)[0] == v2state, "strip CRC"
                pos += cs_size
                in_strip = 0
                if reseed:
                    v2state = 0xFFFFFFFF
        state = pc_crc(state, data[:1] * bs)
        out += data + struct.pack("<I", state)
    if mode == 0x20 and in_strip:
        assert struct.unpack_from("<I", img, pos)[0] == v2state, "last strip CRC"
        pos += cs_size
    assert pos == len(img), "trailing bytes in the 0002 image"
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main()
