//! FAT12, FAT16 and FAT32: the allocation map from the file allocation
//! table, parsed here (the fatfs crate exposes no cluster map and needs a
//! writable volume).
//!
//! Used: the reserved area (boot sector, FSInfo, backup boot sector), every
//! FAT copy, the FAT12/16 root directory region, every data cluster whose
//! entry is neither free (0) nor the bad-cluster mark, and the sectors
//! after the last whole cluster. The FATs are read in large reads and
//! decoded in memory; when the copies disagree, a cluster any copy uses is
//! copied and the first disagreement is reported.

pub mod bpb;
mod dir;
pub(crate) mod table;

use std::fmt::Write as _;

use bpb::{Bpb, FatType};

use super::{Allocation, Filesystem, FsKind, Metadata, Unclean};
use crate::allocmap::AllocationMap;
use crate::bytes::{u16le, u32le};
use crate::error::{Error, Result};
use crate::source::Source;

/// FAT entries decoded per read (FAT16/32; a FAT12 is read whole).
const ENTRIES_PER_READ: u64 = 1 << 20;
/// FSInfo signatures and fields (FAT32).
const FSI_LEAD_SIG: u32 = 0x4161_5252;
const FSI_STRUC_SIG: u32 = 0x6141_7272;
const FSI_FREE_COUNT: usize = 488;
const FSI_UNKNOWN: u32 = 0xFFFF_FFFF;

/// A corrupt or unsupported FAT volume. Offsets are bytes in the volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FatError {
    /// `BPB_BytsPerSec` is not 512, 1024, 2048 or 4096.
    #[error("fat: invalid bytes per sector {value} at byte 11 (expected 512, 1024, 2048 or 4096)")]
    BytesPerSector {
        /// The value found.
        value: u16,
    },
    /// `BPB_SecPerClus` is zero or not a power of two.
    #[error(
        "fat: invalid sectors per cluster {value} at byte 13 (expected a power of two, 1 to 128)"
    )]
    SectorsPerCluster {
        /// The value found.
        value: u8,
    },
    /// `BPB_RsvdSecCnt` is zero.
    #[error("fat: zero reserved sectors at byte 14")]
    ReservedSectors,
    /// `BPB_NumFATs` is zero.
    #[error("fat: invalid number of FATs {value} at byte 16")]
    NumFats {
        /// The value found.
        value: u8,
    },
    /// The FAT size is zero.
    #[error("fat: the FAT size at byte {offset} is zero")]
    FatSizeZero {
        /// Offset of the field read.
        offset: u64,
    },
    /// Fewer sectors than the metadata needs.
    #[error(
        "fat: the volume has {total} sectors, but its reserved area, FATs and root directory end at sector {first_data_sector}"
    )]
    TotalSectors {
        /// `BPB_TotSec16`/`BPB_TotSec32`.
        total: u32,
        /// Where the data area would start.
        first_data_sector: u64,
    },
    /// The FAT cannot hold an entry for every cluster.
    #[error("fat: the FAT has {fat_sectors} sectors but the clusters need {needed_sectors}")]
    FatTooSmall {
        /// `BPB_FATSz`.
        fat_sectors: u32,
        /// Sectors needed.
        needed_sectors: u64,
    },
    /// FAT32 with a fixed root directory.
    #[error("fat: FAT32 volume with {value} root directory entries at byte 17 (must be 0)")]
    Fat32RootEntries {
        /// `BPB_RootEntCnt`.
        value: u16,
    },
    /// FAT12/16 without a root directory.
    #[error("fat: FAT12/16 volume with no root directory entries (byte 17)")]
    NoRootDirectory,
    /// The FAT32 root directory cluster is out of range.
    #[error("fat: root directory cluster {value} at byte 44 is outside clusters 2..={last}")]
    RootCluster {
        /// `BPB_RootClus`.
        value: u32,
        /// The last cluster.
        last: u32,
    },
}

/// A FAT volume with its boot sector validated.
pub struct Fat {
    bpb: Bpb,
    /// FAT[1]'s clean-shutdown bit (FAT16/32) is clear.
    fat1_unclean: bool,
    /// Survive unreadable FAT sectors (rescue mode).
    rescue: bool,
    /// Problems met while opening (a boot sector read from the backup).
    warnings: Vec<String>,
}

impl Fat {
    /// Whether `src` starts with a FAT boot sector.
    pub fn probe(src: &dyn Source) -> Result<bool> {
        if src.size() < 512 {
            return Ok(false);
        }
        match src.read_vec(0, 512) {
            Ok(b) => Ok(Bpb::probe(&b)),
            // An unreadable boot sector may have a readable backup.
            Err(Error::Read { .. }) => Ok(backup_boot(src).is_some()),
            Err(e) => Err(e),
        }
    }

    /// Reads and validates the boot sector.
    pub fn open(src: &dyn Source) -> Result<Self> {
        if src.size() < 512 {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: 512,
                actual: src.size(),
            });
        }
        let mut warnings = Vec::new();
        let bpb = match src.read_vec(0, 512) {
            Ok(b) => Bpb::from_bytes(&b)?,
            Err(e @ Error::Read { .. }) => {
                let Some((at, bpb)) = backup_boot(src) else {
                    return Err(e);
                };
                warnings.push(format!(
                    "the boot sector is unreadable; using the FAT32 backup boot sector at byte {at}"
                ));
                bpb
            }
            Err(e) => return Err(e),
        };
        if src.size() < bpb.volume_size() {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: bpb.volume_size(),
                actual: src.size(),
            });
        }
        // The clean-shutdown bit of FAT[1], from the first FAT copy that
        // can be read.
        let (at, mask) = match bpb.fat_type {
            FatType::Fat12 => (0, 0),
            FatType::Fat16 => (2, 0x8000),
            FatType::Fat32 => (4, 0x0800_0000),
        };
        let mut fat1_unclean = false;
        if mask != 0 {
            let mut first_error = None;
            let entry = (0..bpb.num_fats).find_map(|n| {
                match src.read_vec(bpb.fat_offset(n) + at, if mask == 0x8000 { 2 } else { 4 }) {
                    Ok(v) => Some(if mask == 0x8000 {
                        u32::from(u16le(&v, 0))
                    } else {
                        u32le(&v, 0)
                    }),
                    Err(e) => {
                        first_error.get_or_insert(e);
                        None
                    }
                }
            });
            match (entry, first_error) {
                (Some(v), _) => fat1_unclean = v & mask == 0,
                (None, Some(Error::Read { offset, .. })) => warnings.push(format!(
                    "FAT[1] is unreadable in every FAT copy (first at byte {offset}): the clean-shutdown bit is not checked"
                )),
                (None, Some(e)) => return Err(e),
                (None, None) => {}
            }
        }
        Ok(Fat {
            bpb,
            fat1_unclean,
            rescue: false,
            warnings,
        })
    }

    /// The boot sector.
    pub fn bpb(&self) -> &Bpb {
        &self.bpb
    }

    /// Unit of the allocation map: the largest power of two dividing both
    /// the cluster size and the data area's offset, so that both the
    /// metadata and every cluster start on a unit.
    fn map_unit(&self) -> u32 {
        let data = self.bpb.data_offset();
        let align = 1u64 << data.trailing_zeros().min(31);
        // In range: at most the cluster size, a u32.
        align.min(u64::from(self.bpb.cluster_size())) as u32
    }
}

/// Sector of the FAT32 backup boot sector (`BPB_BkBootSec`), the only
/// value Microsoft recommends.
const BACKUP_BOOT_SECTOR: u16 = 6;

/// The FAT32 backup boot sector, if sector 6 (for any sector size) holds a
/// valid FAT32 boot sector that names itself as the backup.
fn backup_boot(src: &dyn Source) -> Option<(u64, Bpb)> {
    [512u64, 1024, 2048, 4096].into_iter().find_map(|bps| {
        let at = u64::from(BACKUP_BOOT_SECTOR) * bps;
        let b = src.read_vec(at, 512).ok()?;
        let bpb = Bpb::from_bytes(&b).ok()?;
        (bpb.fat_type == FatType::Fat32
            && u64::from(bpb.bytes_per_sector) == bps
            && u16le(&b, 0x32) == BACKUP_BOOT_SECTOR)
            .then_some((at, bpb))
    })
}

/// What scanning the FAT found.
#[derive(Default)]
struct Scan {
    used: u64,
    free: u64,
    bad: u64,
    /// First entry pointing outside the clusters: (cluster, value, byte).
    past_end: Option<(u32, u32, u64)>,
    past_end_count: u64,
    /// First entry where the copies disagree: (cluster, copy, value,
    /// value in copy 0).
    differs: Option<(u32, u32, u32, u32)>,
}

/// A buffer read sector by sector, and the byte ranges that failed.
type Salvaged = (Vec<u8>, Vec<(u64, u64)>);

/// Reads `len` bytes at `at` sector by sector; unreadable sectors are left
/// as zeros and returned as byte ranges of the buffer.
fn read_sectors(src: &dyn Source, at: u64, len: u64, sector: u32) -> Result<Salvaged> {
    let mut v = vec![0u8; len as usize];
    let mut holes = Vec::new();
    let sector = u64::from(sector);
    let mut o = 0u64;
    while o < len {
        let n = sector.min(len - o);
        match src.read_into(&mut v[o as usize..(o + n) as usize], at + o) {
            Ok(()) => {}
            Err(Error::Read { .. }) => holes.push((o, o + n)),
            Err(e) => return Err(e),
        }
        o += n;
    }
    Ok((v, holes))
}

/// Entry `n` of a FAT whose bytes `buf` start at entry `first`.
fn entry(ty: FatType, buf: &[u8], first: u64, n: u64) -> u32 {
    let i = (n - first) as usize;
    match ty {
        FatType::Fat12 => {
            // A FAT12 is read whole, so `first` is 0.
            let off = i + i / 2;
            let v = u16le(buf, off);
            u32::from(if i % 2 == 1 { v >> 4 } else { v & 0xFFF })
        }
        FatType::Fat16 => u32::from(u16le(buf, i * 2)),
        FatType::Fat32 => u32le(buf, i * 4) & 0x0FFF_FFFF,
    }
}

impl Filesystem for Fat {
    fn set_rescue(&mut self, on: bool) {
        self.rescue = on;
    }

    fn kind(&self) -> FsKind {
        match self.bpb.fat_type {
            FatType::Fat12 => FsKind::Fat12,
            FatType::Fat16 => FsKind::Fat16,
            FatType::Fat32 => FsKind::Fat32,
        }
    }

    fn cluster_size(&self) -> u32 {
        self.map_unit()
    }

    fn device_size(&self) -> u64 {
        self.bpb.volume_size()
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let b = &self.bpb;
        vec![
            ("label", b.label.clone()),
            (
                "volume id",
                format!("{:04X}-{:04X}", b.volume_id >> 16, b.volume_id & 0xFFFF),
            ),
            ("bytes per sector", b.bytes_per_sector.to_string()),
            ("sectors per cluster", b.sectors_per_cluster.to_string()),
            ("FAT cluster size", b.cluster_size().to_string()),
            ("FAT clusters", b.cluster_count.to_string()),
            ("FATs", format!("{} of {} sectors", b.num_fats, b.fat_size)),
            ("data starts at sector", b.first_data_sector.to_string()),
            (
                "state",
                self.unclean()
                    .map_or_else(|| "clean".to_string(), |u| u.problem),
            ),
        ]
    }

    fn unclean(&self) -> Option<Unclean> {
        (self.bpb.dirty || self.fat1_unclean).then(|| Unclean {
            problem: "the volume is marked dirty (it was not cleanly unmounted, or is mounted)"
                .to_string(),
            hint: "run fsck.fat -a (or chkdsk /f on Windows)",
        })
    }

    fn fsck_hint(&self) -> &'static str {
        "fsck.fat (or chkdsk /f on Windows)"
    }

    fn metadata(&self, src: &dyn Source) -> Result<Metadata> {
        let mut alloc = self.allocation(src)?;
        let walked = dir::walk(self, src)?;
        alloc.inconsistencies.extend(walked.problems);
        alloc.details.extend(walked.details);
        alloc.map = walked.map;
        Ok(Metadata {
            allocation: alloc,
            scrub: None,
        })
    }

    fn allocation(&self, src: &dyn Source) -> Result<Allocation> {
        let b = &self.bpb;
        let ty = b.fat_type;
        let mut map = AllocationMap::new(self.map_unit(), b.volume_size());
        // Reserved area, every FAT, the root directory region.
        map.mark_bytes_used(0, b.data_offset());
        // The sectors after the last whole cluster.
        let cs = u64::from(b.cluster_size());
        let clusters_end = b.data_offset() + u64::from(b.cluster_count) * cs;
        map.mark_bytes_used(clusters_end, b.volume_size() - clusters_end);

        let copies: Vec<u32> = match b.active_fat() {
            Some(n) if n < b.num_fats => vec![n],
            _ => (0..b.num_fats).collect(),
        };
        let entries = u64::from(b.cluster_count) + 2;
        let (width_num, width_den) = match ty {
            FatType::Fat12 => (3u64, 2u64),
            FatType::Fat16 => (2, 1),
            FatType::Fat32 => (4, 1),
        };
        let step = if ty == FatType::Fat12 {
            entries
        } else {
            ENTRIES_PER_READ
        };
        let mut scan = Scan::default();
        let mut unreadable: Option<u64> = None;
        let mut unreadable_sectors = 0u64;
        let mut run: Option<(u64, u64)> = None;
        let mark = |map: &mut AllocationMap, (first, n): (u64, u64)| {
            map.mark_bytes_used(b.data_offset() + (first - 2) * cs, n * cs);
        };
        let mut first = 0u64;
        while first < entries {
            let last = (first + step).min(entries);
            let from = first * width_num / width_den;
            let to = (last * width_num).div_ceil(width_den) + 1;
            let len = (to - from).min(u64::from(b.fat_size) * u64::from(b.bytes_per_sector) - from);
            let mut bufs = Vec::with_capacity(copies.len());
            // Byte ranges of each buffer that could not be read (rescue).
            let mut holes: Vec<Vec<(u64, u64)>> = Vec::with_capacity(copies.len());
            for &c in &copies {
                let at = b.fat_offset(c) + from;
                match src.read_vec(at, len as usize) {
                    Ok(v) => {
                        bufs.push(v);
                        holes.push(Vec::new());
                    }
                    Err(Error::Read { .. }) if self.rescue => {
                        let (v, h) = read_sectors(src, at, len, b.bytes_per_sector)?;
                        if let Some(&(s, _)) = h.first() {
                            unreadable.get_or_insert(at + s);
                        }
                        unreadable_sectors += h.len() as u64;
                        bufs.push(v);
                        holes.push(h);
                    }
                    Err(e) => return Err(e),
                }
            }
            let entry_len = if ty == FatType::Fat32 { 4 } else { 2 };
            for n in first.max(2)..last {
                let rel = (n - first) * width_num / width_den;
                let lost = |k: usize| {
                    holes[k]
                        .iter()
                        .any(|&(s, e)| rel < e && s < rel + entry_len)
                };
                // An entry in an unreadable sector counts as used: its
                // cluster is copied raw.
                // (Counted as used in the statistics when FAT 1's is lost.)
                let v0 = if lost(0) {
                    ty.reserved_from()
                } else {
                    entry(ty, &bufs[0], first, n)
                };
                let mut any_used = false;
                let mut known = false;
                for (k, buf) in bufs.iter().enumerate() {
                    if lost(k) {
                        continue;
                    }
                    known = true;
                    let v = if k == 0 { v0 } else { entry(ty, buf, first, n) };
                    if v != v0 && !lost(0) && scan.differs.is_none() {
                        scan.differs = Some((n as u32, copies[k], v, v0));
                    }
                    any_used |= v != 0 && v != ty.bad_mark();
                }
                // No copy could be read here: copy the cluster raw.
                any_used |= !known;
                if v0 == 0 {
                    scan.free += 1;
                } else if v0 == ty.bad_mark() {
                    scan.bad += 1;
                } else {
                    scan.used += 1;
                    let past = v0 == 1 || (v0 < ty.reserved_from() && u64::from(v0) >= entries);
                    if past {
                        scan.past_end_count += 1;
                        if scan.past_end.is_none() {
                            let byte = b.fat_offset(copies[0]) + n * width_num / width_den;
                            scan.past_end = Some((n as u32, v0, byte));
                        }
                    }
                }
                if any_used {
                    run = match run {
                        Some((s, k)) if s + k == n => Some((s, k + 1)),
                        Some(r) => {
                            mark(&mut map, r);
                            Some((n, 1))
                        }
                        None => Some((n, 1)),
                    };
                }
            }
            first = last;
        }
        if let Some(r) = run {
            mark(&mut map, r);
        }

        let mut inconsistencies = Vec::new();
        let mut warnings = self.warnings.clone();
        if let Some(at) = unreadable {
            warnings.push(format!(
                "{unreadable_sectors} FAT sector(s) are unreadable (the first at byte {at}): the clusters they describe are copied unless another FAT copy describes them"
            ));
        }
        if let Some((c, v, byte)) = scan.past_end {
            let mut m = format!(
                "the FAT entry of cluster {c} (at byte {byte}) holds {v}, which is not a cluster (the last is {})",
                b.cluster_count + 1
            );
            if scan.past_end_count > 1 {
                let _ = write!(m, ", and {} more entries like it", scan.past_end_count - 1);
            }
            inconsistencies.push(m);
        }
        if let Some((c, copy, v, v0)) = scan.differs {
            warnings.push(format!(
                "the FAT copies differ, first at cluster {c}: FAT {} says {v}, FAT {} says {v0}; clusters either copy uses are copied",
                copy + 1,
                copies[0] + 1
            ));
        }
        if ty == FatType::Fat32 && b.fsinfo_sector > 0 && b.fsinfo_sector < b.reserved_sectors {
            let at = u64::from(b.fsinfo_sector) * u64::from(b.bytes_per_sector);
            let fsi = match src.read_vec(at, 512) {
                Ok(v) => Some(v),
                // Only a hint: in rescue mode, an unreadable one is skipped.
                Err(Error::Read { .. }) if self.rescue => {
                    warnings.push(format!(
                        "the FSInfo sector (at byte {at}) is unreadable: its free count is not checked"
                    ));
                    None
                }
                Err(e) => return Err(e),
            };
            let (valid, free) = fsi.as_ref().map_or((false, 0), |fsi| {
                (
                    u32le(fsi, 0) == FSI_LEAD_SIG && u32le(fsi, 484) == FSI_STRUC_SIG,
                    u32le(fsi, FSI_FREE_COUNT),
                )
            });
            if valid && free != FSI_UNKNOWN && u64::from(free) != scan.free {
                warnings.push(format!(
                    "the FSInfo sector (at byte {}) says {free} clusters are free, the FAT says {} (a hint fsck.fat recomputes)",
                    at + FSI_FREE_COUNT as u64,
                    scan.free
                ));
            }
        }
        Ok(Allocation {
            map,
            inconsistencies,
            warnings,
            details: vec![
                (
                    "used FAT clusters",
                    format!("{} of {}", scan.used, b.cluster_count),
                ),
                ("bad FAT clusters", scan.bad.to_string()),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat12_entries_share_bytes() {
        // Entries 0..4 = 0xFF8, 0xFFF, 0x003, 0xABC: 1.5 bytes each,
        // even entries in the low 12 bits, odd ones in the high 12.
        let buf = [0xF8, 0xFF, 0xFF, 0x03, 0xC0, 0xAB, 0x00];
        let got: Vec<u32> = (0..4).map(|n| entry(FatType::Fat12, &buf, 0, n)).collect();
        assert_eq!(got, vec![0xFF8, 0xFFF, 0x003, 0xABC]);
    }

    #[test]
    fn fat32_entries_ignore_the_top_four_bits() {
        let buf = [0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x00, 0x00, 0x00];
        assert_eq!(entry(FatType::Fat32, &buf, 10, 10), 0x0FFF_FFFF);
        assert_eq!(entry(FatType::Fat32, &buf, 10, 11), 5);
    }
}
