//! Rescue mode with a mapfile: the mapfile after the first pass and after a
//! retry pass, and an interrupted run resumed, driven in-process by a
//! source that fails chosen ranges.

mod common;

use std::fs;
use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fsimg::allocmap::AllocationMap;
use fsimg::copier::{BAD_SECTOR_MARKER, Extent};
use fsimg::mapfile::Mapfile;
use fsimg::ops::{Resume, rescue_copy};
use fsimg::report::{Report, Silent};
use fsimg::sink::{FileMode, FileSink};
use fsimg::source::Source;

/// Fails reads touching `bad` until healed; counts the bytes read.
struct Disk {
    data: Vec<u8>,
    bad: (u64, u64),
    healed: AtomicBool,
    read: AtomicU64,
}

impl Source for Disk {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if !self.healed.load(Ordering::Relaxed) && offset < self.bad.1 && self.bad.0 < end {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        buf.copy_from_slice(&self.data[offset as usize..end as usize]);
        Ok(())
    }
    fn name(&self) -> &str {
        "disk"
    }
}

fn disk(bad: (u64, u64)) -> Disk {
    Disk {
        data: (0..8u64 << 20).map(|i| (i * 31 % 253) as u8 | 1).collect(),
        bad,
        healed: AtomicBool::new(false),
        read: AtomicU64::new(0),
    }
}

/// Used: the first 3 MiB and 4..6 MiB, in 4 KiB clusters.
fn used() -> AllocationMap {
    let mut m = AllocationMap::new(4096, 8 << 20);
    m.mark_used(0, 768);
    m.mark_used(1024, 512);
    m
}

fn mapfile_blocks(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Bytes the mapfile marks finished (`+`).
fn finished_bytes(path: &std::path::Path) -> u64 {
    mapfile_blocks(path)
        .iter()
        .filter(|l| l.ends_with('+'))
        .map(|l| {
            let size = l.split_whitespace().nth(1).unwrap();
            u64::from_str_radix(size.trim_start_matches("0x"), 16).unwrap()
        })
        .sum()
}

#[test]
fn mapfile_after_a_pass_and_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    let map = dir.path().join("out.map");
    let d = disk((0x101200, 0x101600)); // two sectors
    let resume = Resume {
        mapfile: Some(map.clone()),
        retries: 0,
    };
    let mut sink = FileSink::open(&out, FileMode::Create, d.size(), None).unwrap();
    let stats = rescue_copy(
        &d,
        &used(),
        &mut sink,
        Mapfile::new(d.size()),
        &resume,
        &Silent,
    )
    .unwrap();
    assert_eq!(
        stats.bad,
        vec![Extent {
            offset: 0x101200,
            len: 0x400
        }]
    );
    assert_eq!(
        mapfile_blocks(&map),
        vec![
            "0x00000000  0x00101200  +",
            "0x00101200  0x00000400  -",
            "0x00101600  0x001FEA00  +",
            "0x00300000  0x00100000  ?",
            "0x00400000  0x00200000  +",
            "0x00600000  0x00200000  ?",
        ]
    );
    let img = fs::read(&out).unwrap();
    assert_eq!(&img[0x101200..0x10120A], BAD_SECTOR_MARKER);
    assert_eq!(&img[0x101400..0x10140A], BAD_SECTOR_MARKER);
    assert!(img[0x10120A..0x101400].iter().all(|&b| b == b'?'));
    assert_eq!(&img[..0x101200], &d.data[..0x101200]);

    // The disk reads now: a rerun with retries reads only the bad cluster.
    d.healed.store(true, Ordering::Relaxed);
    d.read.store(0, Ordering::Relaxed);
    let resume = Resume {
        mapfile: Some(map.clone()),
        retries: 2,
    };
    let mut sink = FileSink::open(&out, FileMode::Overwrite, d.size(), None).unwrap();
    let loaded = Mapfile::load(&map, d.size()).unwrap();
    let stats = rescue_copy(&d, &used(), &mut sink, loaded, &resume, &Silent).unwrap();
    assert!(stats.bad.is_empty());
    assert_eq!(
        d.read.load(Ordering::Relaxed),
        4096,
        "only the bad cluster is read again"
    );
    assert_eq!(
        mapfile_blocks(&map),
        vec![
            "0x00000000  0x00300000  +",
            "0x00300000  0x00100000  ?",
            "0x00400000  0x00200000  +",
            "0x00600000  0x00200000  ?",
        ]
    );
    let img = fs::read(&out).unwrap();
    assert_eq!(&img[..3 << 20], &d.data[..3 << 20]);
    assert_eq!(&img[4 << 20..6 << 20], &d.data[4 << 20..6 << 20]);
}

/// Stops after a few chunks, as Ctrl-C would.
struct StopAfter(AtomicU64);

impl Report for StopAfter {
    fn progress(&self, _: u64, _: u64) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

#[test]
fn an_interrupted_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    let map = dir.path().join("out.map");
    let d = disk((0, 0));
    let resume = Resume {
        mapfile: Some(map.clone()),
        retries: 0,
    };
    let mut sink = FileSink::open(&out, FileMode::Create, d.size(), None).unwrap();
    sink.keep_on_failure();
    let err = rescue_copy(
        &d,
        &used(),
        &mut sink,
        Mapfile::new(d.size()),
        &resume,
        &StopAfter(AtomicU64::new(2)),
    )
    .unwrap_err();
    assert!(matches!(err, fsimg::Error::Interrupted), "{err}");
    drop(sink);
    // The reader may have read ahead of the writer by any amount; what
    // counts is what the mapfile recorded as written.
    d.read.store(0, Ordering::Relaxed);
    let finished = finished_bytes(&map);
    assert!(
        (2 << 20..5 << 20).contains(&finished),
        "progress recorded up to the interruption ({finished} bytes)"
    );

    let mut sink = FileSink::open(&out, FileMode::Overwrite, d.size(), None).unwrap();
    let loaded = Mapfile::load(&map, d.size()).unwrap();
    rescue_copy(&d, &used(), &mut sink, loaded, &resume, &Silent).unwrap();
    let second = d.read.load(Ordering::Relaxed);
    assert_eq!(
        second,
        (5 << 20) - finished,
        "the resumed run reads only what was not recorded as copied"
    );
    let img = fs::read(&out).unwrap();
    assert_eq!(&img[..3 << 20], &d.data[..3 << 20]);
    assert_eq!(&img[4 << 20..6 << 20], &d.data[4 << 20..6 << 20]);
    assert_eq!(
        mapfile_blocks(&map),
        vec![
            "0x00000000  0x00300000  +",
            "0x00300000  0x00100000  ?",
            "0x00400000  0x00200000  +",
            "0x00600000  0x00200000  ?",
        ]
    );
}

/// GNU ddrescuelog (written elsewhere) reads the mapfile and agrees.
#[test]
fn ddrescuelog_reads_the_mapfile() {
    if !common::have("ddrescuelog") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    let map = dir.path().join("out.map");
    let d = disk((0x200000, 0x201000));
    let resume = Resume {
        mapfile: Some(map.clone()),
        retries: 0,
    };
    let mut sink = FileSink::open(&out, FileMode::Create, d.size(), None).unwrap();
    rescue_copy(
        &d,
        &used(),
        &mut sink,
        Mapfile::new(d.size()),
        &resume,
        &Silent,
    )
    .unwrap();
    // The bad sectors, listed by ddrescuelog in 512-byte blocks.
    let list = Command::new("ddrescuelog")
        .args(["-l-", "-b512"])
        .arg(&map)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let blocks: Vec<u64> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(blocks, (0x1000..0x1008).collect::<Vec<u64>>());
}

fn image_disk(kind: &str, name: &str, bad: (u64, u64)) -> Disk {
    Disk {
        data: common::image(kind, name),
        bad,
        healed: AtomicBool::new(false),
        read: AtomicU64::new(0),
    }
}

fn allocation(d: &Disk, rescue: bool) -> fsimg::Result<fsimg::fs::Allocation> {
    let mut fs = fsimg::fs::open(d, fsimg::fs::FsChoice::Auto)?;
    fs.set_rescue(rescue);
    fs.allocation(d)
}

/// An unreadable ext block bitmap: without --rescue the run stops; with
/// it the group is copied whole and the report says so.
#[test]
fn unreadable_ext_bitmap_copies_its_group() {
    let img = common::image("ext", "ext2-1k");
    // Group 1's bg_block_bitmap: descriptors at block 2, 32 bytes each.
    let block = u64::from(u32::from_le_bytes(
        img[2048 + 32..2048 + 36].try_into().unwrap(),
    ));
    let d = image_disk("ext", "ext2-1k", (block * 1024, block * 1024 + 1024));
    assert!(matches!(
        allocation(&d, false),
        Err(fsimg::Error::Read { .. })
    ));
    let a = allocation(&d, true).unwrap();
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    let bpg = common::expected_u64(&common::expected_in("ext", "ext2-1k"), "blocks_per_group");
    assert_eq!(
        a.warnings,
        vec![format!(
            "the block bitmap of group 1 (block {block}) is unreadable: all {bpg} of its clusters are copied"
        )]
    );
    assert_eq!(a.map.count_used(1 + bpg, bpg), bpg);
    d.healed.store(true, Ordering::Relaxed);
    let clean = allocation(&d, false).unwrap();
    assert_eq!(
        a.map.count_used(1, bpg),
        clean.map.count_used(1, bpg),
        "group 0 as read"
    );
    assert!(
        clean.map.count_used(1 + bpg, bpg) < bpg,
        "group 1 is not full"
    );
}

/// An unreadable FAT sector: if the other copy reads, nothing changes but
/// a warning; if no copy reads, the clusters it describes are copied.
#[test]
fn unreadable_fat_sectors() {
    let img = common::image("fat", "fat16");
    let bps = u64::from(u16::from_le_bytes([img[11], img[12]]));
    let rsvd = u64::from(u16::from_le_bytes([img[14], img[15]]));
    let fatsz = u64::from(u16::from_le_bytes([img[0x16], img[0x17]]));
    let fat0 = rsvd * bps;
    let clean = allocation(&image_disk("fat", "fat16", (0, 0)), false).unwrap();

    // Sector 1 of the first FAT (entries 256..511) only.
    let d = image_disk("fat", "fat16", (fat0 + bps, fat0 + 2 * bps));
    assert!(matches!(
        allocation(&d, false),
        Err(fsimg::Error::Read { .. })
    ));
    let a = allocation(&d, true).unwrap();
    assert_eq!(
        a.map.used_clusters(),
        clean.map.used_clusters(),
        "FAT 2 describes them"
    );
    assert!(a.warnings[0].starts_with(&format!(
        "1 FAT sector(s) are unreadable (the first at byte {})",
        fat0 + bps
    )));

    // The same sector in both FATs: clusters 256..511 are copied raw.
    struct Both(Disk, (u64, u64));
    impl Source for Both {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let end = offset + buf.len() as u64;
            if offset < self.1.1 && self.1.0 < end {
                return Err(io::Error::from_raw_os_error(5));
            }
            self.0.read_exact_at(buf, offset)
        }
        fn name(&self) -> &str {
            "both"
        }
    }
    let fat1 = fat0 + fatsz * bps;
    let both = Both(
        image_disk("fat", "fat16", (fat0 + bps, fat0 + 2 * bps)),
        (fat1 + bps, fat1 + 2 * bps),
    );
    let mut fs = fsimg::fs::open(&both, fsimg::fs::FsChoice::Auto).unwrap();
    fs.set_rescue(true);
    let a = fs.allocation(&both).unwrap();
    let spc = u64::from(img[13]);
    let data =
        common::expected_u64(&common::expected_in("fat", "fat16"), "first_data_sector") * bps;
    let unit = u64::from(a.map.cluster_size());
    for c in 256..512u64 {
        let at = data + (c - 2) * spc * bps;
        assert!(a.map.is_used(at / unit), "cluster {c} is copied");
    }
    assert!(
        a.warnings[0].starts_with("2 FAT sector(s) are unreadable"),
        "{:?}",
        a.warnings
    );
}

/// An unreadable superblock or boot sector: the filesystem is read from
/// its backup, with a warning, and the map is the same as the healthy
/// volume's.
#[test]
fn unreadable_superblock_or_boot_sector_falls_back_to_the_backup() {
    for (kind, name, bad, backup_at) in [
        // ext: the primary superblock at byte 1024; group 1's backup.
        ("ext", "ext2-1k", (1024, 2048), "byte 4195328"),
        ("ext", "ext4-default", (1024, 2048), "byte 4194304"),
        // FAT32: sector 0; the backup boot sector is sector 6.
        ("fat", "fat32", (0, 512), "byte 3072"),
        ("fat", "fat32-4k-sector", (0, 4096), "byte 24576"),
    ] {
        let healthy = image_disk(kind, name, (0, 0));
        let want = allocation(&healthy, false).unwrap();
        let d = image_disk(kind, name, bad);
        // e2fsprogs writes backups with the "valid" bit clear; that is
        // not a reason to refuse the volume.
        let fs = fsimg::fs::open(&d, fsimg::fs::FsChoice::Auto).unwrap();
        assert_eq!(fs.unclean(), None, "{name}");
        for rescue in [false, true] {
            let a = allocation(&d, rescue).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(a.map.used_clusters(), want.map.used_clusters(), "{name}");
            assert!(
                (0..a.map.total_clusters()).all(|c| a.map.is_used(c) == want.map.is_used(c)),
                "{name}: same map"
            );
            assert!(
                a.warnings[0].contains("unreadable; using the")
                    && a.warnings[0].contains(backup_at),
                "{name}: {:?}",
                a.warnings
            );
        }
    }
}

/// FAT32 with its boot and FSInfo sectors unreadable: a rescue run reads
/// the backup boot sector and skips the FSInfo check, with warnings.
#[test]
fn unreadable_fat32_boot_and_fsinfo_sectors() {
    let d = image_disk("fat", "fat32", (0, 1024));
    assert!(matches!(
        allocation(&d, false),
        Err(fsimg::Error::Read { offset: 512, .. })
    ));
    let a = allocation(&d, true).unwrap();
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    assert_eq!(
        a.warnings,
        vec![
            "the boot sector is unreadable; using the FAT32 backup boot sector at byte 3072"
                .to_string(),
            "the FSInfo sector (at byte 512) is unreadable: its free count is not checked"
                .to_string(),
        ]
    );
}

/// The first NTFS test image.
fn ntfs_image() -> String {
    let names = common::images("ntfs");
    names
        .iter()
        .find(|n| n.contains("4k"))
        .unwrap_or(&names[0])
        .clone()
}

/// NTFS: an unreadable boot sector is read from the backup at the end; an
/// unreadable `$Bitmap` sector or MFT record does not stop a rescue run,
/// and what it describes is copied.
#[test]
fn unreadable_ntfs_metadata() {
    let name = ntfs_image();
    let img = common::image("ntfs", &name);
    let healthy = image_disk("ntfs", &name, (0, 0));
    let want = allocation(&healthy, false).unwrap();
    let size = img.len() as u64;

    let d = image_disk("ntfs", &name, (0, 512));
    let a = allocation(&d, true).unwrap();
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    assert_eq!(a.map.used_clusters(), want.map.used_clusters());
    assert_eq!(
        a.warnings[0],
        format!(
            "the boot sector is unreadable; using the backup boot sector at byte {}",
            size - 512
        )
    );

    // $Bitmap's first sector: 4096 clusters.
    let bitmap = {
        let mut fs = std::io::Cursor::new(&img[..]);
        let ntfs = ntfs::Ntfs::new(&mut fs).unwrap();
        let f = ntfs.file(&mut fs, 6).unwrap();
        let item = f.data(&mut fs, "").unwrap().unwrap();
        let attr = item.to_attribute().unwrap();
        let v = attr.value(&mut fs).unwrap();
        v.data_position().value().unwrap().get()
    };
    let d = image_disk("ntfs", &name, (bitmap, bitmap + 512));
    assert!(matches!(
        allocation(&d, false),
        Err(fsimg::Error::Read { .. })
    ));
    let a = allocation(&d, true).unwrap();
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    let described = 4096.min(a.map.total_clusters() - 1);
    assert!((0..described).all(|c| a.map.is_used(c)));
    assert!(
        a.warnings
            .contains(&format!("1 $Bitmap sector(s) are unreadable (the first at byte {bitmap}): the clusters they describe are copied")),
        "{:?}",
        a.warnings
    );

    // The record of a file with clusters of its own.
    let (n, at) = (24..4096u64)
        .find_map(|n| {
            let mut fs = std::io::Cursor::new(&img[..]);
            let ntfs = ntfs::Ntfs::new(&mut fs).unwrap();
            let f = ntfs.file(&mut fs, n).ok()?;
            let item = f.data(&mut fs, "")?.ok()?;
            let attr = item.to_attribute().ok()?;
            (f.flags().contains(ntfs::NtfsFileFlags::IN_USE)
                && !attr.is_resident()
                && attr.value_length() > 0)
                .then(|| (n, f.position().value().unwrap().get()))
        })
        .unwrap();
    let d = image_disk("ntfs", &name, (at, at + 512));
    let a = allocation(&d, true).unwrap();
    assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
    assert_eq!(a.map.used_clusters(), want.map.used_clusters());
    assert!(
        a.warnings.iter().any(|w| w.starts_with(&format!(
            "1 MFT record(s) are unreadable, the first MFT record {n} at byte {at}"
        ))),
        "{:?}",
        a.warnings
    );
}
