//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The fsimg binary under test.
pub fn fsimg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fsimg"))
}

/// Runs fsimg with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    fsimg()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("fsimg runs")
}

/// Runs fsimg and asserts it succeeded.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "fsimg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs fsimg, asserts exit status 1 and that stderr contains `needle`.
pub fn run_err(args: &[&str], needle: &str) -> String {
    run_fails(args, 1, needle)
}

/// Runs fsimg, asserts exit status 2 (a usage error: an argument that
/// names nothing fsimg can use) and that stderr contains `needle`.
pub fn run_usage_err(args: &[&str], needle: &str) -> String {
    run_fails(args, 2, needle)
}

fn run_fails(args: &[&str], code: i32, needle: &str) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "fsimg {args:?}: {err}");
    assert!(
        err.contains(needle),
        "fsimg {args:?}: expected {needle:?} in {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The names of the ext test images (without `.img.zst`).
pub fn ext_images() -> Vec<String> {
    let names = images("ext");
    assert!(names.len() >= 9, "ext test images are missing");
    names
}

/// The names of the test images in testdata/KIND (without `.img.zst`).
pub fn images(kind: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(testdata(kind))
        .expect("testdata directory exists")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".img.zst").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Path of a file under testdata/.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// The decompressed bytes of testdata/ext/NAME.img.zst.
pub fn ext_image(name: &str) -> Vec<u8> {
    image("ext", name)
}

/// The decompressed bytes of testdata/KIND/NAME.img.zst.
pub fn image(kind: &str, name: &str) -> Vec<u8> {
    let z = fs::read(testdata(&format!("{kind}/{name}.img.zst"))).expect("image exists");
    zstd::decode_all(&z[..]).expect("image decompresses")
}

/// The key=value lines of testdata/ext/NAME.expected.
pub fn expected(name: &str) -> HashMap<String, String> {
    expected_in("ext", name)
}

/// The key=value lines of testdata/KIND/NAME.expected.
pub fn expected_in(kind: &str, name: &str) -> HashMap<String, String> {
    fs::read_to_string(testdata(&format!("{kind}/{name}.expected")))
        .expect("expected file exists")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An expected value as a number.
pub fn expected_u64(e: &HashMap<String, String>, key: &str) -> u64 {
    e.get(key)
        .unwrap_or_else(|| panic!("{key} missing"))
        .parse()
        .expect("a number")
}

/// Whether the checks that need system tools or root must run (CI sets
/// FSIMG_REQUIRE_TOOLS=1; then a missing tool fails the test instead of
/// skipping it).
pub fn tools_required() -> bool {
    std::env::var_os("FSIMG_REQUIRE_TOOLS").is_some_and(|v| v == "1")
}

/// Whether `tool` is on PATH (or in /sbin); fails if required and absent.
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")])
        .any(|d| d.join(tool).is_file());
    if !found {
        assert!(
            !tools_required(),
            "{tool} is required (FSIMG_REQUIRE_TOOLS=1) but not installed"
        );
        eprintln!("skipping a check: {tool} is not installed");
    }
    found
}

/// Whether we are root (loop devices, mounts); fails if required and not.
pub fn root() -> bool {
    let is_root = rustix_uid_is_root();
    if !is_root {
        assert!(
            !tools_required(),
            "root is required (FSIMG_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipping a check: not root");
    }
    is_root
}

fn rustix_uid_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `e2fsck -fn PATH`: asserts the filesystem is clean (if e2fsck exists).
pub fn assert_e2fsck_clean(path: &Path) {
    if !have("e2fsck") {
        return;
    }
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .expect("e2fsck runs");
    assert!(
        out.status.success(),
        "e2fsck -fn {} failed:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loop device attached to a file, detached on drop.
pub struct Loop {
    pub dev: String,
}

impl Loop {
    pub fn attach(path: &Path, read_only: bool) -> Loop {
        Loop::attach_with(path, if read_only { &["-r"] } else { &[] })
    }

    /// Attaches with extra `losetup` options (`-b 4096`: a logical sector
    /// size).
    pub fn attach_with(path: &Path, opts: &[&str]) -> Loop {
        let mut c = Command::new("losetup");
        c.args(["-f", "--show"]).args(opts);
        let out = c.arg(path).output().expect("losetup runs");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A mount, unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    pub fn new(dev: &str, dir: &Path, opts: &str) -> Mount {
        fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-o", opts, dev])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mount {dev}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// xorshift64*: a small seeded PRNG, so every run tests the same inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Asserts `clone` equals `source` on every unit the allocation map of
/// `source` marks used, and is zero elsewhere.
pub fn assert_used_only(name: &str, source: &[u8], clone: &[u8]) {
    use fsimg::fs::{FsChoice, open};
    use fsimg::source::MemSource;
    assert_eq!(source.len(), clone.len(), "{name}: size");
    let src = MemSource::new(source.to_vec(), name);
    let alloc = open(&src, FsChoice::Auto)
        .unwrap()
        .allocation(&src)
        .unwrap();
    let u = alloc.map.cluster_size() as usize;
    for c in 0..alloc.map.total_clusters() as usize {
        let r = c * u..((c + 1) * u).min(source.len());
        if alloc.map.is_used(c as u64) {
            assert!(
                source[r.clone()] == clone[r],
                "{name}: used unit {c} differs"
            );
        } else {
            assert!(
                clone[r].iter().all(|&b| b == 0),
                "{name}: unused unit {c} written"
            );
        }
    }
}

/// Saves `src` as a plain and a zstd image in `dir`, verifies both,
/// restores both and asserts each restore equals `cloned`, and that
/// `fsimg info` names `fs`.
pub fn assert_round_trips(name: &str, dir: &Path, src: &str, cloned: &[u8], fs: &str) {
    for z in [false, true] {
        let img = dir.join(format!("{z}.fsimg"));
        let mut args = vec!["-q", "-s"];
        if z {
            args.push("-z");
        }
        args.extend(["-o", img.to_str().unwrap(), src]);
        run_ok(&args);
        run_ok(&["verify", img.to_str().unwrap()]);
        let restored = dir.join(format!("{z}.restored"));
        run_ok(&[
            "-q",
            "-r",
            "-o",
            restored.to_str().unwrap(),
            img.to_str().unwrap(),
        ]);
        assert!(
            fs::read(&restored).unwrap() == cloned,
            "{name}: restore differs"
        );
        let info = run_ok(&["info", img.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(text.contains(fs), "{name}: {text}");
    }
}

/// Path -> (mode, length, content or the error reading it).
pub type ExtTree = std::collections::BTreeMap<String, (u16, u64, Result<Vec<u8>, String>)>;

/// Every file, directory and symlink of an ext volume, read by ext4-view.
pub fn ext_tree(image: &Path) -> Option<ExtTree> {
    let fs = match ext4_view::Ext4::load_from_path(image) {
        Ok(fs) => fs,
        // ext4-view refuses some features (meta_bg); the kernel checks those.
        Err(e) => {
            eprintln!("ext4-view cannot read {}: {e}", image.display());
            return None;
        }
    };
    let mut out = std::collections::BTreeMap::new();
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
            // ext4-view 1.0 cannot read some sparse ext2 files; such an
            // error must then be the same on both sides (the kernel test
            // compares those files).
            let content = if md.is_dir() {
                dirs.push(path.clone());
                Ok(Vec::new())
            } else if md.is_symlink() {
                fs.read_link(&path)
                    .map(|l| l.as_ref().to_vec())
                    .map_err(|e| e.to_string())
            } else {
                fs.read(&path).map_err(|e| e.to_string())
            };
            let key = path.to_str().expect("utf-8 name").to_string();
            out.insert(key, (md.mode(), md.len(), content));
        }
    }
    Some(out)
}

/// Every directory and file, read by the fatfs crate (written elsewhere).
pub fn fat_tree(img: Vec<u8>) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    fn walk<T: fatfs::ReadWriteSeek>(
        dir: fatfs::Dir<'_, T>,
        prefix: &str,
        out: &mut std::collections::BTreeMap<String, Option<Vec<u8>>>,
    ) {
        for e in dir.iter() {
            let e = e.expect("dir entry");
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}/{name}");
            if e.is_dir() {
                out.insert(path.clone(), None);
                walk(e.to_dir(), &path, out);
            } else {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e.to_file(), &mut v).expect("read");
                out.insert(path, Some(v));
            }
        }
    }
    let fs =
        fatfs::FileSystem::new(std::io::Cursor::new(img), fatfs::FsOptions::new()).expect("fatfs");
    let mut out = std::collections::BTreeMap::new();
    walk(fs.root_dir(), "", &mut out);
    out
}
