//! The promises of every parser of untrusted bytes, as functions that take
//! bytes and panic when a promise is broken.
//!
//! Each cargo-fuzz target in `fuzz/` is one call to one of these, and the
//! stable test suite (`tests/fuzz.rs`) runs each over seeds from
//! `testdata/` and thousands of deterministic mutations of them, so the
//! functions always compile and hold without a nightly toolchain.
//!
//! The promises: never panic and never hang (libFuzzer's `-timeout`
//! watches hangs and `-rss_limit_mb` allocations out of proportion to the
//! input); what a parser accepts is self-consistent (the assertions below).
//! An `Err` is always a fine answer.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use crate::copier::Chunk;
use crate::disk::open::{self as disk_open, Disk};
use crate::disk::retarget::Retarget;
use crate::foreign::{ForeignReader, NtfscloneReader, PartcloneReader, ReadOptions};
use crate::fs::{self, FsChoice};
use crate::image::ImageReader;
use crate::mapfile::{self, Mapfile};
use crate::report::Silent;
use crate::source::{MemSource, Source};

/// The largest input the volume and disk functions take from a fuzzer
/// (their targets cut longer inputs off; the stable tests pass whole test
/// volumes).
pub const MAX_FUZZ_VOLUME: usize = 2 << 20;

/// Every chunk a reader yields: its data matches its extents, the extents
/// are non-empty, ascend within the chunk, start at or after
/// `previous_end` (where the previous chunk ended, for readers that
/// promise ascending order across chunks; 0 otherwise) and end inside the
/// device. Returns where the chunk ends.
fn check_chunk(c: &Chunk, device_size: u64, previous_end: u64) -> u64 {
    let len: u64 = c.extents.iter().map(|e| e.len).sum();
    assert_eq!(c.data.len() as u64, len, "chunk data matches its extents");
    let mut end = previous_end;
    for e in &c.extents {
        assert!(e.len > 0, "no empty extent");
        assert!(e.offset >= end, "extents ascend");
        assert!(e.end() <= device_size, "extent inside the device");
        end = e.end();
    }
    end
}

/// Any bytes as an fsimg image, read through by `ops::read_records` on
/// one thread: an accepted image's chunks match their extents, ascend and
/// stay inside the volume.
pub fn image_reader(data: &[u8]) {
    let Ok(reader) = ImageReader::new(Cursor::new(data), "fuzz") else {
        return;
    };
    let device_size = reader.header().device_size;
    let mut end = 0;
    let _ = crate::ops::read_records(reader, 1, &Silent, |c| {
        end = check_chunk(&c, device_size, end);
        Ok(Some(c))
    });
}

/// Any bytes as a volume of `choice` (Auto: whatever is recognised):
/// opening it, describing it, its allocation map and its metadata walk
/// with the scrubber over every metadata run. An accepted map spans the
/// filesystem's size and counts no more used clusters than it has; every
/// run lies inside the volume.
pub fn volume(data: &[u8], choice: FsChoice) {
    volume_source(&MemSource::new(data.to_vec(), "fuzz"), choice);
}

/// [`volume`] on any source.
fn volume_source(src: &dyn Source, choice: FsChoice) {
    let Ok(fs) = fs::open(src, choice) else {
        return;
    };
    let _ = fs.cluster_size();
    let _ = fs.unclean();
    let _ = fs.describe();
    let device_size = fs.device_size();
    if let Ok(alloc) = fs.allocation(src) {
        let map = &alloc.map;
        assert_eq!(map.device_size(), device_size, "map spans the volume");
        assert!(map.used_clusters() <= map.total_clusters());
        for run in map.runs() {
            let (at, len) = map.run_bytes(run);
            assert!(len > 0 && at + len <= device_size, "run inside the volume");
        }
    }
    if let Ok(m) = fs.metadata(src) {
        assert_eq!(m.allocation.map.device_size(), device_size);
        if let Some(scrub) = &m.scrub {
            for run in m.allocation.map.runs() {
                let (at, len) = m.allocation.map.run_bytes(run);
                let mut buf = vec![0u8; len as usize];
                if src.read_exact_at(&mut buf, at).is_ok() {
                    scrub.scrub(src, at, &mut buf);
                }
            }
        }
    }
}

/// Largest device a [`sparse_volume`] input may describe: 1 GiB keeps
/// the allocation map of a fuzz run small.
pub const MAX_SPARSE_DEVICE: u64 = 1 << 30;

/// A volume given as its non-zero pieces, zeros elsewhere: real btrfs and
/// XFS volumes are at least ~114 MiB and 300 MB (what mkfs.btrfs and
/// mkfs.xfs make), far past what a fuzzer mutates, but little of them is
/// not zero. The input is the
/// device size (u64 little-endian, at most [`MAX_SPARSE_DEVICE`]), then
/// pieces until the input ends: offset (u64 LE), length (u32 LE), that
/// many bytes (cut short by the input's end). A later piece overwrites an
/// earlier one; bytes past the device are dropped.
pub struct SparseSource {
    size: u64,
    pieces: Vec<(u64, Vec<u8>)>,
}

impl SparseSource {
    /// Decodes `data`; `None` when it is shorter than the size field.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let size = u64::from_le_bytes(data.get(..8)?.try_into().ok()?).min(MAX_SPARSE_DEVICE);
        let mut pieces = Vec::new();
        let mut at = 8;
        while let Some(h) = data.get(at..at + 12) {
            let offset = u64::from_le_bytes(h[..8].try_into().ok()?);
            let len = u32::from_le_bytes(h[8..].try_into().ok()?) as usize;
            let bytes = &data[at + 12..(at + 12 + len).min(data.len())];
            at += 12 + bytes.len();
            if offset < size {
                let keep = bytes.len().min((size - offset) as usize);
                pieces.push((offset, bytes[..keep].to_vec()));
            }
        }
        Some(SparseSource { size, pieces })
    }

    /// Encodes `volume` as its non-zero runs of `unit`-byte blocks (the
    /// seeds of the sparse targets).
    pub fn encode(volume: &[u8], unit: usize) -> Vec<u8> {
        let mut out = (volume.len() as u64).to_le_bytes().to_vec();
        let mut blocks = volume.chunks(unit).enumerate().peekable();
        while let Some((i, b)) = blocks.next() {
            if b.iter().all(|&x| x == 0) {
                continue;
            }
            let start = i * unit;
            let mut end = start + b.len();
            while let Some((_, n)) = blocks.next_if(|(_, n)| n.iter().any(|&x| x != 0)) {
                end += n.len();
            }
            out.extend_from_slice(&(start as u64).to_le_bytes());
            out.extend_from_slice(&((end - start) as u32).to_le_bytes());
            out.extend_from_slice(&volume[start..end]);
        }
        out
    }
}

impl Source for SparseSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.size {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.fill(0);
        for (at, bytes) in &self.pieces {
            let p_end = at + bytes.len() as u64;
            if *at < end && offset < p_end {
                let from = offset.max(*at);
                let to = end.min(p_end);
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&bytes[(from - at) as usize..(to - at) as usize]);
            }
        }
        Ok(())
    }

    fn name(&self) -> &str {
        "fuzz"
    }
}

/// Any bytes as a [`SparseSource`] holding a volume of `choice`, checked
/// like [`volume`].
pub fn sparse_volume(data: &[u8], choice: FsChoice) {
    if let Some(src) = SparseSource::decode(data) {
        volume_source(&src, choice);
    }
}

/// Any bytes as an ntfsclone image (an odd first byte: a target written
/// front to back, negative gaps refused): chunks match their extents,
/// ascend and lie inside the device.
pub fn ntfsclone_reader(data: &[u8]) {
    let Ok(mut reader) = NtfscloneReader::new(Cursor::new(data), "fuzz") else {
        return;
    };
    // ntfsclone's records may seek back (a negative gap); only a reader
    // set to write front to back promises ascending chunks.
    let sequential = data.first().is_some_and(|b| b & 1 == 1);
    reader.set_sequential(sequential);
    read_foreign(&mut reader, sequential);
}

/// Any bytes as a partclone image, 0001 or 0002 (an odd last byte:
/// `--ignore-checksums`): chunks match their extents, ascend and lie
/// inside the device.
pub fn partclone_reader(data: &[u8]) {
    let opts = ReadOptions {
        ignore_checksums: data.last().is_some_and(|b| b & 1 == 1),
    };
    let Ok(mut reader) = PartcloneReader::new(Cursor::new(data), "fuzz", opts) else {
        return;
    };
    read_foreign(&mut reader, true);
}

/// Reads `reader` through, checking every chunk (`ascending`: across
/// chunks too).
fn read_foreign(reader: &mut dyn ForeignReader, ascending: bool) {
    let device_size = reader.device_size();
    let _ = reader.describe();
    let mut end = 0;
    loop {
        match reader.next_chunk(&Silent) {
            Ok(Some(c)) => {
                let from = if ascending { end } else { 0 };
                end = check_chunk(&c, device_size, from);
            }
            Ok(None) => {
                let _ = reader.trailing();
                let _ = reader.checked();
                return;
            }
            Err(_) => return,
        }
    }
}

/// Any bytes as a whole disk (the first byte picks 512-byte or 4096-byte
/// sectors and `--grow-last`, the rest is the disk): its partition table
/// (MBR, EBR chain, GPT with its backup, hybrid), its partitions opened,
/// its table relocated onto a target half, equal and 1 MiB over its size.
/// Every partition lies inside the disk; a relocation that is accepted
/// fits the target.
pub fn disk_table(data: &[u8]) {
    let Some((&pick, disk)) = data.split_first() else {
        return;
    };
    let sector = if pick & 1 == 0 { None } else { Some(4096) };
    let src: Arc<dyn Source> = Arc::new(MemSource::new(disk.to_vec(), "fuzz"));
    let Ok(Some(table)) = disk_open::read(src.as_ref(), sector) else {
        return;
    };
    for p in &table.partitions {
        assert!(
            p.len > 0 && p.start + p.len <= table.disk_size,
            "partition inside the disk"
        );
    }
    let size = table.disk_size;
    let Ok(d) = Disk::open(src, table, false) else {
        return;
    };
    for e in d.fixed_extents() {
        assert!(e.end() <= size, "table region inside the disk");
    }
    let _ = d.unpartitioned_bytes();
    for target in [size / 2, size, size + (1 << 20)] {
        if Retarget::new(&d.table, &d.pieces, target, pick & 2 != 0).is_ok() {
            for p in &d.table.partitions {
                assert!(
                    p.start + p.len <= target,
                    "an accepted target holds every partition"
                );
            }
        }
    }
}

/// Any bytes as a GNU ddrescue mapfile: the first 8 bytes (little-endian)
/// are the volume's size, the rest the text. An accepted mapfile covers
/// exactly the volume, and its own text parses back to the same map.
pub fn mapfile(data: &[u8]) {
    let Some((size, text)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    let text = String::from_utf8_lossy(text);
    let path = Path::new("fuzz");
    let Ok(m) = Mapfile::parse(&text, size, path) else {
        return;
    };
    let mut covered = 0u64;
    for st in [mapfile::NON_TRIED, mapfile::FINISHED, mapfile::BAD] {
        for e in m.ranges(st) {
            assert!(e.end() <= size, "block inside the volume");
            covered += e.len;
        }
    }
    assert_eq!(covered, size, "the blocks cover the volume");
    let again = Mapfile::parse(&m.to_text(false), size, path).expect("its own text parses");
    assert_eq!(again, m, "its own text parses to the same map");
}

/// Any bytes as a file opened for random access by [`crate::access::open`]
/// (an fsimg, ntfsclone or partclone image, whichever its first bytes
/// say; anything else is a raw volume), held in a memory file: the first
/// 4 MiB of the volume read in 64 KiB pieces, and a few ranges picked by
/// the input's last bytes. A read either fails or gives exactly the bytes
/// asked for; a read past the end always fails.
pub fn random_access(data: &[u8]) {
    use std::io::Write;
    let Ok(fd) = rustix::fs::memfd_create("fsimg-fuzz", rustix::fs::MemfdFlags::CLOEXEC) else {
        return;
    };
    let mut file = std::fs::File::from(fd);
    if file.write_all(data).is_err() {
        return;
    }
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let Ok(src) = crate::access::open(Path::new(&path), None, &Silent) else {
        return;
    };
    let size = src.size();
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0;
    while at < size.min(4 << 20) {
        let len = (size - at).min(buf.len() as u64) as usize;
        let _ = src.read_exact_at(&mut buf[..len], at);
        at += len as u64;
    }
    let pick = data
        .iter()
        .rev()
        .take(16)
        .fold(0u64, |a, &b| a.rotate_left(8) ^ u64::from(b));
    for k in 0..4u64 {
        let off = pick.rotate_left(16 * k as u32) % size.saturating_add(1);
        let len = ((pick >> (8 * k)) & 0xffff) as usize % (buf.len() + 1);
        let r = src.read_exact_at(&mut buf[..len], off);
        if off.saturating_add(len as u64) > size {
            assert!(r.is_err(), "a read past the end fails");
        }
    }
    drop(file);
}

/// Entries a files walk visits at most, and bytes it reads of each file:
/// enough to reach every structure of a 2 MiB volume.
const FILES_MAX_ENTRIES: usize = 20_000;
const FILES_MAX_READ: u64 = 4 << 20;

/// Any bytes as a volume of `choice` read file by file, as `fsimg ls -R`,
/// `cat` and `extract` read it: every directory listed (a directory met
/// again below itself is not entered twice), every symlink read, every
/// file and named stream read to its end (or [`FILES_MAX_READ`]) in
/// uneven pieces, its data ranges asked for. An entry listed (not a
/// [`crate::files::BadEntry`]) has a good name. An accepted file's reads
/// never return more than asked nor go past its size; its data ranges
/// ascend, do not overlap and stay inside it; every name passes
/// `check_name`.
pub fn files(data: &[u8], choice: FsChoice) {
    use crate::files::{self, Kind, error::check_name};
    let src: Arc<dyn Source> = Arc::new(MemSource::new(data.to_vec(), "fuzz"));
    let Ok(tree) = files::open(src, choice) else {
        return;
    };
    let _ = tree.fs_name();
    let _ = tree.warnings();
    let Ok(root) = tree.root() else {
        return;
    };
    let mut todo = vec![(root, "/".to_string(), vec![])];
    let mut visited = 0usize;
    let mut buf = vec![0u8; 70_000];
    while let Some((dir, path, ancestors)) = todo.pop() {
        let Ok(entries) = tree.read_dir(&dir, &path) else {
            continue;
        };
        for slot in entries {
            visited += 1;
            if visited > FILES_MAX_ENTRIES {
                return;
            }
            let Ok(e) = slot else {
                continue;
            };
            assert!(check_name(&path, &e.name).is_ok(), "names are checked");
            let p = crate::files::walk::join(&path, &e.name);
            match e.meta.kind {
                Kind::Dir
                    if e.meta.id != dir.id
                        && !ancestors.contains(&e.meta.id)
                        && ancestors.len() < 64 =>
                {
                    let mut a: Vec<u64> = ancestors.clone();
                    a.push(dir.id);
                    todo.push((e.meta, p, a));
                }
                Kind::Symlink => {
                    let _ = tree.read_link(&e.meta, &p);
                }
                Kind::File => {
                    if let Ok(mut r) = tree.open(&e.meta, &p) {
                        read_all(&mut *r, e.meta.size, &mut buf);
                    }
                    for s in tree.streams(&e.meta, &p).unwrap_or_default() {
                        if let Ok(mut r) = tree.open_stream(&e.meta, &p, &s.name) {
                            read_all(&mut *r, s.size, &mut buf);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Reads a file of `size` bytes through in uneven pieces, checking what
/// its reader promises.
fn read_all(r: &mut dyn crate::files::FileRead, size: u64, buf: &mut [u8]) {
    if let Ok(Some(ranges)) = r.data_ranges() {
        let mut end = 0;
        for (s, e) in ranges {
            assert!(s >= end && s < e, "data ranges ascend and are not empty");
            assert!(e <= size, "data ranges stay inside the file");
            end = e;
        }
    }
    let mut at = 0u64;
    let mut piece = 1usize;
    while at < size.min(FILES_MAX_READ) {
        let want = piece.min(buf.len());
        match r.read_at(at, &mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                assert!(n <= want, "a read returns at most what was asked");
                at += n as u64;
                assert!(at <= size, "reads stop at the file's size");
            }
        }
        piece = piece * 7 % 65_521 + 4093;
    }
}
