//! `fsimg mount` and `fsimg umount` (issue 18): every test volume, as an
//! fsimg image (plain and zstd), an ntfsclone image and the partclone
//! images of testdata/foreign, mounted: the exposed file equals a restore
//! of the same image (`cmp`), its filesystem's checker says of it what it
//! says of the restore, and the kernel (ext4 through a loop device,
//! ntfs-3g; mtools for FAT, which this kernel has no driver for) shows the
//! tree recorded in NAME.tree. Whole disks show `disk` and each `pN`. A
//! damaged record fails its bytes alone; SIGTERM and SIGINT leave no stale
//! mount; the errors have exact messages.
//!
//! The mounts need root and /dev/fuse (CI: FSIMG_REQUIRE_TOOLS=1 makes
//! their absence a failure); the errors found before mounting are checked
//! everywhere.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    expected_in, fsimg, have, image, images, root, run, run_ok, testdata, tools_required,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether mounts can be made here: root (for the loop devices) and the
/// kernel's FUSE device.
fn can_mount() -> bool {
    if !root() {
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        assert!(
            !tools_required(),
            "/dev/fuse is required (FSIMG_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipping a check: no /dev/fuse");
        return false;
    }
    true
}

/// Whether `pid` has ended (gone, or a zombie nobody has reaped yet).
fn ended(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Waits up to 10 s for `pid` to end.
fn wait_ended(pid: u32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if ended(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether anything is mounted on `dir` (per /proc/self/mountinfo).
fn mounted_on(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(s(&dir)))
}

/// An image mounted in the background by `fsimg mount`; unmounted (and
/// its server waited for) on drop.
struct Mounted {
    dir: PathBuf,
    pid: u32,
    stderr: String,
    /// Whether to unmount it on drop (not once it has ended otherwise).
    active: bool,
}

impl Mounted {
    fn new(img: &Path, dir: &Path) -> Mounted {
        Mounted::with(img, dir, &[])
    }

    fn with(img: &Path, dir: &Path, args: &[&str]) -> Mounted {
        fs::create_dir_all(dir).unwrap();
        let mut all = vec!["mount"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[s(img), s(dir)]);
        let out = run_ok(&all);
        let stderr = String::from_utf8(out.stderr).unwrap();
        let pid = stderr
            .split("(server pid ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no server pid in {stderr:?}"));
        assert!(mounted_on(dir), "{stderr}");
        Mounted {
            dir: dir.to_path_buf(),
            pid,
            stderr,
            active: true,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The names in the mount, sorted.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let out = run(&["umount", s(&self.dir)]);
        let ok = wait_ended(self.pid);
        if !std::thread::panicking() {
            assert!(
                out.status.success(),
                "fsimg umount: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(ok, "the server {} did not end", self.pid);
            assert!(!mounted_on(&self.dir));
        }
    }
}

/// A kernel mount (a loop device or ntfs-3g), unmounted on drop.
struct Kernel {
    dir: PathBuf,
}

impl Kernel {
    /// Mounts with `cmd` (its last argument is `dir`).
    fn new(cmd: &mut Command, dir: &Path) -> Kernel {
        fs::create_dir_all(dir).unwrap();
        let out = cmd.arg(dir).output().expect("mount runs");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Kernel {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Writes testdata/KIND/NAME.img.zst decompressed into `dir`.
fn volume(dir: &Path, kind: &str, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.img"));
    fs::write(&p, image(kind, name)).unwrap();
    p
}

/// Saves `src` as an image with `args`.
fn save(dir: &Path, src: &Path, name: &str, args: &[&str]) -> PathBuf {
    let img = dir.join(name);
    let mut all = vec!["-q", "-s", "--force"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", s(&img), s(src)]);
    run_ok(&all);
    img
}

/// `fsimg -r -o` of `img`, as a new file.
fn restore(dir: &Path, img: &Path) -> PathBuf {
    let out = dir.join(format!(
        "{}.restored",
        img.file_name().unwrap().to_str().unwrap()
    ));
    let _ = fs::remove_file(&out);
    run_ok(&["-q", "-r", "-o", s(&out), s(img)]);
    out
}

/// `cmp A B` succeeds.
fn assert_cmp(what: &str, a: &Path, b: &Path) {
    let out = Command::new("cmp").arg(a).arg(b).output().unwrap();
    assert!(
        out.status.success(),
        "{what}: cmp: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The filesystem checker of `kind` that only reads.
fn checker(kind: &str) -> (&'static str, &'static [&'static str]) {
    match kind {
        "ext" => ("e2fsck", &["-fn"]),
        "fat" => ("fsck.fat", &["-n"]),
        _ => ("ntfsfix", &["-n"]),
    }
}

/// Runs the checker of `kind` on `file`: its status and output, with the
/// file's name taken out.
fn check(kind: &str, file: &Path) -> (Option<i32>, String) {
    let (tool, args) = checker(kind);
    let out = Command::new(tool).args(args).arg(file).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text.replace(s(file), "FILE"))
}

/// The checker says of the exposed file what it says of the restore, and
/// `clean` says whether that must be a success.
fn assert_checks_alike(what: &str, kind: &str, exposed: &Path, restored: &Path) {
    let a = check(kind, exposed);
    let b = check(kind, restored);
    assert_eq!(
        a,
        b,
        "{what}: {} on the mount and on the restore",
        checker(kind).0
    );
}

/// One line of a NAME.tree manifest (tools/files-manifest.py).
type Tree = BTreeMap<String, Vec<String>>;

fn parse_tree(text: &str) -> Tree {
    text.lines()
        .map(|l| {
            let f: Vec<String> = l.split('\t').map(str::to_string).collect();
            assert_eq!(f.len(), 10, "bad manifest line {l:?}");
            (f[0].clone(), f[1..].to_vec())
        })
        .collect()
}

/// The manifest of a directory on this machine.
fn manifest(dir: &Path) -> Tree {
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/files-manifest.py"))
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_tree(&String::from_utf8(out.stdout).unwrap())
}

/// Fields of a manifest line: 0 type, 1 mode, 2 nlink, 3 uid, 4 gid,
/// 5 size, 6 mtime, 7 content, 8 link.
const MODE: usize = 1;
const NLINK: usize = 2;
const UID: usize = 3;
const GID: usize = 4;
const MTIME: usize = 6;

/// What of a recorded FAT tree a copy by mcopy here reproduces: names,
/// types, sizes, contents and file times (modes, owners and directory
/// times are those of the copy).
fn fat_comparable(t: &Tree) -> Tree {
    t.iter()
        .map(|(p, l)| {
            let mut l = l.clone();
            for f in [MODE, NLINK, UID, GID] {
                l[f] = String::new();
            }
            if l[0] == "d" {
                l[MTIME] = String::new();
            }
            (p.clone(), l)
        })
        .collect()
}

/// The kernel (or mtools, for FAT) reads the exposed volume file `file`
/// of filesystem `kind` and finds the tree recorded in `recorded`.
fn assert_kernel_tree(what: &str, kind: &str, file: &Path, work: &Path, recorded: &Path) {
    let want = parse_tree(&fs::read_to_string(recorded).unwrap());
    let dir = work.join("kernel");
    let got = match kind {
        "ext" => {
            let _m = Kernel::new(
                Command::new("mount")
                    .args(["-t", "ext4", "-o", "loop,ro,noload"])
                    .arg(file),
                &dir,
            );
            manifest(&dir)
        }
        "ntfs" => {
            let _m = Kernel::new(Command::new("ntfs-3g").args(["-o", "ro"]).arg(file), &dir);
            manifest(&dir)
        }
        _ => {
            fs::create_dir_all(&dir).unwrap();
            let out = Command::new("mcopy")
                .env("TZ", "UTC")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-s", "-m", "-n", "-Q", "-i"])
                .arg(file)
                .arg("::/*")
                .arg(format!("{}/", dir.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{what}: mcopy: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let t = manifest(&dir);
            fs::remove_dir_all(&dir).unwrap();
            return assert_trees(what, &fat_comparable(&t), &fat_comparable(&want));
        }
    };
    assert_trees(what, &got, &want);
}

fn assert_trees(what: &str, got: &Tree, want: &Tree) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    for (p, w) in want {
        assert_eq!(&got[p], w, "{what}: {p}");
    }
}

/// Mounts the volume image `img` (with `args`), and checks the exposed
/// `volume` against a restore of it, with the checker of `kind` and the
/// tree in `recorded`.
fn check_volume_image(work: &Path, img: &Path, kind: &str, recorded: &Path, args: &[&str]) {
    let what = img.file_name().unwrap().to_str().unwrap().to_string();
    let restored = restore(work, img);
    let m = Mounted::with(img, &work.join("mnt"), args);
    assert_eq!(m.names(), ["volume"], "{what}");
    let exposed = m.file("volume");
    assert_cmp(&what, &exposed, &restored);
    assert_checks_alike(&what, kind, &exposed, &restored);
    assert_kernel_tree(&what, kind, &exposed, work, recorded);
    drop(m);
    fs::remove_file(restored).unwrap();
}

/// Every test volume of `kind`, saved as fsimg images plain and zstd (and
/// for NTFS, as an ntfsclone image), mounts as its restore.
fn every_volume(kind: &str) {
    if !can_mount() || !have(checker(kind).0) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut formats: Vec<(&str, Vec<&str>)> = vec![("fsimg", vec![]), ("zst.fsimg", vec!["-z"])];
    if kind == "ntfs" {
        formats.push(("ntfsclone", vec!["--format", "ntfsclone"]));
    }
    for name in images(kind) {
        let vol = volume(tmp.path(), kind, &name);
        let recorded = testdata(&format!("{kind}/{name}.tree"));
        for (k, (ext, args)) in formats.iter().enumerate() {
            let img = save(tmp.path(), &vol, &format!("{name}.{ext}"), args);
            // One of them with the smallest cache: records are evicted
            // while they are read.
            let opts: &[&str] = if k == 1 && name.ends_with('k') {
                &["--cache-size", "4M"]
            } else {
                &[]
            };
            check_volume_image(tmp.path(), &img, kind, &recorded, opts);
            fs::remove_file(img).unwrap();
        }
        fs::remove_file(vol).unwrap();
    }
}

#[test]
fn ext_volumes_mount_as_restored() {
    every_volume("ext");
}

#[test]
fn fat_volumes_mount_as_restored() {
    every_volume("fat");
}

#[test]
fn ntfs_volumes_mount_as_restored() {
    every_volume("ntfs");
}

/// The images of partclone and ntfsclone kept in testdata/foreign mount
/// as their restores, and show the trees of their volumes.
#[test]
fn peers_images_mount_as_restored() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (img, tree, kind) in [
        ("ext4.ptcl", "ext4", "ext"),
        ("ext4-0001.ptcl", "ext4", "ext"),
        ("fat16.ptcl", "fat16", "fat"),
        ("ntfs.ptcl", "ntfs", "ntfs"),
        ("ntfs.ntfsclone", "ntfs", "ntfs"),
    ] {
        if !have(checker(kind).0) {
            continue;
        }
        let z = fs::read(testdata(&format!("foreign/{img}.zst"))).unwrap();
        let path = tmp.path().join(img);
        fs::write(&path, zstd::decode_all(&z[..]).unwrap()).unwrap();
        let recorded = testdata(&format!("foreign/{tree}.tree"));
        check_volume_image(tmp.path(), &path, kind, &recorded, &[]);
    }
}

/// The exposed files: read-only, mode 0444, the image's modification time,
/// the mounting user's; the directory cannot be written either.
#[test]
fn the_files_are_read_only() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let vol = volume(tmp.path(), "ext", "ext4-default");
    let img = save(tmp.path(), &vol, "d.fsimg", &["-z"]);
    let m = Mounted::new(&img, &tmp.path().join("m"));
    assert!(
        m.stderr.starts_with(&format!(
            "fsimg: {} mounted on {}: volume (",
            img.display(),
            m.dir.display()
        )),
        "{}",
        m.stderr
    );
    let meta = fs::metadata(m.file("volume")).unwrap();
    let image_meta = fs::metadata(&img).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o444);
    assert_eq!(meta.len(), fs::metadata(&vol).unwrap().len());
    assert_eq!(meta.mtime(), image_meta.mtime());
    assert_eq!(meta.uid(), 0);
    let e = fs::OpenOptions::new()
        .write(true)
        .open(m.file("volume"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(30), "{e}"); // EROFS
    assert!(fs::write(m.dir.join("new"), b"x").is_err());
    assert_eq!(
        fs::metadata(&m.dir).unwrap().mode() & 0o7777,
        0o555,
        "the directory"
    );
    // Reads past the end return nothing; reads across it stop at it.
    let f = fs::File::open(m.file("volume")).unwrap();
    let mut buf = [0u8; 8192];
    assert_eq!(f.read_at(&mut buf, meta.len()).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, meta.len() - 100).unwrap(), 100);
}

/// A partition's offset and size from testdata/disk/NAME.expected.
fn partitions(name: &str) -> Vec<(u32, u64, u64)> {
    let e = expected_in("disk", name);
    let n: u32 = e["partitions"].parse().unwrap();
    (1..=12)
        .filter_map(|i| {
            let start = e.get(&format!("p{i}_start"))?.parse().ok()?;
            let size = e.get(&format!("p{i}_size"))?.parse().ok()?;
            Some((i, start, size))
        })
        .take(n as usize)
        .collect()
}

/// `pN` holds exactly partition N's bytes of `disk`.
fn assert_partitions(what: &str, m: &Mounted, disk: &[u8], parts: &[(u32, u64, u64)]) {
    for &(n, start, size) in parts {
        let got = fs::read(m.file(&format!("p{n}"))).unwrap();
        assert_eq!(got.len() as u64, size, "{what} p{n}");
        assert!(
            got == disk[start as usize..(start + size) as usize],
            "{what}: p{n} differs from the disk's bytes"
        );
    }
}

/// A whole disk's image shows `disk` (the restored disk) and each
/// partition; the kernel mounts and checks the partitions. A raw disk
/// image shows the same.
#[test]
fn whole_disks_show_the_disk_and_each_partition() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let raw = volume(tmp.path(), "disk", "rpi");
    let img = save(tmp.path(), &raw, "rpi.fsimg", &["-z"]);
    let restored = restore(tmp.path(), &img);
    let disk = fs::read(&restored).unwrap();
    let parts = partitions("rpi");
    assert_eq!(parts.len(), 2);
    {
        let m = Mounted::new(&img, &tmp.path().join("m"));
        assert_eq!(m.names(), ["disk", "p1", "p2"]);
        assert_cmp("rpi disk", &m.file("disk"), &restored);
        assert_partitions("rpi", &m, &disk, &parts);
        if have("e2fsck") {
            assert_eq!(check("ext", &m.file("p2")).0, Some(0), "e2fsck -fn p2");
        }
        if have("fsck.fat") {
            assert_eq!(check("fat", &m.file("p1")).0, Some(0), "fsck.fat -n p1");
        }
        // The root partition through a loop device, as the issue's
        // example does; p1 (FAT32) through mtools (no vfat driver here).
        let root_dir = tmp.path().join("root");
        let k = Kernel::new(
            Command::new("mount")
                .args(["-o", "loop,ro"])
                .arg(m.file("p2")),
            &root_dir,
        );
        assert!(root_dir.join("etc").is_dir(), "p2 mounted");
        drop(k);
        if have("mdir") {
            let out = Command::new("mdir")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(m.file("p1"))
                .arg("::")
                .output()
                .unwrap();
            assert!(out.status.success(), "mdir p1");
        }
    }
    // The raw disk image: the same files, read in place.
    {
        let m = Mounted::new(&raw, &tmp.path().join("m2"));
        assert_eq!(m.names(), ["disk", "p1", "p2"]);
        assert_cmp("rpi.img disk", &m.file("disk"), &raw);
        let bytes = fs::read(&raw).unwrap();
        assert_partitions("rpi.img", &m, &bytes, &parts);
    }
    // A GPT disk with six partitions: ESP, NTFS, ext4, swap and raw ones.
    let raw = volume(tmp.path(), "disk", "gpt-dualboot");
    let img = save(tmp.path(), &raw, "gpt.fsimg", &["-z"]);
    let restored = restore(tmp.path(), &img);
    let disk = fs::read(&restored).unwrap();
    let parts = partitions("gpt-dualboot");
    let m = Mounted::new(&img, &tmp.path().join("m3"));
    let want: Vec<String> = ["disk"]
        .into_iter()
        .map(String::from)
        .chain(parts.iter().map(|p| format!("p{}", p.0)))
        .collect();
    assert_eq!(m.names(), want);
    assert_cmp("gpt-dualboot disk", &m.file("disk"), &restored);
    assert_partitions("gpt-dualboot", &m, &disk, &parts);
    let e = expected_in("disk", "gpt-dualboot");
    for &(n, _, _) in &parts {
        let dir = tmp.path().join(format!("gpt-p{n}"));
        match e[&format!("p{n}_fs")].as_str() {
            "ntfs" if have("ntfs-3g") => {
                let _k = Kernel::new(
                    Command::new("ntfs-3g")
                        .args(["-o", "ro"])
                        .arg(m.file(&format!("p{n}"))),
                    &dir,
                );
                assert!(fs::read_dir(&dir).unwrap().next().is_some(), "p{n}");
            }
            "ext4" => {
                let _k = Kernel::new(
                    Command::new("mount")
                        .args(["-o", "loop,ro"])
                        .arg(m.file(&format!("p{n}"))),
                    &dir,
                );
                assert!(dir.join("lost+found").is_dir(), "p{n}");
            }
            _ => {}
        }
    }
}

/// Each record of an image: (image offset, image length, volume span).
fn records(img: &Path) -> Vec<(u64, u64, (u64, u64))> {
    let mut r = fsimg::image::ImageReader::new(fs::File::open(img).unwrap(), "img").unwrap();
    let mut out: Vec<(u64, u64, (u64, u64))> = Vec::new();
    while let Some(raw) = r.next_record().unwrap() {
        if let Some(last) = out.last_mut() {
            last.1 = raw.offset - last.0;
        }
        let span = (raw.extents[0].offset, raw.extents.last().unwrap().end());
        out.push((raw.offset, 0, span));
    }
    let end = r.position() - r.trailer().unwrap().to_bytes().len() as u64;
    if let Some(last) = out.last_mut() {
        last.1 = end - last.0;
    }
    out
}

/// Starts `fsimg mount -f IMG DIR` with its standard error in `log`, and
/// waits for the mount.
fn foreground(img: &Path, dir: &Path, log: &Path) -> Child {
    fs::create_dir_all(dir).unwrap();
    let child = fsimg()
        .args(["mount", "-f", s(img), s(dir)])
        .stdin(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !mounted_on(dir) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not mounted: {}",
            fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A record whose data fails its checksum: the reads of its bytes fail
/// with EIO, everything else reads as the restore of the intact image,
/// and the error is logged once.
#[test]
fn a_damaged_record_fails_only_its_bytes() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let vol = volume(tmp.path(), "ext", "ext4-default");
    let img = save(tmp.path(), &vol, "d.fsimg", &["-z"]);
    let want = fs::read(restore(tmp.path(), &img)).unwrap();
    let recs = records(&img);
    assert!(recs.len() >= 5, "{} records", recs.len());
    // The record with the most data (a zstd record of zeros is a few
    // bytes): its data is the last 100 bytes of it.
    let &(offset, len, span) = recs.iter().max_by_key(|r| r.1).unwrap();
    assert!(len > 10_000, "{len}");
    let mut bytes = fs::read(&img).unwrap();
    bytes[(offset + len - 100) as usize] ^= 1; // in its data
    fs::write(&img, &bytes).unwrap();

    let dir = tmp.path().join("m");
    let log = tmp.path().join("log");
    let mut child = foreground(&img, &dir, &log);
    let f = fs::File::open(dir.join("volume")).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut bad = Vec::new();
    // Twice: the second pass meets the same error (logged once).
    for _ in 0..2 {
        bad.clear();
        for at in (0..want.len() as u64).step_by(4096) {
            match f.read_at(&mut buf, at) {
                Ok(n) => {
                    assert_eq!(n, 4096);
                    assert!(buf == want[at as usize..at as usize + 4096], "at {at}");
                }
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(5), "at {at}: {e}"); // EIO
                    bad.push(at);
                }
            }
        }
    }
    drop(f);
    assert!(!bad.is_empty());
    // Only pages that hold bytes of the damaged record fail.
    for &at in &bad {
        assert!(
            at + 4096 > span.0 && at < span.1,
            "page {at} outside {span:?}"
        );
    }
    kill(child.id(), "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let text = fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("fsimg: read error"))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].starts_with("fsimg: read error in volume at bytes ")
            && errors[0].contains(&format!(
                "(answered EIO; the rest is served): {}: image record at byte {offset} (volume byte {}): data checksum mismatch",
                img.display(),
                span.0
            )),
        "{text}"
    );
    assert!(
        text.contains(" unmounted: ") && !text.contains(" 0 read errors"),
        "{text}"
    );
    assert!(!mounted_on(&dir));
}

/// SIGTERM to the background server unmounts and ends it; SIGINT to a
/// foreground mount too. A mount a loop device uses is detached from the
/// tree and served until the loop device lets go.
#[test]
fn signals_unmount() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let raw = volume(tmp.path(), "disk", "rpi");
    let img = save(tmp.path(), &raw, "rpi.fsimg", &["-z"]);

    // SIGTERM, idle.
    let dir = tmp.path().join("a");
    let out = run_ok(&["mount", "-q", s(&img), s(&dir_made(&dir))]);
    assert!(out.stderr.is_empty(), "-q");
    let pid = server_of(&dir);
    kill(pid, "-TERM");
    assert!(wait_ended(pid), "the server ends");
    assert!(!mounted_on(&dir), "no stale mount");

    // SIGINT to a foreground mount.
    let dir = tmp.path().join("b");
    let log = tmp.path().join("b.log");
    let mut child = foreground(&img, &dir, &log);
    kill(child.id(), "-INT");
    assert!(child.wait().unwrap().success());
    assert!(!mounted_on(&dir));
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains(" unmounted: "), "{text}");

    // SIGTERM while a loop device reads p2: detached, served on.
    let dir = tmp.path().join("c");
    let m = Mounted::new(&img, &dir);
    let root_dir = tmp.path().join("root");
    let k = Kernel::new(
        Command::new("mount")
            .args(["-o", "loop,ro"])
            .arg(m.file("p2")),
        &root_dir,
    );
    // `fsimg umount` refuses: busy.
    let out = run(&["umount", s(&dir)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "fsimg: cannot unmount {}: it is busy (a loop device, a mount or an open file uses a file in it); unmount or close that first\n",
            dir.display()
        )
    );
    kill(m.pid, "-TERM");
    let start = Instant::now();
    while mounted_on(&dir) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!mounted_on(&dir), "detached");
    assert!(!ended(m.pid), "still serving the loop device");
    let listing = fs::read_dir(root_dir.join("etc")).unwrap().count();
    assert!(listing > 0);
    drop(k);
    assert!(wait_ended(m.pid), "ends once the loop device is gone");
    let mut m = m;
    m.active = false;
}

fn dir_made(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}

/// The pid of the process holding the FUSE mount on `dir`: the one
/// `fsimg mount --server` whose arguments end with `dir`.
fn server_of(dir: &Path) -> u32 {
    for e in fs::read_dir("/proc").unwrap() {
        let e = e.unwrap();
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if args.contains(&&b"--server"[..])
            && args.iter().rev().nth(1) == Some(&s(dir).as_bytes())
            && !ended(pid)
        {
            return pid;
        }
    }
    panic!("no server for {}", dir.display());
}

/// A metadata-only image mounts with the warning `cat` gives, relayed
/// from the background server.
#[test]
fn warnings_reach_the_user() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let vol = volume(tmp.path(), "ext", "ext4-default");
    let img = save(tmp.path(), &vol, "meta.fsimg", &["-m"]);
    let m = Mounted::new(&img, &tmp.path().join("m"));
    assert!(
        m.stderr.starts_with(
            "fsimg: warning: this is a metadata-only image (-m): file contents were not saved and read as zeros\nfsimg: "
        ),
        "{}",
        m.stderr
    );
    assert_checks_alike(
        "metadata",
        "ext",
        &m.file("volume"),
        &restore(tmp.path(), &img),
    );
}

/// Asserts `fsimg ARGS` fails with exactly `msg` (one line) and `code`.
fn assert_fails(out: &Output, code: i32, msg: &str) {
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("fsimg: {msg}\n")
    );
    assert_eq!(out.status.code(), Some(code), "{msg}");
}

/// The errors found before anything is mounted, each with its exact
/// message, in the background and in the foreground alike.
#[test]
fn errors_before_mounting() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = volume(tmp.path(), "ext", "ext4-default");
    let dir = dir_made(&tmp.path().join("m"));
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    let full = dir_made(&tmp.path().join("full"));
    fs::write(full.join("f"), b"x").unwrap();
    let fifo = tmp.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let missing = tmp.path().join("missing");
    for fg in [&[][..], &["-f"][..]] {
        let mount = |img: &Path, dir: &Path| {
            let mut args = vec!["mount"];
            args.extend_from_slice(fg);
            args.extend_from_slice(&[s(img), s(dir)]);
            run(&args)
        };
        assert_fails(
            &mount(&vol, &file),
            1,
            &format!("cannot mount on {}: not a directory", file.display()),
        );
        assert_fails(
            &mount(&vol, &full),
            1,
            &format!(
                "cannot mount on {}: the directory is not empty",
                full.display()
            ),
        );
        assert_fails(
            &mount(&vol, &missing),
            1,
            &format!(
                "cannot mount on {}: No such file or directory (os error 2)",
                missing.display()
            ),
        );
        assert_fails(
            &mount(&fifo, &dir),
            2,
            &format!(
                "{}: random access needs a seekable file; save the image to a file first",
                fifo.display()
            ),
        );
        assert_fails(
            &mount(Path::new("-"), &dir),
            2,
            "standard input: random access needs a seekable file; save the image to a file first",
        );
        if can_mount() {
            assert_fails(
                &mount(&missing, &dir),
                1,
                &format!(
                    "cannot open {}: No such file or directory (os error 2)",
                    missing.display()
                ),
            );
        }
    }
    assert!(!mounted_on(&dir));
    assert_fails(
        &run(&["umount", s(&dir)]),
        1,
        &format!("{} is not an fsimg mount", dir.display()),
    );
    let out = run(&["mount", "--cache-size", "1M", s(&vol), s(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the cache must be at least 4M"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Without /dev/fuse (hidden in a mount namespace of its own), and for a
/// user other than root without fusermount3 (hidden the same way), the
/// mount is refused with the exact message.
#[test]
fn errors_of_the_system() {
    if !can_mount() || !have("unshare") || !have("setpriv") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let vol = volume(tmp.path(), "ext", "ext4-default");
    let dir = dir_made(&tmp.path().join("m"));
    let bin = env!("CARGO_BIN_EXE_fsimg");
    // A /dev without fuse in it.
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /dev && exec {bin} mount -f {} {}",
            s(&vol),
            s(&dir)
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_fails(
        &out,
        1,
        "/dev/fuse does not exist: load the kernel's fuse module (modprobe fuse); in a container, give it the device",
    );
    // An ordinary user, and no fusermount3 (nor fuse 2's fusermount).
    for p in [tmp.path(), &dir] {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(&vol, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let hide: String = [
        "/usr/bin/fusermount3",
        "/usr/bin/fusermount",
        "/bin/fusermount3",
        "/bin/fusermount",
    ]
    .iter()
    .filter(|p| Path::new(p).exists())
    .map(|p| format!("mount --bind /dev/null {p} && "))
    .collect();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "{hide}exec setpriv --reuid=65534 --regid=65534 --clear-groups {bin} mount -f {} {}",
            s(&vol),
            s(&dir)
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_fails(
        &out,
        1,
        "fusermount3 is not installed: a user other than root mounts through it (install the fuse3 package), or mount as root",
    );
    assert!(!mounted_on(&dir));
}

/// A user other than root mounts through fusermount3 and unmounts with
/// `fsimg umount`; the files are theirs, and root does not get in (FUSE's
/// default without allow_other). Run in a mount namespace of its own,
/// where /dev/fuse is a node the user may open (this machine's is root's
/// alone).
#[test]
fn a_user_mounts_through_fusermount3() {
    if !can_mount() || !have("unshare") || !have("setpriv") || !have("fusermount3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let raw = volume(t, "disk", "rpi");
    let img = save(t, &raw, "rpi.fsimg", &["-z"]);
    let dir = dir_made(&t.join("m"));
    // Everything the user needs, theirs to read (the binary copied out
    // of a tree they may not be able to enter).
    let bin = t.join("fsimg");
    fs::copy(env!("CARGO_BIN_EXE_fsimg"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (p, mode) in [(t, 0o755), (img.as_path(), 0o644), (bin.as_path(), 0o755)] {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let script = format!(
        "set -e
        mknod -m 666 {t}/fuse c 10 229 && mount --bind {t}/fuse /dev/fuse
        u() {{ setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\"; }}
        u {bin} mount -q {img} {dir}
        u stat -c '%u %a %s %n' {dir}/disk {dir}/p1 {dir}/p2
        u cmp {dir}/disk {restored}
        ls {dir} 2>/dev/null && echo root got in
        u {bin} umount {dir}
        grep -c ' {dir} ' /proc/self/mountinfo || true",
        t = s(t),
        bin = s(&bin),
        img = s(&img),
        dir = s(&dir),
        restored = s(&restore(t, &img)),
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parts = partitions("rpi");
    let want = format!(
        "65534 444 {} {d}/disk\n65534 444 {} {d}/p1\n65534 444 {} {d}/p2\n0\n",
        fs::metadata(&raw).unwrap().len(),
        parts[0].2,
        parts[1].2,
        d = s(&dir)
    );
    assert_eq!(text, want);
}

/// The reader under a mount: threads reading the same records at once
/// decode each one once, and reading ahead (`prefetch`) decodes what the
/// reads then find in the cache. No mount needed.
#[test]
fn threads_share_decoded_records() {
    use fsimg::access::ImageSource;
    use fsimg::source::Source;
    let tmp = tempfile::tempdir().unwrap();
    let vol = volume(tmp.path(), "ext", "ext4-default");
    let img = save(tmp.path(), &vol, "d.fsimg", &["-z"]);
    let want = fs::read(restore(tmp.path(), &img)).unwrap();
    let records = records(&img).len() as u64;
    let open = || {
        ImageSource::open_with_cache(
            fs::File::open(&img).unwrap(),
            "d.fsimg",
            &fsimg::report::Silent,
            64 << 20,
        )
        .unwrap()
    };
    // Eight threads, each reading the whole volume in 64 KiB pieces.
    let src = open();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (src, want) = (&src, &want);
            s.spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                for k in 0..want.len() / buf.len() {
                    // Each thread starts elsewhere, so they meet.
                    let at = (k + t * 37) % (want.len() / buf.len()) * buf.len();
                    src.read_exact_at(&mut buf, at as u64).unwrap();
                    assert!(buf == want[at..at + buf.len()], "at {at}");
                }
            });
        }
    });
    assert_eq!(src.records_decoded(), records, "each record decoded once");
    assert!(src.cache_hits() > 0);
    // Read ahead, then read: nothing more to decode.
    let src = open();
    src.prefetch(0, src.size()).unwrap();
    assert_eq!(src.records_decoded(), records);
    let mut all = vec![0u8; want.len()];
    src.read_exact_at(&mut all, 0).unwrap();
    assert!(all == want);
    assert_eq!(src.records_decoded(), records);
}
