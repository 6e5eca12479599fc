//! Bad input and refusals: each gets one clear message and exit status 1,
//! never a panic, and never leaves a partial output behind.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use fsimg::fs::ext::ExtError;
use fsimg::fs::ext::checksum::crc32c;
use fsimg::fs::{FsChoice, open};
use fsimg::source::MemSource;

const SB: usize = 1024;

struct Case {
    _dir: tempfile::TempDir,
    src: PathBuf,
    out: PathBuf,
}

impl Case {
    fn new(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let mut img = ext_image(name);
        edit(&mut img);
        let src = dir.path().join("src.img");
        fs::write(&src, img).unwrap();
        let out = dir.path().join("out.img");
        Case {
            _dir: dir,
            src,
            out,
        }
    }
    fn s(&self) -> &str {
        self.src.to_str().unwrap()
    }
    fn o(&self) -> &str {
        self.out.to_str().unwrap()
    }
    /// Clones and expects failure with `needle`, and no output left.
    fn refused(&self, extra: &[&str], needle: &str) -> String {
        let mut args = extra.to_vec();
        args.extend(["-o", self.o(), self.s()]);
        let err = run_err(&args, needle);
        assert!(
            !self.out.exists(),
            "a refused clone left {}",
            self.out.display()
        );
        err
    }
}

fn put_u32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u16(img: &mut [u8], at: usize, v: u16) {
    img[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes the metadata_csum superblock checksum after an edit.
fn fix_sb_csum(img: &mut [u8]) {
    let c = crc32c(!0, &img[SB..SB + 0x3FC]);
    put_u32(img, SB + 0x3FC, c);
}

fn ext_err(img: Vec<u8>) -> ExtError {
    let src = MemSource::new(img, "mem");
    match open(&src, FsChoice::Ext).and_then(|fs| fs.allocation(&src).map(|_| ())) {
        Err(fsimg::Error::Ext(e)) => e,
        other => panic!("expected an ext error, got {other:?}"),
    }
}

#[test]
fn bad_magic() {
    let c = Case::new("ext2-1k", |i| put_u16(i, SB + 0x38, 0x1234));
    c.refused(
        &[],
        "no supported filesystem found (no ext superblock magic at byte 1080 (found 0x1234), no FAT, exFAT or NTFS boot sector, no XFS or btrfs superblock",
    );
    c.refused(
        &["--fs-type", "ext"],
        "ext: bad superblock magic 0x1234 at byte 1080 (expected 0xef53)",
    );
    let mut img = ext_image("ext2-1k");
    put_u16(&mut img, SB + 0x38, 0);
    assert_eq!(
        ext_err(img),
        ExtError::BadMagic {
            offset: 1080,
            found: 0
        }
    );
}

#[test]
fn zero_blocks_per_group() {
    let c = Case::new("ext2-1k", |i| put_u32(i, SB + 0x20, 0));
    c.refused(
        &[],
        "ext: zero blocks per group (s_blocks_per_group at byte 1056)",
    );
    // With metadata_csum the checksum is fixed so the field itself is seen.
    let mut img = ext_image("ext4-default");
    put_u32(&mut img, SB + 0x20, 0);
    fix_sb_csum(&mut img);
    assert_eq!(ext_err(img), ExtError::BlocksPerGroupZero { offset: 1056 });
}

#[test]
fn superblock_checksum() {
    let c = Case::new("ext4-default", |i| i[SB + 0x78] ^= 1);
    c.refused(&[], "ext: superblock checksum mismatch at byte 2044");
}

#[test]
fn bitmap_block_past_the_end() {
    // ext2-1k: 1 KiB blocks, descriptors at block 2, 32 bytes each.
    let c = Case::new("ext2-1k", |i| put_u32(i, 2048 + 32, 0x00ff_ffff));
    c.refused(
        &[],
        "ext: group 1 descriptor (at byte 2080) puts its block bitmap at block 16777215, outside the filesystem (blocks 1..16384)",
    );
}

#[test]
fn inode_table_past_the_end() {
    let c = Case::new("ext2-1k", |i| put_u32(i, 2048 + 3 * 32 + 8, 16380));
    c.refused(
        &[],
        "ext: group 3 descriptor (at byte 2144) puts its inode table at block",
    );
}

#[test]
fn truncated_source() {
    let c = Case::new("ext4-default", |i| i.truncate(i.len() / 2));
    c.refused(
        &[],
        "is truncated: the filesystem needs 33554432 bytes but the source has only 16777216",
    );
}

#[test]
fn truncated_before_the_superblock() {
    let c = Case::new("ext4-default", |i| i.truncate(1500));
    c.refused(
        &[],
        "no supported filesystem found (the source is only 1500 bytes long)",
    );
}

#[test]
fn unknown_filesystem_and_raw() {
    let c = Case::new("ext2-1k", |i| i.iter_mut().for_each(|b| *b = 0));
    c.refused(
        &[],
        "no supported filesystem found (the first 4 KiB are all zeros); use --fs-type raw",
    );
    // raw copies everything, byte for byte.
    let c = Case::new("ext2-1k", |i| put_u16(i, SB + 0x38, 0));
    run_ok(&["-q", "--fs-type", "raw", "-o", c.o(), c.s()]);
    assert!(fs::read(&c.out).unwrap() == fs::read(&c.src).unwrap());
}

#[test]
fn filesystem_with_errors_needs_force() {
    let c = Case::new("ext2-1k", |i| put_u16(i, SB + 0x3A, 2));
    c.refused(
        &[],
        "the filesystem is marked as having errors; run e2fsck -f, or use --force",
    );
    run_ok(&["-q", "--force", "-o", c.o(), c.s()]);
}

#[test]
fn journal_needing_recovery_needs_force() {
    let c = Case::new("ext3-2k", |i| {
        let v = u32::from_le_bytes(i[SB + 0x60..SB + 0x64].try_into().unwrap());
        put_u32(i, SB + 0x60, v | 0x4);
    });
    c.refused(&[], "the journal needs recovery");
    run_ok(&["-q", "-f", "-o", c.o(), c.s()]);
}

/// A wrong superblock total alone is reported but copied: the kernel and
/// e2fsck recompute it from the group descriptors, which still agree.
#[test]
fn superblock_free_total_is_a_warning() {
    let e = expected("ext2-1k");
    let free = expected_u64(&e, "free_blocks") as u32;
    let c = Case::new("ext2-1k", |i| put_u32(i, SB + 0xC, free - 7));
    let out = run_ok(&["-o", c.o(), c.s()]);
    let msg = format!(
        "fsimg: warning: the superblock says {} blocks are free, the bitmaps say {free}",
        free - 7
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&msg));
}

/// A group descriptor whose free count disagrees with its bitmap is an
/// inconsistency: refused unless --ignore-fs-check, then a warning.
#[test]
fn descriptor_free_count_mismatch() {
    // bg_free_blocks_count of group 2 (offset 0xC in the descriptor).
    let c = Case::new("ext2-1k", |i| {
        let at = 2048 + 2 * 32 + 0xC;
        let v = u16::from_le_bytes([i[at], i[at + 1]]);
        put_u16(i, at, v.wrapping_add(1));
    });
    c.refused(
        &[],
        "the free cluster count in the descriptor of group 2 differs from its bitmap",
    );
}

#[test]
fn existing_output_needs_overwrite() {
    let c = Case::new("ext2-1k", |_| {});
    fs::write(&c.out, b"precious").unwrap();
    run_err(
        &["-o", c.o(), c.s()],
        "already exists; use -O/--overwrite to overwrite it",
    );
    assert_eq!(fs::read(&c.out).unwrap(), b"precious");
    run_err(&["-s", "-o", c.o(), c.s()], "already exists");
    assert_eq!(fs::read(&c.out).unwrap(), b"precious");
}

#[test]
fn source_equal_to_target() {
    let c = Case::new("ext2-1k", |_| {});
    let before = fs::read(&c.src).unwrap();
    run_err(&["-O", c.s(), c.s()], "source and target are the same file");
    run_err(
        &["-s", "-O", c.s(), c.s()],
        "source and target are the same file",
    );
    // Through another path to the same file.
    let link = c.src.with_file_name("link.img");
    fs::hard_link(&c.src, &link).unwrap();
    run_err(
        &["-O", link.to_str().unwrap(), c.s()],
        "source and target are the same file",
    );
    assert!(fs::read(&c.src).unwrap() == before);
}

#[test]
fn restore_onto_its_own_image_is_refused() {
    let c = Case::new("ext2-1k", |_| {});
    let img = c.src.with_file_name("x.fsimg");
    run_ok(&["-q", "-s", "-o", img.to_str().unwrap(), c.s()]);
    run_err(
        &["-r", "-O", img.to_str().unwrap(), img.to_str().unwrap()],
        "source and target are the same file",
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["src.img"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("say where to write"));
    let out = run(&["-o", "a", "-O", "b", "src.img"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["-z", "-o", "a", "src.img"]);
    assert_eq!(out.status.code(), Some(2), "-z needs -s");
}

#[test]
fn restore_of_a_non_image() {
    let c = Case::new("ext2-1k", |_| {});
    c.refused(&["-r"], "not an fsimg image: bad magic at byte 0");
}

#[test]
fn truncated_image_leaves_no_output() {
    let c = Case::new("ext4-default", |_| {});
    let img = c.src.with_file_name("x.fsimg");
    run_ok(&["-q", "-s", "-o", img.to_str().unwrap(), c.s()]);
    let bytes = fs::read(&img).unwrap();
    let cut = c.src.with_file_name("cut.fsimg");
    fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    run_err(
        &["-r", "-o", c.o(), cut.to_str().unwrap()],
        "image is truncated: it ends at byte",
    );
    assert!(!c.out.exists(), "a failed restore left its output");
    run_err(&["verify", cut.to_str().unwrap()], "image is truncated");
}

/// Root-only refusals on real block devices.
#[test]
fn device_refusals() {
    if !root() || !have("losetup") || !have("mount") {
        return;
    }
    let c = Case::new("ext2-1k", |_| {});
    let dir = c.src.parent().unwrap().to_path_buf();

    // A device smaller than the volume.
    let small = dir.join("small.img");
    fs::write(&small, vec![0u8; 1 << 20]).unwrap();
    let l = Loop::attach(&small, false);
    run_err(
        &["-O", &l.dev, c.s()],
        &format!(
            "{} is too small: the volume needs 16777216 bytes but the target has only 1048576",
            l.dev
        ),
    );
    assert!(
        fs::read(&small).unwrap().iter().all(|&b| b == 0),
        "nothing written"
    );
    drop(l);

    // A mounted target, and the file behind a mounted loop device.
    let victim = dir.join("victim.img");
    fs::copy(&c.src, &victim).unwrap();
    let l = Loop::attach(&victim, false);
    let m = Mount::new(&l.dev, &dir.join("mnt"), "ro");
    run_err(
        &["-O", &l.dev, c.s()],
        &format!(
            "{} is in use ({} is mounted at {}",
            l.dev,
            l.dev,
            m.dir.display()
        ),
    );
    run_err(
        &["-O", victim.to_str().unwrap(), c.s()],
        "is in use (loop device",
    );
    run_err(
        &["-s", "-O", victim.to_str().unwrap(), c.s()],
        "is in use (loop device",
    );
    drop(m);

    // Source and target the same device.
    run_err(
        &["-O", &l.dev, &l.dev],
        "source and target are the same device",
    );
    drop(l);

    // A source mounted read-write needs --force.
    let l = Loop::attach(&victim, false);
    let m = Mount::new(&l.dev, &dir.join("mnt2"), "rw");
    let out = dir.join("o.img");
    run_err(
        &["-o", out.to_str().unwrap(), &l.dev],
        "is mounted read-write at",
    );
    assert!(!Path::new(&out).exists());
    drop(m);
    drop(l);
}

#[test]
fn verify_reads_standard_input() {
    let c = Case::new("ext4-default", |_| {});
    let img = c.src.with_file_name("x.fsimg");
    run_ok(&["-q", "-s", "-z", "-o", img.to_str().unwrap(), c.s()]);
    let bytes = fs::read(&img).unwrap();
    let pipe = |data: &[u8]| {
        let mut child = fsimg()
            .args(["verify", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    };
    let out = pipe(&bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("-: OK:"));
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    let out = pipe(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") || err.contains("compressed data is corrupt"),
        "{err}"
    );
}

/// SIGINT stops a run like an error: exit 130, and the file it was
/// creating is removed.
#[test]
fn interrupted_run_removes_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.raw");
    // 64 GiB of holes: long enough to be interrupted, nothing on disk.
    fs::File::create(&src).unwrap().set_len(64 << 30).unwrap();
    let out = dir.path().join("big.fsimg");
    let mut child = fsimg()
        .args(["-q", "--fs-type", "raw", "-s", "-z", "1", "-o"])
        .arg(&out)
        .arg(&src)
        .spawn()
        .unwrap();
    // Wait (on a slow machine, a while) until the image is being written.
    let start = std::time::Instant::now();
    while !out.exists() && start.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(out.exists(), "the image is being written");
    std::thread::sleep(std::time::Duration::from_millis(100));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!out.exists(), "an interrupted run left its output");
}

#[test]
fn restore_onto_a_small_device_writes_nothing() {
    if !root() || !have("losetup") {
        return;
    }
    let c = Case::new("ext2-1k", |_| {});
    let img = c.src.with_file_name("x.fsimg");
    run_ok(&["-q", "-s", "-o", img.to_str().unwrap(), c.s()]);
    let small = c.src.with_file_name("small.img");
    fs::write(&small, vec![0u8; 1 << 20]).unwrap();
    let l = Loop::attach(&small, false);
    run_err(
        &["-r", "-O", &l.dev, img.to_str().unwrap()],
        "is too small: the volume needs 16777216 bytes but the target has only 1048576",
    );
    drop(l);
    assert!(fs::read(&small).unwrap().iter().all(|&b| b == 0));
}
