//! The allocation map: one bit per cluster, set when the cluster is in use.
//!
//! The map covers the whole volume, `device_size` bytes, in clusters of
//! `cluster_size` bytes. When the volume is not a whole number of clusters,
//! the last cluster is partial: its byte range is clamped to `device_size`
//! (NTFS keeps its backup boot sector in such a tail).

use bitvec::prelude::*;

use crate::extent::{Extent, UsedExtents};

/// A run of used clusters: `count` clusters starting at `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Index of the first cluster of the run.
    pub first: u64,
    /// Number of clusters in the run (at least 1).
    pub count: u64,
}

/// One bit per cluster of a volume.
#[derive(Clone, Debug)]
pub struct AllocationMap {
    cluster_size: u32,
    device_size: u64,
    bits: BitVec<u64, Lsb0>,
}

impl AllocationMap {
    /// A map of a volume of `device_size` bytes with every cluster free.
    ///
    /// `cluster_size` must be non-zero; the number of clusters is
    /// `ceil(device_size / cluster_size)`.
    pub fn new(cluster_size: u32, device_size: u64) -> Self {
        assert!(cluster_size > 0, "cluster size must be non-zero");
        let clusters = device_size.div_ceil(u64::from(cluster_size));
        let len = usize::try_from(clusters).expect("cluster count fits in memory");
        AllocationMap {
            cluster_size,
            device_size,
            bits: bitvec![u64, Lsb0; 0; len],
        }
    }

    /// A map with every cluster in use (the raw filesystem).
    pub fn all_used(cluster_size: u32, device_size: u64) -> Self {
        let mut map = Self::new(cluster_size, device_size);
        map.bits.fill(true);
        map
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u32 {
        self.cluster_size
    }

    /// Volume size in bytes (the last cluster may be partial).
    pub fn device_size(&self) -> u64 {
        self.device_size
    }

    /// Number of clusters the map covers, the partial last one included.
    pub fn total_clusters(&self) -> u64 {
        self.bits.len() as u64
    }

    /// Whether cluster `c` is in use. Clusters past the end read as free.
    pub fn is_used(&self, c: u64) -> bool {
        usize::try_from(c)
            .ok()
            .and_then(|i| self.bits.get(i).map(|b| *b))
            .unwrap_or(false)
    }

    /// Marks `count` clusters from `first` as used, clamped to the map.
    pub fn mark_used(&mut self, first: u64, count: u64) {
        let len = self.bits.len() as u64;
        let start = first.min(len);
        let end = first.saturating_add(count).min(len);
        // In range: both are at most the map length, which is a usize.
        self.bits[start as usize..end as usize].fill(true);
    }

    /// Marks every cluster overlapping the byte range `[offset, offset+len)`.
    pub fn mark_bytes_used(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let cs = u64::from(self.cluster_size);
        let first = offset / cs;
        let last = offset.saturating_add(len - 1) / cs;
        self.mark_used(first, last - first + 1);
    }

    /// Clears every cluster lying wholly inside `[offset, offset+len)` (the
    /// short last cluster counts as whole when the range reaches the end).
    pub fn mark_bytes_free(&mut self, offset: u64, len: u64) {
        let cs = u64::from(self.cluster_size);
        let end = offset.saturating_add(len).min(self.device_size);
        let first = offset.div_ceil(cs);
        let last = if end == self.device_size {
            self.bits.len() as u64
        } else {
            end / cs
        };
        if first < last {
            self.bits[first as usize..last as usize].fill(false);
        }
    }

    /// Eight clusters from `first` as a byte in the on-disk bitmap layout
    /// (cluster `first + i` is bit `i`); clusters past the map read as free.
    pub fn load_byte(&self, first: u64) -> u8 {
        let len = self.bits.len() as u64;
        let start = first.min(len);
        let end = first.saturating_add(8).min(len);
        if start == end {
            return 0;
        }
        self.bits[start as usize..end as usize].load_le()
    }

    /// ORs an on-disk bitmap (bit `i` of the volume is `bytes[i/8] >> (i%8)`,
    /// the layout ext, NTFS and partclone share) into the map, starting at
    /// cluster `first`, taking `nbits` bits. Bits past the map are ignored.
    pub fn or_bitmap(&mut self, first: u64, bytes: &[u8], nbits: u64) {
        let len = self.bits.len() as u64;
        let nbits = nbits.min(bytes.len() as u64 * 8);
        if first >= len {
            return;
        }
        let end = first.saturating_add(nbits).min(len);
        let src = &bytes.view_bits::<Lsb0>()[..(end - first) as usize];
        let dst = &mut self.bits[first as usize..end as usize];
        // Whole bytes at a time: 8 bits per step instead of one.
        for (d, s) in dst.chunks_mut(8).zip(src.chunks(8)) {
            let v: u8 = s.load_le();
            if v != 0 {
                let old: u8 = d.load_le();
                d.store_le(old | v);
            }
        }
    }

    /// Number of used clusters among `count` clusters from `first`
    /// (clamped to the map).
    pub fn count_used(&self, first: u64, count: u64) -> u64 {
        let len = self.bits.len() as u64;
        let start = first.min(len) as usize;
        let end = first.saturating_add(count).min(len) as usize;
        self.bits[start..end].count_ones() as u64
    }

    /// Number of used clusters.
    pub fn used_clusters(&self) -> u64 {
        self.bits.count_ones() as u64
    }

    /// Number of used bytes (the partial last cluster counts its real size).
    pub fn used_bytes(&self) -> u64 {
        self.runs().map(|r| self.run_bytes(r).1).sum()
    }

    /// The byte range `(offset, length)` a run covers, clamped to the volume.
    pub fn run_bytes(&self, run: Run) -> (u64, u64) {
        let cs = u64::from(self.cluster_size);
        let start = run.first * cs;
        let end = ((run.first + run.count) * cs).min(self.device_size);
        (start, end - start)
    }

    /// Runs of used clusters in ascending order.
    pub fn runs(&self) -> Runs<'_> {
        self.runs_from(0)
    }

    /// Runs of used clusters at or after cluster `from`, in ascending order.
    pub fn runs_from(&self, from: u64) -> Runs<'_> {
        Runs {
            bits: &self.bits,
            pos: usize::try_from(from).unwrap_or(usize::MAX),
        }
    }
}

impl UsedExtents for AllocationMap {
    fn unit(&self) -> u32 {
        self.cluster_size
    }

    fn device_size(&self) -> u64 {
        self.device_size
    }

    fn extents(&self) -> Box<dyn Iterator<Item = Extent> + '_> {
        Box::new(self.runs().map(|r| {
            let (offset, len) = self.run_bytes(r);
            Extent { offset, len }
        }))
    }

    fn used_bytes(&self) -> u64 {
        AllocationMap::used_bytes(self)
    }

    fn used_units(&self) -> u64 {
        self.used_clusters()
    }
}

/// Iterator over the runs of an [`AllocationMap`]; word-at-a-time searches.
pub struct Runs<'a> {
    bits: &'a BitSlice<u64, Lsb0>,
    pos: usize,
}

impl Iterator for Runs<'_> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        let rest = self.bits.get(self.pos..)?;
        let start = self.pos + rest.first_one()?;
        let len = self.bits[start..]
            .first_zero()
            .unwrap_or(self.bits.len() - start);
        self.pos = start + len;
        Some(Run {
            first: start as u64,
            count: len as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        let mut m = AllocationMap::new(4096, 10 * 4096 + 512);
        assert_eq!(m.total_clusters(), 11);
        m.mark_used(0, 2);
        m.mark_used(5, 1);
        m.mark_used(9, 5); // clamped to the map
        let runs: Vec<_> = m.runs().collect();
        assert_eq!(
            runs,
            vec![
                Run { first: 0, count: 2 },
                Run { first: 5, count: 1 },
                Run { first: 9, count: 2 }
            ]
        );
        assert_eq!(m.used_clusters(), 5);
        // The last cluster is 512 bytes long.
        assert_eq!(m.used_bytes(), 4 * 4096 + 512);
        assert_eq!(m.run_bytes(runs[2]), (9 * 4096, 4096 + 512));
    }

    #[test]
    fn or_bitmap_lsb_first_and_unaligned() {
        let mut m = AllocationMap::new(1024, 64 * 1024);
        m.or_bitmap(3, &[0b1000_0001, 0xff, 0x01], 17);
        let used: Vec<u64> = (0..64).filter(|&c| m.is_used(c)).collect();
        let mut want = vec![3, 10];
        want.extend(11..19);
        want.push(19);
        assert_eq!(used, want);
        // Bits beyond nbits are ignored, bits beyond the map are dropped.
        let mut m = AllocationMap::new(1024, 4 * 1024);
        m.or_bitmap(2, &[0xff], 8);
        assert_eq!(m.used_clusters(), 2);
    }

    #[test]
    fn mark_bytes() {
        let mut m = AllocationMap::new(4096, 8 * 4096);
        m.mark_bytes_used(4095, 2);
        assert!(m.is_used(0) && m.is_used(1) && !m.is_used(2));
        m.mark_bytes_used(100, 0);
        assert_eq!(m.used_clusters(), 2);
    }
}
