//! Metadata-only copies (`-m`) of every ext and FAT test image: the
//! restored volume passes its checker, lists the same paths, types and
//! sizes as the source, every regular file reads as zeros, and no file
//! content appears anywhere in the image. For ext, every block e2image -r
//! writes is in fsimg's metadata set.
//!
//! Run with `cargo test --release --test metadata -- --nocapture` to see
//! the size of each metadata image against the full image.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{Cursor, Read};
use std::path::Path;
use std::process::Command;

use common::*;
use fsimg::fs::{FsChoice, open};
use fsimg::source::FileSource;

/// Length of the content windows looked for in metadata images.
const WINDOW: usize = 32;

/// Path -> (kind, size, content or the error reading it). Kinds: 'd'
/// directory, 'f' regular file, 'l' symlink (content: its target), 'o'
/// other.
type Listing = BTreeMap<String, (char, u64, Result<Vec<u8>, String>)>;

/// Every file of an ext volume, read by ext4-view, or by debugfs rdump
/// for the features ext4-view refuses (meta_bg).
fn ext_listing(image: &Path) -> Option<Listing> {
    match ext4_view::Ext4::load_from_path(image) {
        Ok(fs) => Some(ext4_view_listing(&fs)),
        Err(e) => {
            eprintln!(
                "ext4-view cannot read {}: {e}; using debugfs",
                image.display()
            );
            debugfs_listing(image)
        }
    }
}

fn ext4_view_listing(fs: &ext4_view::Ext4) -> Listing {
    let mut out = BTreeMap::new();
    let mut dirs = vec![ext4_view::PathBuf::new("/")];
    while let Some(dir) = dirs.pop() {
        for entry in fs.read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name();
            if name.as_str() == Ok(".") || name.as_str() == Ok("..") {
                continue;
            }
            let path = entry.path();
            let md = fs.symlink_metadata(&path).expect("metadata");
            let (kind, content) = if md.is_dir() {
                dirs.push(path.clone());
                ('d', Ok(Vec::new()))
            } else if md.is_symlink() {
                (
                    'l',
                    fs.read_link(&path)
                        .map(|l| l.as_ref().to_vec())
                        .map_err(|e| e.to_string()),
                )
            } else if md.file_type().is_regular_file() {
                ('f', fs.read(&path).map_err(|e| e.to_string()))
            } else {
                ('o', Ok(Vec::new()))
            };
            let key = path.to_str().expect("utf-8 name").to_string();
            out.insert(key, (kind, md.len(), content));
        }
    }
    out
}

/// The tree debugfs rdump writes out (sizes are the contents' lengths).
fn debugfs_listing(image: &Path) -> Option<Listing> {
    if !have("debugfs") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", dir.path().display()))
        .arg(image)
        .output()
        .expect("debugfs runs");
    assert!(out.status.success(), "debugfs rdump failed");
    let mut listing = BTreeMap::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let key = format!("/{}", p.strip_prefix(dir.path()).unwrap().display());
            let md = fs::symlink_metadata(&p).unwrap();
            let entry = if md.is_dir() {
                stack.push(p.clone());
                ('d', 0, Ok(Vec::new()))
            } else if md.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                let t = t.to_str().unwrap().as_bytes().to_vec();
                ('l', t.len() as u64, Ok(t))
            } else {
                let c = fs::read(&p).unwrap();
                ('f', c.len() as u64, Ok(c))
            };
            listing.insert(key, entry);
        }
    }
    Some(listing)
}

/// Every directory and file of a FAT volume, read by the fatfs crate.
fn fat_listing(img: Vec<u8>) -> Listing {
    fn walk<T: fatfs::ReadWriteSeek>(dir: fatfs::Dir<'_, T>, prefix: &str, out: &mut Listing) {
        for e in dir.iter() {
            let e = e.expect("dir entry");
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}/{name}");
            if e.is_dir() {
                out.insert(path.clone(), ('d', 0, Ok(Vec::new())));
                walk(e.to_dir(), &path, out);
            } else {
                let mut v = Vec::new();
                e.to_file().read_to_end(&mut v).expect("read");
                out.insert(path, ('f', e.len(), Ok(v)));
            }
        }
    }
    let fs = fatfs::FileSystem::new(Cursor::new(img), fatfs::FsOptions::new()).expect("fatfs");
    let mut out = BTreeMap::new();
    walk(fs.root_dir(), "", &mut out);
    out
}

/// Asserts `meta` lists what `source` lists, with the same kinds and
/// sizes and symlink targets, and that every regular file reads as zeros.
fn assert_same_listing_zero_files(name: &str, source: &Listing, meta: &Listing) {
    let keys = |l: &Listing| l.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(source), keys(meta), "{name}: paths differ");
    for (path, (kind, size, content)) in source {
        let (mkind, msize, mcontent) = &meta[path];
        assert_eq!((kind, size), (mkind, msize), "{name}: {path}");
        match (kind, content, mcontent) {
            ('f', Ok(_), Ok(m)) => {
                assert_eq!(m.len() as u64, *size, "{name}: {path} length");
                assert!(m.iter().all(|&b| b == 0), "{name}: {path} is not zeros");
            }
            // ext4-view 1.0 cannot read some sparse ext2 files: then it
            // fails the same way on both.
            ('f', Err(e), Err(m)) => assert_eq!(e, m, "{name}: {path}"),
            ('l', c, m) => assert_eq!(c, m, "{name}: {path} target"),
            ('d' | 'o', _, _) => {}
            (_, c, m) => panic!("{name}: {path}: {:?} vs {:?}", c.is_ok(), m.is_ok()),
        }
    }
}

/// Every 32-byte window of the regular files' contents (at multiples of
/// 32) that is not one byte repeated.
fn content_windows(listing: &Listing) -> HashSet<[u8; WINDOW]> {
    let mut out = HashSet::new();
    for (kind, _, content) in listing.values() {
        let (true, Ok(c)) = (*kind == 'f', content) else {
            continue;
        };
        for w in c.chunks_exact(WINDOW) {
            if w.iter().any(|&b| b != w[0]) {
                out.insert(w.try_into().unwrap());
            }
        }
    }
    out
}

/// Asserts no window of `windows` occurs anywhere in `bytes`.
fn assert_no_content(name: &str, what: &str, bytes: &[u8], windows: &HashSet<[u8; WINDOW]>) {
    assert!(windows.len() > 100, "{name}: too few content windows");
    if let Some(at) = bytes
        .windows(WINDOW)
        .position(|w| windows.contains(<&[u8; WINDOW]>::try_from(w).unwrap()))
    {
        panic!(
            "{name}: file content in the {what} at byte {at}: {:?}",
            String::from_utf8_lossy(&bytes[at..at + WINDOW])
        );
    }
}

fn size(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

/// What one image's metadata copy measured.
struct Ratios {
    name: String,
    full: u64,
    meta: u64,
    full_z: u64,
    meta_z: u64,
}

/// The metadata image (compressed by default) is a small fraction of the
/// full image, plain or compressed.
fn assert_small(rows: &[Ratios]) {
    for r in rows {
        assert!(r.meta * 20 < r.full, "{}: {} vs {}", r.name, r.meta, r.full);
        assert!(
            r.meta_z * 10 < r.full_z,
            "{}: compressed {} vs {}",
            r.name,
            r.meta_z,
            r.full_z
        );
    }
}

fn print_ratios(kind: &str, rows: &[Ratios]) {
    eprintln!("{kind}: -m -s image (zstd by default) / full image, plain; then both with -z");
    for r in rows {
        eprintln!(
            "  {:20} {:>9} / {:>9} = {:5.1}%   {:>7} / {:>8} = {:5.2}%",
            r.name,
            r.meta,
            r.full,
            100.0 * r.meta as f64 / r.full as f64,
            r.meta_z,
            r.full_z,
            100.0 * r.meta_z as f64 / r.full_z as f64
        );
    }
}

/// Saves `src` with and without -m, plain and compressed, checks info
/// and returns the sizes; restores the metadata image to `restored`.
fn save_and_restore(name: &str, dir: &Path, src: &Path, restored: &Path, force: bool) -> Ratios {
    let s = src.to_str().unwrap();
    let mut sizes = Vec::new();
    for (meta, z) in [(true, false), (false, false), (true, true), (false, true)] {
        let img = dir.join(format!("{meta}-{z}.fsimg"));
        let mut args = vec!["-q", "-s"];
        if force {
            args.push("-f");
        }
        if meta {
            args.push("-m");
        }
        if z {
            args.push("-z");
        }
        args.extend(["-o", img.to_str().unwrap(), s]);
        run_ok(&args);
        run_ok(&["verify", img.to_str().unwrap()]);
        let info = run_ok(&["info", img.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&info.stdout);
        assert_eq!(
            text.contains("metadata-only"),
            meta,
            "{name}: info of a {} image: {text}",
            if meta { "metadata" } else { "full" }
        );
        sizes.push(size(&img));
    }
    let img = dir.join("true-false.fsimg");
    let out = run_ok(&[
        "-q",
        "-r",
        "-o",
        restored.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("metadata-only image"),
        "{name}: restoring a metadata image warns"
    );
    Ratios {
        name: name.to_string(),
        meta: sizes[0],
        full: sizes[1],
        meta_z: sizes[2],
        full_z: sizes[3],
    }
}

/// `-m -o -` writes the restored bytes; `-m -O` onto a file full of 0xAA
/// writes exactly the metadata clusters.
fn check_stdout_and_overwrite(name: &str, dir: &Path, src: &Path, restored: &[u8], force: bool) {
    let s = src.to_str().unwrap();
    let with = |rest: &[&str]| {
        let mut args = vec!["-q", "-m"];
        if force {
            args.push("-f");
        }
        args.extend(rest);
        run_ok(&args)
    };
    let out = with(&["-o", "-", s]);
    assert!(out.stdout == restored, "{name}: -m -o - differs");
    let clone = dir.join("clone.img");
    with(&["-o", clone.to_str().unwrap(), s]);
    assert!(
        fs::read(&clone).unwrap() == restored,
        "{name}: -m -o differs"
    );

    let target = dir.join("target.img");
    fs::write(&target, vec![0xAA; restored.len()]).unwrap();
    with(&["-O", target.to_str().unwrap(), s]);
    let over = fs::read(&target).unwrap();
    let fsrc = FileSource::open(src).unwrap();
    let map = open(&fsrc, FsChoice::Auto)
        .unwrap()
        .metadata(&fsrc)
        .unwrap()
        .allocation
        .map;
    let cs = map.cluster_size() as usize;
    for c in 0..map.total_clusters() as usize {
        let r = c * cs..((c + 1) * cs).min(restored.len());
        if map.is_used(c as u64) {
            assert!(over[r.clone()] == restored[r], "{name}: cluster {c}");
        } else {
            assert!(over[r].iter().all(|&b| b == 0xAA), "{name}: cluster {c}");
        }
    }
}

#[test]
fn ext_metadata_images_restore_clean_with_zero_files() {
    let mut rows = Vec::new();
    for name in ext_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        fs::write(&src, ext_image(&name)).unwrap();
        let restored = dir.path().join("restored.img");
        rows.push(save_and_restore(&name, dir.path(), &src, &restored, false));
        assert_e2fsck_clean(&restored);
        let source = ext_listing(&src);
        let meta = ext_listing(&restored);
        let Some(source) = source else { continue };
        let meta = meta.expect("the restored volume lists");
        assert!(source.len() > 50, "{name}: {} files", source.len());
        assert_same_listing_zero_files(&name, &source, &meta);

        let windows = content_windows(&source);
        let image = fs::read(dir.path().join("true-false.fsimg")).unwrap();
        assert_no_content(&name, "metadata image", &image, &windows);
        let restored_bytes = fs::read(&restored).unwrap();
        assert_no_content(&name, "restored volume", &restored_bytes, &windows);
        // The deleted file's stale blocks are not copied either.
        let stale = b"STALE-DELETED-DATA";
        assert!(
            !image.windows(stale.len()).any(|w| w == stale),
            "{name}: stale data in the image"
        );
        check_stdout_and_overwrite(&name, dir.path(), &src, &restored_bytes, false);
    }
    print_ratios("ext", &rows);
    assert_small(&rows);
}

#[test]
fn fat_metadata_images_restore_clean_with_zero_files() {
    let mut rows = Vec::new();
    for name in images("fat") {
        let dirty = expected_in("fat", &name)
            .get("dirty")
            .is_some_and(|v| v == "1");
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        let source_bytes = image("fat", &name);
        fs::write(&src, &source_bytes).unwrap();
        if dirty {
            // Refused like a full copy, and copied with -f.
            run_err(
                &[
                    "-q",
                    "-m",
                    "-o",
                    dir.path().join("x").to_str().unwrap(),
                    src.to_str().unwrap(),
                ],
                "dirty",
            );
        }
        let restored = dir.path().join("restored.img");
        rows.push(save_and_restore(&name, dir.path(), &src, &restored, dirty));
        if !dirty && have("fsck.fat") {
            let out = Command::new("fsck.fat")
                .arg("-n")
                .arg(&restored)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: fsck.fat -n: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let restored_bytes = fs::read(&restored).unwrap();
        let source = fat_listing(source_bytes);
        assert!(source.len() > 5, "{name}: {} files", source.len());
        let meta = fat_listing(restored_bytes.clone());
        assert_same_listing_zero_files(&name, &source, &meta);

        let windows = content_windows(&source);
        let image = fs::read(dir.path().join("true-false.fsimg")).unwrap();
        assert_no_content(&name, "metadata image", &image, &windows);
        assert_no_content(&name, "restored volume", &restored_bytes, &windows);
        check_stdout_and_overwrite(&name, dir.path(), &src, &restored_bytes, dirty);
    }
    print_ratios("fat", &rows);
    assert_small(&rows);
}

/// Every block e2image -r writes (every block of its sparse output that
/// is not zeros) is in fsimg's metadata set.
#[test]
fn ext_metadata_covers_e2image() {
    if !have("e2image") {
        return;
    }
    for name in ext_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        fs::write(&src, ext_image(&name)).unwrap();
        let raw = dir.path().join("e2image.raw");
        let out = Command::new("e2image")
            .arg("-r")
            .arg(&src)
            .arg(&raw)
            .output()
            .expect("e2image runs");
        assert!(
            out.status.success(),
            "e2image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e2 = fs::read(&raw).unwrap();
        let bs = expected_u64(&expected(&name), "block_size") as usize;
        let fsrc = FileSource::open(&src).unwrap();
        let m = open(&fsrc, FsChoice::Auto)
            .unwrap()
            .metadata(&fsrc)
            .unwrap();
        assert!(
            m.allocation.inconsistencies.is_empty(),
            "{name}: {:?}",
            m.allocation.inconsistencies
        );
        let map = m.allocation.map;
        let cs = map.cluster_size() as usize;
        let mut written = 0;
        for (b, block) in e2.chunks(bs).enumerate() {
            if block.iter().all(|&x| x == 0) {
                continue;
            }
            written += 1;
            assert!(
                map.is_used((b * bs / cs) as u64),
                "{name}: e2image -r writes block {b}, fsimg -m does not keep it"
            );
        }
        assert!(written > 10, "{name}: e2image wrote {written} blocks");
        // And fsimg's copy holds those blocks as e2image does.
        let meta = dir.path().join("meta.img");
        run_ok(&[
            "-q",
            "-m",
            "-o",
            meta.to_str().unwrap(),
            src.to_str().unwrap(),
        ]);
        let ours = fs::read(&meta).unwrap();
        for (b, block) in e2.chunks(bs).enumerate() {
            if block.iter().any(|&x| x != 0) {
                assert!(
                    &ours[b * bs..b * bs + block.len()] == block,
                    "{name}: block {b} differs from e2image's"
                );
            }
        }
    }
}

/// Inline data (mke2fs -O inline_data): regular files' data inside their
/// inodes is wiped, the checksums resealed, e2fsck stays clean.
#[test]
fn ext_inline_data_is_wiped() {
    if !have("mke2fs") || !have("debugfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..20 {
        // 40 bytes: in i_block; 200 bytes: i_block and system.data.
        fs::write(
            tree.join(format!("small{i}")),
            format!("INLINE-SECRET-{i:03}-").repeat(2),
        )
        .unwrap();
        fs::write(
            tree.join("sub").join(format!("mid{i}")),
            format!("MIDSIZE-SECRET-{i:03}-").repeat(10),
        )
        .unwrap();
    }
    fs::write(tree.join("big"), "BLOCK-SECRET-".repeat(2000)).unwrap();
    std::os::unix::fs::symlink("small1", tree.join("link")).unwrap();
    let img = dir.path().join("inline.img");
    let out = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "inline_data",
            "-I",
            "256",
            "-b",
            "4096",
            "-d",
        ])
        .arg(&tree)
        .arg(&img)
        .arg("8M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_e2fsck_clean(&img);
    let source = fs::read(&img).unwrap();
    let secret = b"-SECRET-";
    assert!(source.windows(secret.len()).any(|w| w == secret));

    let meta = dir.path().join("meta.img");
    run_ok(&[
        "-q",
        "-m",
        "-o",
        meta.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert_e2fsck_clean(&meta);
    let bytes = fs::read(&meta).unwrap();
    if let Some(at) = bytes.windows(secret.len()).position(|w| w == secret) {
        panic!("file content at byte {at} of the metadata copy");
    }
    // debugfs reads every file back as zeros, as long as in the source.
    let cat = |img: &Path, path: &str| {
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(img)
            .output()
            .unwrap()
            .stdout
    };
    for path in ["/small3", "/sub/mid7", "/big"] {
        let src = cat(&img, path);
        assert!(src.windows(secret.len()).any(|w| w == secret), "{path}");
        let out = cat(&meta, path);
        assert_eq!(out.len(), src.len(), "{path}");
        assert!(out.iter().all(|&b| b == 0), "{path}");
    }
    let out = Command::new("debugfs")
        .args(["-R", "stat /link"])
        .arg(&meta)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Fast link dest: \"small1\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A FAT32 root directory whose chain loops back on itself: an
/// inconsistency naming the FAT entry, refused without --ignore-fs-check,
/// never a hang.
#[test]
fn fat_directory_loop_is_an_inconsistency() {
    let mut img = image("fat", "fat32");
    let u16at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32at =
        |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    let bps = u16at(&img, 11);
    let fats = img[16] as usize;
    let fat_sectors = u32at(&img, 36);
    let root = u32at(&img, 44);
    let entry = u16at(&img, 14) * bps + root * 4;
    for k in 0..fats {
        let at = entry + k * fat_sectors * bps;
        img[at..at + 4].copy_from_slice(&(root as u32).to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("loop.img");
    fs::write(&src, &img).unwrap();
    let out = dir.path().join("out.img");
    let o = out.to_str().unwrap();
    let s = src.to_str().unwrap();
    let err = run_err(&["-q", "-m", "-o", o, s], "a loop or a cross-link");
    assert!(
        err.contains(&format!(
            "the FAT entry at byte {entry} points to cluster {root}"
        )),
        "{err}"
    );
    run_ok(&["-q", "-m", "--ignore-fs-check", "-o", o, s]);
}

/// A volume in memory that a test mutates between runs.
struct Volume(Vec<u8>);

impl fsimg::source::Source for Volume {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn name(&self) -> &str {
        "mutated"
    }
}

/// Thousands of random byte changes in the metadata of ext and FAT
/// images: the walk and the scrubber answer Ok or Err, never panic.
#[test]
fn mutated_metadata_never_panics() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (kind, name) in [
        ("ext", "ext4-default"),
        ("ext", "ext2-1k"),
        ("ext", "ext4-bigalloc"),
        ("fat", "fat16"),
        ("fat", "fat32"),
    ] {
        let mut vol = Volume(image(kind, name));
        let fs = open(&vol, FsChoice::Auto).unwrap();
        let map = fs.metadata(&vol).unwrap().allocation.map;
        drop(fs);
        let cs = u64::from(map.cluster_size());
        let clusters: Vec<u64> = map
            .runs()
            .flat_map(|r| r.first..r.first + r.count)
            .collect();
        let (mut ok, mut err) = (0, 0);
        for _ in 0..3000 {
            // One to four bytes changed in metadata clusters.
            let mut undo = Vec::new();
            for _ in 0..1 + rand() % 4 {
                let c = clusters[(rand() % clusters.len() as u64) as usize];
                let at = ((c * cs + rand() % cs) as usize).min(vol.0.len() - 1);
                undo.push((at, vol.0[at]));
                vol.0[at] = rand() as u8;
            }
            match open(&vol, FsChoice::Auto).and_then(|fs| fs.metadata(&vol)) {
                Ok(m) => {
                    ok += 1;
                    assert_eq!(m.allocation.map.device_size(), vol.0.len() as u64);
                    if let Some(scrub) = &m.scrub {
                        for run in m.allocation.map.runs().take(50) {
                            let (at, len) = m.allocation.map.run_bytes(run);
                            let mut buf = vol.0[at as usize..(at + len) as usize].to_vec();
                            scrub.scrub(&vol, at, &mut buf);
                        }
                    }
                }
                Err(_) => err += 1,
            }
            for (at, b) in undo.into_iter().rev() {
                vol.0[at] = b;
            }
        }
        eprintln!("{name}: {ok} walks, {err} refusals");
    }
}
