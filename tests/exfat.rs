//! exFAT: used counts against the bitmap (decoded by
//! tools/exfat-testdata-facts.py) and partclone.exfat, clones checked with
//! fsck.exfat -n and file by file through exfat-fuse, image round trips,
//! metadata-only copies, TexFAT, and one test per corruption with its exact
//! message.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use fsimg::fs::{FsChoice, open};
use fsimg::source::MemSource;

fn exfat_images() -> Vec<String> {
    let names = images("exfat");
    assert!(names.len() >= 6, "exFAT test images are missing");
    names
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn u32_at(img: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(img[at..at + 4].try_into().unwrap())
}

/// Geometry read from the boot sector.
struct Geo {
    cs: usize,
    fat: usize,
    heap: usize,
    clusters: u64,
}

fn geo(img: &[u8]) -> Geo {
    let ss = 1usize << img[0x6C];
    Geo {
        cs: ss << img[0x6D],
        fat: u32_at(img, 0x50) as usize * ss,
        heap: u32_at(img, 0x58) as usize * ss,
        clusters: u64::from(u32_at(img, 0x5C)),
    }
}

impl Geo {
    fn cluster(&self, c: u32) -> usize {
        self.heap + (c as usize - 2) * self.cs
    }
    fn fat_entry(&self, c: u32) -> usize {
        self.fat + c as usize * 4
    }
}

/// Offset of the file entry (0x85) whose name is `name`: its name entry
/// (0xC1) holds the UTF-16 name from byte 2, after the stream extension.
fn file_entry(img: &[u8], name: &str) -> usize {
    let u: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let p = img
        .windows(u.len())
        .position(|w| w == u.as_slice())
        .unwrap_or_else(|| panic!("{name} not found"));
    let f = p - 2 - 64;
    assert_eq!((img[f], img[f + 32], img[f + 64]), (0x85, 0xC0, 0xC1));
    f
}

/// Recomputes the set checksum of the entry set at `f`.
fn fix_set_checksum(img: &mut [u8], f: usize) {
    let n = usize::from(img[f + 1]) + 1;
    let mut sum = 0u16;
    for (i, &b) in img[f..f + 32 * n].iter().enumerate() {
        if i != 2 && i != 3 {
            sum = sum.rotate_right(1).wrapping_add(u16::from(b));
        }
    }
    img[f + 2..f + 4].copy_from_slice(&sum.to_le_bytes());
}

/// Recomputes the main boot region's checksum sector.
fn fix_boot_checksum(img: &mut [u8], at: usize) {
    let ss = 1usize << img[at + 0x6C];
    let mut sum = 0u32;
    for (i, &b) in img[at..at + 11 * ss].iter().enumerate() {
        if i != 106 && i != 107 && i != 112 {
            sum = sum.rotate_right(1).wrapping_add(u32::from(b));
        }
    }
    for k in 0..ss / 4 {
        let o = at + 11 * ss + 4 * k;
        img[o..o + 4].copy_from_slice(&sum.to_le_bytes());
    }
}

/// The root directory's allocation bitmap entry for FAT `n` (0 or 1).
fn bitmap_entry(img: &[u8], n: u8) -> usize {
    let g = geo(img);
    let root = g.cluster(u32_at(img, 0x60));
    (0..g.cs / 32)
        .map(|i| root + 32 * i)
        .find(|&e| img[e] == 0x81 && img[e + 1] & 1 == n)
        .expect("bitmap entry")
}

/// Sets (or clears) the active bitmap's bit of cluster `c`.
fn set_bitmap_bit(img: &mut [u8], c: u64, on: bool) {
    let g = geo(img);
    let e = bitmap_entry(img, 0);
    let at = g.cluster(u32_at(img, e + 20)) + (c as usize - 2) / 8;
    let bit = 1u8 << ((c - 2) % 8);
    if on {
        img[at] |= bit;
    } else {
        img[at] &= !bit;
    }
}

fn allocation(img: &[u8]) -> fsimg::fs::Allocation {
    let src = MemSource::new(img.to_vec(), "m");
    open(&src, FsChoice::Auto)
        .unwrap()
        .allocation(&src)
        .unwrap()
}

fn detail(a: &fsimg::fs::Allocation, key: &str) -> String {
    a.details
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} missing"))
}

fn assert_fsck_clean(path: &Path) {
    if !have("fsck.exfat") {
        return;
    }
    let out = Command::new("fsck.exfat")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck.exfat -n {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exFAT image mounted read-only through exfat-fuse (on a read-only
/// loop device), unmounted on drop.
struct Fuse {
    dir: PathBuf,
    _lo: Loop,
}

impl Fuse {
    fn new(img: &Path, dir: &Path) -> Fuse {
        let lo = Loop::attach(img, true);
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount.exfat-fuse")
            .args(["-o", "ro", &lo.dev])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount.exfat-fuse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fuse {
            dir: dir.to_path_buf(),
            _lo: lo,
        }
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Whether the file trees can be compared through exfat-fuse.
fn can_mount() -> bool {
    root() && have("mount.exfat-fuse") && have("losetup") && have("diff")
}

/// `diff -r` of the two volumes' files, mounted through exfat-fuse.
fn assert_same_files(name: &str, a: &Path, b: &Path, dir: &Path) {
    let ma = Fuse::new(a, &dir.join("mnt-a"));
    let mb = Fuse::new(b, &dir.join("mnt-b"));
    let out = Command::new("diff")
        .arg("-r")
        .arg(&ma.dir)
        .arg(&mb.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: files differ: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Not vacuous: the trees hold the generated files.
    assert!(ma.dir.join("photos/big.raw").is_file(), "{name}: no files");
}

#[test]
fn used_counts_match_the_bitmap_and_partclone() {
    for name in exfat_images() {
        let e = expected_in("exfat", &name);
        let a = allocation(&image("exfat", &name));
        assert!(
            a.inconsistencies.is_empty(),
            "{name}: {:?}",
            a.inconsistencies
        );
        assert!(a.warnings.is_empty(), "{name}: {:?}", a.warnings);
        assert_eq!(
            detail(&a, "exFAT used clusters"),
            format!("{} of {}", e["used_clusters"], e["cluster_count"]),
            "{name}"
        );
        let used = expected_u64(&e, "used_bytes");
        assert_eq!(a.map.used_bytes(), used, "{name}: used bytes");
        if let Some(fsck_files) = e.get("fsck_files") {
            assert_eq!(
                &detail(&a, "files"),
                fsck_files,
                "{name}: fsck.exfat's file count"
            );
            assert_eq!(
                &detail(&a, "directories"),
                &e["fsck_dirs"],
                "{name}: fsck.exfat's directory count"
            );
        }
        // partclone.exfat's "Space in use" is ours plus two clusters and
        // the excess space after the heap: its loop over the bitmap stops
        // before the last two clusters, which are free in every image and
        // so never counted free; and it counts the excess sectors. (When
        // they are used it does not copy them: see
        // the_last_two_clusters_are_copied.) It refuses TexFAT volumes.
        match e.get("partclone_used_bytes").map(String::as_str) {
            Some("refused") => assert_eq!(e["num_fats"], "2", "{name}"),
            Some(v) => {
                let cs = expected_u64(&e, "cluster_size");
                let excess =
                    expected_u64(&e, "excess_sectors") * expected_u64(&e, "bytes_per_sector");
                assert_eq!(
                    v.parse::<u64>().unwrap(),
                    used + 2 * cs + excess,
                    "{name}: partclone"
                );
            }
            None => {}
        }
    }
}

#[test]
fn clone_and_round_trip_every_image() {
    let mount = can_mount();
    for name in exfat_images() {
        let e = expected_in("exfat", &name);
        let dir = tempfile::tempdir().unwrap();
        let source = image("exfat", &name);
        let src = dir.path().join("src.img");
        fs::write(&src, &source).unwrap();

        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", s(&clone), s(&src)]);
        let cloned = fs::read(&clone).unwrap();
        assert_used_only(&name, &source, &cloned);
        if e["fsck_clean"] == "1" {
            assert_fsck_clean(&clone);
        }
        // exfat-fuse, like fsck.exfat, refuses TexFAT volumes.
        if mount && e["fsck_clean"] == "1" {
            assert_same_files(&name, &src, &clone, dir.path());
        }
        // The deleted file's stale data is in the source, not in the clone.
        let marker = b"STALE-DELETED-DATA line";
        let found = |b: &[u8]| b.windows(marker.len()).any(|w| w == marker);
        assert!(found(&source), "{name}: no stale data");
        assert!(!found(&cloned), "{name}: stale data copied");

        // -O onto an existing target (a device, say): only the used
        // clusters are written, the rest keeps what was there.
        let over = dir.path().join("over.img");
        fs::write(&over, vec![0xA5u8; source.len()]).unwrap();
        run_ok(&["-q", "-O", s(&over), s(&src)]);
        let o = fs::read(&over).unwrap();
        let a = allocation(&source);
        let u = a.map.cluster_size() as usize;
        for c in 0..a.map.total_clusters() as usize {
            let r = c * u..((c + 1) * u).min(o.len());
            let want_used = a.map.is_used(c as u64);
            assert!(
                if want_used {
                    o[r.clone()] == source[r]
                } else {
                    o[r].iter().all(|&b| b == 0xA5)
                },
                "{name}: -O unit {c} (used: {want_used})"
            );
        }
        fs::remove_file(&over).unwrap();

        let out = run_ok(&["-q", "-o", "-", s(&src)]);
        assert!(out.stdout == cloned, "{name}: stdout differs");
        assert_round_trips(&name, dir.path(), s(&src), &cloned, "exfat");

        // A restore from an image on stdin.
        let img = dir.path().join("true.fsimg");
        let restored = dir.path().join("stdin.restored");
        let mut child = fsimg()
            .args(["-q", "-r", "-o", s(&restored), "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&fs::read(&img).unwrap())
            .unwrap();
        assert!(child.wait().unwrap().success(), "{name}: stdin restore");
        assert!(
            fs::read(&restored).unwrap() == cloned,
            "{name}: stdin restore differs"
        );
    }
}

#[test]
fn info_shows_the_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    fs::write(&src, image("exfat", "exfat-4k-sector")).unwrap();
    let out = run_ok(&["info", s(&src)]);
    let text = String::from_utf8_lossy(&out.stdout);
    let e = expected_in("exfat", "exfat-4k-sector");
    for want in [
        "exfat".to_string(),
        "S4KSECT".to_string(),
        format!("exFAT clusters          {}", e["cluster_count"]),
        "bytes per sector        4096".to_string(),
        "exFAT cluster size      16384".to_string(),
        format!("cluster heap at sector  {}", e["heap_offset"]),
        "state                   clean".to_string(),
        format!(
            "exFAT used clusters     {} of {}",
            e["used_clusters"], e["cluster_count"]
        ),
    ] {
        assert!(text.contains(&want), "{want:?} not in {text}");
    }
}

#[test]
fn metadata_only_copy_passes_fsck_with_files_as_zeros() {
    for name in ["exfat-512", "exfat-4k", "exfat-128k", "exfat-4k-sector"] {
        let dir = tempfile::tempdir().unwrap();
        let source = image("exfat", name);
        let src = dir.path().join("src.img");
        fs::write(&src, &source).unwrap();
        let meta = dir.path().join("meta.img");
        run_ok(&["-q", "-m", "-o", s(&meta), s(&src)]);
        let m = fs::read(&meta).unwrap();
        assert_fsck_clean(&meta);
        let g = geo(&source);
        // Everything before the heap, then directories, bitmap, up-case.
        assert!(m[..g.heap] == source[..g.heap], "{name}: before the heap");
        let a = allocation(&source);
        let full: u64 = a.map.used_bytes();
        let meta_used = m.len() as u64
            - m.chunks(512).filter(|c| c.iter().all(|&b| b == 0)).count() as u64 * 512;
        assert!(meta_used < full, "{name}: file data copied");
        // big.raw's first cluster reads as zeros in the copy.
        let f = file_entry(&source, "big.raw");
        let first = u32_at(&source, f + 32 + 20);
        let at = g.cluster(first);
        assert!(source[at..at + 64].iter().any(|&b| b != 0), "{name}");
        assert!(
            m[at..at + g.cs].iter().all(|&b| b == 0),
            "{name}: file data in -m"
        );
        if can_mount() {
            let mm = Fuse::new(&meta, &dir.path().join("mnt-m"));
            let big = fs::read(mm.dir.join("photos/big.raw")).unwrap();
            assert_eq!(
                big.len(),
                u64::from_le_bytes(source[f + 56..f + 64].try_into().unwrap()) as usize
            );
            assert!(big.iter().all(|&b| b == 0), "{name}: -m file not zeros");
            assert!(
                mm.dir.join("docs/nested/deeper/deep.txt").is_file(),
                "{name}: tree kept"
            );
        }
    }
}

#[test]
fn texfat_uses_the_active_bitmap() {
    let e = expected_in("exfat", "exfat-texfat");
    let img = image("exfat", "exfat-texfat");
    let stale: u64 = expected_u64(&e, "texfat_stale_cluster");
    let g = geo(&img);
    let a = allocation(&img);
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    // FAT 2 is active: its bitmap does not have FAT 1's stale bit.
    let unit = a.map.cluster_size() as usize;
    assert!(!a.map.is_used((g.cluster(stale as u32) / unit) as u64));
    assert_eq!(a.map.used_bytes(), expected_u64(&e, "used_bytes"));
    // With FAT 1 active (VolumeFlags is outside the checksum), FAT 1's
    // bitmap counts, stale bit included (a lost cluster: a warning).
    let mut fat1 = img.clone();
    fat1[0x6A] &= !1;
    let b = allocation(&fat1);
    assert!(b.map.is_used((g.cluster(stale as u32) / unit) as u64));
    assert_eq!(b.map.used_bytes(), a.map.used_bytes() + g.cs as u64);
    assert_eq!(
        b.warnings,
        vec![
            "1 cluster(s) are allocated in the bitmap but no file or directory uses them (lost clusters; they are copied)"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    fs::write(&src, &img).unwrap();
    let info = run_ok(&["info", s(&src)]);
    assert!(
        String::from_utf8_lossy(&info.stdout)
            .contains("2 of 16 sectors at sector 2048 (TexFAT, FAT 2 active)")
    );
    let clone = dir.path().join("c.img");
    run_ok(&["-q", "-o", s(&clone), s(&src)]);
    assert_used_only("exfat-texfat", &img, &fs::read(&clone).unwrap());
}

/// partclone.exfat's loop over the bitmap never reaches the last two
/// clusters: set them in the bitmap and fsimg copies them.
#[test]
fn the_last_two_clusters_are_copied() {
    let mut img = image("exfat", "exfat-4k");
    let g = geo(&img);
    let before = allocation(&img).map.used_bytes();
    let last = g.clusters + 1;
    for c in [last - 1, last] {
        set_bitmap_bit(&mut img, c, true);
        let at = g.cluster(c as u32);
        img[at..at + g.cs].fill(0x5A);
    }
    let a = allocation(&img);
    assert_eq!(a.map.used_bytes(), before + 2 * g.cs as u64);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    fs::write(&src, &img).unwrap();
    let clone = dir.path().join("c.img");
    run_ok(&["-q", "-o", s(&clone), s(&src)]);
    let c = fs::read(&clone).unwrap();
    assert!(
        c[g.cluster(last as u32 - 1)..].iter().all(|&b| b == 0x5A),
        "last two clusters"
    );
    // partclone.exfat 0.3.23 copies neither (its ddrescue domain log).
    if have("partclone.exfat") {
        let log = dir.path().join("domain.log");
        let st = Command::new("partclone.exfat")
            .args(["-D", "-s", s(&src), "-O", s(&log)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let text = fs::read_to_string(&log).unwrap();
        let tail = g.cluster(last as u32 - 1) as u64;
        let copied = text.lines().filter(|l| !l.starts_with('#')).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 3 && f[2] == "+" && {
                let p = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap();
                p(f[0]) + p(f[1]) > tail
            }
        });
        assert!(
            !copied,
            "partclone.exfat copies the last two clusters now: {text}"
        );
    }
}

#[test]
fn dirty_volume_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("exfat", "exfat-4k");
    // VolumeDirty: outside the boot checksum.
    img[0x6A] |= 2;
    let src = dir.path().join("src.img");
    fs::write(&src, &img).unwrap();
    let out = dir.path().join("o.img");
    run_err(
        &["-o", s(&out), s(&src)],
        "the volume is marked dirty (it was not cleanly unmounted, or is mounted); run fsck.exfat -y (or chkdsk /f on Windows), or use --force",
    );
    assert!(!out.exists());
    run_ok(&["-q", "--force", "-o", s(&out), s(&src)]);
    let info = run_ok(&["info", s(&src)]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("marked dirty"));
}

/// Clones an edited copy of exfat-4k and expects `needle` with status 1.
fn refused(
    extra: &[&str],
    edit: impl FnOnce(&mut Vec<u8>),
    needle: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("exfat", "exfat-4k");
    edit(&mut img);
    let src = dir.path().join("src.img");
    fs::write(&src, img).unwrap();
    let out = dir.path().join("o.img");
    let mut args = extra.to_vec();
    args.extend(["-o", s(&out), s(&src)]);
    run_err(&args, needle);
    assert!(!out.exists());
    (dir, src)
}

/// Clones an edited copy of exfat-4k and returns stderr.
fn warned(edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("exfat", "exfat-4k");
    edit(&mut img);
    let src = dir.path().join("src.img");
    fs::write(&src, img).unwrap();
    let out = run_ok(&["-o", s(&dir.path().join("c.img")), s(&src)]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn damaged_main_boot_region_uses_the_backup() {
    let good = image("exfat", "exfat-4k");
    let want = allocation(&good);
    let mut img = good.clone();
    img[0x64] ^= 0xFF; // the serial, inside the checksum
    let stored = u32_at(&img, 11 * 512);
    let a = allocation(&img);
    assert_eq!(a.map.used_bytes(), want.map.used_bytes());
    assert!(a.warnings[0].starts_with(&format!(
        "the main boot region is damaged (exfat: boot region checksum mismatch at byte 5632: sector 11 holds 0x{stored:08x}, sectors 0-10 sum to 0x"
    )), "{:?}", a.warnings);
    assert!(
        a.warnings[0].ends_with("); using the backup boot region at byte 6144"),
        "{:?}",
        a.warnings
    );
    let err = warned(|i| i[0x64] ^= 0xFF);
    assert!(
        err.contains("warning: the main boot region is damaged"),
        "{err}"
    );
    // A main boot sector that is not exFAT's any more (wiped signature).
    let mut wiped = good.clone();
    wiped[..512].fill(0);
    let src = MemSource::new(wiped, "m");
    let fs = open(&src, FsChoice::Exfat).unwrap();
    assert_eq!(
        fs.describe()
            .iter()
            .find(|(k, _)| *k == "boot region")
            .unwrap()
            .1,
        "backup (at byte 6144)"
    );
}

#[test]
fn both_boot_regions_damaged() {
    refused(
        &["--fs-type", "exfat"],
        |i| {
            i[0x64] ^= 0xFF;
            i[6144 + 0x64] ^= 0xFF;
        },
        "exfat: boot region checksum mismatch at byte 5632: sector 11 holds ",
    );
    let (dir, src) = refused(
        &[],
        |i| {
            i[0x6C] = 13;
            i[6144 + 0x6C] = 13;
            fix_boot_checksum(i, 0);
            fix_boot_checksum(i, 6144);
        },
        "exfat: invalid BytesPerSectorShift 13 at byte 108 (expected 9 to 12); the backup boot region is no better: exfat: no exFAT signature",
    );
    drop((dir, src));
    refused(
        &[],
        |i| {
            for at in [0, 6144] {
                i[at + 0x6E] = 3;
                fix_boot_checksum(i, at);
            }
        },
        "exfat: invalid NumberOfFats 3 at byte 110 (expected 1, or 2 for TexFAT); the backup boot region is no better: exfat: invalid NumberOfFats 3 at byte 6254",
    );
    refused(
        &[],
        |i| {
            for at in [0, 6144] {
                i[at + 0x5C..at + 0x60].copy_from_slice(&100_000u32.to_le_bytes());
                fix_boot_checksum(i, at);
            }
        },
        "exfat: bad layout in the boot sector at byte 0: FatLength 16 sectors cannot hold the 100002 entries ClusterCount 100000 needs",
    );
    refused(
        &[],
        |i| {
            for at in [0, 6144] {
                i[at + 0x60..at + 0x64].copy_from_slice(&5000u32.to_le_bytes());
                fix_boot_checksum(i, at);
            }
        },
        "exfat: root directory cluster 5000 at byte 96 is outside clusters 2..=1537",
    );
    refused(
        &[],
        |i| i.truncate(i.len() / 2),
        "is truncated: the filesystem needs",
    );
}

#[test]
fn no_bitmap_entry() {
    refused(
        &[],
        |i| {
            let e = bitmap_entry(i, 0);
            i[e] = 0x01; // not in use any more
        },
        "exfat: the root directory (cluster 5) has no allocation bitmap entry (type 0x81) for FAT 1",
    );
}

#[test]
fn bitmap_bits_past_the_last_cluster() {
    // DataLength one byte longer (the entry has no checksum) with the
    // bits of that byte set: clusters that do not exist.
    let (dir, src) = refused(
        &[],
        |i| {
            let g = geo(i);
            let e = bitmap_entry(i, 0);
            i[e + 24..e + 32].copy_from_slice(&(g.clusters / 8 + 1).to_le_bytes());
            let at = g.cluster(u32_at(i, e + 20)) + g.clusters as usize / 8;
            i[at] = 0x0C;
        },
        "the allocation bitmap (entry at byte 2109472) has 2 bit(s) set past the last cluster 1537, the first for cluster 1540",
    );
    run_ok(&[
        "-q",
        "--ignore-fs-check",
        "-o",
        s(&dir.path().join("y")),
        s(&src),
    ]);
}

#[test]
fn a_used_cluster_free_in_the_bitmap() {
    let img = image("exfat", "exfat-4k");
    let f = file_entry(&img, "deep.txt");
    let first = u32_at(&img, f + 32 + 20);
    let (dir, src) = refused(
        &[],
        |i| set_bitmap_bit(i, u64::from(first), false),
        &format!(
            "1 cluster(s) in use by the directory tree are free in the allocation bitmap, the first is cluster {first} (chain named at byte {f}): they would not be copied"
        ),
    );
    let err = run_err(&["-o", s(&dir.path().join("x")), s(&src)], "fsck.exfat");
    assert!(err.contains("--ignore-fs-check"), "{err}");
    run_ok(&[
        "-q",
        "--ignore-fs-check",
        "-o",
        s(&dir.path().join("y")),
        s(&src),
    ]);
}

#[test]
fn fat_chain_loop_and_out_of_range() {
    let img = image("exfat", "exfat-4k");
    let g = geo(&img);
    let f = file_entry(&img, "fragmented.bin");
    assert_eq!(img[f + 33] & 2, 0, "fragmented.bin has a FAT chain");
    let first = u32_at(&img, f + 32 + 20);
    let second = u32_at(&img, g.fat_entry(first));
    // The second cluster points back to the first: a loop.
    refused(
        &[],
        |i| i[g.fat_entry(second)..g.fat_entry(second) + 4].copy_from_slice(&first.to_le_bytes()),
        &format!(
            "the chain named at byte {f}: cluster {first} is already used by another file or directory, or earlier in this chain (a cross-link or a loop)"
        ),
    );
    refused(
        &[],
        |i| {
            i[g.fat_entry(second)..g.fat_entry(second) + 4]
                .copy_from_slice(&99_999u32.to_le_bytes())
        },
        &format!(
            "the chain named at byte {f}: the FAT entry at byte {} points to cluster 99999, which is not a cluster (2..=1537)",
            g.fat_entry(second)
        ),
    );
    refused(
        &[],
        |i| {
            i[g.fat_entry(second)..g.fat_entry(second) + 4].copy_from_slice(&u32::MAX.to_le_bytes())
        },
        &format!(
            "the chain named at byte {f}: its FAT chain ends at cluster {second} (FAT entry at byte {}) after 2 cluster(s), but its DataLength needs 12",
            g.fat_entry(second)
        ),
    );
    // A contiguous file running past the heap (checksum fixed).
    let big = file_entry(&img, "big.raw");
    refused(
        &[],
        |i| {
            i[big + 52..big + 56].copy_from_slice(&1530u32.to_le_bytes());
            fix_set_checksum(i, big);
        },
        &format!(
            "the chain named at byte {big}: its contiguous (NoFatChain) clusters run on to cluster 1538, which is not a cluster (2..=1537)"
        ),
    );
}

#[test]
fn contiguous_files_crossing() {
    let img = image("exfat", "exfat-4k");
    let deep = file_entry(&img, "deep.txt");
    let big = file_entry(&img, "big.raw");
    assert_eq!(
        (img[deep + 33] & 2, img[big + 33] & 2),
        (2, 2),
        "NoFatChain files"
    );
    let shared = u32_at(&img, deep + 52);
    refused(
        &[],
        |i| {
            i[big + 52..big + 56].copy_from_slice(&shared.to_le_bytes());
            fix_set_checksum(i, big);
        },
        &format!(
            "cluster {shared} is already used by another file or directory, or earlier in this chain (a cross-link or a loop)"
        ),
    );
}

#[test]
fn bad_entry_set_checksum() {
    let img = image("exfat", "exfat-4k");
    let f = file_entry(&img, "deep.txt");
    let stored = u16::from_le_bytes([img[f + 2], img[f + 3]]);
    refused(
        &[],
        |i| i[f + 64 + 2] ^= 0x01, // a name character
        &format!(
            "the entry set at byte {f} (type 0x85, 3 entries): its SetChecksum is 0x{stored:04x}, its entries sum to 0x"
        ),
    );
}

#[test]
fn media_failure_is_a_warning() {
    let err = warned(|i| i[0x6A] |= 4);
    assert!(
        err.contains("warning: the boot sector (byte 106) has MediaFailure set: the device has reported read or write errors (--rescue copies past them)"),
        "{err}"
    );
}

#[test]
fn percent_in_use_is_a_warning() {
    let err = warned(|i| i[0x70] = 77);
    let e = expected_in("exfat", "exfat-4k");
    assert!(
        err.contains(&format!(
            "warning: the boot sector (byte 112) says 77% of the clusters are in use, the allocation bitmap says {}% ({} of {}",
            expected_u64(&e, "used_clusters") * 100 / expected_u64(&e, "cluster_count"),
            e["used_clusters"],
            e["cluster_count"]
        )),
        "{err}"
    );
}

/// Rescue mode end to end through the command line, where the machine has
/// faultydisk (a FUSE file failing chosen ranges; not in this repository):
/// an unreadable bitmap cluster is copied as used; an unreadable main boot
/// region falls back to the backup. rescue_copy_with_a_mapfile_in_process
/// checks the same everywhere.
#[test]
fn rescue_with_a_mapfile_on_unreadable_metadata() {
    let img = image("exfat", "exfat-4k");
    let g = geo(&img);
    let e = bitmap_entry(&img, 0);
    let bitmap = g.cluster(u32_at(&img, e + 20));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    fs::write(&src, &img).unwrap();
    if !(root() && have("python3") && Path::new("/work/shared/tools/faultydisk").exists()) {
        return;
    }
    let mnt = dir.path().join("faulty");
    fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("/work/shared/tools/faultydisk")
        .args([
            "mount",
            s(&src),
            s(&mnt),
            "--bad",
            &format!("{bitmap}+512"),
            "--bad",
            "0+512",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("/work/shared/tools/faultydisk")
                .args(["umount", self.0.to_str().unwrap()])
                .status();
        }
    }
    let _u = Unmount(mnt.clone());
    let disk = mnt.join("disk");
    let out = dir.path().join("out.img");
    let map = dir.path().join("map");
    run_err(&["-o", s(&out), s(&disk)], "");
    let r = run(&["--rescue", "--mapfile", s(&map), "-o", s(&out), s(&disk)]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("using the backup boot region at byte 6144"),
        "{err}"
    );
    assert!(
        err.contains(&format!("1 allocation bitmap sector(s) are unreadable (the first at byte {bitmap}): the clusters they describe are copied")),
        "{err}"
    );
    let m = fs::read_to_string(&map).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert!(m.contains('-'), "mapfile records the bad sectors: {m}");
}

/// The volume in partition 1 of an MBR and a GPT disk: saved whole and
/// restored, the partition equals the clone of the volume alone.
#[test]
fn inside_a_whole_disk() {
    if !have("sfdisk") {
        return;
    }
    let vol = image("exfat", "exfat-4k");
    let dir = tempfile::tempdir().unwrap();
    let vsrc = dir.path().join("vol.img");
    fs::write(&vsrc, &vol).unwrap();
    let vclone = dir.path().join("vol.clone");
    run_ok(&["-q", "-o", s(&vclone), s(&vsrc)]);
    let want = fs::read(&vclone).unwrap();
    for label in ["dos", "gpt"] {
        let disk = dir.path().join(format!("{label}.disk"));
        let start = 2048u64 * 512;
        let size = start + vol.len() as u64 + (1 << 20);
        let f = fs::File::create(&disk).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let ty = if label == "gpt" {
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
        } else {
            "7"
        };
        let mut c = Command::new("sfdisk")
            .args(["-q", s(&disk)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(
            c.stdin.take().unwrap(),
            "label: {label}\nstart=2048, size={}, type={ty}",
            vol.len() / 512
        )
        .unwrap();
        assert!(c.wait().unwrap().success());
        let mut d = fs::read(&disk).unwrap();
        d[start as usize..start as usize + vol.len()].copy_from_slice(&vol);
        fs::write(&disk, &d).unwrap();
        let img = dir.path().join(format!("{label}.fsimg"));
        run_ok(&["-q", "-s", "-z", "-o", s(&img), s(&disk)]);
        run_ok(&["verify", s(&img)]);
        let info = run_ok(&["info", s(&img)]);
        assert!(
            String::from_utf8_lossy(&info.stdout).contains("exfat"),
            "{label}"
        );
        let restored = dir.path().join(format!("{label}.restored"));
        run_ok(&["-q", "-r", "-o", s(&restored), s(&img)]);
        let r = fs::read(&restored).unwrap();
        assert!(
            r[start as usize..start as usize + vol.len()] == want[..],
            "{label}: partition"
        );
        // --partition 1 picks the volume out of the disk.
        let p = dir.path().join(format!("{label}.p1"));
        run_ok(&["-q", "--partition", "1", "-o", s(&p), s(&disk)]);
        assert!(fs::read(&p).unwrap() == want, "{label}: --partition 1");
    }
}

/// A volume whose reads fail in one byte range.
struct Faulty {
    data: Vec<u8>,
    bad: (u64, u64),
}

impl fsimg::source::Source for Faulty {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        if offset < self.bad.1 && self.bad.0 < end {
            return Err(std::io::Error::from_raw_os_error(5));
        }
        buf.copy_from_slice(&self.data[offset as usize..end as usize]);
        Ok(())
    }
    fn name(&self) -> &str {
        "faulty"
    }
}

fn faulty_allocation(
    img: &[u8],
    bad: (u64, u64),
    rescue: bool,
) -> fsimg::Result<fsimg::fs::Allocation> {
    let d = Faulty {
        data: img.to_vec(),
        bad,
    };
    let mut fs = open(&d, FsChoice::Auto)?;
    fs.set_rescue(rescue);
    fs.allocation(&d)
}

/// An unreadable directory cluster or FAT sector: an error without
/// --rescue; with it, a warning, and the bitmap still decides what is
/// copied (the same map as the healthy volume's).
#[test]
fn unreadable_directory_and_fat_in_rescue() {
    let img = image("exfat", "exfat-4k");
    let g = geo(&img);
    let want = allocation(&img);
    // The cluster of /docs/nested (named by its entry set).
    let f = file_entry(&img, "nested");
    let dir_at = g.cluster(u32_at(&img, f + 32 + 20)) as u64;
    // The FAT sector holding fragmented.bin's chain.
    let frag = file_entry(&img, "fragmented.bin");
    let fat_at = (g.fat_entry(u32_at(&img, frag + 32 + 20)) as u64) / 512 * 512;
    for (bad, warning) in [
        (
            (dir_at, dir_at + 512),
            format!(
                "1 directory cluster(s) are unreadable (the first at byte {dir_at}): the entries in them are not checked"
            ),
        ),
        (
            (fat_at, fat_at + 512),
            // Every chain through the bad sector's 128 entries: the root,
            // directories, fragmented.bin.
            format!(
                "3 FAT read(s) failed (the first at byte {}): the chains through them are not followed",
                g.fat + 5 * 4
            ),
        ),
    ] {
        assert!(matches!(
            faulty_allocation(&img, bad, false),
            Err(fsimg::Error::Read { .. })
        ));
        let a = faulty_allocation(&img, bad, true).unwrap();
        assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
        assert!(a.warnings.contains(&warning), "{:?}", a.warnings);
        assert_eq!(a.map.used_bytes(), want.map.used_bytes());
    }
}

/// A rescue copy driven in-process (as tests/rescue.rs does): the main
/// boot sector and a bitmap sector unreadable. The volume opens from the
/// backup region, the bitmap sector's clusters are copied as used, the
/// mapfile records both bad sectors and the output holds the bad-sector
/// marker there and the volume's bytes elsewhere in what is used.
#[test]
fn rescue_copy_with_a_mapfile_in_process() {
    use fsimg::copier::BAD_SECTOR_MARKER;
    use fsimg::mapfile::Mapfile;
    use fsimg::ops::{Resume, rescue_copy};
    use fsimg::report::Silent;
    use fsimg::sink::{FileMode, FileSink};
    use fsimg::source::Source;

    let img = image("exfat", "exfat-4k");
    let g = geo(&img);
    let bitmap = g.cluster(u32_at(&img, bitmap_entry(&img, 0) + 20)) as u64;
    // Two bad ranges: a Faulty source fails one, so chain two.
    struct Two(Faulty, (u64, u64));
    impl Source for Two {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            let end = offset + buf.len() as u64;
            if offset < self.1.1 && self.1.0 < end {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            self.0.read_exact_at(buf, offset)
        }
        fn name(&self) -> &str {
            "two"
        }
    }
    let d = Two(
        Faulty {
            data: img.clone(),
            bad: (0, 512),
        },
        (bitmap, bitmap + 512),
    );
    let mut fs = open(&d, FsChoice::Auto).unwrap();
    assert!(
        fs.allocation(&d).is_err(),
        "no rescue: the bitmap read fails"
    );
    fs.set_rescue(true);
    let a = fs.allocation(&d).unwrap();
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    assert!(
        a.warnings[0].starts_with("the main boot region is damaged (exfat: 512 bytes of the main boot region at byte 0 are unreadable)"),
        "{:?}",
        a.warnings
    );
    assert!(a.warnings.contains(&format!(
        "1 allocation bitmap sector(s) are unreadable (the first at byte {bitmap}): the clusters they describe are copied"
    )));
    // The unreadable sector describes clusters 2..4097: all of the 1536.
    let unit = u64::from(a.map.cluster_size());
    let heap_units = (g.clusters * g.cs as u64) / unit;
    assert_eq!(
        a.map.count_used(g.heap as u64 / unit, heap_units),
        heap_units
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    let map = dir.path().join("out.map");
    let resume = Resume {
        mapfile: Some(map.clone()),
        retries: 0,
    };
    let mut sink = FileSink::open(&out, FileMode::Create, d.size(), None).unwrap();
    let stats = rescue_copy(
        &d,
        &a.map,
        &mut sink,
        Mapfile::new(d.size()),
        &resume,
        &Silent,
    )
    .unwrap();
    assert_eq!(stats.bad.len(), 2, "{:?}", stats.bad);
    let text = fs::read_to_string(&map).unwrap();
    for at in [0, bitmap] {
        assert!(
            text.contains(&format!("0x{at:08X}  0x00000200  -")),
            "{at}: {text}"
        );
    }
    let o = fs::read(&out).unwrap();
    assert_eq!(&o[..10], BAD_SECTOR_MARKER);
    assert_eq!(&o[bitmap as usize..bitmap as usize + 10], BAD_SECTOR_MARKER);
    assert!(o[512..bitmap as usize] == img[512..bitmap as usize]);
}
