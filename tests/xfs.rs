//! XFS: used counts against partclone.xfs and xfs_db, clones checked by
//! xfs_repair and (as root) a loop mount, image round trips, and one test
//! per corruption the module refuses, with its exact message.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use fsimg::fs::ext::checksum::crc32c;
use fsimg::fs::{FsChoice, open};
use fsimg::source::FileSource;

/// The names of the XFS test images (without `.img.zst`).
fn xfs_images() -> Vec<String> {
    let names = images("xfs");
    assert!(names.len() >= 7, "xfs test images are missing");
    names
}

/// The clean images (all but the dirty-log one).
fn clean_images() -> Vec<String> {
    xfs_images()
        .into_iter()
        .filter(|n| n != "v5-dirty")
        .collect()
}

/// Decompresses testdata/xfs/NAME.img.zst into `dir`, streaming.
fn unpack(name: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.img"));
    let z = fs::File::open(testdata(&format!("xfs/{name}.img.zst"))).unwrap();
    let mut out = fs::File::create(&path).unwrap();
    zstd::stream::copy_decode(z, &mut out).unwrap();
    path
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().unwrap())
}

fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_be_bytes());
}

/// The XFS CRC32C of `data` with its CRC field at `off` zeroed.
fn xfs_crc(data: &[u8], off: usize) -> u32 {
    let mut d = data.to_vec();
    d[off..off + 4].fill(0);
    !crc32c(!0, &d)
}

/// Rewrites the CRC at `at + off` of the structure `at..at + len`.
fn fix_crc(img: &mut [u8], at: usize, len: usize, off: usize) {
    let c = xfs_crc(&img[at..at + len], off);
    img[at + off..at + off + 4].copy_from_slice(&c.to_le_bytes());
}

/// Reads a whole file in 1 MiB chunks, calling `f(offset, chunk)`.
fn chunks(path: &Path, mut f: impl FnMut(u64, &[u8])) {
    let mut file = fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        f(at, &buf[..n]);
        at += n as u64;
    }
}

/// Asserts `clone` holds `source`'s bytes on every used block and zeros
/// elsewhere (compared block by block, streaming).
fn assert_clone_used_only(name: &str, source: &Path, clone: &Path) {
    let src = FileSource::open(source).unwrap();
    let alloc = open(&src, FsChoice::Xfs).unwrap().allocation(&src).unwrap();
    let bs = u64::from(alloc.map.cluster_size());
    let s = fs::read(source).unwrap();
    assert_eq!(
        fs::metadata(clone).unwrap().len(),
        s.len() as u64,
        "{name}: size"
    );
    chunks(clone, |at, chunk| {
        for (i, block) in chunk.chunks(bs as usize).enumerate() {
            let off = at + i as u64 * bs;
            let c = off / bs;
            if alloc.map.is_used(c) {
                assert!(
                    block == &s[off as usize..off as usize + block.len()],
                    "{name}: used block {c} differs"
                );
            } else {
                assert!(
                    block.iter().all(|&b| b == 0),
                    "{name}: free block {c} written"
                );
            }
        }
    });
}

fn xfs_repair_clean(path: &Path) {
    if !have("xfs_repair") {
        return;
    }
    let out = Command::new("xfs_repair")
        .args(["-n", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xfs_repair -n -f {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The used count equals xfs_db's (dblocks - sum of agf_freeblks - sum of
/// agf_flcount), with no inconsistency or warning on clean volumes.
///
/// partclone.xfs prints `dblocks - sb_fdblocks` as "Space in use", and
/// sb_fdblocks counts the free-space (and rmap) btree blocks beyond their
/// roots (agf_btreeblks) as free, though they hold the btrees and both
/// tools copy them: fsimg's count is partclone's plus those blocks.
#[test]
fn used_counts_match_partclone_and_xfs_db() {
    let dir = tempfile::tempdir().unwrap();
    for name in clean_images() {
        let e = expected_in("xfs", &name);
        let path = unpack(&name, dir.path());
        let src = FileSource::open(&path).unwrap();
        let fs = open(&src, FsChoice::Auto).unwrap();
        assert_eq!(fs.kind().name(), "xfs");
        assert!(fs.unclean().is_none(), "{name}: {:?}", fs.unclean());
        assert_eq!(u64::from(fs.cluster_size()), expected_u64(&e, "block_size"));
        let a = fs.allocation(&src).unwrap();
        assert!(
            a.inconsistencies.is_empty(),
            "{name}: {:?}",
            a.inconsistencies
        );
        assert!(a.warnings.is_empty(), "{name}: {:?}", a.warnings);
        let used = a.map.used_clusters();
        assert_eq!(used, expected_u64(&e, "used_blocks"), "{name}");
        assert_eq!(
            used,
            expected_u64(&e, "partclone_used_blocks") + expected_u64(&e, "btree_blocks"),
            "{name}: partclone's count plus the btree blocks it counts as free"
        );
        // The superblock's free count: free extents + AGFL + btree blocks.
        assert_eq!(
            expected_u64(&e, "fdblocks"),
            expected_u64(&e, "agf_freeblks_sum")
                + expected_u64(&e, "agfl_blocks")
                + expected_u64(&e, "btree_blocks"),
            "{name}"
        );
        fs::remove_file(&path).unwrap();
    }
}

/// `-o` (new sparse file), `-o -` and `-O` (over an existing file) hold
/// the used blocks only; the clone passes xfs_repair and, as root, mounts
/// with the same files as the source.
#[test]
fn clones_pass_xfs_repair_and_hold_the_same_files() {
    for name in clean_images() {
        let dir = tempfile::tempdir().unwrap();
        let e = expected_in("xfs", &name);
        let src = unpack(&name, dir.path());
        let s = src.to_str().unwrap();
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", clone.to_str().unwrap(), s]);
        assert_clone_used_only(&name, &src, &clone);
        xfs_repair_clean(&clone);
        // The clone allocates about the used bytes only.
        let used = expected_u64(&e, "used_blocks") * expected_u64(&e, "block_size");
        let allocated =
            std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&clone).unwrap()) * 512;
        assert!(
            allocated <= used + (1 << 20),
            "{name}: {allocated} for {used}"
        );

        if name == "v5-default" {
            let out = run_ok(&["-q", "-o", "-", s]);
            assert!(
                out.stdout == fs::read(&clone).unwrap(),
                "{name}: stdout differs"
            );
            let target = dir.path().join("target.img");
            fs::write(&target, vec![0xAAu8; 4096]).unwrap();
            run_ok(&["-q", "-O", target.to_str().unwrap(), s]);
            // -O onto a short file: grown to the volume, used blocks
            // written; the first 4 KiB block is used (superblock).
            let t = fs::read(&target).unwrap();
            assert_eq!(t.len() as u64, fs::metadata(&src).unwrap().len());
            assert!(t == fs::read(&clone).unwrap(), "{name}: -O differs");
        }

        if e.get("mounted").map(String::as_str) == Some("yes") && have("diff") && root() {
            let a = Loop::attach(&src, true);
            let b = Loop::attach(&clone, true);
            let ma = Mount::new(&a.dev, &dir.path().join("a"), "ro,nouuid");
            let mb = Mount::new(&b.dev, &dir.path().join("b"), "ro,nouuid");
            let out = Command::new("diff")
                .arg("-r")
                .arg(&ma.dir)
                .arg(&mb.dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: diff -r: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(ma.dir.join("data/sparse.bin").exists());
            drop(mb);
            drop(ma);
        }
    }
}

/// Plain and zstd images verify and restore byte-identical to the clone,
/// to a file and to stdout, and from stdin.
#[test]
fn images_round_trip() {
    for name in ["v5-1k-rmap", "v4-4k", "v5-4ksect"] {
        let dir = tempfile::tempdir().unwrap();
        let src = unpack(name, dir.path());
        let s = src.to_str().unwrap();
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", clone.to_str().unwrap(), s]);
        let cloned = fs::read(&clone).unwrap();
        assert_round_trips(name, dir.path(), s, &cloned, "xfs");
        let img = dir.path().join("true.fsimg");
        let out = run_ok(&["-q", "-r", "-o", "-", img.to_str().unwrap()]);
        assert!(out.stdout == cloned, "{name}: restore to stdout differs");
        let target = dir.path().join("from-stdin.img");
        let mut child = fsimg()
            .args(["-q", "-r", "-o", target.to_str().unwrap(), "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&fs::read(&img).unwrap())
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert!(
            fs::read(&target).unwrap() == cloned,
            "{name}: from stdin differs"
        );
    }
}

/// `fsimg info` shows the geometry and state.
#[test]
fn info_shows_geometry_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let src = unpack("v5-1k-rmap", dir.path());
    let e = expected_in("xfs", "v5-1k-rmap");
    let out = run_ok(&["info", src.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "xfs".to_string(),
        "v5".to_string(),
        format!("allocation groups        3 of {} blocks", e["agblocks"]),
        format!("internal, {} blocks at block", e["logblocks"]),
        "crc, finobt, rmapbt, reflink".to_string(),
        format!("used clusters            {}", e["used_blocks"]),
        "state                    clean".to_string(),
        format!("AGFL blocks              {}", e["agfl_blocks"]),
    ] {
        assert!(text.contains(&want), "{want:?} not in\n{text}");
    }
}

/// `-m` is refused, naming xfs_metadump.
#[test]
fn metadata_only_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = unpack("v4-1k", dir.path());
    let out = dir.path().join("m.img");
    let err = run(&["-m", "-o", out.to_str().unwrap(), src.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success());
    assert!(
        text.contains("--metadata is not supported for xfs volumes (it would need every inode's extent tree); use xfs_metadump"),
        "{text}"
    );
}

/// The dirty log: refused without --force, naming the replay; copied with it.
#[test]
fn dirty_log_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let src = unpack("v5-dirty", dir.path());
    let s = src.to_str().unwrap();
    let out = dir.path().join("clone.img");
    let o = out.to_str().unwrap();
    run_err(
        &["-q", "-o", o, s],
        &format!("{s}: the log is dirty: the last log record (block "),
    );
    let err = run_err(
        &["-q", "-o", o, s],
        "is not an unmount record (the filesystem is mounted or was not cleanly unmounted; blocks allocated since its last checkpoint are free in the on-disk map and would not be copied); mount it once and unmount it to replay the log (xfs_repair -L would zero the log and lose the changes in it), or use --force to copy it anyway",
    );
    assert!(!err.contains("panicked"));
    run_ok(&["-q", "-f", "-o", o, s]);
    assert_clone_used_only("v5-dirty", &src, &out);
    // The log was copied with the transactions in it: replaying it on the
    // clone (a mount) brings back the files written before the shutdown,
    // but not their data: their blocks were allocated after the last
    // checkpoint, so the on-disk map says free and they were not copied
    // (what the refusal warns about).
    if root() {
        let l = Loop::attach(&out, false);
        let m = Mount::new(&l.dev, &dir.path().join("m"), "rw");
        let numbers = fs::read(m.dir.join("docs/numbers.txt")).unwrap();
        let want: String = (1..=20000).map(|i| format!("{i}\n")).collect();
        assert_eq!(numbers.len(), want.len());
        assert!(
            numbers != want.as_bytes(),
            "the data was in the on-disk map after all"
        );
        drop(m);
        drop(l);
        xfs_repair_clean(&out);
    }
}

/// Each corruption of the v5 image, made in memory and written to a file;
/// `expect(img)` gives the exact message fsimg must print.
fn corrupt(name: &str, change: impl FnOnce(&mut Vec<u8>), expect: impl FnOnce(&[u8]) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("xfs", name);
    change(&mut img);
    let path = dir.path().join("bad.img");
    fs::write(&path, &img).unwrap();
    let msg = expect(&img);
    let p = path.to_str().unwrap();
    let out = dir.path().join("out.img");
    let args = ["-q", "-o", out.to_str().unwrap(), p];
    run_err(&args, &msg);
}

const AG1: usize = 20480 * 4096; // v5-default: agblocks 20480, 4 KiB blocks

/// The bnobt root of v5-default's AG `ag` (byte offset).
fn bno_root(img: &[u8], ag: usize) -> usize {
    ag * AG1 + be32(img, ag * AG1 + 512 + 16) as usize * 4096
}

#[test]
fn superblock_crc_flipped() {
    corrupt(
        "v5-default",
        |img| img[224] ^= 0xff,
        |img| {
            format!(
                "xfs: superblock checksum mismatch at byte 224: stored 0x{:08x}, computed 0x{:08x}",
                u32::from_le_bytes(img[224..228].try_into().unwrap()),
                xfs_crc(&img[..512], 224)
            )
        },
    );
}

#[test]
fn agf_crc_flipped() {
    corrupt(
        "v5-default",
        |img| img[AG1 + 512 + 216] ^= 0x01,
        |img| {
            format!(
                "xfs: AGF checksum mismatch in AG 1 at byte {}: stored 0x{:08x}, computed 0x{:08x}",
                AG1 + 512,
                u32::from_le_bytes(img[AG1 + 512 + 216..AG1 + 512 + 220].try_into().unwrap()),
                xfs_crc(&img[AG1 + 512..AG1 + 1024], 216)
            )
        },
    );
}

#[test]
fn agfl_crc_flipped() {
    corrupt(
        "v5-default",
        |img| img[1536 + 32] ^= 0x01,
        |img| {
            format!(
                "xfs: AGFL checksum mismatch in AG 0 at byte 1536: stored 0x{:08x}, computed 0x{:08x}",
                u32::from_le_bytes(img[1568..1572].try_into().unwrap()),
                xfs_crc(&img[1536..2048], 32)
            )
        },
    );
}

#[test]
fn bnobt_crc_flipped() {
    corrupt(
        "v5-default",
        |img| {
            let r = bno_root(img, 2);
            img[r + 60] ^= 0x01;
        },
        |img| {
            let r = bno_root(img, 2);
            format!(
                "xfs: bnobt block {} of AG 2 at byte {r}: checksum mismatch: stored 0x{:08x}, computed 0x{:08x}",
                (r - 2 * AG1) / 4096,
                u32::from_le_bytes(img[r + 52..r + 56].try_into().unwrap()),
                xfs_crc(&img[r..r + 4096], 52)
            )
        },
    );
}

#[test]
fn cntbt_wrong_magic() {
    corrupt(
        "v5-default",
        |img| {
            let r = be32(img, 512 + 20) as usize * 4096;
            put32(img, r, 0x4142_3342); // a bnobt magic in the cntbt
        },
        |img| {
            let b = be32(img, 512 + 20);
            format!(
                "xfs: cntbt block {b} of AG 0 at byte {}: bad magic 0x41423342 (expected 0x41423343)",
                b as usize * 4096
            )
        },
    );
}

#[test]
fn bnobt_wrong_blkno() {
    corrupt(
        "v5-default",
        |img| {
            let r = bno_root(img, 1);
            img[r + 16..r + 24].copy_from_slice(&8u64.to_be_bytes());
            fix_crc(img, r, 4096, 52);
        },
        |img| {
            let r = bno_root(img, 1);
            format!(
                "xfs: bnobt block {} of AG 1 at byte {r}: bb_blkno 8 is not its own address (sector {})",
                (r - AG1) / 4096,
                r / 512
            )
        },
    );
}

#[test]
fn bnobt_wrong_owner() {
    corrupt(
        "v5-default",
        |img| {
            let r = bno_root(img, 3);
            put32(img, r + 48, 1);
            fix_crc(img, r, 4096, 52);
        },
        |img| {
            let r = bno_root(img, 3);
            format!(
                "xfs: bnobt block {} of AG 3 at byte {r}: bb_owner 1 is not its AG",
                (r - 3 * AG1) / 4096
            )
        },
    );
}

#[test]
fn v4_bnobt_wrong_magic() {
    // v4-4k: 4 KiB blocks, 4 AGs of 20480 blocks, no CRCs.
    corrupt(
        "v4-4k",
        |img| {
            let r = be32(img, 512 + 16) as usize * 4096;
            put32(img, r, 0x4142_3342);
        },
        |img| {
            let b = be32(img, 512 + 16);
            format!(
                "xfs: bnobt block {b} of AG 0 at byte {}: bad magic 0x41423342 (expected 0x41425442)",
                b as usize * 4096
            )
        },
    );
}

#[test]
fn agf_freeblks_mismatch() {
    corrupt(
        "v5-default",
        |img| {
            let f = be32(img, AG1 + 512 + 52);
            put32(img, AG1 + 512 + 52, f - 3);
            fix_crc(img, AG1 + 512, 512, 216);
        },
        |img| {
            let f = be32(img, AG1 + 512 + 52);
            let fd = u64::from_be_bytes(img[144..152].try_into().unwrap());
            format!(
                "filesystem inconsistency: AG 1: agf_freeblks is {f}, the bnobt's free extents add up to {}; the superblock says {} blocks are free, the AGFs say {} (free extents + AGFL + btree blocks; a summary xfs_repair recomputes); run xfs_repair, or use --ignore-fs-check",
                f + 3,
                fd,
                fd - 3
            )
        },
    );
}

#[test]
fn cntbt_sum_mismatch() {
    // AG 3's cntbt leaf: its first record one block shorter (still in
    // order), CRC fixed.
    let cnt_root = |img: &[u8]| 3 * AG1 + be32(img, 3 * AG1 + 512 + 20) as usize * 4096;
    corrupt(
        "v5-default",
        |img| {
            let r = cnt_root(img);
            let c = be32(img, r + 60);
            put32(img, r + 60, c - 1);
            fix_crc(img, r, 4096, 52);
        },
        |img| {
            let r = cnt_root(img);
            let n = usize::from(u16::from_be_bytes([img[r + 6], img[r + 7]]));
            let sum: u32 = (0..n).map(|i| be32(img, r + 60 + 8 * i)).sum();
            format!(
                "filesystem inconsistency: AG 3: the cntbt holds {sum} free blocks in {n} extents, the bnobt {} in {n}; run xfs_repair",
                sum + 1
            )
        },
    );
}

#[test]
fn agfl_count_mismatch() {
    corrupt(
        "v5-default",
        |img| {
            let c = be32(img, 512 + 48);
            put32(img, 512 + 48, c + 1);
            fix_crc(img, 512, 512, 216);
        },
        |img| {
            let (first, last, count) = (be32(img, 552), be32(img, 556), be32(img, 560));
            format!(
                "xfs: AGF of AG 0 at byte 512: agf_flcount is {count}, expected {} (the AGFL ring from slot {first} to slot {last} of 119)",
                count - 1
            )
        },
    );
}

/// Sets superblock bytes and fixes the superblock CRC.
fn patch_sb(img: &mut [u8], at: usize, bytes: &[u8]) {
    img[at..at + bytes.len()].copy_from_slice(bytes);
    fix_crc(img, 0, 512, 224);
}

#[test]
fn unknown_incompat_bit() {
    corrupt(
        "v5-default",
        |img| {
            let v = be32(img, 216) | 0x8000_0000;
            patch_sb(img, 216, &v.to_be_bytes());
        },
        |_| {
            "xfs: unknown incompat feature bits 0x80000000 in the superblock; use --fs-type raw"
                .into()
        },
    );
}

#[test]
fn unknown_ro_compat_and_log_incompat_bits() {
    corrupt(
        "v5-default",
        |img| {
            let v = be32(img, 212) | 0x100;
            patch_sb(img, 212, &v.to_be_bytes());
        },
        |_| "xfs: unknown ro_compat feature bits 0x100 in the superblock".into(),
    );
    corrupt(
        "v5-default",
        |img| patch_sb(img, 220, &0x4u32.to_be_bytes()),
        |_| "xfs: unknown log_incompat feature bits 0x4 in the superblock".into(),
    );
}

#[test]
fn needsrepair() {
    corrupt(
        "v5-default",
        |img| {
            let v = be32(img, 216) | 0x10;
            patch_sb(img, 216, &v.to_be_bytes());
        },
        |_| {
            "xfs: the superblock has NEEDSREPAIR set (an xfs_repair run did not finish); run xfs_repair first".into()
        },
    );
}

#[test]
fn external_log() {
    corrupt(
        "v5-default",
        |img| patch_sb(img, 48, &0u64.to_be_bytes()),
        |_| {
            "xfs: the log is external (sb_logstart is 0): it lives on another device, which fsimg does not copy; use --fs-type raw for the data device alone".into()
        },
    );
}

#[test]
fn realtime_section() {
    corrupt(
        "v5-default",
        |img| patch_sb(img, 16, &4096u64.to_be_bytes()),
        |_| {
            "xfs: the filesystem has a realtime section (4096 blocks) on another device, which fsimg does not copy; use --fs-type raw for the data device alone".into()
        },
    );
}

/// A rescue run over an unreadable AGF copies that AG whole.
#[test]
fn unreadable_agf_in_rescue_copies_its_ag() {
    struct Bad(Vec<u8>, (u64, u64));
    impl fsimg::source::Source for Bad {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            let end = offset + buf.len() as u64;
            if offset < self.1.1 && self.1.0 < end {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            buf.copy_from_slice(&self.0[offset as usize..end as usize]);
            Ok(())
        }
        fn name(&self) -> &str {
            "bad"
        }
    }
    let ag1 = AG1 as u64;
    let d = Bad(image("xfs", "v5-default"), (ag1 + 512, ag1 + 1024));
    let mut fs = open(&d, FsChoice::Xfs).unwrap();
    assert!(matches!(fs.allocation(&d), Err(fsimg::Error::Read { .. })));
    fs.set_rescue(true);
    let a = fs.allocation(&d).unwrap();
    assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    assert!(
        a.warnings[0].starts_with("AG 1's free-space metadata is unreadable (")
            && a.warnings[0].ends_with("): all 20480 of its blocks are copied"),
        "{:?}",
        a.warnings
    );
    assert_eq!(a.map.count_used(20480, 20480), 20480);
    let e = expected_in("xfs", "v5-default");
    assert!(a.map.used_clusters() > expected_u64(&e, "used_blocks"));
}

/// An XFS volume inside a GPT disk made here with sfdisk: the disk is
/// saved and restored, the partition holds the volume's used blocks
/// (zeros elsewhere) and passes xfs_repair; the table is kept.
#[test]
fn whole_disk_with_an_xfs_partition() {
    if !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vol = unpack("v5-default", dir.path());
    let disk = dir.path().join("disk.img");
    let v = fs::read(&vol).unwrap();
    {
        let f = fs::File::create(&disk).unwrap();
        f.set_len(v.len() as u64 + (4 << 20)).unwrap();
    }
    let mut child = Command::new("sfdisk")
        .arg("-q")
        .arg(&disk)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                "label: gpt\nstart=2048, size={}, type=linux\n",
                v.len() / 512
            )
            .as_bytes(),
        )
        .unwrap();
    assert!(child.wait().unwrap().success());
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.write_all_at(&v, 1 << 20).unwrap();
    }
    let d = disk.to_str().unwrap();
    let info = run_ok(&["info", d]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("partition table      gpt"), "{text}");
    assert!(text.contains(", xfs, used "), "{text}");
    let img = dir.path().join("disk.fsimg");
    run_ok(&["-q", "-s", "-z", "-o", img.to_str().unwrap(), d]);
    run_ok(&["verify", img.to_str().unwrap()]);
    let restored = dir.path().join("restored.img");
    run_ok(&[
        "-q",
        "-r",
        "-o",
        restored.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    let r = fs::read(&restored).unwrap();
    let whole = fs::read(&disk).unwrap();
    assert_eq!(r.len(), whole.len());
    assert!(r[..1 << 20] == whole[..1 << 20], "table and gap differ");
    let part = dir.path().join("part.img");
    fs::write(&part, &r[1 << 20..(1 << 20) + v.len()]).unwrap();
    assert_clone_used_only("disk partition 1", &vol, &part);
    xfs_repair_clean(&part);
}

/// `--rescue --mapfile` on a readable volume: the same clone, and a
/// mapfile with every used range rescued.
#[test]
fn rescue_with_a_mapfile() {
    let dir = tempfile::tempdir().unwrap();
    let src = unpack("v5-noreflink", dir.path());
    let s = src.to_str().unwrap();
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", clone.to_str().unwrap(), s]);
    let rescued = dir.path().join("rescued.img");
    let map = dir.path().join("r.map");
    run_ok(&[
        "-q",
        "--rescue",
        "--mapfile",
        map.to_str().unwrap(),
        "-O",
        rescued.to_str().unwrap(),
        s,
    ]);
    assert!(fs::read(&rescued).unwrap() == fs::read(&clone).unwrap());
    let m = fs::read_to_string(&map).unwrap();
    assert!(
        !m.lines().any(|l| l.contains("  -") || l.contains("  *")),
        "{m}"
    );
    xfs_repair_clean(&rescued);
}

/// `--fs-type xfs` on another filesystem names the magic it found; Auto
/// does not take it for XFS.
#[test]
fn fs_type_xfs_on_an_ext_volume() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ext.img");
    fs::write(&p, ext_image("ext2-1k")).unwrap();
    let out = dir.path().join("o.img");
    let (o, s) = (out.to_str().unwrap(), p.to_str().unwrap());
    run_err(
        &["-q", "--fs-type", "xfs", "-o", o, s],
        "xfs: bad superblock magic 0x00000000 at byte 0 (expected 0x58465342, \"XFSB\")",
    );
    let info = run_ok(&["info", s]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("ext2"));
}
