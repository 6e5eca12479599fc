//! Every fuzz function of `fsimg::fuzz` (one per cargo-fuzz target in
//! fuzz/) over seeds from testdata/ and deterministic mutations of them,
//! on stable Rust: the functions always compile and their promises hold
//! on every input tried here. An input that breaks one is written to
//! target/fuzz-failures/ and named in the failure, to become a regression
//! test.

mod common;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use fsimg::fs::FsChoice;
use fsimg::mapfile::{self, Mapfile};

/// xorshift64*: the same mutations on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break parsers: zero, one, sign bits, all ones.
const INTERESTING: [u64; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// One to four edits of `seed`: bit flips (mostly in its first `hot`
/// bytes, where the headers are), an interesting 1/2/4/8-byte value, a
/// range set to 00 or FF, a block copied elsewhere, or a truncation.
fn mutate(rng: &mut Rng, seed: &[u8], hot: usize) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        let hot = hot.min(b.len());
        match rng.below(7) {
            0 | 1 => {
                let at = rng.below(hot);
                b[at] ^= 1 << rng.below(8);
            }
            2 => {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            3 => {
                let width = 1 << rng.below(4);
                let at = rng.below(hot.saturating_sub(width).max(1));
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let end = (at + width).min(b.len());
                b[at..end].copy_from_slice(&v[..end - at]);
            }
            4 => {
                let at = rng.below(b.len());
                let len = (1 + rng.below(4096)).min(b.len() - at);
                let v = if rng.below(2) == 0 { 0 } else { 0xff };
                b[at..at + len].fill(v);
            }
            5 => {
                let len = 1 + rng.below(512);
                if b.len() > len {
                    let from = rng.below(b.len() - len);
                    let to = rng.below(hot.saturating_sub(len).max(1));
                    let to = to.min(b.len() - len);
                    b.copy_within(from..from + len, to);
                }
            }
            _ => {
                let len = rng.below(b.len());
                b.truncate(len);
            }
        }
    }
    b
}

/// Runs `f` over every seed and `mutations` mutations spread over them;
/// the first input that makes `f` panic is saved and fails the test.
fn exercise(name: &str, seeds: &[Vec<u8>], mutations: usize, hot: usize, f: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let run = |input: &[u8], what: &str| {
        if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{name}-{what}"));
            fs::write(&path, input).unwrap();
            panic!(
                "{name}: {what} broke a promise; input saved to {} (run it with `cargo fuzz run {name} FILE`)",
                path.display()
            );
        }
    };
    for (i, s) in seeds.iter().enumerate() {
        run(s, &format!("seed{i}"));
    }
    for m in 0..mutations {
        let i = m % seeds.len();
        let input = mutate(&mut rng, &seeds[i], hot);
        run(&input, &format!("seed{i}-mutation{m}"));
    }
}

fn decompressed(rel: &str) -> Vec<u8> {
    zstd::decode_all(&fs::read(testdata(rel)).unwrap()[..]).unwrap()
}

#[test]
fn ext_volumes() {
    let seeds = vec![decompressed("foreign/ext4.vol.zst"), ext_image("ext2-1k")];
    exercise("ext_volume", &seeds, 1500, 1 << 20, |d| {
        fsimg::fuzz::volume(d, FsChoice::Ext)
    });
}

/// The btrfs target's sparse volumes: each test volume's metadata-only
/// copy (its tree blocks, superblocks and first MiB) encoded as
/// `SparseSource` pieces, as fuzz/seed.sh makes them.
#[test]
fn btrfs_volumes() {
    use fsimg::fuzz::SparseSource;
    use fsimg::source::MemSource;
    let mut seeds = Vec::new();
    for name in ["dup-crc32c", "node4k", "logtree", "single-xxhash"] {
        let img = image("btrfs", name);
        let src = MemSource::new(img.clone(), name);
        let fs = fsimg::fs::open(&src, FsChoice::Btrfs).unwrap();
        let map = fs.metadata(&src).unwrap().allocation.map;
        let mut meta = vec![0u8; img.len()];
        for run in map.runs() {
            let (at, len) = map.run_bytes(run);
            let r = at as usize..(at + len) as usize;
            meta[r.clone()].copy_from_slice(&img[r]);
        }
        let seed = SparseSource::encode(&meta, 4096);
        assert!(
            seed.len() <= fsimg::fuzz::MAX_FUZZ_VOLUME,
            "{name}: {}",
            seed.len()
        );
        // The seed decodes to the metadata copy, which opens.
        let back = SparseSource::decode(&seed).unwrap();
        let mut again = vec![0u8; img.len()];
        fsimg::source::Source::read_exact_at(&back, &mut again, 0).unwrap();
        assert!(again == meta, "{name}: sparse round trip");
        seeds.push(seed);
    }
    exercise("btrfs_volume", &seeds, 1500, 1 << 20, |d| {
        fsimg::fuzz::sparse_volume(d, FsChoice::Btrfs)
    });
}

/// Random edits rarely survive btrfs's checksums, so these mutate the
/// tree blocks and the superblock of crc32c seeds and then recompute the
/// checksum: the walker's own checks (level, nritems, item bounds, key
/// order, loops, chunk items) get the inputs.
#[test]
fn btrfs_tree_blocks_with_valid_checksums() {
    use fsimg::fuzz::SparseSource;
    use fsimg::source::MemSource;
    let crc = |d: &[u8]| !fsimg::fs::ext::checksum::crc32c(!0, d);
    let mut rng = Rng(0xB7F5);
    for name in ["dup-crc32c", "node4k", "logtree", "subvols"] {
        let img = image("btrfs", name);
        let nodesize =
            u32::from_le_bytes(img[0x10000 + 0x94..0x10000 + 0x98].try_into().unwrap()) as usize;
        let src = MemSource::new(img.clone(), name);
        let fs = fsimg::fs::open(&src, FsChoice::Btrfs).unwrap();
        let map = fs.metadata(&src).unwrap().allocation.map;
        let mut meta = vec![0u8; img.len()];
        // Tree blocks: nodesize-aligned blocks past the first MiB whose
        // header bytenr is set, and the primary superblock.
        let mut blocks = vec![(0x10000usize, 4096usize)];
        for run in map.runs() {
            let (at, len) = map.run_bytes(run);
            let r = at as usize..(at + len) as usize;
            meta[r.clone()].copy_from_slice(&img[r]);
            if at >= 1 << 20 {
                for b in (at as usize..(at + len) as usize).step_by(nodesize) {
                    if b + nodesize <= img.len() && img[b + 0x30..b + 0x38] != [0; 8] {
                        blocks.push((b, nodesize));
                    }
                }
            }
        }
        let seed = SparseSource::encode(&meta, 4096);
        // Where each volume byte is in the encoded seed: (volume offset,
        // seed offset, length) per piece.
        let mut pieces = Vec::new();
        let mut at = 8;
        while at + 12 <= seed.len() {
            let off = u64::from_le_bytes(seed[at..at + 8].try_into().unwrap()) as usize;
            let len = u32::from_le_bytes(seed[at + 8..at + 12].try_into().unwrap()) as usize;
            pieces.push((off, at + 12, len));
            at += 12 + len;
        }
        // A block whose zero sectors split it over pieces is passed over.
        let locate = |b: usize, size: usize| {
            pieces
                .iter()
                .find(|(o, _, l)| b >= *o && b + size <= o + l)
                .map(|(o, s, _)| s + b - o)
        };
        for m in 0..400 {
            let (b, size) = blocks[rng.below(blocks.len())];
            let Some(p) = locate(b, size) else {
                continue;
            };
            let mut input = seed.clone();
            let block = &mut input[p..p + size];
            for _ in 0..1 + rng.below(3) {
                // Header fields and the first items, where the structure is.
                let span = if rng.below(2) == 0 {
                    101
                } else {
                    size.min(1024) - 32
                };
                let at = 32 + rng.below(span);
                match rng.below(3) {
                    0 => block[at] ^= 1 << rng.below(8),
                    1 => {
                        let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                        let w = (1 << rng.below(4)).min(size - at);
                        block[at..at + w].copy_from_slice(&v[..w]);
                    }
                    _ => block[at] = rng.next() as u8,
                }
            }
            let c = crc(&block[32..]);
            block[..4].copy_from_slice(&c.to_le_bytes());
            if catch_unwind(AssertUnwindSafe(|| {
                fsimg::fuzz::sparse_volume(&input, FsChoice::Btrfs)
            }))
            .is_err()
            {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
                fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("btrfs_volume-{name}-csum{m}"));
                fs::write(&path, &input).unwrap();
                panic!(
                    "btrfs_volume: {name} mutation {m} panicked; input saved to {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn fat_volumes() {
    let seeds = vec![
        image("fat", "fat12-floppy"),
        image("fat", "fat12-small"),
        decompressed("foreign/fat16.vol.zst"),
    ];
    exercise("fat_volume", &seeds, 2000, 1 << 20, |d| {
        fsimg::fuzz::volume(d, FsChoice::Fat)
    });
}

#[test]
fn exfat_volumes() {
    // 1 MiB, its metadata (boot regions, FAT, bitmap, up-case table, root
    // and every directory) in the first 64 KiB where most mutations land.
    let seeds = vec![image("exfat", "exfat-tiny")];
    exercise("exfat_volume", &seeds, 2000, 64 << 10, |d| {
        fsimg::fuzz::volume(d, FsChoice::Exfat)
    });
}

#[test]
fn ntfs_volumes() {
    let seeds = vec![decompressed("foreign/ntfs.vol.zst")];
    exercise("ntfs_volume", &seeds, 1500, 1 << 20, |d| {
        fsimg::fuzz::volume(d, FsChoice::Ntfs)
    });
}

/// XFS volumes in the sparse form of the `xfs_volume` target: the
/// non-zero sectors of the used blocks of each test volume (but most of
/// its log).
#[test]
fn xfs_volumes() {
    use fsimg::fuzz::SparseSource;
    use fsimg::source::MemSource;
    let seeds: Vec<Vec<u8>> = images("xfs")
        .iter()
        .filter_map(|name| {
            let mut vol = image("xfs", name);
            let src = MemSource::new(vol.clone(), name);
            let fs = fsimg::fs::open(&src, FsChoice::Xfs).unwrap();
            let map = fs.allocation(&src).unwrap().map;
            let bs = map.cluster_size() as usize;
            // The log's sectors are stamped with cycle numbers: keep its
            // first 512 only, so that v5 volumes fit a fuzz input; and only
            // the used blocks.
            let sb = fsimg::fs::xfs::Xfs::open(&src)
                .unwrap()
                .superblock()
                .clone();
            let log = sb.log_block().unwrap() as usize * bs;
            let log_end = log + sb.logblocks as usize * bs;
            if log + 512 * 512 < log_end {
                vol[log + 512 * 512..log_end].fill(0);
            }
            for (i, b) in vol.chunks_mut(bs).enumerate() {
                if !map.is_used(i as u64) {
                    b.fill(0);
                }
            }
            let seed = SparseSource::encode(&vol, 512);
            // The sparse form reads back with the same map.
            let back = SparseSource::decode(&seed).unwrap();
            let again = fsimg::fs::open(&back, FsChoice::Xfs).unwrap();
            assert_eq!(
                again.allocation(&back).unwrap().map.used_clusters(),
                map.used_clusters(),
                "{name}"
            );
            // Volumes with much file data do not fit a fuzz input.
            (seed.len() <= fsimg::fuzz::MAX_FUZZ_VOLUME).then_some(seed)
        })
        .collect();
    assert!(seeds.len() >= 3, "{} xfs seeds", seeds.len());
    exercise("xfs_volume", &seeds, 600, 1 << 16, |d| {
        fsimg::fuzz::sparse_volume(d, FsChoice::Xfs)
    });
}

#[test]
fn ext_files() {
    let seeds = vec![decompressed("foreign/ext4.vol.zst"), ext_image("ext2-1k")];
    exercise("files_ext", &seeds, 800, 1 << 20, |d| {
        fsimg::fuzz::files(d, FsChoice::Ext)
    });
}

#[test]
fn fat_files() {
    let seeds = vec![
        image("fat", "fat12-floppy"),
        decompressed("foreign/fat16.vol.zst"),
    ];
    exercise("files_fat", &seeds, 800, 1 << 20, |d| {
        fsimg::fuzz::files(d, FsChoice::Fat)
    });
}

#[test]
fn ntfs_files() {
    let seeds = vec![decompressed("foreign/ntfs.vol.zst")];
    exercise("files_ntfs", &seeds, 800, 1 << 20, |d| {
        fsimg::fuzz::files(d, FsChoice::Ntfs)
    });
}

#[test]
fn any_volume() {
    // Recognition itself: each filesystem's signature mutated, and a
    // volume recognised as one filesystem when it looks like another.
    let seeds = vec![
        image("fat", "fat12-floppy"),
        decompressed("foreign/ext4.vol.zst")[..1 << 20].to_vec(),
        decompressed("foreign/ntfs.vol.zst")[..1 << 20].to_vec(),
    ];
    exercise("volume", &seeds, 1500, 64 << 10, |d| {
        fsimg::fuzz::volume(d, FsChoice::Auto)
    });
}

/// fsimg images of small volumes and a disk, plain and compressed, and an
/// image of format 1.0.
fn image_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut seeds = vec![fs::read(testdata("compat/fat16-v1.0.fsimg")).unwrap()];
    let vol = dir.join("vol.img");
    fs::write(&vol, image("fat", "fat12-small")).unwrap();
    let disk = dir.join("disk.img");
    fs::write(&disk, decompressed("disk/mbr-logical.img.zst")).unwrap();
    for (src, z) in [(&vol, false), (&vol, true), (&disk, true)] {
        let out = dir.join(format!("{z}.fsimg"));
        let _ = fs::remove_file(&out);
        let mut args = vec!["-q", "-s"];
        if z {
            args.push("-z");
        }
        args.extend(["-o", out.to_str().unwrap(), src.to_str().unwrap()]);
        run_ok(&args);
        seeds.push(fs::read(&out).unwrap());
    }
    seeds
}

#[test]
fn fsimg_images() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = image_seeds(dir.path());
    exercise(
        "image_reader",
        &seeds,
        3000,
        64 << 10,
        fsimg::fuzz::image_reader,
    );
}

#[test]
fn ntfsclone_images() {
    let seeds = vec![
        decompressed("foreign/ntfs.ntfsclone.zst"),
        decompressed("foreign/ntfs-metadata.ntfsclone.zst"),
    ];
    exercise(
        "ntfsclone_reader",
        &seeds,
        3000,
        64 << 10,
        fsimg::fuzz::ntfsclone_reader,
    );
}

#[test]
fn partclone_images() {
    let seeds: Vec<Vec<u8>> = [
        "ext4-0001.ptcl",
        "ext4.ptcl",
        "fat16.ptcl",
        "fat16-nocsum.ptcl",
    ]
    .iter()
    .map(|n| decompressed(&format!("foreign/{n}.zst")))
    .collect();
    exercise(
        "partclone_reader",
        &seeds,
        3000,
        64 << 10,
        fsimg::fuzz::partclone_reader,
    );
}

/// Small disks with real tables: sfdisk's MBR with logical partitions,
/// sgdisk's GPT and hybrid MBR (2 MiB each), then the fuzz byte in front.
fn disk_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let make = |name: &str| -> PathBuf {
        let p = dir.join(name);
        fs::File::create(&p).unwrap().set_len(2 << 20).unwrap();
        p
    };
    if have("sfdisk") {
        let p = make("mbr.img");
        let mut c = Command::new("sfdisk")
            .arg("-q")
            .arg(&p)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(
                b"label: dos\nlabel-id: 0x12345678\nstart=64, size=512, type=83\n\
                  start=600, size=3400, type=5\nstart=640, size=1000, type=83\n\
                  start=1700, size=1000, type=7\n",
            )
            .unwrap();
        assert!(c.wait().unwrap().success(), "sfdisk");
        seeds.push(fs::read(&p).unwrap());
    }
    if have("sgdisk") {
        for (name, hybrid) in [("gpt.img", false), ("hybrid.img", true)] {
            let p = make(name);
            let mut args = vec![
                "-a",
                "1",
                "-n",
                "1:34:+256K",
                "-t",
                "1:EF00",
                "-n",
                "2:0:+512K",
                "-t",
                "2:8300",
                "-n",
                "3:0:0",
                "-t",
                "3:0700",
            ];
            if hybrid {
                args.extend(["-h", "1:2"]);
            }
            let st = Command::new("sgdisk").args(&args).arg(&p).output().unwrap();
            assert!(
                st.status.success(),
                "sgdisk: {}",
                String::from_utf8_lossy(&st.stderr)
            );
            seeds.push(fs::read(&p).unwrap());
        }
    }
    // The fuzz byte: 512-byte sectors, no --grow-last; and with it.
    let mut out = Vec::new();
    for s in seeds {
        for pick in [0u8, 2] {
            let mut v = vec![pick];
            v.extend_from_slice(&s);
            out.push(v);
        }
    }
    out
}

#[test]
fn disk_tables() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = disk_seeds(dir.path());
    if seeds.is_empty() {
        return;
    }
    // The tables live in the first 34 sectors and the last 33.
    exercise("disk_table", &seeds, 3000, 17 << 10, |d| {
        fsimg::fuzz::disk_table(d)
    });
}

#[test]
fn mapfiles() {
    let size = 10u64 << 20;
    let mut m = Mapfile::new(size);
    m.set(0, 4096, mapfile::FINISHED);
    m.set(1 << 20, 65536, mapfile::BAD);
    m.set(2 << 20, 512, mapfile::FINISHED);
    let ours = m.to_text(false);
    // As GNU ddrescue writes them: every status, hex positions.
    let ddrescue = "# Mapfile. Created by GNU ddrescue version 1.27\n\
        # current_pos  current_status  current_pass\n\
        0x00100000     ?               1\n\
        #      pos        size  status\n\
        0x00000000  0x00100000  +\n\
        0x00100000  0x00000200  *\n\
        0x00100200  0x00000200  /\n\
        0x00100400  0x00000400  -\n\
        0x00100800  0x008FF800  ?\n";
    let seeds: Vec<Vec<u8>> = [ours.as_str(), ddrescue]
        .iter()
        .map(|t| {
            let mut v = size.to_le_bytes().to_vec();
            v.extend_from_slice(t.as_bytes());
            v
        })
        .collect();
    // Both seeds are accepted as they are.
    for s in &seeds {
        Mapfile::parse(
            std::str::from_utf8(&s[8..]).unwrap(),
            size,
            Path::new("seed"),
        )
        .unwrap();
    }
    exercise("mapfile", &seeds, 5000, 1 << 10, fsimg::fuzz::mapfile);
}

#[test]
fn random_access_to_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = image_seeds(dir.path());
    seeds.push(decompressed("foreign/ntfs-metadata.ntfsclone.zst"));
    seeds.push(decompressed("foreign/fat16.ptcl.zst"));
    seeds.push(decompressed("foreign/ext4-0001.ptcl.zst"));
    // The records' and bitmaps' headers: the first 64 KiB, and the
    // trailer at the end (mutations reach it through copies and cuts).
    exercise(
        "random_access",
        &seeds,
        1500,
        64 << 10,
        fsimg::fuzz::random_access,
    );
}
