//! exFAT: the allocation map from the allocation bitmap, cross-checked
//! against the cluster chains of the directory tree.
//!
//! Used: everything before the cluster heap (the main and backup boot
//! regions, every FAT, the gaps the formatter aligned) and every cluster
//! set in the allocation bitmap (the active one on TexFAT volumes), up to
//! cluster ClusterCount + 1 inclusive.
//!
//! Not used: the sectors after the cluster heap up to VolumeLength. The
//! specification names them the Excess Space: ClusterCount is the number of
//! whole clusters that fit between ClusterHeapOffset and VolumeLength, and
//! no structure or file data of the filesystem lives past the last cluster
//! (both boot regions are at sectors 0-23, before the FATs), so a copy
//! leaves them zero (partclone.exfat's used count includes them).

pub mod bitmap;
pub mod boot;
mod dir;
pub mod error;
pub mod fat;

use bitmap::BitmapEntry;
use boot::{Boot, REGION_SECTORS};
pub use error::ExfatError;
use fat::FatTable;

use super::{Allocation, Filesystem, FsKind, Metadata, Unclean};
use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;

/// An exFAT volume with a validated boot region.
pub struct Exfat {
    boot: Boot,
    /// The volume label (from the root directory, if it could be read).
    label: Option<String>,
    /// Survive unreadable metadata (rescue mode).
    rescue: bool,
    /// Problems met while opening (the backup boot region used).
    warnings: Vec<String>,
}

/// The main boot region's bytes, or why they could not be read.
fn read_region(src: &dyn Source, at: u64, sector: u64) -> Result<Vec<u8>> {
    src.read_vec(at, (REGION_SECTORS * sector) as usize)
}

/// The backup boot region (sector 12), for the sector size it names.
fn backup_region(src: &dyn Source) -> Result<Boot> {
    let mut last = None;
    for shift in 9..=12u8 {
        let ss = 1u64 << shift;
        let at = REGION_SECTORS * ss;
        let head = match src.read_vec(at, 512) {
            Ok(v) => v,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        if !boot::probe(&head) || head[0x6C] != shift {
            continue;
        }
        let region = read_region(src, at, ss)?;
        return Ok(boot::check_region(&region, at)?);
    }
    Err(last.unwrap_or_else(|| {
        ExfatError::Signature {
            at: REGION_SECTORS * 512 + 3,
            found: "no exFAT boot sector at sector 12 for any sector size".to_string(),
        }
        .into()
    }))
}

/// The main boot region, validated.
fn main_region(src: &dyn Source) -> Result<Boot> {
    let head = src.read_vec(0, 512)?;
    let shift = head[0x6C];
    if !boot::probe(&head) || !(9..=12).contains(&shift) {
        return Ok(Boot::parse(&head, 0)?);
    }
    let region = read_region(src, 0, 1 << shift)?;
    Ok(boot::check_region(&region, 0)?)
}

impl Exfat {
    /// Whether `src` holds an exFAT volume (the main boot sector, or the
    /// backup when the main one is unreadable or not exFAT's).
    pub fn probe(src: &dyn Source) -> Result<bool> {
        if src.size() < 512 {
            return Ok(false);
        }
        match src.read_vec(0, 512) {
            Ok(b) if boot::probe(&b) => Ok(true),
            Ok(_) => Ok(false),
            Err(Error::Read { .. }) => Ok(backup_region(src).is_ok()),
            Err(e) => Err(e),
        }
    }

    /// Reads and validates the boot region, falling back on the backup
    /// region (with a warning) when the main one is damaged.
    pub fn open(src: &dyn Source) -> Result<Self> {
        if src.size() < 512 {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: 512,
                actual: src.size(),
            });
        }
        let mut warnings = Vec::new();
        let boot = match main_region(src) {
            Ok(b) => b,
            Err(main) => {
                let main = match main {
                    Error::Exfat(e) => e,
                    Error::Read { offset, len, .. } => ExfatError::Unreadable { at: offset, len },
                    e => return Err(e),
                };
                // Without an exFAT signature in sector 0 either, this is
                // not exFAT: the main region's error alone says so.
                let not_exfat = matches!(main, ExfatError::Signature { .. });
                match backup_region(src) {
                    Ok(mut b) => {
                        warnings.push(format!(
                            "the main boot region is damaged ({main}); using the backup boot region at byte {}",
                            b.at
                        ));
                        // The backup's VolumeFlags and PercentInUse are
                        // not kept up to date: the main sector's count, if
                        // it can be read at all.
                        match src.read_vec(0, 512) {
                            Ok(h) if boot::probe(&h) => b.take_state(&h),
                            _ => {
                                b.percent_in_use = 0xFF;
                                warnings.push(
                                    "the main boot sector is unreadable or not exFAT's: VolumeDirty is read from the backup, which may be out of date"
                                        .to_string(),
                                );
                            }
                        }
                        b
                    }
                    Err(Error::Exfat(_)) if not_exfat => return Err(main.into()),
                    Err(Error::Exfat(backup)) => {
                        return Err(ExfatError::BothBootRegions {
                            main: Box::new(main),
                            backup: Box::new(backup),
                        }
                        .into());
                    }
                    Err(_) => return Err(main.into()),
                }
            }
        };
        if src.size() < boot.volume_size() {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: boot.volume_size(),
                actual: src.size(),
            });
        }
        let mut table = FatTable::new(&boot);
        let label = dir::scan_root(src, &boot, &mut table, true)
            .ok()
            .and_then(|r| r.label);
        Ok(Exfat {
            boot,
            label,
            rescue: false,
            warnings,
        })
    }

    /// The boot sector in use.
    pub fn boot(&self) -> &Boot {
        &self.boot
    }

    /// Unit of the allocation map: the largest power of two dividing both
    /// the cluster size and the heap's offset, so that the metadata before
    /// the heap and every cluster start on a unit.
    fn map_unit(&self) -> u32 {
        let heap = self.boot.heap_bytes();
        let align = 1u64 << heap.trailing_zeros().min(31);
        // In range: a cluster is at most 32 MiB.
        align.min(self.boot.cluster_size()) as u32
    }

    /// The map of everything before the heap plus the clusters set in
    /// `clusters` (bit c for cluster c).
    fn device_map(&self, clusters: &AllocationMap) -> AllocationMap {
        let b = &self.boot;
        let mut map = AllocationMap::new(self.map_unit(), b.volume_size());
        map.mark_bytes_used(0, b.heap_bytes());
        let cs = b.cluster_size();
        for run in clusters.runs_from(2) {
            // Runs only cover clusters 2..=last (the walk and the bitmap
            // never set others).
            map.mark_bytes_used(b.cluster_offset(run.first as u32), run.count * cs);
        }
        map
    }

    /// The allocation bitmap and the walk of the tree, with every finding.
    fn scan(
        &self,
        src: &dyn Source,
        want_meta: bool,
    ) -> Result<(Allocation, Option<AllocationMap>)> {
        let b = &self.boot;
        let mut table = FatTable::new(b);
        let root = dir::scan_root(src, b, &mut table, self.rescue)?;
        let active = b.active_fat();
        let entry: BitmapEntry = *root
            .bitmaps
            .iter()
            .find(|e| e.fat == active || b.num_fats == 1)
            .ok_or(ExfatError::NoBitmap {
                root: b.root_cluster,
                fat: active + 1,
            })?;
        let bm = bitmap::read(src, b, &mut table, &entry, self.rescue)?;
        let walked = dir::walk(
            src,
            b,
            &mut table,
            &bm.bits,
            bm.unreadable.is_none(),
            want_meta,
            self.rescue,
        )?;

        let mut inconsistencies = Vec::new();
        let mut warnings = self.warnings.clone();
        if b.media_failure() {
            warnings.push(format!(
                "the boot sector (byte {}) has MediaFailure set: the device has reported read or write errors (--rescue copies past them)",
                b.at + 0x6A
            ));
        }
        if let Some((n, first)) = bm.past_end {
            inconsistencies.push(format!(
                "the allocation bitmap (entry at byte {}) has {n} bit(s) set past the last cluster {}, the first for cluster {first}",
                entry.at,
                b.last_cluster()
            ));
        }
        if let Some((n, at)) = bm.unreadable {
            warnings.push(format!(
                "{n} allocation bitmap sector(s) are unreadable (the first at byte {at}): the clusters they describe are copied"
            ));
        }
        inconsistencies.extend(walked.problems);
        warnings.extend(walked.warnings);
        let used = bm.bits.count_used(2, u64::from(b.cluster_count));
        let cc = u64::from(b.cluster_count);
        if b.percent_in_use != 0xFF && cc > 0 && bm.unreadable.is_none() {
            let floor = used * 100 / cc;
            let ceil = (used * 100).div_ceil(cc);
            let p = u64::from(b.percent_in_use);
            if p != floor && p != ceil {
                warnings.push(format!(
                    "the boot sector (byte {}) says {p}% of the clusters are in use, the allocation bitmap says {floor}% ({used} of {cc}; a hint the filesystem recomputes)",
                    b.at + 0x70
                ));
            }
        }
        let map = self.device_map(&bm.bits);
        Ok((
            Allocation {
                map,
                inconsistencies,
                warnings,
                details: vec![
                    ("exFAT used clusters", format!("{used} of {cc}")),
                    ("directories", walked.dirs.to_string()),
                    ("files", walked.files.to_string()),
                ],
            },
            walked.meta,
        ))
    }
}

impl Filesystem for Exfat {
    fn set_rescue(&mut self, on: bool) {
        self.rescue = on;
    }

    fn kind(&self) -> FsKind {
        FsKind::Exfat
    }

    fn cluster_size(&self) -> u32 {
        self.map_unit()
    }

    fn device_size(&self) -> u64 {
        self.boot.volume_size()
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let b = &self.boot;
        let mut v = Vec::new();
        if let Some(l) = &self.label {
            v.push(("label", l.clone()));
        }
        v.extend([
            (
                "volume serial",
                format!("{:04X}-{:04X}", b.serial >> 16, b.serial & 0xFFFF),
            ),
            (
                "revision",
                format!("{}.{:02}", b.revision >> 8, b.revision & 0xFF),
            ),
            ("bytes per sector", b.sector_size().to_string()),
            ("exFAT cluster size", b.cluster_size().to_string()),
            ("exFAT clusters", b.cluster_count.to_string()),
            ("cluster heap at sector", b.heap_offset.to_string()),
            (
                "FATs",
                if b.num_fats == 2 {
                    format!(
                        "2 of {} sectors at sector {} (TexFAT, FAT {} active)",
                        b.fat_length,
                        b.fat_offset,
                        b.active_fat() + 1
                    )
                } else {
                    format!("1 of {} sectors at sector {}", b.fat_length, b.fat_offset)
                },
            ),
            (
                "percent in use",
                if b.percent_in_use == 0xFF {
                    "not recorded".to_string()
                } else {
                    format!("{}%", b.percent_in_use)
                },
            ),
            (
                "boot region",
                if b.at == 0 {
                    "main".to_string()
                } else {
                    format!("backup (at byte {})", b.at)
                },
            ),
            (
                "state",
                match (self.unclean(), b.media_failure()) {
                    (Some(u), _) => u.problem,
                    (None, true) => "clean, media failure recorded".to_string(),
                    (None, false) => "clean".to_string(),
                },
            ),
        ]);
        v
    }

    fn unclean(&self) -> Option<Unclean> {
        self.boot.dirty().then(|| Unclean {
            problem: "the volume is marked dirty (it was not cleanly unmounted, or is mounted)"
                .to_string(),
            hint: "run fsck.exfat -y (or chkdsk /f on Windows)",
        })
    }

    fn fsck_hint(&self) -> &'static str {
        "fsck.exfat (or chkdsk /f on Windows)"
    }

    fn allocation(&self, src: &dyn Source) -> Result<Allocation> {
        Ok(self.scan(src, false)?.0)
    }

    fn metadata(&self, src: &dyn Source) -> Result<Metadata> {
        let (mut alloc, meta) = self.scan(src, true)?;
        let meta = meta.unwrap_or_else(|| AllocationMap::new(1, 0));
        alloc.map = self.device_map(&meta);
        alloc
            .details
            .push(("metadata clusters", meta.used_clusters().to_string()));
        Ok(Metadata {
            allocation: alloc,
            scrub: None,
        })
    }
}
