//! The directory tree, walked from the root directory: every entry set's
//! set checksum, and every cluster chain it records (file data, vendor
//! allocations, subdirectories, the allocation bitmaps and the up-case
//! table), each cluster claimed once and checked against the allocation
//! bitmap. Chains are followed through the FAT, or as a contiguous run
//! when the entry says NoFatChain.
//!
//! Memory: one bit per cluster for the clusters claimed and, for `-m`, one
//! for the metadata clusters; the walk keeps a stack of directories still to read
//! and one entry set (at most 256 entries) at a time. A chain stops at the
//! first cluster claimed before (a loop or a cross-link), so every walk
//! ends.

use super::bitmap::BitmapEntry;
use super::boot::Boot;
use super::fat::{BAD, END, FatTable};
use crate::allocmap::AllocationMap;
use crate::bytes::{u16le, u32le, u64le};
use crate::error::{Error, Result};
use crate::source::Source;

/// Size of a directory entry.
const ENTRY: usize = 32;
/// The largest directory the specification allows.
const MAX_DIR_BYTES: u64 = 256 << 20;
/// How many problems are listed before "and N more".
const MAX_LISTED: usize = 5;
/// Entry types.
const END_OF_DIRECTORY: u8 = 0x00;
const IN_USE: u8 = 0x80;
const SECONDARY: u8 = 0x40;
const BITMAP: u8 = 0x81;
const UPCASE: u8 = 0x82;
const LABEL: u8 = 0x83;
const FILE: u8 = 0x85;
const STREAM: u8 = 0xC0;
const FILE_NAME: u8 = 0xC1;
/// FileAttributes: a directory.
const ATTR_DIRECTORY: u16 = 0x10;
/// GeneralFlags bits.
const ALLOCATION_POSSIBLE: u16 = 1;
const NO_FAT_CHAIN: u16 = 2;

/// What the root directory names without walking the tree.
#[derive(Debug, Default)]
pub struct Root {
    /// The allocation bitmap entries (two on TexFAT volumes).
    pub bitmaps: Vec<BitmapEntry>,
    /// The volume label, if any.
    pub label: Option<String>,
}

/// Reads the root directory for its bitmap and label entries. No chain
/// is checked here: a broken root chain just ends the scan (the walk
/// reports it). Unreadable clusters are skipped in rescue mode.
pub fn scan_root(src: &dyn Source, boot: &Boot, fat: &mut FatTable, rescue: bool) -> Result<Root> {
    let mut root = Root::default();
    let cs = boot.cluster_size();
    let max = (MAX_DIR_BYTES / cs)
        .min(u64::from(boot.cluster_count))
        .max(1);
    let mut c = boot.root_cluster;
    let mut seen = std::collections::HashSet::new();
    'chain: for _ in 0..max {
        if c < 2 || u64::from(c) > boot.last_cluster() || !seen.insert(c) {
            break;
        }
        let at = boot.cluster_offset(c);
        match src.read_vec(at, cs as usize) {
            Ok(buf) => {
                for (i, e) in buf.chunks_exact(ENTRY).enumerate() {
                    let e_at = at + (i * ENTRY) as u64;
                    match e[0] {
                        END_OF_DIRECTORY => break 'chain,
                        BITMAP => root.bitmaps.push(BitmapEntry {
                            at: e_at,
                            fat: e[1] & 1,
                            first: u32le(e, 20),
                            length: u64le(e, 24),
                        }),
                        LABEL if root.label.is_none() => {
                            let n = usize::from(e[1]).min(11);
                            let units: Vec<u16> = (0..n).map(|k| u16le(e, 2 + 2 * k)).collect();
                            root.label = Some(String::from_utf16_lossy(&units));
                        }
                        _ => {}
                    }
                }
            }
            Err(Error::Read { .. }) if rescue => {}
            Err(e) => return Err(e),
        }
        c = match fat.entry(src, c) {
            Ok(v) => v,
            Err(Error::Read { .. }) if rescue => break,
            Err(e) => return Err(e),
        };
    }
    Ok(root)
}

/// What the walk found.
pub struct Walked {
    /// Bit c set for every metadata cluster: directories, allocation
    /// bitmaps, the up-case table (when asked for).
    pub meta: Option<AllocationMap>,
    /// Broken chains and entry sets, and clusters the tree uses that the
    /// bitmap says are free: copying would lose data.
    pub problems: Vec<String>,
    /// Harmless findings and unreadable metadata (rescue).
    pub warnings: Vec<String>,
    /// Directories read (the root included).
    pub dirs: u64,
    /// Files found.
    pub files: u64,
}

/// A chain being followed.
struct Cursor {
    /// Byte offset of the entry (or boot sector field) naming the chain.
    owner: u64,
    /// The next cluster.
    next: u32,
    /// How the next cluster was found.
    from: From,
    /// Clusters still to take.
    left: u64,
    /// Clusters DataLength needs (None: follow to the end mark).
    need: Option<u64>,
    /// NoFatChain: the clusters follow each other.
    contiguous: bool,
    /// Metadata (kept by `-m`).
    meta: bool,
    taken: u64,
}

#[derive(Clone, Copy)]
enum From {
    First,
    Fat(u64),
    Contiguous,
}

/// A directory still to read.
struct Dir {
    owner: u64,
    first: u32,
    /// DataLength (None for the root).
    length: Option<u64>,
    contiguous: bool,
}

/// An entry set being collected.
struct Set {
    at: u64,
    bytes: Vec<u8>,
    expect: usize,
}

struct Walker<'a> {
    src: &'a dyn Source,
    boot: &'a Boot,
    fat: &'a mut FatTable,
    bitmap: &'a AllocationMap,
    rescue: bool,
    tree: AllocationMap,
    meta: Option<AllocationMap>,
    claimed: u64,
    problems: Vec<String>,
    problem_count: u64,
    /// Tree clusters the bitmap calls free: (count, first cluster, owner).
    not_in_bitmap: Option<(u64, u32, u64)>,
    /// Unreadable directory clusters and FAT sectors: (count, first byte).
    unreadable_dirs: Option<(u64, u64)>,
    unreadable_fat: Option<(u64, u64)>,
    upcase: u64,
    dirs: u64,
    files: u64,
}

/// Walks the tree of `boot`'s volume, checking it against `bitmap` (bit c
/// for cluster c).
pub fn walk(
    src: &dyn Source,
    boot: &Boot,
    fat: &mut FatTable,
    bitmap: &AllocationMap,
    bitmap_complete: bool,
    want_meta: bool,
    rescue: bool,
) -> Result<Walked> {
    let last = boot.last_cluster();
    let mut w = Walker {
        src,
        boot,
        fat,
        bitmap,
        rescue,
        tree: AllocationMap::new(1, last + 1),
        meta: want_meta.then(|| AllocationMap::new(1, last + 1)),
        claimed: 0,
        problems: Vec::new(),
        problem_count: 0,
        not_in_bitmap: None,
        unreadable_dirs: None,
        unreadable_fat: None,
        upcase: 0,
        dirs: 0,
        files: 0,
    };
    let mut stack = vec![Dir {
        owner: boot.at + 0x60,
        first: boot.root_cluster,
        length: None,
        contiguous: false,
    }];
    while let Some(d) = stack.pop() {
        w.directory(d, &mut stack)?;
    }
    let mut warnings = Vec::new();
    // First, never cut off by the list's limit: what a copy would lose.
    let mut problems = Vec::new();
    if let Some((n, c, owner)) = w.not_in_bitmap {
        problems.push(format!(
            "{n} cluster(s) in use by the directory tree are free in the allocation bitmap, the first is cluster {c} (chain named at byte {owner}): they would not be copied"
        ));
    }
    if w.upcase == 0 {
        problems.push("the root directory has no up-case table entry (type 0x82)".to_string());
    }
    if let Some((n, at)) = w.unreadable_dirs {
        warnings.push(format!(
            "{n} directory cluster(s) are unreadable (the first at byte {at}): the entries in them are not checked"
        ));
    }
    if let Some((n, at)) = w.unreadable_fat {
        warnings.push(format!(
            "{n} FAT read(s) failed (the first at byte {at}): the chains through them are not followed"
        ));
    }
    if bitmap_complete && w.unreadable_dirs.is_none() && w.unreadable_fat.is_none() {
        let in_bitmap = w.claimed - w.not_in_bitmap.map_or(0, |n| n.0);
        let allocated = bitmap.count_used(2, u64::from(boot.cluster_count));
        if allocated > in_bitmap {
            warnings.push(format!(
                "{} cluster(s) are allocated in the bitmap but no file or directory uses them (lost clusters; they are copied)",
                allocated - in_bitmap
            ));
        }
    }
    if w.problem_count > w.problems.len() as u64 {
        let more = w.problem_count - w.problems.len() as u64;
        w.problems
            .push(format!("and {more} more problems in the directory tree"));
    }
    problems.append(&mut w.problems);
    Ok(Walked {
        meta: w.meta,
        problems,
        warnings,
        dirs: w.dirs,
        files: w.files,
    })
}

/// The set checksum of an entry set: every byte but SetChecksum itself
/// (bytes 2-3 of the first entry).
pub fn set_checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u16;
    for (i, &b) in bytes.iter().enumerate() {
        if i == 2 || i == 3 {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(u16::from(b));
    }
    sum
}

impl Walker<'_> {
    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }

    /// A cursor over `length` bytes from `first` (None: to the end mark).
    fn cursor(
        &self,
        owner: u64,
        first: u32,
        length: Option<u64>,
        contiguous: bool,
        meta: bool,
    ) -> Cursor {
        let cs = self.boot.cluster_size();
        let need = length.map(|l| l.div_ceil(cs));
        Cursor {
            owner,
            next: first,
            from: From::First,
            left: need.unwrap_or(MAX_DIR_BYTES / cs),
            need,
            contiguous,
            meta,
            taken: 0,
        }
    }

    /// The next cluster of `cur`, claimed; None at the end of the chain or
    /// at its first problem (reported).
    fn advance(&mut self, cur: &mut Cursor) -> Result<Option<u32>> {
        if cur.left == 0 {
            return Ok(None);
        }
        let c = cur.next;
        let last = self.boot.last_cluster();
        let owner = cur.owner;
        if c < 2 || u64::from(c) > last {
            let via = match cur.from {
                From::First => "its first cluster is".to_string(),
                From::Fat(at) => format!("the FAT entry at byte {at} points to"),
                From::Contiguous => "its contiguous (NoFatChain) clusters run on to".to_string(),
            };
            self.problem(format!(
                "the chain named at byte {owner}: {via} cluster {c}, which is not a cluster (2..={last})"
            ));
            return Ok(None);
        }
        if self.tree.is_used(u64::from(c)) {
            self.problem(format!(
                "the chain named at byte {owner}: cluster {c} is already used by another file or directory, or earlier in this chain (a cross-link or a loop)"
            ));
            return Ok(None);
        }
        self.tree.mark_used(u64::from(c), 1);
        self.claimed += 1;
        if cur.meta
            && let Some(m) = &mut self.meta
        {
            m.mark_used(u64::from(c), 1);
        }
        if !self.bitmap.is_used(u64::from(c)) {
            let n = self.not_in_bitmap.get_or_insert((0, c, owner));
            n.0 += 1;
        }
        cur.taken += 1;
        cur.left -= 1;
        if cur.left == 0 {
            return Ok(Some(c));
        }
        if cur.contiguous {
            cur.next = c + 1;
            cur.from = From::Contiguous;
            return Ok(Some(c));
        }
        let at = self.fat.entry_offset(c);
        let v = match self.fat.entry(self.src, c) {
            Ok(v) => v,
            Err(Error::Read { offset, .. }) if self.rescue => {
                let u = self.unreadable_fat.get_or_insert((0, offset));
                u.0 += 1;
                cur.left = 0;
                return Ok(Some(c));
            }
            Err(e) => return Err(e),
        };
        if v == END {
            if let Some(need) = cur.need {
                self.problem(format!(
                    "the chain named at byte {owner}: its FAT chain ends at cluster {c} (FAT entry at byte {at}) after {} cluster(s), but its DataLength needs {need}",
                    cur.taken
                ));
            }
            cur.left = 0;
        } else if v == BAD {
            self.problem(format!(
                "the chain named at byte {owner}: its cluster {c} is marked bad in the FAT (entry at byte {at})"
            ));
            cur.left = 0;
        } else {
            cur.next = v;
            cur.from = From::Fat(at);
        }
        Ok(Some(c))
    }

    /// Claims the clusters of a file (or bitmap, up-case table, vendor
    /// allocation) named at byte `owner`.
    fn claim(
        &mut self,
        owner: u64,
        first: u32,
        length: u64,
        contiguous: bool,
        meta: bool,
    ) -> Result<()> {
        let heap = u64::from(self.boot.cluster_count) * self.boot.cluster_size();
        if length > heap {
            self.problem(format!(
                "the chain named at byte {owner}: DataLength {length} is larger than the cluster heap ({heap} bytes)"
            ));
            return Ok(());
        }
        if contiguous {
            self.claim_run(
                owner,
                first,
                length.div_ceil(self.boot.cluster_size()),
                meta,
            );
            return Ok(());
        }
        let mut cur = self.cursor(owner, first, Some(length), contiguous, meta);
        while self.advance(&mut cur)?.is_some() {}
        Ok(())
    }

    /// Claims `n` contiguous clusters from `first` (a NoFatChain file)
    /// with whole-range bitmap operations: a large video file is millions
    /// of clusters. Same findings as cluster by cluster through
    /// [`Self::advance`].
    fn claim_run(&mut self, owner: u64, first: u32, n: u64, meta: bool) {
        if n == 0 {
            return;
        }
        let last = self.boot.last_cluster();
        let first64 = u64::from(first);
        if first < 2 || first64 > last {
            self.problem(format!(
                "the chain named at byte {owner}: its first cluster is cluster {first}, which is not a cluster (2..={last})"
            ));
            return;
        }
        let mut end = first64.saturating_add(n).min(last + 1);
        // The first cluster claimed before: a cross-link.
        let mut crossed = None;
        if self.tree.count_used(first64, end - first64) > 0 {
            crossed = (first64..end).find(|&c| self.tree.is_used(c));
            end = crossed.unwrap_or(end);
        }
        let count = end - first64;
        self.tree.mark_used(first64, count);
        self.claimed += count;
        if let Some(m) = &mut self.meta
            && meta
        {
            m.mark_used(first64, count);
        }
        let allocated = self.bitmap.count_used(first64, count);
        if allocated < count {
            let c = (first64..end)
                .find(|&c| !self.bitmap.is_used(c))
                .unwrap_or(first64);
            let e = self.not_in_bitmap.get_or_insert((0, c as u32, owner));
            e.0 += count - allocated;
        }
        if let Some(c) = crossed {
            self.problem(format!(
                "the chain named at byte {owner}: cluster {c} is already used by another file or directory, or earlier in this chain (a cross-link or a loop)"
            ));
        } else if first64 + n > last + 1 {
            self.problem(format!(
                "the chain named at byte {owner}: its contiguous (NoFatChain) clusters run on to cluster {}, which is not a cluster (2..={last})",
                last + 1
            ));
        }
    }

    /// Reads one directory, claiming its clusters and those of every file
    /// in it; subdirectories go on `stack`.
    fn directory(&mut self, d: Dir, stack: &mut Vec<Dir>) -> Result<()> {
        self.dirs += 1;
        let cs = self.boot.cluster_size();
        if let Some(l) = d.length
            && (l > MAX_DIR_BYTES || l == 0)
        {
            self.problem(format!(
                "the directory named at byte {}: DataLength {l} (a directory holds 1 byte to 256 MiB)",
                d.owner
            ));
            return Ok(());
        }
        let mut cur = self.cursor(d.owner, d.first, d.length, d.contiguous, true);
        let mut pending: Option<Set> = None;
        let mut ended = false;
        while let Some(c) = self.advance(&mut cur)? {
            if ended {
                continue;
            }
            let at = self.boot.cluster_offset(c);
            let buf = match self.src.read_vec(at, cs as usize) {
                Ok(v) => v,
                Err(Error::Read { .. }) if self.rescue => {
                    let u = self.unreadable_dirs.get_or_insert((0, at));
                    u.0 += 1;
                    pending = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (i, e) in buf.chunks_exact(ENTRY).enumerate() {
                if !self.entry(e, at + (i * ENTRY) as u64, &mut pending, stack)? {
                    ended = true;
                    break;
                }
            }
        }
        if let Some(set) = pending {
            self.problem(format!(
                "the entry set at byte {}: the directory ends {} entries short of it",
                set.at, set.expect
            ));
        }
        Ok(())
    }

    /// One directory entry at byte `at`. Returns false at the end of the
    /// directory.
    fn entry(
        &mut self,
        e: &[u8],
        at: u64,
        pending: &mut Option<Set>,
        stack: &mut Vec<Dir>,
    ) -> Result<bool> {
        let ty = e[0];
        if let Some(set) = pending.as_mut() {
            if ty & (IN_USE | SECONDARY) == IN_USE | SECONDARY {
                set.bytes.extend_from_slice(e);
                set.expect -= 1;
                if set.expect == 0
                    && let Some(set) = pending.take()
                {
                    self.finish(set, stack)?;
                }
                return Ok(true);
            }
            let (set_at, count) = (set.at, set.bytes.len() / ENTRY + set.expect - 1);
            self.problem(format!(
                "the entry set at byte {set_at}: it declares {count} secondary entries, but the entry at byte {at} (type 0x{ty:02x}) is not one"
            ));
            *pending = None;
        }
        if ty == END_OF_DIRECTORY {
            return Ok(false);
        }
        if ty & IN_USE == 0 {
            // Unused or deleted.
            return Ok(true);
        }
        if ty & SECONDARY != 0 {
            self.problem(format!(
                "the entry at byte {at} (type 0x{ty:02x}) is a secondary entry outside any entry set"
            ));
            return Ok(true);
        }
        match ty {
            BITMAP | UPCASE => {
                if ty == UPCASE {
                    self.upcase += 1;
                }
                self.claim(at, u32le(e, 20), u64le(e, 24), false, true)?;
            }
            LABEL => {}
            _ => {
                let set = Set {
                    at,
                    bytes: e.to_vec(),
                    expect: usize::from(e[1]),
                };
                if set.expect == 0 {
                    self.finish(set, stack)?;
                } else {
                    *pending = Some(set);
                }
            }
        }
        Ok(true)
    }

    /// A complete entry set: its checksum, then its allocations.
    fn finish(&mut self, set: Set, stack: &mut Vec<Dir>) -> Result<()> {
        let b = &set.bytes;
        let stored = u16le(b, 2);
        let sum = set_checksum(b);
        if stored != sum {
            self.problem(format!(
                "the entry set at byte {} (type 0x{:02x}, {} entries): its SetChecksum is 0x{stored:04x}, its entries sum to 0x{sum:04x}",
                set.at,
                b[0],
                b.len() / ENTRY
            ));
            return Ok(());
        }
        let mut secondaries = 1;
        if b[0] == FILE {
            let s = &b[ENTRY.min(b.len())..];
            if s.len() < ENTRY || s[0] != STREAM {
                self.problem(format!(
                    "the file entry set at byte {}: its first secondary entry is not a stream extension (type 0xc0)",
                    set.at
                ));
                return Ok(());
            }
            let flags = u16::from(s[1]);
            let first = u32le(s, 20);
            let length = u64le(s, 24);
            let dir = u16le(b, 4) & ATTR_DIRECTORY != 0;
            if !dir {
                self.files += 1;
            }
            if flags & ALLOCATION_POSSIBLE != 0 && first != 0 {
                if dir {
                    stack.push(Dir {
                        owner: set.at,
                        first,
                        length: Some(length),
                        contiguous: flags & NO_FAT_CHAIN != 0,
                    });
                } else {
                    self.claim(set.at, first, length, flags & NO_FAT_CHAIN != 0, false)?;
                }
            } else if length > 0 {
                self.problem(format!(
                    "the file entry set at byte {}: DataLength {length} but no cluster allocated",
                    set.at
                ));
            }
            secondaries = 2;
        } else {
            // Any other primary entry may carry an allocation of its own
            // (generic primary template: flags at 4, cluster at 20).
            let flags = u16le(b, 4);
            let first = u32le(b, 20);
            if flags & ALLOCATION_POSSIBLE != 0 && first != 0 {
                self.claim(
                    set.at,
                    first,
                    u64le(b, 24),
                    flags & NO_FAT_CHAIN != 0,
                    false,
                )?;
            }
        }
        // Vendor allocations and other secondaries with clusters (generic
        // secondary template: flags at 1, cluster at 20).
        for (i, s) in b.chunks_exact(ENTRY).enumerate().skip(secondaries) {
            let flags = u16::from(s[1]);
            if s[0] == FILE_NAME || flags & ALLOCATION_POSSIBLE == 0 || u32le(s, 20) == 0 {
                continue;
            }
            let at = set.at + (i * ENTRY) as u64;
            self.claim(
                at,
                u32le(s, 20),
                u64le(s, 24),
                flags & NO_FAT_CHAIN != 0,
                false,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_checksum_skips_its_own_field() {
        let mut a = vec![0u8; 64];
        a[0] = FILE;
        a[1] = 1;
        a[32] = STREAM;
        let s = set_checksum(&a);
        a[2] = 0x12;
        a[3] = 0x34;
        assert_eq!(set_checksum(&a), s);
        a[40] = 1;
        assert_ne!(set_checksum(&a), s);
    }
}
