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
    let first = d.read.swap(0, Ordering::Relaxed);
    assert!(first < 5 << 20, "interrupted early ({first} bytes read)");
    assert!(mapfile_blocks(&map)[0].ends_with('+'), "progress recorded");

    let mut sink = FileSink::open(&out, FileMode::Overwrite, d.size(), None).unwrap();
    let loaded = Mapfile::load(&map, d.size()).unwrap();
    rescue_copy(&d, &used(), &mut sink, loaded, &resume, &Silent).unwrap();
    let second = d.read.load(Ordering::Relaxed);
    assert!(
        second < 5 << 20,
        "the resumed run skips what was copied ({second} bytes)"
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
