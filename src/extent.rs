//! Byte ranges of a volume or disk, and the plans of used bytes the copier
//! reads: the data types every layer shares (the copier, the image formats,
//! the foreign readers, the disk layer), kept below all of them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A contiguous piece of the volume: `len` bytes at byte `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    /// Byte offset in the volume.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Appends `e` to ascending `ranges`, merging it with the last one if they
/// touch.
pub fn push_range(ranges: &mut Vec<Extent>, e: Extent) {
    match ranges.last_mut() {
        Some(last) if last.end() == e.offset => last.len += e.len,
        _ => ranges.push(e),
    }
}

/// The used bytes of a volume or a disk: what a copy reads.
///
/// Extents come in ascending order and never touch or overlap; each starts
/// and ends on a multiple of [`UsedExtents::unit`], except that the last
/// one may end at [`UsedExtents::device_size`]. A volume's allocation map
/// is one; a disk's plan (tables, boot gap and every partition's map) is
/// another, built from the partitions' maps without a bit per disk sector,
/// so its memory does not grow with the disk.
pub trait UsedExtents: Sync {
    /// The granularity of the extents, in bytes (the cluster size of a
    /// volume, the logical sector size of a disk).
    fn unit(&self) -> u32;

    /// Bytes the volume or disk spans.
    fn device_size(&self) -> u64;

    /// The extents, in ascending order.
    fn extents(&self) -> Box<dyn Iterator<Item = Extent> + '_>;

    /// Bytes the extents hold.
    fn used_bytes(&self) -> u64 {
        self.extents().map(|e| e.len).sum()
    }

    /// Units the extents touch (a short last unit counts as one).
    fn used_units(&self) -> u64 {
        let u = u64::from(self.unit());
        self.extents()
            .map(|e| e.end().div_ceil(u) - e.offset / u)
            .sum()
    }

    /// Units the device spans (a short last unit counts as one).
    fn total_units(&self) -> u64 {
        self.device_size().div_ceil(u64::from(self.unit()))
    }
}

/// A list of extents as a plan (retries of a rescue, tests).
#[derive(Clone, Debug)]
pub struct ExtentList {
    unit: u32,
    device_size: u64,
    extents: Vec<Extent>,
}

impl ExtentList {
    /// The units overlapping any of `ranges` (in any order, overlapping or
    /// not), clamped to `device_size`.
    pub fn covering(unit: u32, device_size: u64, ranges: &[Extent]) -> Self {
        let u = u64::from(unit.max(1));
        let mut sorted: Vec<Extent> = ranges
            .iter()
            .filter(|e| e.len > 0 && e.offset < device_size)
            .map(|e| {
                let start = e.offset / u * u;
                let end = e.end().div_ceil(u).saturating_mul(u).min(device_size);
                Extent {
                    offset: start,
                    len: end - start,
                }
            })
            .collect();
        sorted.sort();
        let mut extents: Vec<Extent> = Vec::with_capacity(sorted.len());
        for e in sorted {
            match extents.last_mut() {
                Some(last) if e.offset <= last.end() => {
                    let end = last.end().max(e.end());
                    last.len = end - last.offset;
                }
                _ => extents.push(e),
            }
        }
        ExtentList {
            unit: unit.max(1),
            device_size,
            extents,
        }
    }
}

impl UsedExtents for ExtentList {
    fn unit(&self) -> u32 {
        self.unit
    }

    fn device_size(&self) -> u64 {
        self.device_size
    }

    fn extents(&self) -> Box<dyn Iterator<Item = Extent> + '_> {
        Box::new(self.extents.iter().copied())
    }
}

/// A plan less some ranges: each range removes the whole units lying inside
/// it (a unit only partly inside stays in the plan). Serves a resumed
/// rescue, which skips what its mapfile records as done.
pub struct Minus<'a> {
    base: &'a dyn UsedExtents,
    holes: Vec<Extent>,
}

impl<'a> Minus<'a> {
    /// `base` without the units inside `holes` (any order, may overlap).
    pub fn new(base: &'a dyn UsedExtents, holes: &[Extent]) -> Self {
        let u = u64::from(base.unit().max(1));
        let size = base.device_size();
        let mut inner: Vec<Extent> = holes
            .iter()
            .filter_map(|h| {
                let start = h.offset.div_ceil(u).saturating_mul(u);
                let end = h.end().min(size);
                // The short last unit counts as whole when the hole reaches
                // the end of the device.
                let end = if end == size { end } else { end / u * u };
                (start < end).then(|| Extent {
                    offset: start,
                    len: end - start,
                })
            })
            .collect();
        inner.sort();
        let mut merged: Vec<Extent> = Vec::with_capacity(inner.len());
        for h in inner {
            match merged.last_mut() {
                Some(last) if h.offset <= last.end() => {
                    let end = last.end().max(h.end());
                    last.len = end - last.offset;
                }
                _ => merged.push(h),
            }
        }
        Minus {
            base,
            holes: merged,
        }
    }
}

impl UsedExtents for Minus<'_> {
    fn unit(&self) -> u32 {
        self.base.unit()
    }

    fn device_size(&self) -> u64 {
        self.base.device_size()
    }

    fn extents(&self) -> Box<dyn Iterator<Item = Extent> + '_> {
        let holes = &self.holes;
        let mut h = 0usize;
        Box::new(self.base.extents().flat_map(move |e| {
            let mut out = Vec::new();
            let mut at = e.offset;
            while h < holes.len() && holes[h].end() <= at {
                h += 1;
            }
            let mut k = h;
            while at < e.end() {
                match holes.get(k) {
                    Some(hole) if hole.offset < e.end() => {
                        if hole.offset > at {
                            out.push(Extent {
                                offset: at,
                                len: hole.offset - at,
                            });
                        }
                        at = at.max(hole.end());
                        if hole.end() <= e.end() {
                            k += 1;
                        }
                    }
                    _ => {
                        out.push(Extent {
                            offset: at,
                            len: e.end() - at,
                        });
                        at = e.end();
                    }
                }
            }
            out
        }))
    }
}

/// The union of several ascending extent streams, merged into one
/// ascending stream of non-touching extents. Streams may overlap one
/// another (an EBR inside the logical partition before it).
pub struct Union<'a> {
    heap: BinaryHeap<Reverse<(Extent, usize)>>,
    streams: Vec<Box<dyn Iterator<Item = Extent> + 'a>>,
}

impl<'a> Union<'a> {
    /// Merges `streams`.
    pub fn new(mut streams: Vec<Box<dyn Iterator<Item = Extent> + 'a>>) -> Self {
        let mut heap = BinaryHeap::new();
        for (i, s) in streams.iter_mut().enumerate() {
            if let Some(e) = s.next() {
                heap.push(Reverse((e, i)));
            }
        }
        Union { heap, streams }
    }

    fn pop(&mut self) -> Option<Extent> {
        let Reverse((e, i)) = self.heap.pop()?;
        if let Some(next) = self.streams[i].next() {
            self.heap.push(Reverse((next, i)));
        }
        Some(e)
    }
}

impl Iterator for Union<'_> {
    type Item = Extent;

    fn next(&mut self) -> Option<Extent> {
        let mut cur = loop {
            let e = self.pop()?;
            if e.len > 0 {
                break e;
            }
        };
        while let Some(Reverse((e, _))) = self.heap.peek() {
            if e.offset > cur.end() {
                break;
            }
            let e = self.pop().expect("peeked");
            let end = cur.end().max(e.end());
            cur.len = end - cur.offset;
        }
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(offset: u64, len: u64) -> Extent {
        Extent { offset, len }
    }

    #[test]
    fn covering_rounds_out_and_merges() {
        let l = ExtentList::covering(
            512,
            10_000,
            &[e(600, 10), e(0, 1), e(1000, 100), e(9990, 50)],
        );
        let got: Vec<_> = l.extents().collect();
        assert_eq!(got, vec![e(0, 1536), e(9728, 272)]);
        assert_eq!(l.used_units(), 4);
    }

    #[test]
    fn minus_removes_whole_units_inside() {
        let base = ExtentList::covering(100, 1050, &[e(0, 500), e(700, 350)]);
        // 150..420 removes units 200..400; 690..820 removes 700..800; the
        // hole reaching the end removes the short last unit.
        let m = Minus::new(&base, &[e(150, 270), e(690, 130), e(1000, 50)]);
        let got: Vec<_> = m.extents().collect();
        assert_eq!(got, vec![e(0, 200), e(400, 100), e(800, 200)]);
    }

    #[test]
    fn minus_with_a_hole_spanning_extents() {
        let base = ExtentList::covering(1, 100, &[e(0, 10), e(20, 10), e(40, 10)]);
        let m = Minus::new(&base, &[e(5, 40)]);
        let got: Vec<_> = m.extents().collect();
        assert_eq!(got, vec![e(0, 5), e(45, 5)]);
    }

    #[test]
    fn union_merges_overlapping_and_touching_streams() {
        let a: Vec<Extent> = vec![e(0, 10), e(50, 10), e(100, 5)];
        let b: Vec<Extent> = vec![e(10, 5), e(55, 20), e(200, 1)];
        let c: Vec<Extent> = vec![e(30, 0), e(103, 10)];
        let u = Union::new(vec![
            Box::new(a.into_iter()),
            Box::new(b.into_iter()),
            Box::new(c.into_iter()),
        ]);
        let got: Vec<_> = u.collect();
        assert_eq!(got, vec![e(0, 15), e(50, 25), e(100, 13), e(200, 1)]);
    }
}
