//! ext2, ext3 and ext4: the allocation map from the block-group bitmaps.
//!
//! The superblock and descriptors are parsed here (ext4-view keeps them
//! private). Layout rules follow the kernel (`descriptor_loc`,
//! `ext4_bg_has_super`) and e2fsprogs (`ext2fs_super_and_bgd_loc2`) for
//! BLOCK_UNINIT groups, whose bitmaps are not on disk.
//!
//! What the kernel or e2fsck refuses before trusting the bitmaps is refused
//! here too, as an [`ExtError`]: descriptors pointing outside the
//! filesystem, or outside their group without flex_bg, or at a block some
//! other metadata uses (`ext2fs_check_desc`); a bad MMP block. Counters
//! that disagree with the bitmaps are inconsistencies, which
//! `--ignore-fs-check` relaxes.

pub mod checksum;
mod error;
pub mod group_desc;
pub mod inode;
mod layout;
pub(crate) mod metadata;
mod mmp;
pub mod superblock;

pub use error::ExtError;
use layout::{
    check_descriptor, check_in_group, check_itable_unused, check_overlaps, check_resize_inode,
};
use mmp::{MMP_SEQ_CLEAN, MMP_SEQ_FSCK, read_mmp};

use std::fmt::Write as _;

use group_desc::GroupDesc;
use superblock::{
    STATE_ERROR, STATE_VALID, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, Superblock, compat, incompat,
    ro_compat,
};

use super::{Allocation, Filesystem, FsKind, Metadata, Unclean};
use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;

/// Largest read made while loading descriptors and bitmaps.
const MAX_METADATA_READ: u64 = 4 << 20;
/// How many disagreeing groups a message lists before "and N more".
const MAX_LISTED: usize = 5;

/// An ext2/3/4 filesystem with its descriptors loaded.
pub struct Ext {
    sb: Superblock,
    descs: Vec<GroupDesc>,
    /// `mmp_seq` of the MMP block, with the MMP feature.
    mmp_seq: Option<u32>,
    /// Survive unreadable bitmaps (rescue mode).
    rescue: bool,
    /// Problems met while opening (a superblock read from a backup).
    warnings: Vec<String>,
    /// The superblock is a backup, whose "valid" state bit e2fsprogs
    /// always clears when it writes backups.
    from_backup: bool,
}

impl Ext {
    /// Whether `src` carries the ext magic.
    pub fn probe(src: &dyn Source) -> Result<bool> {
        if src.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Ok(false);
        }
        match src.read_vec(SUPERBLOCK_OFFSET + 0x38, 2) {
            Ok(magic) => Ok(u16::from_le_bytes([magic[0], magic[1]]) == superblock::EXT_MAGIC),
            // An unreadable superblock may have a readable backup.
            Err(Error::Read { .. }) => Ok(backup_superblock(src).is_some()),
            Err(e) => Err(e),
        }
    }

    /// Reads and validates the superblock (group 1's backup when the
    /// primary cannot be read) and the group descriptors.
    pub fn open(src: &dyn Source) -> Result<Self> {
        let mut warnings = Vec::new();
        let sb = match src.read_vec(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE) {
            Ok(raw) => Superblock::from_bytes(&raw)?,
            Err(e @ Error::Read { .. }) => {
                let Some((at, sb)) = backup_superblock(src) else {
                    return Err(e);
                };
                warnings.push(format!(
                    "the superblock is unreadable; using the backup at byte {at} (block {}), whose free counts may be stale; repair the copy with e2fsck -b {}",
                    at / u64::from(sb.block_size),
                    at / u64::from(sb.block_size)
                ));
                sb
            }
            Err(e) => return Err(e),
        };
        let fs_bytes = sb.blocks_count.saturating_mul(u64::from(sb.block_size));
        if src.size() < fs_bytes {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: fs_bytes,
                actual: src.size(),
            });
        }
        let descs = read_descriptors(src, &sb)?;
        check_overlaps(&sb, &descs)?;
        let mmp_seq = read_mmp(src, &sb)?;
        Ok(Ext {
            sb,
            descs,
            mmp_seq,
            rescue: false,
            from_backup: !warnings.is_empty(),
            warnings,
        })
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The group descriptors, one per group, as read and checked by
    /// [`Ext::open`] (the file reader finds inode tables through them).
    pub(crate) fn descriptors(&self) -> &[GroupDesc] {
        &self.descs
    }

    /// Marks what a BLOCK_UNINIT group uses (e2fsprogs'
    /// `mark_uninit_bg_group_blocks`: the superblock and descriptor copies
    /// of `ext2fs_super_and_bgd_loc2`, and the group's own metadata).
    fn mark_uninit_group(&self, map: &mut AllocationMap, g: u32) {
        let sb = &self.sb;
        let bs = u64::from(sb.block_size);
        let mark = |map: &mut AllocationMap, block: u64, n: u64| {
            map.mark_bytes_used(
                block * bs,
                n.min(sb.blocks_count.saturating_sub(block)) * bs,
            );
        };
        let base = sb.base_metadata(g);
        if let Some((block, n)) = base.superblock {
            mark(map, block, n);
        }
        if let Some((block, n)) = base.old_desc {
            mark(map, block, n);
        }
        if let Some(block) = base.new_desc {
            mark(map, block, 1);
        }
        let d = &self.descs[g as usize];
        mark(map, d.block_bitmap, 1);
        mark(map, d.inode_bitmap, 1);
        mark(map, d.inode_table, sb.inode_table_blocks());
    }

    /// First cluster and number of clusters of group `g`.
    fn group_clusters(&self, g: u32) -> (u64, u64) {
        let ratio = u64::from(self.sb.cluster_ratio());
        (
            self.sb.group_first_block(g) / ratio,
            self.sb.group_blocks(g).div_ceil(ratio),
        )
    }
}

/// The first backup superblock (group 1's). For each block size it is
/// looked for where e2fsck looks (group 1 of `8 * block_size` blocks per
/// group, mke2fs's default), then at smaller power-of-two group sizes.
/// Only a valid superblock of that block size that places group 1 there
/// counts.
fn backup_superblock(src: &dyn Source) -> Option<(u64, Superblock)> {
    (0..=6)
        .flat_map(|log| (0..=5).map(move |shift| (1024u64 << log, shift)))
        .find_map(|(bs, shift)| {
            let blocks_per_group = (8 * bs) >> shift;
            let first_data_block = u64::from(bs == 1024);
            let at = (first_data_block + blocks_per_group) * bs;
            let raw = src.read_vec(at, SUPERBLOCK_SIZE).ok()?;
            let sb = Superblock::from_bytes(&raw).ok()?;
            (u64::from(sb.block_size) == bs && sb.group_first_block(1) * bs == at)
                .then_some((at, sb))
        })
}

/// Reads every descriptor block, coalescing adjacent blocks into one read.
fn read_descriptors(src: &dyn Source, sb: &Superblock) -> Result<Vec<GroupDesc>> {
    let bs = u64::from(sb.block_size);
    let ds = usize::from(sb.desc_size);
    let dpb = sb.descs_per_block();
    let nblocks = sb.desc_blocks();
    let mut descs = Vec::with_capacity(sb.groups as usize);
    let mut i = 0;
    while i < nblocks {
        let first = sb.descriptor_block(i);
        let mut n = 1;
        while i + n < nblocks
            && u64::from(n) * bs < MAX_METADATA_READ
            && sb.descriptor_block(i + n) == first + u64::from(n)
        {
            n += 1;
        }
        let last = first + u64::from(n) - 1;
        if last >= sb.blocks_count {
            let bad = (i..i + n)
                .find(|&k| sb.descriptor_block(k) >= sb.blocks_count)
                .unwrap_or(i);
            return Err(ExtError::DescriptorTableOutOfRange {
                index: bad,
                block: sb.descriptor_block(bad),
                blocks_count: sb.blocks_count,
            }
            .into());
        }
        let buf = src.read_vec(first * bs, (u64::from(n) * bs) as usize)?;
        for k in 0..n {
            for j in 0..dpb {
                let g = (i + k) * dpb + j;
                if g >= sb.groups {
                    break;
                }
                let off = k as usize * bs as usize + j as usize * ds;
                let d = GroupDesc::from_bytes(sb, g, &buf[off..off + ds]);
                let at = (first + u64::from(k)) * bs + (j as usize * ds) as u64;
                check_descriptor(sb, g, &d, at)?;
                check_in_group(sb, g, &d, at)?;
                descs.push(d);
            }
        }
        i += n;
    }
    Ok(descs)
}

impl Filesystem for Ext {
    fn set_rescue(&mut self, on: bool) {
        self.rescue = on;
    }

    fn kind(&self) -> FsKind {
        let sb = &self.sb;
        let ext3_incompat = incompat::FILETYPE | incompat::RECOVER | incompat::META_BG;
        let ext3_ro = ro_compat::SPARSE_SUPER | ro_compat::LARGE_FILE | 0x4; // BTREE_DIR
        if sb.feature_incompat & !ext3_incompat != 0 || sb.feature_ro_compat & !ext3_ro != 0 {
            FsKind::Ext4
        } else if sb.has_compat(compat::HAS_JOURNAL) {
            FsKind::Ext3
        } else {
            FsKind::Ext2
        }
    }

    fn cluster_size(&self) -> u32 {
        self.sb.cluster_size
    }

    fn device_size(&self) -> u64 {
        self.sb.blocks_count * u64::from(self.sb.block_size)
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let sb = &self.sb;
        let uuid = sb
            .uuid
            .iter()
            .enumerate()
            .fold(String::new(), |mut s, (i, b)| {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{b:02x}");
                s
            });
        let state = match self.unclean() {
            None => "clean".to_string(),
            Some(u) => u.problem,
        };
        vec![
            ("label", sb.label.clone()),
            ("uuid", uuid),
            ("block size", sb.block_size.to_string()),
            ("blocks", sb.blocks_count.to_string()),
            ("free blocks", format!("{} (superblock)", sb.free_blocks)),
            ("block groups", sb.groups.to_string()),
            (
                "features",
                format!(
                    "compat 0x{:x}, incompat 0x{:x}, ro_compat 0x{:x}",
                    sb.feature_compat, sb.feature_incompat, sb.feature_ro_compat
                ),
            ),
            ("last mounted on", sb.last_mounted.clone()),
            ("state", state),
        ]
    }

    fn unclean(&self) -> Option<Unclean> {
        let sb = &self.sb;
        let mmp = self.mmp_seq.filter(|&s| s != MMP_SEQ_CLEAN);
        let (problem, hint) = if mmp == Some(MMP_SEQ_FSCK) {
            (
                "its multiple-mount protection block says e2fsck is running on it",
                "wait for e2fsck to finish, or run e2fsck -f",
            )
        } else if mmp.is_some() {
            (
                "its multiple-mount protection block says it is mounted (on this or another node)",
                "unmount it everywhere, or run e2fsck -f",
            )
        } else if sb.state & STATE_ERROR != 0 {
            ("the filesystem is marked as having errors", "run e2fsck -f")
        } else if sb.has_incompat(incompat::RECOVER) {
            (
                "the journal needs recovery (the filesystem is mounted or was not cleanly unmounted)",
                "unmount it, or mount and unmount it once, or run e2fsck",
            )
        } else if sb.state & STATE_VALID == 0 && !self.from_backup {
            (
                "the filesystem was not cleanly unmounted (or is mounted)",
                "unmount it, or run e2fsck -f",
            )
        } else {
            return None;
        };
        Some(Unclean {
            problem: problem.to_string(),
            hint,
        })
    }

    fn fsck_hint(&self) -> &'static str {
        "e2fsck -f"
    }

    fn metadata(&self, src: &dyn Source) -> Result<Metadata> {
        let mut alloc = self.allocation(src)?;
        let walked = metadata::walk(self, src, &alloc.map)?;
        alloc.inconsistencies.extend(walked.problems);
        alloc.details.extend(walked.details);
        alloc.map = walked.map;
        Ok(Metadata {
            allocation: alloc,
            scrub: walked.scrub,
        })
    }

    fn allocation(&self, src: &dyn Source) -> Result<Allocation> {
        let sb = &self.sb;
        let bs = u64::from(sb.block_size);
        let mut map = AllocationMap::new(sb.cluster_size, self.device_size());
        // The boot block and the primary superblock, always.
        map.mark_bytes_used(0, SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64);
        let mut inconsistencies = Vec::new();
        // Reported after the block counts, which matter most to a copy.
        let mut later = Vec::new();

        let csum =
            sb.has_ro_compat(ro_compat::GDT_CSUM) || sb.has_ro_compat(ro_compat::METADATA_CSUM);
        if let Err(e) = check_resize_inode(sb) {
            later.push(e.to_string());
        }
        let mut to_read: Vec<(u64, u32)> = Vec::with_capacity(self.descs.len());
        let mut inode_bitmaps: Vec<(u64, u32)> = Vec::with_capacity(self.descs.len());
        let mut bad_csum = Vec::new();
        let mut bad_unused = Vec::new();
        let mut bad_inode_groups = Vec::new();
        for (g, d) in self.descs.iter().enumerate() {
            let g = g as u32;
            if csum && !d.checksum_ok {
                bad_csum.push(g);
            }
            if csum && let Err(e) = check_itable_unused(sb, g, d) {
                bad_unused.push(e);
            }
            // An INODE_UNINIT group has no inode in use (e2fsprogs reads
            // its bitmap as zeros when the descriptor checksum holds).
            if csum && d.inode_uninit() && d.checksum_ok {
                if d.free_inodes != sb.inodes_per_group {
                    bad_inode_groups.push(g);
                }
            } else {
                inode_bitmaps.push((d.inode_bitmap, g));
            }
            if csum && d.block_uninit() {
                self.mark_uninit_group(&mut map, g);
                if d.checksum_ok {
                    continue;
                }
            }
            to_read.push((d.block_bitmap, g));
        }
        if !bad_csum.is_empty() {
            inconsistencies.push(format!(
                "group descriptor checksum mismatch in group{} {}",
                if bad_csum.len() > 1 { "s" } else { "" },
                list(&bad_csum)
            ));
        }
        if let Some(first) = bad_unused.first() {
            later.push(first_and_more(first, bad_unused.len()));
        }

        let mut warnings = self.warnings.clone();
        let unreadable = read_blocks(src, bs, &mut to_read, self.rescue, |g, bitmap| {
            let (c0, nc) = self.group_clusters(g);
            map.or_bitmap(c0, bitmap, nc);
        })?;
        // Rescue: a group whose bitmap cannot be read is copied whole.
        let mut skip = vec![false; self.descs.len()];
        for &(block, g) in &unreadable {
            let (c0, nc) = self.group_clusters(g);
            map.mark_used(c0, nc);
            skip[g as usize] = true;
            warnings.push(format!(
                "the block bitmap of group {g} (block {block}) is unreadable: all {nc} of its clusters are copied"
            ));
        }

        // The inode bitmaps against the descriptors' free inode counts and
        // bg_itable_unused, as e2fsck's pass 5 and pass 1 do.
        let ipg = sb.inodes_per_group;
        let mut beyond_unused = Vec::new();
        let unreadable_inodes =
            read_blocks(src, bs, &mut inode_bitmaps, self.rescue, |g, bitmap| {
                let d = &self.descs[g as usize];
                let used = count_ones(bitmap, ipg);
                if ipg - used != d.free_inodes {
                    bad_inode_groups.push(g);
                }
                if csum && d.itable_unused > 0 && d.itable_unused <= ipg {
                    let first_unused = ipg - d.itable_unused;
                    if let Some(i) = first_one(bitmap, first_unused, ipg) {
                        beyond_unused.push((
                            g,
                            ExtError::InodeBeyondUnused {
                                group: g,
                                offset: d.inode_bitmap * bs + u64::from(i / 8),
                                inode: u64::from(g) * u64::from(ipg) + u64::from(i) + 1,
                                unused: d.itable_unused,
                            },
                        ));
                    }
                }
            })?;
        for &(block, g) in &unreadable_inodes {
            warnings.push(format!(
                "the inode bitmap of group {g} (block {block}) is unreadable: its inode counts are not checked"
            ));
        }
        if !bad_inode_groups.is_empty() {
            bad_inode_groups.sort_unstable();
            later.push(format!(
                "the free inode count in the descriptor of group{} {} differs from its inode bitmap",
                if bad_inode_groups.len() > 1 { "s" } else { "" },
                list(&bad_inode_groups)
            ));
        }
        beyond_unused.sort_by_key(|&(g, _)| g);
        if let Some((_, first)) = beyond_unused.first() {
            later.push(first_and_more(first, beyond_unused.len()));
        }

        // Cross-check the bitmaps against the descriptors and superblock.
        let mut total_free = 0u64;
        let mut bad_groups = Vec::new();
        for (g, d) in self.descs.iter().enumerate() {
            let (c0, nc) = self.group_clusters(g as u32);
            let free = nc - map.count_used(c0, nc);
            total_free += free;
            if !skip[g] && free != u64::from(d.free_clusters) {
                bad_groups.push(g as u32);
            }
        }
        if !bad_groups.is_empty() {
            inconsistencies.push(format!(
                "the free cluster count in the descriptor of group{} {} differs from its bitmap",
                if bad_groups.len() > 1 { "s" } else { "" },
                list(&bad_groups)
            ));
        }
        // The superblock's total is a summary the kernel and e2fsck
        // recompute from the group descriptors (e2fsprogs' f_readonly_fsck
        // has garbage in its high half and passes fsck); the descriptors
        // are checked above, so a wrong total alone is reported, not refused.
        let free_blocks = total_free * u64::from(sb.cluster_ratio());
        if free_blocks != sb.free_blocks && unreadable.is_empty() {
            warnings.push(format!(
                "the superblock says {} blocks are free, the bitmaps say {} (a summary e2fsck recomputes)",
                sb.free_blocks, free_blocks
            ));
        }
        inconsistencies.extend(later);
        Ok(Allocation {
            map,
            inconsistencies,
            warnings,
            details: Vec::new(),
        })
    }
}

/// `first`'s message, and how many more groups have the same problem.
fn first_and_more(first: &ExtError, n: usize) -> String {
    let mut s = first.to_string();
    if n > 1 {
        let _ = write!(
            s,
            " (and {} more group{} like it)",
            n - 1,
            if n > 2 { "s" } else { "" }
        );
    }
    s
}

/// Reads the blocks of `list` ((block, group) pairs) in block order,
/// adjacent ones (flex_bg) in one read, and calls `f(group, block bytes)`.
/// Reads the blocks of `list` ((block, group), sorted here), adjacent ones
/// in one read, and hands each to `f`. In `rescue` mode a failed read is
/// retried block by block, and the blocks that still fail are returned
/// instead of stopping the run.
fn read_blocks(
    src: &dyn Source,
    bs: u64,
    list: &mut [(u64, u32)],
    rescue: bool,
    mut f: impl FnMut(u32, &[u8]),
) -> Result<Vec<(u64, u32)>> {
    let mut unreadable = Vec::new();
    list.sort_unstable();
    let max_blocks = (MAX_METADATA_READ / bs).max(1);
    let mut i = 0;
    while i < list.len() {
        let first = list[i].0;
        let mut j = i + 1;
        while j < list.len() && list[j].0 < first + max_blocks && list[j].0 <= list[j - 1].0 + 1 {
            j += 1;
        }
        let n = list[j - 1].0 - first + 1;
        match src.read_vec(first * bs, (n * bs) as usize) {
            Ok(buf) => {
                for &(block, g) in &list[i..j] {
                    let off = ((block - first) * bs) as usize;
                    f(g, &buf[off..off + bs as usize]);
                }
            }
            Err(Error::Read { .. }) if rescue => {
                for &(block, g) in &list[i..j] {
                    match src.read_vec(block * bs, bs as usize) {
                        Ok(buf) => f(g, &buf),
                        Err(Error::Read { .. }) => unreadable.push((block, g)),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        i = j;
    }
    Ok(unreadable)
}

/// Set bits among the first `n` of an on-disk bitmap (LSB first).
fn count_ones(bitmap: &[u8], n: u32) -> u32 {
    let n = n as usize;
    let whole = n / 8;
    let mut c: u32 = bitmap[..whole].iter().map(|b| b.count_ones()).sum();
    if !n.is_multiple_of(8) {
        c += (bitmap[whole] & ((1u8 << (n % 8)) - 1)).count_ones();
    }
    c
}

/// The first set bit in `[from, to)` of an on-disk bitmap.
fn first_one(bitmap: &[u8], from: u32, to: u32) -> Option<u32> {
    (from..to).find(|&i| bitmap[(i / 8) as usize] & (1 << (i % 8)) != 0)
}

fn list(groups: &[u32]) -> String {
    let mut s = groups
        .iter()
        .take(MAX_LISTED)
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if groups.len() > MAX_LISTED {
        let _ = write!(s, " and {} more", groups.len() - MAX_LISTED);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::checksum::crc32c;
    use super::mmp::{MMP_CHECKSUM, MMP_MAGIC, S_MMP_BLOCK};
    use super::*;
    use crate::bytes::u32le;
    use crate::source::MemSource;

    pub(super) const BS: usize = 1024;
    /// Byte offset of the descriptor table (block 2).
    const GDT: usize = 2 * BS;

    pub(super) fn put16(img: &mut [u8], off: usize, v: u16) {
        img[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    pub(super) fn put32(img: &mut [u8], off: usize, v: u32) {
        img[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn sb_put32(img: &mut [u8], field: usize, v: u32) {
        put32(img, SUPERBLOCK_OFFSET as usize + field, v);
    }

    /// Points group `g`'s descriptor at its bitmaps and inode table.
    fn set_desc(img: &mut [u8], g: usize, bb: u32, ib: u32, it: u32) {
        let d = GDT + g * 32;
        put32(img, d, bb);
        put32(img, d + 4, ib);
        put32(img, d + 8, it);
    }

    /// A minimal ext2 volume: 1 KiB blocks, 2048 blocks in two groups
    /// (1..=1024 and 1025..=2047), sparse_super, 128 inodes of 128 bytes
    /// per group (16 inode table blocks). Group 0: superblock 1,
    /// descriptors 2, block bitmap 3, inode bitmap 4, inode table 5..=20.
    /// Group 1: superblock 1025, descriptors 1026, bitmaps 1027 and 1028,
    /// inode table 1029..=1044. The bitmaps and counts agree.
    pub(super) fn image() -> Vec<u8> {
        let mut img = vec![0u8; 2048 * BS];
        let s = SUPERBLOCK_OFFSET as usize;
        sb_put32(&mut img, 0x0, 256); // s_inodes_count
        sb_put32(&mut img, 0x4, 2048); // s_blocks_count
        sb_put32(&mut img, 0xC, 1004 + 1003); // s_free_blocks_count
        sb_put32(&mut img, 0x14, 1); // s_first_data_block
        sb_put32(&mut img, 0x20, 1024); // s_blocks_per_group
        sb_put32(&mut img, 0x24, 1024); // s_clusters_per_group
        sb_put32(&mut img, 0x28, 128); // s_inodes_per_group
        put16(&mut img, s + 0x38, superblock::EXT_MAGIC);
        put16(&mut img, s + 0x3A, STATE_VALID);
        sb_put32(&mut img, 0x4C, 1); // s_rev_level
        put16(&mut img, s + 0x58, 128); // s_inode_size
        sb_put32(&mut img, 0x64, ro_compat::SPARSE_SUPER);
        set_desc(&mut img, 0, 3, 4, 5);
        set_desc(&mut img, 1, 1027, 1028, 1029);
        // Used: blocks 1..=20 of group 0 and 1025..=1044 of group 1.
        for (g, bitmap, free) in [(0, 3, 1004u16), (1, 1027, 1003)] {
            put16(&mut img, GDT + g * 32 + 0xC, free);
            let b = &mut img[bitmap * BS..bitmap * BS + 3];
            b.copy_from_slice(&[0xff, 0xff, 0x0f]);
        }
        // Inodes 1..=11 (the reserved ones) in use.
        img[4 * BS..4 * BS + 2].copy_from_slice(&[0xff, 0x07]);
        put16(&mut img, GDT + 0xE, 117);
        put16(&mut img, GDT + 32 + 0xE, 128);
        img
    }

    fn open(img: Vec<u8>) -> Result<Ext> {
        Ext::open(&MemSource::new(img, "test.img"))
    }

    fn open_err(img: Vec<u8>) -> ExtError {
        match open(img) {
            Err(Error::Ext(e)) => e,
            Err(e) => panic!("expected an ext error, got {e}"),
            Ok(_) => panic!("expected an ext error, the image opened"),
        }
    }

    /// Sets an incompat feature bit.
    fn add_incompat(img: &mut [u8], bit: u32) {
        let off = SUPERBLOCK_OFFSET as usize + 0x60;
        let v = u32le(img, off) | bit;
        put32(img, off, v);
    }

    #[test]
    fn minimal_image_is_consistent() {
        let img = image();
        let src = MemSource::new(img, "test.img");
        let ext = Ext::open(&src).expect("opens");
        assert!(ext.unclean().is_none());
        let alloc = ext.allocation(&src).expect("allocation");
        assert_eq!(alloc.inconsistencies, Vec::<String>::new());
        // Boot block, 1..=20, 1025..=1044.
        assert_eq!(alloc.map.used_clusters(), 41);
    }

    #[test]
    fn block_bitmap_inside_descriptor_table() {
        let mut img = image();
        set_desc(&mut img, 0, 2, 4, 5);
        let e = open_err(img);
        assert_eq!(
            e,
            ExtError::OverlapsDescriptors {
                group: 0,
                offset: GDT as u64,
                field: "block bitmap",
                block: 2,
                gdt_group: 0,
                first: 2,
                last: 2,
            }
        );
        assert!(e.to_string().contains("at byte 2048"), "{e}");
    }

    #[test]
    fn reserved_gdt_blocks_count_as_descriptor_table() {
        let mut img = image();
        put16(&mut img, SUPERBLOCK_OFFSET as usize + 0xCE, 8);
        // Descriptors at 2, reserved GDT blocks 3..=10: the bitmaps at 3
        // and 4 sit in the reserved blocks.
        assert_eq!(
            open_err(img.clone()),
            ExtError::OverlapsDescriptors {
                group: 0,
                offset: GDT as u64,
                field: "block bitmap",
                block: 3,
                gdt_group: 0,
                first: 2,
                last: 10,
            }
        );
        // So do group 1's, in its backup (1026..=1034).
        set_desc(&mut img, 0, 11, 12, 13);
        assert_eq!(
            open_err(img),
            ExtError::OverlapsDescriptors {
                group: 1,
                offset: GDT as u64 + 32,
                field: "block bitmap",
                block: 1027,
                gdt_group: 1,
                first: 1026,
                last: 1034,
            }
        );
    }

    #[test]
    fn bitmap_on_backup_superblock() {
        let mut img = image();
        add_incompat(&mut img, incompat::FLEX_BG);
        set_desc(&mut img, 0, 1025, 4, 5);
        assert_eq!(
            open_err(img),
            ExtError::OverlapsSuperblock {
                group: 0,
                offset: GDT as u64,
                field: "block bitmap",
                block: 1025,
                sb_group: 1,
            }
        );
    }

    #[test]
    fn inode_table_over_another_groups_bitmap() {
        let mut img = image();
        add_incompat(&mut img, incompat::FLEX_BG);
        // Group 0's inode table 1100..=1115 starts on group 1's block bitmap.
        set_desc(&mut img, 0, 3, 4, 1100);
        set_desc(&mut img, 1, 1100, 1028, 1029);
        let e = open_err(img);
        assert_eq!(
            e,
            ExtError::MetadataOverlap {
                group: 0,
                offset: GDT as u64,
                field: "inode table",
                block: 1100,
                other_group: 1,
                other_offset: GDT as u64 + 32,
                other_field: "block bitmap",
            }
        );
        assert!(e.to_string().contains("at byte 2080"), "{e}");
    }

    #[test]
    fn bitmap_inside_another_groups_inode_table() {
        let mut img = image();
        add_incompat(&mut img, incompat::FLEX_BG);
        set_desc(&mut img, 1, 10, 1028, 1029);
        assert_eq!(
            open_err(img),
            ExtError::MetadataOverlap {
                group: 1,
                offset: GDT as u64 + 32,
                field: "block bitmap",
                block: 10,
                other_group: 0,
                other_offset: GDT as u64,
                other_field: "inode table",
            }
        );
    }

    #[test]
    fn same_block_for_both_bitmaps() {
        // e2fsprogs' f_overfsblks.
        let mut img = image();
        set_desc(&mut img, 0, 3, 3, 5);
        assert_eq!(
            open_err(img),
            ExtError::MetadataOverlap {
                group: 0,
                offset: GDT as u64,
                field: "inode bitmap",
                block: 3,
                other_group: 0,
                other_offset: GDT as u64,
                other_field: "block bitmap",
            }
        );
    }

    #[test]
    fn metadata_outside_its_group_without_flex_bg() {
        let mut img = image();
        set_desc(&mut img, 1, 1027, 500, 1029);
        assert_eq!(
            open_err(img.clone()),
            ExtError::NotInGroup {
                group: 1,
                offset: GDT as u64 + 32,
                field: "inode bitmap",
                block: 500,
                first: 1025,
                last: 2047,
            }
        );
        // An inode table running past the end of its group.
        set_desc(&mut img, 1, 1027, 1028, 1029);
        set_desc(&mut img, 0, 3, 4, 1010);
        assert_eq!(
            open_err(img.clone()),
            ExtError::NotInGroup {
                group: 0,
                offset: GDT as u64,
                field: "inode table",
                block: 1025,
                first: 1,
                last: 1024,
            }
        );
        // With flex_bg the same layout is fine: only overlaps matter.
        add_incompat(&mut img, incompat::FLEX_BG);
        set_desc(&mut img, 0, 3, 4, 5);
        set_desc(&mut img, 1, 1027, 500, 1029);
        assert!(open(img).is_ok());
    }

    #[test]
    fn too_many_reserved_gdt_blocks() {
        let mut img = image();
        put16(&mut img, SUPERBLOCK_OFFSET as usize + 0xCE, 257);
        assert_eq!(
            open_err(img),
            ExtError::ReservedGdtBlocks {
                offset: SUPERBLOCK_OFFSET + 0xCE,
                value: 257,
                max: 256,
            }
        );
    }

    /// Turns on MMP with its block at 1100 and writes that block.
    fn with_mmp(img: &mut [u8], magic: u32, seq: u32) {
        add_incompat(img, incompat::MMP);
        sb_put32(img, S_MMP_BLOCK as usize, 1100);
        put32(img, 1100 * BS, magic);
        put32(img, 1100 * BS + 4, seq);
        // The block is in use.
        img[1027 * BS + 9] |= 1 << 3; // bit 75 of group 1: block 1100
        put16(img, GDT + 32 + 0xC, 1002);
        sb_put32(img, 0xC, 1004 + 1002);
    }

    #[test]
    fn mmp_block_checked_like_the_kernel() {
        let mut img = image();
        with_mmp(&mut img, MMP_MAGIC, MMP_SEQ_CLEAN);
        let src = MemSource::new(img.clone(), "test.img");
        let ext = Ext::open(&src).expect("opens");
        assert!(ext.unclean().is_none());
        assert_eq!(ext.allocation(&src).unwrap().inconsistencies.len(), 0);

        let mut bad = img.clone();
        put32(&mut bad, 1100 * BS, 0xffff_ffff);
        assert_eq!(
            open_err(bad),
            ExtError::MmpMagic {
                offset: 1100 * BS as u64,
                found: 0xffff_ffff,
            }
        );

        let mut bad = img.clone();
        sb_put32(&mut bad, S_MMP_BLOCK as usize, 5000);
        assert_eq!(
            open_err(bad),
            ExtError::MmpBlockRange {
                offset: SUPERBLOCK_OFFSET + S_MMP_BLOCK,
                block: 5000,
                first_data_block: 1,
                blocks_count: 2048,
            }
        );

        // In use on some node, or e2fsck running: not clean.
        for seq in [12345, MMP_SEQ_FSCK] {
            let mut busy = img.clone();
            put32(&mut busy, 1100 * BS + 4, seq);
            let ext = open(busy).expect("opens");
            assert!(ext.unclean().unwrap().problem.contains("multiple-mount"));
        }
    }

    #[test]
    fn mmp_checksum_with_metadata_csum() {
        let mut img = image();
        with_mmp(&mut img, MMP_MAGIC, MMP_SEQ_CLEAN);
        let s = SUPERBLOCK_OFFSET as usize;
        let ro = u32le(&img, s + 0x64) | ro_compat::METADATA_CSUM;
        put32(&mut img, s + 0x64, ro);
        img[s + 0x175] = 1; // s_checksum_type: crc32c
        let c = crc32c(!0, &img[s..s + 0x3FC]);
        put32(&mut img, s + 0x3FC, c);
        let seed = crc32c(!0, &img[s + 0x68..s + 0x78]);
        let computed = crc32c(seed, &img[1100 * BS..1100 * BS + MMP_CHECKSUM]);
        assert_eq!(
            open_err(img.clone()),
            ExtError::MmpChecksum {
                offset: (1100 * BS + MMP_CHECKSUM) as u64,
                stored: 0,
                computed,
            }
        );
        put32(&mut img, 1100 * BS + MMP_CHECKSUM, computed);
        assert!(open(img).is_ok());
    }

    #[test]
    fn itable_unused_beyond_free_inodes() {
        let mut img = image();
        let s = SUPERBLOCK_OFFSET as usize;
        let ro = u32le(&img, s + 0x64) | ro_compat::GDT_CSUM;
        put32(&mut img, s + 0x64, ro);
        let d = GDT + 32;
        put16(&mut img, d + 0xE, 100); // bg_free_inodes_count
        put16(&mut img, d + 0x1C, 120); // bg_itable_unused
        let src = MemSource::new(img, "test.img");
        let ext = Ext::open(&src).expect("opens");
        let e = check_itable_unused(&ext.sb, 1, &ext.descs[1]).unwrap_err();
        assert_eq!(
            e,
            ExtError::ItableUnused {
                group: 1,
                offset: (d + 0x1C) as u64,
                unused: 120,
                free: 100,
                per_group: 128,
            }
        );
        assert!(check_itable_unused(&ext.sb, 0, &ext.descs[0]).is_ok());
        // A count disagreement: --ignore-fs-check relaxes it.
        let alloc = ext.allocation(&src).unwrap();
        assert!(
            alloc.inconsistencies.contains(&e.to_string()),
            "{:?}",
            alloc.inconsistencies
        );
    }

    fn inconsistencies(img: Vec<u8>) -> Vec<String> {
        let src = MemSource::new(img, "test.img");
        let ext = Ext::open(&src).expect("opens");
        ext.allocation(&src).expect("allocation").inconsistencies
    }

    #[test]
    fn free_inode_count_against_inode_bitmap() {
        let mut img = image();
        put16(&mut img, GDT + 0xE, 120);
        assert_eq!(
            inconsistencies(img),
            vec![
                "the free inode count in the descriptor of group 0 differs from its inode bitmap"
                    .to_string()
            ]
        );
    }

    #[test]
    fn inode_in_use_beyond_itable_unused() {
        // e2fsprogs' f_uninit_inode_past_unused: with GDT_CSUM, group 0
        // says its last 100 inodes (29..=128) were never used, but inode 30
        // is in use.
        let mut img = image();
        let s = SUPERBLOCK_OFFSET as usize;
        let ro = u32le(&img, s + 0x64) | ro_compat::GDT_CSUM;
        put32(&mut img, s + 0x64, ro);
        put16(&mut img, GDT + 0x1C, 100);
        img[4 * BS + 3] = 0x20; // inode 30: bit 29
        put16(&mut img, GDT + 0xE, 116);
        let inc = inconsistencies(img);
        let e = ExtError::InodeBeyondUnused {
            group: 0,
            offset: 4 * BS as u64 + 3,
            inode: 30,
            unused: 100,
        };
        assert!(inc.contains(&e.to_string()), "{inc:?}");
        assert!(e.to_string().contains("byte 4099"));
    }

    #[test]
    fn inode_uninit_group_has_all_inodes_free() {
        let mut img = image();
        let s = SUPERBLOCK_OFFSET as usize;
        let ro = u32le(&img, s + 0x64) | ro_compat::GDT_CSUM;
        put32(&mut img, s + 0x64, ro);
        let sb = Superblock::from_bytes(&img[s..s + SUPERBLOCK_SIZE]).unwrap();
        let seal = |img: &mut Vec<u8>| {
            for g in 0..2 {
                let d = GDT + g * 32;
                let c = group_desc::checksum(&sb, g as u32, &img[d..d + 32]).unwrap();
                put16(img, d + 0x1E, c);
            }
        };
        // Group 1: INODE_UNINIT, and garbage in its (unread) inode bitmap.
        put16(&mut img, GDT + 32 + 0x12, group_desc::BG_INODE_UNINIT);
        img[1028 * BS] = 0xff;
        seal(&mut img);
        assert_eq!(inconsistencies(img.clone()), Vec::<String>::new());
        put16(&mut img, GDT + 32 + 0xE, 127);
        seal(&mut img);
        assert_eq!(
            inconsistencies(img),
            vec![
                "the free inode count in the descriptor of group 1 differs from its inode bitmap"
                    .to_string()
            ]
        );
    }

    #[test]
    fn resize_inode_feature_agrees_with_layout() {
        let mut img = image();
        // resize_inode with meta_bg (e2fsprogs' f_resize_inode_meta_bg).
        add_incompat(&mut img, incompat::META_BG);
        sb_put32(&mut img, 0x5C, compat::RESIZE_INODE);
        sb_put32(&mut img, 0x104, 1); // s_first_meta_bg: the whole table
        let e = ExtError::ResizeInodeWithMetaBg {
            offset: SUPERBLOCK_OFFSET + 0x5C,
        };
        assert_eq!(inconsistencies(img), vec![e.to_string()]);
        // Reserved GDT blocks without resize_inode.
        let mut img = image();
        let s = SUPERBLOCK_OFFSET as usize;
        put16(&mut img, s + 0xCE, 2);
        let sb = Superblock::from_bytes(&img[s..s + SUPERBLOCK_SIZE]).unwrap();
        assert_eq!(
            check_resize_inode(&sb),
            Err(ExtError::ReservedGdtWithoutResizeInode {
                offset: SUPERBLOCK_OFFSET + 0xCE,
                value: 2,
            })
        );
        sb_put32(&mut img, 0x5C, compat::RESIZE_INODE);
        let sb = Superblock::from_bytes(&img[s..s + SUPERBLOCK_SIZE]).unwrap();
        assert_eq!(check_resize_inode(&sb), Ok(()));
    }

    #[test]
    fn uninit_group_on_1k_bigalloc_marks_descriptors_after_superblock() {
        // 1 KiB blocks, 4 KiB clusters: 4096 blocks, one group of 8192
        // clusters would be too big, so 2 groups of 2048 blocks.
        let mut img = vec![0u8; 4096 * BS];
        let s = SUPERBLOCK_OFFSET as usize;
        sb_put32(&mut img, 0x0, 256);
        sb_put32(&mut img, 0x4, 4096);
        sb_put32(&mut img, 0x14, 0);
        sb_put32(&mut img, 0x1C, 2); // s_log_cluster_size: 4 KiB
        sb_put32(&mut img, 0x20, 2048);
        sb_put32(&mut img, 0x24, 512);
        sb_put32(&mut img, 0x28, 128);
        put16(&mut img, s + 0x38, superblock::EXT_MAGIC);
        put16(&mut img, s + 0x3A, STATE_VALID);
        sb_put32(&mut img, 0x4C, 1);
        put16(&mut img, s + 0x58, 128);
        put16(&mut img, s + 0xCE, 6); // reserved GDT: blocks 3..=8
        sb_put32(&mut img, 0x60, incompat::FLEX_BG);
        sb_put32(
            &mut img,
            0x64,
            ro_compat::SPARSE_SUPER | ro_compat::BIGALLOC | ro_compat::GDT_CSUM,
        );
        // Both groups' metadata in group 1.
        set_desc(&mut img, 0, 2100, 2101, 2104);
        set_desc(&mut img, 1, 2102, 2103, 2120);
        let sb = Superblock::from_bytes(&img[s..s + SUPERBLOCK_SIZE]).unwrap();
        let base = sb.base_metadata(0);
        assert_eq!(base.superblock, Some((0, 2)));
        assert_eq!(base.old_desc, Some((2, 7)));
        // Group 0 BLOCK_UNINIT with a good checksum: its bitmap is not read.
        put16(&mut img, GDT + 0x12, group_desc::BG_BLOCK_UNINIT);
        let c = group_desc::checksum(&sb, 0, &img[GDT..GDT + 32]).unwrap();
        put16(&mut img, GDT + 0x1E, c);
        let src = MemSource::new(img, "test.img");
        let ext = Ext::open(&src).expect("opens");
        let alloc = ext.allocation(&src).unwrap();
        // Descriptors and reserved GDT blocks are 2..=8: the last is in
        // cluster 2, which the old layout (the table from block 1, right
        // after block 0) left unmarked.
        assert!(alloc.map.is_used(0) && alloc.map.is_used(1) && alloc.map.is_used(2));
        assert!(!alloc.map.is_used(3));
    }
}
