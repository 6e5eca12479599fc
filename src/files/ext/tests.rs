//! Tests of the ext file reader on the testdata volumes (with ext4-view
//! as an independent oracle where it can read them) and on corrupted
//! copies of them.

use crate::files::ListAll;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::*;
use crate::files::{Entry, FileError, Kind, Meta, Time, Tree};
use crate::fs::ext::checksum::crc32c;
use crate::fs::ext::inode as ext_inode;
use crate::source::MemSource;

/// The decompressed testdata volume `name`.
fn image(name: &str) -> Vec<u8> {
    let dir = if name == "ext4-files" {
        "ext-files"
    } else {
        "ext"
    };
    let p = format!(
        "{}/testdata/{dir}/{name}.img.zst",
        env!("CARGO_MANIFEST_DIR")
    );
    let f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    zstd::decode_all(f).expect("zstd")
}

fn tree_of(img: Vec<u8>) -> ExtTree {
    ExtTree::open(Arc::new(MemSource::new(img, "test.img"))).expect("opens")
}

/// What a walk found of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    meta: Meta,
    /// Contents of a file, target of a symlink.
    data: Vec<u8>,
    /// `data_ranges` of a file.
    ranges: Option<Vec<(u64, u64)>>,
}

/// A file's bytes and its data ranges.
type Contents = (Vec<u8>, Vec<(u64, u64)>);

/// Reads a whole file in 1 MiB pieces, as `fsimg cat` does.
fn read_file(tree: &ExtTree, meta: &Meta, path: &str) -> Result<Contents> {
    let mut r = tree.open(meta, path)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read_at(out.len() as u64, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, meta.size, "{path}");
    let ranges = r.data_ranges()?.expect("ext knows its data ranges");
    Ok((out, ranges))
}

/// Every entry below the root, by path, with contents and targets.
fn walk(tree: &ExtTree) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![(tree.root().expect("root"), String::new())];
    while let Some((dir, path)) = dirs.pop() {
        let shown = if path.is_empty() { "/" } else { &path };
        for Entry { name, meta } in tree.list_all(&dir, shown).expect("read_dir") {
            let p = format!("{path}/{}", String::from_utf8(name).expect("utf-8"));
            let (data, ranges) = match meta.kind {
                Kind::Dir => {
                    dirs.push((meta.clone(), p.clone()));
                    (Vec::new(), None)
                }
                Kind::Symlink => (tree.read_link(&meta, &p).expect("read_link"), None),
                Kind::File => {
                    let (d, r) = read_file(tree, &meta, &p).expect("read");
                    (d, Some(r))
                }
                _ => (Vec::new(), None),
            };
            if meta.kind == Kind::Symlink {
                assert_eq!(data.len() as u64, meta.size, "{p}");
            }
            assert!(
                out.insert(p.clone(), Item { meta, data, ranges }).is_none(),
                "{p} twice"
            );
        }
    }
    out
}

/// The listing of ext4-view, as (st_mode, size, uid, gid, mtime, data).
type Oracle = BTreeMap<String, (u16, u64, u32, u32, (i64, u32), Option<Vec<u8>>)>;

fn oracle(img: Vec<u8>) -> Option<Oracle> {
    let fs = ext4_view::Ext4::load(Box::new(img)).ok()?;
    let mut out = BTreeMap::new();
    let mut dirs = vec![ext4_view::PathBuf::new("/")];
    while let Some(dir) = dirs.pop() {
        for e in fs.read_dir(&dir).expect("ext4-view read_dir") {
            let e = e.expect("ext4-view entry");
            let name = e.file_name();
            if name.as_str() == Ok(".") || name.as_str() == Ok("..") {
                continue;
            }
            let path = e.path();
            let md = fs.symlink_metadata(&path).expect("metadata");
            let ft = md.file_type();
            let type_bits: u16 = if ft.is_dir() {
                0x4000
            } else if ft.is_symlink() {
                0xA000
            } else if ft.is_regular_file() {
                0x8000
            } else {
                0
            };
            let data = if md.is_dir() {
                dirs.push(path.clone());
                Some(Vec::new())
            } else if md.is_symlink() {
                fs.read_link(&path).ok().map(|l| l.as_ref().to_vec())
            } else {
                // ext4-view 1.0 fails on some sparse ext2 files.
                fs.read(&path).ok()
            };
            let m = md.modified();
            out.insert(
                path.to_str().expect("utf-8").to_string(),
                (
                    type_bits | md.mode(),
                    md.len(),
                    md.uid(),
                    md.gid(),
                    (m.seconds(), m.nanoseconds()),
                    data,
                ),
            );
        }
    }
    Some(out)
}

fn type_bits(kind: Kind) -> u16 {
    match kind {
        Kind::Dir => 0x4000,
        Kind::Symlink => 0xA000,
        Kind::File => 0x8000,
        _ => 0,
    }
}

const IMAGES: [&str; 9] = [
    "ext2-1k",
    "ext2-nosparse",
    "ext3-2k",
    "ext4-default",
    "ext4-no64-noflex",
    "ext4-metabg",
    "ext4-bigalloc",
    "ext4-sparse-super2",
    "ext4-64bit-gdtcsum",
];

#[test]
fn every_volume_agrees_with_ext4_view() {
    let mut compared = 0;
    for name in IMAGES {
        let img = image(name);
        let mine = walk(&tree_of(img.clone()));
        let Some(theirs) = oracle(img) else {
            eprintln!("{name}: ext4-view cannot read it");
            continue;
        };
        let paths: Vec<_> = mine.keys().collect();
        assert_eq!(paths, theirs.keys().collect::<Vec<_>>(), "{name}");
        for (p, item) in &mine {
            let (mode, size, uid, gid, mtime, data) = &theirs[p];
            let m = &item.meta;
            assert_eq!(type_bits(m.kind) | m.mode as u16, *mode, "{name}:{p}");
            assert_eq!(m.size, *size, "{name}:{p}");
            assert_eq!((m.uid, m.gid), (*uid, *gid), "{name}:{p}");
            assert_eq!((m.mtime.secs, m.mtime.nanos), *mtime, "{name}:{p}");
            if let Some(d) = data {
                assert!(item.data == *d, "{name}:{p}: contents differ");
                compared += 1;
            }
        }
    }
    assert!(compared > 300, "only {compared} files compared");
}

/// The longest name of the shared source tree.
fn long_name() -> String {
    let s = format!("long-name-{}", "x".repeat(255));
    format!("{}.txt", &s[..251])
}

#[test]
fn known_facts_of_the_shared_tree() {
    let mut listings = Vec::new();
    for (name, fs) in [
        ("ext2-1k", "ext2"),
        ("ext3-2k", "ext3"),
        ("ext4-default", "ext4"),
        ("ext4-metabg", "ext4"),
        ("ext4-bigalloc", "ext4"),
    ] {
        let tree = tree_of(image(name));
        assert_eq!(tree.fs_name(), fs);
        assert!(!tree.needs_recovery());
        assert!(tree.warnings().is_empty());
        let root = tree.root().unwrap();
        assert_eq!((root.id, root.kind), (2, Kind::Dir));
        let all = walk(&tree);
        let get = |p: &str| all.get(p).unwrap_or_else(|| panic!("{name}: no {p}"));

        let sparse = get("/sparse.bin");
        assert_eq!(sparse.meta.size, 8 << 20, "{name}");
        let mib = 1 << 20;
        assert_eq!(
            sparse.ranges,
            Some(vec![
                (0, 4096),
                (mib, mib + 4096),
                (5 * mib, 5 * mib + 8192)
            ]),
            "{name}"
        );
        assert!(sparse.data[..4096].iter().all(|&b| b == b'S'));
        assert!(sparse.data[4096..mib as usize].iter().all(|&b| b == 0));

        assert_eq!(get("/links/short").data, b"../README.txt");
        assert_eq!(get("/links/dangling").data, b"/nonexistent/dangling/target");
        let long = get("/links/long");
        assert_eq!(long.data, format!("../{}", long_name()).into_bytes());
        assert_eq!(long.meta.size, 258);
        assert!(all.contains_key(&format!("/{}", long_name())));

        let (readme, hard) = (get("/README.txt"), get("/links/hardlink-README.txt"));
        assert_eq!(readme.meta.id, hard.meta.id, "{name}");
        assert_eq!((readme.meta.nlink, hard.meta.nlink), (2, 2));
        assert_eq!(readme.data, hard.data);
        assert_eq!(readme.meta.size, 1500);

        let tmp = get("/var/cache/tmp");
        assert_eq!((tmp.meta.kind, tmp.meta.mode), (Kind::Dir, 0o1777));
        assert_eq!(get("/run.sh").meta.mode, 0o755);
        assert_eq!(get("/run.sh").data, b"#!/bin/sh\necho fsimg test\n");
        let empty = get("/empty");
        assert_eq!((empty.meta.size, &empty.ranges), (0, &Some(Vec::new())));
        assert_eq!(get("/data/nested/medium-1m.bin").meta.size, 1 << 20);
        for item in all.values() {
            assert_eq!((item.meta.uid, item.meta.gid), (0, 0));
            assert_eq!(
                item.meta.mtime,
                Time {
                    secs: 1_700_000_000,
                    nanos: 0
                }
            );
        }
        listings.push((name, all));
    }
    // The same source tree in every volume: same names, modes, sizes and
    // contents (directory sizes and lost+found depend on the block size;
    // data/victim.bin is deleted in some).
    let strip = |all: &BTreeMap<String, Item>| {
        all.iter()
            .filter(|(p, _)| !p.starts_with("/lost+found") && *p != "/data/victim.bin")
            .map(|(p, i)| {
                let size = if i.meta.kind == Kind::Dir {
                    0
                } else {
                    i.meta.size
                };
                (p.clone(), (i.meta.kind, i.meta.mode, size, i.data.clone()))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let first = strip(&listings[0].1);
    for (name, all) in &listings[1..] {
        assert!(strip(all) == first, "{name} differs from {}", listings[0].0);
    }
}

/// Paths of the ext4-files volume, without bigdir's 300 entries.
const FILES_PATHS: [&str; 28] = [
    "/bigdir",
    "/data",
    "/data/fragmented.bin",
    "/data/prealloc.bin",
    "/data/random-200k.bin",
    "/data/sparse.bin",
    "/hardlink-at-root.txt",
    "/inline",
    "/inline/fast-link",
    "/inline/inline-link",
    "/inline/slow-link",
    "/inline/smalldir",
    "/inline/smalldir/empty",
    "/inline/smalldir/note.txt",
    "/inline/spill.txt",
    "/inline/tiny.txt",
    "/links",
    "/links/original.txt",
    "/links/second.txt",
    "/lost+found",
    "/owned.txt",
    "/special",
    "/special/blockdev",
    "/special/chardev",
    "/special/fifo",
    "/special/socket",
    "/times",
    "/times/future.txt",
];

#[test]
fn ext4_files_volume() {
    let tree = tree_of(image("ext4-files"));
    assert_eq!(tree.fs_name(), "ext4");
    let all = walk(&tree);
    let get = |p: &str| all.get(p).unwrap_or_else(|| panic!("no {p}"));
    let mut paths: Vec<&str> = all
        .keys()
        .map(String::as_str)
        .filter(|p| !p.starts_with("/bigdir/"))
        .collect();
    paths.retain(|p| *p != "/times/nanos.txt");
    assert_eq!(paths, FILES_PATHS);
    assert!(all.contains_key("/times/nanos.txt"));

    // Inline data: in i_block, and spilling into system.data.
    let tiny = get("/inline/tiny.txt");
    assert_eq!(tiny.data, b"hello inline\n");
    assert_eq!(tiny.ranges, Some(vec![(0, 13)]));
    let spill = get("/inline/spill.txt");
    let want: Vec<u8> = (0..99)
        .map(|i| b"0123456789"[i % 10])
        .chain([b'\n'])
        .collect();
    assert_eq!(spill.data, want);
    // An inline directory, and an empty one.
    assert_eq!(get("/inline/smalldir").meta.size, 60);
    assert_eq!(
        get("/inline/smalldir/note.txt").data,
        b"in an inline directory\n"
    );
    assert_eq!(get("/inline/smalldir/empty").meta.kind, Kind::Dir);
    assert_eq!(get("/inline/smalldir").meta.nlink, 3);

    // Symlinks: fast, inline, slow.
    assert_eq!(get("/inline/fast-link").data, b"tiny.txt");
    assert_eq!(
        get("/inline/inline-link").data,
        format!("../{}", "i".repeat(77)).into_bytes()
    );
    assert_eq!(
        get("/inline/slow-link").data,
        format!("/{}", "s".repeat(299)).into_bytes()
    );

    // Three names of one inode.
    let a = get("/links/original.txt");
    for p in ["/links/second.txt", "/hardlink-at-root.txt"] {
        assert_eq!(get(p).meta.id, a.meta.id);
        assert_eq!(get(p).data, a.data);
    }
    assert_eq!(a.meta.nlink, 3);
    assert_eq!(a.data, b"one inode, three names\n".repeat(300));

    // The htree directory.
    let big: Vec<_> = all.keys().filter(|p| p.starts_with("/bigdir/")).collect();
    assert_eq!(big.len(), 300);
    for i in 0..300 {
        let p = format!("/bigdir/entry-{i:04}-with-a-longer-name.txt");
        assert_eq!(get(&p).data, format!("{i}\n").into_bytes(), "{p}");
    }

    // Data.
    let random = get("/data/random-200k.bin");
    assert_eq!(
        format!("{:x}", Sha256::digest(&random.data)),
        "b276bc86a85904e945c9fa7e53ef7ccf5eb812982937c6c102289f850cb255d5"
    );
    assert_eq!(random.ranges, Some(vec![(0, 200 * 1024)]));
    // Eight extents under an index block: one block of data every three.
    let frag = get("/data/fragmented.bin");
    assert_eq!(frag.meta.size, 22 * 4096);
    let want: Vec<_> = (0..8u64)
        .map(|i| (i * 3 * 4096, (i * 3 + 1) * 4096))
        .collect();
    assert_eq!(frag.ranges, Some(want));
    for (i, block) in frag.data.chunks(4096).enumerate() {
        let fill = if i % 3 == 0 { 0x41 + (i / 3) as u8 } else { 0 };
        assert!(block.iter().all(|&b| b == fill), "block {i}");
    }
    let sparse = get("/data/sparse.bin");
    assert_eq!(sparse.meta.size, 2 << 20);
    assert_eq!(
        sparse.ranges,
        Some(vec![(0, 4096), (1 << 20, (1 << 20) + 4096)])
    );
    assert_eq!(
        format!("{:x}", Sha256::digest(&sparse.data)),
        "35e3eaf2097e1f1fad2f51354f80d95d3cf822b3efa12bda034d56a7ac59913e"
    );
    // One written block, then blocks 4-11 fallocated: zeros, not data.
    let pre = get("/data/prealloc.bin");
    assert_eq!(pre.meta.size, 65536);
    assert_eq!(pre.ranges, Some(vec![(0, 4096)]));
    assert!(pre.data[..4096].iter().all(|&b| b == b'P'));
    assert!(pre.data[4096..].iter().all(|&b| b == 0));

    // Owner, mode, times.
    let owned = get("/owned.txt");
    assert_eq!(
        (owned.meta.uid, owned.meta.gid, owned.meta.mode),
        (1234, 5678, 0o640)
    );
    assert_eq!(
        get("/times/nanos.txt").meta.mtime,
        Time {
            secs: 1_700_000_000,
            nanos: 123_456_789
        }
    );
    assert_eq!(
        get("/times/future.txt").meta.mtime,
        Time {
            secs: (1 << 32) + 100,
            nanos: 0
        }
    );
    assert_eq!(
        get("/owned.txt").meta.atime,
        Some(Time {
            secs: 1_700_000_000,
            nanos: 0
        })
    );

    // Special files.
    let c = &get("/special/chardev").meta;
    assert_eq!(
        (c.kind, c.mode, c.rdev),
        (Kind::CharDevice, 0o620, Some((4, 64)))
    );
    let b = &get("/special/blockdev").meta;
    assert_eq!(
        (b.kind, b.mode, b.rdev),
        (Kind::BlockDevice, 0o660, Some((259, 300)))
    );
    assert_eq!(get("/special/fifo").meta.kind, Kind::Fifo);
    assert_eq!(get("/special/socket").meta.kind, Kind::Socket);
    assert_eq!(get("/special/fifo").meta.rdev, None);
    assert_eq!(get("/bigdir").meta.id, 12);
}

/// A source counting its reads.
struct Counting {
    inner: MemSource,
    reads: AtomicUsize,
}

impl Source for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_exact_at(buf, offset)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// Finds `path` by reading directories from the root.
fn lookup(tree: &ExtTree, path: &str) -> Meta {
    let mut meta = tree.root().unwrap();
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let shown = if at.is_empty() {
            "/".to_string()
        } else {
            at.clone()
        };
        let entries = tree.list_all(&meta, &shown).unwrap();
        meta = entries
            .into_iter()
            .find(|e| e.name == part.as_bytes())
            .unwrap_or_else(|| panic!("no {part} in {shown}"))
            .meta;
        at = format!("{at}/{part}");
    }
    meta
}

#[test]
fn contiguous_blocks_are_one_source_read() {
    let src = Arc::new(Counting {
        inner: MemSource::new(image("ext4-files"), "test.img"),
        reads: AtomicUsize::new(0),
    });
    let tree = ExtTree::open(src.clone()).unwrap();
    // Buffers of 4 MiB: sparse.bin's two data blocks are two reads.
    let mut buf = vec![0u8; 4 << 20];
    for (path, reads) in [
        ("/data/random-200k.bin", 1),
        ("/data/sparse.bin", 2),
        ("/data/prealloc.bin", 1),
    ] {
        let meta = lookup(&tree, path);
        let mut r = tree.open(&meta, path).unwrap();
        let before = src.reads.load(Ordering::Relaxed);
        let n = r.read_at(0, &mut buf).unwrap();
        assert_eq!(n as u64, meta.size);
        assert_eq!(src.reads.load(Ordering::Relaxed) - before, reads, "{path}");
    }
    // An unaligned read across the end.
    let meta = lookup(&tree, "/data/random-200k.bin");
    let mut r = tree.open(&meta, "x").unwrap();
    let mut small = [0u8; 100];
    assert_eq!(r.read_at(200 * 1024 - 40, &mut small).unwrap(), 40);
    assert_eq!(r.read_at(200 * 1024, &mut small).unwrap(), 0);
}

#[test]
fn needs_recovery_still_opens() {
    let mut img = image("ext4-files");
    let s = 1024;
    let v = crate::bytes::u32le(&img, s + 0x60) | incompat::RECOVER;
    img[s + 0x60..s + 0x64].copy_from_slice(&v.to_le_bytes());
    let c = crc32c(!0, &img[s..s + 0x3FC]);
    img[s + 0x3FC..s + 0x400].copy_from_slice(&c.to_le_bytes());
    let tree = tree_of(img);
    assert!(tree.needs_recovery());
    assert!(tree.warnings()[0].contains("journal needs recovery"));
    assert_eq!(walk(&tree).len(), 329);
}

// ---------------------------------------------------------------------------
// Corrupt volumes
// ---------------------------------------------------------------------------

fn put16(img: &mut [u8], at: u64, v: u16) {
    img[at as usize..at as usize + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(img: &mut [u8], at: u64, v: u32) {
    img[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
}

/// A volume, a file in it, and where that file's inode lies.
struct Victim {
    img: Vec<u8>,
    meta: Meta,
    /// Byte offset of the inode.
    at: u64,
    sb: Superblock,
}

fn victim(name: &str, path: &str) -> Victim {
    let img = image(name);
    let tree = tree_of(img.clone());
    let meta = lookup(&tree, path);
    let at = tree.inode_at(meta.id, path).unwrap();
    Victim {
        img,
        meta,
        at,
        sb: tree.sb().clone(),
    }
}

impl Victim {
    /// Reseals the inode's checksum after a change.
    fn seal(&mut self) {
        let isz = usize::from(self.sb.inode_size);
        let at = self.at as usize;
        ext_inode::seal(&self.sb, self.meta.id as u32, &mut self.img[at..at + isz]);
    }

    fn tree(&self) -> ExtTree {
        tree_of(self.img.clone())
    }
}

/// The parts of a `FileError::Corrupt`.
fn corrupt_parts(r: Result<impl std::fmt::Debug>) -> (String, String, String) {
    match r.map(|_| ()).unwrap_err() {
        Error::Files(FileError::Corrupt { path, what, detail }) => (path, what, detail),
        e => panic!("not a Corrupt error: {e:?}"),
    }
}

fn open_err(v: &Victim, path: &str) -> (String, String, String) {
    let tree = v.tree();
    corrupt_parts(tree.open(&v.meta, path).map(|_| ()))
}

#[test]
fn bad_extent_magic() {
    let p = "/data/random-200k.bin";
    let mut v = victim("ext4-files", p);
    put16(&mut v.img, v.at + 0x28, 0x1234);
    v.seal();
    assert_eq!(
        open_err(&v, p),
        (
            p.to_string(),
            format!("inode {}", v.meta.id),
            format!(
                "extent tree node at byte {}: bad magic 0x1234 (expected 0xf30a)",
                v.at + 0x28
            )
        )
    );
}

#[test]
fn extent_tree_too_deep_or_looping() {
    let p = "/data/fragmented.bin";
    let mut v = victim("ext4-files", p);
    put16(&mut v.img, v.at + 0x28 + 6, 6);
    v.seal();
    assert_eq!(
        open_err(&v, p).2,
        format!(
            "extent tree node at byte {}: depth 6 is more than 5",
            v.at + 0x28
        )
    );
    // Root of depth 2 -> index block 1106 of depth 1 -> 1106 again.
    let mut v = victim("ext4-files", p);
    assert_eq!(crate::bytes::u32le(&v.img, v.at as usize + 0x28 + 16), 1106);
    put16(&mut v.img, v.at + 0x28 + 6, 2);
    v.seal();
    let node = 1106 * 4096;
    put16(&mut v.img, node + 2, 1);
    put16(&mut v.img, node + 6, 1);
    put32(&mut v.img, node + 12 + 4, 1106);
    put16(&mut v.img, node + 12 + 8, 0);
    assert_eq!(
        open_err(&v, p).2,
        format!(
            "extent index at byte {} points at block 1106, already part of the tree (a loop?)",
            node + 16
        )
    );
    // An extent pointing outside the volume.
    let mut v = victim("ext4-files", p);
    put32(&mut v.img, node + 12 + 8, 5000);
    assert_eq!(
        open_err(&v, p).2,
        format!(
            "extent at byte {} points at block 5000, outside the filesystem (blocks 1..2048)",
            node + 12
        )
    );
}

#[test]
fn indirect_map_loop_and_range() {
    let p = "/sparse.bin";
    // sparse.bin of ext2-1k: i_block[13] is the double indirect block
    // 2660, whose first pointer is the indirect block 2661.
    let mut v = victim("ext2-1k", p);
    assert_eq!(crate::bytes::u32le(&v.img, v.at as usize + 0x28 + 52), 2660);
    put32(&mut v.img, 2660 * 1024, 2660);
    assert_eq!(
        open_err(&v, p),
        (
            p.to_string(),
            format!("inode {}", v.meta.id),
            format!(
                "indirect block pointer at byte {} points at block 2660, already part of the tree (a loop?)",
                2660 * 1024
            )
        )
    );
    let mut v = victim("ext2-1k", p);
    put32(&mut v.img, v.at + 0x28, 20000);
    assert_eq!(
        open_err(&v, p).2,
        format!(
            "block pointer at byte {} points at block 20000, outside the filesystem (blocks 1..16384)",
            v.at + 0x28
        )
    );
}

/// The first block of directory `path` in `v`.
fn dir_block(v: &Victim, path: &str) -> u64 {
    let tree = v.tree();
    let node = tree.node(v.meta.id, path).unwrap();
    let runs = tree.runs(&node, node.size(&v.sb), path).unwrap();
    runs[0].physical * u64::from(v.sb.block_size)
}

fn read_dir_err(v: &Victim, path: &str) -> Result<Vec<Entry>> {
    v.tree().list_all(&v.meta, path)
}

#[test]
fn corrupt_directory_entries() {
    let p = "/data";
    let base = victim("ext4-files", p);
    let block = dir_block(&base, p);
    let what = format!("inode {}", base.meta.id);

    let mut v = victim("ext4-files", p);
    put16(&mut v.img, block + 4, 4100);
    assert_eq!(
        corrupt_parts(read_dir_err(&v, p)),
        (
            p.to_string(),
            what.clone(),
            format!(
                "directory entry at byte {block}: rec_len 4100 runs past the end of its block (4096 bytes left of 4096)"
            )
        )
    );

    let mut v = victim("ext4-files", p);
    put32(&mut v.img, block + 24, 5000);
    assert_eq!(
        corrupt_parts(read_dir_err(&v, p)).2,
        format!(
            "directory entry at byte {}: inode 5000 is past the last inode 1024",
            block + 24
        )
    );

    let mut v = victim("ext4-files", p);
    put16(&mut v.img, block + 4, 10);
    assert_eq!(
        corrupt_parts(read_dir_err(&v, p)).2,
        format!("directory entry at byte {block}: rec_len 10 is less than 12")
    );

    let mut v = victim("ext4-files", p);
    v.img[block as usize + 6] = 9; // "." in a rec_len of 12
    assert_eq!(
        corrupt_parts(read_dir_err(&v, p)).2,
        format!("directory entry at byte {block}: name_len 9 does not fit in rec_len 12")
    );

    // A name with '/'.
    let mut v = victim("ext4-files", p);
    let b = block as usize;
    let i = v.img[b..b + 4096]
        .windows(15)
        .position(|w| w == b"random-200k.bin")
        .unwrap();
    v.img[b + i + 6] = b'/';
    match read_dir_err(&v, p).unwrap_err() {
        Error::Files(FileError::BadName { dir, name }) => {
            assert_eq!((dir.as_str(), name.as_str()), (p, "random/200k.bin"));
        }
        e => panic!("{e:?}"),
    }

    // No such inode.
    let tree = base.tree();
    let mut bogus = base.meta.clone();
    bogus.id = 5000;
    assert_eq!(
        corrupt_parts(tree.list_all(&bogus, "/x")),
        (
            "/x".to_string(),
            "inode 5000".to_string(),
            "no such inode: the filesystem has inodes 1 to 1024".to_string()
        )
    );
    // A file is not a directory.
    let file = lookup(&tree, "/owned.txt");
    assert!(matches!(
        tree.list_all(&file, "/owned.txt"),
        Err(Error::Files(FileError::NotADirectory { .. }))
    ));
}

#[test]
fn corrupt_inline_directory_and_data() {
    let p = "/inline/smalldir";
    let mut v = victim("ext4-files", p);
    // The first entry after the parent's inode number.
    put16(&mut v.img, v.at + 0x28 + 4 + 4, 200);
    v.seal();
    assert_eq!(
        corrupt_parts(read_dir_err(&v, p)).2,
        format!(
            "directory entry at byte {}: rec_len 200 runs past the end of its inline data (56 bytes left of 56)",
            v.at + 0x28 + 4
        )
    );
    let p = "/inline/tiny.txt";
    let mut v = victim("ext4-files", p);
    put32(&mut v.img, v.at + 4, 200);
    v.seal();
    assert_eq!(
        open_err(&v, p).2,
        "size 200 is more than the 60 bytes of inline data"
    );
}

#[test]
fn bad_inodes() {
    let p = "/owned.txt";
    // Changed without resealing: the checksum catches it.
    let mut v = victim("ext4-files", p);
    v.img[v.at as usize + 2] ^= 1;
    let (path, what, detail) = open_err(&v, p);
    assert_eq!((path.as_str(), what), (p, format!("inode {}", v.meta.id)));
    assert!(
        detail.starts_with(&format!(
            "inode checksum mismatch at byte {}: stored 0x",
            v.at
        )),
        "{detail}"
    );
    // Its directory still lists, and its siblings still read.
    let tree = v.tree();
    let entries = tree.list_all(&tree.root().unwrap(), "/").unwrap();
    assert!(entries.iter().any(|e| e.name == b"owned.txt"));
    assert_eq!(walk_hostile(&tree), 329);
    let sibling = lookup(&tree, "/inline/tiny.txt");
    assert_eq!(
        read_file(&tree, &sibling, "x").unwrap().0,
        b"hello inline\n"
    );
    // Encrypted.
    let mut v = victim("ext4-files", p);
    let flags = crate::bytes::u32le(&v.img, v.at as usize + 0x20) | 0x800;
    put32(&mut v.img, v.at + 0x20, flags);
    v.seal();
    match v.tree().open(&v.meta, p).map(|_| ()).unwrap_err() {
        Error::Files(FileError::Unsupported { path, what }) => {
            assert_eq!((path.as_str(), what.as_str()), (p, "an encrypted file"));
        }
        e => panic!("{e:?}"),
    }
    // Deleted.
    let mut v = victim("ext4-files", p);
    put16(&mut v.img, v.at + 0x1A, 0);
    v.seal();
    assert_eq!(
        open_err(&v, p).2,
        format!(
            "the inode at byte {} is not in use (i_links_count 0, i_mode 0o100640)",
            v.at
        )
    );
    // An unknown file type, seen when its directory is listed.
    let mut v = victim("ext4-files", p);
    put16(&mut v.img, v.at, 0xE1A4);
    v.seal();
    let tree = v.tree();
    let root = tree.root().unwrap();
    assert_eq!(
        corrupt_parts(tree.list_all(&root, "/")),
        (
            p.to_string(),
            format!("inode {}", v.meta.id),
            "unknown file type in i_mode 0o160644".to_string()
        )
    );
    // i_extra_isize past the inode.
    let mut v = victim("ext4-files", p);
    put16(&mut v.img, v.at + 0x80, 200);
    v.seal();
    assert_eq!(
        open_err(&v, p).2,
        format!(
            "i_extra_isize 200 at byte {} does not fit in a 256-byte inode",
            v.at + 0x80
        )
    );
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Walks what can be walked, reading at most 16 MiB of each file;
/// errors are fine, panics and hangs are not.
fn walk_hostile(tree: &ExtTree) -> usize {
    let mut seen = 0;
    let Ok(root) = tree.root() else { return 0 };
    let mut dirs = vec![root];
    let mut buf = vec![0u8; 1 << 20];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = tree.list_all(&dir, "/d") else {
            continue;
        };
        for e in entries {
            seen += 1;
            if seen > 5000 {
                return seen;
            }
            match e.meta.kind {
                Kind::Dir => dirs.push(e.meta),
                Kind::Symlink => {
                    let _ = tree.read_link(&e.meta, "/l");
                }
                _ => {
                    if let Ok(mut r) = tree.open(&e.meta, "/f") {
                        let _ = r.data_ranges();
                        let mut off = 0;
                        while off < 16 << 20 {
                            match r.read_at(off, &mut buf) {
                                Ok(n) if n > 0 => off += n as u64,
                                _ => break,
                            }
                        }
                    }
                }
            }
        }
    }
    seen
}

#[test]
fn random_corruption_never_panics() {
    for (name, seed) in [("ext2-1k", 1u64), ("ext4-files", 2), ("ext4-bigalloc", 3)] {
        let clean = image(name);
        let tree = tree_of(clean.clone());
        // The bytes worth corrupting: inode table of group 0 and every
        // directory block.
        let bs = tree.bs();
        let table = tree.ext.descriptors()[0].inode_table * bs;
        let mut targets = vec![(table, 512 * u64::from(tree.sb().inode_size))];
        let mut dirs = vec![tree.root().unwrap()];
        while let Some(d) = dirs.pop() {
            let node = tree.node(d.id, "/").unwrap();
            if !node.inline() {
                for r in tree.runs(&node, node.size(tree.sb()), "/").unwrap() {
                    targets.push((r.physical * bs, r.len * bs));
                }
            }
            for e in tree.list_all(&d, "/").unwrap() {
                if e.meta.kind == Kind::Dir {
                    dirs.push(e.meta);
                }
            }
        }
        // And anywhere in the first 2 MiB (extent and indirect blocks).
        targets.push((0, 2 << 20));
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let rounds = std::env::var("EXT_FUZZ_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(60);
        for _ in 0..rounds {
            let mut img = clean.clone();
            for _ in 0..8 {
                let (start, len) = targets[(rng.next() % targets.len() as u64) as usize];
                let at = (start + rng.next() % len) as usize;
                img[at] = rng.next() as u8;
            }
            // A corrupted superblock or descriptor may not open.
            if let Ok(tree) = ExtTree::open(Arc::new(MemSource::new(img, "test.img"))) {
                walk_hostile(&tree);
            }
        }
    }
}

#[test]
fn rec_len_of_big_blocks() {
    assert_eq!(dir::rec_len(12, 4096), 12);
    assert_eq!(dir::rec_len(0, 65536), 65536);
    assert_eq!(dir::rec_len(65535, 65536), 65536);
    assert_eq!(dir::rec_len(0xFFFC | 1, 65536), 0x1FFFC);
}
