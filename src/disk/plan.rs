//! The plan of a disk copy: the disk's fixed regions and every
//! partition's used clusters, as one ascending stream of disk extents on
//! sector boundaries. It holds each partition's own map (one bit per
//! cluster of that filesystem) and never a bit per disk sector, so its
//! memory is what the partitions' maps take.

use crate::allocmap::AllocationMap;
use crate::extent::{Extent, Union, UsedExtents};
use crate::fs::Scrub;
use crate::source::{Source, SourceView};

/// One partition's part of the plan.
pub struct PartPlan {
    /// Partition number.
    pub number: u32,
    /// Byte offset on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What is copied of it, in partition coordinates.
    pub map: AllocationMap,
}

/// The used bytes of a disk.
pub struct DiskPlan {
    unit: u32,
    size: u64,
    fixed: Vec<Extent>,
    parts: Vec<PartPlan>,
}

impl DiskPlan {
    /// A plan on `unit`-byte sectors of a `size`-byte disk: the `fixed`
    /// extents (ascending) and each partition's map.
    pub fn new(unit: u32, size: u64, fixed: Vec<Extent>, parts: Vec<PartPlan>) -> Self {
        DiskPlan {
            unit: unit.max(1),
            size,
            fixed,
            parts,
        }
    }

    /// The partitions' plans.
    pub fn parts(&self) -> &[PartPlan] {
        &self.parts
    }
}

impl UsedExtents for DiskPlan {
    fn unit(&self) -> u32 {
        self.unit
    }

    fn device_size(&self) -> u64 {
        self.size
    }

    fn extents(&self) -> Box<dyn Iterator<Item = Extent> + '_> {
        let u = u64::from(self.unit);
        let size = self.size;
        let mut streams: Vec<Box<dyn Iterator<Item = Extent> + '_>> = Vec::new();
        streams.push(Box::new(self.fixed.iter().map(move |e| {
            // Whole sectors, inside the disk.
            let s = e.offset / u * u;
            let t = e.end().div_ceil(u).saturating_mul(u).min(size);
            Extent {
                offset: s.min(t),
                len: t.saturating_sub(s),
            }
        })));
        for p in &self.parts {
            let (start, end) = (p.start, (p.start + p.len).min(size));
            // A cluster smaller than a sector (or a partition not on a
            // cluster boundary) is copied as the whole sectors holding it,
            // never past the partition.
            streams.push(Box::new(p.map.extents().filter_map(move |e| {
                let s = ((start + e.offset) / u * u).max(start);
                let t = (start + e.end()).div_ceil(u).saturating_mul(u).min(end);
                (s < t).then(|| Extent {
                    offset: s,
                    len: t - s,
                })
            })));
        }
        Box::new(Union::new(streams))
    }
}

/// Scrubs the metadata of every partition of a `-m` disk copy, each with
/// its own filesystem's scrubber, in partition coordinates.
pub struct DiskScrub {
    /// (start, length, the partition's bytes, its scrubber).
    pub parts: Vec<(u64, u64, SourceView, Box<dyn Scrub>)>,
}

impl Scrub for DiskScrub {
    fn scrub(&self, _disk: &dyn Source, offset: u64, data: &mut [u8]) {
        let end = offset + data.len() as u64;
        for (start, len, view, scrub) in &self.parts {
            let (s, e) = (offset.max(*start), end.min(start + len));
            if s < e {
                let piece = &mut data[(s - offset) as usize..(e - offset) as usize];
                scrub.scrub(view, s - start, piece);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(offset: u64, len: u64) -> Extent {
        Extent { offset, len }
    }

    #[test]
    fn partitions_are_shifted_rounded_to_sectors_and_merged_with_the_tables() {
        // A partition at byte 4096 with 1 KiB clusters; another at 64 KiB
        // whose 4 KiB clusters are all used.
        let mut a = AllocationMap::new(1024, 16 * 1024);
        a.mark_used(0, 1);
        a.mark_used(5, 2);
        let b = AllocationMap::all_used(4096, 8192);
        let plan = DiskPlan::new(
            4096,
            128 * 1024,
            vec![e(0, 4096), e(60 * 1024, 512)],
            vec![
                PartPlan {
                    number: 1,
                    start: 4096,
                    len: 16 * 1024,
                    map: a,
                },
                PartPlan {
                    number: 2,
                    start: 64 * 1024,
                    len: 8192,
                    map: b,
                },
            ],
        );
        let got: Vec<_> = plan.extents().collect();
        // The table sector, cluster 0 (4096..5120, rounded to its sector)
        // and clusters 5-6 (9216..11264 on disk, rounded to 8192..12288)
        // touch: one extent. The EBR-like piece at 60 KiB rounds out to its
        // sector and touches partition 2.
        assert_eq!(got, vec![e(0, 12 * 1024), e(60 * 1024, 12 * 1024)]);
        assert_eq!(plan.used_bytes(), 24 * 1024);
        assert_eq!(plan.used_units(), 6);
    }
}
