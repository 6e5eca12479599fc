//! Metadata-only copies (`-m`) of FAT volumes: the directory tree, walked
//! from the root through the FAT.
//!
//! Kept: the reserved area (boot sector, FSInfo, backup boot sector),
//! every FAT copy, the FAT12/16 root directory region, and the cluster
//! chain of every directory reachable from the root (FAT32: the root's
//! chain too). File clusters are not kept, nor the sectors after the last
//! whole cluster (no part of the filesystem). Nothing needs scrubbing:
//! FAT keeps no file data in its metadata.

use std::collections::HashSet;

use super::Fat;
use super::bpb::FatType;
use super::table::FatTable;
use crate::allocmap::AllocationMap;
use crate::bytes::u16le;
use crate::error::Result;
use crate::source::Source;

/// Size of a directory entry.
const DIR_ENTRY: usize = 32;
/// `DIR_Attr` bits.
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
/// `DIR_Attr` of a long-name entry.
const ATTR_LONG_NAME: u8 = 0x0F;
/// First name byte of a deleted entry.
const DELETED: u8 = 0xE5;
/// How many problems are listed before "and N more".
const MAX_LISTED: usize = 5;

/// What the walk found.
pub(super) struct Walked {
    /// The metadata units.
    pub map: AllocationMap,
    /// Chains that loop, cross, end early or leave the volume.
    pub problems: Vec<String>,
    /// Counts for the summary.
    pub details: Vec<(&'static str, String)>,
}

/// Walks the directory tree of `fat`.
pub(super) fn walk(fat: &Fat, src: &dyn Source) -> Result<Walked> {
    let b = &fat.bpb;
    let mut map = AllocationMap::new(fat.map_unit(), b.volume_size());
    map.mark_bytes_used(0, b.data_offset());
    let copy = match b.active_fat() {
        Some(n) if n < b.num_fats => n,
        _ => 0,
    };
    let mut w = Walker {
        fat,
        src,
        map,
        table: FatTable::new(b, copy),
        seen: HashSet::new(),
        problems: Vec::new(),
        problem_count: 0,
        dirs: 0,
    };
    // (first cluster, byte offset of the entry naming it).
    let mut stack: Vec<(u32, u64)> = Vec::new();
    if b.fat_type == FatType::Fat32 {
        stack.push((b.root_cluster, 44));
    } else {
        let at = b.data_offset() - u64::from(b.root_dir_sectors) * u64::from(b.bytes_per_sector);
        let root = src.read_vec(at, (b.data_offset() - at) as usize)?;
        w.dirs += 1;
        w.entries(&root, at, &mut stack);
    }
    while let Some((first, named_at)) = stack.pop() {
        w.dirs += 1;
        let chain = w.chain(first, named_at)?;
        let cs = u64::from(b.cluster_size());
        // After the end-of-directory mark the rest of the chain is kept
        // but holds no entries.
        let mut ended = false;
        for c in chain {
            let at = b.data_offset() + u64::from(c - 2) * cs;
            w.map.mark_bytes_used(at, cs);
            if !ended {
                let buf = src.read_vec(at, cs as usize)?;
                ended = !w.entries(&buf, at, &mut stack);
            }
        }
    }
    let mut problems = w.problems;
    if w.problem_count > problems.len() as u64 {
        problems.push(format!(
            "and {} more problems in the directory tree",
            w.problem_count - problems.len() as u64
        ));
    }
    Ok(Walked {
        map: w.map,
        problems,
        details: vec![
            ("directories", w.dirs.to_string()),
            ("directory clusters", w.seen.len().to_string()),
        ],
    })
}

struct Walker<'a> {
    fat: &'a Fat,
    src: &'a dyn Source,
    map: AllocationMap,
    table: FatTable,
    /// Directory clusters met so far: a cluster met twice is a loop or a
    /// cross-link, and is not followed again.
    seen: HashSet<u32>,
    problems: Vec<String>,
    problem_count: u64,
    dirs: u64,
}

impl Walker<'_> {
    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }

    /// The clusters of the directory starting at `first` (named by the
    /// entry at byte `named_at`), up to the end of the chain or the first
    /// problem.
    fn chain(&mut self, first: u32, named_at: u64) -> Result<Vec<u32>> {
        let b = &self.fat.bpb;
        let last = b.cluster_count + 1;
        let ty = b.fat_type;
        let mut out = Vec::new();
        let mut c = first;
        let mut from: Option<u64> = None;
        loop {
            let via = from.map_or_else(
                || format!("the directory entry at byte {named_at}"),
                |at| format!("the FAT entry at byte {at}"),
            );
            if c < 2 || c > last {
                self.problem(format!(
                    "the directory whose entry is at byte {named_at}: {via} points to cluster {c}, which is not a cluster (2..={last})"
                ));
                break;
            }
            if !self.seen.insert(c) {
                self.problem(format!(
                    "the directory whose entry is at byte {named_at}: {via} points to cluster {c}, which another directory (or this one) already uses: a loop or a cross-link"
                ));
                break;
            }
            out.push(c);
            let (next, at) = self.table.entry(self.src, c)?;
            if next >= ty.reserved_from() {
                if next == ty.bad_mark() {
                    self.problem(format!(
                        "the directory whose entry is at byte {named_at}: its cluster {c} is marked bad (FAT entry at byte {at})"
                    ));
                }
                break;
            }
            if next == 0 {
                self.problem(format!(
                    "the directory whose entry is at byte {named_at}: its cluster {c} is free in the FAT (entry at byte {at})"
                ));
                break;
            }
            from = Some(at);
            c = next;
        }
        Ok(out)
    }

    /// Pushes the subdirectories listed in `buf` (directory entries at
    /// byte `at`). Returns false at the end-of-directory mark.
    fn entries(&mut self, buf: &[u8], at: u64, stack: &mut Vec<(u32, u64)>) -> bool {
        let fat32 = self.fat.bpb.fat_type == FatType::Fat32;
        for (i, e) in buf.chunks_exact(DIR_ENTRY).enumerate() {
            let entry_at = at + (i * DIR_ENTRY) as u64;
            if e[0] == 0 {
                return false;
            }
            let attr = e[11];
            if e[0] == DELETED
                || attr & 0x3F == ATTR_LONG_NAME
                || attr & ATTR_VOLUME_ID != 0
                || attr & ATTR_DIRECTORY == 0
                || &e[..11] == b".          "
                || &e[..11] == b"..         "
            {
                continue;
            }
            let hi = if fat32 { u32::from(u16le(e, 20)) } else { 0 };
            let first = (hi << 16) | u32::from(u16le(e, 26));
            if first == 0 {
                self.problem(format!(
                    "the directory entry at byte {entry_at} names a subdirectory without a cluster"
                ));
                continue;
            }
            stack.push((first, entry_at));
        }
        true
    }
}
