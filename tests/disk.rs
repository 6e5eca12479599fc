//! Whole disks (MBR with logical partitions, GPT, hybrid, 4096-byte
//! sectors): every disk of `testdata/disk/` in every mode, checked with
//! tools no one here wrote: `sfdisk -d` and `sgdisk -v` for the tables,
//! e2fsck, fsck.fat and ntfsfix for each partition, ext4-view and fatfs
//! file walks; and every bad input with its exact message.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use fsimg::source::{FileSource, MemSource, Source};

/// One partition, as `.expected` records it.
#[derive(Clone, Debug)]
struct Part {
    n: u32,
    start: u64,
    size: u64,
    ty: String,
    fs: String,
}

impl Part {
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.size) as usize
    }
}

/// One test disk: its bytes and what `tools/make-disk-testdata.sh`
/// recorded about it with sfdisk, sgdisk and the filesystems' own tools.
struct Case {
    name: String,
    bytes: Vec<u8>,
    e: HashMap<String, String>,
    parts: Vec<Part>,
    sector: u64,
    table: String,
}

impl Case {
    fn load(name: &str) -> Case {
        let e = expected_in("disk", name);
        let mut numbers: Vec<u32> = e
            .keys()
            .filter_map(|k| k.strip_prefix('p')?.strip_suffix("_start")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let parts: Vec<Part> = numbers
            .iter()
            .map(|&n| Part {
                n,
                start: expected_u64(&e, &format!("p{n}_start")),
                size: expected_u64(&e, &format!("p{n}_size")),
                ty: e[&format!("p{n}_type")].clone(),
                fs: e[&format!("p{n}_fs")].clone(),
            })
            .collect();
        assert_eq!(
            parts.len() as u64,
            expected_u64(&e, "partitions"),
            "{name}: partitions"
        );
        let bytes = image("disk", name);
        assert_eq!(bytes.len() as u64, expected_u64(&e, "disk_size"), "{name}");
        Case {
            name: name.to_string(),
            sector: expected_u64(&e, "sector_size"),
            table: e["table"].clone(),
            bytes,
            e,
            parts,
        }
    }

    fn first_start(&self) -> usize {
        self.parts.iter().map(|p| p.start).min().unwrap() as usize
    }

    fn last_end(&self) -> usize {
        self.parts.iter().map(|p| p.start + p.size).max().unwrap() as usize
    }

    fn part(&self, n: u32) -> &Part {
        self.parts.iter().find(|p| p.n == n).expect("partition")
    }

    /// The disk written to `dir/<name>.img`.
    fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join(format!("{}.img", self.name));
        fs::write(&p, &self.bytes).unwrap();
        p
    }

    fn is_gpt(&self) -> bool {
        self.table != "mbr"
    }
}

fn cases() -> Vec<Case> {
    let names = images("disk");
    assert!(names.len() >= 5, "disk test images are missing: {names:?}");
    names.iter().map(|n| Case::load(n)).collect()
}

fn case(name: &str) -> Case {
    Case::load(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sfdisk -d` with the device names taken out: `label`, `label-id`,
/// `unit`, `first-lba`, `last-lba`, `sector-size` and one line per
/// partition ("N: start=..., size=..., type=..., uuid=..., name=...").
fn sfdisk_dump(path: &Path) -> Option<Vec<String>> {
    if !have("sfdisk") {
        return None;
    }
    let out = Command::new("sfdisk").arg("-d").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk -d {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(normalize_sfdisk(&String::from_utf8_lossy(&out.stdout)))
}

fn normalize_sfdisk(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("device:"))
        .map(|l| match l.split_once(" : ") {
            Some((dev, rest)) => {
                let digits: String = dev
                    .trim_end()
                    .chars()
                    .rev()
                    .take_while(char::is_ascii_digit)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let rest: Vec<&str> = rest.split(',').map(str::trim).collect();
                format!("{digits}: {}", rest.join(", "))
            }
            None => l.trim().to_string(),
        })
        .collect()
}

/// `sfdisk -d` lines that do not depend on the disk's size.
/// `sfdisk -d` lines without what depends on the disk's size: the GPT's
/// last usable sector, and the size of a protective MBR's entry (which
/// spans the disk; see [`assert_protective_spans`]).
fn size_free(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.starts_with("last-lba:"))
        .map(|l| {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            if fields.contains(&"type=ee") {
                fields
                    .iter()
                    .filter(|f| !f.starts_with("size="))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                l.clone()
            }
        })
        .collect()
}

/// Sector 0 of the GPT disk at `path` is a protective MBR whose 0xEE entry
/// covers the whole disk: its size field is the disk's sectors (of
/// `sector` bytes) less one, as UEFI asks.
fn assert_protective_spans(path: &Path, sector: u64) {
    let bytes = fs::read(path).unwrap();
    let want = (bytes.len() as u64 / sector - 1).min(u64::from(u32::MAX));
    let at = 446 + 4;
    assert_eq!(bytes[at], 0xee, "{}: protective entry", path.display());
    let got = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
    assert_eq!(
        u64::from(got),
        want,
        "{}: protective MBR size",
        path.display()
    );
}

fn assert_sgdisk_clean(path: &Path) {
    if !have("sgdisk") {
        return;
    }
    let out = Command::new("sgdisk").arg("-v").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("No problems found"),
        "sgdisk -v {}: {text}{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the filesystem's own checker on `bytes`, written to a file in
/// `dir` (a partition, cut out of a copy of the disk).
fn assert_fsck(dir: &Path, what: &str, fs_name: &str, bytes: &[u8]) {
    let path = dir.join("fsck.img");
    fs::write(&path, bytes).unwrap();
    let (tool, args): (&str, &[&str]) = match fs_name {
        "ext2" | "ext3" | "ext4" => ("e2fsck", &["-fn"]),
        "fat12" | "fat16" | "fat32" => ("fsck.fat", &["-n"]),
        "ntfs" => ("ntfsfix", &["-n"]),
        _ => return,
    };
    if !have(tool) {
        return;
    }
    let out = Command::new(tool).args(args).arg(&path).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: {tool} {args:?}: {text}");
    if tool == "fsck.fat" {
        assert!(!text.contains("Dirty bit"), "{what}: {text}");
    }
}

/// The files of a partition, walked by a reader no one here wrote.
fn files(dir: &Path, fs_name: &str, bytes: &[u8]) -> Option<String> {
    match fs_name {
        "ext2" | "ext3" | "ext4" => {
            let path = dir.join("walk.img");
            fs::write(&path, bytes).unwrap();
            ext_tree(&path).map(|t| format!("{t:?}"))
        }
        "fat12" | "fat16" | "fat32" => Some(format!("{:?}", fat_tree(bytes.to_vec()))),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Every used block.
    Used,
    /// `-m`: the filesystems' metadata only.
    Metadata,
}

/// Asserts `copy` (a disk of the same size as the source, written where
/// nothing was before) is a faithful copy of `c`: the tables and boot gap
/// byte for byte, each partition with the used blocks of its filesystem
/// (or its metadata), clean by its own fsck, with the same files.
fn assert_copy(c: &Case, copy_path: &Path, mode: Mode) {
    let what = format!("{} ({mode:?}) {}", c.name, copy_path.display());
    let copy = fs::read(copy_path).unwrap();
    assert_eq!(copy.len(), c.bytes.len(), "{what}: size");
    let first = c.first_start();
    assert!(
        copy[..first] == c.bytes[..first],
        "{what}: sector 0, tables or boot gap differ"
    );
    let end = c.last_end();
    if c.is_gpt() {
        assert!(copy[end..] == c.bytes[end..], "{what}: backup GPT differs");
    }
    // The table's own sectors between partitions (EBRs) and after them.
    let table = table_of(&c.bytes, c.sector as u32);
    for &(o, l) in &table.regions {
        let r = o as usize..(o + l) as usize;
        assert!(copy[r.clone()] == c.bytes[r], "{what}: table sector at {o}");
    }
    if let Some(want) = sfdisk_dump(copy_path) {
        let src = fs::read_to_string(testdata(&format!("disk/{}.sfdisk", c.name))).unwrap();
        assert_eq!(want, normalize_sfdisk(&src), "{what}: sfdisk -d");
    }
    if c.is_gpt() {
        assert_sgdisk_clean(copy_path);
    }
    let dir = tempfile::tempdir().unwrap();
    for p in &c.parts {
        let pw = format!("{what}: partition {} ({})", p.n, p.fs);
        let (src, dst) = (&c.bytes[p.range()], &copy[p.range()]);
        match p.fs.as_str() {
            "raw" => match mode {
                Mode::Used => assert!(src == dst, "{pw}: differs"),
                Mode::Metadata => assert!(dst.iter().all(|&b| b == 0), "{pw}: written"),
            },
            "swap" => {
                assert!(src[..4096] == dst[..4096], "{pw}: header differs");
                assert!(
                    dst[4096..].iter().all(|&b| b == 0),
                    "{pw}: swapped-out pages copied"
                );
            }
            fs_name => {
                assert_fsck(dir.path(), &pw, fs_name, dst);
                if mode == Mode::Used {
                    assert_used_only(&pw, src, dst);
                    if let Some(want) = files(dir.path(), fs_name, src) {
                        let got = files(dir.path(), fs_name, dst).unwrap();
                        assert!(want == got, "{pw}: files differ");
                    }
                }
            }
        }
    }
    // Space outside every partition and table structure is not copied.
    if !c.is_gpt() {
        assert!(
            copy[end..].iter().all(|&b| b == 0),
            "{what}: space after the last partition written"
        );
    }
}

fn table_of(bytes: &[u8], sector: u32) -> fsimg::disk::table::Table {
    let mut read = |offset: u64, len: usize| -> Result<Vec<u8>, fsimg::disk::DiskError> {
        let o = offset as usize;
        bytes
            .get(o..o + len)
            .map(<[u8]>::to_vec)
            .ok_or(fsimg::disk::DiskError::ReadSector {
                lba: offset / u64::from(sector),
                source: io::ErrorKind::UnexpectedEof.into(),
            })
    };
    fsimg::disk::table::read_table(&mut read, bytes.len() as u64, Some(sector))
        .unwrap()
        .expect("a table")
}

/// `fsimg info` output as (key, value) pairs, partition rows included.
fn info(args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["info"];
    all.extend(args);
    let out = run_ok(&all);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once("  ")?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn partition_rows(info: &[(String, String)]) -> Vec<String> {
    info.iter()
        .filter(|(k, _)| k == "partition")
        .map(|(_, v)| v.clone())
        .collect()
}

fn value<'a>(info: &'a [(String, String)], key: &str) -> &'a str {
    info.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{key} missing from {info:?}"))
}

#[test]
fn info_lists_every_table_like_sfdisk() {
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let src = c.write(dir.path());
        let i = info(&[s(&src)]);
        let table = value(&i, "partition table");
        assert_eq!(table, c.table, "{}", c.name);
        assert_eq!(value(&i, "disk id"), c.e["disk_id"], "{}", c.name);
        assert_eq!(value(&i, "sector size"), c.e["sector_size"], "{}", c.name);
        let rows = partition_rows(&i);
        assert_eq!(rows.len(), c.parts.len(), "{}: {rows:?}", c.name);
        for (p, row) in c.parts.iter().zip(&rows) {
            let first = p.start / c.sector;
            let last = (p.start + p.size) / c.sector - 1;
            let want = format!("{}: sectors {first}..{last} ", p.n);
            assert!(row.starts_with(&want), "{}: {row} (want {want})", c.name);
            assert!(row.ends_with(&format!("offset={}", p.start)), "{row}");
            let ty = if c.is_gpt() {
                p.ty.to_uppercase()
            } else {
                format!("0x{}", p.ty)
            };
            assert!(row.to_uppercase().contains(&ty.to_uppercase()), "{row}");
            let fs_name = match p.fs.as_str() {
                "raw" => ", no filesystem (copied whole), ".to_string(),
                "swap" => ", swap (header page copied), ".to_string(),
                f => format!(", {f}, "),
            };
            assert!(row.contains(&fs_name), "{}: {row} (want {fs_name})", c.name);
        }
        // The image's DISK block gives the same table.
        let img = dir.path().join("disk.fsimg");
        run_ok(&["-q", "-s", "-z", "-o", s(&img), s(&src)]);
        let from_image = info(&[s(&img)]);
        assert_eq!(partition_rows(&from_image), rows, "{}", c.name);
        assert_eq!(value(&from_image, "disk id"), c.e["disk_id"]);
        assert_eq!(value(&from_image, "format"), "fsimg image 1.1");
    }
}

#[test]
fn used_bytes_match_the_filesystems_own_counts() {
    for c in cases() {
        let src: Arc<dyn Source> = Arc::new(MemSource::new(c.bytes.clone(), &c.name));
        let table = fsimg::disk::open::read(src.as_ref(), None)
            .unwrap()
            .expect("a table");
        let disk = fsimg::disk::Disk::open(src, table, false).unwrap();
        assert_eq!(disk.parts.len(), c.parts.len(), "{}", c.name);
        for dp in &disk.parts {
            let n = dp.part.number;
            let Some(want) = c.e.get(&format!("p{n}_used_bytes")) else {
                continue;
            };
            let fsimg::disk::Content::Fs(fs) = &dp.content else {
                panic!("{} partition {n}: no filesystem recognised", c.name);
            };
            let used = fs.allocation(&dp.view).unwrap().map.used_bytes();
            assert_eq!(used.to_string(), *want, "{} partition {n}", c.name);
        }
    }
}

#[test]
fn clone_every_disk_to_a_file_a_target_and_stdout() {
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let src = c.write(dir.path());
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", s(&clone), s(&src)]);
        assert_copy(&c, &clone, Mode::Used);

        // Onto an existing target of the same size.
        let target = dir.path().join("target.img");
        fs::write(&target, vec![0u8; c.bytes.len()]).unwrap();
        run_ok(&["-q", "-O", s(&target), s(&src)]);
        assert!(
            fs::read(&target).unwrap() == fs::read(&clone).unwrap(),
            "{}: -O",
            c.name
        );

        // To standard output.
        let out = fsimg()
            .args(["-q", "-o", "-", s(&src)])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: -o -", c.name);
        assert!(out.stdout == fs::read(&clone).unwrap(), "{}: -o -", c.name);
    }
}

#[test]
fn summaries_and_progress_name_each_partition() {
    let c = case("gpt-dualboot");
    let dir = tempfile::tempdir().unwrap();
    let src = c.write(dir.path());
    let img = dir.path().join("disk.fsimg");
    let clone = dir.path().join("clone.img");
    let restored = dir.path().join("restored.img");
    let lines: Vec<String> = c
        .parts
        .iter()
        .map(|p| format!("fsimg: partition {}: {}", p.n, p.fs))
        .collect();
    for args in [
        vec!["-o", s(&clone), s(&src)],
        vec!["-s", "-o", s(&img), s(&src)],
        vec!["-r", "-o", s(&restored), s(&img)],
    ] {
        let out = run_ok(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        for l in &lines {
            assert!(err.contains(l.as_str()), "{args:?}: {l} in {err}");
        }
    }
    // On a terminal, the progress line names the stretch being copied.
    if !have("script") {
        return;
    }
    fs::remove_file(&restored).unwrap();
    let cmd = format!(
        "{} -r -o {} {}",
        env!("CARGO_BIN_EXE_fsimg"),
        restored.display(),
        img.display()
    );
    let log = dir.path().join("typescript");
    let st = Command::new("script")
        .args(["-qec", &cmd])
        .arg(&log)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let screen = fs::read_to_string(&log).unwrap();
    let last = c.parts.iter().max_by_key(|p| p.start).unwrap();
    let want = format!("\x1b[Kpartition {} ({}) ", last.n, last.fs);
    assert!(screen.contains(&want), "{want:?} in {screen:?}");
}

#[test]
fn save_verify_and_restore_every_disk_from_a_file_and_stdin() {
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let src = c.write(dir.path());
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", s(&clone), s(&src)]);
        let cloned = fs::read(&clone).unwrap();
        for z in [false, true] {
            let img = dir.path().join(format!("z{z}.fsimg"));
            let mut args = vec!["-q", "-s"];
            if z {
                args.push("-z");
            }
            args.extend(["-o", s(&img), s(&src)]);
            run_ok(&args);
            run_ok(&["verify", s(&img)]);

            let restored = dir.path().join("restored.img");
            run_ok(&["-q", "-r", "-o", s(&restored), s(&img)]);
            assert!(
                fs::read(&restored).unwrap() == cloned,
                "{} z={z}: restore",
                c.name
            );
            assert_copy(&c, &restored, Mode::Used);
            fs::remove_file(&restored).unwrap();

            let mut child = fsimg()
                .args(["-q", "-r", "-o", s(&restored), "-"])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let image = fs::read(&img).unwrap();
            child.stdin.take().unwrap().write_all(&image).unwrap();
            assert!(child.wait().unwrap().success(), "{}: stdin", c.name);
            assert!(
                fs::read(&restored).unwrap() == cloned,
                "{} z={z}: restore from stdin",
                c.name
            );
            fs::remove_file(&restored).unwrap();
        }
    }
}

#[test]
fn metadata_only_images_of_every_disk_pass_fsck() {
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let src = c.write(dir.path());
        let img = dir.path().join("meta.fsimg");
        run_ok(&["-q", "-s", "-m", "-z", "-o", s(&img), s(&src)]);
        let restored = dir.path().join("restored.img");
        run_ok(&["-q", "-r", "-o", s(&restored), s(&img)]);
        assert_copy(&c, &restored, Mode::Metadata);
        // A metadata clone straight to a file too.
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-m", "-o", s(&clone), s(&src)]);
        assert!(fs::read(&clone).unwrap() == fs::read(&restored).unwrap());
    }
}

#[test]
fn rescue_clone_of_a_healthy_disk_equals_the_clone() {
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        let src = c.write(dir.path());
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", s(&clone), s(&src)]);
        let rescued = dir.path().join("rescued.img");
        let map = dir.path().join("map");
        run_ok(&[
            "-q",
            "--rescue",
            "--mapfile",
            s(&map),
            "-o",
            s(&rescued),
            s(&src),
        ]);
        assert!(
            fs::read(&rescued).unwrap() == fs::read(&clone).unwrap(),
            "{}",
            c.name
        );
        let text = fs::read_to_string(&map).unwrap();
        assert!(
            !text.lines().any(|l| l.ends_with(" -")),
            "{}: {text}",
            c.name
        );
    }
}

/// A disk whose reads fail with EIO in one byte range.
struct Failing {
    inner: MemSource,
    bad: std::ops::Range<u64>,
}

impl Source for Failing {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if offset < self.bad.end && end > self.bad.start {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.read_exact_at(buf, offset)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// A rescue clone (as `--rescue -o OUT --mapfile MAP`) of the disk `src`
/// with its table `table`; `src_path` holds the same bytes, for the
/// output's safety checks (the source is not the target).
fn rescue_clone(
    src: Arc<dyn Source>,
    table: fsimg::disk::table::Table,
    src_path: &Path,
    out: &Path,
    map: &Path,
) {
    let checks = fsimg::ops::Checks {
        force: true,
        ignore_fs_check: false,
        rescue: true,
    };
    let file = fs::File::open(src_path).unwrap();
    let d = fsimg::ops::disk::open_disk(src, file, table, checks).unwrap();
    let resume = fsimg::ops::Resume {
        mapfile: Some(map.to_path_buf()),
        retries: 0,
    };
    fsimg::ops::disk::rescue_clone(
        d,
        &fsimg::ops::Output::New(out.to_path_buf()),
        fsimg::ops::DiskOptions::default(),
        &resume,
        &fsimg::report::Silent,
    )
    .unwrap();
}

#[test]
fn rescue_marks_unreadable_sectors_of_a_partition() {
    let c = case("rpi");
    let dir = tempfile::tempdir().unwrap();
    let src_path = c.write(dir.path());
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&src_path)]);
    let cloned = fs::read(&clone).unwrap();
    // 64 KiB of partition 2 that its filesystem uses, all of it.
    let p2 = c.part(2);
    let view = MemSource::new(c.bytes[p2.range()].to_vec(), "p2");
    let map = fsimg::fs::open(&view, fsimg::fs::FsChoice::Auto)
        .unwrap()
        .allocation(&view)
        .unwrap()
        .map;
    let per = 65536 / u64::from(map.cluster_size());
    let first = (0..map.total_clusters() / per)
        .map(|i| i * per)
        .find(|&c| (c..c + per).all(|u| map.is_used(u)) && c > 0)
        .expect("a used 64 KiB run");
    let bad_start = p2.start + first * u64::from(map.cluster_size());
    let bad = bad_start..bad_start + 65536;
    let src: Arc<dyn Source> = Arc::new(Failing {
        inner: MemSource::new(c.bytes.clone(), "rpi.img"),
        bad: bad.clone(),
    });
    let table = fsimg::disk::open::detect(src.as_ref(), None)
        .unwrap()
        .expect("a table");
    let out = dir.path().join("rescued.img");
    let map = dir.path().join("map");
    rescue_clone(src, table, &src_path, &out, &map);
    let rescued = fs::read(&out).unwrap();
    let (b0, b1) = (bad.start as usize, bad.end as usize);
    assert!(rescued[..b0] == cloned[..b0], "before the bad range");
    assert!(rescued[b1..] == cloned[b1..], "after the bad range");
    for sector in rescued[b0..b1].chunks(512) {
        assert_eq!(&sector[..10], b"BadSectoR\0", "bad sector marked");
    }
    let text = fs::read_to_string(&map).unwrap();
    let want = format!("0x{:08X}  0x{:08X}  -", bad.start, bad.end - bad.start);
    assert!(text.contains(&want), "{want} in {text}");
}

#[test]
fn restore_onto_larger_and_smaller_targets() {
    for name in ["rpi", "gpt-dualboot", "mbr-logical", "gpt-4k"] {
        let c = case(name);
        let dir = tempfile::tempdir().unwrap();
        let src = c.write(dir.path());
        let img = dir.path().join("disk.fsimg");
        run_ok(&["-q", "-s", "-z", "-o", s(&img), s(&src)]);
        let dump = sfdisk_dump(&src);

        // Larger: the same partitions, the backup GPT at the new end.
        let larger = dir.path().join("larger.img");
        let big = c.bytes.len() as u64 + (64 << 20);
        fs::File::create(&larger).unwrap().set_len(big).unwrap();
        run_ok(&["-q", "-r", "-O", s(&larger), s(&img)]);
        let got = fs::read(&larger).unwrap();
        assert_eq!(got.len() as u64, big);
        for p in &c.parts {
            if p.fs != "raw" && p.fs != "swap" {
                assert_used_only(
                    &format!("{name} larger p{}", p.n),
                    &c.bytes[p.range()],
                    &got[p.range()],
                );
            }
        }
        if let (Some(want), Some(got)) = (&dump, sfdisk_dump(&larger)) {
            assert_eq!(size_free(&got), size_free(want), "{name}: larger");
        }
        if c.is_gpt() {
            assert_sgdisk_clean(&larger);
        }
        if c.table == "gpt" {
            assert_protective_spans(&larger, c.sector);
        }

        // Smaller, just large enough: the last partition's end, plus the
        // backup GPT.
        let tail = if c.is_gpt() {
            33 * c.sector.max(512)
        } else {
            0
        };
        let small_len = c.last_end() as u64 + tail;
        let tail = if c.sector == 4096 { 6 * 4096 } else { tail };
        let small_len = small_len.max(c.last_end() as u64 + tail);
        let small = dir.path().join("small.img");
        fs::File::create(&small)
            .unwrap()
            .set_len(small_len)
            .unwrap();
        run_ok(&["-q", "-r", "-O", s(&small), s(&img)]);
        if let (Some(want), Some(got)) = (&dump, sfdisk_dump(&small)) {
            assert_eq!(size_free(&got), size_free(want), "{name}: smaller");
        }
        if c.is_gpt() {
            assert_sgdisk_clean(&small);
        }
        if c.table == "gpt" {
            assert_protective_spans(&small, c.sector);
        }
        let got = fs::read(&small).unwrap();
        for p in &c.parts {
            if p.fs != "raw" && p.fs != "swap" {
                assert_fsck(
                    dir.path(),
                    &format!("{name} small p{}", p.n),
                    &p.fs,
                    &got[p.range()],
                );
            }
        }

        // Too small: refused before anything is written.
        let tiny = dir.path().join("tiny.img");
        let tiny_len = c.last_end() as u64 - (1 << 20);
        fs::write(&tiny, vec![0x5au8; tiny_len as usize]).unwrap();
        let last = c.parts.iter().max_by_key(|p| p.start + p.size).unwrap();
        let err = run_err(
            &["-r", "-O", s(&tiny), s(&img)],
            "is too small for this disk",
        );
        let want = format!(
            "{} ({tiny_len} bytes) is too small for this disk: partition {} ({})",
            tiny.display(),
            last.n,
            last.fs
        );
        assert!(err.contains(&want), "{name}: {err}\nwant {want}");
        assert!(
            fs::read(&tiny).unwrap().iter().all(|&b| b == 0x5a),
            "{name}: the too-small target was written"
        );
    }
}

#[test]
fn grow_last_partition_then_resize2fs() {
    let c = case("rpi");
    let dir = tempfile::tempdir().unwrap();
    let src = c.write(dir.path());
    let img = dir.path().join("disk.fsimg");
    run_ok(&["-q", "-s", "-o", s(&img), s(&src)]);
    let target = dir.path().join("big.img");
    let big = c.bytes.len() as u64 + (96 << 20);
    fs::File::create(&target).unwrap().set_len(big).unwrap();
    let out = run_ok(&["-r", "-O", s(&target), "--grow-last", s(&img)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("partition 2 grown from") && err.contains("resize2fs /dev/loopNp2"),
        "{err}"
    );
    let p2 = c.part(2);
    if let Some(dump) = sfdisk_dump(&target) {
        let row = dump.iter().find(|l| l.starts_with("2: ")).unwrap();
        let sectors = (big - p2.start) / 512;
        let fields: String = row.split_whitespace().collect();
        assert!(fields.contains(&format!("size={sectors},")), "{row}");
    }
    // The filesystem grows into it with its own tool and stays clean.
    if have("resize2fs") {
        let bytes = fs::read(&target).unwrap();
        let part = dir.path().join("p2.img");
        fs::write(&part, &bytes[p2.start as usize..]).unwrap();
        let out = Command::new("resize2fs").arg(&part).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_e2fsck_clean(&part);
        let t = ext_tree(&part).unwrap();
        let want = ext_tree(&{
            let p = dir.path().join("p2src.img");
            fs::write(&p, &c.bytes[p2.range()]).unwrap();
            p
        })
        .unwrap();
        assert!(t == want, "files after resize2fs");
    }
    // GPT: the last partition grows, the backup moves to the new end.
    let g = case("gpt-dualboot");
    let src = g.write(dir.path());
    let target = dir.path().join("gbig.img");
    let big = g.bytes.len() as u64 + (32 << 20);
    fs::File::create(&target).unwrap().set_len(big).unwrap();
    run_ok(&["-q", "-O", s(&target), "--grow-last", s(&src)]);
    assert_sgdisk_clean(&target);
}

#[test]
fn one_partition_of_a_disk_or_of_a_disk_image() {
    let c = case("rpi");
    let dir = tempfile::tempdir().unwrap();
    let src = c.write(dir.path());
    let p2 = c.part(2);
    // Reference: partition 2 cut out by hand and cloned as a volume.
    let cut = dir.path().join("cut.img");
    fs::write(&cut, &c.bytes[p2.range()]).unwrap();
    let want_path = dir.path().join("want.img");
    run_ok(&["-q", "-o", s(&want_path), s(&cut)]);
    let want = fs::read(&want_path).unwrap();

    let from_disk = dir.path().join("p2.img");
    run_ok(&["-q", "-o", s(&from_disk), "--partition", "2", s(&src)]);
    assert!(
        fs::read(&from_disk).unwrap() == want,
        "--partition 2 of a disk"
    );
    assert_e2fsck_clean(&from_disk);

    let img = dir.path().join("disk.fsimg");
    run_ok(&["-q", "-s", "-z", "-o", s(&img), s(&src)]);
    let target = dir.path().join("p2r.img");
    fs::File::create(&target).unwrap().set_len(p2.size).unwrap();
    let out = run_ok(&["-r", "-O", s(&target), "--partition", "2", s(&img)]);
    assert!(
        fs::read(&target).unwrap() == want,
        "--partition 2 of an image"
    );
    // The summary speaks of the partition, not of the disk.
    let err = String::from_utf8_lossy(&out.stderr);
    let want_used = c.e["p2_used_bytes"].parse::<u64>().unwrap();
    let summary = format!(
        "restored {} used of {}",
        fsimg::ops::human(want_used),
        fsimg::ops::human(p2.size)
    );
    assert!(err.contains(&summary), "{err}\nwant {summary}");

    // A partition image straight from a disk: save, then restore it.
    let pimg = dir.path().join("p2.fsimg");
    run_ok(&["-q", "-s", "-o", s(&pimg), "--partition", "2", s(&src)]);
    let i = info(&[s(&pimg)]);
    assert_eq!(value(&i, "filesystem"), "ext4");

    run_usage_err(
        &["-o", s(&dir.path().join("x")), "--partition", "9", s(&src)],
        &format!(
            "{} has no partition 9 (its partitions: 1, 2)",
            src.display()
        ),
    );
    run_usage_err(
        &["-r", "-O", s(&target), "--partition", "9", s(&img)],
        "has no partition 9 (its partitions: 1, 2)",
    );
    // Without --partition, a disk is not a volume: restoring a whole
    // disk image onto a partition-sized target is refused.
    let err = run_err(
        &["-r", "-O", s(&target), s(&img)],
        "is too small for this disk",
    );
    assert!(err.contains(s(&target)), "{err}");
}

#[test]
fn block_devices_as_source_and_target() {
    if !root() || !have("losetup") {
        return;
    }
    // A disk of 4096-byte logical sectors: the sector size comes from the
    // device, and the copy is the same as the image file's.
    let c = case("gpt-4k");
    let dir = tempfile::tempdir().unwrap();
    let src = c.write(dir.path());
    let dev = Loop::attach_with(&src, &["-r", "-b", "4096"]);
    let i = info(&[&dev.dev]);
    assert_eq!(value(&i, "sector size"), "4096");
    assert_eq!(value(&i, "partitions"), c.parts.len().to_string());
    let from_dev = dir.path().join("dev.img");
    let from_file = dir.path().join("file.img");
    run_ok(&["-q", "-o", s(&from_dev), &dev.dev]);
    run_ok(&["-q", "-o", s(&from_file), s(&src)]);
    assert!(fs::read(&from_dev).unwrap() == fs::read(&from_file).unwrap());
    drop(dev);

    // A restore onto a device: its size is the device's, the copy is the
    // same as onto a file, and the partitions pass their checkers.
    let c = case("rpi");
    let src = c.write(dir.path());
    let img = dir.path().join("rpi.fsimg");
    run_ok(&["-q", "-s", "-z", "-o", s(&img), s(&src)]);
    let disk = dir.path().join("card.img");
    fs::File::create(&disk)
        .unwrap()
        .set_len(c.bytes.len() as u64 + (16 << 20))
        .unwrap();
    let dev = Loop::attach(&disk, false);
    run_ok(&["-q", "-r", "-O", &dev.dev, s(&img)]);
    drop(dev);
    let onto_file = dir.path().join("file.img");
    fs::File::create(&onto_file)
        .unwrap()
        .set_len(c.bytes.len() as u64 + (16 << 20))
        .unwrap();
    run_ok(&["-q", "-r", "-O", s(&onto_file), s(&img)]);
    assert!(fs::read(&disk).unwrap() == fs::read(&onto_file).unwrap());
    let got = fs::read(&disk).unwrap();
    for p in &c.parts {
        assert_fsck(dir.path(), &format!("rpi p{}", p.n), &p.fs, &got[p.range()]);
    }
}

/// The rpi disk with `f` applied.
fn mutated(f: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let c = case("rpi");
    let mut b = c.bytes.clone();
    f(&mut b);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.img");
    fs::write(&p, &b).unwrap();
    (dir, p)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_mbr_tables_are_refused_by_name() {
    // Partition 2 starts inside partition 1.
    let (dir, p) = mutated(|b| put_u32(b, 446 + 16 + 8, 100_000));
    let out = dir.path().join("out.img");
    let err = run_err(&["-o", s(&out), s(&p)], "partition table");
    assert!(
        err.contains("partitions 1 and 2 overlap: partition 2 starts at sector 100000, before partition 1 ends at sector 122879"),
        "{err}"
    );
    assert!(!out.exists(), "no output left behind");

    // Partition 2 runs past the end of the disk.
    let (dir, p) = mutated(|b| put_u32(b, 446 + 16 + 12, 10_000_000));
    let err = run_err(&["info", s(&p)], "ends past the end of the disk");
    assert!(
        err.contains(&format!(
            "partition 2 (sectors 122880..={}) ends past the end of the disk",
            122_880 + 10_000_000 - 1
        )),
        "{err}"
    );
    drop(dir);
}

#[test]
fn a_looping_ebr_chain_is_refused() {
    let c = case("mbr-logical");
    let t = table_of(&c.bytes, 512);
    let (_, ext_lba, _) = t.extended.expect("an extended partition");
    // An EBR's link (its second entry) is relative to the extended
    // partition's start.
    let link = |b: &[u8], lba: u64| {
        let at = (lba * 512) as usize + 446 + 16 + 8;
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    };
    let mut b = c.bytes.clone();
    let second = ext_lba + u64::from(link(&b, ext_lba));
    assert!(second > ext_lba, "the chain has a second EBR");
    // Walk to the last EBR and make it link back to the second.
    let mut lba = second;
    while link(&b, lba) != 0 {
        lba = ext_lba + u64::from(link(&b, lba));
    }
    assert!(lba > second, "the chain has three EBRs");
    let at = (lba * 512) as usize + 446 + 16;
    b[at + 4] = 0x05;
    put_u32(&mut b, at + 8, (second - ext_lba) as u32);
    put_u32(&mut b, at + 12, 1);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("loop.img");
    fs::write(&p, &b).unwrap();
    // sfdisk follows such a chain to its 60th partition; fsimg refuses it.
    run_err(
        &["info", s(&p)],
        &format!("the EBR chain of the extended partition loops back to sector {second}"),
    );
}

#[test]
fn a_damaged_primary_gpt_falls_back_to_the_backup() {
    let c = case("gpt-dualboot");
    let dir = tempfile::tempdir().unwrap();
    let mut b = c.bytes.clone();
    b[512 + 60] ^= 0xff; // the disk GUID: the header's CRC no longer matches
    let p = dir.path().join("hdr.img");
    fs::write(&p, &b).unwrap();
    let backup_lba = b.len() / 512 - 1;
    let want = "the primary GPT header at sector 1 is damaged (header CRC mismatch (stored 0x";
    let want_backup = format!("; using the backup at sector {backup_lba}");
    let out = run_ok(&["info", s(&p)]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("warning"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(
        line.contains(want) && line.ends_with(&want_backup),
        "{line}"
    );
    // A copy says it too, on standard error, even with -q.
    let out = run_ok(&["-q", "-o", s(&dir.path().join("c.img")), s(&p)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(want) && err.contains(&want_backup), "{err}");
    // The clone gets both copies back, and every partition.
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&p)]);
    assert_sgdisk_clean(&clone);
    let got = fs::read(&clone).unwrap();
    for part in &c.parts {
        if part.fs != "raw" && part.fs != "swap" {
            assert_used_only(
                &format!("p{}", part.n),
                &c.bytes[part.range()],
                &got[part.range()],
            );
        }
    }

    // Both headers damaged: refused, naming both.
    let last = b.len() - 512;
    b[last + 60] ^= 0xff;
    fs::write(&p, &b).unwrap();
    let err = run_err(
        &["-o", s(&dir.path().join("x.img")), s(&p)],
        "both copies of the GPT are damaged",
    );
    assert!(
        err.contains("primary at sector 1: header CRC mismatch"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "backup at sector {}: header CRC mismatch",
            last / 512
        )),
        "{err}"
    );

    // A damaged entry array, with both headers intact, is refused too.
    let mut b = c.bytes.clone();
    b[1024 + 40] ^= 0xff; // in the first entry of the primary array
    let last = b.len() - 33 * 512;
    b[last + 40] ^= 0xff; // and of the backup array
    fs::write(&p, &b).unwrap();
    let err = run_err(&["info", s(&p)], "both copies of the GPT are damaged");
    assert!(
        err.contains("primary at sector 1: partition entry array at sector 2: CRC mismatch"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "backup at sector {}: partition entry array at sector {}: CRC mismatch",
            b.len() / 512 - 1,
            b.len() / 512 - 33
        )),
        "{err}"
    );
}

/// Sets the u32 at `field` of the GPT header in sector `lba` (512-byte
/// sectors) of `b` and recomputes the header's CRC, so that only the field
/// is wrong.
fn set_gpt_header_u32(b: &mut [u8], lba: usize, field: usize, v: u32) {
    let h = lba * 512;
    put_u32(b, h + field, v);
    let size = u32::from_le_bytes(b[h + 12..h + 16].try_into().unwrap()) as usize;
    put_u32(b, h + 16, 0);
    let crc = crc32fast::hash(&b[h..h + size]);
    put_u32(b, h + 16, crc);
}

#[test]
fn gpt_entry_size_and_count_out_of_range_are_refused() {
    let c = case("gpt-dualboot");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.img");
    let backup = c.bytes.len() / 512 - 1;
    // SizeOfPartitionEntry (offset 84) and NumberOfPartitionEntries (80)
    // in both headers, each header's CRC made right again.
    for (field, v, want) in [
        (
            84,
            100,
            "partition entry size 100 is out of range (a multiple of 128, at most 4096)",
        ),
        (
            80,
            1_000_000,
            "1000000 partition entries of 128 bytes is out of range (at most 4096 entries",
        ),
    ] {
        let mut b = c.bytes.clone();
        set_gpt_header_u32(&mut b, 1, field, v);
        set_gpt_header_u32(&mut b, backup, field, v);
        fs::write(&p, &b).unwrap();
        let err = run_err(&["info", s(&p)], "both copies of the GPT are damaged");
        assert!(
            err.contains(&format!("primary at sector 1: {want}"))
                && err.contains(&format!("backup at sector {backup}: {want}")),
            "{err}"
        );
        // Only the primary: the backup is used, with a warning.
        let mut b = c.bytes.clone();
        set_gpt_header_u32(&mut b, 1, field, v);
        fs::write(&p, &b).unwrap();
        let out = run_ok(&["-q", "-o", s(&dir.path().join("c.img")), s(&p)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "the primary GPT header at sector 1 is damaged ({want}"
            )),
            "{err}"
        );
        fs::remove_file(dir.path().join("c.img")).unwrap();
    }
}

#[test]
fn an_unclean_partition_is_refused_by_name() {
    if !have("debugfs") {
        return;
    }
    let c = case("rpi");
    let p2 = c.part(2);
    let dir = tempfile::tempdir().unwrap();
    // Partition 2 marked "not clean" by e2fsprogs' own debugfs (which
    // keeps the superblock's checksum right), put back into the disk.
    let part = dir.path().join("p2.img");
    fs::write(&part, &c.bytes[p2.range()]).unwrap();
    let st = Command::new("debugfs")
        .args(["-w", "-R", "ssv state 0"])
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut b = c.bytes.clone();
    b[p2.range()].copy_from_slice(&fs::read(&part).unwrap());
    let p = dir.path().join("bad.img");
    fs::write(&p, &b).unwrap();
    let out = dir.path().join("out.img");
    let err = run_err(&["-o", s(&out), s(&p)], "partition 2");
    assert!(err.contains("not clean"), "{err}");
    assert!(!out.exists(), "no output left behind");
    run_ok(&["-q", "-f", "-o", s(&out), s(&p)]);
}

#[test]
fn refusals_keep_data_safe() {
    let c = case("rpi");
    let dir = tempfile::tempdir().unwrap();
    let src = c.write(dir.path());
    // Source equal to target.
    run_err(
        &["-O", s(&src), s(&src)],
        &format!(
            "source and target are the same file ({}); refusing to copy a volume onto itself",
            src.display()
        ),
    );
    // An existing output without -O.
    let out = dir.path().join("exists.img");
    fs::write(&out, b"keep me").unwrap();
    run_err(&["-o", s(&out), s(&src)], "exists");
    assert_eq!(fs::read(&out).unwrap(), b"keep me");
}

#[test]
fn superfloppies_stay_volumes() {
    // A FAT volume without a partition table (a "superfloppy" stick) is a
    // volume: its boot sector carries 55 AA like an MBR.
    let dir = tempfile::tempdir().unwrap();
    let fat = image("fat", "fat16");
    let p = dir.path().join("fat16.img");
    fs::write(&p, &fat).unwrap();
    let i = info(&[s(&p)]);
    assert!(i.iter().all(|(k, _)| k != "partition table"), "{i:?}");
    let src = FileSource::open(&p).unwrap();
    assert!(fsimg::disk::open::detect(&src, None).unwrap().is_none());
}

#[test]
fn images_of_version_1_0_still_restore() {
    let dir = tempfile::tempdir().unwrap();
    let fat = image("fat", "fat16");
    let p = dir.path().join("fat16.img");
    fs::write(&p, &fat).unwrap();
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&p)]);
    let old = testdata("compat/fat16-v1.0.fsimg");
    run_ok(&["verify", s(&old)]);
    assert_eq!(value(&info(&[s(&old)]), "format"), "fsimg image 1.0");
    let restored = dir.path().join("restored.img");
    run_ok(&["-q", "-r", "-o", s(&restored), s(&old)]);
    assert!(fs::read(&restored).unwrap() == fs::read(&clone).unwrap());
}

#[test]
fn rescue_reads_the_backup_gpt_when_the_primary_is_unreadable() {
    let c = case("gpt-dualboot");
    let dir = tempfile::tempdir().unwrap();
    let src_path = c.write(dir.path());
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&src_path)]);
    // The primary GPT header and the start of its entry array fail.
    let bad = 512..4096;
    let src: Arc<dyn Source> = Arc::new(Failing {
        inner: MemSource::new(c.bytes.clone(), "dualboot.img"),
        bad: bad.clone(),
    });
    let table = fsimg::disk::open::detect(src.as_ref(), None)
        .unwrap()
        .expect("the backup table");
    assert!(
        table.warnings.iter().any(|w| w.contains("backup")),
        "{:?}",
        table.warnings
    );
    assert_eq!(table.partitions.len(), c.parts.len());
    let out = dir.path().join("rescued.img");
    rescue_clone(src, table, &src_path, &out, &dir.path().join("map"));
    // The copy has its primary GPT back, rebuilt from the backup, and
    // every partition.
    assert_sgdisk_clean(&out);
    let got = fs::read(&out).unwrap();
    let want = fs::read(&clone).unwrap();
    let first = c.first_start();
    assert!(got[first..] == want[first..], "partitions and backup GPT");
    if let (Some(a), Some(b)) = (sfdisk_dump(&out), sfdisk_dump(&src_path)) {
        assert_eq!(a, b, "sfdisk -d");
    }
}
