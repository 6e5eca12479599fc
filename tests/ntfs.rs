//! NTFS: clones and image round trips of every NTFS test image, checked
//! against ntfsclone's used-cluster counts recorded beside each image, a
//! file-by-file walk with the ntfs crate, ntfsfix -n and an ntfs-3g mount;
//! and every bad input the NTFS module refuses.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read};
use std::path::Path;
use std::process::Command;

use common::*;
use fsimg::fs::{FsChoice, open};
use fsimg::source::MemSource;
use ntfs::structured_values::NtfsFileNamespace;
use ntfs::{NtfsAttributeFlags, NtfsAttributeType, NtfsFile};

fn ntfs_images() -> Vec<String> {
    let names = images("ntfs");
    assert!(names.len() >= 3, "NTFS test images are missing");
    names
}

/// What a file-by-file comparison sees of one path.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    /// The ntfs crate cannot decompress: compared by size here, by content
    /// through ntfs-3g in `ntfs3g_sees_the_same_files`.
    Compressed(u64),
    /// The crate could not list the rest of this directory.
    Unlisted,
}

/// Checks a tree read by the crate against NAME.files, the listing
/// ntfs-3g gave when the image was made (`sha256  size  path`, or
/// `dir  -  path`): every entry read matches, and most were read.
fn assert_matches_manifest(name: &str, t: &BTreeMap<String, Entry>) {
    use sha2::Digest;
    let manifest = fs::read_to_string(testdata(&format!("ntfs/{name}.files"))).unwrap();
    let mut seen = 0;
    let mut total = 0;
    for line in manifest.lines() {
        let mut f = line.splitn(3, "  ");
        let (hash, size, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        total += 1;
        let Some(e) = t.get(&format!("/{path}")) else {
            continue;
        };
        seen += 1;
        match e {
            Entry::Dir => assert_eq!(hash, "dir", "{name}: {path}"),
            Entry::File(data) => {
                assert_eq!(data.len().to_string(), size, "{name}: {path}");
                let h: String = sha2::Sha256::digest(data)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(h, hash, "{name}: {path}");
            }
            Entry::Compressed(len) => assert_eq!(len.to_string(), size, "{name}: {path}"),
            Entry::Unlisted => {}
        }
    }
    assert!(
        seen * 2 > total,
        "{name}: the crate read only {seen} of {total} entries"
    );
}

/// Every directory and file outside the system files, read by the ntfs
/// crate (written elsewhere).
fn tree(img: &[u8]) -> BTreeMap<String, Entry> {
    fn walk(
        ntfs: &ntfs::Ntfs,
        fs: &mut Cursor<&[u8]>,
        dir: &NtfsFile<'_>,
        prefix: &str,
        out: &mut BTreeMap<String, Entry>,
    ) {
        let idx = dir.directory_index(fs).expect("directory index");
        let mut entries = idx.entries();
        let mut children = Vec::new();
        while let Some(e) = entries.next(fs) {
            // The crate fails on some large indexes (a VCN it computes out
            // of bounds); the source fails the same way, so the listing
            // stops there on both sides and ntfs-3g checks the rest.
            let Ok(e) = e else {
                out.insert(format!("{prefix}/"), Entry::Unlisted);
                break;
            };
            let Some(key) = e.key() else { continue };
            let name = key.expect("file name");
            if name.namespace() == NtfsFileNamespace::Dos {
                continue;
            }
            let n = name.name().to_string_lossy();
            if n == "." || (prefix.is_empty() && n.starts_with('$')) {
                continue;
            }
            children.push((n, name.is_directory(), e.file_reference()));
        }
        for (n, is_dir, reference) in children {
            let path = format!("{prefix}/{n}");
            let file = reference.to_file(ntfs, fs).expect("file record");
            if is_dir {
                out.insert(path.clone(), Entry::Dir);
                walk(ntfs, fs, &file, &path, out);
                continue;
            }
            let entry = match file.data(fs, "") {
                None => Entry::File(Vec::new()),
                Some(item) => {
                    let item = item.expect("$DATA");
                    let attr = item.to_attribute().expect("attribute");
                    if attr.flags().contains(NtfsAttributeFlags::COMPRESSED) {
                        Entry::Compressed(attr.value_length())
                    } else {
                        let mut v = Vec::new();
                        attr.value(fs)
                            .expect("value")
                            .attach(fs)
                            .read_to_end(&mut v)
                            .expect("file data");
                        Entry::File(v)
                    }
                }
            };
            out.insert(path, entry);
        }
    }
    let mut fs = Cursor::new(img);
    let mut ntfs = ntfs::Ntfs::new(&mut fs).expect("ntfs crate opens it");
    ntfs.read_upcase_table(&mut fs).expect("upcase table");
    let root = ntfs.root_directory(&mut fs).expect("root");
    let mut out = BTreeMap::new();
    walk(&ntfs, &mut fs, &root, "", &mut out);
    out
}

/// A value of `fsimg info` for the volume in `img`.
fn detail(img: &[u8], key: &str) -> u64 {
    let src = MemSource::new(img.to_vec(), "img");
    let a = open(&src, FsChoice::Auto)
        .unwrap()
        .allocation(&src)
        .unwrap();
    a.details
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("{key} missing"))
}

fn assert_ntfsfix_clean(path: &Path) {
    if !have("ntfsfix") {
        return;
    }
    let out = Command::new("ntfsfix")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("processed successfully"),
        "ntfsfix -n {}: {text}{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn used_counts_match_ntfsclone() {
    for name in ntfs_images() {
        let e = expected_in("ntfs", &name);
        let img = image("ntfs", &name);
        let src = MemSource::new(img.clone(), &name);
        let fs = open(&src, FsChoice::Auto).unwrap();
        assert_eq!(fs.kind().name(), "ntfs", "{name}");
        assert_eq!(fs.device_size(), img.len() as u64, "{name}");
        let alloc = fs.allocation(&src).unwrap();
        assert!(
            alloc.inconsistencies.is_empty() && alloc.warnings.is_empty(),
            "{name}: {:?} {:?}",
            alloc.inconsistencies,
            alloc.warnings
        );
        let used = expected_u64(&e, "ntfsclone_used_clusters");
        assert_eq!(detail(&img, "NTFS clusters in use"), used, "{name}");
        assert_eq!(
            detail(&img, "clusters used in $Bitmap"),
            expected_u64(&e, "bitmap_used_clusters"),
            "{name}"
        );
        // The saved bytes: ntfsclone's clusters and the sectors after the
        // last cluster, with the backup boot sector.
        let cs = expected_u64(&e, "cluster_size");
        let total = expected_u64(&e, "total_clusters");
        assert_eq!(
            alloc.map.used_bytes(),
            used * cs + (img.len() as u64 - total * cs),
            "{name}: used bytes"
        );
    }
}

#[test]
fn clone_and_round_trip_every_image() {
    for name in ntfs_images() {
        let dir = tempfile::tempdir().unwrap();
        let source = image("ntfs", &name);
        let src = dir.path().join("src.img");
        fs::write(&src, &source).unwrap();
        let s = src.to_str().unwrap();

        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", clone.to_str().unwrap(), s]);
        let cloned = fs::read(&clone).unwrap();
        assert_used_only(&name, &source, &cloned);
        assert_eq!(
            source[source.len() - 512..],
            cloned[cloned.len() - 512..],
            "{name}: backup boot sector"
        );
        let files = tree(&source);
        assert_matches_manifest(&name, &files);
        assert_eq!(files, tree(&cloned), "{name}: files differ");
        assert_ntfsfix_clean(&clone);

        let out = run_ok(&["-q", "-o", "-", s]);
        assert!(out.stdout == cloned, "{name}: stdout differs");

        let over = dir.path().join("over.img");
        fs::write(&over, vec![0xA5u8; source.len()]).unwrap();
        run_ok(&["-q", "-O", over.to_str().unwrap(), s]);
        assert_eq!(tree(&fs::read(&over).unwrap()), files, "{name}: -O");

        assert_round_trips(&name, dir.path(), s, &cloned, "ntfs");
    }
}

/// ntfs-3g (written elsewhere, and able to decompress) mounts the clone
/// and sees the same files as in the source.
#[test]
fn ntfs3g_sees_the_same_files() {
    if !root() || !have("ntfs-3g") || !have("diff") {
        return;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipping a check: no /dev/fuse for ntfs-3g");
        return;
    }
    for name in ntfs_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        fs::write(&src, image("ntfs", &name)).unwrap();
        let clone = dir.path().join("clone.img");
        let img = dir.path().join("x.fsimg");
        run_ok(&[
            "-q",
            "-s",
            "-o",
            img.to_str().unwrap(),
            src.to_str().unwrap(),
        ]);
        run_ok(&[
            "-q",
            "-r",
            "-o",
            clone.to_str().unwrap(),
            img.to_str().unwrap(),
        ]);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let _ma = Ntfs3g::mount(&src, &a);
        let _mb = Ntfs3g::mount(&clone, &b);
        let out = Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&a)
            .arg(&b)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// A read-only ntfs-3g mount, unmounted on drop.
struct Ntfs3g(std::path::PathBuf);

impl Ntfs3g {
    fn mount(img: &Path, dir: &Path) -> Ntfs3g {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("ntfs-3g")
            .arg("-o")
            .arg("ro")
            .arg(img)
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ntfs-3g: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ntfs3g(dir.to_path_buf())
    }
}

impl Drop for Ntfs3g {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

// ---- Bad input. Structures are located with the ntfs crate. ----

/// The first test image, by name.
fn first() -> String {
    ntfs_images()
        .into_iter()
        .find(|n| n.contains("4k"))
        .unwrap_or_else(|| ntfs_images().remove(0))
}

/// Byte offset of a known file record.
fn record_offset(img: &[u8], n: u64) -> usize {
    let mut fs = Cursor::new(img);
    let ntfs = ntfs::Ntfs::new(&mut fs).unwrap();
    let f = ntfs.file(&mut fs, n).unwrap();
    f.position().value().unwrap().get() as usize
}

/// Byte offset of the first attribute of type `ty` in record `n`.
fn attribute_offset(img: &[u8], n: u64, ty: NtfsAttributeType) -> usize {
    let mut fs = Cursor::new(img);
    let ntfs = ntfs::Ntfs::new(&mut fs).unwrap();
    let f = ntfs.file(&mut fs, n).unwrap();
    let a = f
        .attributes_raw()
        .map(|a| a.unwrap())
        .find(|a| a.ty().ok() == Some(ty))
        .expect("attribute");
    a.position().value().unwrap().get() as usize
}

/// Byte offset of `$Bitmap`'s data.
fn bitmap_offset(img: &[u8]) -> usize {
    let mut fs = Cursor::new(img);
    let ntfs = ntfs::Ntfs::new(&mut fs).unwrap();
    let f = ntfs.file(&mut fs, 6).unwrap();
    let item = f.data(&mut fs, "").unwrap().unwrap();
    let attr = item.to_attribute().unwrap();
    attr.value(&mut fs)
        .unwrap()
        .data_position()
        .value()
        .unwrap()
        .get() as usize
}

/// Writes an edited copy of the first image; returns (dir, source path).
fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("ntfs", &first());
    edit(&mut img);
    let src = dir.path().join("src.img");
    fs::write(&src, img).unwrap();
    let s = src.to_str().unwrap().to_string();
    (dir, s)
}

/// Clones an edited image and expects `needle` with status 1 and no
/// output left behind.
fn refused(
    extra: &[&str],
    edit: impl FnOnce(&mut Vec<u8>),
    needle: &str,
) -> (tempfile::TempDir, String) {
    let (dir, s) = edited(edit);
    let out = dir.path().join("o.img");
    let mut args = extra.to_vec();
    args.extend(["-o", out.to_str().unwrap(), &s]);
    run_err(&args, needle);
    assert!(!out.exists());
    (dir, s)
}

#[test]
fn dirty_volume_needs_force() {
    let (dir, s) = refused(
        &[],
        |img| {
            // $VOLUME_INFORMATION: flags at byte 10 of the value.
            let a = attribute_offset(img, 3, NtfsAttributeType::VolumeInformation);
            let value = a + usize::from(u16::from_le_bytes([img[a + 0x14], img[a + 0x15]]));
            assert_ne!((value + 0x0A) % 512, 510, "not an update sequence slot");
            img[value + 0x0A] |= 1;
        },
        "the NTFS volume is scheduled for a check or was shut down uncleanly (dirty flag in $Volume); boot Windows (or run chkdsk /f there), or use --force to copy it anyway",
    );
    let out = dir.path().join("o.img");
    run_ok(&["-q", "--force", "-o", out.to_str().unwrap(), &s]);
    let info = run_ok(&["info", &s]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("dirty flag in $Volume"));
}

/// A free cluster marked used in `$Bitmap`, and a used one marked free.
#[test]
fn bitmap_disagreeing_with_the_mft_needs_ignore_fs_check() {
    let img = image("ntfs", &first());
    let src = MemSource::new(img.clone(), "img");
    let map = open(&src, FsChoice::Auto)
        .unwrap()
        .allocation(&src)
        .unwrap()
        .map;
    let free = (64..map.total_clusters() - 1)
        .find(|&c| !map.is_used(c))
        .unwrap();
    let used = (64..map.total_clusters() - 1)
        .rev()
        .find(|&c| map.is_used(c))
        .unwrap();
    let bm = bitmap_offset(&img);
    for (c, needle) in [
        (
            free,
            format!("1 cluster(s) marked used in $Bitmap but used by no file ({free})"),
        ),
        (
            used,
            format!("1 cluster(s) used by files but free in $Bitmap ({used})"),
        ),
    ] {
        let (dir, s) = refused(
            &[],
            |img| img[bm + (c / 8) as usize] ^= 1 << (c % 8),
            &format!(
                "filesystem inconsistency: $Bitmap disagrees with the MFT: {needle}; run chkdsk /f on Windows (then reboot it twice), or use --ignore-fs-check"
            ),
        );
        // Overridden, the union is copied: the cluster either side uses.
        let out = dir.path().join("o.img");
        run_ok(&["-q", "--ignore-fs-check", "-o", out.to_str().unwrap(), &s]);
        let cs = map.cluster_size() as usize;
        let cloned = fs::read(&out).unwrap();
        let source = fs::read(&s).unwrap();
        let r = c as usize * cs..(c as usize + 1) * cs;
        assert!(cloned[r.clone()] == source[r], "cluster {c} copied");
    }
}

#[test]
fn corrupt_boot_sectors() {
    for (at, bytes, needle) in [
        (
            11,
            &[0x2C, 0x01][..],
            "ntfs: invalid bytes per sector 300 at byte 11",
        ),
        (
            13,
            &[3][..],
            "ntfs: invalid sectors per cluster 0x03 at byte 13",
        ),
        (
            0x40,
            &[0][..],
            "ntfs: invalid MFT record size field 0x00 at byte 64",
        ),
        (
            0x30,
            &[0xFF; 8][..],
            "ntfs: $MFT cluster 18446744073709551615 at byte 48 is past the last cluster",
        ),
        (
            510,
            &[0, 0][..],
            "ntfs: boot sector end marker is 0x0000 at byte 510",
        ),
    ] {
        refused(
            &[],
            |img| img[at..at + bytes.len()].copy_from_slice(bytes),
            needle,
        );
    }
    refused(
        &["--fs-type", "ntfs"],
        |img| img[3..7].copy_from_slice(b"XXXX"),
        "ntfs: no NTFS signature at byte 3 (found \"XXXX    \")",
    );
    refused(
        &[],
        |img| img[3..7].copy_from_slice(b"XXXX"),
        "no supported filesystem found",
    );
}

/// A torn write in a user file's record.
#[test]
fn corrupt_mft_record() {
    let img = image("ntfs", &first());
    // The first user record in use (records 0-23 are system files).
    let (n, at) = (24..4096u64)
        .find_map(|n| {
            let mut fs = Cursor::new(&img[..]);
            let ntfs = ntfs::Ntfs::new(&mut fs).unwrap();
            let f = ntfs.file(&mut fs, n).ok()?;
            f.flags()
                .contains(ntfs::NtfsFileFlags::IN_USE)
                .then(|| (n, f.position().value().unwrap().get()))
        })
        .unwrap();
    let (dir, s) = refused(
        &[],
        |img| img[at as usize + 510] ^= 0xFF,
        &format!(
            "filesystem inconsistency: MFT record {n} at byte {at} is corrupt: update sequence mismatch at byte 510 of the record (a torn write)"
        ),
    );
    let out = dir.path().join("o.img");
    run_ok(&["-q", "--ignore-fs-check", "-o", out.to_str().unwrap(), &s]);
}

#[test]
fn bitmap_shorter_than_the_volume() {
    let img = image("ntfs", &first());
    let clusters = expected_u64(&expected_in("ntfs", &first()), "total_clusters");
    refused(
        &[],
        |img| {
            // $Bitmap's $DATA: data_size at byte 0x30 of the attribute.
            let a = attribute_offset(img, 6, NtfsAttributeType::Data);
            img[a + 0x30..a + 0x38].copy_from_slice(&16u64.to_le_bytes());
        },
        &format!("ntfs: $Bitmap holds 128 bits but the volume has {clusters} clusters"),
    );
    drop(img);
}

#[test]
fn truncated_volume() {
    let (dir, s) = edited(|img| img.truncate(img.len() - 4096));
    let out = dir.path().join("o.img");
    let size = image("ntfs", &first()).len();
    run_err(&["-o", out.to_str().unwrap(), &s], &format!("{size}"));
    assert!(!out.exists());
}

/// Record 0 of `$MFT` torn: its copy in `$MFTMirr` is used, with a
/// warning, and the clone is still exact.
#[test]
fn torn_mft_record_zero_uses_the_mirror() {
    let img = image("ntfs", &first());
    let at = record_offset(&img, 0);
    let (dir, s) = edited(|img| img[at + 510] ^= 0xFF);
    let out = dir.path().join("o.img");
    let r = run_ok(&["-o", out.to_str().unwrap(), &s]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!(
            "MFT record 0 at byte {at} is unusable (update sequence mismatch at byte 510 of the record (a torn write)); using its copy in $MFTMirr"
        )),
        "{err}"
    );
    assert!(err.contains("using MFT record 6"), "{err}");
    let used = |p: &Path| {
        let text =
            String::from_utf8_lossy(&run_ok(&["info", p.to_str().unwrap()]).stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("NTFS clusters in use"))
            .map(str::to_string)
    };
    assert_eq!(used(&out), used(Path::new(&s)));
    assert!(used(&out).is_some());
    let cloned = fs::read(&out).unwrap();
    assert_used_only("torn", &fs::read(&s).unwrap(), &cloned);
}

/// Clone and restore onto a block device (a loop device): only used
/// clusters are written, and the result reads back the same.
#[test]
fn clone_and_restore_onto_a_device() {
    if !root() || !have("losetup") {
        return;
    }
    let name = first();
    let dir = tempfile::tempdir().unwrap();
    let source = image("ntfs", &name);
    let src = dir.path().join("src.img");
    fs::write(&src, &source).unwrap();
    let s = src.to_str().unwrap();
    let target = dir.path().join("disk.img");
    fs::write(&target, vec![0xA5u8; source.len()]).unwrap();
    let l = Loop::attach(&target, false);
    run_ok(&["-q", "-O", &l.dev, s]);
    let disk = fs::read(&l.dev).unwrap();
    assert_eq!(tree(&disk), tree(&source));
    assert_eq!(disk[disk.len() - 512..], source[source.len() - 512..]);
    // A free cluster kept the device's old bytes: nothing else was written.
    let src_mem = MemSource::new(source.clone(), "src");
    let map = open(&src_mem, FsChoice::Auto)
        .unwrap()
        .allocation(&src_mem)
        .unwrap()
        .map;
    let free = (0..map.total_clusters())
        .find(|&c| !map.is_used(c))
        .unwrap();
    let cs = map.cluster_size() as usize;
    assert!(
        disk[free as usize * cs..(free as usize + 1) * cs]
            .iter()
            .all(|&b| b == 0xA5)
    );

    let img = dir.path().join("x.fsimg");
    run_ok(&["-q", "-s", "-z", "-o", img.to_str().unwrap(), s]);
    fs::write(&l.dev, vec![0u8; source.len()]).unwrap();
    run_ok(&["-q", "-r", "-O", &l.dev, img.to_str().unwrap()]);
    let disk = fs::read(&l.dev).unwrap();
    assert_used_only(&name, &source, &disk);
    assert_eq!(tree(&disk), tree(&source));
}

/// A volume in a borrowed buffer.
struct Slice<'a>(&'a [u8]);

impl fsimg::source::Source for Slice<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self.0[o..o + buf.len()]);
        Ok(())
    }
    fn name(&self) -> &str {
        "mutated"
    }
}

/// Random bytes of the boot sector, the first MFT records and `$Bitmap`
/// changed: opening the volume and reading its map answer Ok or Err, and
/// never panic or hang.
#[test]
fn mutated_metadata_never_panics() {
    let name = ntfs_images()
        .into_iter()
        .find(|n| n.contains("512"))
        .unwrap_or_else(first);
    let mut img = image("ntfs", &name);
    let mft = record_offset(&img, 0);
    let bitmap = bitmap_offset(&img);
    let regions = [(0usize, 512usize), (mft, 64 * 1024), (bitmap, 4096)];
    let mut rng = Rng::new(0x5EED_1234_ABCD_0001);
    let iterations = if cfg!(debug_assertions) { 2000 } else { 20_000 };
    let (mut opened, mut mapped) = (0, 0);
    let start = std::time::Instant::now();
    for i in 0..iterations {
        let mut saved = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let (start, len) = regions[rng.below(3) as usize];
            let at = start + rng.below(len as u64) as usize;
            saved.push((at, img[at]));
            img[at] = match rng.below(3) {
                0 => img[at] ^ (1 << rng.below(8)),
                1 => 0xFF,
                _ => rng.next() as u8,
            };
        }
        let r = std::panic::catch_unwind(|| {
            let src = Slice(&img);
            let fs = open(&src, FsChoice::Auto).ok()?;
            let _ = fs.describe();
            Some(fs.allocation(&src).is_ok())
        });
        match r {
            Err(_) => {
                let path = std::env::temp_dir().join(format!("fsimg-ntfs-mutation-{i}.img"));
                let _ = fs::write(&path, &img);
                panic!("mutation {i} panicked; saved to {}", path.display());
            }
            Ok(Some(ok)) => {
                opened += 1;
                mapped += usize::from(ok);
            }
            Ok(None) => {}
        }
        for (at, b) in saved.into_iter().rev() {
            img[at] = b;
        }
    }
    eprintln!(
        "{iterations} mutations: {opened} opened, {mapped} mapped, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// 16-byte windows of every file's contents that are not all one byte.
fn content_windows(t: &BTreeMap<String, Entry>) -> std::collections::HashSet<[u8; 16]> {
    let mut set = std::collections::HashSet::new();
    for e in t.values() {
        let Entry::File(data) = e else { continue };
        for w in data.chunks_exact(16).step_by(7) {
            if w.iter().any(|&b| b != w[0]) {
                set.insert(<[u8; 16]>::try_from(w).unwrap());
            }
        }
    }
    set
}

/// `-m`: the metadata image restores to a volume ntfsfix accepts, with the
/// same files and sizes, every file reading as zeros, no byte of any
/// file's contents in the image, and timestamps at 1970.
#[test]
fn metadata_only_images() {
    for name in ntfs_images() {
        let dir = tempfile::tempdir().unwrap();
        let source = image("ntfs", &name);
        let src = dir.path().join("src.img");
        fs::write(&src, &source).unwrap();
        let s = src.to_str().unwrap();
        let meta = dir.path().join("m.fsimg");
        let full = dir.path().join("f.fsimg");
        run_ok(&["-q", "-m", "-s", "-o", meta.to_str().unwrap(), s]);
        run_ok(&["-q", "-s", "-o", full.to_str().unwrap(), s]);
        run_ok(&["verify", meta.to_str().unwrap()]);
        let info = run_ok(&["info", meta.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&info.stdout).contains("metadata-only"));
        let restored = dir.path().join("m.img");
        let out = run_ok(&[
            "-r",
            "-o",
            restored.to_str().unwrap(),
            meta.to_str().unwrap(),
        ]);
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("metadata-only image: file contents will read as zeros")
        );
        let (m, f) = (
            fs::metadata(&meta).unwrap().len(),
            fs::metadata(&full).unwrap().len(),
        );
        eprintln!(
            "{name}: metadata image {m} bytes, full image {f} bytes ({:.1} %)",
            100.0 * m as f64 / f as f64
        );
        assert!(m * 4 < f, "{name}: {m} of {f}");

        // A direct metadata clone is the same volume.
        let clone = dir.path().join("m-clone.img");
        run_ok(&["-q", "-m", "-o", clone.to_str().unwrap(), s]);
        let volume = fs::read(&restored).unwrap();
        assert!(
            fs::read(&clone).unwrap() == volume,
            "{name}: -m clone differs"
        );
        assert_ntfsfix_clean(&restored);

        let before = tree(&source);
        let after = tree(&volume);
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>(),
            "{name}: listing"
        );
        for (path, e) in &after {
            match (e, &before[path]) {
                (Entry::File(a), Entry::File(b)) => {
                    assert_eq!(a.len(), b.len(), "{name}: {path} size");
                    assert!(a.iter().all(|&x| x == 0), "{name}: {path} not zero");
                }
                (a, b) => assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b)),
            }
        }
        // No file contents, and no deleted file's, in the image.
        let windows = content_windows(&before);
        assert!(windows.len() > 100, "{name}: {} windows", windows.len());
        for (what, bytes) in [("image", fs::read(&meta).unwrap()), ("volume", volume)] {
            let leaked = bytes.windows(16).filter(|w| windows.contains(*w)).count();
            assert_eq!(leaked, 0, "{name}: {leaked} content windows in the {what}");
            assert!(
                !bytes.windows(17).any(|w| w == b"STALE-DATA-MARKER"),
                "{name}: deleted data in the {what}"
            );
        }
    }
}

/// ntfs-3g mounts a metadata-only copy: same paths, types and sizes, every
/// file zeros, timestamps 1970 (kept with --preserve-timestamps).
#[test]
fn ntfs3g_mounts_metadata_only_copies() {
    if !root() || !have("ntfs-3g") || !Path::new("/dev/fuse").exists() {
        return;
    }
    for name in ntfs_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        fs::write(&src, image("ntfs", &name)).unwrap();
        for keep in [false, true] {
            let m = dir.path().join(format!("m-{keep}.img"));
            let mut args = vec!["-q", "-m"];
            if keep {
                args.push("--preserve-timestamps");
            }
            args.extend(["-o", m.to_str().unwrap(), src.to_str().unwrap()]);
            run_ok(&args);
            let (a, b) = (dir.path().join("a"), dir.path().join(format!("b-{keep}")));
            let _ma = Ntfs3g::mount(&src, &a);
            let _mb = Ntfs3g::mount(&m, &b);
            let list = |d: &Path, times: bool| {
                let fmt = if times {
                    "%y %s %T@ %p\n"
                } else {
                    "%y %s %p\n"
                };
                let out = Command::new("find")
                    .arg(".")
                    .args(["-printf", fmt])
                    .current_dir(d)
                    .output()
                    .unwrap();
                let mut l: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect();
                l.sort();
                l
            };
            assert_eq!(list(&a, keep), list(&b, keep), "{name}: listing");
            if !keep {
                let meta = fs::metadata(b.join("README.txt").as_path()).ok();
                if let Some(md) = meta {
                    use std::os::unix::fs::MetadataExt;
                    assert_eq!(md.mtime(), 0, "{name}: timestamps wiped");
                }
            }
            let out = Command::new("sh")
                .arg("-c")
                .arg("find . -type f -exec cat {} + | tr -d '\\000' | wc -c")
                .current_dir(&b)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "0",
                "{name}: contents"
            );
        }
    }
}

/// Undoes (`undo`) or applies the update sequence of the record at `at`.
fn fixups(img: &mut [u8], at: usize, size: usize, undo: bool) {
    let usa = at + usize::from(u16::from_le_bytes([img[at + 4], img[at + 5]]));
    let count = usize::from(u16::from_le_bytes([img[at + 6], img[at + 7]]));
    assert_eq!(count, size / 512 + 1);
    for i in 1..count {
        let end = at + i * 512;
        let slot = usa + 2 * i;
        if undo {
            img.copy_within(slot..slot + 2, end - 2);
        } else {
            img.copy_within(end - 2..end, slot);
            img.copy_within(usa..usa + 2, end - 2);
        }
    }
}

/// A cluster listed in `$BadClus:$Bad` (and, as NTFS does, marked in
/// `$Bitmap`) is neither copied nor an inconsistency; ntfsclone counts the
/// same clusters.
#[test]
fn bad_clusters_are_not_copied() {
    let mut img = image("ntfs", &first());
    let src = MemSource::new(img.clone(), "img");
    let map = open(&src, FsChoice::Auto)
        .unwrap()
        .allocation(&src)
        .unwrap()
        .map;
    let cs = map.cluster_size() as usize;
    let bad = (200..map.total_clusters() - 1)
        .find(|&c| !map.is_used(c))
        .unwrap();
    let rs = 1024;
    let rec = record_offset(&img, 8);
    let attr = {
        let mut fs = Cursor::new(&img[..]);
        let ntfs = ntfs::Ntfs::new(&mut fs).unwrap();
        let f = ntfs.file(&mut fs, 8).unwrap();
        let a = f
            .attributes_raw()
            .map(|a| a.unwrap())
            .find(|a| {
                a.name()
                    .map(|n| n.to_string_lossy() == "$Bad")
                    .unwrap_or(false)
            })
            .expect("$Bad");
        a.position().value().unwrap().get() as usize
    };
    let bitmap = bitmap_offset(&img);
    fixups(&mut img, rec, rs, true);
    let u16at = |b: &[u8], o: usize| usize::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let u32at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let len = u32at(&img, attr + 4);
    assert_eq!(
        u32at(&img, attr + len),
        0xFFFF_FFFF,
        "$Bad is the last attribute"
    );
    let clusters = u64::from_le_bytes(img[attr + 0x18..attr + 0x20].try_into().unwrap()) + 1;
    // Sparse up to `bad`, one real cluster there, sparse to the end.
    let mut pairs = vec![0x04];
    pairs.extend(&(bad as u32).to_le_bytes());
    pairs.push(0x41);
    pairs.push(1);
    pairs.extend(&(bad as u32).to_le_bytes());
    pairs.push(0x04);
    pairs.extend(&((clusters - bad - 1) as u32).to_le_bytes());
    pairs.push(0);
    let mp = attr + u16at(&img, attr + 0x20);
    let new_len = (mp - attr + pairs.len()).div_ceil(8) * 8;
    assert!(attr - rec + new_len + 8 <= rs - 2, "room in record 8");
    img[mp..attr + new_len].fill(0);
    img[mp..mp + pairs.len()].copy_from_slice(&pairs);
    img[attr + 4..attr + 8].copy_from_slice(&(new_len as u32).to_le_bytes());
    img[attr + new_len..attr + new_len + 4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
    let used = (attr - rec + new_len + 8) as u32;
    img[rec + 0x18..rec + 0x1C].copy_from_slice(&used.to_le_bytes());
    fixups(&mut img, rec, rs, false);
    img[bitmap + (bad / 8) as usize] |= 1 << (bad % 8);
    img[bad as usize * cs..(bad as usize + 1) * cs].fill(0x77);

    let src = MemSource::new(img.clone(), "img");
    let a = open(&src, FsChoice::Auto)
        .unwrap()
        .allocation(&src)
        .unwrap();
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    assert!(
        a.warnings
            .contains(&"$BadClus lists 1 bad cluster(s); they are not copied".to_string()),
        "{:?}",
        a.warnings
    );
    assert!(!a.map.is_used(bad));
    assert_eq!(a.map.used_clusters(), map.used_clusters());

    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("bad.img");
    fs::write(&s, &img).unwrap();
    let out = dir.path().join("o.img");
    run_ok(&["-q", "-o", out.to_str().unwrap(), s.to_str().unwrap()]);
    let cloned = fs::read(&out).unwrap();
    assert!(
        cloned[bad as usize * cs..(bad as usize + 1) * cs]
            .iter()
            .all(|&b| b == 0)
    );
    assert_ntfsfix_clean(&out);
    if have("ntfsclone") {
        let r = Command::new("ntfsclone")
            .args(["-s", "-o", "-"])
            .arg(&s)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        // The header: magic (16), version (2), cluster size (4), device size
        // (8), clusters (8), then the clusters in use.
        let inuse = u64::from_le_bytes(r.stdout[38..46].try_into().unwrap());
        assert_eq!(
            inuse,
            detail(&img, "NTFS clusters in use"),
            "ntfsclone's count"
        );
    }
}
