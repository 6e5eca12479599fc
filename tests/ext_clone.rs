//! Clones and image round trips of every ext test image, checked against
//! the dumpe2fs counts recorded beside each image, e2fsck, ext4-view and
//! (as root) the kernel.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use fsimg::fs::{FsChoice, open};
use fsimg::source::FileSource;

fn parse_range(s: &str) -> (u64, u64) {
    let (a, b) = s.split_once('-').expect("a-b");
    (a.parse().expect("number"), b.parse().expect("number"))
}

/// Asserts `clone` holds exactly the used blocks of `source`: equal bytes
/// on every block the filesystem uses, and `unused` (zeros for a new file)
/// on every other block.
fn assert_used_blocks_only(name: &str, source: &[u8], clone: &[u8], src_path: &Path, unused: u8) {
    assert_eq!(source.len(), clone.len(), "{name}: size");
    let src = FileSource::open(src_path).expect("open");
    let alloc = open(&src, FsChoice::Auto)
        .expect("ext")
        .allocation(&src)
        .expect("map");
    let cs = alloc.map.cluster_size() as usize;
    for c in 0..alloc.map.total_clusters() as usize {
        let r = c * cs..((c + 1) * cs).min(source.len());
        if alloc.map.is_used(c as u64) {
            assert!(
                source[r.clone()] == clone[r.clone()],
                "{name}: used cluster {c} differs"
            );
        } else {
            assert!(
                clone[r.clone()].iter().all(|&b| b == unused),
                "{name}: unused cluster {c} was written"
            );
        }
    }
}

#[test]
fn used_counts_match_dumpe2fs() {
    for name in ext_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        fs::write(&src, ext_image(&name)).unwrap();
        let e = expected(&name);
        let s = FileSource::open(&src).unwrap();
        let fs = open(&s, FsChoice::Auto).unwrap();
        let alloc = fs.allocation(&s).unwrap();
        assert!(
            alloc.inconsistencies.is_empty(),
            "{name}: {:?}",
            alloc.inconsistencies
        );
        let ratio = expected_u64(&e, "cluster_size") / expected_u64(&e, "block_size");
        assert_eq!(
            alloc.map.used_clusters() * ratio,
            expected_u64(&e, "used_blocks"),
            "{name}: used blocks differ from dumpe2fs"
        );
        if let Some(p) = e.get("partclone_used_blocks") {
            assert_eq!(
                alloc.map.used_clusters() * ratio,
                p.parse::<u64>().unwrap(),
                "{name}: partclone"
            );
        }
        // fsimg info reports the same count.
        let out = run_ok(&["info", src.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        let reported = text
            .lines()
            .find_map(|l| l.strip_prefix("used clusters"))
            .map(str::trim);
        assert_eq!(
            reported,
            Some(alloc.map.used_clusters().to_string().as_str()),
            "{name}: {text}"
        );
    }
}

#[test]
fn clone_to_sparse_file_stdout_and_existing_file() {
    for name in ext_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        let source = ext_image(&name);
        fs::write(&src, &source).unwrap();
        let s = src.to_str().unwrap();

        // A new sparse file.
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", clone.to_str().unwrap(), s]);
        let cloned = fs::read(&clone).unwrap();
        assert_used_blocks_only(&name, &source, &cloned, &src, 0);
        assert_e2fsck_clean(&clone);
        if let Some(t) = ext_tree(&src) {
            assert_eq!(Some(t), ext_tree(&clone), "{name}: files differ");
        }
        // Stale data of the deleted file stays behind.
        let e = expected(&name);
        if let Some(r) = e.get("deleted_blocks") {
            let (a, b) = parse_range(r);
            let bs = expected_u64(&e, "block_size") as usize;
            let span = a as usize * bs..(b as usize + 1) * bs;
            assert!(
                source[span.clone()].iter().any(|&x| x != 0),
                "{name}: no stale data in source"
            );
            assert!(
                cloned[span].iter().all(|&x| x == 0),
                "{name}: stale data copied"
            );
        }
        // Unused space is a hole: the clone allocates no more than the used bytes.
        let used = expected_u64(&e, "used_bytes");
        let allocated =
            std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&clone).unwrap()) * 512;
        assert!(
            allocated <= used + 64 * 1024,
            "{name}: clone allocates {allocated} for {used} used"
        );

        // Standard output: the same bytes, zeros in the gaps.
        let out = run_ok(&["-q", "-o", "-", s]);
        assert!(
            out.stdout == cloned,
            "{name}: stdout differs from the sparse clone"
        );

        // An existing, larger file full of 0xAA: used blocks replaced, the
        // rest left as it was, the file cut to the volume size.
        let target = dir.path().join("target.img");
        fs::write(&target, vec![0xAA; source.len() + 12345]).unwrap();
        run_ok(&["-q", "-O", target.to_str().unwrap(), s]);
        let over = fs::read(&target).unwrap();
        assert_used_blocks_only(&name, &source, &over, &src, 0xAA);
    }
}

#[test]
fn image_round_trips() {
    for name in ext_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        let source = ext_image(&name);
        fs::write(&src, &source).unwrap();
        let s = src.to_str().unwrap();
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", clone.to_str().unwrap(), s]);
        let cloned = fs::read(&clone).unwrap();

        for (label, extra) in [
            ("plain", vec![]),
            ("zstd", vec!["-z"]),
            ("zstd19-j1", vec!["-z", "19", "-j", "1"]),
        ] {
            let img = dir.path().join(format!("{label}.fsimg"));
            let mut args = vec!["-q", "-s"];
            args.extend(&extra);
            args.extend(["-o", img.to_str().unwrap(), s]);
            run_ok(&args);
            let i = img.to_str().unwrap();
            run_ok(&["verify", i]);
            if label == "plain" {
                let e = expected(&name);
                let overhead = fs::metadata(&img).unwrap().len() - expected_u64(&e, "used_bytes");
                assert!(
                    overhead * 1000 <= expected_u64(&e, "used_bytes"),
                    "{name}: overhead {overhead}"
                );
            }

            // To a new sparse file.
            let restored = dir.path().join(format!("{label}.restored"));
            run_ok(&["-q", "-r", "-o", restored.to_str().unwrap(), i]);
            assert!(
                fs::read(&restored).unwrap() == cloned,
                "{name} {label}: restore differs"
            );
            assert_e2fsck_clean(&restored);

            // To standard output.
            let out = run_ok(&["-q", "-r", "-o", "-", i]);
            assert!(
                out.stdout == cloned,
                "{name} {label}: restore to stdout differs"
            );

            // From standard input, onto an existing file.
            let target = dir.path().join(format!("{label}.target"));
            fs::write(&target, vec![0xAA; 4096]).unwrap();
            let mut child = fsimg()
                .args(["-q", "-r", "-O", target.to_str().unwrap(), "-"])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(&fs::read(&img).unwrap())
                .unwrap();
            assert!(child.wait().unwrap().success());
            let over = fs::read(&target).unwrap();
            assert_used_blocks_only(&name, &source, &over, &src, 0);

            // info shows the header and trailer.
            let info = run_ok(&["info", i]);
            let text = String::from_utf8_lossy(&info.stdout);
            assert!(text.contains("format          fsimg image 1.0"), "{text}");
            assert!(
                text.contains(if label == "plain" {
                    "compression     none"
                } else {
                    "compression     zstd"
                }),
                "{text}"
            );
        }
    }
}

/// The kernel mounts every clone, and every file matches the source.
#[test]
fn kernel_mounts_clones() {
    if !root() || !have("losetup") || !have("mount") {
        return;
    }
    for name in ext_images() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        fs::write(&src, ext_image(&name)).unwrap();
        let clone = dir.path().join("clone.img");
        run_ok(&["-q", "-o", clone.to_str().unwrap(), src.to_str().unwrap()]);
        let l1 = Loop::attach(&src, true);
        let l2 = Loop::attach(&clone, true);
        let m1 = Mount::new(&l1.dev, &dir.path().join("a"), "ro");
        let m2 = Mount::new(&l2.dev, &dir.path().join("b"), "ro");
        let diff = Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&m1.dir)
            .arg(&m2.dir)
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&diff.stdout)
        );
        drop((m2, m1, l2, l1));
    }
}
