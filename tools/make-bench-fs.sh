#!/usr/bin/env bash
# Build (or reuse) a deterministic benchmark volume (ext4, NTFS, FAT32, exFAT,
# XFS or btrfs), or a whole disk (Raspberry Pi layout: MBR, FAT32 boot, ext4
# root), in /dev/shm.
#
# Usage: tools/make-bench-fs.sh [--fs ext4|ntfs|fat32|exfat|xfs|btrfs|disk] [--size MIB] [--fill PCT]
#                               [--seed N] [--dir DIR]
#        (defaults: ext4, 4096 MiB, 40 %, seed 1, DIR /dev/shm/fsimg-bench)
#
# Prints the path of the volume image on stdout (progress goes to stderr).
#
# Steps, as root:
#   1. the backing file is filled with pseudorandom bytes (an old disk);
#   2. mkfs with pinned options, leaving the free space as it is:
#        ext4   mkfs.ext4 (own mke2fs.conf, fixed UUID, hash seed, label and
#               clock; lazy_itable_init=0, lazy_journal_init=0, nodiscard);
#        ntfs   mkntfs -F -f -q -T (quick format: nothing is zeroed; -T fakes
#               the clock);
#        fat32  mkfs.fat -F 32 --invariant with a fixed volume ID (it writes
#               only the reserved sectors, the FATs and the root cluster);
#        exfat  mkfs.exfat (exfatprogs defaults: 4 KiB clusters below
#               256 MiB, 32 KiB above) with a fixed serial (tune.exfat -I);
#        xfs    mkfs.xfs -K (no discard) with a fixed UUID and label (v5
#               defaults otherwise);
#        btrfs  mkfs.btrfs -K (no TRIM) with a fixed UUID: DUP metadata,
#               single data, crc32c;
#   3. mount (ext4, XFS, btrfs and FAT32: kernel loop mount; NTFS: ntfs-3g through
#      /dev/fuse; exFAT: exfat-fuse on a loop device), tools/bench-fill.py writes files from random.Random(seed)
#      up to PCT % of the volume, plus ~10 % of the capacity in files that are
#      deleted at the end (free blocks with stale data between the kept
#      files).  Only directories and regular files, with 8.3 names and at
#      most 256 MiB each, so the same tree fits FAT32;
#   4. unmount, then check: e2fsck -fn, ntfsfix -n, fsck.fat -n,
#      fsck.exfat -n, xfs_repair -n -f or btrfs check --readonly.
# A disk (--fs disk) is a sparse file, not prefilled (so that dd's sparse
# clone of it fits in RAM next to it): sfdisk writes an MBR (label-id
# 0x5a8b3c1d, as Raspberry Pi OS images: PARTUUID 5a8b3c1d-02), partition 1
# FAT32 (type 0x0c) at sector 8192 of 512 MiB (SIZE/4 below 2 GiB), partition
# 2 ext4 (type 0x83) from right after it to the end of the disk; each
# partition, through a loop device at its offset (losetup -o --sizelimit;
# this needs no partition support in the kernel), is made and filled as a
# volume above, to PCT % of its own size (so about PCT % of the disk), with
# seeds SEED-boot and SEED; free space outside deleted files reads as zeros.
# The gap before partition 1 is left zero.
# The result is cached as DIR/<fs>-<size>m-<fill>p-s<seed>-<hash>.img, where
# <hash> covers this script and bench-fill.py, so a rerun with the same
# parameters takes no time; a volume of the same fs and parameters made by
# older scripts is removed.  File contents are deterministic; the block
# placement is the filesystem driver's and can differ slightly between builds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fs=ext4 size=4096 fill=40 seed=1 dir=/dev/shm/fsimg-bench
while [ $# -gt 0 ]; do
    case $1 in
        --fs) fs=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --fill) fill=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "make-bench-fs: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case $fs in ext4|ntfs|fat32|exfat|xfs|btrfs|disk) ;; *) echo "make-bench-fs: --fs must be ext4, ntfs, fat32, exfat, xfs, btrfs or disk" >&2; exit 2 ;; esac
case $size in ''|*[!0-9]*) echo "make-bench-fs: --size must be MiB" >&2; exit 2 ;; esac
case $fill in ''|*[!0-9]*) echo "make-bench-fs: --fill must be a percentage" >&2; exit 2 ;; esac
[ "$size" -ge 256 ] || { echo "make-bench-fs: --size must be at least 256" >&2; exit 2; }
[ "$fill" -ge 5 ] && [ "$fill" -le 85 ] || { echo "make-bench-fs: --fill must be 5..85" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "make-bench-fs: must run as root (loop or FUSE mount)" >&2; exit 1; }
case $fs in
    ext4) fstools="mkfs.ext4 e2fsck" ;;
    ntfs) fstools="mkntfs ntfs-3g ntfsfix" ;;
    fat32) fstools="mkfs.fat fsck.fat mcopy mdel" ;;
    xfs) fstools="mkfs.xfs xfs_repair" ;;
    btrfs) fstools="mkfs.btrfs btrfs" ;;
    exfat) fstools="mkfs.exfat tune.exfat fsck.exfat mount.exfat-fuse losetup" ;;
    disk) fstools="sfdisk losetup truncate mkfs.fat fsck.fat mcopy mdel mkfs.ext4 e2fsck" ;;
esac
for tool in $fstools python3 sha256sum mount umount mountpoint; do
    command -v "$tool" >/dev/null || { echo "make-bench-fs: missing tool: $tool" >&2; exit 1; }
done

hash=$(cat "$here/make-bench-fs.sh" "$here/bench-fill.py" | sha256sum | cut -c1-8)
mkdir -p "$dir"
vol=$dir/${fs}-${size}m-${fill}p-s${seed}-${hash}.img
if [ -s "$vol" ] && [ -e "$vol.ok" ]; then
    echo "make-bench-fs: reusing $vol" >&2
    echo "$vol"
    exit 0
fi

# Volumes made by older versions of these scripts: drop them (they hold RAM).
for old in "$dir/${fs}-${size}m-${fill}p-s${seed}-"*.img; do
    [ -e "$old" ] && [ "$old" != "$vol" ] && rm -f "$old" "$old.ok" "$old.meta"
done

export LC_ALL=C TZ=UTC
export E2FSPROGS_FAKE_TIME=1700000000
work=$(mktemp -d /tmp/fsimg-benchfs.XXXXXX)
mnt=$work/mnt
mkdir "$mnt"
tmp=$vol.tmp
fusepid="" loops=""
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || true; fi
    if [ -n "$fusepid" ]; then wait "$fusepid" || true; fi
    for l in $loops; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$work"
    rm -f "$tmp"    # a volume that did not get finished
}
trap cleanup EXIT
rm -f "$tmp" "$vol" "$vol.ok" "$vol.meta"

bytes=$((size * 1024 * 1024))
t0=$(date +%s)

# mkfs.ext4 with pinned options on $1 (label $2).
mkfs_ext4() {
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
    mkfs.ext4 -q -F -t ext4 -b 4096 -I 256 -i 16384 -m 5 -L "$2" \
        -U 6b656e63-6866-7369-6d67-000000000001 \
        -E lazy_itable_init=0,lazy_journal_init=0,nodiscard,hash_seed=6b656e63-6866-7369-6d67-000000000002 \
        "$1"
}

# Fills the FAT volume $1 (a file or a device) through mtools to $2 bytes
# used, plus $3 bytes of files deleted at the end, from seed $4; mtools
# opens $5 if given (FILE@@OFFSET: on a loop device it complains that it
# cannot get the geometry); the description goes to $work/meta.
fill_fat() {
    echo "make-bench-fs: filling to $fill % through mtools" >&2
    export MTOOLS_SKIP_CHECK=1
    stage=$(mktemp -d /dev/shm/fsimg-benchfs-stage.XXXXXX)
    # shellcheck disable=SC2064 # expand $stage now
    trap "rm -rf '$stage'; cleanup" EXIT
    read -r cap used0 _ < <(python3 "$here/bench-fill.py" fatcap "$1")
    python3 "$here/bench-fill.py" fill "$stage" "$2" "$3" "$4" \
        --stage "$cap" "$used0" "$work/doomed" >"$work/meta"
    (cd "$stage" && mcopy -s -Q -m -i "${5:-$1}" ./* ::/)
    sed 's|^|::/|' "$work/doomed" | xargs -d '\n' -r mdel -i "${5:-$1}"
    rm -rf "$stage"
    trap cleanup EXIT
    read -r cap used _ < <(python3 "$here/bench-fill.py" fatcap "$1")
    echo "; used $((used / 1048576)) MiB of $((cap / 1048576)) MiB" >>"$work/meta"
    tr -d '\n' <"$work/meta" >"$work/meta1" && mv "$work/meta1" "$work/meta"
    cat "$work/meta" >&2; echo >&2
}

if [ "$fs" = disk ]; then
    # Raspberry Pi OS layout: MBR, the boot partition at 4 MiB.
    p1_start=8192
    p1_mib=512
    [ "$size" -ge 2048 ] || p1_mib=$((size / 4))
    p1_sectors=$((p1_mib * 2048))
    p2_start=$((p1_start + p1_sectors))
    p2_sectors=$((bytes / 512 - p2_start))
    echo "make-bench-fs: sparse $size MiB disk, MBR: FAT32 $p1_mib MiB at sector $p1_start, ext4 $((p2_sectors / 2048)) MiB at sector $p2_start" >&2
    truncate -s "$bytes" "$tmp"
    printf 'label: dos\nlabel-id: 0x5a8b3c1d\nunit: sectors\n\nstart=%d, size=%d, type=c\nstart=%d, size=%d, type=83\n' \
        "$p1_start" "$p1_sectors" "$p2_start" "$p2_sectors" |
        sfdisk -q --no-reread --no-tell-kernel "$tmp" >&2
    lp1=$(losetup -f --show -o $((p1_start * 512)) --sizelimit $((p1_sectors * 512)) "$tmp")
    loops="$lp1"
    lp2=$(losetup -f --show -o $((p2_start * 512)) --sizelimit $((p2_sectors * 512)) "$tmp")
    loops="$lp1 $lp2"

    echo "make-bench-fs: partition 1: mkfs.fat -F 32" >&2
    mkfs.fat -F 32 --invariant -i 5a8b3c1d -n BOOTFS -h "$p1_start" "$lp1" >/dev/null
    fill_fat "$lp1" $((p1_sectors * 512 * fill / 100)) $((p1_sectors * 512 / 10)) "$seed-boot" \
        "$tmp@@$((p1_start * 512))"
    mv "$work/meta" "$work/meta.p1"
    echo "make-bench-fs: fsck.fat -n (partition 1)" >&2
    fsck.fat -n "$lp1" >&2

    echo "make-bench-fs: partition 2:" >&2
    mkfs_ext4 "$lp2" rootfs
    mount -o noatime "$lp2" "$mnt"
    echo "make-bench-fs: filling to $fill % through the mount" >&2
    python3 "$here/bench-fill.py" fill "$mnt" $((p2_sectors * 512 * fill / 100)) \
        $((p2_sectors * 512 / 10)) "$seed" >"$work/meta.p2"
    cat "$work/meta.p2" >&2
    umount "$mnt"
    echo "make-bench-fs: e2fsck -fn (partition 2)" >&2
    e2fsck -fn "$lp2" >&2
    losetup -d "$lp1"
    losetup -d "$lp2"
    loops=""
    sfdisk -d "$tmp" >&2
    mv "$tmp" "$vol"
    { echo "sparse file (not prefilled), MBR label-id 0x5a8b3c1d;"
      echo "partition 1 at sector $p1_start, $p1_mib MiB, type 0x0c, mkfs.fat -F 32 (dosfstools defaults otherwise),"
      echo "filled with mtools, seed $seed-boot: $(sed 's/^fill: //' "$work/meta.p1");"
      echo "partition 2 at sector $p2_start, $((p2_sectors / 2048)) MiB, type 0x83,"
      echo "mkfs.ext4 -b 4096 -I 256 -i 16384 (e2fsprogs defaults otherwise), seed $seed:"
      sed 's/^fill: //' "$work/meta.p2"; } | tr '\n' ' ' >"$vol.meta"
    touch "$vol.ok"
    echo "make-bench-fs: built $vol in $(( $(date +%s) - t0 )) s" >&2
    echo "$vol"
    exit 0
fi

echo "make-bench-fs: prefilling $size MiB with pseudorandom bytes" >&2
python3 "$here/bench-fill.py" prefill "$tmp" "$bytes" "$seed"

case $fs in
ext4)
    mkfs_ext4 "$tmp" fsimg-bench
    mkfs_desc="mkfs.ext4 -b 4096 -I 256 -i 16384 (e2fsprogs defaults otherwise)"
    mount -o loop,noatime "$tmp" "$mnt"
    ;;
ntfs)
    echo "make-bench-fs: mkntfs (quick format)" >&2
    # It warns that a file has no geometry (sector size, heads...): keep that
    # quiet unless it fails.
    mkntfs -F -f -q -T -L fsimg-bench "$tmp" >"$work/mkntfs.log" 2>&1 ||
        { cat "$work/mkntfs.log" >&2; exit 1; }
    mkfs_desc="mkntfs -f -T (quick format; ntfsprogs defaults otherwise), filled through ntfs-3g"
    # In the foreground (no_detach), so that after umount we can wait for
    # ntfs-3g itself to have written everything and closed the file.
    ntfs-3g -o no_detach,noatime,big_writes "$tmp" "$mnt" &
    fusepid=$!
    for _ in $(seq 100); do
        mountpoint -q "$mnt" && break
        kill -0 "$fusepid" 2>/dev/null || { echo "make-bench-fs: ntfs-3g failed" >&2; exit 1; }
        sleep 0.1
    done
    mountpoint -q "$mnt" || { echo "make-bench-fs: ntfs-3g did not mount" >&2; exit 1; }
    ;;
btrfs)
    echo "make-bench-fs: mkfs.btrfs" >&2
    # -K: no TRIM, so the free space keeps the prefilled bytes.
    mkfs.btrfs -q -f -K -L fsimg-bench -U 6b656e63-6866-7369-6d67-000000000003 "$tmp" >/dev/null
    mkfs_desc="mkfs.btrfs -K (btrfs-progs defaults otherwise: DUP metadata, single data, crc32c), filled through a loop mount"
    mount -o loop,noatime "$tmp" "$mnt"
    ;;
exfat)
    echo "make-bench-fs: mkfs.exfat" >&2
    mkfs.exfat -L FSIMGBENCH "$tmp" >/dev/null
    tune.exfat -I 0x6b656e63 "$tmp" >/dev/null
    mkfs_desc="mkfs.exfat (exfatprogs defaults), filled through exfat-fuse"
    # exfat-fuse mounts block devices only (fuseblk).
    lx=$(losetup -f --show "$tmp")
    loops="$lx"
    mount.exfat-fuse -o noatime "$lx" "$mnt" 2>/dev/null
    ;;
fat32)
    echo "make-bench-fs: mkfs.fat -F 32" >&2
    mkfs.fat -F 32 --invariant -i 6b656e63 -n FSIMGBENCH "$tmp" >/dev/null
    mkfs_desc="mkfs.fat -F 32 (dosfstools defaults otherwise), filled with mtools"
    ;;
xfs)
    echo "make-bench-fs: mkfs.xfs" >&2
    mkfs.xfs -q -f -K -L fsimg-bench -m uuid=6b656e63-7866-7300-8000-000000000001 "$tmp"
    mkfs_desc="mkfs.xfs -K (xfsprogs v5 defaults otherwise)"
    mount -o loop,noatime "$tmp" "$mnt"
    ;;
esac

target=$((bytes / 100 * fill))
doomed=$((bytes / 10))
if [ "$fs" = fat32 ]; then
    # No kernel vfat needed: the tree is written to a staging directory in
    # RAM, copied in with mcopy (in directory order, so the doomed files lie
    # between kept ones), and the doomed files are deleted with mdel.
    fill_fat "$tmp" "$target" "$doomed" "$seed"
else
    echo "make-bench-fs: filling to $fill % through the mount" >&2
    python3 "$here/bench-fill.py" fill "$mnt" "$target" "$doomed" "$seed" >"$work/meta"
    cat "$work/meta" >&2
    umount "$mnt"
fi
if [ -n "$fusepid" ]; then
    wait "$fusepid" || { echo "make-bench-fs: ntfs-3g exited with an error" >&2; exit 1; }
    fusepid=""
fi

if [ "$fs" = exfat ]; then
    losetup -d "$lx"
    loops=""
fi
case $fs in
ext4)
    echo "make-bench-fs: e2fsck -fn" >&2
    e2fsck -fn "$tmp" >&2 ;;
exfat)
    echo "make-bench-fs: fsck.exfat -n" >&2
    fsck.exfat -n "$tmp" >&2 ;;
ntfs)
    echo "make-bench-fs: ntfsfix -n" >&2
    ntfsfix -n "$tmp" >&2 ;;
fat32)
    echo "make-bench-fs: fsck.fat -n" >&2
    fsck.fat -n "$tmp" >&2 ;;
xfs)
    echo "make-bench-fs: xfs_repair -n -f" >&2
    xfs_repair -n -f "$tmp" >&2 ;;
btrfs)
    echo "make-bench-fs: btrfs check --readonly" >&2
    btrfs check --readonly "$tmp" >&2 ;;
esac
mv "$tmp" "$vol"
{ echo "$mkfs_desc, prefilled with pseudorandom bytes, seed $seed;"
  sed 's/^fill: //' "$work/meta"; } | tr '\n' ' ' >"$vol.meta"
touch "$vol.ok"
echo "make-bench-fs: built $vol in $(( $(date +%s) - t0 )) s" >&2
echo "$vol"
