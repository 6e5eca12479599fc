#!/usr/bin/env bash
# Build testdata/ntfs-special/ntfs-special.img.zst: a small NTFS volume of
# the files that `fsimg ls/cat/extract` cannot decode or must decode
# specially, and its NAME.tree (tools/record-trees.sh).
#
# Usage: tools/make-ntfs-files-testdata.sh [OUTDIR]  (default: testdata/ntfs-special)
#
# The volume lives in its own directory, not in testdata/ntfs: the tests
# that loop over testdata/ntfs/*.img.zst expect every file to extract and
# read NAME.expected, and tools/make-ntfs-testdata.sh empties that
# directory.  tests/files.rs (ntfs_special_*) covers it.
#
# Contents (all written through a read-write ntfs-3g mount, in this order):
#   /README.txt, /docs/notes.txt, /docs/big.bin (40000 bytes, non-resident)
#   /docs/hard-link.txt         a hard link to /docs/notes.txt
#   /streams.txt                with a named stream "comment" (ntfs-3g
#                               streams_interface=xattr: user.comment)
#   /Long file name.txt         with the DOS 8.3 name SHORT~1.TXT
#                               (system.ntfs_dos_name), a second $FILE_NAME
#                               that ls and extract must not show
#   /docs/compact.bin           a WOF (CompactOS) reparse point, tag
#                               0x80000017, set as raw reparse data
#                               (system.ntfs_reparse_data) on a file that
#                               keeps its plain $DATA
#   /secret.bin                 FILE_ATTRIBUTE_ENCRYPTED (0x4000): ntfs-3g
#                               ignores that bit in system.ntfs_attrib, so it
#                               is set after unmounting, in the file's
#                               $STANDARD_INFORMATION only (see patch_si
#                               below; nothing else is changed: no $EFS
#                               attribute, no encrypted flag on $DATA or in
#                               the $FILE_NAME copies)
#   /links/relative             symlink reparse point (0xA000000C), relative
#                               target ..\README.txt
#   /links/absolute             symlink, absolute \??\C:\docs\notes.txt
#   /links/dir-symlink          directory symlink, absolute \??\C:\docs
#   /links/junction             junction (0xA0000003) to \??\C:\docs
#   /links/root-junction        junction to \??\C:\ (the volume's root)
#   /links/deep/absolute        symlink two levels down, \??\C:\README.txt
#
# After the unmount, `ntfsfix -n` must report the volume clean, before and
# after the $STANDARD_INFORMATION patch.  The tree is then recorded from a
# read-only ntfs-3g mount by tools/record-trees.sh.  ntfs-3g shows the WOF
# file as a symlink to "unsupported reparse tag 0x80000017" and cannot read
# the encrypted one (EIO: tools/files-manifest.py records it as
# "unreadable").  ntfs-3g turns absolute link targets into paths through
# its mount point (a mktemp directory of record-trees.sh), so the script
# rewrites those targets (and their sizes) in NAME.tree to paths from the
# volume's root (/docs/notes.txt), which makes the tree reproducible.
#
# Requirements: root, /dev/fuse, ntfs-3g (ntfs-3g, mkntfs, ntfsfix), attr
# (setfattr), zstd, python3, util-linux (mountpoint, blkid), the C.UTF-8
# locale; a C compiler for the fixed-clock shim (as in make-ntfs-testdata.sh:
# without one, timestamps follow the real clock).
#
# Reproducibility: as tools/make-ntfs-testdata.sh: mkntfs -T, a volume serial
# derived from the name, ntfs-3g on a fixed clock (SOURCE_DATE_EPOCH), every
# operation in a fixed order, fixed contents.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/testdata/ntfs-special}
facts=$here/ntfs-testdata-facts.py
name=ntfs-special
size=$((8 << 20))

export LC_ALL=C.UTF-8 TZ=UTC
export SOURCE_DATE_EPOCH=1700000000
umask 022

fail() { echo "ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root: the volume is filled through an ntfs-3g (FUSE) mount"
for tool in mkntfs ntfs-3g ntfsfix setfattr zstd python3 sha256sum mountpoint umount blkid; do
    command -v "$tool" >/dev/null || fail "missing tool: $tool (apt-get install ntfs-3g attr zstd)"
done
[ -c /dev/fuse ] || fail "missing /dev/fuse (modprobe fuse?)"
locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' || fail "missing locale: C.UTF-8"

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-ntfs-special.XXXXXX")
mnt=$work/mnt
mkdir "$mnt"
ntfs3g_pid=""
cleanup() {
    if mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt" || true; fi
    if [ -n "$ntfs3g_pid" ]; then wait "$ntfs3g_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The fixed-clock shim (the same as tools/make-ntfs-testdata.sh's).
shim=""
if command -v cc >/dev/null; then
    cat >"$work/fixedtime.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
static time_t fixed(void) { const char *s = getenv("FSIMG_FIXED_TIME"); return s ? (time_t)atoll(s) : 0; }
int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) {
        ts->tv_sec = fixed();
        ts->tv_nsec = 0;
        return 0;
    }
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    return real(id, ts);
}
int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    if (tv) { tv->tv_sec = fixed(); tv->tv_usec = 0; }
    return 0;
}
time_t time(time_t *t) { time_t v = fixed(); if (t) *t = v; return v; }
EOF
    cc -O2 -shared -fPIC -o "$work/fixedtime.so" "$work/fixedtime.c" -ldl ||
        fail "cannot build the fixed-clock shim"
    shim=$work/fixedtime.so
else
    echo "WARNING: no C compiler: ntfs-3g runs on the real clock; timestamps will differ between runs" >&2
fi

# ntfs-3g in the foreground (no_detach) in the background of this shell, so
# that after umount we can wait for it to have written everything.
mount_ntfs() {
    local img=$1 opts=$2 i
    if [ -n "$shim" ]; then
        LD_PRELOAD=$shim FSIMG_FIXED_TIME=$SOURCE_DATE_EPOCH \
            ntfs-3g -o "no_detach,streams_interface=xattr,$opts" "$img" "$mnt" >>"$work/ntfs-3g.log" 2>&1 &
    else
        ntfs-3g -o "no_detach,streams_interface=xattr,$opts" "$img" "$mnt" >>"$work/ntfs-3g.log" 2>&1 &
    fi
    ntfs3g_pid=$!
    for i in $(seq 100); do
        mountpoint -q "$mnt" && return 0
        kill -0 "$ntfs3g_pid" 2>/dev/null || { tail -n 20 "$work/ntfs-3g.log" >&2; fail "ntfs-3g $img failed"; }
        sleep 0.1
    done
    fail "ntfs-3g $img: not mounted after 10 s"
}

umount_ntfs() {
    umount "$mnt"
    local rc=0
    wait "$ntfs3g_pid" || rc=$?
    ntfs3g_pid=""
    [ "$rc" = 0 ] || { tail -n 20 "$work/ntfs-3g.log" >&2; fail "ntfs-3g exited with status $rc"; }
}

check_clean() {
    local rc=0
    ntfsfix -n "$1" >"$work/ntfsfix.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ] || ! grep -q 'processed successfully' "$work/ntfsfix.log" ||
        grep -qiE 'dirty|corrupt|error|fail' "$work/ntfsfix.log"; then
        cat "$work/ntfsfix.log" >&2
        fail "$2: ntfsfix -n is not clean (exit status $rc)"
    fi
}

img=$work/$name.img
truncate -s "$size" "$img"
mkntfs -F -f -q -T -L SPECIAL "$img" >"$work/mkntfs.log" 2>&1 ||
    { cat "$work/mkntfs.log" >&2; fail "mkntfs failed"; }
python3 "$facts" set-serial "$img" "$(printf 'fsimg-testdata/ntfs/%s' "$name" | sha256sum | cut -c1-16)"

# ---- fill ----
mount_ntfs "$img" rw
python3 - "$mnt" <<'EOF'
import hashlib
import os
import struct
import sys

root = sys.argv[1]
epoch = int(os.environ["SOURCE_DATE_EPOCH"])


def p(rel):
    return os.path.join(root, rel)


def write(rel, data):
    with open(p(rel), "wb") as f:
        f.write(data)
    os.utime(p(rel), (epoch, epoch))


def stream(n):
    """n deterministic bytes (a SHA-256 counter stream)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"ntfs-special %d" % i).digest()
        i += 1
    return bytes(out[:n])


def u16(s):
    return s.encode("utf-16-le")


def reparse(tag, data):
    return struct.pack("<IHH", tag, len(data), 0) + data


def symlink(target, relative):
    """IO_REPARSE_TAG_SYMLINK: substitute name, then print name (without
    the \\??\\ prefix); flags 1 = relative."""
    sub = u16(target)
    prn = u16(target[4:] if target.startswith("\\??\\") else target)
    head = struct.pack("<HHHHI", 0, len(sub), len(sub), len(prn), 1 if relative else 0)
    return reparse(0xA000000C, head + sub + prn)


def junction(target):
    """IO_REPARSE_TAG_MOUNT_POINT: both names NUL-terminated, as Windows
    writes them (the lengths leave the NUL out)."""
    sub = u16(target) + b"\0\0"
    prn = u16(target[4:]) + b"\0\0"
    head = struct.pack("<HHHH", 0, len(sub) - 2, len(sub), len(prn) - 2)
    return reparse(0xA0000003, head + sub + prn)


# WOF_EXTERNAL_INFO {Version 1, Provider 2 = WOF_PROVIDER_FILE} and
# FILE_PROVIDER_EXTERNAL_INFO_V0 {Version 1, Algorithm 1 = LZX}: 16 bytes,
# what Windows writes for `compact /c /exe:lzx`.
WOF = reparse(0x80000017, struct.pack("<IIII", 1, 2, 1, 1))

write("README.txt", b"fsimg ntfs-special: files fsimg cannot or must specially decode.\n")
os.mkdir(p("docs"))
write("docs/notes.txt", b"notes: reached through a hard link, a symlink and two junctions\n")
write("docs/big.bin", stream(40000))
os.link(p("docs/notes.txt"), p("docs/hard-link.txt"))
write("streams.txt", b"a file with a named stream\n")
os.setxattr(p("streams.txt"), "user.comment", b"the named stream 'comment'\n")
write("Long file name.txt", b"a long name and a DOS 8.3 name\n")
os.setxattr(p("Long file name.txt"), "system.ntfs_dos_name", b"SHORT~1.TXT")
write("docs/compact.bin", b"data a WOF reparse point says is compressed elsewhere\n" * 20)
os.setxattr(p("docs/compact.bin"), "system.ntfs_reparse_data", WOF)
write("secret.bin", b"encrypted, says $STANDARD_INFORMATION\n")
os.mkdir(p("links"))
os.mkdir(p("links/deep"))
for rel, value, is_dir in [
    ("links/relative", symlink("..\\README.txt", True), False),
    ("links/absolute", symlink("\\??\\C:\\docs\\notes.txt", False), False),
    ("links/dir-symlink", symlink("\\??\\C:\\docs", False), True),
    ("links/junction", junction("\\??\\C:\\docs"), True),
    ("links/root-junction", junction("\\??\\C:\\"), True),
    ("links/deep/absolute", symlink("\\??\\C:\\README.txt", False), False),
]:
    if is_dir:
        os.mkdir(p(rel))
    else:
        write(rel, b"")
    os.setxattr(p(rel), "system.ntfs_reparse_data", value)
for d in ["links/deep", "links", "docs"]:
    os.utime(p(d), (epoch, epoch))
# what ntfs-3g kept
assert os.getxattr(p("docs/compact.bin"), "system.ntfs_reparse_data") == WOF
assert os.getxattr(p("Long file name.txt"), "system.ntfs_dos_name") == b"SHORT~1.TXT"
EOF
umount_ntfs
check_clean "$img" "after filling"

# ---- FILE_ATTRIBUTE_ENCRYPTED on /secret.bin ----
# patch_si IMG NAME BIT: ORs BIT into the file attributes (offset 0x20 of
# the value) of the $STANDARD_INFORMATION of the in-use record whose
# $FILE_NAME (not a DOS name) is NAME in the root directory; nothing else.
patch_si() {
    python3 - "$@" <<'EOF'
import struct
import sys

path, name, bit = sys.argv[1], sys.argv[2].encode("utf-16-le"), int(sys.argv[3], 0)
with open(path, "r+b") as f:
    img = bytearray(f.read())
    bps = struct.unpack_from("<H", img, 0x0B)[0]
    spc = img[0x0D]
    cs = bps * (1 << (256 - spc) if spc > 0x80 else spc)
    mft_lcn = struct.unpack_from("<Q", img, 0x30)[0]
    cpr = struct.unpack_from("<b", img, 0x40)[0]
    rs = 1 << -cpr if cpr < 0 else cpr * cs

    def record(off):
        """The record at byte off with its fixups applied, or None."""
        r = bytearray(img[off:off + rs])
        if r[:4] != b"FILE":
            return None
        uo, un = struct.unpack_from("<HH", r, 4)
        for i in range(1, un):
            end = i * 512 - 2
            if r[end:end + 2] != r[uo:uo + 2]:
                sys.exit("record at byte %d: bad fixup" % off)
            r[end:end + 2] = r[uo + 2 * i:uo + 2 * i + 2]
        return r

    def attrs(r):
        at = struct.unpack_from("<H", r, 0x14)[0]
        while at + 8 <= len(r):
            ty, ln = struct.unpack_from("<II", r, at)
            if ty == 0xFFFFFFFF or ln == 0:
                return
            yield at, ty, r[at:at + ln]
            at += ln

    # the $MFT's extents, from record 0's unnamed $DATA
    offsets = []
    for _, ty, a in attrs(record(mft_lcn * cs)):
        if ty == 0x80 and a[9] == 0:
            q = struct.unpack_from("<H", a, 0x20)[0]
            count = struct.unpack_from("<Q", a, 0x30)[0] // rs
            lcn = 0
            while a[q]:
                nl, no = a[q] & 15, a[q] >> 4
                length = int.from_bytes(a[q + 1:q + 1 + nl], "little")
                lcn += int.from_bytes(a[q + 1 + nl:q + 1 + nl + no], "little", signed=True)
                offsets += range(lcn * cs, (lcn + length) * cs, rs)
                q += 1 + nl + no
            offsets = offsets[:count]
    hits = []
    for off in offsets[16:]:
        r = record(off)
        if r is None or not struct.unpack_from("<H", r, 0x16)[0] & 1:
            continue
        named = False
        si = None
        for at, ty, a in attrs(r):
            if a[8] != 0:
                continue
            v = struct.unpack_from("<H", a, 0x14)[0]
            if ty == 0x30:
                parent = struct.unpack_from("<Q", a, v)[0] & ((1 << 48) - 1)
                n = a[v + 0x40]
                named |= parent == 5 and a[v + 0x41] != 2 and a[v + 0x42:v + 0x42 + 2 * n] == name
            elif ty == 0x10:
                si = at + v + 0x20
        if named and si is not None:
            hits.append(off + si)
    if len(hits) != 1:
        sys.exit("%d in-use records named %s in the root" % (len(hits), sys.argv[2]))
    at = hits[0]
    if any((at + k) % 512 in (510, 511) for k in range(4)):
        sys.exit("the file attributes lie under a fixup")
    old = struct.unpack_from("<I", img, at)[0]
    f.seek(at)
    f.write(struct.pack("<I", old | bit))
    print("%s: $STANDARD_INFORMATION file attributes at byte %d: 0x%08x -> 0x%08x"
          % (sys.argv[2], at, old, old | bit), file=sys.stderr)
EOF
}
patch_si "$img" secret.bin 0x4000
check_clean "$img" "after the \$STANDARD_INFORMATION patch"

# ---- outputs ----
mkdir -p "$out"
zstd -19 -q -f --no-progress "$img" -o "$out/$name.img.zst"
"$here/record-trees.sh" "$out/$name.img.zst"
# Absolute link targets through record-trees.sh's mount point -> from the
# volume's root ("/tmp/tmp.X/mnt/docs" -> "/docs", the mount point -> "/").
python3 - "$out/$name.tree" <<'EOF'
import re
import sys

path = sys.argv[1]
lines = open(path, encoding="utf-8").read().splitlines()
out = []
for line in lines:
    f = line.split("\t")
    if f[1] == "l" and f[8].startswith("/"):
        m = re.fullmatch(r"/.*?/mnt(/.*)?", f[8])
        if not m:
            sys.exit("unexpected absolute target: " + line)
        f[8] = m.group(1) or "/"
        f[6] = str(len(f[8].encode()))
    out.append("\t".join(f))
open(path, "w", encoding="utf-8").write("\n".join(out) + "\n")
EOF
grep -q $'^/secret.bin\tf\t.*\tunreadable\t' "$out/$name.tree" ||
    fail "ntfs-3g read /secret.bin: it should refuse an encrypted file"
grep -q $'^/docs/compact.bin\tl\t.*\tunsupported reparse tag 0x80000017\t' "$out/$name.tree" ||
    fail "ntfs-3g did not show /docs/compact.bin as an unsupported reparse point"
echo "done: $out/$name.img.zst ($(stat -c %s "$out/$name.img.zst") bytes), $out/$name.tree" >&2
