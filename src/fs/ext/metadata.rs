//! Metadata-only copies (`-m`): the blocks that hold ext metadata, and the
//! scrubber that wipes file data kept inside metadata on its way out.
//!
//! Kept, as e2image -r keeps them and more: the boot block and every
//! superblock copy, every descriptor table copy with its reserved GDT
//! blocks, the bitmaps and the used part of the inode tables (not those of
//! INODE_UNINIT or BLOCK_UNINIT groups, nor the inodes past
//! `bg_itable_unused`, which hold no inode and may hold stale disk
//! contents), the MMP block; then, walking every inode in use, each
//! inode's extended attribute block, every data block of directories,
//! slow symlinks, the reserved inodes below `s_first_ino` (journal,
//! resize inode, ...), quota inodes, the orphan file and extended
//! attribute inodes; and of regular files only the extent-tree index and
//! leaf blocks or the indirect blocks, never the data they map.
//!
//! Regular files with inline data keep it in their inode: the scrubber
//! zeroes it (and its `system.data` attribute) and reseals the inode
//! checksum. With bigalloc the map counts clusters, so the blocks of a
//! copied cluster that hold no metadata are zeroed too.

use std::collections::HashSet;

use super::error::ExtError;
use super::inode::{self, I_BLOCK, I_BLOCK_LEN, Inode, S_IFDIR, S_IFLNK, S_IFREG, flags};
use super::superblock::{SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, Superblock, incompat, ro_compat};
use super::{Ext, MAX_LISTED, MAX_METADATA_READ};
use crate::allocmap::AllocationMap;
use crate::bytes::{hilo, u16le, u32le};
use crate::error::Result;
use crate::fs::{Filesystem, Scrub};
use crate::source::Source;

/// `eh_magic` of an extent-tree node.
pub(crate) const EXTENT_MAGIC: u16 = 0xF30A;
/// Deepest extent tree the kernel accepts (`EXT4_MAX_EXTENT_DEPTH`).
pub(crate) const MAX_EXTENT_DEPTH: u16 = 5;
/// `ee_len` above this marks an uninitialized extent of `ee_len - 32768`.
pub(crate) const INIT_MAX_LEN: u16 = 32768;
/// The bad blocks inode: its data blocks are the bad blocks themselves.
const BAD_INO: u32 = 1;
/// The journal superblock's `h_magic` (big-endian, like all of jbd2).
const JBD2_MAGIC: u32 = 0xC03B_3998;
/// `h_blocktype` of a version 1 and a version 2 journal superblock.
const JBD2_SUPERBLOCK_V1: u32 = 3;
const JBD2_SUPERBLOCK_V2: u32 = 4;

/// What the walk found.
pub(super) struct Walked {
    /// The metadata clusters.
    pub map: AllocationMap,
    /// Corrupt trees, out-of-range pointers, metadata free in the bitmap.
    pub problems: Vec<String>,
    /// Counts for `fsimg info` and the summary.
    pub details: Vec<(&'static str, String)>,
    /// The scrubber, when something needs wiping.
    pub scrub: Option<Box<dyn Scrub>>,
}

/// Finds the metadata of `ext`; `used` is its allocation map, against
/// which every block an inode uses is checked.
pub(super) fn walk(ext: &Ext, src: &dyn Source, used: &AllocationMap) -> Result<Walked> {
    let sb = &ext.sb;
    let mut w = Walker {
        sb,
        src,
        used,
        map: AllocationMap::new(sb.cluster_size, ext.device_size()),
        keep: (sb.cluster_ratio() > 1).then(Vec::new),
        tree_seen: HashSet::new(),
        inline: Vec::new(),
        problems: Vec::new(),
        problem_count: 0,
        free_meta: None,
        free_meta_count: 0,
        inodes: 0,
        journal: None,
        journal_first: None,
        journal_ranges: Vec::new(),
    };
    w.group_metadata(ext);
    w.inodes(ext)?;
    let wipe = w.clean_journal_log()?;

    let mut problems: Vec<String> = w.problems.iter().map(ToString::to_string).collect();
    if w.problem_count > w.problems.len() as u64 {
        problems.push(format!(
            "and {} more problems in the inodes' block maps",
            w.problem_count - w.problems.len() as u64
        ));
    }
    if let Some(e) = &w.free_meta {
        let mut s = e.to_string();
        if w.free_meta_count > 1 {
            s.push_str(&format!(
                " (and {} more such ranges)",
                w.free_meta_count - 1
            ));
        }
        problems.push(s);
    }
    let mut details = vec![
        ("inodes walked", w.inodes.to_string()),
        ("inline data wiped in inodes", w.inline.len().to_string()),
    ];
    if !w.journal_ranges.is_empty() {
        details.push((
            "journal",
            if wipe.is_empty() {
                "copied whole".to_string()
            } else {
                "clean: superblock kept, old log zeroed".to_string()
            },
        ));
    }
    let bs = u64::from(sb.block_size);
    let keep = w.keep.take().map(|mut k| {
        k.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(k.len());
        for (a, b) in k {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
            .into_iter()
            .map(|(a, b)| (a * bs, b * bs))
            .collect::<Vec<_>>()
    });
    let mut inline = std::mem::take(&mut w.inline);
    inline.sort_unstable();
    let scrub: Option<Box<dyn Scrub>> = if inline.is_empty() && keep.is_none() && wipe.is_empty() {
        None
    } else {
        Some(Box::new(ExtScrub {
            sb: sb.clone(),
            inline,
            keep,
            wipe,
        }))
    };
    Ok(Walked {
        map: w.map,
        problems,
        details,
        scrub,
    })
}

struct Walker<'a> {
    sb: &'a Superblock,
    src: &'a dyn Source,
    used: &'a AllocationMap,
    map: AllocationMap,
    /// Block ranges `[first, end)` kept, with bigalloc: the other blocks of
    /// a copied cluster are zeroed.
    keep: Option<Vec<(u64, u64)>>,
    /// Extent-tree and indirect blocks met so far: each is read once.
    tree_seen: HashSet<u64>,
    /// Byte offset and number of each regular file inode with inline data.
    inline: Vec<(u64, u32)>,
    /// The first problems met.
    problems: Vec<ExtError>,
    problem_count: u64,
    /// The first metadata block free in the block bitmap.
    free_meta: Option<ExtError>,
    free_meta_count: u64,
    inodes: u64,
    /// While the journal inode is walked: the block ranges it maps.
    journal: Option<Vec<(u64, u64)>>,
    /// The block holding the journal's logical block 0 (its superblock).
    journal_first: Option<u64>,
    /// The block ranges of the journal, once walked.
    journal_ranges: Vec<(u64, u64)>,
}

impl Walker<'_> {
    fn bs(&self) -> u64 {
        u64::from(self.sb.block_size)
    }

    /// Keeps `n` blocks from `block` (clamped to the filesystem).
    fn keep(&mut self, block: u64, n: u64) {
        let n = n.min(self.sb.blocks_count.saturating_sub(block));
        if n == 0 {
            return;
        }
        let bs = self.bs();
        self.map.mark_bytes_used(block * bs, n * bs);
        if let Some(k) = &mut self.keep {
            k.push((block, block + n));
        }
    }

    /// Keeps data blocks of a directory or system inode; `logical` is the
    /// file block of the first, when known.
    fn keep_data(&mut self, ino: u32, block: u64, n: u64, logical: Option<u64>) {
        self.keep_inode_blocks(ino, block, n);
        if let Some(j) = &mut self.journal {
            j.push((block, block + n));
            if logical == Some(0) {
                self.journal_first = Some(block);
            }
        }
    }

    /// Keeps blocks an inode uses, checking that the bitmap has them.
    fn keep_inode_blocks(&mut self, ino: u32, block: u64, n: u64) {
        self.keep(block, n);
        let ratio = u64::from(self.sb.cluster_ratio());
        let (c0, c1) = (block / ratio, (block + n - 1) / ratio);
        if self.used.count_used(c0, c1 - c0 + 1) != c1 - c0 + 1 {
            self.free_meta_count += 1;
            if self.free_meta.is_none() {
                let c = (c0..=c1).find(|&c| !self.used.is_used(c)).unwrap_or(c0);
                self.free_meta = Some(ExtError::MetadataBlockFree {
                    inode: ino,
                    block: (c * ratio).max(block),
                });
            }
        }
    }

    fn problem(&mut self, e: ExtError) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(e);
        }
    }

    /// Whether `n` blocks from `block` lie inside the filesystem; if not,
    /// a problem naming the pointer at byte `at` of inode `ino`.
    fn in_range(&mut self, ino: u32, at: u64, block: u64, n: u64) -> bool {
        let first = u64::from(self.sb.first_data_block).max(1);
        if block >= first && block.saturating_add(n) <= self.sb.blocks_count {
            return true;
        }
        self.problem(ExtError::BlockOutOfRange {
            inode: ino,
            offset: at,
            block,
            first_data_block: first as u32,
            blocks_count: self.sb.blocks_count,
        });
        false
    }

    /// The byte ranges of a clean journal's log, every journal block but
    /// its superblock: checkpointed transactions nothing replays, which
    /// hold old copies of metadata blocks (deleted names, inline data) and,
    /// with data=journal, file contents. A journal that needs recovery, or
    /// whose superblock is not recognised, is kept whole.
    fn clean_journal_log(&self) -> Result<Vec<(u64, u64)>> {
        let sb = self.sb;
        let Some(first) = self.journal_first else {
            return Ok(Vec::new());
        };
        if sb.has_incompat(incompat::RECOVER) {
            return Ok(Vec::new());
        }
        let bs = self.bs();
        let jsb = self.src.read_vec(first * bs, 1024)?;
        let be = |o: usize| u32::from_be_bytes([jsb[o], jsb[o + 1], jsb[o + 2], jsb[o + 3]]);
        let clean = be(0) == JBD2_MAGIC
            && matches!(be(4), JBD2_SUPERBLOCK_V1 | JBD2_SUPERBLOCK_V2)
            && be(0x1C) == 0;
        if !clean {
            return Ok(Vec::new());
        }
        let mut ranges = self.journal_ranges.clone();
        ranges.sort_unstable();
        let mut out = Vec::with_capacity(ranges.len() + 1);
        for (a, b) in ranges {
            if (a..b).contains(&first) {
                if a < first {
                    out.push((a * bs, first * bs));
                }
                if first + 1 < b {
                    out.push(((first + 1) * bs, b * bs));
                }
            } else {
                out.push((a * bs, b * bs));
            }
        }
        Ok(out)
    }

    /// Whether the descriptor of group `g` can be trusted for its
    /// UNINIT flags and `bg_itable_unused` (as the kernel and e2fsck do).
    fn trusted(&self, ext: &Ext, g: usize) -> bool {
        let sb = self.sb;
        (sb.has_ro_compat(ro_compat::GDT_CSUM) || sb.has_ro_compat(ro_compat::METADATA_CSUM))
            && ext.descs[g].checksum_ok
    }

    /// Inodes of group `g` that may be in use (before `bg_itable_unused`).
    fn live_inodes(&self, ext: &Ext, g: usize) -> u32 {
        let d = &ext.descs[g];
        let ipg = self.sb.inodes_per_group;
        if !self.trusted(ext, g) {
            ipg
        } else if d.inode_uninit() {
            0
        } else {
            ipg - d.itable_unused.min(ipg)
        }
    }

    /// Superblocks, descriptor tables, reserved GDT blocks, bitmaps, inode
    /// tables, the MMP block.
    fn group_metadata(&mut self, ext: &Ext) {
        let sb = self.sb;
        let bs = self.bs();
        self.keep(0, (SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64).div_ceil(bs));
        let isz = u64::from(sb.inode_size);
        for g in 0..sb.groups {
            let base = sb.base_metadata(g);
            if let Some((block, n)) = base.superblock {
                self.keep(block, n);
            }
            if let Some((block, n)) = base.old_desc {
                self.keep(block, n);
            }
            if let Some(block) = base.new_desc {
                self.keep(block, 1);
            }
            let gi = g as usize;
            let d = ext.descs[gi];
            let trusted = self.trusted(ext, gi);
            if !(trusted && d.block_uninit()) {
                self.keep(d.block_bitmap, 1);
            }
            if !(trusted && d.inode_uninit()) {
                self.keep(d.inode_bitmap, 1);
            }
            let live = u64::from(self.live_inodes(ext, gi));
            self.keep(d.inode_table, (live * isz).div_ceil(bs));
        }
        if sb.has_incompat(incompat::MMP) {
            self.keep(sb.mmp_block, 1);
        }
    }

    /// Reads each group's inode bitmap and the live part of its inode
    /// table, in large reads, and walks every inode in use.
    fn inodes(&mut self, ext: &Ext) -> Result<()> {
        let sb = self.sb;
        let bs = self.bs();
        let isz = u64::from(sb.inode_size);
        let per_read = (MAX_METADATA_READ / isz).max(1);
        for gi in 0..sb.groups as usize {
            let live = u64::from(self.live_inodes(ext, gi));
            if live == 0 {
                continue;
            }
            let d = ext.descs[gi];
            let bitmap = self.src.read_vec(d.inode_bitmap * bs, bs as usize)?;
            let is_set = |i: u64| bitmap[(i / 8) as usize] & (1 << (i % 8)) != 0;
            // Reserved inodes are walked whatever the bitmap says: e2fsck
            // checks them all.
            let reserved = if gi == 0 {
                u64::from(sb.first_ino.saturating_sub(1)).min(live)
            } else {
                0
            };
            // The whole live part is read (it is copied anyway): a free
            // inode may still hold the inline data of a deleted file.
            let table = d.inode_table * bs;
            let mut i = 0;
            while i < live {
                let k = per_read.min(live - i);
                let buf = self.src.read_vec(table + i * isz, (k * isz) as usize)?;
                for j in 0..k {
                    let idx = i + j;
                    let ino = (gi as u64 * u64::from(sb.inodes_per_group) + idx + 1) as u32;
                    let raw = &buf[(j * isz) as usize..((j + 1) * isz) as usize];
                    if idx < reserved || is_set(idx) {
                        self.inode(ino, raw, table + idx * isz)?;
                    } else {
                        let ind = Inode::from_bytes(sb, raw);
                        if ind.flags & flags::INLINE_DATA != 0 && ind.file_type() == S_IFREG {
                            self.inline.push((table + idx * isz, ino));
                        }
                    }
                }
                i += k;
            }
        }
        Ok(())
    }

    /// Keeps what inode `ino` (its bytes `raw`, at byte `at`) needs.
    fn inode(&mut self, ino: u32, raw: &[u8], at: u64) -> Result<()> {
        let sb = self.sb;
        let ind = Inode::from_bytes(sb, raw);
        let reserved = ino < sb.first_ino;
        if !reserved && !ind.in_use() {
            return Ok(());
        }
        self.inodes += 1;
        if ind.file_acl != 0 && self.in_range(ino, at + 0x68, ind.file_acl, 1) {
            self.keep_inode_blocks(ino, ind.file_acl, 1);
        }
        let ft = ind.file_type();
        let system = reserved
            || ino == sb.journal_inum
            || sb.quota_inums.contains(&ino)
            || ino == sb.orphan_file_inum
            || ind.flags & flags::EA_INODE != 0;
        if !system && ft != S_IFDIR && ft != S_IFREG && ft != S_IFLNK {
            // Devices, fifos and sockets have no blocks.
            return Ok(());
        }
        // Every block of directories, symlinks and system files; only the
        // block maps of regular files (and of the bad blocks inode).
        let all = (system || ft == S_IFDIR || ft == S_IFLNK) && ino != BAD_INO;
        if ind.flags & flags::INLINE_DATA != 0 {
            if ft == S_IFREG && !system {
                self.inline.push((at, ino));
            }
            return Ok(());
        }
        if ft == S_IFLNK && !system && ind.is_fast_symlink(sb) {
            return Ok(());
        }
        let iblock = &raw[I_BLOCK..I_BLOCK + I_BLOCK_LEN];
        let at = at + I_BLOCK as u64;
        let is_journal = ino == sb.journal_inum && self.journal.is_none();
        if is_journal {
            self.journal = Some(Vec::new());
        }
        let r = if ind.flags & flags::EXTENTS != 0 {
            self.extent_node(ino, iblock, at, all, None)
        } else {
            self.indirect_root(ino, iblock, at, all)
        };
        if is_journal {
            self.journal_ranges = self.journal.take().unwrap_or_default();
        }
        r
    }

    /// Walks an extent-tree node (`node`, at byte `at`): index and leaf
    /// blocks are kept, and with `all` the extents they map.
    fn extent_node(
        &mut self,
        ino: u32,
        node: &[u8],
        at: u64,
        all: bool,
        expect_depth: Option<u16>,
    ) -> Result<()> {
        let entries = u16le(node, 2);
        let depth = u16le(node, 6);
        if let Some(problem) = extent_header_problem(node, expect_depth) {
            self.problem(ExtError::ExtentNode {
                inode: ino,
                offset: at,
                problem,
            });
            return Ok(());
        }
        let bs = self.bs();
        for i in 0..usize::from(entries) {
            let e = 12 + 12 * i;
            let eat = at + e as u64;
            if depth > 0 {
                let child = hilo(u32::from(u16le(node, e + 8)), u32le(node, e + 4));
                if !self.in_range(ino, eat + 4, child, 1) {
                    continue;
                }
                if !self.tree_seen.insert(child) {
                    self.problem(ExtError::TreeBlockShared {
                        inode: ino,
                        offset: eat + 4,
                        block: child,
                    });
                    continue;
                }
                self.keep_inode_blocks(ino, child, 1);
                let buf = self.src.read_vec(child * bs, bs as usize)?;
                self.extent_node(ino, &buf, child * bs, all, Some(depth - 1))?;
            } else if all {
                let mut len = u16le(node, e + 4);
                if len > INIT_MAX_LEN {
                    len -= INIT_MAX_LEN;
                }
                let start = hilo(u32::from(u16le(node, e + 6)), u32le(node, e + 8));
                let logical = u64::from(u32le(node, e));
                if len > 0 && self.in_range(ino, eat + 6, start, u64::from(len)) {
                    self.keep_data(ino, start, u64::from(len), Some(logical));
                }
            }
        }
        Ok(())
    }

    /// Walks the block map in `i_block` (at byte `at`): the indirect
    /// blocks, and with `all` the data blocks too.
    fn indirect_root(&mut self, ino: u32, iblock: &[u8], at: u64, all: bool) -> Result<()> {
        if all {
            for i in 0..12 {
                let p = u64::from(u32le(iblock, i * 4));
                if p != 0 && self.in_range(ino, at + i as u64 * 4, p, 1) {
                    self.keep_data(ino, p, 1, Some(i as u64));
                }
            }
        }
        for (i, level) in [(12usize, 1u32), (13, 2), (14, 3)] {
            let p = u64::from(u32le(iblock, i * 4));
            if p != 0 {
                self.indirect(ino, p, at + i as u64 * 4, level, all)?;
            }
        }
        Ok(())
    }

    /// Walks an indirect block of `level` (1: it points at data) named by
    /// the pointer at byte `ptr_at`.
    fn indirect(&mut self, ino: u32, block: u64, ptr_at: u64, level: u32, all: bool) -> Result<()> {
        if !self.in_range(ino, ptr_at, block, 1) {
            return Ok(());
        }
        if !self.tree_seen.insert(block) {
            self.problem(ExtError::TreeBlockShared {
                inode: ino,
                offset: ptr_at,
                block,
            });
            return Ok(());
        }
        self.keep_inode_blocks(ino, block, 1);
        if level == 1 && !all {
            return Ok(());
        }
        let bs = self.bs();
        let buf = self.src.read_vec(block * bs, bs as usize)?;
        // Adjacent data blocks are kept as one run.
        let mut run: Option<(u64, u64)> = None;
        for j in 0..(bs / 4) as usize {
            let p = u64::from(u32le(&buf, j * 4));
            if p == 0 {
                continue;
            }
            let pat = block * bs + j as u64 * 4;
            if level > 1 {
                self.indirect(ino, p, pat, level - 1, all)?;
            } else if self.in_range(ino, pat, p, 1) {
                run = match run {
                    Some((s, n)) if s + n == p => Some((s, n + 1)),
                    Some((s, n)) => {
                        self.keep_data(ino, s, n, None);
                        Some((p, 1))
                    }
                    None => Some((p, 1)),
                };
            }
        }
        if let Some((s, n)) = run {
            self.keep_data(ino, s, n, None);
        }
        Ok(())
    }
}

/// What is wrong with the header of extent-tree node `node` (the 60 bytes
/// of `i_block`, or a whole block), if anything: its magic, `eh_max`
/// against the entries that fit, `eh_entries` against `eh_max`, its depth
/// against [`MAX_EXTENT_DEPTH`] and against `expect_depth`, the depth its
/// parent's index entry implies. `node` holds at least 12 bytes.
pub(crate) fn extent_header_problem(node: &[u8], expect_depth: Option<u16>) -> Option<String> {
    let magic = u16le(node, 0);
    let entries = u16le(node, 2);
    let max = u16le(node, 4);
    let depth = u16le(node, 6);
    let fits = (node.len() - 12) / 12;
    if magic != EXTENT_MAGIC {
        Some(format!("bad magic 0x{magic:04x} (expected 0xf30a)"))
    } else if usize::from(max) > fits {
        Some(format!(
            "eh_max {max} is more than the {fits} entries that fit"
        ))
    } else if entries > max {
        Some(format!("eh_entries {entries} is more than eh_max {max}"))
    } else if depth > MAX_EXTENT_DEPTH {
        Some(format!("depth {depth} is more than {MAX_EXTENT_DEPTH}"))
    } else if expect_depth.is_some_and(|d| d != depth) {
        Some(format!(
            "depth {depth} where its index entry expects {}",
            expect_depth.unwrap_or(0)
        ))
    } else {
        None
    }
}

/// Wipes inline data of regular files and, with bigalloc, the blocks of
/// copied clusters that hold no metadata.
struct ExtScrub {
    sb: Superblock,
    /// Byte offset and number of each inode to wipe, by offset.
    inline: Vec<(u64, u32)>,
    /// Byte ranges `[start, end)` to keep, sorted and disjoint (bigalloc).
    keep: Option<Vec<(u64, u64)>>,
    /// Byte ranges `[start, end)` to zero, sorted and disjoint (a clean
    /// journal's log).
    wipe: Vec<(u64, u64)>,
}

impl Scrub for ExtScrub {
    fn scrub(&self, src: &dyn Source, offset: u64, data: &mut [u8]) {
        let end = offset + data.len() as u64;
        let zero = |data: &mut [u8], a: u64, b: u64| {
            data[(a - offset) as usize..(b - offset) as usize].fill(0);
        };
        let first = self.wipe.partition_point(|&(_, e)| e <= offset);
        for &(a, b) in &self.wipe[first..] {
            if a >= end {
                break;
            }
            zero(data, a.max(offset), b.min(end));
        }
        if let Some(keep) = &self.keep {
            let mut pos = offset;
            let first = keep.partition_point(|&(_, e)| e <= offset);
            for &(ks, ke) in &keep[first..] {
                if ks >= end {
                    break;
                }
                if ks > pos {
                    zero(data, pos, ks);
                }
                pos = pos.max(ke);
                if pos >= end {
                    break;
                }
            }
            if pos < end {
                zero(data, pos, end);
            }
        }
        let isz = u64::from(self.sb.inode_size);
        let first = self.inline.partition_point(|&(o, _)| o + isz <= offset);
        for &(o, ino) in &self.inline[first..] {
            if o >= end {
                break;
            }
            if o >= offset && o + isz <= end {
                let s = (o - offset) as usize;
                inode::wipe_inline_data(&self.sb, ino, &mut data[s..s + isz as usize]);
                continue;
            }
            // The inode straddles the piece: wipe a whole copy, then take
            // the part inside (or zeros, if the source fails now).
            let (a, b) = (o.max(offset), (o + isz).min(end));
            match src.read_vec(o, isz as usize) {
                Ok(mut whole) => {
                    inode::wipe_inline_data(&self.sb, ino, &mut whole);
                    data[(a - offset) as usize..(b - offset) as usize]
                        .copy_from_slice(&whole[(a - o) as usize..(b - o) as usize]);
                }
                Err(_) => zero(data, a, b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BS, image, put16, put32};
    use super::*;
    use crate::source::MemSource;

    /// Byte offset of inode `ino` in the test image (inode table at block
    /// 5, 128-byte inodes).
    fn inode_at(ino: usize) -> usize {
        5 * BS + (ino - 1) * 128
    }

    /// Makes inode 12 a file of `mode` with `flags`, in use.
    fn add_inode(img: &mut [u8], mode: u16, iflags: u32) -> usize {
        let at = inode_at(12);
        put16(img, at, mode);
        put16(img, at + 0x1A, 1);
        put32(img, at + 0x20, iflags);
        img[4 * BS + 1] |= 1 << 3; // inode 12: bit 11
        at
    }

    /// An extent header at `at`.
    fn header(img: &mut [u8], at: usize, entries: u16, max: u16, depth: u16) {
        put16(img, at, EXTENT_MAGIC);
        put16(img, at + 2, entries);
        put16(img, at + 4, max);
        put16(img, at + 6, depth);
    }

    /// Entry `i` of the node at `at`: an index to `block`, or an extent.
    fn index(img: &mut [u8], at: usize, i: usize, block: u32) {
        put32(img, at + 12 + 12 * i + 4, block);
    }

    fn extent(img: &mut [u8], at: usize, i: usize, logical: u32, len: u16, start: u32) {
        let e = at + 12 + 12 * i;
        put32(img, e, logical);
        put16(img, e + 4, len);
        put32(img, e + 8, start);
    }

    fn walked(img: Vec<u8>) -> (Walked, AllocationMap) {
        let src = MemSource::new(img, "test.img");
        let ext = Ext::open(&src).expect("opens");
        let alloc = ext.allocation(&src).expect("allocation");
        let w = walk(&ext, &src, &alloc.map).expect("walk");
        (w, alloc.map)
    }

    fn kept(w: &Walked, block: u64) -> bool {
        w.map.is_used(block)
    }

    #[test]
    fn group_metadata_only_without_files() {
        let (w, used) = walked(image());
        assert_eq!(w.problems, Vec::<String>::new());
        // Boot block, superblocks, descriptors, bitmaps, inode tables:
        // here, everything in use.
        assert_eq!(w.map.used_clusters(), used.used_clusters());
        assert!(w.scrub.is_none());
    }

    #[test]
    fn directories_keep_data_regular_files_only_their_tree() {
        for (mode, data_kept) in [(S_IFDIR | 0o755, true), (S_IFREG | 0o644, false)] {
            let mut img = image();
            let at = add_inode(&mut img, mode, flags::EXTENTS) + I_BLOCK;
            // Root: depth 1, one index to block 100, a leaf mapping
            // 200..=203 and an uninitialized 300..=301.
            header(&mut img, at, 1, 4, 1);
            index(&mut img, at, 0, 100);
            header(&mut img, 100 * BS, 2, 84, 0);
            extent(&mut img, 100 * BS, 0, 0, 4, 200);
            extent(&mut img, 100 * BS, 1, 4, 32768 + 2, 300);
            let (w, _) = walked(img);
            assert!(kept(&w, 100));
            for b in [200, 203, 300, 301] {
                assert_eq!(kept(&w, b), data_kept, "mode {mode:o} block {b}");
            }
            assert!(!kept(&w, 204) && !kept(&w, 302));
            // The blocks are free in the bitmap: said once, with the first.
            assert_eq!(
                w.problems,
                vec![
                    ExtError::MetadataBlockFree {
                        inode: 12,
                        block: 100
                    }
                    .to_string()
                        + &if data_kept {
                            " (and 2 more such ranges)".to_string()
                        } else {
                            String::new()
                        }
                ]
            );
        }
    }

    /// A change made to a valid image.
    type Corrupt<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;

    #[test]
    fn corrupt_extent_trees_are_problems_with_inode_and_offset() {
        let at = inode_at(12) + I_BLOCK;
        let cases: Vec<(Corrupt, ExtError)> = vec![
            (
                Box::new(|img| put16(img, at, 0x1234)),
                ExtError::ExtentNode {
                    inode: 12,
                    offset: at as u64,
                    problem: "bad magic 0x1234 (expected 0xf30a)".into(),
                },
            ),
            (
                Box::new(|img| put16(img, at + 4, 5)),
                ExtError::ExtentNode {
                    inode: 12,
                    offset: at as u64,
                    problem: "eh_max 5 is more than the 4 entries that fit".into(),
                },
            ),
            (
                Box::new(|img| put16(img, at + 2, 7)),
                ExtError::ExtentNode {
                    inode: 12,
                    offset: at as u64,
                    problem: "eh_entries 7 is more than eh_max 4".into(),
                },
            ),
            (
                Box::new(|img| put16(img, at + 6, 6)),
                ExtError::ExtentNode {
                    inode: 12,
                    offset: at as u64,
                    problem: "depth 6 is more than 5".into(),
                },
            ),
            (
                Box::new(|img| index(img, at, 0, 5000)),
                ExtError::BlockOutOfRange {
                    inode: 12,
                    offset: (at + 16) as u64,
                    block: 5000,
                    first_data_block: 1,
                    blocks_count: 2048,
                },
            ),
            (
                // The child claims depth 1 under a depth-1 root.
                Box::new(|img| put16(img, 100 * BS + 6, 1)),
                ExtError::ExtentNode {
                    inode: 12,
                    offset: 100 * BS as u64,
                    problem: "depth 1 where its index entry expects 0".into(),
                },
            ),
            (
                // Two index entries to the same block.
                Box::new(|img| {
                    put16(img, at + 2, 2);
                    index(img, at, 1, 100);
                }),
                ExtError::TreeBlockShared {
                    inode: 12,
                    offset: (at + 12 + 12 + 4) as u64,
                    block: 100,
                },
            ),
        ];
        for (corrupt, want) in cases {
            let mut img = image();
            add_inode(&mut img, S_IFDIR | 0o755, flags::EXTENTS);
            header(&mut img, at, 1, 4, 1);
            index(&mut img, at, 0, 100);
            header(&mut img, 100 * BS, 1, 84, 0);
            extent(&mut img, 100 * BS, 0, 0, 1, 200);
            corrupt(&mut img);
            let (w, _) = walked(img);
            assert_eq!(w.problems.first(), Some(&want.to_string()), "{want}");
        }
    }

    #[test]
    fn indirect_trees_loop_once() {
        // A double-indirect block that points at itself.
        let mut img = image();
        let at = add_inode(&mut img, S_IFREG | 0o644, 0) + I_BLOCK;
        put32(&mut img, at + 13 * 4, 100);
        put32(&mut img, 100 * BS, 100);
        put32(&mut img, 100 * BS + 4, 101);
        let (w, _) = walked(img);
        assert!(kept(&w, 100) && kept(&w, 101));
        assert_eq!(
            w.problems[0],
            ExtError::TreeBlockShared {
                inode: 12,
                offset: 100 * BS as u64,
                block: 100
            }
            .to_string()
        );
    }

    #[test]
    fn inline_data_scrub_wipes_and_reseals() {
        let mut img = image();
        // metadata_csum, 256-byte inodes do not fit this image; the
        // checksum is tested on a 128-byte inode (low half only).
        let s = SUPERBLOCK_OFFSET as usize;
        let ro = crate::bytes::u32le(&img, s + 0x64) | ro_compat::METADATA_CSUM;
        put32(&mut img, s + 0x64, ro);
        img[s + 0x175] = 1;
        let c = super::super::checksum::crc32c(!0, &img[s..s + 0x3FC]);
        put32(&mut img, s + 0x3FC, c);
        let at = add_inode(&mut img, S_IFREG | 0o644, flags::INLINE_DATA);
        img[at + I_BLOCK..at + I_BLOCK + 11].copy_from_slice(b"secret text");
        put16(&mut img, at + 4, 11);
        let src = MemSource::new(img.clone(), "test.img");
        let ext = Ext::open(&src).expect("opens");
        let alloc = ext.allocation(&src).unwrap();
        let w = walk(&ext, &src, &alloc.map).unwrap();
        let scrub = w.scrub.expect("a scrubber");
        // The inode table's block, whole, then split across two pieces.
        let b0 = at / BS * BS;
        let mut block = img[b0..b0 + BS].to_vec();
        scrub.scrub(&src, b0 as u64, &mut block);
        let off = at - b0;
        assert!(
            block[off + I_BLOCK..off + I_BLOCK + 60]
                .iter()
                .all(|&b| b == 0)
        );
        let sb = ext.superblock();
        let (lo, hi) = inode::checksum(sb, 12, &block[off..off + 128]);
        assert_eq!(hi, None);
        assert_eq!(crate::bytes::u16le(&block, off + 0x7C), lo);
        // Everything else unchanged.
        let mut want = img[b0..b0 + BS].to_vec();
        want[off + I_BLOCK..off + I_BLOCK + 60].fill(0);
        want[off + 0x7C..off + 0x7E].copy_from_slice(&lo.to_le_bytes());
        assert_eq!(block, want);
        let split = at + I_BLOCK + 5;
        let mut a = img[b0..split].to_vec();
        let mut b = img[split..b0 + BS].to_vec();
        scrub.scrub(&src, b0 as u64, &mut a);
        scrub.scrub(&src, split as u64, &mut b);
        a.extend(b);
        assert_eq!(a, want);
    }
}
