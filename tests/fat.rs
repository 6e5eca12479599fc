//! FAT12/16/32: clones and image round trips of every FAT test image,
//! checked against fsck.fat's counts recorded beside each image, fsck.fat
//! -n, and a file-by-file walk with the fatfs crate; and every bad input.

mod common;

use std::fs;

use std::path::Path;
use std::process::Command;

use common::*;
use fsimg::fs::{FsChoice, open};
use fsimg::source::{FileSource, MemSource};

fn fat_images() -> Vec<String> {
    let names = images("fat");
    assert!(names.len() >= 6, "FAT test images are missing");
    names
}

fn is_dirty(name: &str) -> bool {
    expected_in("fat", name)
        .get("dirty")
        .is_some_and(|v| v == "1")
}

fn assert_fsck_clean(path: &Path) {
    if !have("fsck.fat") {
        return;
    }
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck.fat -n {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn used_counts_match_fsck_fat() {
    for name in fat_images() {
        let e = expected_in("fat", &name);
        let src = MemSource::new(image("fat", &name), &name);
        let fs = open(&src, FsChoice::Auto).unwrap();
        assert_eq!(fs.kind().name(), format!("fat{}", e["fat_type"]), "{name}");
        let alloc = fs.allocation(&src).unwrap();
        assert!(
            alloc.inconsistencies.is_empty(),
            "{name}: {:?}",
            alloc.inconsistencies
        );
        let used = alloc
            .details
            .iter()
            .find(|(k, _)| *k == "used FAT clusters")
            .map(|(_, v)| v.split(' ').next().unwrap().parse::<u64>().unwrap())
            .unwrap();
        assert_eq!(
            used,
            expected_u64(&e, "fsck_used_clusters"),
            "{name}: fsck.fat"
        );
        assert_eq!(
            alloc.map.used_bytes(),
            expected_u64(&e, "used_bytes"),
            "{name}: used bytes"
        );
    }
}

#[test]
fn clone_and_round_trip_every_image() {
    for name in fat_images().into_iter().filter(|n| !is_dirty(n)) {
        let dir = tempfile::tempdir().unwrap();
        let source = image("fat", &name);
        let src = dir.path().join("src.img");
        fs::write(&src, &source).unwrap();
        let s = src.to_str().unwrap();

        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", clone.to_str().unwrap(), s]);
        let cloned = fs::read(&clone).unwrap();
        assert_used_only(&name, &source, &cloned);
        assert_fsck_clean(&clone);
        assert_eq!(
            fat_tree(source.clone()),
            fat_tree(cloned.clone()),
            "{name}: files differ"
        );

        let e = expected_in("fat", &name);
        if let Some(r) = e.get("deleted_clusters") {
            let (a, b) = r.split_once('-').unwrap();
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            let cs = expected_u64(&e, "cluster_size");
            let data = expected_u64(&e, "first_data_sector") * expected_u64(&e, "bytes_per_sector");
            let span = (data + (a - 2) * cs) as usize..(data + (b - 1) * cs) as usize;
            assert!(
                source[span.clone()].iter().any(|&x| x != 0),
                "{name}: no stale data"
            );
            assert!(
                cloned[span].iter().all(|&x| x == 0),
                "{name}: stale data copied"
            );
        }

        let out = run_ok(&["-q", "-o", "-", s]);
        assert!(out.stdout == cloned, "{name}: stdout differs");

        let fs_name = format!("fat{}", e["fat_type"]);
        assert_round_trips(&name, dir.path(), s, &cloned, &fs_name);
    }
}

#[test]
fn dirty_volume_needs_force() {
    for name in fat_images().into_iter().filter(|n| is_dirty(n)) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        fs::write(&src, image("fat", &name)).unwrap();
        let out = dir.path().join("o.img");
        run_err(
            &["-o", out.to_str().unwrap(), src.to_str().unwrap()],
            "the volume is marked dirty (it was not cleanly unmounted, or is mounted); run fsck.fat -a (or chkdsk /f on Windows), or use --force",
        );
        assert!(!out.exists());
        run_ok(&[
            "-q",
            "--force",
            "-o",
            out.to_str().unwrap(),
            src.to_str().unwrap(),
        ]);
        let info = run_ok(&["info", src.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&info.stdout).contains("marked dirty"));
    }
}

/// Clones an edited copy of an image and expects `needle` with status 1.
fn refused(
    name: &str,
    extra: &[&str],
    edit: impl FnOnce(&mut Vec<u8>),
    needle: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("fat", name);
    edit(&mut img);
    let src = dir.path().join("src.img");
    fs::write(&src, img).unwrap();
    let out = dir.path().join("o.img");
    let mut args = extra.to_vec();
    args.extend(["-o", out.to_str().unwrap(), src.to_str().unwrap()]);
    run_err(&args, needle);
    assert!(!out.exists());
    dir
}

#[test]
fn corrupt_boot_sectors() {
    refused(
        "fat16",
        &["--fs-type", "fat"],
        |i| i[11..13].copy_from_slice(&[0, 0]),
        "fat: invalid bytes per sector 0 at byte 11",
    );
    refused(
        "fat16",
        &["--fs-type", "fat"],
        |i| i[13] = 3,
        "fat: invalid sectors per cluster 3 at byte 13",
    );
    refused(
        "fat16",
        &["--fs-type", "fat"],
        |i| {
            i[0x16..0x18].copy_from_slice(&[0, 0]);
            i[0x24..0x28].copy_from_slice(&[0; 4]);
        },
        "fat: the FAT size at byte 36 is zero",
    );
    refused(
        "fat32",
        &["--fs-type", "fat"],
        |i| {
            i[0x13..0x15].copy_from_slice(&[0, 0]);
            i[0x20..0x24].copy_from_slice(&100u32.to_le_bytes());
        },
        "fat: the volume has 100 sectors, but its reserved area, FATs and root directory end at sector",
    );
    refused(
        "fat16",
        &["--fs-type", "fat"],
        |i| i[0x10] = 0,
        "fat: invalid number of FATs 0 at byte 16",
    );
    refused(
        "fat16",
        &[],
        |i| i.truncate(i.len() / 2),
        "is truncated: the filesystem needs",
    );
}

/// Byte offset of FAT copy `n`'s entry for `cluster` in a FAT16 image.
fn fat16_entry(img: &[u8], n: usize, cluster: usize) -> usize {
    let bps = u16::from_le_bytes([img[11], img[12]]) as usize;
    let rsvd = u16::from_le_bytes([img[14], img[15]]) as usize;
    let fatsz = u16::from_le_bytes([img[0x16], img[0x17]]) as usize;
    (rsvd + n * fatsz) * bps + cluster * 2
}

#[test]
fn fat_entry_past_the_end() {
    let e = expected_in("fat", "fat16");
    let last = expected_u64(&e, "cluster_count") + 1;
    let dir = refused(
        "fat16",
        &[],
        |i| {
            for n in 0..2 {
                let at = fat16_entry(i, n, 5);
                i[at..at + 2].copy_from_slice(&0xFFEFu16.to_le_bytes());
            }
        },
        "the FAT entry of cluster 5 (at byte ",
    );
    let src = dir.path().join("src.img");
    let err = run_err(
        &[
            "-o",
            dir.path().join("x").to_str().unwrap(),
            src.to_str().unwrap(),
        ],
        "holds 65519, which is not a cluster",
    );
    assert!(err.contains(&format!("(the last is {last})")), "{err}");
    assert!(err.contains("run fsck.fat"), "{err}");
    run_ok(&[
        "-q",
        "--ignore-fs-check",
        "-o",
        dir.path().join("y").to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
}

#[test]
fn differing_fat_copies_copy_the_union() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("fat", "fat16");
    // A cluster only the second FAT uses (an end-of-chain mark on a free one).
    let src_map = {
        let m = MemSource::new(img.clone(), "m");
        open(&m, FsChoice::Auto)
            .unwrap()
            .allocation(&m)
            .unwrap()
            .map
    };
    let e = expected_in("fat", "fat16");
    let last = expected_u64(&e, "cluster_count") + 1;
    let free = (2..=last as usize)
        .rev()
        .find(|&c| {
            u16::from_le_bytes([
                img[fat16_entry(&img, 0, c)],
                img[fat16_entry(&img, 0, c) + 1],
            ]) == 0
        })
        .unwrap();
    let at = fat16_entry(&img, 1, free);
    img[at..at + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    let src = dir.path().join("src.img");
    fs::write(&src, &img).unwrap();
    let out = run_ok(&[
        "-o",
        dir.path().join("c").to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("warning: the FAT copies differ, first at cluster {free}: FAT 2 says 65535, FAT 1 says 0")),
        "{err}"
    );
    let s = FileSource::open(&src).unwrap();
    let map = open(&s, FsChoice::Auto)
        .unwrap()
        .allocation(&s)
        .unwrap()
        .map;
    assert!(
        map.used_clusters() > src_map.used_clusters(),
        "the union is copied"
    );
}

#[test]
fn fsinfo_free_count_mismatch_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = image("fat", "fat32");
    let bps = u16::from_le_bytes([img[11], img[12]]) as usize;
    let fsinfo = u16::from_le_bytes([img[0x30], img[0x31]]) as usize * bps;
    img[fsinfo + 488..fsinfo + 492].copy_from_slice(&7u32.to_le_bytes());
    let src = dir.path().join("src.img");
    fs::write(&src, &img).unwrap();
    let out = run_ok(&[
        "-o",
        dir.path().join("c").to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: the FSInfo sector (at byte {}) says 7 clusters are free",
            fsinfo + 488
        )),
        "{err}"
    );
}
