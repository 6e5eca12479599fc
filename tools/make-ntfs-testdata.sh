#!/usr/bin/env bash
# Build the NTFS test images in testdata/ntfs/.
#
# Usage: tools/make-ntfs-testdata.sh [OUTDIR]      (default: testdata/ntfs)
#
# Needs root: every image is made with `mkntfs` on a regular file and then
# filled through a read-write ntfs-3g mount (FUSE), because no NTFS tool can
# add files to an unmounted volume.  tools/gen-ntfs-source-tree.py writes the
# files straight into the mounted volume in a fixed order (the order decides
# the layout: fragmented files, a $MFT with several runs, stale data in free
# clusters).  After a clean unmount each image must pass `ntfsfix -n` with a
# clear volume dirty flag, and is mounted again read-only to list every file
# (NAME.files).  tools/ntfs-testdata-facts.py decodes the image with plain
# struct parsing (boot sector, $Volume, $MFT, $Bitmap, an MFT walk) and the
# script cross-checks those numbers against ntfsclone's image header and
# record stream, ntfscat $Bitmap, ntfsinfo and (optionally) partclone.ntfs.
# Each image is compressed to NAME.img.zst and described by NAME.expected.
#
# Requirements: root, /dev/fuse, ntfs-3g (ntfs-3g, mkntfs, ntfsfix, ntfsinfo,
# ntfscat, ntfsclone), zstd, python3, coreutils, util-linux (mountpoint),
# the C.UTF-8 locale.  Optional: partclone.ntfs (adds partclone_*= keys), a
# C compiler (cc) for the fixed-clock shim (see below).
#
# Reproducibility: two runs give byte-identical images on the same ntfs-3g
# (checked with 2022.10.3), kernel and zstd versions.  We pin:
#   - mkntfs -T ("zero time"): mkntfs then seeds its random generator with
#     the time, i.e. with 0, so the volume serial number and the GUIDs it
#     would make are the same on every run (and on every image); the serial
#     is then overwritten, in the boot sector and in the backup boot sector,
#     with one derived from the image name (mkntfs has no option for it);
#   - the clock of ntfs-3g: it stamps every file with the current time (4
#     times in $STANDARD_INFORMATION, and in $FILE_NAME and index entries),
#     and no option changes that, so it runs with an LD_PRELOAD shim (built
#     here from the C below) whose CLOCK_REALTIME, gettimeofday() and time()
#     return SOURCE_DATE_EPOCH.  Without cc the shim is skipped with a
#     warning: file contents, sizes, names and mtimes stay the same, but the
#     other timestamps (and therefore image_sha256) change from run to run;
#   - the content (fixed seeds) and the order of every operation, in
#     gen-ntfs-source-tree.py, and mtime/atime = SOURCE_DATE_EPOCH on every
#     file and directory;
#   - LC_ALL=C.UTF-8 (names are converted to UTF-16 through the locale).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/testdata/ntfs}
facts=$here/ntfs-testdata-facts.py
gen=$here/gen-ntfs-source-tree.py

export LC_ALL=C.UTF-8 TZ=UTC
export SOURCE_DATE_EPOCH=1700000000
umask 022

fail() { echo "ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root: the volumes are filled through an ntfs-3g (FUSE) mount"
for tool in mkntfs ntfs-3g ntfsfix ntfsinfo ntfscat ntfsclone zstd python3 sha256sum mountpoint umount timeout; do
    command -v "$tool" >/dev/null || fail "missing tool: $tool"
done
[ -c /dev/fuse ] || fail "missing /dev/fuse (modprobe fuse?)"
locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' || fail "missing locale: C.UTF-8"
partclone=""
for p in partclone.ntfs /usr/sbin/partclone.ntfs; do
    if command -v "$p" >/dev/null; then partclone=$(command -v "$p"); break; fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-ntfs.XXXXXX")
mnt=$work/mnt
mkdir "$mnt"
ntfs3g_pid=""
cleanup() {
    if mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt" || true; fi
    if [ -n "$ntfs3g_pid" ]; then wait "$ntfs3g_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# The fixed-clock shim for ntfs-3g.
# ---------------------------------------------------------------------------
shim=""
if command -v cc >/dev/null; then
    cat >"$work/fixedtime.c" <<'EOF'
/* LD_PRELOAD: the wall clock reads FSIMG_FIXED_TIME (seconds since 1970);
 * monotonic clocks (used by FUSE for its timeouts) are left alone. */
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
    echo "WARNING: no C compiler: ntfs-3g runs on the real clock; timestamps (and image_sha256) will differ between runs" >&2
fi

# mount_ntfs IMG OPTS: ntfs-3g in the foreground (no_detach), in the
# background of this shell, so that after umount we can wait for it to have
# written everything and exited (a plain "fuse" mount returns from umount
# before the daemon is done).
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

# key=value from a facts file
get() { sed -n "s/^$2=//p" "$1" | head -n1; }

# build NAME SIZE LABEL PROFILE GENOPTS MKNTFS-ARGS...
#   GENOPTS: options for gen-ntfs-source-tree.py without the "--",
#   comma-separated (compress,fill), or "-"
build() {
    local name=$1 size=$2 label=$3 profile=$4 genopts=$5
    shift 5
    local img=$work/$name.img f=$work/$name.facts m=$work/$name.manifest
    local -a gopts=() o
    if [ "$genopts" != - ]; then
        for o in ${genopts//,/ }; do gopts+=("--$o"); done
    fi
    echo "== $name: mkntfs $* ($size bytes), $profile ${gopts[*]}" >&2

    rm -f "$img"
    truncate -s "$size" "$img"
    mkntfs -F -f -q -T -L "$label" "$@" "$img" >"$work/$name.mkntfs.log" 2>&1 ||
        { cat "$work/$name.mkntfs.log" >&2; fail "$name: mkntfs failed"; }
    local serial
    serial=$(printf 'fsimg-testdata/ntfs/%s' "$name" | sha256sum | cut -c1-16)
    python3 "$facts" set-serial "$img" "$serial"

    # ---- fill ----
    mount_ntfs "$img" rw
    python3 "$gen" "$profile" "$mnt" "${gopts[@]}" >"$m"
    umount_ntfs

    # ---- clean? ----
    local rc=0
    ntfsfix -n "$img" >"$work/$name.ntfsfix.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ] || ! grep -q 'processed successfully' "$work/$name.ntfsfix.log" ||
        grep -qiE 'dirty|corrupt|error|fail' "$work/$name.ntfsfix.log"; then
        cat "$work/$name.ntfsfix.log" >&2
        fail "$name: ntfsfix -n is not clean (exit status $rc)"
    fi
    python3 "$facts" facts "$img" >"$f" || fail "$name: ntfs-testdata-facts.py facts failed"
    [ "$(get "$f" volume_flags)" = 0x0000 ] || fail "$name: volume flags $(get "$f" volume_flags) (dirty?)"
    [ "$(get "$f" serial)" = "$serial" ] || fail "$name: serial is $(get "$f" serial), not $serial"
    [ "$(get "$f" device_size)" = "$size" ] || fail "$name: device size changed"
    [ "$(get "$f" label)" = "$label" ] || fail "$name: label is $(get "$f" label)"

    # ---- read-only mount: the file list ----
    mount_ntfs "$img" ro
    python3 "$facts" files "$mnt" "$out/$name.files" >>"$f"
    umount_ntfs

    # what the generator made is what the volume has
    local k want have x
    for k in compressed sparse; do
        want=$(get "$m" "$k")
        have=,$(get "$f" "${k}_files"),
        for x in ${want//,/ }; do
            [[ $have == *,"$x",* ]] || fail "$name: $x is not ${k} (${k}_files=$have)"
        done
    done

    # compressed files really are compressed: ntfsinfo shows the
    # ATTR_IS_COMPRESSED flag (0x0001) on the unnamed $DATA and a compressed
    # size below the data size
    local info
    for x in $(get "$m" compressed | tr , ' '); do
        info=$(ntfsinfo -v -F "/$x" "$img" 2>/dev/null | python3 "$facts" ntfsinfo-data)
        [ "$(get <(echo "$info") flags)" = 0x0001 ] || fail "$name: /$x: \$DATA flags are not 0x0001: $info"
        [ "$(get <(echo "$info") compressed_size)" -lt "$(get <(echo "$info") data_size)" ] ||
            fail "$name: /$x is not smaller compressed: $info"
    done
    # sparse files: ATTR_IS_SPARSE (0x8000) on the unnamed $DATA
    for x in $(get "$m" sparse | tr , ' '); do
        info=$(ntfsinfo -v -F "/$x" "$img" 2>/dev/null | python3 "$facts" ntfsinfo-data)
        [ "$(get <(echo "$info") flags)" = 0x8000 ] || fail "$name: /$x: \$DATA flags are not 0x8000: $info"
    done
    # fragmented files: their number of runs
    # (ntfs-3g does not always interleave the clusters of files written
    # interleaved -- at 512-byte clusters it places them far apart -- so only
    # those that did end up in more than one run are listed; at least one must)
    local frag="" runs
    for x in $(get "$m" fragmented | tr , ' '); do
        runs=$(ntfsinfo -v -F "/$x" "$img" 2>/dev/null | python3 "$facts" ntfsinfo-data | sed -n 's/^runs=//p')
        [ "$runs" -ge 2 ] && frag=${frag:+$frag,}$x:$runs
    done
    [ -n "$frag" ] || fail "$name: none of $(get "$m" fragmented) is fragmented"
    # $MFT: ntfsinfo's runlist has as many runs as ours
    runs=$(ntfsinfo -v -i 0 "$img" 2>/dev/null | python3 "$facts" ntfsinfo-data | sed -n 's/^runs=//p')
    [ "$runs" = "$(get "$f" mft_runs)" ] || fail "$name: ntfsinfo shows $runs \$MFT runs, we decode $(get "$f" mft_runs)"

    # ---- $Bitmap through ntfscat ----
    local total used
    total=$(get "$f" total_clusters)
    used=$(get "$f" bitmap_used_clusters)
    [ "$(ntfscat "$img" '$Bitmap' | python3 "$facts" bitcount "$total")" = "$used" ] ||
        fail "$name: ntfscat \$Bitmap disagrees with our \$Bitmap decoding"

    # ---- ntfsclone ----
    ntfsclone --save-image -o - "$img" 2>"$work/$name.ntfsclone.log" | python3 "$facts" ntfsclone "$img" >>"$f" ||
        { tail -n 5 "$work/$name.ntfsclone.log" >&2; fail "$name: ntfsclone image check failed"; }
    [ "$(get "$f" ntfsclone_used_clusters)" = "$used" ] ||
        fail "$name: ntfsclone inuse $(get "$f" ntfsclone_used_clusters) != bitmap_used_clusters $used"
    [ "$(get "$f" ntfsclone_total_clusters)" = "$total" ] || fail "$name: ntfsclone nr_clusters != total_clusters"
    [ "$(get "$f" ntfsclone_last_record_bytes)" = "$(get "$f" tail_bytes)" ] ||
        fail "$name: ntfsclone's backup boot sector record is not tail_bytes long"

    # ---- partclone.ntfs (optional) ----
    local pc_note=""
    if [ -n "$partclone" ]; then
        rm -f "$work/$name.pc"
        if timeout 120 "$partclone" -q -c -s "$img" -o "$work/$name.pc" -L "$work/$name.partclone.log" >/dev/null 2>&1; then
            python3 "$facts" partclone "$img" "$work/$name.pc" >>"$f" || fail "$name: partclone image check failed"
            [ "$(get "$f" partclone_used_blocks)" = "$used" ] ||
                fail "$name: partclone used $(get "$f" partclone_used_blocks) != $used"
        else
            pc_note=$(grep -i -E 'error|fail' "$work/$name.partclone.log" | head -n1)
            echo "NOTE: $name: partclone.ntfs -c failed (${pc_note:-no message}); omitting partclone_*" >&2
        fi
        rm -f "$work/$name.pc"
    fi

    # ---- outputs ----
    local sha
    sha=$(sha256sum "$img" | cut -d' ' -f1)
    zstd -19 -q -f --no-progress "$img" -o "$out/$name.img.zst"
    local deleted
    deleted=$(get "$m" deleted | tr , '\n' | grep -c . || true)
    {
        echo "# $name -- generated by tools/make-ntfs-testdata.sh; do not edit."
        echo "# Cluster numbers (LCNs) start at 0 at the start of the image; clusters are cluster_size bytes."
        echo "# From the boot sector: bytes_per_sector, sectors_per_cluster, cluster_size, total_sectors"
        echo "#   (0x28; the volume, without the backup boot sector), mft_lcn, mftmirr_lcn, mft_record_size,"
        echo "#   index_record_size, serial (0x48, as 16 hex digits; set by the script from the image name)."
        echo "# total_clusters = total_sectors*bytes_per_sector div cluster_size. device_size = image size."
        echo "# tail_bytes = device_size - total_clusters*cluster_size: the bytes after the last cluster, the"
        echo "#   backup boot sector (last sector, at total_sectors*bytes_per_sector) and any sectors before"
        echo "#   it. An imager must copy them; ntfsclone saves them as the cluster numbered total_clusters."
        echo "# label, ntfs_version, volume_flags: \$Volume (record 3); volume_flags 0x0000 = not dirty."
        echo "# mft_records = \$MFT data size / mft_record_size; mft_records_in_use = set bits of \$MFT:\$BITMAP."
        echo "# mft_runs = number of runs (mapping pairs) of \$MFT's unnamed \$DATA, mft_extents their LCN"
        echo "#   ranges in VCN order; mft_attribute_list = 1 if \$MFT has an \$ATTRIBUTE_LIST."
        echo "# bitmap_used_clusters = set bits of \$Bitmap among the first total_clusters (also counted from"
        echo "#   ntfscat \$Bitmap). mft_walk_used_clusters = clusters of the non-resident attributes of all"
        echo "#   in-use MFT records (\$BadClus:\$Bad excluded); the script checks they are the same clusters."
        echo "# resident_files = user files (MFT records >= 16, not directories, base records) whose unnamed"
        echo "#   \$DATA is resident (inside the MFT record) and not empty; hard links count once."
        echo "# ntfsclone_total_clusters, ntfsclone_used_clusters: nr_clusters and inuse of the header of"
        echo "#   ntfsclone --save-image -o - (ntfs-3g); its record stream was checked: it saves exactly the"
        echo "#   \$Bitmap clusters, byte-identical, plus the cluster total_clusters, ntfsclone_last_record_bytes"
        echo "#   (= tail_bytes) long. ntfsclone_used_clusters = bitmap_used_clusters (checked)."
        [ -n "$(get "$f" partclone_used_blocks)" ] &&
        echo "# partclone_*: header of partclone.ntfs -c (image format 0002); its bitmap equals \$Bitmap (checked)."
        [ -n "$pc_note" ] &&
        echo "# partclone_* omitted: partclone.ntfs -c failed: $pc_note"
        echo "# files, dirs: regular files and directories under the root of a read-only ntfs-3g mount"
        echo "#   (system files not included; a hard link counts twice). NAME.files lists them."
        echo "# compressed_files / sparse_files: files with FILE_ATTRIBUTE_COMPRESSED (0x800) / SPARSE_FILE"
        echo "#   (0x200); really_compressed: those whose \$DATA ntfsinfo shows compressed (flag 0x0001) with a"
        echo "#   compressed size below the data size. named_streams: PATH:STREAM:SIZE:SHA256 of the named"
        echo "#   \$DATA streams (alternate data streams). fragmented_files: PATH:RUNS (runs with clusters)."
        echo "# deleted_files: files written and then deleted; they consisted of lines starting with"
        echo "#   STALE-DATA-MARKER, which no live file contains. stale_marker_free_clusters /"
        echo "#   stale_marker_used_clusters: free / in-use clusters containing STALE-DATA-MARKER (in-use ones"
        echo "#   are allocated but never written, e.g. the \$MFT's allocated tail past its data size)."
        echo "# image_sha256 describes the decompressed image."
        grep -E '^(bytes_per_sector|sectors_per_cluster|cluster_size|total_sectors|total_clusters|mft_lcn|mftmirr_lcn|mft_record_size|index_record_size|device_size|tail_bytes|label|serial|ntfs_version|volume_flags|mft_records|mft_records_in_use|mft_runs|mft_extents|mft_attribute_list|bitmap_used_clusters|mft_walk_used_clusters|resident_files)=' "$f"
        grep -E '^ntfsclone_(total_clusters|used_clusters|last_record_bytes)=' "$f"
        grep -E '^partclone_(used_blocks|block_size|total_blocks|device_size)=' "$f" || true
        grep -E '^(files|dirs|compressed_files|sparse_files)=' "$f"
        echo "really_compressed=$(get "$m" compressed)"
        grep -E '^named_streams=' "$f"
        echo "fragmented_files=$frag"
        echo "deleted_files=$deleted"
        grep -E '^stale_marker_(free|used)_clusters=' "$f"
        echo "image_sha256=$sha"
    } >"$out/$name.expected"

    printf '%-10s cs=%-5s clusters=%-6s used=%-5s mft_runs=%-2s files=%-4s dirs=%-3s zst=%s\n' \
        "$name" "$(get "$f" cluster_size)" "$total" "$used" "$(get "$f" mft_runs)" \
        "$(get "$f" files)" "$(get "$f" dirs)" "$(stat -c %s "$out/$name.img.zst")" >&2
    rm -f "$img"
}

# expect NAME KEY OP VALUE (OP: = or -ge): a property the image was made for
expect() {
    local v
    v=$(get "$out/$1.expected" "$2")
    case $3 in
        =) [ "$v" = "$4" ] ;;
        -ge) [ "$v" -ge "$4" ] ;;
        *) false ;;
    esac || fail "$1: $2=$v, expected $3 $4"
}

# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
mkdir -p "$out"
rm -f "$out"/*.img.zst "$out"/*.expected "$out"/*.files

# 64 MiB, 4 KiB clusters: everything, incl. compression and a $MFT in
# several runs (the volume is filled up, half emptied and more files made).
build ntfs-4k $((64 << 20)) NTFS-4K full compress,fill -c 4096
expect ntfs-4k cluster_size = 4096
expect ntfs-4k mft_runs -ge 2
expect ntfs-4k files -ge 300
expect ntfs-4k resident_files -ge 300
expect ntfs-4k stale_marker_free_clusters -ge 1
# 32 MiB, 512-byte clusters (= sectors), compressed and sparse files, filled
# up and half emptied like ntfs-4k.
build ntfs-512 $((32 << 20)) NTFS-512 small compress,fill -c 512
expect ntfs-512 cluster_size = 512
expect ntfs-512 stale_marker_free_clusters -ge 1
# 64 MiB, 64 KiB clusters (ntfs-3g cannot compress there); 1023 clusters and
# a 64 KiB tail holding the backup boot sector.
build ntfs-64k $((64 << 20)) NTFS-64K small fill -c 65536
expect ntfs-64k cluster_size = 65536
expect ntfs-64k stale_marker_free_clusters -ge 1
# 32 MiB + 3 sectors, 8 KiB clusters: 4096 whole clusters, then 2 sectors
# that belong to no cluster and the backup boot sector.
build ntfs-tail $(((32 << 20) + 3 * 512)) NTFS-TAIL small fill -c 8192
expect ntfs-tail total_clusters = 4096
expect ntfs-tail tail_bytes = 1536
# 32 MiB with 4096-byte sectors (4Kn): 4 KiB MFT records, compression.
build ntfs-4kn $((32 << 20)) NTFS-4KN small compress,fill -s 4096 -c 4096
expect ntfs-4kn bytes_per_sector = 4096
expect ntfs-4kn mft_record_size = 4096

echo "done: $(du -cb "$out"/*.img.zst | tail -n1 | cut -f1) bytes of .zst in $out" >&2
