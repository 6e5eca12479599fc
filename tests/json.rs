//! `fsimg info --json` and `fsimg verify --json` (docs/json.md): every
//! output is parsed by Python's json module, a parser no one here wrote,
//! which also refuses duplicate keys, NaN and trailing text; then each
//! field is checked, type and value, against what the test data's
//! `.expected` files record from the tools that made it (dumpe2fs,
//! fsck.fat, ntfsinfo, sfdisk, ntfsclone, partclone.info).

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use fsimg::allocmap::AllocationMap;
use fsimg::copier::{self, CopyOptions, Extent};
use fsimg::image::{Header, ImageWriter, header};
use fsimg::report::Silent;
use fsimg::sink::Sink;
use fsimg::source::MemSource;

/// Reads one JSON document from stdin and prints every value as
/// `path<TAB>type<TAB>value`, paths joined with `.` (array items by
/// index). Arrays and objects print their length.
const FLATTEN: &str = r#"
import json, sys
def pairs(ps):
    keys = [k for k, _ in ps]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys: %r" % keys)
    return dict(ps)
def no_constant(c):
    raise ValueError("not JSON: " + c)
d = json.load(sys.stdin, object_pairs_hook=pairs, parse_constant=no_constant)
if not isinstance(d, dict):
    raise ValueError("not an object")
def esc(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
def walk(p, v):
    if isinstance(v, dict):
        print("%s\tobject\t%d" % (p, len(v)))
        for k, x in v.items():
            walk(p + "." + k if p else k, x)
    elif isinstance(v, list):
        print("%s\tarray\t%d" % (p, len(v)))
        for i, x in enumerate(v):
            walk("%s.%d" % (p, i), x)
    elif isinstance(v, bool):
        print("%s\tbool\t%s" % (p, "true" if v else "false"))
    elif isinstance(v, int):
        print("%s\tint\t%d" % (p, v))
    elif isinstance(v, str):
        print("%s\tstr\t%s" % (p, esc(v)))
    else:
        print("%s\t%s\t%r" % (p, type(v).__name__, v))
walk("", d)
"#;

/// A parsed JSON document: each path's type and value.
struct Json {
    fields: HashMap<String, (String, String)>,
    text: String,
}

impl Json {
    fn parse(stdout: &[u8]) -> Json {
        let mut child = Command::new("python3")
            .args(["-c", FLATTEN])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().unwrap().write_all(stdout).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(stdout).into_owned();
        assert!(
            out.status.success(),
            "python3's json module refused {text}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fields = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.splitn(3, '\t');
                let (p, t, v) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
                (p.to_string(), (t.to_string(), v.to_string()))
            })
            .collect();
        let j = Json { fields, text };
        assert_eq!(j.int("version"), 1, "{}", j.text);
        j
    }

    #[track_caller]
    fn get(&self, path: &str, ty: &str) -> &str {
        match self.fields.get(path) {
            Some((t, v)) if t == ty => v,
            Some((t, _)) => panic!("{path} is a {t}, not a {ty}, in {}", self.text),
            None => panic!("{path} is missing from {}", self.text),
        }
    }

    #[track_caller]
    fn int(&self, path: &str) -> u64 {
        self.get(path, "int").parse().unwrap()
    }

    #[track_caller]
    fn str(&self, path: &str) -> &str {
        self.get(path, "str")
    }

    #[track_caller]
    fn bool(&self, path: &str) -> bool {
        self.get(path, "bool") == "true"
    }

    #[track_caller]
    fn len(&self, path: &str) -> usize {
        self.get(path, "array").parse().unwrap()
    }

    fn has(&self, path: &str) -> bool {
        self.fields.contains_key(path)
    }
}

/// fsimg's JSON on `args`, which must succeed.
fn json(args: &[&str]) -> Json {
    Json::parse(&run_ok(args).stdout)
}

/// fsimg's JSON on `args`, which must fail with exit status 1 (its JSON
/// still on stdout, its error on stderr).
fn json_failing(args: &[&str]) -> Json {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "fsimg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = Json::parse(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(j.str("error")),
        "the error is on stderr too: {err}"
    );
    j
}

/// Whether the JSON can be checked here (CI requires python3).
fn python() -> bool {
    have("python3")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// testdata/KIND/NAME.img.zst, decompressed into `dir`.
fn volume(dir: &Path, kind: &str, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.img"));
    fs::write(&p, image(kind, name)).unwrap();
    p
}

/// testdata/foreign/NAME.zst, decompressed into `dir`.
fn foreign(dir: &Path, name: &str) -> PathBuf {
    let z = fs::read(testdata(&format!("foreign/{name}.zst"))).unwrap();
    let p = dir.join(name);
    fs::write(&p, zstd::decode_all(&z[..]).unwrap()).unwrap();
    p
}

fn num(e: &HashMap<String, String>, key: &str) -> u64 {
    expected_u64(e, key)
}

/// The fields every volume has, checked against `e`.
fn check_volume(j: &Json, (device_size, used_bytes): (u64, u64)) {
    assert_eq!(j.str("kind"), "volume");
    assert_eq!(j.int("device_size"), device_size);
    assert_eq!(j.int("used_bytes"), used_bytes);
    let cs = j.int("cluster_size");
    assert_eq!(j.int("total_clusters"), j.int("device_size").div_ceil(cs));
    assert!(j.int("used_clusters") <= j.int("total_clusters"));
    assert_eq!(j.len("inconsistencies"), 0);
    assert_eq!(j.len("warnings"), 0);
    assert!(!j.has("allocation_error"));
    assert!(!j.has("partition"));
}

#[test]
fn ext_volumes() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ext_images() {
        let e = expected(&name);
        let p = volume(dir.path(), "ext", &name);
        let j = json(&["info", "--json", s(&p)]);
        check_volume(&j, (num(&e, "image_size"), num(&e, "used_bytes")));
        assert!(j.str("filesystem").starts_with("ext"), "{name}");
        assert_eq!(j.str("path"), s(&p));
        assert_eq!(j.int("cluster_size"), num(&e, "cluster_size"), "{name}");
        assert_eq!(j.int("block_size"), num(&e, "block_size"), "{name}");
        assert_eq!(j.int("blocks"), num(&e, "blocks_count"), "{name}");
        assert_eq!(j.int("free_blocks"), num(&e, "free_blocks"), "{name}");
        assert_eq!(j.int("block_groups"), num(&e, "groups"), "{name}");
        assert_eq!(j.str("label"), e["label"], "{name}");
        assert_eq!(j.str("uuid"), e["uuid"], "{name}");
        assert_eq!(j.str("last_mounted_on"), "");
        assert_eq!(j.str("state"), "clean");
        assert!(j.bool("clean"));
        // The feature words, as numbers: has_journal is compat 0x4,
        // filetype incompat 0x2.
        let has = |f: &str| e["features"].split(' ').any(|x| x == f);
        assert_eq!(j.int("features.compat") & 0x4 != 0, has("has_journal"));
        assert_eq!(j.int("features.incompat") & 0x2 != 0, has("filetype"));
        assert_eq!(
            j.int("features.ro_compat") & 0x400 != 0,
            has("metadata_csum")
        );
    }
}

#[test]
fn fat_volumes() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in images("fat") {
        let e = expected_in("fat", &name);
        let p = volume(dir.path(), "fat", &name);
        let j = json(&["info", "--json", s(&p)]);
        check_volume(&j, (num(&e, "image_size"), num(&e, "used_bytes")));
        assert_eq!(j.str("filesystem"), format!("fat{}", e["fat_type"]));
        assert_eq!(j.str("label"), e["label"], "{name}");
        let id = e["volume_id"].to_uppercase();
        assert_eq!(j.str("volume_id"), format!("{}-{}", &id[..4], &id[4..]));
        for (field, key) in [
            ("bytes_per_sector", "bytes_per_sector"),
            ("sectors_per_cluster", "sectors_per_cluster"),
            ("fat_cluster_size", "cluster_size"),
            ("fat_clusters", "cluster_count"),
            ("fats", "num_fats"),
            ("fat_sectors", "fat_size_sectors"),
            ("data_starts_at_sector", "first_data_sector"),
            ("used_fat_clusters", "used_clusters"),
        ] {
            assert_eq!(j.int(field), num(&e, key), "{name}: {field}");
        }
        assert_eq!(j.int("bad_fat_clusters"), 0);
        let dirty = num(&e, "dirty") == 1;
        assert_eq!(j.bool("clean"), !dirty, "{name}");
        assert_eq!(j.str("state") == "clean", !dirty, "{name}");
    }
}

#[test]
fn ntfs_volumes() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in images("ntfs") {
        let e = expected_in("ntfs", &name);
        let p = volume(dir.path(), "ntfs", &name);
        let j = json(&["info", "--json", s(&p)]);
        let cs = num(&e, "cluster_size");
        let used = num(&e, "bitmap_used_clusters") * cs + num(&e, "tail_bytes");
        check_volume(&j, (num(&e, "device_size"), used));
        assert_eq!(j.str("filesystem"), "ntfs");
        assert_eq!(j.str("label"), e["label"], "{name}");
        assert_eq!(j.str("ntfs_version"), e["ntfs_version"], "{name}");
        assert_eq!(j.str("serial_number"), e["serial"].to_uppercase());
        for (field, key) in [
            ("bytes_per_sector", "bytes_per_sector"),
            ("ntfs_cluster_size", "cluster_size"),
            ("ntfs_clusters", "total_clusters"),
            ("mft_record_size", "mft_record_size"),
            ("mft_at_cluster", "mft_lcn"),
            ("mftmirr_at_cluster", "mftmirr_lcn"),
            ("clusters_used_in_bitmap", "bitmap_used_clusters"),
            ("clusters_used_by_mft_records", "mft_walk_used_clusters"),
            ("ntfs_clusters_in_use", "bitmap_used_clusters"),
            ("mft_records_in_use", "mft_records_in_use"),
        ] {
            assert_eq!(j.int(field), num(&e, key), "{name}: {field}");
        }
        assert_eq!(
            j.int("backup_boot_sector_at_byte"),
            num(&e, "device_size") - num(&e, "bytes_per_sector")
        );
        assert_eq!(j.int("bad_clusters"), 0);
        assert!(j.bool("clean"));
    }
}

#[test]
fn raw_volume() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = volume(dir.path(), "fat", "fat16");
    let size = fs::metadata(&p).unwrap().len();
    let j = json(&["info", "--json", "--fs-type", "raw", s(&p)]);
    assert_eq!(j.str("kind"), "volume");
    assert_eq!(j.str("filesystem"), "raw");
    assert_eq!(j.int("device_size"), size);
    assert_eq!(j.int("used_bytes"), size);
    assert_eq!(j.str("note"), "raw copy: every block is treated as used");
    assert!(j.bool("clean"));
}

#[test]
fn fsimg_images_plain_zstd_and_metadata() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ext = volume(dir.path(), "ext", "ext4-default");
    let fat = volume(dir.path(), "fat", "fat32");
    let e_ext = expected("ext4-default");
    let e_fat = expected_in("fat", "fat32");
    let plain = dir.path().join("ext.fsimg");
    let zstd = dir.path().join("fat.fsimg");
    let meta = dir.path().join("meta.fsimg");
    run_ok(&["-q", "-s", "-o", s(&plain), s(&ext)]);
    run_ok(&["-q", "-s", "-z", "-o", s(&zstd), s(&fat)]);
    run_ok(&["-q", "-m", "-s", "-o", s(&meta), s(&ext)]);
    for (img, fs_name, e, compression) in [
        (&plain, "ext4", &e_ext, "none"),
        (&zstd, "fat32", &e_fat, "zstd"),
    ] {
        let j = json(&["info", "--json", s(img)]);
        assert_eq!(j.str("kind"), "fsimg-image");
        assert_eq!(
            j.str("format"),
            format!("fsimg image {}", j.str("format_version"))
        );
        assert!(j.str("format_version").starts_with("1."));
        assert_eq!(
            j.str("writer"),
            concat!("fsimg ", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(j.str("filesystem"), fs_name);
        assert_eq!(j.int("device_size"), num(e, "image_size"));
        assert_eq!(j.int("cluster_size"), num(e, "cluster_size"));
        assert_eq!(j.int("used_bytes"), num(e, "used_bytes"));
        assert_eq!(
            j.int("used_clusters") * j.int("cluster_size"),
            num(e, "used_bytes")
        );
        assert_eq!(j.str("compression"), compression);
        assert!(!j.bool("flags.metadata_only"));
        assert!(!j.bool("flags.rescue"));
        assert!(!j.bool("flags.disk"));
        assert!(j.int("records") >= 1);
        assert_eq!(j.len("bad_ranges"), 0);
        assert!(!j.has("partitions"));

        let v = json(&["verify", "--json", s(img)]);
        assert_eq!(v.str("result"), "ok");
        assert_eq!(v.str("kind"), "fsimg-image");
        assert_eq!(v.str("format"), j.str("format"));
        assert_eq!(v.str("filesystem"), fs_name);
        assert_eq!(v.int("device_size"), num(e, "image_size"));
        assert_eq!(v.int("used_bytes"), num(e, "used_bytes"));
        assert_eq!(v.int("records"), j.int("records"));
        assert_eq!(v.len("bad_ranges"), 0);
        assert!(v.str("checked").contains("record"));
        assert!(!v.has("not_checked"));
        assert!(!v.has("error"));
    }
    let j = json(&["info", "--json", s(&meta)]);
    assert!(j.bool("flags.metadata_only"));
    assert_eq!(j.str("compression"), "zstd");
    assert!(j.int("used_bytes") < num(&e_ext, "used_bytes"));

    // From standard input the trailer is not read: no records, no bad
    // ranges.
    let out = common::fsimg()
        .args(["info", "--json", "-"])
        .stdin(fs::File::open(&plain).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let j = Json::parse(&out.stdout);
    assert_eq!(j.str("path"), "-");
    assert_eq!(j.int("used_bytes"), num(&e_ext, "used_bytes"));
    assert!(!j.has("records") && !j.has("bad_ranges"));
}

/// An image made in rescue mode, with two bad ranges in its trailer.
#[test]
fn rescue_image_bad_ranges() {
    if !python() {
        return;
    }
    let volume = vec![0x5au8; 64 * 1024];
    let mut map = AllocationMap::new(512, volume.len() as u64);
    map.mark_used(0, 16);
    let header = Header {
        minor: header::MINOR,
        fs: 1,
        flags: header::FLAG_RESCUE,
        cluster_size: 512,
        device_size: volume.len() as u64,
        total_clusters: map.total_clusters(),
        used_clusters: map.used_clusters(),
        used_bytes: map.used_bytes(),
        compression: header::COMPRESSION_NONE,
        max_record: 4096,
        writer: "json test".into(),
    };
    let mut w = ImageWriter::new(Vec::new(), "memory", &header, None, 1).unwrap();
    let src = MemSource::new(volume, "volume");
    let opts = CopyOptions {
        chunk_bytes: 4096,
        ..CopyOptions::default()
    };
    copier::copy(&src, &map, &mut w, &opts, &Silent).unwrap();
    w.set_bad_ranges(vec![
        Extent {
            offset: 1024,
            len: 512,
        },
        Extent {
            offset: 5120,
            len: 1536,
        },
    ]);
    w.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rescued.fsimg");
    fs::write(&p, w.into_inner()).unwrap();

    let j = json(&["info", "--json", s(&p)]);
    assert!(j.bool("flags.rescue"));
    assert_eq!(j.str("writer"), "json test");
    assert_eq!(j.len("bad_ranges"), 2);
    assert_eq!(j.int("bad_ranges.0.offset"), 1024);
    assert_eq!(j.int("bad_ranges.0.len"), 512);
    assert_eq!(j.int("bad_ranges.1.offset"), 5120);
    assert_eq!(j.int("bad_ranges.1.len"), 1536);
    assert_eq!(j.get("bad_ranges.1", "object"), "2");
    let v = json(&["verify", "--json", s(&p)]);
    assert_eq!(v.str("result"), "ok");
    assert_eq!(v.len("bad_ranges"), 2);
    assert_eq!(v.int("bad_ranges.1.offset"), 5120);
    assert_eq!(v.int("used_bytes"), 16 * 512);
}

/// The partitions of a disk's JSON, checked against its `.expected`.
fn check_partitions(j: &Json, e: &HashMap<String, String>, name: &str) {
    let mut numbers: Vec<u32> = e
        .keys()
        .filter_map(|k| k.strip_prefix('p')?.strip_suffix("_start")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    assert_eq!(j.len("partitions"), numbers.len(), "{name}");
    assert_eq!(j.str("partition_table"), e["table"], "{name}");
    assert_eq!(
        j.str("disk_id").to_lowercase(),
        e["disk_id"].to_lowercase(),
        "{name}"
    );
    let ss = num(e, "sector_size");
    assert_eq!(j.int("sector_size"), ss);
    assert_eq!(j.int("disk_size"), num(e, "disk_size"));
    assert_eq!(j.len("warnings"), 0);
    for (i, n) in numbers.iter().enumerate() {
        let f = |k: &str| format!("partitions.{i}.{k}");
        let start = num(e, &format!("p{n}_start"));
        let size = num(e, &format!("p{n}_size"));
        assert_eq!(j.int(&f("number")), u64::from(*n), "{name}");
        assert_eq!(j.int(&f("start")), start, "{name} p{n}");
        assert_eq!(j.int(&f("offset")), start, "{name} p{n}");
        assert_eq!(j.int(&f("size")), size, "{name} p{n}");
        assert_eq!(j.int(&f("end")), start + size, "{name} p{n}");
        assert_eq!(j.int(&f("first_sector")), start / ss, "{name} p{n}");
        assert_eq!(j.int(&f("last_sector")), (start + size) / ss - 1);
        let ty = j.str(&f("type_id")).to_lowercase();
        assert_eq!(
            ty.strip_prefix("0x").unwrap_or(&ty),
            e[&format!("p{n}_type")].to_lowercase(),
            "{name} p{n}"
        );
        let fs_name = &e[&format!("p{n}_fs")];
        assert_eq!(j.str(&f("filesystem")), fs_name, "{name} p{n}");
        match fs_name.as_str() {
            "raw" => assert_eq!(j.int(&f("used_bytes")), size),
            "swap" => assert!(j.int(&f("used_bytes")) <= 65536),
            _ => assert_eq!(
                j.int(&f("used_bytes")),
                num(e, &format!("p{n}_used_bytes")),
                "{name} p{n}"
            ),
        }
        if let Some(g) = e.get(&format!("p{n}_guid")) {
            assert_eq!(j.str(&f("uuid")).to_lowercase(), g.to_lowercase());
        } else {
            assert!(!j.has(&f("uuid")), "{name} p{n}");
        }
        if let Some(pname) = e.get(&format!("p{n}_name")) {
            assert_eq!(j.str(&f("name")), pname, "{name} p{n}");
        }
        assert_eq!(j.bool(&f("logical")), *n >= 5 && e["table"] == "mbr");
    }
}

#[test]
fn disks_and_disk_images() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let names = images("disk");
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        let e = expected_in("disk", name);
        let p = volume(dir.path(), "disk", name);
        let j = json(&["info", "--json", s(&p)]);
        assert_eq!(j.str("kind"), "disk", "{name}");
        check_partitions(&j, &e, name);
        let first = (0..j.len("partitions"))
            .map(|i| j.int(&format!("partitions.{i}.start")))
            .min()
            .unwrap();
        assert!(j.int("tables_and_boot_gap") >= first, "{name}");
        let used: u64 = (0..j.len("partitions"))
            .map(|i| j.int(&format!("partitions.{i}.used_bytes")))
            .sum();
        assert_eq!(j.int("to_copy_in_partitions"), used, "{name}");
        assert_eq!(j.int("to_copy"), used + j.int("tables_and_boot_gap"));
        assert!(j.int("unpartitioned") < num(&e, "disk_size"));

        // The same table, read back from a whole-disk image.
        let img = dir.path().join(format!("{name}.fsimg"));
        run_ok(&["-q", "-s", "-z", "-o", s(&img), s(&p)]);
        let i = json(&["info", "--json", s(&img)]);
        assert_eq!(i.str("kind"), "fsimg-image");
        assert_eq!(i.str("filesystem"), "whole disk");
        assert!(i.bool("flags.disk"));
        assert_eq!(i.int("device_size"), num(&e, "disk_size"));
        check_partitions(&i, &e, name);
    }

    // The Raspberry Pi layout in full, and its partition 2 by itself.
    let e = expected_in("disk", "rpi");
    let p = dir.path().join("rpi.img");
    let j = json(&["info", "--json", s(&p)]);
    assert_eq!(j.str("disk_id"), "0x5a8b3c1d");
    assert_eq!(j.str("partitions.0.type_id"), "0x0c");
    assert_eq!(j.str("partitions.0.type_name"), "W95 FAT32 (LBA)");
    assert_eq!(j.str("partitions.1.type_name"), "Linux");
    assert!(!j.has("partitions.0.name"));
    assert_eq!(j.int("tables_and_boot_gap"), num(&e, "p1_start"));
    let unpart = num(&e, "disk_size") - num(&e, "p2_start") - num(&e, "p2_size");
    assert_eq!(j.int("unpartitioned"), unpart);
    let j = json(&["info", "--json", "--partition", "2", s(&p)]);
    assert_eq!(j.str("kind"), "volume");
    assert_eq!(j.str("filesystem"), "ext4");
    assert_eq!(j.int("device_size"), num(&e, "p2_size"));
    assert_eq!(j.int("used_bytes"), num(&e, "p2_used_bytes"));
    assert_eq!(j.int("partition.number"), 2);
    assert_eq!(j.int("partition.offset"), num(&e, "p2_start"));
    assert_eq!(j.int("partition.used_bytes"), num(&e, "p2_used_bytes"));
    let img = dir.path().join("rpi.fsimg");
    let j = json(&["info", "--json", "--partition", "1", s(&img)]);
    assert_eq!(j.str("kind"), "fsimg-image");
    assert!(!j.has("partitions"));
    assert_eq!(j.int("partition.number"), 1);
    assert_eq!(j.str("partition.filesystem"), "fat32");
    assert_eq!(j.int("partition.used_bytes"), num(&e, "p1_used_bytes"));
    let v = json(&["verify", "--json", s(&img)]);
    assert_eq!(v.str("result"), "ok");
    assert_eq!(v.str("filesystem"), "whole disk");
    assert_eq!(v.int("device_size"), num(&e, "disk_size"));
}

#[test]
fn ntfsclone_image() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let e = expected_in("foreign", "ntfs.ntfsclone");
    let p = foreign(dir.path(), "ntfs.ntfsclone");
    let j = json(&["info", "--json", s(&p)]);
    assert_eq!(j.str("kind"), "ntfsclone-image");
    assert_eq!(j.str("format"), format!("ntfsclone {}", e["version"]));
    assert_eq!(j.str("format_version"), e["version"]);
    assert_eq!(j.str("filesystem"), "NTFS");
    assert_eq!(j.int("device_size"), num(&e, "device_size"));
    assert_eq!(j.int("cluster_size"), num(&e, "cluster_size"));
    assert_eq!(j.int("total_clusters"), num(&e, "nr_clusters"));
    assert_eq!(j.int("used_clusters"), num(&e, "inuse"));
    assert_eq!(j.int("data_offset"), 56);
    assert_eq!(j.str("checksums"), "none");
    assert_eq!(
        j.int("used_bytes"),
        (num(&e, "inuse") + 1) * num(&e, "cluster_size")
    );

    let v = json(&["verify", "--json", s(&p)]);
    assert_eq!(v.str("result"), "ok");
    assert_eq!(v.str("kind"), "ntfsclone-image");
    assert_eq!(v.int("device_size"), num(&e, "device_size"));
    // The last record is the 512 bytes of the backup boot sector.
    assert_eq!(
        v.int("used_bytes"),
        num(&e, "inuse") * num(&e, "cluster_size") + 512
    );
    assert_eq!(v.int("checksums"), 0);
    assert!(v.str("checked").contains("record stream"));
    assert!(v.str("not_checked").contains("no checksums"));
}

#[test]
fn partclone_images() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "ext4.ptcl",
        "ext4-0001.ptcl",
        "ext4-k7-noreseed.ptcl",
        "fat16-nocsum.ptcl",
        "ntfs.ptcl",
    ] {
        let e = expected_in("foreign", name);
        let p = foreign(dir.path(), name);
        let j = json(&["info", "--json", s(&p)]);
        assert_eq!(j.str("kind"), "partclone-image", "{name}");
        assert_eq!(j.str("format_version"), e["version"], "{name}");
        assert_eq!(j.str("filesystem"), e["fs"], "{name}");
        let bs = num(&e, "block_size");
        assert_eq!(j.int("block_size"), bs, "{name}");
        assert_eq!(j.int("total_blocks"), num(&e, "total_blocks"), "{name}");
        assert_eq!(j.int("used_blocks"), num(&e, "used_blocks"), "{name}");
        assert_eq!(j.int("used_bytes"), num(&e, "used_blocks") * bs, "{name}");
        assert_eq!(j.int("device_size"), num(&e, "restore_size"), "{name}");
        assert_eq!(
            j.str("checksum").to_uppercase(),
            e["checksum"].to_uppercase(),
            "{name}"
        );
        match e["checksum"].as_str() {
            "NONE" => assert!(!j.has("blocks_per_checksum")),
            "CRC32_0001" => assert_eq!(j.int("blocks_per_checksum"), 1),
            _ => {
                assert_eq!(
                    j.int("blocks_per_checksum"),
                    num(&e, "blocks_per_checksum"),
                    "{name}"
                );
                assert_eq!(j.bool("reseed"), !name.contains("noreseed"), "{name}");
            }
        }
        if e["version"] == "0002" {
            assert!(j.str("writer").starts_with("partclone v"), "{name}");
            assert_eq!(j.int("platform_bits"), 64, "{name}");
            assert_eq!(j.int("superblock_used_blocks"), num(&e, "used_blocks"));
        } else {
            assert!(!j.has("writer"), "{name}");
        }

        let v = json(&["verify", "--json", s(&p)]);
        assert_eq!(v.str("result"), "ok", "{name}");
        assert_eq!(v.str("kind"), "partclone-image");
        assert_eq!(v.str("format"), format!("partclone {}", e["version"]));
        assert_eq!(v.str("filesystem"), e["fs"]);
        assert_eq!(v.int("used_bytes"), num(&e, "used_blocks") * bs);
        assert_eq!(v.int("checksum_mismatches"), 0);
        assert!(!v.str("checked").is_empty());
        // 0001 checks a block's first byte only; no checksums, nothing.
        assert_eq!(
            v.has("not_checked"),
            e["version"] == "0001" || e["checksum"] == "NONE",
            "{name}"
        );
        if e["checksum"] == "NONE" {
            assert_eq!(v.int("checksums"), 0);
        } else {
            assert!(v.int("checksums") > 0, "{name}");
        }
    }
}

/// `at` with one bit flipped.
fn flip(p: &Path, at: usize) {
    let mut b = fs::read(p).unwrap();
    b[at] ^= 0x10;
    fs::write(p, b).unwrap();
}

#[test]
fn failing_verify() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ext = volume(dir.path(), "ext", "ext4-default");
    let img = dir.path().join("ext.fsimg");
    run_ok(&["-q", "-s", "-o", s(&img), s(&ext)]);
    // A byte in the middle of the records: some record's data.
    let len = fs::metadata(&img).unwrap().len() as usize;
    flip(&img, len / 2);
    let v = json_failing(&["verify", "--json", s(&img)]);
    assert_eq!(v.str("result"), "failed");
    assert_eq!(v.str("kind"), "fsimg-image");
    assert_eq!(v.str("filesystem"), "ext4");
    assert_eq!(v.int("device_size"), 33554432);
    assert!(v.str("error").contains("checksum mismatch"), "{}", v.text);
    assert!(!v.has("records") && !v.has("checked"));
    // The text verdict is the same failure.
    run_err(&["verify", s(&img)], v.str("error"));

    // A partclone image with a damaged block: by default the first
    // mismatch stops it; with --ignore-checksums it is read through and
    // the mismatches counted.
    let p = foreign(dir.path(), "ext4.ptcl");
    let len = fs::metadata(&p).unwrap().len() as usize;
    flip(&p, len / 2);
    let v = json_failing(&["verify", "--json", s(&p)]);
    assert_eq!(v.str("kind"), "partclone-image");
    assert!(
        v.str("error").contains("CRC32 checksum mismatch"),
        "{}",
        v.text
    );
    assert!(!v.has("checksum_mismatches"));
    let v = json_failing(&["verify", "--json", "--ignore-checksums", s(&p)]);
    assert_eq!(v.str("result"), "failed");
    assert_eq!(v.int("checksum_mismatches"), 1);
    assert_eq!(v.int("checksums"), 2);
    assert!(v.str("checked").contains("CRC32"));
    assert!(v.str("error").contains("1 checksum mismatch"));

    // Not an image at all: no kind, only the error.
    let v = json_failing(&["verify", "--json", s(&ext)]);
    assert!(!v.has("kind") && !v.has("format"));
    assert!(v.str("error").contains("not an fsimg image"));
    let v = json_failing(&["verify", "--json", s(&dir.path().join("none"))]);
    assert!(v.str("error").starts_with("cannot open"));
}

/// The text and the JSON say the same: every text line whose value is a
/// number is the JSON field of the same name (in snake_case).
#[test]
fn text_and_json_agree() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let paths = [
        volume(dir.path(), "ext", "ext4-bigalloc"),
        volume(dir.path(), "fat", "fat12-floppy"),
        volume(dir.path(), "ntfs", "ntfs-512"),
        foreign(dir.path(), "ntfs.ntfsclone"),
        foreign(dir.path(), "fat16.ptcl"),
    ];
    for p in &paths {
        let text: Output = run_ok(&["info", s(p)]);
        let j = json(&["info", "--json", s(p)]);
        let mut checked = 0;
        for line in String::from_utf8(text.stdout).unwrap().lines() {
            let (k, v) = line.split_once("  ").unwrap();
            let v = v.trim_start();
            let key: String = k
                .trim()
                .to_lowercase()
                .replace('$', "")
                .split(' ')
                .collect::<Vec<_>>()
                .join("_");
            if let Ok(n) = v.parse::<u64>() {
                assert_eq!(j.int(&key), n, "{}: {k}", p.display());
                checked += 1;
            } else if j.fields.get(&key).is_some_and(|(t, _)| t == "str") && !v.contains(['(', ','])
            {
                // Texts with a comment or a list in them are split into
                // typed fields; the others are the same string.
                assert_eq!(j.str(&key), v, "{}: {k}", p.display());
                checked += 1;
            }
        }
        assert!(checked >= 5, "{}", p.display());
    }
}
