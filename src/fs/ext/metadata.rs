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
const EXTENT_MAGIC: u16 = 0xF30A;
/// Deepest extent tree the kernel accepts (`EXT4_MAX_EXTENT_DEPTH`).
const MAX_EXTENT_DEPTH: u16 = 5;
/// `ee_len` above this marks an uninitialized extent of `ee_len - 32768`.
const INIT_MAX_LEN: u16 = 32768;
/// The bad blocks inode: its data blocks are the bad blocks themselves.
const BAD_INO: u32 = 1;

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
    };
    w.group_metadata(ext);
    w.inodes(ext)?;

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
    let details = vec![
        ("inodes walked", w.inodes.to_string()),
        ("inline files wiped", w.inline.len().to_string()),
    ];
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
    let scrub: Option<Box<dyn Scrub>> = if inline.is_empty() && keep.is_none() {
        None
    } else {
        Some(Box::new(ExtScrub {
            sb: sb.clone(),
            inline,
            keep,
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
            let Some(last) = (0..live).rev().find(|&i| i < reserved || is_set(i)) else {
                continue;
            };
            let table = d.inode_table * bs;
            let mut i = 0;
            while i <= last {
                let k = per_read.min(last + 1 - i);
                let buf = self.src.read_vec(table + i * isz, (k * isz) as usize)?;
                for j in 0..k {
                    let idx = i + j;
                    if idx < reserved || is_set(idx) {
                        let ino = (gi as u64 * u64::from(sb.inodes_per_group) + idx + 1) as u32;
                        let raw = &buf[(j * isz) as usize..((j + 1) * isz) as usize];
                        self.inode(ino, raw, table + idx * isz)?;
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
        if ind.flags & flags::EXTENTS != 0 {
            self.extent_node(ino, iblock, at, all, None)
        } else {
            self.indirect_root(ino, iblock, at, all)
        }
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
        let magic = u16le(node, 0);
        let entries = u16le(node, 2);
        let max = u16le(node, 4);
        let depth = u16le(node, 6);
        let fits = (node.len() - 12) / 12;
        let problem = if magic != EXTENT_MAGIC {
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
        };
        if let Some(problem) = problem {
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
                if len > 0 && self.in_range(ino, eat + 6, start, u64::from(len)) {
                    self.keep_inode_blocks(ino, start, u64::from(len));
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
                    self.keep_inode_blocks(ino, p, 1);
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
                        self.keep_inode_blocks(ino, s, n);
                        Some((p, 1))
                    }
                    None => Some((p, 1)),
                };
            }
        }
        if let Some((s, n)) = run {
            self.keep_inode_blocks(ino, s, n);
        }
        Ok(())
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
}

impl Scrub for ExtScrub {
    fn scrub(&self, src: &dyn Source, offset: u64, data: &mut [u8]) {
        let end = offset + data.len() as u64;
        let zero = |data: &mut [u8], a: u64, b: u64| {
            data[(a - offset) as usize..(b - offset) as usize].fill(0);
        };
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
