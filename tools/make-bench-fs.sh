#!/usr/bin/env bash
# Build (or reuse) the deterministic ext4 benchmark volume in /dev/shm.
#
# Usage: tools/make-bench-fs.sh [--size MIB] [--fill PCT] [--seed N] [--dir DIR]
#        (defaults: 4096 MiB, 40 %, seed 1, DIR /dev/shm/fsimg-bench)
#
# Prints the path of the volume image on stdout (progress goes to stderr).
#
# Steps, as root:
#   1. the backing file is filled with pseudorandom bytes (an old disk);
#   2. mkfs.ext4 with pinned options (own mke2fs.conf, fixed UUID, hash seed,
#      label and clock; lazy_itable_init=0, lazy_journal_init=0, nodiscard,
#      so the free blocks keep the junk of step 1);
#   3. loop mount, tools/bench-fill.py writes files from random.Random(seed)
#      up to PCT % of the volume, plus ~10 % of the capacity in files that are
#      deleted at the end (free blocks with stale data between the kept files);
#   4. unmount, e2fsck -fn.
# The result is cached as DIR/ext4-<size>m-<fill>p-s<seed>-<hash>.img, where
# <hash> covers this script and bench-fill.py, so a rerun with the same
# parameters takes no time.  File contents are deterministic; the block
# placement is ext4's and can differ slightly between builds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
size=4096 fill=40 seed=1 dir=/dev/shm/fsimg-bench
while [ $# -gt 0 ]; do
    case $1 in
        --size) size=$2; shift 2 ;;
        --fill) fill=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "make-bench-fs: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case $size in ''|*[!0-9]*) echo "make-bench-fs: --size must be MiB" >&2; exit 2 ;; esac
case $fill in ''|*[!0-9]*) echo "make-bench-fs: --fill must be a percentage" >&2; exit 2 ;; esac
[ "$size" -ge 256 ] || { echo "make-bench-fs: --size must be at least 256" >&2; exit 2; }
[ "$fill" -ge 5 ] && [ "$fill" -le 85 ] || { echo "make-bench-fs: --fill must be 5..85" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "make-bench-fs: must run as root (loop mount)" >&2; exit 1; }
for tool in mkfs.ext4 e2fsck python3 sha256sum mount umount; do
    command -v "$tool" >/dev/null || { echo "make-bench-fs: missing tool: $tool" >&2; exit 1; }
done

hash=$(cat "$here/make-bench-fs.sh" "$here/bench-fill.py" | sha256sum | cut -c1-8)
mkdir -p "$dir"
vol=$dir/ext4-${size}m-${fill}p-s${seed}-${hash}.img
if [ -s "$vol" ] && [ -e "$vol.ok" ]; then
    echo "make-bench-fs: reusing $vol" >&2
    echo "$vol"
    exit 0
fi

# Volumes made by older versions of these scripts: drop them (they hold RAM).
for old in "$dir"/ext4-${size}m-${fill}p-s${seed}-*.img; do
    [ -e "$old" ] && [ "$old" != "$vol" ] && rm -f "$old" "$old.ok" "$old.meta"
done

export LC_ALL=C TZ=UTC
export E2FSPROGS_FAKE_TIME=1700000000
work=$(mktemp -d /tmp/fsimg-benchfs.XXXXXX)
mnt=$work/mnt
mkdir "$mnt"
tmp=$vol.tmp
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || true; fi
    rm -rf "$work"
    rm -f "$tmp"    # a volume that did not get finished
}
trap cleanup EXIT
rm -f "$tmp" "$vol" "$vol.ok" "$vol.meta"

bytes=$((size * 1024 * 1024))
t0=$(date +%s)
echo "make-bench-fs: prefilling $size MiB with pseudorandom bytes" >&2
python3 "$here/bench-fill.py" prefill "$tmp" "$bytes" "$seed"

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
		inode_size = 256
	}
EOF
echo "make-bench-fs: mkfs.ext4" >&2
mkfs.ext4 -q -F -t ext4 -b 4096 -I 256 -i 16384 -m 5 -L fsimg-bench \
    -U 6b656e63-6866-7369-6d67-000000000001 \
    -E lazy_itable_init=0,lazy_journal_init=0,nodiscard,hash_seed=6b656e63-6866-7369-6d67-000000000002 \
    "$tmp"

echo "make-bench-fs: filling to $fill % through a loop mount" >&2
mount -o loop,noatime "$tmp" "$mnt"
target=$((bytes / 100 * fill))
doomed=$((bytes / 10))
python3 "$here/bench-fill.py" fill "$mnt" "$target" "$doomed" "$seed" >"$work/meta"
cat "$work/meta" >&2
umount "$mnt"

echo "make-bench-fs: e2fsck -fn" >&2
e2fsck -fn "$tmp" >&2
mv "$tmp" "$vol"
{ echo "mkfs.ext4 -b 4096 -I 256 -i 16384 (e2fsprogs defaults otherwise), prefilled with pseudorandom bytes, seed $seed;"
  sed 's/^fill: //' "$work/meta"; } | tr '\n' ' ' >"$vol.meta"
touch "$vol.ok"
echo "make-bench-fs: built $vol in $(( $(date +%s) - t0 )) s" >&2
echo "$vol"
