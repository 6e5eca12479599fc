//! ext2, ext3 and ext4: the allocation map from the block-group bitmaps.
//!
//! The superblock and descriptors are parsed here (ext4-view keeps them
//! private). Layout rules follow the kernel (`descriptor_loc`,
//! `ext4_bg_has_super`) and e2fsprogs (`ext2fs_super_and_bgd_loc2`) for
//! BLOCK_UNINIT groups, whose bitmaps are not on disk.

pub mod checksum;
pub mod group_desc;
pub mod superblock;

use std::fmt::Write as _;

use group_desc::GroupDesc;
use superblock::{
    STATE_ERROR, STATE_VALID, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, Superblock, compat, incompat,
    ro_compat,
};

use super::{Allocation, Filesystem, FsKind, Unclean};
use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;

/// Largest read made while loading descriptors and bitmaps.
const MAX_METADATA_READ: u64 = 4 << 20;
/// How many disagreeing groups a message lists before "and N more".
const MAX_LISTED: usize = 5;

/// A corrupt or unsupported ext filesystem. Offsets are absolute bytes in
/// the volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtError {
    /// `s_magic` is not 0xEF53.
    #[error("ext: bad superblock magic 0x{found:04x} at byte {offset} (expected 0xef53)")]
    BadMagic {
        /// Byte offset of `s_magic`.
        offset: u64,
        /// The value found.
        found: u16,
    },
    /// `s_checksum_type` is not crc32c.
    #[error("ext: unknown superblock checksum type {found} at byte {offset}")]
    ChecksumType {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        found: u8,
    },
    /// The metadata_csum superblock checksum does not match.
    #[error(
        "ext: superblock checksum mismatch at byte {offset}: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )]
    SuperblockChecksum {
        /// Byte offset of `s_checksum`.
        offset: u64,
        /// The stored value.
        stored: u32,
        /// The value computed over the superblock.
        computed: u32,
    },
    /// An external journal device, not a filesystem.
    #[error("ext: this is an external journal device, not a filesystem; use --fs-type raw")]
    JournalDevice,
    /// Incompatible features this version does not know.
    #[error("ext: unknown incompatible features 0x{bits:x}; use --fs-type raw")]
    UnknownIncompat {
        /// The unknown bits.
        bits: u32,
    },
    /// `s_log_block_size` out of range.
    #[error("ext: invalid block size (s_log_block_size {log}) at byte {offset}")]
    BlockSize {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        log: u32,
    },
    /// `s_log_cluster_size` out of range.
    #[error("ext: invalid cluster size (s_log_cluster_size {log}) at byte {offset}")]
    ClusterSize {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        log: u32,
    },
    /// `s_blocks_per_group` is zero.
    #[error("ext: zero blocks per group (s_blocks_per_group at byte {offset})")]
    BlocksPerGroupZero {
        /// Byte offset of the field.
        offset: u64,
    },
    /// Clusters per group zero, too many for one bitmap block, or not
    /// matching blocks per group.
    #[error(
        "ext: invalid clusters per group {value} at byte {offset} (must be a non-zero multiple of 8, at most {max}, and match the blocks per group)"
    )]
    ClustersPerGroup {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        value: u32,
        /// The largest valid value.
        max: u32,
    },
    /// `s_first_data_block` is not what the block size requires.
    #[error("ext: invalid first data block {found} at byte {offset} (expected {expected})")]
    FirstDataBlock {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        found: u32,
        /// The value the block size requires.
        expected: u32,
    },
    /// `s_blocks_count` too small.
    #[error("ext: invalid block count {blocks} at byte {offset}")]
    BlocksCount {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        blocks: u64,
    },
    /// `s_inode_size` invalid.
    #[error("ext: invalid inode size {size} at byte {offset}")]
    InodeSize {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        size: u16,
    },
    /// `s_inodes_per_group` invalid.
    #[error("ext: invalid inodes per group {value} at byte {offset}")]
    InodesPerGroup {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        value: u32,
    },
    /// `s_desc_size` invalid.
    #[error("ext: invalid group descriptor size {size} at byte {offset}")]
    DescSize {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        size: u16,
    },
    /// `s_inodes_count` disagrees with the group geometry.
    #[error(
        "ext: inode count {inodes} at byte {offset} does not match the group geometry ({expected} expected)"
    )]
    InodesCount {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        inodes: u32,
        /// groups × inodes per group.
        expected: u64,
    },
    /// `s_first_meta_bg` past the descriptor table.
    #[error(
        "ext: first meta block group {value} at byte {offset} is past the descriptor table ({desc_blocks} blocks)"
    )]
    FirstMetaBg {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        value: u32,
        /// Blocks in the descriptor table.
        desc_blocks: u32,
    },
    /// A group descriptor block lies past the end of the filesystem.
    #[error(
        "ext: group descriptor block {index} is at block {block}, past the end of the filesystem ({blocks_count} blocks)"
    )]
    DescriptorTableOutOfRange {
        /// Index of the descriptor block.
        index: u32,
        /// Where it would be.
        block: u64,
        /// Blocks in the filesystem.
        blocks_count: u64,
    },
    /// A descriptor points a bitmap or the inode table outside the
    /// filesystem.
    #[error(
        "ext: group {group} descriptor (at byte {offset}) puts its {field} at block {block}, outside the filesystem (blocks {first_data_block}..{blocks_count})"
    )]
    DescriptorField {
        /// The group.
        group: u32,
        /// Byte offset of the descriptor.
        offset: u64,
        /// "block bitmap", "inode bitmap" or "inode table".
        field: &'static str,
        /// The block it names.
        block: u64,
        /// The first valid block.
        first_data_block: u32,
        /// Blocks in the filesystem.
        blocks_count: u64,
    },
}

/// An ext2/3/4 filesystem with its descriptors loaded.
pub struct Ext {
    sb: Superblock,
    descs: Vec<GroupDesc>,
}

impl Ext {
    /// Whether `src` carries the ext magic.
    pub fn probe(src: &dyn Source) -> Result<bool> {
        if src.size() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Ok(false);
        }
        let magic = src.read_vec(SUPERBLOCK_OFFSET + 0x38, 2)?;
        Ok(u16::from_le_bytes([magic[0], magic[1]]) == superblock::EXT_MAGIC)
    }

    /// Reads and validates the superblock and the group descriptors.
    pub fn open(src: &dyn Source) -> Result<Self> {
        let raw = src.read_vec(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE)?;
        let sb = Superblock::from_bytes(&raw)?;
        let fs_bytes = sb.blocks_count.saturating_mul(u64::from(sb.block_size));
        if src.size() < fs_bytes {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: fs_bytes,
                actual: src.size(),
            });
        }
        let descs = read_descriptors(src, &sb)?;
        Ok(Ext { sb, descs })
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Marks what a BLOCK_UNINIT group uses (e2fsprogs'
    /// `ext2fs_super_and_bgd_loc2` and the group's own metadata).
    fn mark_uninit_group(&self, map: &mut AllocationMap, g: u32) {
        let sb = &self.sb;
        let bs = u64::from(sb.block_size);
        let mark = |map: &mut AllocationMap, block: u64, n: u64| {
            map.mark_bytes_used(
                block * bs,
                n.min(sb.blocks_count.saturating_sub(block)) * bs,
            );
        };
        let start = sb.group_first_block(g);
        let has_super = sb.has_super(g);
        if has_super {
            mark(map, start, 1);
        }
        let dpb = sb.descs_per_block();
        let meta_bg = g / dpb;
        if !sb.has_incompat(incompat::META_BG) || meta_bg < sb.first_meta_bg {
            if has_super {
                mark(map, start + 1, sb.old_desc_blocks());
            }
        } else {
            let r = g % dpb;
            if r == 0 || r == 1 || r == dpb - 1 {
                mark(map, start + u64::from(has_super), 1);
            }
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
                check_descriptor(
                    sb,
                    g,
                    &d,
                    (first + u64::from(k)) * bs + (j as usize * ds) as u64,
                )?;
                descs.push(d);
            }
        }
        i += n;
    }
    Ok(descs)
}

fn check_descriptor(sb: &Superblock, g: u32, d: &GroupDesc, offset: u64) -> Result<(), ExtError> {
    let valid = u64::from(sb.first_data_block)..sb.blocks_count;
    let fields = [
        ("block bitmap", d.block_bitmap, 1),
        ("inode bitmap", d.inode_bitmap, 1),
        ("inode table", d.inode_table, sb.inode_table_blocks()),
    ];
    for (field, block, len) in fields {
        let end = block.saturating_add(len);
        if !valid.contains(&block) || end > sb.blocks_count {
            let bad = if valid.contains(&block) {
                end - 1
            } else {
                block
            };
            return Err(ExtError::DescriptorField {
                group: g,
                offset,
                field,
                block: bad,
                first_data_block: sb.first_data_block,
                blocks_count: sb.blocks_count,
            });
        }
    }
    Ok(())
}

impl Filesystem for Ext {
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
        let (problem, hint) = if sb.state & STATE_ERROR != 0 {
            ("the filesystem is marked as having errors", "run e2fsck -f")
        } else if sb.has_incompat(incompat::RECOVER) {
            (
                "the journal needs recovery (the filesystem is mounted or was not cleanly unmounted)",
                "unmount it, or mount and unmount it once, or run e2fsck",
            )
        } else if sb.state & STATE_VALID == 0 {
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

    fn allocation(&self, src: &dyn Source) -> Result<Allocation> {
        let sb = &self.sb;
        let bs = u64::from(sb.block_size);
        let mut map = AllocationMap::new(sb.cluster_size, self.device_size());
        // The boot block and the primary superblock, always.
        map.mark_bytes_used(0, SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64);
        let mut inconsistencies = Vec::new();

        let csum =
            sb.has_ro_compat(ro_compat::GDT_CSUM) || sb.has_ro_compat(ro_compat::METADATA_CSUM);
        let mut to_read: Vec<(u64, u32)> = Vec::with_capacity(self.descs.len());
        let mut bad_csum = Vec::new();
        for (g, d) in self.descs.iter().enumerate() {
            let g = g as u32;
            if csum && !d.checksum_ok {
                bad_csum.push(g);
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

        // Bitmaps in block order, adjacent ones (flex_bg) in one read.
        to_read.sort_unstable();
        let max_blocks = (MAX_METADATA_READ / bs).max(1);
        let mut i = 0;
        while i < to_read.len() {
            let first = to_read[i].0;
            let mut j = i + 1;
            while j < to_read.len()
                && to_read[j].0 < first + max_blocks
                && to_read[j].0 <= to_read[j - 1].0 + 1
            {
                j += 1;
            }
            let n = to_read[j - 1].0 - first + 1;
            let buf = src.read_vec(first * bs, (n * bs) as usize)?;
            for &(block, g) in &to_read[i..j] {
                let off = ((block - first) * bs) as usize;
                let (c0, nc) = self.group_clusters(g);
                map.or_bitmap(c0, &buf[off..off + bs as usize], nc);
            }
            i = j;
        }

        // Cross-check the bitmaps against the descriptors and superblock.
        let mut total_free = 0u64;
        let mut bad_groups = Vec::new();
        for (g, d) in self.descs.iter().enumerate() {
            let (c0, nc) = self.group_clusters(g as u32);
            let free = nc - map.count_used(c0, nc);
            total_free += free;
            if free != u64::from(d.free_clusters) {
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
        let free_blocks = total_free * u64::from(sb.cluster_ratio());
        if free_blocks != sb.free_blocks {
            inconsistencies.push(format!(
                "the superblock says {} blocks are free, the bitmaps say {}",
                sb.free_blocks, free_blocks
            ));
        }
        Ok(Allocation {
            map,
            inconsistencies,
        })
    }
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
