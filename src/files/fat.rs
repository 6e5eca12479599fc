//! Files of FAT12, FAT16 and FAT32 volumes: directories with their long
//! names, and file contents through the cluster chains of the FAT.
//!
//! # Why fsimg's own code and not the `fatfs` crate
//!
//! `fatfs` 0.3 is written for volumes it trusts. Its `ClusterIterator`
//! follows FAT entries with no cycle detection, so a directory whose chain
//! loops is iterated forever; it computes offsets in unchecked `u32`
//! arithmetic (an overflow panic in debug builds on a hostile BPB); it
//! needs a writable volume and is `!Sync`; and it opens files by path
//! only, while [`Tree`] finds them by [`Meta::id`]. Guarding it from the
//! outside would mean re-validating every chain before handing it over,
//! which is the work of a reader anyway. So this module reads the volume
//! itself, on top of the boot sector parsing and validation of
//! [`crate::fs::fat`] ([`Fat::open`], [`Bpb`]).
//!
//! # What is read
//!
//! * The boot sector (through [`Fat::open`]): geometry, FAT type, FAT32
//!   root cluster and active FAT.
//! * One FAT copy (the active one when FAT32 mirroring is off, else the
//!   first), read on demand in 64 KiB windows.
//! * Directories: the fixed root directory region (FAT12/16) or a cluster
//!   chain. Entries are read up to the end-of-directory mark (first byte
//!   0), as the FAT specification, Windows and mtools do. Deleted entries
//!   (0xE5), the volume label and `.`/`..` are skipped. Long names (VFAT)
//!   are used when their slots are complete, in order, and their checksum
//!   matches the 8.3 entry that follows (the rules of Linux's vfat); they
//!   are UTF-16 and returned as UTF-8. 8.3 names are decoded from code
//!   page 437 (Linux's default), with 0x05 standing for a first byte 0xE5
//!   and the NT lowercase flags (0x08 base, 0x10 extension) applied.
//! * Files: the chain from the entry's first cluster, cut to the clusters
//!   the size needs (as Linux does; a longer chain is fsck's business).
//!
//! # Meta
//!
//! FAT has no inode numbers, so [`Meta::id`] is made of a tag (top 4 bits)
//! and a payload: a directory's is its first cluster (the FAT12/16 fixed
//! root gets 0xFFFF_FFFF, no cluster), so a subdirectory that points back
//! to an ancestor has the ancestor's id and the walker sees the loop; a
//! file's is the byte offset of its 8.3 directory entry, unique even for
//! empty files (no cluster) and cross-linked ones, and [`Tree::open`]
//! reads that entry again for the first cluster and size. Times: the write date and
//! time as mtime (2-second resolution, local time taken as UTC as Linux's
//! vfat does by default, decoded with Linux's arithmetic), the access date
//! at 00:00 as atime when it is not zero. A directory's size is its
//! chain's length in bytes (the fixed root: its entries × 32), as Linux
//! reports.
//!
//! # Hostile volumes
//!
//! Every chain is checked while it is followed: a cluster outside
//! 2..=last, a free entry inside a chain, a chain coming back to a cluster
//! it already went through (detected with the runs seen so far, so memory
//! is bounded by the chain's distinct runs) and a file longer than its
//! chain are [`FileError::Corrupt`] naming the cluster. A directory may
//! hold at most 65,536 entries (2 MiB, the FAT limit Linux and Windows
//! enforce when writing).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DirEntry, FileError, FileRead, Kind, Meta, Time, Tree, dir_entry};
use crate::bytes::{u16le, u32le};
use crate::error::Result;
use crate::fs::fat::Fat;
use crate::fs::fat::bpb::{Bpb, FatType};
use crate::fs::fat::table::FatTable;
use crate::source::Source;

/// Size of a directory entry.
const DIR_ENTRY: usize = 32;
/// The most bytes a directory may hold (65,536 entries).
const MAX_DIR_BYTES: u64 = 65_536 * DIR_ENTRY as u64;

/// `DIR_Attr` bits.
const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
/// `DIR_Attr` of a long-name slot, under `LONG_NAME_MASK`.
const ATTR_LONG_NAME: u8 = 0x0F;
const LONG_NAME_MASK: u8 = 0x3F;
/// First name byte of a deleted entry.
const DELETED: u8 = 0xE5;
/// First name byte standing for 0xE5 (a Kanji lead byte).
const KANJI_E5: u8 = 0x05;
/// `DIR_NTRes` bits: base name / extension stored upper case, shown
/// lower case.
const NT_LOWER_BASE: u8 = 0x08;
const NT_LOWER_EXT: u8 = 0x10;
/// `LDIR_Ord` bit of the last (first stored) slot of a long name.
const LFN_LAST: u8 = 0x40;
/// Slots of the longest long name (255 UTF-16 units, 13 a slot).
const MAX_LFN_SLOTS: u8 = 20;
/// UTF-16 units per long-name slot.
const LFN_UNITS: usize = 13;

/// Tags of [`Meta::id`] (bits 60..64); the payload is below.
const TAG_SHIFT: u32 = 60;
const TAG_DIR: u64 = 1;
const TAG_FILE: u64 = 2;
const PAYLOAD: u64 = (1 << TAG_SHIFT) - 1;
/// Payload of the FAT12/16 root directory's id: not a cluster number.
const FIXED_ROOT: u64 = 0xFFFF_FFFF;

/// Code page 437, bytes 0x80..=0xFF (Linux vfat's default `codepage`).
const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', //
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', //
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', //
    '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', //
    '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', //
    '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀', //
    'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', //
    '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{A0}',
];

/// The files of a FAT volume.
pub struct FatTree {
    src: Arc<dyn Source>,
    bpb: Bpb,
    table: Mutex<FatTable>,
}

impl FatTree {
    /// Reads and validates the boot sector of `src` (see [`Fat::open`]).
    pub fn open(src: Arc<dyn Source>) -> Result<Self> {
        let bpb = Fat::open(&*src)?.bpb().clone();
        let copy = match bpb.active_fat() {
            Some(n) if n < bpb.num_fats => n,
            _ => 0,
        };
        let table = FatTable::new(&bpb, copy);
        Ok(FatTree {
            src,
            bpb,
            table: Mutex::new(table),
        })
    }

    fn fat32(&self) -> bool {
        self.bpb.fat_type == FatType::Fat32
    }

    fn cluster_size(&self) -> u64 {
        u64::from(self.bpb.cluster_size())
    }

    /// The last cluster number.
    fn last_cluster(&self) -> u32 {
        self.bpb.cluster_count.saturating_add(1)
    }

    /// Byte offset of cluster `c` (2..=last).
    fn cluster_offset(&self, c: u32) -> u64 {
        self.bpb.data_offset() + u64::from(c.saturating_sub(2)) * self.cluster_size()
    }

    /// The FAT cache (a poisoned lock only means another reader panicked
    /// mid-read; the cache holds whole windows, so it is still sound).
    fn table(&self) -> MutexGuard<'_, FatTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A walk of the chain starting at cluster `first`.
    fn chain(&self, first: u32) -> Chain {
        Chain {
            first,
            next: Some(first),
            prev: None,
            runs: Vec::new(),
            closed: BTreeMap::new(),
            len: 0,
        }
    }

    /// The size of the directory starting at `first`: its chain in bytes,
    /// counted up to the directory size limit (0 if the chain is broken at
    /// its start; reading the directory reports the problem).
    fn dir_size(&self, first: u32) -> u64 {
        let cs = self.cluster_size();
        let max = MAX_DIR_BYTES.div_ceil(cs);
        let mut chain = self.chain(first);
        let mut n = 0u64;
        while n < max {
            match chain.next(self, "") {
                Ok(Some(_)) => n += 1,
                _ => break,
            }
        }
        n * cs
    }

    /// The metadata of the root directory.
    fn root_meta(&self) -> Meta {
        let (payload, size) = if self.fat32() {
            (
                u64::from(self.bpb.root_cluster),
                self.dir_size(self.bpb.root_cluster),
            )
        } else {
            (FIXED_ROOT, u64::from(self.bpb.root_entries) * 32)
        };
        Meta {
            id: (TAG_DIR << TAG_SHIFT) | payload,
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size,
            // FAT keeps no times for the root; Linux shows the epoch.
            mtime: Time::default(),
            atime: None,
            nlink: 1,
            rdev: None,
        }
    }

    /// The metadata of the file or directory of 8.3 entry `e`, stored at
    /// byte `at` of the volume.
    fn entry_meta(&self, e: &[u8; DIR_ENTRY], at: u64) -> Meta {
        let attr = e[11];
        let first = self.first_cluster(e);
        let dir = attr & ATTR_DIRECTORY != 0;
        let (id, size) = if dir {
            (
                (TAG_DIR << TAG_SHIFT) | u64::from(first),
                self.dir_size(first),
            )
        } else {
            (
                (TAG_FILE << TAG_SHIFT) | (at & PAYLOAD),
                u64::from(u32le(e, 28)),
            )
        };
        let read_only = attr & ATTR_READ_ONLY != 0;
        let mode = match (dir, read_only) {
            (true, false) => 0o755,
            (true, true) => 0o555,
            (false, false) => 0o644,
            (false, true) => 0o444,
        };
        let adate = u16le(e, 18);
        Meta {
            id,
            kind: if dir { Kind::Dir } else { Kind::File },
            mode,
            uid: 0,
            gid: 0,
            size,
            mtime: fat_time(u16le(e, 22), u16le(e, 24)),
            atime: (adate != 0).then(|| fat_time(0, adate)),
            nlink: 1,
            rdev: None,
        }
    }

    /// `DIR_FstClusLO`, with `DIR_FstClusHI` on FAT32 (on FAT16 it
    /// may hold OS/2 extended attributes).
    fn first_cluster(&self, e: &[u8; DIR_ENTRY]) -> u32 {
        let hi = if self.fat32() {
            u32::from(u16le(e, 20))
        } else {
            0
        };
        (hi << 16) | u32::from(u16le(e, 26))
    }

    /// The payload of `meta`'s id if it has tag `tag`.
    fn payload(meta: &Meta, tag: u64) -> Option<u64> {
        (meta.id >> TAG_SHIFT == tag).then_some(meta.id & PAYLOAD)
    }

    /// The entries of the directory whose chain starts at `first`.
    fn read_chain_dir(&self, first: u64, path: &str) -> Result<Vec<DirEntry>> {
        let Ok(first) = u32::try_from(first) else {
            return Err(corrupt(
                path,
                format!("cluster {first}"),
                "not a cluster number",
            ));
        };
        if first == 0 {
            return Err(corrupt(
                path,
                "cluster 0".into(),
                "the directory's entry names no first cluster",
            ));
        }
        let cs = self.cluster_size();
        // At most 4096 * 128 bytes (checked by the Bpb).
        let mut buf = vec![0u8; cs as usize];
        let mut parser = DirParser::new();
        let mut chain = self.chain(first);
        let mut bytes = 0u64;
        while let Some(c) = chain.next(self, path)? {
            if bytes >= MAX_DIR_BYTES {
                return Err(corrupt(
                    path,
                    format!("cluster {first}"),
                    format!(
                        "the directory holds more than {} entries ({MAX_DIR_BYTES} bytes) without an end mark",
                        MAX_DIR_BYTES / DIR_ENTRY as u64
                    ),
                ));
            }
            let at = self.cluster_offset(c);
            self.src.read_into(&mut buf, at)?;
            bytes += cs;
            if !parser.feed(&buf, at)? {
                break;
            }
        }
        Ok(self.entries(parser.found, path))
    }

    /// The entries of the FAT12/16 root directory region.
    fn read_fixed_root(&self, path: &str) -> Result<Vec<DirEntry>> {
        let len = u64::from(self.bpb.root_dir_sectors) * u64::from(self.bpb.bytes_per_sector);
        let at = self.bpb.data_offset().saturating_sub(len);
        // At most 65,535 entries: the BPB field is 16 bits.
        let buf = self.src.read_vec(at, len as usize)?;
        let entries = u64::from(self.bpb.root_entries) * DIR_ENTRY as u64;
        let buf = buf.get(..entries as usize).unwrap_or(&buf);
        let mut parser = DirParser::new();
        parser.feed(buf, at)?;
        Ok(self.entries(parser.found, path))
    }

    /// Turns parsed names and 8.3 entries into listing slots (a name
    /// that cannot be a file name is a [`super::BadEntry`]).
    fn entries(&self, found: Vec<Found>, path: &str) -> Vec<DirEntry> {
        found
            .into_iter()
            .map(|f| dir_entry(path, f.name, Ok(self.entry_meta(&f.short, f.at))))
            .collect()
    }
}

impl Tree for FatTree {
    fn fs_name(&self) -> String {
        match self.bpb.fat_type {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        }
        .to_string()
    }

    fn root(&self) -> Result<Meta> {
        Ok(self.root_meta())
    }

    fn read_dir(&self, dir: &Meta, path: &str) -> Result<Vec<DirEntry>> {
        let Some(first) = Self::payload(dir, TAG_DIR) else {
            return Err(FileError::NotADirectory {
                path: path.to_string(),
            }
            .into());
        };
        if first == FIXED_ROOT && !self.fat32() {
            self.read_fixed_root(path)
        } else {
            self.read_chain_dir(first, path)
        }
    }

    fn open<'a>(&'a self, file: &Meta, path: &str) -> Result<Box<dyn FileRead + 'a>> {
        let tag = file.id >> TAG_SHIFT;
        let payload = file.id & PAYLOAD;
        let (first, size) = match tag {
            TAG_FILE => self.file_entry(payload, path)?,
            TAG_DIR => {
                return Err(FileError::Unsupported {
                    path: path.to_string(),
                    what: "a directory as a file".into(),
                }
                .into());
            }
            _ => {
                return Err(FileError::NotFound {
                    path: path.to_string(),
                }
                .into());
            }
        };
        let runs = if size == 0 {
            Vec::new()
        } else if first == 0 {
            return Err(corrupt(
                path,
                format!("directory entry at byte {payload}"),
                format!(
                    "a file of {size} bytes with no first cluster (the chain of 0 clusters holds fewer than {size} bytes)"
                ),
            ));
        } else {
            self.file_runs(first, size, path)?
        };
        Ok(Box::new(FatFile {
            tree: self,
            size,
            runs,
        }))
    }

    fn read_link(&self, _link: &Meta, path: &str) -> Result<Vec<u8>> {
        Err(FileError::Unsupported {
            path: path.to_string(),
            what: "a symbolic link (FAT has none)".into(),
        }
        .into())
    }
}

impl FatTree {
    /// The first cluster and size of the file whose 8.3 entry is at byte
    /// `at` (a file's id), read again from the volume.
    fn file_entry(&self, at: u64, path: &str) -> Result<(u32, u64)> {
        let mut e = [0u8; DIR_ENTRY];
        let fits = at
            .checked_add(DIR_ENTRY as u64)
            .is_some_and(|end| end <= self.bpb.volume_size());
        if !fits {
            return Err(FileError::NotFound {
                path: path.to_string(),
            }
            .into());
        }
        self.src.read_into(&mut e, at)?;
        Ok((self.first_cluster(&e), u64::from(u32le(&e, 28))))
    }

    /// The runs of clusters holding the `size` bytes of the file whose
    /// chain starts at `first`, in file order.
    fn file_runs(&self, first: u32, size: u64, path: &str) -> Result<Vec<Run>> {
        let cs = self.cluster_size();
        let need = size.div_ceil(cs);
        let mut chain = self.chain(first);
        let mut got = 0u64;
        while got < need {
            match chain.next(self, path)? {
                Some(_) => got += 1,
                None => {
                    return Err(corrupt(
                        path,
                        format!("cluster {first}"),
                        format!(
                            "the chain of {got} clusters (of {cs} bytes) starting there holds fewer than {size} bytes"
                        ),
                    ));
                }
            }
        }
        let mut index = 0u64;
        Ok(chain
            .runs
            .into_iter()
            .map(|(cluster, count)| {
                let r = Run {
                    index,
                    cluster,
                    count,
                };
                index += u64::from(count);
                r
            })
            .collect())
    }
}

/// `Corrupt { path, what, detail }` as an [`crate::error::Error`].
fn corrupt(path: &str, what: String, detail: impl Into<String>) -> crate::error::Error {
    FileError::Corrupt {
        path: path.to_string(),
        what,
        detail: detail.into(),
    }
    .into()
}

/// A cluster chain being followed, checked at every step.
struct Chain {
    /// The first cluster (from the directory entry).
    first: u32,
    /// The next cluster to return, unchecked; `None` after end of chain.
    next: Option<u32>,
    /// The cluster whose FAT entry gave `next`.
    prev: Option<u32>,
    /// Runs of consecutive clusters met, in chain order: (first, count).
    runs: Vec<(u32, u32)>,
    /// Every run but the last, by first cluster: first -> end (exclusive).
    closed: BTreeMap<u32, u32>,
    /// Clusters returned.
    len: u64,
}

impl Chain {
    /// The next cluster of the chain, `None` at its end (an end-of-chain
    /// or bad-cluster mark, as Linux reads both). `path` names the file in
    /// errors.
    fn next(&mut self, tree: &FatTree, path: &str) -> Result<Option<u32>> {
        let Some(c) = self.next else {
            return Ok(None);
        };
        let last = tree.last_cluster();
        if !(2..=last).contains(&c) {
            return Err(match self.prev {
                None => corrupt(
                    path,
                    format!("cluster {c}"),
                    format!(
                        "the first cluster named by the directory entry is outside the volume's clusters 2..={last}"
                    ),
                ),
                Some(p) if c == 0 => corrupt(
                    path,
                    format!("cluster {p}"),
                    format!(
                        "its FAT entry is 0 (free) inside the chain starting at cluster {}",
                        self.first
                    ),
                ),
                Some(p) => corrupt(
                    path,
                    format!("cluster {p}"),
                    format!(
                        "its FAT entry points to cluster {c}, outside the volume's clusters 2..={last}"
                    ),
                ),
            });
        }
        if self.contains(c) {
            return Err(corrupt(
                path,
                format!("cluster {c}"),
                format!(
                    "the chain starting at cluster {} comes back to it after {} clusters (a loop)",
                    self.first, self.len
                ),
            ));
        }
        self.push(c);
        let (v, _) = tree.table().entry(&*tree.src, c)?;
        let bad = tree.bpb.fat_type.bad_mark();
        // Bad-cluster and end-of-chain marks both end the chain; any other
        // value is checked when (if) the next cluster is needed.
        self.next = (v < bad).then_some(v);
        self.prev = Some(c);
        Ok(Some(c))
    }

    /// Whether the chain went through cluster `c` already.
    fn contains(&self, c: u32) -> bool {
        let in_run = |s: u32, end: u64| s <= c && u64::from(c) < end;
        if let Some(&(s, n)) = self.runs.last()
            && in_run(s, u64::from(s) + u64::from(n))
        {
            return true;
        }
        self.closed
            .range(..=c)
            .next_back()
            .is_some_and(|(&s, &e)| in_run(s, u64::from(e)))
    }

    /// Appends cluster `c` (not yet in the chain).
    fn push(&mut self, c: u32) {
        self.len += 1;
        if let Some((s, n)) = self.runs.last_mut() {
            if u64::from(*s) + u64::from(*n) == u64::from(c) {
                *n += 1;
                return;
            }
            self.closed.insert(*s, s.saturating_add(*n));
        }
        self.runs.push((c, 1));
    }
}

/// A run of consecutive clusters of a file.
struct Run {
    /// Index in the file of its first cluster.
    index: u64,
    /// Its first cluster.
    cluster: u32,
    /// How many clusters.
    count: u32,
}

/// An open file: its chain, followed once, as runs.
struct FatFile<'a> {
    tree: &'a FatTree,
    size: u64,
    runs: Vec<Run>,
}

impl FileRead for FatFile<'_> {
    fn volume_offset(&self) -> Option<u64> {
        self.runs
            .first()
            .map(|r| self.tree.cluster_offset(r.cluster))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let cs = self.tree.cluster_size();
        // Bounded by buf.len().
        let want = (buf.len() as u64).min(self.size - offset) as usize;
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let idx = pos / cs;
            // The runs cover every cluster below size / cs (see file_runs).
            let Some(r) = self
                .runs
                .partition_point(|r| r.index <= idx)
                .checked_sub(1)
                .and_then(|i| self.runs.get(i))
            else {
                break;
            };
            let in_run = pos - r.index * cs;
            let run_len = u64::from(r.count) * cs;
            if in_run >= run_len {
                break;
            }
            let take = ((want - done) as u64).min(run_len - in_run) as usize;
            let at = self.tree.cluster_offset(r.cluster) + in_run;
            self.tree.src.read_into(&mut buf[done..done + take], at)?;
            done += take;
        }
        Ok(done)
    }
}

/// A name and the 8.3 entry it belongs to.
struct Found {
    name: Vec<u8>,
    short: [u8; DIR_ENTRY],
    /// Byte offset of the 8.3 entry in the volume.
    at: u64,
}

/// A long name being collected, slot by slot (stored last slot first).
struct Lfn {
    /// `LDIR_Chksum` of the slots so far.
    checksum: u8,
    /// The slot number expected next (0: complete).
    next_slot: u8,
    /// The UTF-16 units, `LFN_UNITS` per slot.
    units: Vec<u16>,
}

/// Reads directory entries, possibly spread over several clusters.
struct DirParser {
    lfn: Option<Lfn>,
    found: Vec<Found>,
}

impl DirParser {
    fn new() -> Self {
        DirParser {
            lfn: None,
            found: Vec::new(),
        }
    }

    /// Parses the entries in `buf` (read at byte `at` of the volume).
    /// Returns false at the end-of-directory mark.
    fn feed(&mut self, buf: &[u8], at: u64) -> Result<bool> {
        for (i, chunk) in buf.chunks_exact(DIR_ENTRY).enumerate() {
            let mut e = [0u8; DIR_ENTRY];
            e.copy_from_slice(chunk);
            if e[0] == 0 {
                return Ok(false);
            }
            self.entry(&e, at + (i * DIR_ENTRY) as u64)?;
        }
        Ok(true)
    }

    /// One 32-byte entry at byte `at`.
    fn entry(&mut self, e: &[u8; DIR_ENTRY], at: u64) -> Result<()> {
        if e[0] == DELETED {
            self.lfn = None;
            return Ok(());
        }
        let attr = e[11];
        if attr & LONG_NAME_MASK == ATTR_LONG_NAME {
            self.long_slot(e);
            return Ok(());
        }
        let lfn = self.lfn.take();
        if attr & ATTR_VOLUME_ID != 0 || &e[..11] == b".          " || &e[..11] == b"..         " {
            return Ok(());
        }
        let long = lfn
            .filter(|l| l.next_slot == 0 && l.checksum == short_checksum(e))
            .map(|l| utf16_name(&l.units))
            .filter(|n| !n.is_empty());
        let name = long.unwrap_or_else(|| short_name(e));
        self.found.push(Found {
            name,
            short: *e,
            at,
        });
        Ok(())
    }

    /// A long-name slot: starts, continues or abandons the name being
    /// collected (Linux vfat's rules: the first stored slot has bit 0x40
    /// and numbers the slots, at most 20; the others follow in
    /// descending order with the same checksum).
    fn long_slot(&mut self, e: &[u8; DIR_ENTRY]) {
        let ord = e[0];
        let checksum = e[13];
        if ord & LFN_LAST != 0 {
            let slots = ord & !LFN_LAST;
            self.lfn = (1..=MAX_LFN_SLOTS).contains(&slots).then(|| Lfn {
                checksum,
                next_slot: slots,
                units: vec![0xFFFF; usize::from(slots) * LFN_UNITS],
            });
        }
        let Some(lfn) = self.lfn.as_mut() else {
            return;
        };
        if ord & !LFN_LAST != lfn.next_slot || checksum != lfn.checksum || lfn.next_slot == 0 {
            self.lfn = None;
            return;
        }
        lfn.next_slot -= 1;
        let base = usize::from(lfn.next_slot) * LFN_UNITS;
        let offsets = (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2));
        for (k, off) in offsets.enumerate() {
            if let Some(u) = lfn.units.get_mut(base + k) {
                *u = u16le(e, off);
            }
        }
    }
}

/// The checksum of an 8.3 name that its long-name slots carry.
fn short_checksum(e: &[u8; DIR_ENTRY]) -> u8 {
    e[..11]
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// A long name: UTF-16 units up to the first 0, as UTF-8 (unpaired
/// surrogates become U+FFFD).
fn utf16_name(units: &[u16]) -> Vec<u8> {
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    char::decode_utf16(units[..end].iter().copied())
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect::<String>()
        .into_bytes()
}

/// The 8.3 name of entry `e` as UTF-8: base and extension without their
/// padding, joined by a dot when there is an extension, code page 437,
/// 0x05 for a first byte 0xE5, NT lowercase flags applied.
fn short_name(e: &[u8; DIR_ENTRY]) -> Vec<u8> {
    let mut base = [0u8; 8];
    base.copy_from_slice(&e[..8]);
    if base[0] == KANJI_E5 {
        base[0] = DELETED;
    }
    let trim = |s: &[u8]| s.len() - s.iter().rev().take_while(|&&b| b == b' ').count();
    let base = &base[..trim(&base)];
    let ext = &e[8..11][..trim(&e[8..11])];
    let mut name = String::new();
    push_oem(&mut name, base, e[12] & NT_LOWER_BASE != 0);
    if !ext.is_empty() {
        name.push('.');
        push_oem(&mut name, ext, e[12] & NT_LOWER_EXT != 0);
    }
    name.into_bytes()
}

/// Appends code page 437 bytes, ASCII letters lowered with `lower`.
fn push_oem(out: &mut String, bytes: &[u8], lower: bool) {
    for &b in bytes {
        out.push(match b {
            0x80.. => CP437_HIGH[usize::from(b - 0x80)],
            _ if lower => char::from(b.to_ascii_lowercase()),
            _ => char::from(b),
        });
    }
}

/// A FAT date and time as seconds since the epoch, with Linux's
/// arithmetic (`fat_time_fat2unix`, the time zone taken as UTC): month 0
/// counts as January, day 0 as the 1st, months 13 to 15 add no days.
fn fat_time(time: u16, date: u16) -> Time {
    /// Days before each month (index 1..=12), 0 for the invalid 0, 13..15.
    const DAYS_BEFORE: [i64; 16] = [
        0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 0, 0, 0,
    ];
    /// 2100 - 1980: not a leap year.
    const YEAR_2100: i64 = 120;
    /// Days from 1970-01-01 to 1980-01-01.
    const DAYS_DELTA: i64 = 365 * 10 + 2;
    let year = i64::from(date >> 9);
    let month = i64::from((date >> 5) & 0xF).max(1);
    let day = i64::from(date & 0x1F).max(1) - 1;
    let mut leap_days = (year + 3) / 4;
    if year > YEAR_2100 {
        leap_days -= 1;
    }
    if year & 3 == 0 && year != YEAR_2100 && month > 2 {
        leap_days += 1;
    }
    let secs = i64::from(time & 0x1F) * 2
        + i64::from((time >> 5) & 0x3F) * 60
        + i64::from(time >> 11) * 3600
        + (year * 365 + leap_days + DAYS_BEFORE[month as usize] + day + DAYS_DELTA) * 86_400;
    Time { secs, nanos: 0 }
}

#[cfg(test)]
mod tests {
    use super::super::error::check_name;
    use crate::files::ListAll;
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::error::Error;
    use crate::source::MemSource;

    /// A decompressed test volume.
    fn image(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/fat/{name}.img.zst", env!("CARGO_MANIFEST_DIR"));
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        zstd::stream::decode_all(f).unwrap()
    }

    fn tree(img: Vec<u8>) -> FatTree {
        FatTree::open(Arc::new(MemSource::new(img, "test.img"))).unwrap()
    }

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A file's contents, read in odd-sized pieces.
    fn read_all(t: &FatTree, meta: &Meta, path: &str) -> Result<Vec<u8>> {
        let mut f = t.open(meta, path)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65_537];
        loop {
            let n = f.read_at(out.len() as u64, &mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out.len() as u64, meta.size, "{path}");
        Ok(out)
    }

    /// What walking a whole volume found.
    #[derive(Default)]
    struct Walk {
        /// "PATH/" for directories, "PATH SIZE SHA256" for files.
        lines: Vec<String>,
        files: u64,
        bytes: u64,
        ids: HashSet<u64>,
        metas: HashMap<String, Meta>,
    }

    fn walk(t: &FatTree, dir: &Meta, path: &str, w: &mut Walk) {
        for e in t.list_all(dir, path).unwrap() {
            let name = String::from_utf8(e.name.clone()).unwrap();
            let p = format!("{}/{name}", path.trim_end_matches('/'));
            assert!(
                w.ids.insert(e.meta.id),
                "{p}: duplicate id {:#x}",
                e.meta.id
            );
            assert_eq!((e.meta.nlink, e.meta.uid, e.meta.gid), (1, 0, 0));
            assert_eq!(e.meta.mtime.secs, 1_700_000_000, "{p}");
            w.metas.insert(p.clone(), e.meta.clone());
            match e.meta.kind {
                Kind::Dir => {
                    assert_eq!(e.meta.mode, 0o755);
                    w.lines.push(format!("{p}/"));
                    walk(t, &e.meta, &p, w);
                }
                Kind::File => {
                    assert_eq!(e.meta.mode, 0o644);
                    let data = read_all(t, &e.meta, &p).unwrap();
                    w.files += 1;
                    w.bytes += data.len() as u64;
                    let sum = hex(&Sha256::digest(&data));
                    w.lines.push(format!("{p} {} {sum}", data.len()));
                }
                k => panic!("{p}: kind {k:?}"),
            }
        }
    }

    /// Walks volume `name` and checks it against facts taken from an
    /// mtools extraction of the same image (`mcopy -s -m`): the number of
    /// entries and files, their total size, and the SHA-256 of the sorted
    /// listing of every path, size and content SHA-256.
    fn check_volume(name: &str, fs: &str, entries: usize, files: u64, bytes: u64, digest: &str) {
        let t = tree(image(name));
        assert_eq!(t.fs_name(), fs);
        let root = t.root().unwrap();
        assert_eq!(root.kind, Kind::Dir);
        let mut w = Walk::default();
        w.ids.insert(root.id);
        walk(&t, &root, "/", &mut w);
        assert_eq!(w.lines.len(), entries, "{name}: entries");
        assert_eq!((w.files, w.bytes), (files, bytes), "{name}: files, bytes");
        w.lines.sort();
        let mut all = String::new();
        for l in &w.lines {
            all.push_str(l);
            all.push('\n');
        }
        assert_eq!(
            hex(&Sha256::digest(all.as_bytes())),
            digest,
            "{name}: listing"
        );
        // Volume labels and deleted files are not listed.
        assert!(
            !w.metas
                .keys()
                .any(|p| p.contains("victim") || p == "/FAT16" || p == "/FLOPPY")
        );
    }

    const FULL_DIGEST: &str = "4acb7bf7b31cd3a2eada1b4506f146105a01d7015f8b874432f37fa1da55fc25";

    #[test]
    fn fat12_floppy() {
        check_volume(
            "fat12-floppy",
            "FAT12",
            9,
            8,
            18_659,
            "1478a2283d19b9932df5c72f2e75ca8c1fa1696dfd0a620449082e60b9d44d4c",
        );
    }

    #[test]
    fn fat12_small() {
        check_volume(
            "fat12-small",
            "FAT12",
            37,
            31,
            132_630,
            "746f99719fe11efed2d7759f540a9cf0505adffab72de1761f141f707c63de28",
        );
    }

    #[test]
    fn fat16_one_fat() {
        check_volume(
            "fat16-1fat-tail",
            "FAT16",
            194,
            182,
            653_123,
            "d7035f43bc139d07341630ded888f2c70d4ec6d458e2f333c2e6e22d3c3f2fb4",
        );
    }

    #[test]
    fn fat16() {
        check_volume("fat16", "FAT16", 202, 189, 776_003, FULL_DIGEST);
    }

    #[test]
    fn fat32() {
        check_volume("fat32", "FAT32", 202, 189, 776_003, FULL_DIGEST);
    }

    #[test]
    fn fat32_dirty() {
        check_volume("fat32-dirty", "FAT32", 202, 189, 776_003, FULL_DIGEST);
    }

    #[test]
    fn fat32_4k_sectors() {
        check_volume("fat32-4k-sector", "FAT32", 202, 189, 776_003, FULL_DIGEST);
    }

    /// The entry named `name` in directory `dir`.
    fn find(t: &FatTree, dir: &Meta, name: &str) -> Meta {
        t.list_all(dir, "/")
            .unwrap()
            .into_iter()
            .find(|e| e.name == name.as_bytes())
            .unwrap_or_else(|| panic!("no {name}"))
            .meta
    }

    #[test]
    fn names_times_and_contents() {
        let t = tree(image("fat16"));
        let root = t.root().unwrap();
        assert_eq!(root.size, 512 * 32);
        let names: Vec<Vec<u8>> = t
            .list_all(&root, "/")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        for n in [
            "lower.txt",
            "mixed.Case.Name.Txt",
            "café ünïcödé 名前.txt",
            "README.TXT",
        ] {
            assert!(names.contains(&n.as_bytes().to_vec()), "{n}");
        }
        let long = names
            .iter()
            .find(|n| n.starts_with(b"a-very-long"))
            .unwrap();
        assert_eq!(long.len(), 240);
        let cafe = find(&t, &root, "café ünïcödé 名前.txt");
        assert_eq!(
            hex(&Sha256::digest(read_all(&t, &cafe, "/café").unwrap())),
            "a83db052cda06b094a16633023bd20b2d75a8c7c60f8983c9ef49b5e339eb22c"
        );
        let frag_dir = find(&t, &root, "frag");
        let frag = find(&t, &frag_dir, "fragmented.bin");
        assert_eq!(frag.size, 98_304);
        assert_eq!(
            hex(&Sha256::digest(
                read_all(&t, &frag, "/frag/fragmented.bin").unwrap()
            )),
            "8486f069f5ce81d1f60b2d168a411d1db7d89c2bd8d047e1e0667572a6e693fd"
        );
        assert_eq!(frag.id >> TAG_SHIFT, TAG_FILE);
        let empty = find(&t, &root, "empty.txt");
        assert_eq!(empty.size, 0);
        assert!(read_all(&t, &empty, "/empty.txt").unwrap().is_empty());
        let many = find(&t, &root, "many");
        assert_eq!(t.list_all(&many, "/many").unwrap().len(), 120);
        assert_eq!(many.size, 16_384);
    }

    #[test]
    fn fat_times_follow_linux() {
        // 2023-11-14 22:13:20, as mtools wrote it.
        assert_eq!(fat_time(0xB1AA, 0x576E).secs, 1_700_000_000);
        assert_eq!(fat_time(0, 0x576E).secs, 1_699_920_000);
        // Date 0: 1980-01-01, as Linux shows it.
        assert_eq!(fat_time(0, 0).secs, 315_532_800);
        // 2000-03-01 (a leap year), 2107-12-31 23:59:58.
        assert_eq!(fat_time(0, (20 << 9) | (3 << 5) | 1).secs, 951_868_800);
        assert_eq!(
            fat_time(0xBF7D, (127 << 9) | (12 << 5) | 31).secs,
            4_354_819_198
        );
        let t = tree(image("fat12-floppy"));
        let readme = find(&t, &t.root().unwrap(), "README.TXT");
        assert_eq!(
            readme.atime,
            Some(Time {
                secs: 1_699_920_000,
                nanos: 0
            })
        );
    }

    /// A source counting its reads.
    struct Counting(MemSource, AtomicUsize);

    impl Source for Counting {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.read_exact_at(buf, offset)
        }
        fn name(&self) -> &str {
            self.0.name()
        }
    }

    #[test]
    fn one_source_read_per_run() {
        let src = Arc::new(Counting(
            MemSource::new(image("fat16"), "fat16"),
            AtomicUsize::new(0),
        ));
        let t = FatTree::open(src.clone()).unwrap();
        let frag = find(&t, &find(&t, &t.root().unwrap(), "frag"), "fragmented.bin");
        let mut f = t.open(&frag, "/frag/fragmented.bin").unwrap();
        src.1.store(0, Ordering::Relaxed);
        let mut buf = vec![0u8; 1 << 20];
        assert_eq!(f.read_at(0, &mut buf).unwrap(), 98_304);
        // Clusters 503-504,507-508,...,527-562: 7 runs.
        assert_eq!(src.1.load(Ordering::Relaxed), 7);
        assert_eq!(f.read_at(98_304, &mut buf).unwrap(), 0);
        assert_eq!(f.read_at(98_303, &mut buf).unwrap(), 1);
    }

    // Corrupt volumes, made from fat12-floppy: 512-byte sectors and
    // clusters, FAT 1 at byte 512, root directory at byte 9728, data
    // (cluster 2) at byte 16896. PROGRAM.BIN (7000 bytes) holds clusters
    // 10-23, its entry is at byte 9920; DOCS is cluster 27, its entry at
    // byte 9984.

    const ROOT_DIR: usize = 9728;
    const PROGRAM_ENTRY: usize = 9920;
    const DOCS_ENTRY: usize = 9984;
    const DOCS_DATA: usize = 16896 + 25 * 512;

    /// Sets FAT12 entry `n` of the first FAT to `v`.
    fn set_fat12(img: &mut [u8], n: usize, v: u16) {
        let at = 512 + n + n / 2;
        let old = u16::from_le_bytes([img[at], img[at + 1]]);
        let new = if n % 2 == 1 {
            (old & 0x000F) | (v << 4)
        } else {
            (old & 0xF000) | (v & 0xFFF)
        };
        img[at..at + 2].copy_from_slice(&new.to_le_bytes());
    }

    fn floppy_with(patch: impl FnOnce(&mut Vec<u8>)) -> FatTree {
        let mut img = image("fat12-floppy");
        assert_eq!(&img[PROGRAM_ENTRY..PROGRAM_ENTRY + 11], b"PROGRAM BIN");
        assert_eq!(&img[DOCS_ENTRY..DOCS_ENTRY + 11], b"DOCS       ");
        patch(&mut img);
        tree(img)
    }

    /// The error reading PROGRAM.BIN whole.
    fn program_error(t: &FatTree) -> String {
        let meta = find(t, &t.root().unwrap(), "PROGRAM.BIN");
        read_all(t, &meta, "/PROGRAM.BIN").unwrap_err().to_string()
    }

    #[test]
    fn cyclic_chain() {
        let t = floppy_with(|img| set_fat12(img, 15, 12));
        assert_eq!(
            program_error(&t),
            "/PROGRAM.BIN: corrupt cluster 12: the chain starting at cluster 10 comes back to it after 6 clusters (a loop)"
        );
    }

    #[test]
    fn chain_past_the_last_cluster() {
        let t = floppy_with(|img| set_fat12(img, 12, 4000));
        assert_eq!(
            program_error(&t),
            "/PROGRAM.BIN: corrupt cluster 12: its FAT entry points to cluster 4000, outside the volume's clusters 2..=2848"
        );
    }

    #[test]
    fn free_cluster_inside_a_chain() {
        let t = floppy_with(|img| set_fat12(img, 12, 0));
        assert_eq!(
            program_error(&t),
            "/PROGRAM.BIN: corrupt cluster 12: its FAT entry is 0 (free) inside the chain starting at cluster 10"
        );
    }

    #[test]
    fn size_beyond_the_chain() {
        let t = floppy_with(|img| set_fat12(img, 12, 0xFFF));
        assert_eq!(
            program_error(&t),
            "/PROGRAM.BIN: corrupt cluster 10: the chain of 3 clusters (of 512 bytes) starting there holds fewer than 7000 bytes"
        );
        // A bad-cluster mark ends the chain too (as in Linux).
        let t = floppy_with(|img| set_fat12(img, 12, 0xFF7));
        assert!(program_error(&t).contains("the chain of 3 clusters"));
    }

    #[test]
    fn first_cluster_out_of_range_or_missing() {
        let t = floppy_with(|img| {
            img[PROGRAM_ENTRY + 26..PROGRAM_ENTRY + 28].copy_from_slice(&3000u16.to_le_bytes())
        });
        assert_eq!(
            program_error(&t),
            "/PROGRAM.BIN: corrupt cluster 3000: the first cluster named by the directory entry is outside the volume's clusters 2..=2848"
        );
        let t = floppy_with(|img| img[PROGRAM_ENTRY + 26..PROGRAM_ENTRY + 28].fill(0));
        assert_eq!(
            program_error(&t),
            "/PROGRAM.BIN: corrupt directory entry at byte 9920: a file of 7000 bytes with no first cluster (the chain of 0 clusters holds fewer than 7000 bytes)"
        );
    }

    #[test]
    fn long_name_with_a_slash() {
        // The first character of slot 1 of "Long name on a floppy.txt".
        let t = floppy_with(|img| {
            assert_eq!(&img[ROOT_DIR + 0x81..ROOT_DIR + 0x83], b"L\0");
            img[ROOT_DIR + 0x81] = b'/';
        });
        let err = t.list_all(&t.root().unwrap(), "/").unwrap_err();
        match err {
            Error::Files(FileError::BadName { dir, name }) => {
                assert_eq!(
                    (dir.as_str(), name.as_str()),
                    ("/", "/ong name on a floppy.txt")
                );
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn long_name_checksum_mismatch_falls_back_to_the_short_name() {
        let t = floppy_with(|img| {
            img[ROOT_DIR + 0x60 + 13] ^= 1;
            img[ROOT_DIR + 0x80 + 13] ^= 1;
        });
        find(&t, &t.root().unwrap(), "LONGNA~1.TXT");
    }

    #[test]
    fn short_name_first_byte_0x05_is_0xe5() {
        let t = floppy_with(|img| img[ROOT_DIR + 0xE0] = 0x05);
        find(&t, &t.root().unwrap(), "σEADME.TXT");
        // A deleted entry is not listed.
        let t = floppy_with(|img| img[ROOT_DIR + 0xE0] = 0xE5);
        let n = t.list_all(&t.root().unwrap(), "/").unwrap().len();
        assert_eq!(n, 5);
    }

    #[test]
    fn directory_chain_loop() {
        let t = floppy_with(|img| {
            set_fat12(img, 27, 27);
            // No end mark in the cluster: the chain must be followed.
            for e in img[DOCS_DATA + 5 * 32..DOCS_DATA + 512].chunks_exact_mut(32) {
                e[0] = 0xE5;
            }
        });
        let docs = find(&t, &t.root().unwrap(), "DOCS");
        assert_eq!(
            t.list_all(&docs, "/DOCS").unwrap_err().to_string(),
            "/DOCS: corrupt cluster 27: the chain starting at cluster 27 comes back to it after 1 clusters (a loop)"
        );
    }

    #[test]
    fn subdirectory_without_a_cluster() {
        let t = floppy_with(|img| img[DOCS_ENTRY + 26..DOCS_ENTRY + 28].fill(0));
        let docs = find(&t, &t.root().unwrap(), "DOCS");
        assert_eq!(
            t.list_all(&docs, "/DOCS").unwrap_err().to_string(),
            "/DOCS: corrupt cluster 0: the directory's entry names no first cluster"
        );
    }

    #[test]
    fn subdirectory_pointing_to_its_parent_has_its_id() {
        // fat12-small: /src is cluster 64, /src/lib cluster 72.
        let mut img = image("fat12-small");
        let probe = tree(img.clone());
        let src_at = probe.cluster_offset(64) as usize;
        let lib_at = img[src_at..src_at + 2048]
            .chunks_exact(32)
            .position(|e| &e[..11] == b"LIB        ")
            .unwrap()
            * 32
            + src_at;
        assert_eq!(u16le(&img, lib_at + 26), 72);
        img[lib_at + 26..lib_at + 28].copy_from_slice(&64u16.to_le_bytes());
        let t = tree(img);
        let src = find(&t, &t.root().unwrap(), "src");
        let lib = find(&t, &src, "lib");
        // The walker sees the loop by id; reading it again is harmless.
        assert_eq!(lib.id, src.id);
        assert_eq!(
            t.list_all(&lib, "/src/lib").unwrap(),
            t.list_all(&src, "/src").unwrap()
        );
    }

    #[test]
    fn not_a_directory_and_no_symlinks() {
        let t = tree(image("fat12-floppy"));
        let p = find(&t, &t.root().unwrap(), "PROGRAM.BIN");
        assert!(matches!(
            t.list_all(&p, "/PROGRAM.BIN"),
            Err(Error::Files(FileError::NotADirectory { .. }))
        ));
        assert!(t.read_link(&p, "/PROGRAM.BIN").is_err());
        assert!(t.open(&t.root().unwrap(), "/").is_err());
    }

    /// Walks everything reachable, ignoring errors; a directory met
    /// twice (by id) is not entered again, as the lead's walker does.
    fn walk_any(t: &FatTree, dir: &Meta, seen: &mut HashSet<u64>) {
        let Ok(entries) = t.list_all(dir, "/x") else {
            return;
        };
        for e in entries {
            assert!(check_name("/x", &e.name).is_ok());
            if e.meta.kind == Kind::Dir {
                if seen.insert(e.meta.id) {
                    walk_any(t, &e.meta, seen);
                }
            } else if let Ok(mut f) = t.open(&e.meta, "/x") {
                let mut buf = vec![0u8; 1 << 16];
                let mut off = 0u64;
                while let Ok(n) = f.read_at(off, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    off += n as u64;
                }
            }
        }
    }

    #[test]
    fn random_corruption_never_panics_or_hangs() {
        for name in ["fat12-small", "fat16"] {
            let clean = image(name);
            let probe = tree(clean.clone());
            // The reserved area, FATs, root directory and first clusters.
            let meta_end = (probe.cluster_offset(2) as usize + 64 * 1024).min(clean.len());
            let mut rng = 0x9E37_79B9_7F4A_7C15u64;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let iters: usize = std::env::var("FSIMG_FAT_FUZZ")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(150);
            for _ in 0..iters {
                let mut img = clean.clone();
                for _ in 0..1 + next() % 40 {
                    let at = (next() as usize) % meta_end;
                    img[at] = next() as u8;
                }
                let Ok(t) = FatTree::open(Arc::new(MemSource::new(img, "fuzz"))) else {
                    continue;
                };
                let root = t.root().unwrap();
                let mut seen = HashSet::from([root.id]);
                walk_any(&t, &root, &mut seen);
            }
        }
    }
}
