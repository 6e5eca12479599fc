//! A disk opened for copying: its table, the bytes of the table's sectors,
//! and each partition as a volume of its own (a [`SourceView`]), with what
//! fsimg copies of it: the used clusters of a filesystem it knows, the
//! header page of Linux swap, or every byte of anything else.

use std::sync::Arc;

use super::DiskError;
use super::table::{self, Partition, Table};
use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::fs::{self, Filesystem, FsChoice};
use crate::source::{Source, SourceView};

/// Linux swap's signatures, in the last 10 bytes of its first page.
const SWAP_MAGICS: [&[u8; 10]; 2] = [b"SWAPSPACE2", b"SWAP-SPACE"];
/// Page sizes swap headers are written for (x86 and most ARM: 4 KiB).
const SWAP_PAGES: [u64; 4] = [4096, 8192, 16384, 65536];

/// What fsimg copies of a partition.
pub enum Content {
    /// A filesystem fsimg knows: its used clusters.
    Fs(Box<dyn Filesystem>),
    /// Linux swap: its header page (UUID, label, bad-page list), which
    /// keeps the partition a valid swap area; the rest is never read back.
    Swap {
        /// Bytes of the header page.
        page: u64,
    },
    /// Anything else (LUKS, LVM, BIOS boot, unknown): every byte.
    Raw,
}

impl Content {
    /// The name `info` and the summaries show.
    pub fn name(&self) -> &'static str {
        match self {
            Content::Fs(fs) => fs.kind().name(),
            Content::Swap { .. } => "swap",
            Content::Raw => "raw",
        }
    }
}

/// One partition of an opened disk.
pub struct DiskPart {
    /// Its entry in the table.
    pub part: Partition,
    /// Its bytes, as a volume.
    pub view: SourceView,
    /// What is copied of it.
    pub content: Content,
}

/// A disk with its table read and its partitions recognised.
pub struct Disk {
    /// The whole disk.
    pub src: Arc<dyn Source>,
    /// Its partition table.
    pub table: Table,
    /// The bytes of the table's sectors (sector 0, every EBR, both GPT
    /// headers and entry arrays): (disk byte offset, bytes), ascending.
    pub pieces: Vec<(u64, Vec<u8>)>,
    /// Its partitions, in table order.
    pub parts: Vec<DiskPart>,
}

/// Reads `len` bytes at `offset` of `src` for the table parser.
fn read_for_table(src: &dyn Source, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
    src.read_vec(offset, len).map_err(|e| {
        let source = match e {
            Error::Read { source, .. } => source,
            other => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, other.to_string()),
        };
        DiskError::ReadSector {
            lba: offset / 512,
            source,
        }
    })
}

/// `len` bytes at `offset` of `src`, one sector at a time, with zeros for
/// the sectors that cannot be read.
fn read_sectors_or_zeros(src: &dyn Source, offset: u64, len: usize, sector: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, chunk) in out.chunks_mut(sector.max(1)).enumerate() {
        if let Ok(b) = src.read_vec(offset + (i * sector) as u64, chunk.len()) {
            chunk.copy_from_slice(&b);
        }
    }
    out
}

/// Whether `src` starts with a GPT header (at byte 512 or, on a disk of
/// 4096-byte sectors, at byte 4096).
fn has_gpt_signature(src: &dyn Source) -> bool {
    [512u64, 4096].iter().any(|&at| {
        src.read_vec(at, 8)
            .is_ok_and(|b| b == super::gpt::GPT_SIGNATURE[..])
    })
}

/// The partition table of `src`, if it is a partitioned disk and not a
/// volume. A GPT makes it a disk; otherwise a filesystem fsimg recognises
/// at sector 0 (a "superfloppy" FAT stick, an NTFS partition image) makes
/// it a volume, whatever its boot sector's table area holds; otherwise an
/// MBR with a partition in it makes it a disk. `sector_size`: the
/// device's logical sector size, or `--sector-size`; `None` for a file.
pub fn detect(src: &dyn Source, sector_size: Option<u32>) -> Result<Option<Table>> {
    if !has_gpt_signature(src) && fs::probe_any(src)? {
        return Ok(None);
    }
    read(src, sector_size)
}

/// Reads the partition table of `src`, which the user says is a disk
/// (`--partition`): no filesystem probe first.
pub fn read(src: &dyn Source, sector_size: Option<u32>) -> Result<Option<Table>> {
    let mut read = |offset: u64, len: usize| read_for_table(src, offset, len);
    table::read_table(&mut read, src.size(), sector_size).map_err(|e| Error::Table {
        name: src.name().to_string(),
        source: e,
    })
}

/// The sector size of a swap header page in `view`, if it holds one.
fn swap_page(view: &dyn Source) -> Option<u64> {
    SWAP_PAGES.iter().copied().find(|&page| {
        page <= view.size()
            && view
                .read_vec(page - 10, 10)
                .is_ok_and(|b| SWAP_MAGICS.iter().any(|m| b == m[..]))
    })
}

impl Disk {
    /// Opens every partition of `table` on `src` (named `name`): each one's
    /// filesystem is recognised, and, in `rescue`, told to survive
    /// unreadable metadata. A table piece that cannot be read is an error
    /// (it was read once already, to parse the table), except in `rescue`:
    /// there its unreadable sectors read as zeros (the table was parsed
    /// from the other GPT copy, which the copy writes in their place).
    pub fn open(src: Arc<dyn Source>, table: Table, rescue: bool) -> Result<Disk> {
        let mut pieces = Vec::new();
        for &(offset, len) in &table.regions {
            let bytes = match src.read_vec(offset, len as usize) {
                Ok(b) => b,
                Err(_) if rescue => read_sectors_or_zeros(
                    src.as_ref(),
                    offset,
                    len as usize,
                    table.sector_size as usize,
                ),
                Err(e) => return Err(e),
            };
            pieces.push((offset, bytes));
        }
        let mut parts = Vec::new();
        for p in &table.partitions {
            let view = SourceView::new(
                Arc::clone(&src),
                p.start,
                p.len,
                format!("{} partition {}", src.name(), p.number),
            );
            let content = open_content(&view, rescue)?;
            parts.push(DiskPart {
                part: p.clone(),
                view,
                content,
            });
        }
        Ok(Disk {
            src,
            table,
            pieces,
            parts,
        })
    }

    /// The disk's own regions a copy always holds: everything before the
    /// first partition (sector 0, the primary GPT, and the boot code that
    /// lives in the gap: GRUB's core.img, U-Boot SPL, Rockchip loaders),
    /// every EBR and the backup GPT. Ascending, may overlap.
    pub fn fixed_extents(&self) -> Vec<Extent> {
        let first = self
            .table
            .partitions
            .iter()
            .map(|p| p.start)
            .min()
            .unwrap_or_else(|| {
                self.table
                    .gpt
                    .as_ref()
                    .map_or(u64::from(self.table.sector_size), |g| {
                        g.first_usable_lba * u64::from(self.table.sector_size)
                    })
            })
            .min(self.table.disk_size);
        let mut out = vec![Extent {
            offset: 0,
            len: first,
        }];
        out.extend(
            self.table
                .regions
                .iter()
                .map(|&(offset, len)| Extent { offset, len }),
        );
        out.retain(|e| e.len > 0);
        out.sort();
        // Sector 0 is both in the boot gap and a table region: merge.
        let mut merged: Vec<Extent> = Vec::with_capacity(out.len());
        for e in out {
            match merged.last_mut() {
                Some(last) if e.offset <= last.offset + last.len => {
                    last.len = last.len.max(e.offset + e.len - last.offset);
                }
                _ => merged.push(e),
            }
        }
        merged
    }

    /// Bytes outside every partition after the first one starts (not
    /// copied), less the table's own sectors there.
    pub fn unpartitioned_bytes(&self) -> u64 {
        let mut ranges: Vec<(u64, u64)> = self
            .table
            .partitions
            .iter()
            .map(|p| (p.start, p.start + p.len))
            .collect();
        ranges.sort();
        let Some(&(first, _)) = ranges.first() else {
            return 0;
        };
        let mut covered = 0u64;
        let mut end = first;
        for (s, e) in ranges {
            if e > end {
                covered += e - s.max(end);
                end = e;
            }
        }
        let tables_after: u64 = self
            .table
            .regions
            .iter()
            .filter(|&&(o, _)| o >= first)
            .map(|&(_, l)| l)
            .sum();
        (self.table.disk_size - first).saturating_sub(covered + tables_after)
    }
}

/// Recognises what a partition holds.
fn open_content(view: &SourceView, rescue: bool) -> Result<Content> {
    if fs::probe_any(view).map_err(|e| in_partition(view, e))? {
        let mut fs = fs::open(view, FsChoice::Auto).map_err(|e| in_partition(view, e))?;
        fs.set_rescue(rescue);
        return Ok(Content::Fs(fs));
    }
    if let Some(page) = swap_page(view) {
        return Ok(Content::Swap { page });
    }
    Ok(Content::Raw)
}

/// Wraps an error from a partition's filesystem module with the
/// partition's name (their messages name offsets, not the volume).
pub fn in_partition(view: &SourceView, e: Error) -> Error {
    match e {
        e @ (Error::Ext(_) | Error::Fat(_) | Error::Ntfs(_)) => Error::Partition {
            name: view.name().to_string(),
            source: Box::new(e),
        },
        e => e,
    }
}
