#!/usr/bin/env bash
# Build testdata/ext-files/ext4-files.img.zst: the ext4 volume the file reader
# (src/files/ext) is tested on, covering what the images of
# tools/make-ext-testdata.sh lack.
#
# Usage: tools/make-ext-files-testdata.sh [OUTDIR]      (default: testdata/ext-files)
#
# Covered: inline_data (small files, a small directory and a symlink stored
# in the inode), an fallocated (unwritten) extent, an extent tree of depth 1,
# a character device (old 16-bit encoding) and a block device (new
# encoding), a fifo, a socket, a sparse file with a hole at its end, hard
# links, an htree directory of 300 entries (large_dir), a file owned by
# 1234:5678 with mode 0640, mtimes with nanoseconds and with epoch bits.
#
# Like make-ext-testdata.sh nothing is mounted and root is not needed: the
# tree comes from a deterministic python script and `mke2fs -d`; debugfs
# then does what mke2fs -d cannot (device nodes, owners, timestamps,
# fallocate, the size of a file ending in a hole, which mke2fs -d 1.47.0
# truncates to its last data block), and `e2fsck -fyD` indexes the large
# directory. The result must pass `e2fsck -fn`.
#
# Requirements: e2fsprogs (mke2fs, debugfs, e2fsck), zstd, python3.
# Reproducible on the same e2fsprogs/zstd versions (checked with e2fsprogs
# 1.47.0): UUID, hash seed, label, clock and mke2fs.conf are pinned.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/testdata/ext-files}
name=ext4-files

export LC_ALL=C TZ=UTC
export SOURCE_DATE_EPOCH=1700000000
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
# e2fsck -fyD writes s_wtime and s_lastcheck: its clock is E2FSCK_TIME.
export E2FSCK_TIME=$SOURCE_DATE_EPOCH
umask 022

for tool in mke2fs debugfs e2fsck zstd python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
fail() { echo "ERROR: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-ext-files.XXXXXX")
trap 'rm -rf "$work"' EXIT

export MKE2FS_CONFIG=$work/mke2fs.conf
cat >"$MKE2FS_CONFIG" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		blocksize = 1024
		inode_ratio = 4096
	}
EOF

# ---------------------------------------------------------------------------
# Source tree
# ---------------------------------------------------------------------------
src=$work/src
python3 - "$src" <<'EOF'
import hashlib, os, socket, sys

dest = sys.argv[1]
os.makedirs(dest)
os.chdir(dest)

def shake(label, n):
    return hashlib.shake_256(("fsimg-testdata:" + label).encode()).digest(n)

def put(path, data, mode=0o644):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)

# Inline data: 13 bytes fit in i_block; 100 bytes spill into system.data.
put("inline/tiny.txt", b"hello inline\n")
put("inline/spill.txt", bytes(b"0123456789"[i % 10] for i in range(99)) + b"\n")
# A small directory stored inline, holding a file and an empty directory.
put("inline/smalldir/note.txt", b"in an inline directory\n")
os.makedirs("inline/smalldir/empty")
# Symlinks: fast (in i_block), inline (80 bytes: i_block + system.data),
# slow (300 bytes: a data block).
os.symlink("tiny.txt", "inline/fast-link")
os.symlink("../" + "i" * 77, "inline/inline-link")
os.symlink("/" + "s" * 299, "inline/slow-link")

# Hard links: three names of one inode.
put("links/original.txt", b"one inode, three names\n" * 300)
os.link("links/original.txt", "links/second.txt")
os.link("links/original.txt", "hardlink-at-root.txt")

# An htree directory: 300 entries.
os.makedirs("bigdir")
for i in range(300):
    put("bigdir/entry-%04d-with-a-longer-name.txt" % i, b"%d\n" % i)

# Plain data: 200 KiB of incompressible bytes in one extent; a file of 8
# data blocks separated by holes (8 extents: an extent tree of depth 1).
put("data/random-200k.bin", shake("random-200k", 200 * 1024))
with open("data/fragmented.bin", "wb") as f:
    for i in range(8):
        f.seek(i * 3 * 4096)
        f.write(bytes([0x41 + i]) * 4096)
os.chmod("data/fragmented.bin", 0o644)
# Sparse: data at 0 and at 1 MiB, 2 MiB long (its size is set again by
# debugfs: mke2fs -d drops the final hole).
with open("data/sparse.bin", "wb") as f:
    f.write(b"S" * 4096)
    f.seek(1 << 20)
    f.write(shake("sparse", 4096))
    f.truncate(2 << 20)
os.chmod("data/sparse.bin", 0o644)
# One data block; debugfs sets its size to 64 KiB and fallocates blocks
# 4-11 (unwritten).
put("data/prealloc.bin", b"P" * 4096)

# Owner and mode (the owner is set by debugfs).
put("owned.txt", b"owned by 1234:5678\n", 0o640)
# Timestamps with nanoseconds and past 2038 (set by debugfs).
put("times/nanos.txt", b"mtime has nanoseconds\n")
put("times/future.txt", b"mtime past 2038\n")

# A fifo and a socket (device nodes come from debugfs).
os.makedirs("special")
os.mkfifo("special/fifo")
s = socket.socket(socket.AF_UNIX)
s.bind("special/socket")
s.close()
EOF
find "$src" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# ---------------------------------------------------------------------------
# Image
# ---------------------------------------------------------------------------
img=$work/$name.img
uuid=$(python3 -c 'import uuid,sys; print(uuid.uuid5(uuid.NAMESPACE_URL, "fsimg-testdata/ext/" + sys.argv[1]))' "$name")
truncate -s 8M "$img"
mke2fs -q -F -t ext4 -O inline_data,large_dir -b 4096 -N 1024 -L "$name" -U "$uuid" \
    -E "hash_seed=$uuid,lazy_itable_init=0,lazy_journal_init=0,nodiscard,root_owner=0:0" \
    -d "$src" "$img"

cmds=$work/fix.debugfs
{
    echo "set_current_time @$SOURCE_DATE_EPOCH"
    # Device nodes: 4:64 fits the old encoding, 259:300 needs the new one.
    echo "cd /special"
    echo "mknod chardev c 4 64"
    echo "mknod blockdev b 259 300"
    echo "cd /"
    # Owner, atime, ctime and mtime of everything, as make-ext-testdata.sh.
    (cd "$src" && find . | sort; echo ./special/chardev; echo ./special/blockdev) |
        while IFS= read -r p; do
            p=${p#.}
            p=${p:-/}
            for f in uid gid; do echo "sif \"$p\" $f 0"; done
            for f in atime ctime mtime crtime; do echo "sif \"$p\" $f @$SOURCE_DATE_EPOCH"; done
        done
    # debugfs mknod makes mode 0000 nodes.
    echo "sif /special/chardev mode 020620"
    echo "sif /special/blockdev mode 060660"
    echo "sif /owned.txt uid 1234"
    echo "sif /owned.txt gid 5678"
    # mtime 1700000000.123456789: nanoseconds in the upper 30 bits.
    echo "sif /times/nanos.txt mtime_extra $((123456789 << 2))"
    # mtime 100 with epoch bits 1: 2^32 + 100 seconds (year 2106).
    echo "sif /times/future.txt mtime 100"
    echo "sif /times/future.txt mtime_extra 1"
    echo "sif /data/sparse.bin size $((2 << 20))"
    echo "sif /data/prealloc.bin size 65536"
    echo "fallocate /data/prealloc.bin 4 11"
} >"$cmds"
debugfs -w -f "$cmds" "$img" >"$work/fix.log" 2>&1
if grep -E -i 'error|not found|invalid|unknown|usage' "$work/fix.log" | grep -v '^debugfs [0-9]'; then
    fail "debugfs reported problems"
fi

# Index the large directory (htree). e2fsck exits 1 when it changed something.
rc=0
e2fsck -fyD "$img" >"$work/fsck-D.log" 2>&1 || rc=$?
[ "$rc" -le 1 ] || { cat "$work/fsck-D.log" >&2; fail "e2fsck -fyD failed ($rc)"; }
if ! e2fsck -fn "$img" >"$work/fsck.log" 2>&1; then
    cat "$work/fsck.log" >&2
    fail "e2fsck -fn is not clean"
fi

# Check that the features meant to be covered really are.
stat_of() { debugfs -R "stat $1" "$img" 2>/dev/null; }
stat_of /inline/tiny.txt | grep -q 'Flags: 0x10000000' || fail "tiny.txt is not inline"
stat_of /inline/spill.txt | grep -q 'Size of inline data: [1-9][0-9][0-9]' || fail "spill.txt does not spill into system.data"
stat_of /inline/smalldir | grep -q 'Flags: 0x10000000' || fail "smalldir is not inline"
stat_of /inline/inline-link | grep -q 'Flags: 0x10000000' || fail "inline-link is not inline"
stat_of /data/prealloc.bin | grep -q '\[u\]' || fail "prealloc.bin has no unwritten extent"
stat_of /data/fragmented.bin | grep -q '(ETB0)' || fail "fragmented.bin has no extent index"
debugfs -R "htree /bigdir" "$img" 2>/dev/null | grep -q 'Root node dump' || fail "bigdir is not indexed"
stat_of /special/blockdev | grep -q 'Type: block special' || fail "no block device"

mkdir -p "$out"
sha=$(sha256sum "$img" | cut -d' ' -f1)
zstd -19 -q -f --no-progress "$img" -o "$out/$name.img.zst"
printf '%s: sha256 %s, %s bytes of .zst\n' "$name" "$sha" "$(stat -c %s "$out/$name.img.zst")" >&2
