//! Writing a disk onto a target of another size, and one partition out of
//! a disk's stream.
//!
//! On a larger or smaller target the partitions stay where they are; what
//! changes is the GPT's end: the backup entry array and header move to the
//! target's last sectors, the primary header's alternate and last usable
//! LBA follow (FirstUsableLBA and the primary entry LBA are kept: Windows
//! rescans that reset them break images whose first usable LBA is 2048),
//! both CRCs are recomputed and a protective MBR's size is updated (a
//! hybrid MBR is kept as it is). `--grow-last` extends the partition that
//! ends last to the end of the target. Disk identifiers are never changed.

use super::DiskError;
use super::gpt;
use super::mbr;
use super::table::{Partition, Table, TableSlot};
use crate::copier::Chunk;
use crate::error::Result;
use crate::extent::Extent;
use crate::sink::Sink;

/// The last partition grown by `--grow-last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grown {
    /// Its number.
    pub number: u32,
    /// Its length before, in bytes.
    pub old_len: u64,
    /// Its length now, in bytes.
    pub new_len: u64,
}

/// How a disk's bytes change on their way to a target of `target_size`
/// bytes.
#[derive(Clone, Debug, Default)]
pub struct Retarget {
    /// Bytes of the target.
    pub target_size: u64,
    /// Sectors rewritten as they pass: (disk offset, new bytes), ascending.
    patches: Vec<(u64, Vec<u8>)>,
    /// Source ranges not written (the source's backup GPT, which moves).
    drops: Vec<Extent>,
    /// Written after everything else: the relocated backup GPT.
    appends: Vec<(u64, Vec<u8>)>,
    /// The partition `--grow-last` grew.
    pub grown: Option<Grown>,
}

/// `len` bytes at `offset` from the table's pieces.
fn piece(pieces: &[(u64, Vec<u8>)], offset: u64, len: usize) -> Option<Vec<u8>> {
    pieces.iter().find_map(|(o, b)| {
        let from = usize::try_from(offset.checked_sub(*o)?).ok()?;
        b.get(from..from.checked_add(len)?).map(<[u8]>::to_vec)
    })
}

/// The partition that ends last.
fn last_partition(table: &Table) -> Option<&Partition> {
    table.partitions.iter().max_by_key(|p| p.start + p.len)
}

impl Retarget {
    /// Plans the writing of `table` (its sectors' bytes in `pieces`) onto a
    /// target of `target_size` bytes. Refuses, before anything is written,
    /// a target on which a partition would not fit, naming it and by how
    /// many bytes it is short.
    pub fn new(
        table: &Table,
        pieces: &[(u64, Vec<u8>)],
        target_size: u64,
        grow_last: bool,
    ) -> Result<Retarget, DiskError> {
        let ss = u64::from(table.sector_size);
        let target_sectors = target_size / ss;
        let mut r = Retarget {
            target_size,
            ..Retarget::default()
        };
        let last = last_partition(table);
        if let Some(g) = &table.gpt {
            let grow = match (grow_last, last) {
                (true, Some(p)) => match p.table_slot {
                    TableSlot::Gpt { index } => Some(index + 1),
                    _ => None,
                },
                _ => None,
            };
            let new = gpt::relocate(
                &g.primary_header,
                &g.entries,
                table.sector_size,
                target_sectors,
                grow,
            )?;
            if table.kind == super::table::TableKind::Gpt {
                let mut s0 = table.sector0.clone();
                if mbr::patch_protective(&mut s0, target_sectors) {
                    r.patches.push((0, s0));
                }
            }
            r.patches.push((ss, new.primary_header));
            r.patches.push((g.entries_lba * ss, new.entries.clone()));
            // The source's backup structures lie after its last usable
            // sector; they are written anew at the target's end.
            let usable_end = (g.last_usable_lba + 1) * ss;
            r.drops = table
                .regions
                .iter()
                .filter(|&&(o, _)| o >= usable_end)
                .map(|&(offset, len)| Extent { offset, len })
                .collect();
            r.appends.push((new.backup_entries_lba * ss, new.entries));
            r.appends
                .push((new.backup_header_lba * ss, new.backup_header));
            if let (Some(_), Some(p)) = (grow, last) {
                let new_len = (new.last_usable_lba + 1) * ss - p.start;
                r.grown = Some(Grown {
                    number: p.number,
                    old_len: p.len,
                    new_len,
                });
            }
            return Ok(r);
        }
        if let Some(p) = table
            .partitions
            .iter()
            .filter(|p| p.start + p.len > target_size)
            .max_by_key(|p| p.start + p.len)
        {
            return Err(DiskError::PastTarget {
                number: p.number,
                last_lba: (p.start + p.len) / ss - 1,
                shortfall: p.start + p.len - target_size,
                target_bytes: target_size,
            });
        }
        if let (true, Some(p)) = (grow_last, last) {
            r.grow_mbr(table, pieces, p, target_sectors)?;
        }
        Ok(r)
    }

    /// Extends the MBR partition `p` (primary, or logical with its
    /// extended container) to the end of the target, as far as a 32-bit
    /// sector count reaches.
    fn grow_mbr(
        &mut self,
        table: &Table,
        pieces: &[(u64, Vec<u8>)],
        p: &Partition,
        target_sectors: u64,
    ) -> Result<(), DiskError> {
        let ss = u64::from(table.sector_size);
        let start_lba = p.start / ss;
        let sectors = target_sectors
            .saturating_sub(start_lba)
            .min(u64::from(u32::MAX));
        if sectors * ss <= p.len {
            return Ok(());
        }
        let mut s0 = table.sector0.clone();
        match p.table_slot {
            TableSlot::Mbr { slot } => mbr::set_entry_sectors(&mut s0, slot, sectors as u32),
            TableSlot::Ebr { lba, slot } => {
                let mut ebr =
                    piece(pieces, lba * ss, ss as usize).ok_or_else(|| DiskError::ReadSector {
                        lba,
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the EBR is not among the table's sectors",
                        ),
                    })?;
                // A logical partition's entry counts from its own start,
                // which is where `sectors` counts from too.
                mbr::set_entry_sectors(&mut ebr, slot, sectors as u32);
                self.patches.push((lba * ss, ebr));
                if let Some((ext_slot, ext_start, _)) = table.extended {
                    let ext = target_sectors
                        .saturating_sub(ext_start)
                        .min(u64::from(u32::MAX));
                    mbr::set_entry_sectors(&mut s0, ext_slot, ext as u32);
                }
            }
            TableSlot::Gpt { .. } => return Ok(()),
        }
        self.patches.push((0, s0));
        self.patches.sort_by_key(|(o, _)| *o);
        self.grown = Some(Grown {
            number: p.number,
            old_len: p.len,
            new_len: sectors * ss,
        });
        Ok(())
    }
}

/// A sink for a whole disk that applies a [`Retarget`]: rewritten table
/// sectors as they pass, the source's backup GPT left out, the new one
/// written last.
pub struct DiskSink<'a> {
    inner: Box<dyn Sink + 'a>,
    r: Retarget,
    applied: Vec<bool>,
    /// Whether the inner sink can write anywhere (not standard output).
    seekable: bool,
}

impl<'a> DiskSink<'a> {
    /// Wraps `inner`, which holds `r.target_size` bytes.
    pub fn new(inner: Box<dyn Sink + 'a>, r: Retarget, seekable: bool) -> Self {
        let applied = vec![false; r.patches.len()];
        DiskSink {
            inner,
            r,
            applied,
            seekable,
        }
    }
}

/// `chunk` without the bytes inside `drops`.
fn without(chunk: Chunk, drops: &[Extent]) -> Chunk {
    let mut out = Chunk::default();
    for (e, data) in chunk.pieces() {
        let mut at = e.offset;
        let mut cuts: Vec<&Extent> = drops
            .iter()
            .filter(|d| d.offset < e.end() && e.offset < d.end())
            .collect();
        cuts.sort();
        for d in cuts.into_iter().chain(std::iter::once(&Extent {
            offset: e.end(),
            len: 0,
        })) {
            let keep_end = d.offset.min(e.end());
            if keep_end > at {
                out.extents.push(Extent {
                    offset: at,
                    len: keep_end - at,
                });
                out.data.extend_from_slice(
                    &data[(at - e.offset) as usize..(keep_end - e.offset) as usize],
                );
            }
            at = at.max(d.end());
        }
    }
    out.bad = chunk.bad;
    out
}

impl Sink for DiskSink<'_> {
    fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
        let overlaps = |e: &Extent| {
            self.r
                .drops
                .iter()
                .any(|d| d.offset < e.end() && e.offset < d.end())
        };
        let mut chunk = if chunk.extents.iter().any(overlaps) {
            without(chunk, &self.r.drops)
        } else {
            chunk
        };
        let mut at = 0usize;
        for e in &chunk.extents {
            for (i, (po, pb)) in self.r.patches.iter().enumerate() {
                let pe = po + pb.len() as u64;
                let (s, t) = (e.offset.max(*po), e.end().min(pe));
                if s < t {
                    let dst = at + (s - e.offset) as usize;
                    let src = (s - po) as usize;
                    let n = (t - s) as usize;
                    chunk.data[dst..dst + n].copy_from_slice(&pb[src..src + n]);
                    if s == *po && t == pe {
                        self.applied[i] = true;
                    }
                }
            }
            at += e.len as usize;
        }
        if chunk.extents.is_empty() {
            return Ok(Some(chunk));
        }
        self.inner.write_chunk(chunk)
    }

    fn finish(&mut self) -> Result<()> {
        let mut late: Vec<(u64, Vec<u8>)> = Vec::new();
        if self.seekable {
            // Table sectors a resumed run did not pass again: written
            // where they belong all the same.
            for (i, p) in self.r.patches.iter().enumerate() {
                if !self.applied[i] {
                    late.push(p.clone());
                }
            }
        }
        late.extend(self.r.appends.iter().cloned());
        for (offset, data) in late {
            if offset + data.len() as u64 > self.r.target_size {
                continue;
            }
            let chunk = Chunk {
                extents: vec![Extent {
                    offset,
                    len: data.len() as u64,
                }],
                data,
                bad: Vec::new(),
            };
            self.inner.write_chunk(chunk)?;
        }
        self.inner.finish()
    }
}

/// A sink that keeps one partition of a disk's stream: the bytes inside
/// `start..start+len`, moved to the start of the output.
pub struct PartitionSink<'a> {
    inner: Box<dyn Sink + 'a>,
    start: u64,
    len: u64,
}

impl<'a> PartitionSink<'a> {
    /// Keeps `len` bytes from disk byte `start`.
    pub fn new(inner: Box<dyn Sink + 'a>, start: u64, len: u64) -> Self {
        PartitionSink { inner, start, len }
    }
}

/// `e` clipped to `start..end` and moved by `-start`.
fn clip(e: Extent, start: u64, end: u64) -> Option<(Extent, u64)> {
    let (s, t) = (e.offset.max(start), e.end().min(end));
    // `then`, not `then_some`: the lengths exist only when s < t.
    (s < t).then(|| {
        (
            Extent {
                offset: s - start,
                len: t - s,
            },
            s - e.offset,
        )
    })
}

impl Sink for PartitionSink<'_> {
    fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
        let end = self.start + self.len;
        if chunk
            .extents
            .iter()
            .all(|e| e.end() <= self.start || e.offset >= end)
        {
            return Ok(Some(chunk));
        }
        let mut out = Chunk::default();
        for (e, data) in chunk.pieces() {
            if let Some((c, skip)) = clip(e, self.start, end) {
                out.extents.push(c);
                out.data
                    .extend_from_slice(&data[skip as usize..(skip + c.len) as usize]);
            }
        }
        out.bad = chunk
            .bad
            .iter()
            .filter_map(|&b| clip(b, self.start, end).map(|(c, _)| c))
            .collect();
        self.inner.write_chunk(out)?;
        Ok(Some(chunk))
    }

    fn finish(&mut self) -> Result<()> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Written = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

    struct Collect(Written);
    impl Sink for Collect {
        fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
            for (e, d) in chunk.pieces() {
                self.0.lock().unwrap().push((e.offset, d.to_vec()));
            }
            Ok(Some(chunk))
        }
        fn finish(&mut self) -> Result<()> {
            Ok(())
        }
    }

    fn chunk(pieces: &[(u64, &[u8])]) -> Chunk {
        let mut c = Chunk::default();
        for (o, d) in pieces {
            c.extents.push(Extent {
                offset: *o,
                len: d.len() as u64,
            });
            c.data.extend_from_slice(d);
        }
        c
    }

    #[test]
    fn disk_sink_patches_drops_and_appends() {
        let r = Retarget {
            target_size: 100,
            patches: vec![(2, b"PP".to_vec()), (50, b"LATE".to_vec())],
            drops: vec![Extent { offset: 10, len: 4 }],
            appends: vec![(90, b"BACKUP".to_vec())],
            grown: None,
        };
        let w = Written::default();
        let mut sink = DiskSink::new(Box::new(Collect(Arc::clone(&w))), r, true);
        sink.write_chunk(chunk(&[(0, b"abcdefgh"), (9, b"0123456")]))
            .unwrap();
        sink.finish().unwrap();
        assert_eq!(
            *w.lock().unwrap(),
            vec![
                (0, b"abPPefgh".to_vec()),
                (9, b"0".to_vec()),
                (14, b"56".to_vec()),
                (50, b"LATE".to_vec()),
                (90, b"BACKUP".to_vec()),
            ]
        );
    }

    #[test]
    fn without_cuts_dropped_ranges() {
        let c = without(
            chunk(&[(0, b"abcdefgh"), (9, b"0123456")]),
            &[Extent { offset: 6, len: 5 }],
        );
        let got: Vec<(u64, Vec<u8>)> = c.pieces().map(|(e, d)| (e.offset, d.to_vec())).collect();
        assert_eq!(got, vec![(0, b"abcdef".to_vec()), (11, b"23456".to_vec())]);
    }

    #[test]
    fn partition_sink_clips_and_shifts() {
        let w = Written::default();
        let mut s = PartitionSink::new(Box::new(Collect(Arc::clone(&w))), 4, 6);
        s.write_chunk(chunk(&[(0, b"abcdef"), (8, b"ghijkl")]))
            .unwrap();
        s.write_chunk(chunk(&[(20, b"zz")])).unwrap();
        assert_eq!(
            *w.lock().unwrap(),
            vec![(0, b"ef".to_vec()), (4, b"gh".to_vec())]
        );
    }
}
