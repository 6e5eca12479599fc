//! btrfs: the test volumes of testdata/btrfs (tools/make-btrfs-testdata.sh)
//! copied in every mode and checked with btrfs-progs, the kernel (loop
//! mounts, as root) and partclone's recorded map; corrupted volumes give
//! exact errors.
//!
//! Where a check needs to know where metadata is, it asks btrfs-progs
//! (`dump-tree`), not fsimg's own chunk mapping.

mod common;

use common::{
    Loop, Mount, assert_round_trips, assert_used_only, expected_in, expected_u64, fsimg, have,
    image, images, root, run, run_ok,
};
use fsimg::fs::{FsChoice, open};
use fsimg::source::{MemSource, Source};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The volumes fsimg copies (not the refusal cases).
fn volumes() -> Vec<String> {
    let v: Vec<String> = images("btrfs")
        .into_iter()
        .filter(|n| !n.starts_with("refuse"))
        .collect();
    assert!(v.len() >= 5, "btrfs test volumes are missing: {v:?}");
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes testdata/btrfs/NAME to DIR/NAME.img.
fn write_volume(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.img"));
    fs::write(&p, image("btrfs", name)).unwrap();
    p
}

fn allocation(bytes: &[u8], name: &str) -> fsimg::fs::Allocation {
    let src = MemSource::new(bytes.to_vec(), name);
    open(&src, FsChoice::Btrfs)
        .unwrap()
        .allocation(&src)
        .unwrap()
}

/// `btrfs check --readonly` (with `--check-data-csum` unless `metadata_only`).
fn assert_btrfs_check(path: &Path, what: &str, data_csum: bool) {
    if !have("btrfs") {
        return;
    }
    let mut c = Command::new("btrfs");
    c.args(["check", "--readonly"]);
    if data_csum {
        c.arg("--check-data-csum");
    }
    let out = c.arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{what}: btrfs check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A chunk as btrfs-progs prints it: (logical, length, DUP, stripe offsets).
struct ProgsChunk {
    logical: u64,
    length: u64,
    stripes: Vec<u64>,
}

fn dump_tree(path: &Path, args: &[&str]) -> String {
    let out = Command::new("btrfs")
        .args(["inspect-internal", "dump-tree"])
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "dump-tree {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The numbers after `word` on a line.
fn after(line: &str, word: &str) -> Option<u64> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next()?.trim_end_matches(')').parse().ok();
        }
    }
    None
}

/// The chunks, from `dump-tree -t chunk`.
fn progs_chunks(path: &Path) -> Vec<ProgsChunk> {
    let mut out: Vec<ProgsChunk> = Vec::new();
    for line in dump_tree(path, &["-t", "chunk"]).lines() {
        let l = line.trim();
        if l.contains("CHUNK_ITEM") && l.starts_with("item") {
            let logical = l
                .split("CHUNK_ITEM ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap()
                .parse()
                .unwrap();
            out.push(ProgsChunk {
                logical,
                length: 0,
                stripes: Vec::new(),
            });
        } else if l.starts_with("length ") {
            out.last_mut().unwrap().length = after(l, "length").unwrap();
        } else if l.starts_with("stripe ") {
            assert_eq!(after(l, "devid"), Some(1));
            out.last_mut()
                .unwrap()
                .stripes
                .push(after(l, "offset").unwrap());
        }
    }
    out
}

/// Every physical copy of the logical range.
fn physical(chunks: &[ProgsChunk], logical: u64) -> Vec<u64> {
    let c = chunks
        .iter()
        .find(|c| logical >= c.logical && logical < c.logical + c.length)
        .unwrap_or_else(|| panic!("{logical} in no chunk"));
    c.stripes.iter().map(|s| s + logical - c.logical).collect()
}

/// The logical address of every tree block btrfs-progs lists: the extent
/// tree's METADATA_ITEMs and tree-block EXTENT_ITEMs, and the log trees'
/// blocks (which the extent tree does not hold).
fn progs_tree_blocks(path: &Path, nodesize: u64, log_root: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let text = dump_tree(path, &["-t", "extent"]);
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        if !l.starts_with("item ") {
            continue;
        }
        let key = l
            .split('(')
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap();
        let f: Vec<&str> = key.split_whitespace().collect();
        let tree_block = f[1] == "METADATA_ITEM"
            || (f[1] == "EXTENT_ITEM"
                && lines.get(i + 1).is_some_and(|n| n.contains("TREE_BLOCK")));
        if tree_block {
            let len = if f[1] == "METADATA_ITEM" {
                nodesize
            } else {
                f[2].parse().unwrap()
            };
            out.push((f[0].parse().unwrap(), len));
        }
    }
    if log_root != 0 {
        let mut roots = vec![log_root];
        while let Some(r) = roots.pop() {
            let text = dump_tree(path, &["-b", &r.to_string(), "--follow"]);
            for l in text.lines() {
                let t = l.trim();
                if (t.starts_with("leaf ") || t.starts_with("node ")) && t.contains(" items ") {
                    out.push((after(t, t.split(' ').next().unwrap()).unwrap(), nodesize));
                }
                if t.starts_with("generation ") && t.contains(" bytenr ") && r == log_root {
                    roots.push(after(t, "bytenr").unwrap());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The data extents the log trees point at (not in the extent tree).
fn progs_log_data(path: &Path, log_root: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if log_root == 0 {
        return out;
    }
    for l in dump_tree(path, &["-b", &log_root.to_string(), "--follow"]).lines() {
        let t = l.trim();
        if t.starts_with("generation ") && t.contains(" bytenr ") {
            let sub = after(t, "bytenr").unwrap();
            for l in dump_tree(path, &["-b", &sub.to_string(), "--follow"]).lines() {
                if l.contains("extent data disk byte") {
                    let at = after(l, "byte").unwrap();
                    if at != 0 {
                        out.push((at, after(l, "nr").unwrap()));
                    }
                }
            }
        }
    }
    out
}

/// The values `fsimg info` prints agree with dump-super; the volume is
/// consistent and has no warnings.
#[test]
fn info_agrees_with_dump_super() {
    for name in volumes() {
        let e = expected_in("btrfs", &name);
        let dir = tempfile::tempdir().unwrap();
        let p = write_volume(dir.path(), &name);
        let out = run_ok(&["info", s(&p)]);
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("{name}: no {k} in {text}"))
        };
        assert_eq!(field("filesystem"), "btrfs", "{name}");
        assert_eq!(field("uuid"), e["fsid"], "{name}");
        assert_eq!(field("nodesize"), e["nodesize"], "{name}");
        assert_eq!(field("sectorsize"), e["sectorsize"], "{name}");
        assert_eq!(field("cluster size"), e["sectorsize"], "{name}");
        assert_eq!(field("generation"), e["generation"], "{name}");
        assert_eq!(
            field("bytes used"),
            format!("{} (superblock)", e["bytes_used"]),
            "{name}"
        );
        assert_eq!(field("device size"), e["total_bytes"], "{name}");
        let csum =
            ["crc32c", "xxhash64", "sha256", "blake2b"][expected_u64(&e, "csum_type") as usize];
        assert_eq!(field("checksum"), csum, "{name}");
        let log = expected_u64(&e, "log_root") != 0;
        assert_eq!(field("state").contains("log tree"), log, "{name}");
        let a = allocation(&fs::read(&p).unwrap(), &name);
        assert!(
            a.inconsistencies.is_empty(),
            "{name}: {:?}",
            a.inconsistencies
        );
        assert!(a.warnings.is_empty(), "{name}: {:?}", a.warnings);
    }
}

/// Clone (-o), restore from plain and zstd images (-s, -z, -r, verify):
/// only used sectors written, btrfs check (with data checksums) clean.
#[test]
fn clones_and_images_round_trip_and_pass_btrfs_check() {
    for name in volumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_volume(dir.path(), &name);
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", s(&clone), s(&p)]);
        let cloned = fs::read(&clone).unwrap();
        assert_used_only(&name, &fs::read(&p).unwrap(), &cloned);
        assert_btrfs_check(&clone, &name, true);
        assert_round_trips(&name, dir.path(), s(&p), &cloned, "btrfs");
    }
}

/// -O onto an existing target and -o - to standard output give the clone.
#[test]
fn overwrite_and_stdout_give_the_clone() {
    let name = "dupdata-sha256";
    let dir = tempfile::tempdir().unwrap();
    let p = write_volume(dir.path(), name);
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&p)]);
    let cloned = fs::read(&clone).unwrap();
    let target = dir.path().join("target.img");
    fs::write(&target, vec![0x55u8; cloned.len()]).unwrap();
    run_ok(&["-q", "-O", s(&target), s(&p)]);
    // -O writes only used clusters: the rest keeps the target's bytes.
    let t = fs::read(&target).unwrap();
    let a = allocation(&fs::read(&p).unwrap(), name);
    let cs = a.map.cluster_size() as usize;
    for c in 0..a.map.total_clusters() as usize {
        let r = c * cs..(c + 1) * cs;
        if a.map.is_used(c as u64) {
            assert!(t[r.clone()] == cloned[r], "-O: cluster {c}");
        } else {
            assert!(t[r].iter().all(|&b| b == 0x55), "-O: free cluster {c}");
        }
    }
    let out = fsimg()
        .args(["-q", "-o", "-", s(&p)])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout == cloned, "-o -");
}

/// Both copies of every DUP tree block (and the single copy elsewhere),
/// found through btrfs-progs' chunk tree, are in the clone and the
/// metadata-only copy, byte for byte; the metadata-only copy holds
/// exactly them, the superblocks and the first MiB, and passes btrfs check.
#[test]
fn every_copy_of_every_tree_block_is_copied() {
    if !have("btrfs") {
        return;
    }
    for name in volumes() {
        let e = expected_in("btrfs", &name);
        let nodesize = expected_u64(&e, "nodesize");
        let total = expected_u64(&e, "total_bytes");
        let dir = tempfile::tempdir().unwrap();
        let p = write_volume(dir.path(), &name);
        let src = fs::read(&p).unwrap();
        let clone = dir.path().join("clone.img");
        let meta = dir.path().join("meta.img");
        run_ok(&["-q", "-o", s(&clone), s(&p)]);
        run_ok(&["-q", "-m", "-o", s(&meta), s(&p)]);
        let cloned = fs::read(&clone).unwrap();
        let metad = fs::read(&meta).unwrap();
        let chunks = progs_chunks(&p);
        let blocks = progs_tree_blocks(&p, nodesize, expected_u64(&e, "log_root"));
        assert!(!blocks.is_empty());
        let mut want = vec![false; (total / 4096) as usize];
        let mut mark = |at: u64, len: u64| {
            for c in at / 4096..(at + len).div_ceil(4096) {
                want[c as usize] = true;
            }
        };
        mark(0, 1 << 20);
        mark(64 << 20, 4096);
        let mut dup = 0;
        for &(logical, len) in &blocks {
            let copies = physical(&chunks, logical);
            dup += usize::from(copies.len() == 2);
            for at in copies {
                let r = at as usize..(at + len) as usize;
                assert!(
                    src[r.clone()] == cloned[r.clone()],
                    "{name}: block {logical} at {at}"
                );
                assert!(
                    src[r.clone()] == metad[r.clone()],
                    "{name} -m: block {logical} at {at}"
                );
                assert!(src[r.clone()].iter().any(|&b| b != 0));
                mark(at, len);
            }
        }
        if name.starts_with("single") {
            assert_eq!(dup, 0, "{name}");
        } else {
            assert_eq!(dup, blocks.len(), "{name}: every tree block has two copies");
        }
        // The -m copy holds exactly these (and nothing of the file data).
        for (c, &w) in want.iter().enumerate() {
            let r = c * 4096..(c + 1) * 4096;
            if !w {
                assert!(
                    metad[r].iter().all(|&b| b == 0),
                    "{name} -m: sector {c} is not metadata but was copied"
                );
            }
        }
        let a = {
            let s = MemSource::new(src.clone(), &name);
            open(&s, FsChoice::Btrfs).unwrap().metadata(&s).unwrap()
        };
        let n_want = want.iter().filter(|&&w| w).count() as u64;
        assert_eq!(a.allocation.map.used_clusters(), n_want, "{name} -m: used");
        assert_btrfs_check(&meta, &format!("{name} -m"), false);
        if have("btrfs-image") && name == "dup-crc32c" {
            let dump = dir.path().join("dump");
            let st = Command::new("btrfs-image")
                .arg(&p)
                .arg(&dump)
                .status()
                .unwrap();
            assert!(st.success());
            eprintln!(
                "{name}: btrfs-image dump {} bytes; fsimg -m copies {} bytes",
                fs::metadata(&dump).unwrap().len(),
                a.allocation.map.used_bytes()
            );
        }
    }
}

/// partclone.btrfs's map (recorded by the testdata script) against
/// fsimg's: what partclone writes is used for fsimg too (to within
/// partclone's nodesize blocks), or zeros, or a stale tree block; every
/// sector fsimg copies that partclone does not is explained by a
/// partclone bug:
/// - the first MiB besides the superblock (boot loaders live there);
/// - the second copy of DUP chunks (partclone maps only stripe 0: #239,
///   #270);
/// - the log trees and the data they point at (partclone does not walk
///   the log tree).
#[test]
fn used_count_against_partclone() {
    if !have("btrfs") {
        return;
    }
    for name in volumes() {
        let e = expected_in("btrfs", &name);
        let Some(ranges) = e.get("partclone_ranges") else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let p = write_volume(dir.path(), &name);
        let src = fs::read(&p).unwrap();
        let a = allocation(&src, &name);
        let nodesize = expected_u64(&e, "nodesize");
        let log_root = expected_u64(&e, "log_root");
        let live: Vec<u64> = progs_tree_blocks(&p, nodesize, log_root)
            .into_iter()
            .map(|b| b.0)
            .collect();
        let (mut pc_zero, mut pc_stale) = (0u64, 0u64);
        let cs = 4096u64;
        let total = expected_u64(&e, "total_bytes") / cs;
        let mut pc = vec![false; total as usize];
        let mut pc_bytes = 0;
        for r in ranges.split(',') {
            let (at, n) = r.split_once('+').unwrap();
            let (at, n): (u64, u64) = (at.parse().unwrap(), n.parse().unwrap());
            pc_bytes += n;
            for c in at / cs..(at + n) / cs {
                pc[c as usize] = true;
            }
            // A partclone block (nodesize bytes) with no used sector for
            // fsimg is either never written (zeros) or a stale tree block
            // freed in this or an older generation, in no extent item (the
            // superblock's backup roots point at some of these; btrfs
            // reuses them at will, and neither check nor mount needs
            // them).
            for b in (at..at + n).step_by(nodesize as usize) {
                if a.map.count_used(b / cs, nodesize / cs) > 0 {
                    continue;
                }
                let blk = &src[b as usize..(b + nodesize) as usize];
                if blk.iter().all(|&x| x == 0) {
                    pc_zero += nodesize;
                    continue;
                }
                let bytenr = u64at(blk, 0x30);
                let generation = u64at(blk, 0x50);
                assert!(
                    blk[0x20..0x30] == src[SB + 0x20..SB + 0x30]
                        && generation <= u64at(&src, SB + 0x48)
                        && !live.contains(&bytenr),
                    "{name}: partclone copies {b}..+{nodesize} (bytenr {bytenr}, generation {generation}), fsimg nothing there"
                );
                pc_stale += nodesize;
            }
        }
        // partclone's 'Space in use' can be less than what its image
        // writes back (blake2-node64k: 4 blocks more): the map written is
        // what counts here, both are reported.
        let pc_said = expected_u64(&e, "partclone_used_bytes");
        // Sectors fsimg copies and partclone does not, by reason.
        let chunks = progs_chunks(&p);
        let mut second_copy = vec![false; total as usize];
        for c in chunks.iter().filter(|c| c.stripes.len() == 2) {
            for x in c.stripes[1] / cs..(c.stripes[1] + c.length) / cs {
                second_copy[x as usize] = true;
            }
        }
        let mut log = vec![false; total as usize];
        let log_ranges: Vec<(u64, u64)> = progs_tree_blocks(&p, nodesize, log_root)
            .into_iter()
            .filter(|_| log_root != 0)
            .chain(progs_log_data(&p, log_root))
            .collect();
        for (logical, len) in log_ranges {
            for at in physical(&chunks, logical) {
                for x in at / cs..(at + len).div_ceil(cs) {
                    log[x as usize] = true;
                }
            }
        }
        let (mut head, mut dup, mut logged) = (0u64, 0u64, 0u64);
        for c in 0..total {
            if !a.map.is_used(c) || pc[c as usize] {
                continue;
            }
            if c * cs < 1 << 20 {
                head += 1;
            } else if second_copy[c as usize] {
                dup += 1;
            } else if log[c as usize] {
                logged += 1;
            } else {
                panic!("{name}: sector {c} is copied by fsimg, not partclone, unexplained");
            }
        }
        assert!(head > 0, "{name}");
        assert_eq!(dup > 0, !name.starts_with("single"), "{name}");
        if log_root != 0 {
            assert!(logged > 0, "{name}: the log tree is what partclone misses");
        }
        eprintln!(
            "{name}: fsimg {} bytes, partclone writes {pc_bytes} (says {pc_said}; {pc_zero} never written, {pc_stale} stale tree blocks); fsimg only: first MiB {}, DUP second copies {}, log {}",
            a.map.used_bytes(),
            head * cs,
            dup * cs,
            logged * cs
        );
    }
}

/// Every file of the volume: path -> (kind, size, sha256 of the content
/// or the link target).
fn manifest(dir: &Path) -> BTreeMap<String, (char, u64, Vec<u8>)> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            let v = if m.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                ('l', 0, t.to_string_lossy().as_bytes().to_vec())
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', 0, Vec::new())
            } else {
                let c = fs::read(&p).unwrap();
                ('f', m.len(), sha2::Sha256::digest(&c).to_vec())
            };
            out.insert(rel, v);
        }
    }
    out
}

fn mounted_manifest(img: &Path, mnt: &Path) -> BTreeMap<String, (char, u64, Vec<u8>)> {
    let lo = Loop::attach(img, false);
    let m = Mount::new(&lo.dev, mnt, "ro");
    let out = manifest(&m.dir);
    drop(m);
    drop(lo);
    out
}

/// As root: the clone mounts and its files equal the source's (a volume
/// with a log tree has its fsync()ed file after replay); the metadata-only
/// copy lists every file with its size.
#[test]
fn files_equal_through_a_loop_mount() {
    if !root() || !have("losetup") {
        return;
    }
    for name in volumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_volume(dir.path(), &name);
        let clone = dir.path().join("clone.img");
        let meta = dir.path().join("meta.img");
        run_ok(&["-q", "-o", s(&clone), s(&p)]);
        run_ok(&["-q", "-m", "-o", s(&meta), s(&p)]);
        let mnt = dir.path().join("mnt");
        let want = mounted_manifest(&p, &mnt);
        let got = mounted_manifest(&clone, &mnt);
        assert!(want.len() > 20, "{name}: {}", want.len());
        assert_eq!(got, want, "{name}: files through a mount");
        if expected_u64(&expected_in("btrfs", &name), "log_root") != 0 {
            let f = &want["fsynced.bin"];
            assert_eq!(f.1, 256 * 512, "{name}: the log was replayed");
        }
        // -m: every name and size, no content (compressed files cannot be
        // read, so only the listing is compared).
        let lo = Loop::attach(&meta, false);
        let m = Mount::new(&lo.dev, &mnt, "ro");
        let mut names = Vec::new();
        let mut stack = vec![m.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let md = fs::symlink_metadata(e.path()).unwrap();
                if md.is_dir() {
                    stack.push(e.path());
                }
                let rel = e
                    .path()
                    .strip_prefix(&m.dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let size = if md.is_file() { md.len() } else { 0 };
                names.push((rel, size));
            }
        }
        names.sort();
        let want_names: Vec<(String, u64)> = want.iter().map(|(k, v)| (k.clone(), v.1)).collect();
        assert_eq!(names, want_names, "{name} -m: listing");
    }
}

/// A whole disk: an MBR made with sfdisk, the volume in partition 1; the
/// disk is cloned, saved and restored, and the partition checks clean.
#[test]
fn inside_a_whole_disk() {
    if !have("sfdisk") {
        return;
    }
    let name = "dup-crc32c";
    let dir = tempfile::tempdir().unwrap();
    let vol = image("btrfs", name);
    let start = 1u64 << 20;
    let disk = dir.path().join("disk.img");
    let mut bytes = vec![0u8; vol.len() + (2 << 20)];
    bytes[start as usize..start as usize + vol.len()].copy_from_slice(&vol);
    fs::write(&disk, &bytes).unwrap();
    let mut c = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(&disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(
        c.stdin.take().unwrap(),
        "label: dos\nstart=2048, size={}, type=83",
        vol.len() / 512
    )
    .unwrap();
    assert!(c.wait().unwrap().success());
    let info = run_ok(&["info", s(&disk)]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("btrfs"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&disk)]);
    let cloned = fs::read(&clone).unwrap();
    let part = &cloned[start as usize..start as usize + vol.len()];
    assert_used_only(name, &vol, part);
    let img = dir.path().join("disk.fsimg");
    run_ok(&["-q", "-s", "-z", "-o", s(&img), s(&disk)]);
    run_ok(&["verify", s(&img)]);
    let restored = dir.path().join("restored.img");
    run_ok(&["-q", "-r", "-o", s(&restored), s(&img)]);
    assert!(fs::read(&restored).unwrap() == cloned, "disk restore");
    let p = dir.path().join("part.img");
    fs::write(&p, part).unwrap();
    assert_btrfs_check(&p, "partition", true);
}

/// --rescue with --mapfile on a readable volume: the copy is the clone
/// and the mapfile says everything was read.
#[test]
fn rescue_with_a_mapfile() {
    let name = "node4k";
    let dir = tempfile::tempdir().unwrap();
    let p = write_volume(dir.path(), name);
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&p)]);
    let out = dir.path().join("rescued.img");
    let map = dir.path().join("map");
    run_ok(&["-q", "--rescue", "--mapfile", s(&map), "-o", s(&out), s(&p)]);
    assert!(fs::read(&out).unwrap() == fs::read(&clone).unwrap());
    let text = fs::read_to_string(&map).unwrap();
    assert!(
        !text.lines().any(|l| l.contains(" -") || l.contains(" /")),
        "{text}"
    );
}

/// An unreadable extent tree block: without rescue the read error stops
/// the run; with rescue every chunk is copied whole, with a warning. On a
/// DUP volume the other copy is read, with a warning.
#[test]
fn unreadable_tree_blocks() {
    struct Bad {
        data: Vec<u8>,
        bad: (u64, u64),
    }
    impl Source for Bad {
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
            "bad"
        }
    }
    if !have("btrfs") {
        return;
    }
    for (name, dup) in [("single-xxhash", false), ("dup-crc32c", true)] {
        let dir = tempfile::tempdir().unwrap();
        let p = write_volume(dir.path(), name);
        let text = dump_tree(&p, &["-t", "root"]);
        let extent_root = text
            .lines()
            .skip_while(|l| !l.contains("(EXTENT_TREE ROOT_ITEM"))
            .find_map(|l| after(l, "bytenr"))
            .unwrap();
        let at = physical(&progs_chunks(&p), extent_root)[0];
        let d = Bad {
            data: fs::read(&p).unwrap(),
            bad: (at, at + 512),
        };
        let good = allocation(&d.data, name);
        let alloc = |rescue: bool| {
            let mut f = open(&d, FsChoice::Btrfs).unwrap();
            f.set_rescue(rescue);
            f.allocation(&d)
        };
        if dup {
            let a = alloc(false).unwrap();
            assert_eq!(a.map.used_clusters(), good.map.used_clusters());
            assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
            assert!(
                a.warnings[0].starts_with(&format!(
                    "btrfs: extent tree block at logical {extent_root}: the copy at physical {at} is bad (read error on bad at byte {at}"
                )),
                "{:?}",
                a.warnings
            );
            continue;
        }
        assert!(matches!(alloc(false), Err(fsimg::Error::Read { .. })));
        let a = alloc(true).unwrap();
        assert_eq!(
            a.warnings,
            vec![format!(
                "btrfs: a tree block at byte {at} cannot be read; every chunk is copied whole"
            )]
        );
        let chunk_bytes: u64 = progs_chunks(&p).iter().map(|c| c.length).sum();
        assert!(a.map.used_bytes() >= chunk_bytes + (1 << 20));
        assert!(a.map.used_bytes() > good.map.used_bytes());
    }
}

// ---- corrupted volumes ----

fn crc32c(data: &[u8]) -> u32 {
    !fsimg::fs::ext::checksum::crc32c(!0, data)
}

/// Rewrites the crc32c checksum of the block at `at` of `len` bytes.
fn fix_csum(img: &mut [u8], at: usize, len: usize) {
    let c = crc32c(&img[at + 32..at + len]);
    img[at..at + 4].copy_from_slice(&c.to_le_bytes());
}

fn u64at(img: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(img[at..at + 8].try_into().unwrap())
}

const SB: usize = 65536;

/// Runs fsimg on the corrupted volume and asserts the exact message.
fn refused(img: Vec<u8>, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.img");
    fs::write(&p, &img).unwrap();
    let out = run(&["-q", "-o", s(&dir.path().join("out.img")), s(&p)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end(), format!("fsimg: {want}"));
    // No panic, and `info` names the same problem (on stderr when the
    // volume cannot be opened, in its "allocation map" line otherwise).
    let out = run(&["info", s(&p)]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(want), "{text}");
}

#[test]
fn corrupted_superblock_checksum() {
    let mut img = image("btrfs", "dup-crc32c");
    let stored = u32::from_le_bytes(img[SB..SB + 4].try_into().unwrap());
    img[SB + 0x12b] ^= 0x20; // the label
    let computed = crc32c(&img[SB + 32..SB + 4096]);
    refused(
        img,
        &format!(
            "btrfs: superblock checksum mismatch at byte 65536: stored 0x{}, computed 0x{} (crc32c); `btrfs rescue super-recover` may restore it from a mirror",
            hex(&stored.to_le_bytes()),
            hex(&computed.to_le_bytes())
        ),
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A tree block whose checksum fails in both DUP copies: named by its
/// logical address and the first copy's physical offset. With one copy
/// bad the other is used, with a warning.
#[test]
fn corrupted_tree_block_checksum() {
    if !have("btrfs") {
        return;
    }
    let name = "dup-crc32c";
    let dir = tempfile::tempdir().unwrap();
    let p = write_volume(dir.path(), name);
    let mut img = fs::read(&p).unwrap();
    let root = u64at(&img, SB + 0x50);
    let copies = physical(&progs_chunks(&p), root);
    assert_eq!(copies.len(), 2);
    let a = copies[0] as usize;
    let stored = hex(&img[a..a + 4]);
    img[a + 200] ^= 1;
    let computed = hex(&crc32c(&img[a + 32..a + 16384]).to_le_bytes());
    // One copy bad: copied, with a warning.
    let alloc = allocation(&img, name);
    assert_eq!(
        alloc.warnings,
        vec![format!(
            "btrfs: root tree block at logical {root}: the copy at physical {a} is bad (checksum mismatch (stored 0x{stored}, computed 0x{computed})); another copy is good (a scrub repairs it)"
        )]
    );
    let b = copies[1] as usize;
    img[b + 200] ^= 1;
    refused(
        img,
        &format!(
            "btrfs: root tree block at logical {root} (physical {a}): checksum mismatch (stored 0x{stored}, computed 0x{computed})"
        ),
    );
}

/// A system chunk whose stripe ends past the device.
#[test]
fn chunk_item_past_the_device() {
    let mut img = image("btrfs", "dup-crc32c");
    let total = u64at(&img, SB + 0xc9 + 8);
    // sys_chunk_array: key (17), chunk (48), stripe 0 devid (8), offset.
    let arr = SB + 0x32b;
    let logical = u64at(&img, arr + 9);
    let length = u64at(&img, arr + 17);
    let at = arr + 17 + 48 + 8;
    let phys = total - 4096;
    img[at..at + 8].copy_from_slice(&phys.to_le_bytes());
    fix_csum(&mut img, SB, 4096);
    refused(
        img,
        &format!(
            "btrfs: chunk at logical {logical} (length {length}) has a stripe at physical {phys} past the end of the device ({total} bytes)"
        ),
    );
}

/// The root tree's leaf made a node whose only pointer leads to itself.
#[test]
fn loop_in_a_tree() {
    if !have("btrfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write_volume(dir.path(), "dup-crc32c");
    let mut img = fs::read(&p).unwrap();
    let root = u64at(&img, SB + 0x50);
    let copies = physical(&progs_chunks(&p), root);
    for &c in &copies {
        let c = c as usize;
        let generation = u64at(&img, c + 0x50);
        img[c + 0x64] = 1; // level
        img[c + 0x60..c + 0x64].copy_from_slice(&1u32.to_le_bytes());
        // Key pointer 0: the first key stays, then blockptr and generation.
        img[c + 101 + 17..c + 101 + 25].copy_from_slice(&root.to_le_bytes());
        img[c + 101 + 25..c + 101 + 33].copy_from_slice(&generation.to_le_bytes());
        fix_csum(&mut img, c, 16384);
    }
    img[SB + 0xc6] = 1; // root_level
    fix_csum(&mut img, SB, 4096);
    refused(
        img,
        &format!(
            "btrfs: root tree block at logical {root} (physical {}): loop in the tree: a pointer leads back to block {root} on the path from the root",
            copies[0]
        ),
    );
}

/// bytes_used disagreeing with the block groups is an inconsistency:
/// refused naming both counts, copied with --ignore-fs-check.
#[test]
fn bytes_used_mismatch_needs_ignore_fs_check() {
    let mut img = image("btrfs", "dup-crc32c");
    let used = u64at(&img, SB + 0x78);
    img[SB + 0x78..SB + 0x80].copy_from_slice(&(used + 4096).to_le_bytes());
    fix_csum(&mut img, SB, 4096);
    let a = allocation(&img, "bytes_used");
    assert_eq!(
        a.inconsistencies,
        vec![
            format!(
                "btrfs: the block groups' used bytes sum to {used}, the superblock's bytes_used is {}",
                used + 4096
            ),
            format!(
                "btrfs: the extent items cover {used} bytes, the superblock's bytes_used is {}",
                used + 4096
            )
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.img");
    fs::write(&p, &img).unwrap();
    let out = run(&["-q", "-o", s(&dir.path().join("a.img")), s(&p)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--ignore-fs-check"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_ok(&[
        "-q",
        "--ignore-fs-check",
        "-o",
        s(&dir.path().join("b.img")),
        s(&p),
    ]);
}

/// A stale superblock mirror is a warning (the copy reproduces it; the
/// next commit rewrites it); a newer one is an inconsistency.
#[test]
fn superblock_mirrors() {
    let img = image("btrfs", "dup-crc32c");
    let m = 64 << 20;
    let generation = u64at(&img, m + 0x48);
    for (delta, warn) in [(-1i64, true), (1, false)] {
        let mut bad = img.clone();
        let g = generation.wrapping_add_signed(delta);
        bad[m + 0x48..m + 0x50].copy_from_slice(&g.to_le_bytes());
        fix_csum(&mut bad, m, 4096);
        let a = allocation(&bad, "mirror");
        if warn {
            assert_eq!(
                a.warnings,
                vec![format!(
                    "btrfs: superblock mirror at byte {m} is older (generation {g}, primary {generation})"
                )]
            );
            assert!(a.inconsistencies.is_empty());
        } else {
            assert_eq!(
                a.inconsistencies,
                vec![format!(
                    "btrfs: superblock mirror at byte {m} is newer than the primary (generation {g}, primary {generation}); run `btrfs rescue super-recover`"
                )]
            );
        }
    }
}

#[test]
fn multi_device_refused() {
    let img = image("btrfs", "refuse-two-devices");
    assert_eq!(
        expected_in("btrfs", "refuse-two-devices")["num_devices"],
        "2"
    );
    refused(
        img,
        "btrfs: a multi-device volume (2 devices) is not supported; use --fs-type raw to copy every block",
    );
}

/// Unknown incompat flags and a RAID1 chunk are refused by name.
#[test]
fn unsupported_features_refused() {
    let mut img = image("btrfs", "dup-crc32c");
    let flags = u64at(&img, SB + 0xbc);
    img[SB + 0xbc..SB + 0xc4].copy_from_slice(&(flags | 1 << 40).to_le_bytes());
    fix_csum(&mut img, SB, 4096);
    refused(
        img,
        "btrfs: unknown incompat flags 0x10000000000 is not supported; use --fs-type raw to copy every block",
    );
    let mut img = image("btrfs", "dup-crc32c");
    img[SB + 0xbc + 1] |= 0x10; // ZONED (1 << 12)
    fix_csum(&mut img, SB, 4096);
    refused(
        img,
        "btrfs: a zoned volume is not supported; use --fs-type raw to copy every block",
    );
}

/// Truncated volumes and random byte flips in the metadata: an error or a
/// result, never a panic.
#[test]
fn damaged_volumes_never_panic() {
    let img = image("btrfs", "node4k");
    let mut rng = common::Rng::new(20);
    let meta: Vec<(usize, usize)> = {
        let a = allocation(&img, "node4k");
        a.map
            .runs()
            .map(|r| a.map.run_bytes(r))
            .map(|(at, n)| (at as usize, n as usize))
            .filter(|&(at, _)| at >= 1 << 20)
            .collect()
    };
    for _ in 0..200 {
        let mut bad = img.clone();
        for _ in 0..1 + rng.below(8) {
            let (at, n) = meta[rng.below(meta.len() as u64) as usize];
            let i = at + rng.below(n as u64) as usize;
            bad[i] = rng.next() as u8;
        }
        let src = MemSource::new(bad, "flipped");
        if let Ok(f) = open(&src, FsChoice::Btrfs) {
            let _ = f.allocation(&src);
            let _ = f.metadata(&src);
        }
    }
    let src = MemSource::new(img[..100 << 20].to_vec(), "truncated");
    assert!(matches!(
        open(&src, FsChoice::Btrfs),
        Err(fsimg::Error::SourceTruncated { .. })
    ));
}

/// The leaf items of the tree block at physical `at`: (key type, key
/// objectid, absolute offset of the item data).
fn leaf_items(img: &[u8], at: usize) -> Vec<(u8, u64, usize)> {
    let n = u32::from_le_bytes(img[at + 0x60..at + 0x64].try_into().unwrap()) as usize;
    (0..n)
        .map(|i| {
            let it = at + 101 + 25 * i;
            let off = u32::from_le_bytes(img[it + 17..it + 21].try_into().unwrap()) as usize;
            (img[it + 8], u64at(img, it), at + 101 + off)
        })
        .collect()
}

/// A block group whose used bytes disagree with the extent items inside
/// it is named (the extent tree leaf rewritten in both copies, with its
/// checksum).
#[test]
fn block_group_used_against_its_extents() {
    if !have("btrfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write_volume(dir.path(), "dup-crc32c");
    let mut img = fs::read(&p).unwrap();
    let text = dump_tree(&p, &["-t", "root"]);
    let extent_root = text
        .lines()
        .skip_while(|l| !l.contains("(EXTENT_TREE ROOT_ITEM"))
        .find_map(|l| after(l, "bytenr"))
        .unwrap();
    let copies = physical(&progs_chunks(&p), extent_root);
    let items = leaf_items(&img, copies[0] as usize);
    let &(_, bg, data) = items
        .iter()
        .find(|(ty, _, _)| *ty == 192)
        .expect("a block group item in the extent tree root leaf");
    let used = u64at(&img, data);
    for &c in &copies {
        let d = data - copies[0] as usize + c as usize;
        img[d..d + 8].copy_from_slice(&(used + 4096).to_le_bytes());
        fix_csum(&mut img, c as usize, 16384);
    }
    let a = allocation(&img, "bg");
    let sb_used = u64at(&img, SB + 0x78);
    assert_eq!(
        a.inconsistencies,
        vec![
            format!(
                "btrfs: the block groups' used bytes sum to {}, the superblock's bytes_used is {sb_used}",
                sb_used + 4096
            ),
            format!(
                "btrfs: block group at logical {bg} says {} bytes used, its extent items cover {used} (1 such block groups)",
                used + 4096
            ),
        ]
    );
}

/// A node whose two pointers lead to the same leaf (a cross link, not a
/// loop through an ancestor) is caught by the key order across the
/// leaves of a level.
#[test]
fn block_reached_twice() {
    if !have("btrfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write_volume(dir.path(), "dup-crc32c");
    let mut img = fs::read(&p).unwrap();
    let chunks = progs_chunks(&p);
    let leaf = u64at(&img, SB + 0x50);
    let leaf_phys = physical(&chunks, leaf)[0] as usize;
    let leaf_gen = u64at(&img, leaf_phys + 0x50);
    // The new root: the last block of the root leaf's (metadata) chunk,
    // free on this small volume.
    let c = chunks
        .iter()
        .find(|c| leaf >= c.logical && leaf < c.logical + c.length)
        .unwrap();
    let node = c.logical + c.length - 16384;
    let generation = u64at(&img, SB + 0x48);
    for at in physical(&chunks, node) {
        let at = at as usize;
        assert!(img[at..at + 16384].iter().all(|&b| b == 0), "free block");
        // The header of the leaf (fsid, chunk tree uuid, owner), then ours.
        let head: Vec<u8> = img[leaf_phys..leaf_phys + 101].to_vec();
        img[at..at + 101].copy_from_slice(&head);
        img[at + 0x30..at + 0x38].copy_from_slice(&node.to_le_bytes());
        img[at + 0x50..at + 0x58].copy_from_slice(&generation.to_le_bytes());
        img[at + 0x60..at + 0x64].copy_from_slice(&2u32.to_le_bytes());
        img[at + 0x64] = 1;
        for slot in 0..2 {
            let kp = at + 101 + 33 * slot;
            // Keys: the leaf's first and second item keys.
            let key = leaf_phys + 101 + 25 * slot;
            let k: Vec<u8> = img[key..key + 17].to_vec();
            img[kp..kp + 17].copy_from_slice(&k);
            img[kp + 17..kp + 25].copy_from_slice(&leaf.to_le_bytes());
            img[kp + 25..kp + 33].copy_from_slice(&leaf_gen.to_le_bytes());
        }
        fix_csum(&mut img, at, 16384);
    }
    img[SB + 0x50..SB + 0x58].copy_from_slice(&node.to_le_bytes());
    img[SB + 0xc6] = 1;
    fix_csum(&mut img, SB, 4096);
    refused(
        img,
        &format!(
            "btrfs: root tree block at logical {leaf} (physical {leaf_phys}): key 0 is not after the key before it (keys out of order, or the block is reached twice)"
        ),
    );
}

/// Layouts not in testdata, made here by mkfs.btrfs (and btrfstune):
/// mixed block groups, a 64 KiB sectorsize, DUP data with single
/// metadata, and a metadata_uuid different from the fsid. Each clone and
/// metadata-only copy passes btrfs check.
#[test]
fn layouts_made_at_test_time() {
    if !have("mkfs.btrfs") || !have("btrfstune") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    for i in 0..30u32 {
        let body: Vec<u8> = (0..i * 997).map(|j| (j * 7 + i) as u8).collect();
        fs::write(tree.join("d").join(format!("f{i}")), body).unwrap();
    }
    let cases: [(&str, &[&str], bool); 4] = [
        ("mixed", &["-M"], false),
        ("sector64k", &["-n", "65536", "-s", "65536"], false),
        ("dupdata", &["-m", "single", "-d", "dup"], false),
        ("metadata-uuid", &[], true),
    ];
    for (name, opts, tune) in cases {
        let p = dir.path().join(format!("{name}.img"));
        fs::File::create(&p).unwrap().set_len(200 << 20).unwrap();
        let st = Command::new("mkfs.btrfs")
            .args(["-q", "-f", "--rootdir"])
            .arg(&tree)
            .args(opts)
            .arg(&p)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{name}: mkfs.btrfs");
        if tune {
            let st = Command::new("btrfstune")
                .args(["-f", "-M", "11111111-2222-3333-4444-555555555555"])
                .arg(&p)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{name}: btrfstune -M");
        }
        let src = fs::read(&p).unwrap();
        let a = allocation(&src, name);
        assert!(
            a.inconsistencies.is_empty(),
            "{name}: {:?}",
            a.inconsistencies
        );
        assert!(a.warnings.is_empty(), "{name}: {:?}", a.warnings);
        let clone = dir.path().join(format!("{name}.clone"));
        let meta = dir.path().join(format!("{name}.meta"));
        run_ok(&["-q", "-o", s(&clone), s(&p)]);
        run_ok(&["-q", "-m", "-o", s(&meta), s(&p)]);
        assert_used_only(name, &src, &fs::read(&clone).unwrap());
        assert_btrfs_check(&clone, name, true);
        assert_btrfs_check(&meta, &format!("{name} -m"), false);
        let info = run_ok(&["info", s(&p)]);
        let text = String::from_utf8_lossy(&info.stdout);
        if name == "sector64k" {
            assert!(text.contains("cluster size      65536"), "{text}");
        }
        if tune {
            // The fsid is the one users see; tree blocks carry the other.
            assert!(
                text.contains("11111111-2222-3333-4444-555555555555"),
                "{text}"
            );
        }
        fs::remove_file(&p).unwrap();
        fs::remove_file(&clone).unwrap();
        fs::remove_file(&meta).unwrap();
    }
}
