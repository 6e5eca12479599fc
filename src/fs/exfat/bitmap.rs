//! The allocation bitmap: one bit per cluster of the heap (bit n, least
//! significant first, is cluster n + 2), stored in clusters of its own
//! found through its directory entry (type 0x81) in the root directory.
//! A TexFAT volume has two, one per FAT; the active one counts.

use std::collections::HashSet;

use super::boot::Boot;
use super::error::ExfatError;
use super::fat::{BAD, END, FatTable};
use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;

/// An allocation bitmap's directory entry.
#[derive(Clone, Copy, Debug)]
pub struct BitmapEntry {
    /// Byte offset of the entry.
    pub at: u64,
    /// Which FAT it belongs to (BitmapFlags bit 0).
    pub fat: u8,
    /// FirstCluster.
    pub first: u32,
    /// DataLength, in bytes.
    pub length: u64,
}

/// The allocation bitmap, as read.
pub struct Bitmap {
    /// Bit c set when cluster c (2..=last) is allocated; bits 0 and 1 are
    /// never set.
    pub bits: AllocationMap,
    /// Set bits past the last cluster: (count, first bit's cluster number).
    pub past_end: Option<(u64, u64)>,
    /// Unreadable bitmap sectors (rescue): (count, byte of the first).
    pub unreadable: Option<(u64, u64)>,
    /// The clusters holding the bitmap.
    pub clusters: Vec<u32>,
}

/// Reads the bitmap `e` describes, following its FAT chain.
pub fn read(
    src: &dyn Source,
    boot: &Boot,
    fat: &mut FatTable,
    e: &BitmapEntry,
    rescue: bool,
) -> Result<Bitmap> {
    let clusters = u64::from(boot.cluster_count);
    let needed = clusters.div_ceil(8);
    if e.length < needed {
        return Err(ExfatError::BitmapLength {
            at: e.at,
            length: e.length,
            clusters,
            needed,
        }
        .into());
    }
    let cs = boot.cluster_size();
    let last = boot.last_cluster();
    // Only the bytes that describe clusters (and the rest of the last
    // one's cluster, for the bits past the end) are read: a DataLength
    // beyond that is not trusted to size a read.
    let n = needed.div_ceil(cs).max(1);
    let chain = chain(src, boot, fat, e, n)?;
    let mut bits = AllocationMap::new(1, last + 1);
    let mut past = 0u64;
    let mut first_past = None;
    let mut unreadable = None::<(u64, u64)>;
    for (i, &c) in chain.iter().enumerate() {
        let at = boot.cluster_offset(c);
        // Byte ranges of `buf` that could not be read (rescue).
        let mut lost: Vec<(u64, u64)> = Vec::new();
        let buf = match src.read_vec(at, cs as usize) {
            Ok(v) => v,
            Err(Error::Read { .. }) if rescue => {
                // Sector by sector; an unreadable sector's clusters all
                // count as allocated.
                let ss = boot.sector_size();
                let mut v = vec![0u8; cs as usize];
                for s in 0..cs / ss {
                    let r = &mut v[(s * ss) as usize..((s + 1) * ss) as usize];
                    match src.read_into(r, at + s * ss) {
                        Ok(()) => {}
                        Err(Error::Read { .. }) => {
                            r.fill(0xFF);
                            lost.push((s * ss, (s + 1) * ss));
                            let u = unreadable.get_or_insert((0, at + s * ss));
                            u.0 += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                v
            }
            Err(e) => return Err(e),
        };
        let byte0 = i as u64 * cs;
        // Bits for clusters 2..=last.
        let first_cluster = 2 + byte0 * 8;
        bits.or_bitmap(
            first_cluster,
            &buf,
            (cs * 8).min((clusters + 2).saturating_sub(first_cluster)),
        );
        // Bits past the last cluster, within DataLength (the rest of the
        // bitmap's last cluster is slack, not bitmap), in what was read.
        for (j, &b) in buf.iter().enumerate() {
            let pos = byte0 + j as u64;
            let bit0 = pos * 8;
            if bit0 + 8 <= clusters
                || b == 0
                || pos >= e.length
                || lost.iter().any(|&(s, t)| (s..t).contains(&(j as u64)))
            {
                continue;
            }
            let skip = clusters.saturating_sub(bit0).min(8) as u32;
            let extra = if skip >= 8 { 0 } else { b >> skip };
            if extra != 0 {
                past += u64::from(extra.count_ones());
                first_past.get_or_insert(bit0 + u64::from(skip + extra.trailing_zeros()) + 2);
            }
        }
    }
    Ok(Bitmap {
        bits,
        past_end: first_past.map(|f| (past, f)),
        unreadable,
        clusters: chain,
    })
}

/// The first `n` clusters of the bitmap's FAT chain.
fn chain(
    src: &dyn Source,
    boot: &Boot,
    fat: &mut FatTable,
    e: &BitmapEntry,
    n: u64,
) -> Result<Vec<u32>> {
    let last = boot.last_cluster();
    let broken =
        |problem: String| -> Error { ExfatError::BitmapChain { at: e.at, problem }.into() };
    let mut out: Vec<u32> = Vec::new();
    let mut seen = HashSet::new();
    let mut c = e.first;
    loop {
        if c < 2 || u64::from(c) > last {
            return Err(broken(format!(
                "cluster {c} is outside clusters 2..={last} (after {} clusters)",
                out.len()
            )));
        }
        if !seen.insert(c) {
            return Err(broken(format!("cluster {c} appears twice: a loop")));
        }
        out.push(c);
        if out.len() as u64 == n {
            return Ok(out);
        }
        let next = fat.entry(src, c)?;
        if next == END || next == BAD || next == 0 {
            return Err(broken(format!(
                "the FAT entry of cluster {c} (at byte {}) holds 0x{next:08x} after {} of the {n} clusters the bitmap needs",
                fat.entry_offset(c),
                out.len()
            )));
        }
        c = next;
    }
}
