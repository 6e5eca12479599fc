//! Tests against the testdata volumes (whole trees compared with the
//! listings a read-only ntfs-3g mount recorded) and corrupt volumes.

use crate::files::ListAll;
use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::file::Value;
use super::*;
use crate::error::Error;
use crate::source::MemSource;

/// The decompressed testdata volume `name` (`ntfs-4k`…).
fn image(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/testdata/ntfs/{name}.img.zst",
        env!("CARGO_MANIFEST_DIR")
    );
    let f = std::fs::File::open(&path).unwrap();
    zstd::stream::decode_all(f).unwrap()
}

/// The value of key `key` in the volume's `.expected` file.
fn expected(name: &str, key: &str) -> String {
    let path = format!(
        "{}/testdata/ntfs/{name}.expected",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
        .to_string()
}

fn tree(bytes: Vec<u8>) -> NtfsTree {
    NtfsTree::open(Arc::new(MemSource::new(bytes, "vol"))).unwrap()
}

/// Reads a whole file with 1 MiB reads.
fn read_all(r: &mut dyn FileRead) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read_at(out.len() as u64, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Every file and directory under `dir` as `.files` lines, keyed by path.
fn walk(t: &NtfsTree, dir: &Meta, path: &str, out: &mut BTreeMap<String, String>) -> Result<()> {
    for e in t.list_all(dir, path)? {
        let name = String::from_utf8(e.name.clone()).unwrap();
        let rel = if path == "/" {
            name.clone()
        } else {
            format!("{}/{name}", &path[1..])
        };
        let full = format!("/{rel}");
        match e.meta.kind {
            Kind::Dir => {
                out.insert(rel.clone(), format!("dir  -  {rel}"));
                walk(t, &e.meta, &full, out)?;
            }
            Kind::File => {
                let data = read_all(&mut *t.open(&e.meta, &full)?)?;
                assert_eq!(data.len() as u64, e.meta.size, "{full}");
                out.insert(
                    rel.clone(),
                    format!("{}  {}  {rel}", sha(&data), data.len()),
                );
            }
            k => panic!("{full}: unexpected kind {k:?}"),
        }
    }
    Ok(())
}

/// Finds `path` (from the root, `/`-separated).
fn lookup(t: &NtfsTree, path: &str) -> Meta {
    let mut m = t.root().unwrap();
    let mut at = String::new();
    for c in path.split('/') {
        let here = if at.is_empty() {
            "/".to_string()
        } else {
            at.clone()
        };
        let entries = t.list_all(&m, &here).unwrap();
        m = entries
            .into_iter()
            .find(|e| e.name == c.as_bytes())
            .unwrap_or_else(|| panic!("{path}: no {c}"))
            .meta;
        at = format!("{at}/{c}");
    }
    m
}

const VOLUMES: [&str; 5] = ["ntfs-4k", "ntfs-4kn", "ntfs-512", "ntfs-64k", "ntfs-tail"];

#[test]
fn every_volume_lists_and_reads_as_ntfs3g_showed_it() {
    for name in VOLUMES {
        let t = tree(image(name));
        assert_eq!(t.fs_name(), "NTFS");
        let root = t.root().unwrap();
        assert_eq!((root.kind, root.id, root.nlink), (Kind::Dir, 5, 1));
        let mut got = BTreeMap::new();
        walk(&t, &root, "/", &mut got).unwrap();
        let path = format!("{}/testdata/ntfs/{name}.files", env!("CARGO_MANIFEST_DIR"));
        let want: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let got: Vec<String> = got.into_values().collect();
        assert_eq!(got.len(), want.len(), "{name}: entry count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{name}");
        }
        // Files the generator made compressed really are (flag 0x0001).
        for f in expected(name, "compressed_files")
            .split(',')
            .filter(|s| !s.is_empty())
        {
            let m = lookup(&t, f);
            let rec = t.vol.read_file(m.id, f).unwrap();
            assert_eq!(rec.find(AT_DATA, "").unwrap().flags & 1, 1, "{name}: {f}");
        }
        // Named streams.
        for s in expected(name, "named_streams")
            .split(',')
            .filter(|s| !s.is_empty())
        {
            let parts: Vec<&str> = s.split(':').collect();
            let m = lookup(&t, parts[0]);
            let streams = t.streams(&m, parts[0]).unwrap();
            let size: u64 = parts[2].parse().unwrap();
            assert!(
                streams.contains(&Stream {
                    name: parts[1].into(),
                    size
                }),
                "{name}: {s}: {streams:?}"
            );
            let data = read_all(&mut *t.open_stream(&m, parts[0], parts[1]).unwrap()).unwrap();
            assert_eq!(sha(&data), parts[3], "{name}: {s}");
            assert!(matches!(
                t.open_stream(&m, parts[0], "nope"),
                Err(Error::Files(FileError::NotFound { .. }))
            ));
        }
        // Times are ntfs-3g's clock, SOURCE_DATE_EPOCH.
        let readme = lookup(&t, "README.txt");
        assert_eq!(
            readme.mtime,
            Time {
                secs: 1_700_000_000,
                nanos: 0
            },
            "{name}"
        );
        assert_eq!(
            (readme.mode, readme.uid, readme.kind),
            (0o644, 0, Kind::File)
        );
    }
}

#[test]
fn hard_links_share_the_record() {
    let t = tree(image("ntfs-4k"));
    let a = lookup(&t, "README.txt");
    let b = lookup(&t, "links/hardlink-README.txt");
    assert_eq!((a.id, a.nlink), (b.id, 2));
    assert_eq!(lookup(&t, "many").nlink, 1);
    // The root hides the system files but lists everything else.
    let names: Vec<String> = t
        .list_all(&t.root().unwrap(), "/")
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('$')), "{names:?}");
    assert!(names.contains(&"café ünïcödé 名前.txt".to_string()));
}

#[test]
fn sparse_files_keep_their_holes() {
    let t = tree(image("ntfs-4k"));
    const MIB: u64 = 1 << 20;
    let m = lookup(&t, "sparse/sparse.bin");
    assert_eq!(m.size, 8 * MIB);
    let ranges = t
        .open(&m, "/sparse/sparse.bin")
        .unwrap()
        .data_ranges()
        .unwrap()
        .unwrap();
    let inside = |p: u64| ranges.iter().any(|&(s, e)| s <= p && p < e);
    assert!(
        inside(0) && inside(MIB) && inside(5 * MIB + 1000),
        "{ranges:?}"
    );
    assert!(!inside(3 * MIB) && !inside(8 * MIB - 1), "{ranges:?}");
    let data: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    assert!(data < 2 * MIB, "{ranges:?}");
    let m = lookup(&t, "sparse/hole-first.bin");
    let ranges = t.open(&m, "/x").unwrap().data_ranges().unwrap().unwrap();
    assert!(
        ranges[0].0 >= 3 * MIB && ranges.last().unwrap().1 == m.size,
        "{ranges:?}"
    );
    // A hole reads as zeros.
    let mut buf = vec![1u8; 4096];
    t.open(&m, "/x").unwrap().read_at(MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    // The compressed file with a hole of whole units has one too.
    let m = lookup(&t, "compressed/with-hole.bin");
    let ranges = t.open(&m, "/x").unwrap().data_ranges().unwrap().unwrap();
    assert!(ranges.len() >= 2, "{ranges:?}");
}

/// The error of `r`, which must be a `Corrupt` one naming `what`.
fn corrupt_detail<T>(r: Result<T>, what: &str) -> String {
    match r {
        Err(Error::Files(FileError::Corrupt {
            what: w, detail, ..
        })) => {
            assert_eq!(w, what, "{detail}");
            detail
        }
        Err(e) => panic!("expected a corrupt {what}, got {e}"),
        Ok(_) => panic!("expected a corrupt {what}, got success"),
    }
}

/// Byte offset of MFT record `n` (in the first run of `$MFT`).
fn record_offset(t: &NtfsTree, n: u64) -> usize {
    let r = t.vol.mft_runs[0];
    assert!(n * u64::from(t.vol.record_size) < r.len * t.vol.cluster_size);
    (r.lcn.unwrap() * t.vol.cluster_size + n * u64::from(t.vol.record_size)) as usize
}

#[test]
fn a_torn_or_mangled_record_is_corrupt() {
    let bytes = image("ntfs-512");
    let t = tree(bytes.clone());
    let id = lookup(&t, "README.txt").id;
    let at = record_offset(&t, id);
    let what = format!("MFT record {id}");
    let root = t.root().unwrap();
    // A flipped byte at the end of the first 512-byte stride: torn.
    let mut b = bytes.clone();
    b[at + 510] ^= 0xFF;
    let t = tree(b);
    let d = corrupt_detail(t.list_all(&root, "/"), &what);
    assert_eq!(
        d,
        "update sequence mismatch at byte 510 of the record (a torn write)"
    );
    // A flipped byte of the signature.
    let mut b = bytes.clone();
    b[at] ^= 0x01;
    let d = corrupt_detail(tree(b).list_all(&root, "/"), &what);
    assert!(d.contains("bad signature"), "{d}");
    // The update sequence offset pointing past the record.
    let mut b = bytes.clone();
    b[at + 4..at + 6].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let d = corrupt_detail(tree(b).list_all(&root, "/"), &what);
    assert!(d.contains("update sequence array"), "{d}");
    // The first attribute's length zeroed.
    let mut b = bytes.clone();
    let first = at + usize::from(u16::from_le_bytes([b[at + 0x14], b[at + 0x15]]));
    b[first + 4..first + 8].fill(0);
    let d = corrupt_detail(tree(b).list_all(&root, "/"), &what);
    assert!(d.contains("invalid length 0"), "{d}");
}

/// Offsets of the index entries naming `name` (their key's name field).
fn index_entries_named(bytes: &[u8], name: &str) -> Vec<usize> {
    let n: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    bytes
        .windows(n.len())
        .enumerate()
        .filter(|(i, w)| {
            *w == n
                && *i >= 0x52
                && bytes[i - 2] as usize == name.len()
                // Not the $FILE_NAME attribute of the record itself.
                && bytes[i - 0x5A..i - 0x56] != 0x30u32.to_le_bytes()
        })
        .map(|(i, _)| i - 0x52)
        .collect()
}

#[test]
fn an_index_entry_past_the_mft_is_corrupt() {
    let mut bytes = image("ntfs-512");
    let at = index_entries_named(&bytes, "README.txt");
    assert_eq!(at.len(), 1, "{at:?}");
    let e = at[0];
    bytes[e..e + 6].copy_from_slice(&[0xFF, 0xFF, 0x7F, 0, 0, 0]);
    let t = tree(bytes);
    let d = corrupt_detail(t.list_all(&t.root().unwrap(), "/"), "MFT record 8388607");
    assert!(d.contains("past the end of the MFT"), "{d}");
}

#[test]
fn a_bad_compressed_chunk_is_corrupt() {
    let mut bytes = image("ntfs-512");
    let t = tree(bytes.clone());
    let m = lookup(&t, "compressed/text-200k.txt");
    let rec = t.vol.read_file(m.id, "x").unwrap();
    let Value::NonResident(nr) = &rec.find(AT_DATA, "").unwrap().value else {
        panic!("resident")
    };
    let first = (nr.runs[0].lcn.unwrap() * t.vol.cluster_size) as usize;
    let header = u16::from_le_bytes([bytes[first], bytes[first + 1]]);
    assert_eq!(header & 0xF000, 0xB000, "a compressed chunk");
    // The first chunk claims the full 4096 bytes: the next header is
    // read from the middle of data.
    bytes[first..first + 2].copy_from_slice(&(header | 0x0FFF).to_le_bytes());
    let t = tree(bytes);
    let r = t.open(&m, "/compressed/text-200k.txt").unwrap();
    let mut r = r;
    let d = corrupt_detail(read_all(&mut *r), &format!("MFT record {}", m.id));
    assert!(
        d.starts_with("compression unit 0 (VCN 0): LZNT1 chunk"),
        "{d}"
    );
}

/// Reads everything reachable, ignoring errors: used on corrupt volumes,
/// where only panics and hangs are failures.
fn read_everything(t: &NtfsTree, dir: &Meta, path: &str, depth: usize) {
    let Ok(entries) = t.list_all(dir, path) else {
        return;
    };
    for e in entries {
        let full = format!("{path}/{}", String::from_utf8_lossy(&e.name));
        match e.meta.kind {
            Kind::Dir if depth < 16 => read_everything(t, &e.meta, &full, depth + 1),
            Kind::File => {
                if let Ok(mut r) = t.open(&e.meta, &full) {
                    let _ = read_all(&mut *r);
                    let _ = r.data_ranges();
                }
                let _ = t.streams(&e.meta, &full);
            }
            _ => {
                let _ = t.read_link(&e.meta, &full);
            }
        }
    }
}

/// Random byte flips in the MFT and index blocks never panic.
#[test]
fn random_corruption_never_panics() {
    for (name, rounds) in [("ntfs-512", 300), ("ntfs-4k", 100)] {
        let bytes = image(name);
        let t = tree(bytes.clone());
        let cs = t.vol.cluster_size as usize;
        // The first run of the MFT, and every index block.
        let mut regions = vec![(record_offset(&t, 0), t.vol.mft_runs[0].len as usize * cs)];
        regions.extend(
            (0..bytes.len() / 512)
                .map(|s| s * 512)
                .filter(|&o| bytes[o..o + 4] == *b"INDX")
                .map(|o| (o, 4096)),
        );
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..rounds {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let (start, len) = regions[next() as usize % regions.len()];
                let at = start + next() as usize % len;
                b[at] = next() as u8;
            }
            if let Ok(t) = NtfsTree::open(Arc::new(MemSource::new(b, "vol")))
                && let Ok(root) = t.root()
            {
                read_everything(&t, &root, "", 0);
            }
        }
    }
}
