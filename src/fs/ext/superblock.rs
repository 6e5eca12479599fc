//! The ext2/3/4 superblock: 1024 bytes at byte 1024 of the volume.
//!
//! Fields are read at the offsets of the kernel's `struct ext4_super_block`
//! under its names, validated once here, and typed after.

use super::ExtError;
use super::checksum::crc32c;
use crate::bytes::{hilo, u16le, u32le, u64le};

/// Byte offset of the primary superblock in the volume.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock on disk.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// `s_magic`.
pub const EXT_MAGIC: u16 = 0xEF53;

/// Largest `s_log_cluster_size` the kernel mounts (`EXT4_MAX_CLUSTER_LOG_SIZE`
/// 30 less `EXT4_MIN_BLOCK_LOG_SIZE` 10): 1 GiB clusters.
pub const MAX_LOG_CLUSTER_SIZE: u32 = 20;

/// `s_state` bits.
pub const STATE_VALID: u16 = 0x1;
/// The kernel or fsck found errors.
pub const STATE_ERROR: u16 = 0x2;

/// `s_feature_compat` bits.
pub mod compat {
    /// The filesystem has a journal (ext3/ext4).
    pub const HAS_JOURNAL: u32 = 0x4;
    /// Reserved GDT blocks for online resize.
    pub const RESIZE_INODE: u32 = 0x10;
    /// Superblock backups only in the groups of `s_backup_bgs`.
    pub const SPARSE_SUPER2: u32 = 0x200;
    /// Orphan inodes are tracked in the file `s_orphan_file_inum`.
    pub const ORPHAN_FILE: u32 = 0x1000;
}

/// `s_feature_incompat` bits.
pub mod incompat {
    /// Compression (never finished upstream).
    pub const COMPRESSION: u32 = 0x1;
    /// Directory entries record the file type.
    pub const FILETYPE: u32 = 0x2;
    /// The journal must be replayed.
    pub const RECOVER: u32 = 0x4;
    /// This is an external journal device, not a filesystem.
    pub const JOURNAL_DEV: u32 = 0x8;
    /// Meta block groups.
    pub const META_BG: u32 = 0x10;
    /// Extent-mapped files.
    pub const EXTENTS: u32 = 0x40;
    /// 64-bit block numbers and descriptors of `s_desc_size` bytes.
    pub const BIT64: u32 = 0x80;
    /// Multiple mount protection.
    pub const MMP: u32 = 0x100;
    /// Flexible block groups.
    pub const FLEX_BG: u32 = 0x200;
    /// Extended attributes in inodes.
    pub const EA_INODE: u32 = 0x400;
    /// Data in directory entries.
    pub const DIRDATA: u32 = 0x1000;
    /// The checksum seed is stored in the superblock.
    pub const CSUM_SEED: u32 = 0x2000;
    /// Large directories.
    pub const LARGEDIR: u32 = 0x4000;
    /// Data inside inodes.
    pub const INLINE_DATA: u32 = 0x8000;
    /// Encrypted files.
    pub const ENCRYPT: u32 = 0x10000;
    /// Case-insensitive names.
    pub const CASEFOLD: u32 = 0x20000;
    /// Every bit this version knows; the layout of the bitmaps does not
    /// depend on any of them except META_BG and 64BIT.
    pub const KNOWN: u32 = COMPRESSION
        | FILETYPE
        | RECOVER
        | JOURNAL_DEV
        | META_BG
        | EXTENTS
        | BIT64
        | MMP
        | FLEX_BG
        | EA_INODE
        | DIRDATA
        | CSUM_SEED
        | LARGEDIR
        | INLINE_DATA
        | ENCRYPT
        | CASEFOLD;
}

/// `s_feature_ro_compat` bits.
pub mod ro_compat {
    /// Superblock backups only in groups 0, 1 and powers of 3, 5, 7.
    pub const SPARSE_SUPER: u32 = 0x1;
    /// Files over 2 GiB.
    pub const LARGE_FILE: u32 = 0x2;
    /// Group descriptor crc16 checksums.
    pub const GDT_CSUM: u32 = 0x10;
    /// Bitmaps count clusters of several blocks.
    pub const BIGALLOC: u32 = 0x200;
    /// crc32c checksums on all metadata.
    pub const METADATA_CSUM: u32 = 0x400;
}

/// A validated superblock.
#[derive(Clone, Debug)]
pub struct Superblock {
    /// `s_inodes_count`.
    pub inodes_count: u32,
    /// `s_blocks_count` (lo and, with 64BIT, hi).
    pub blocks_count: u64,
    /// `s_free_blocks_count`, in blocks.
    pub free_blocks: u64,
    /// `s_first_data_block`.
    pub first_data_block: u32,
    /// Block size in bytes (1024 << `s_log_block_size`).
    pub block_size: u32,
    /// Cluster size in bytes (the block size without BIGALLOC).
    pub cluster_size: u32,
    /// `s_blocks_per_group`.
    pub blocks_per_group: u32,
    /// `s_clusters_per_group` (bits in each block bitmap).
    pub clusters_per_group: u32,
    /// `s_inodes_per_group`.
    pub inodes_per_group: u32,
    /// `s_state`.
    pub state: u16,
    /// `s_inode_size` (128 for revision 0).
    pub inode_size: u16,
    /// `s_feature_compat`.
    pub feature_compat: u32,
    /// `s_feature_incompat`.
    pub feature_incompat: u32,
    /// `s_feature_ro_compat`.
    pub feature_ro_compat: u32,
    /// `s_uuid`.
    pub uuid: [u8; 16],
    /// `s_volume_name`, up to its first NUL.
    pub label: String,
    /// `s_last_mounted`, up to its first NUL.
    pub last_mounted: String,
    /// `s_reserved_gdt_blocks`.
    pub reserved_gdt_blocks: u16,
    /// Group descriptor size: `s_desc_size` with 64BIT, else 32.
    pub desc_size: u16,
    /// `s_first_meta_bg`.
    pub first_meta_bg: u32,
    /// `s_backup_bgs`.
    pub backup_bgs: [u32; 2],
    /// `s_mmp_block` (meaningful with the MMP feature).
    pub mmp_block: u64,
    /// Seed for metadata checksums (from `s_checksum_seed` or the UUID).
    pub csum_seed: u32,
    /// Number of block groups.
    pub groups: u32,
    /// `s_first_ino`: the first inode not reserved for the filesystem (11
    /// for revision 0).
    pub first_ino: u32,
    /// `s_journal_inum` (meaningful with HAS_JOURNAL; 0 for an external
    /// journal).
    pub journal_inum: u32,
    /// `s_usr_quota_inum`, `s_grp_quota_inum`, `s_prj_quota_inum`.
    pub quota_inums: [u32; 3],
    /// `s_orphan_file_inum` (meaningful with ORPHAN_FILE).
    pub orphan_file_inum: u32,
}

impl Superblock {
    /// Parses and validates the 1024 superblock bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ExtError> {
        assert!(b.len() >= SUPERBLOCK_SIZE);
        let at = |field: usize| SUPERBLOCK_OFFSET + field as u64;

        let s_magic = u16le(b, 0x38);
        if s_magic != EXT_MAGIC {
            return Err(ExtError::BadMagic {
                offset: at(0x38),
                found: s_magic,
            });
        }
        let s_inodes_count = u32le(b, 0x0);
        let s_blocks_count_lo = u32le(b, 0x4);
        let s_free_blocks_count_lo = u32le(b, 0xC);
        let s_first_data_block = u32le(b, 0x14);
        let s_log_block_size = u32le(b, 0x18);
        let s_log_cluster_size = u32le(b, 0x1C);
        let s_blocks_per_group = u32le(b, 0x20);
        let s_clusters_per_group = u32le(b, 0x24);
        let s_inodes_per_group = u32le(b, 0x28);
        let s_state = u16le(b, 0x3A);
        let s_rev_level = u32le(b, 0x4C);
        let s_inode_size = u16le(b, 0x58);
        let s_feature_compat = u32le(b, 0x5C);
        let s_feature_incompat = u32le(b, 0x60);
        let s_feature_ro_compat = u32le(b, 0x64);
        let s_reserved_gdt_blocks = u16le(b, 0xCE);
        let s_desc_size = u16le(b, 0xFE);
        let s_first_meta_bg = u32le(b, 0x104);
        let s_blocks_count_hi = u32le(b, 0x150);
        let s_free_blocks_count_hi = u32le(b, 0x158);
        let s_mmp_block = u64le(b, 0x168);
        let s_checksum_type = b[0x175];
        let s_backup_bgs = [u32le(b, 0x24C), u32le(b, 0x250)];
        let s_checksum_seed = u32le(b, 0x270);
        let s_checksum = u32le(b, 0x3FC);
        let s_first_ino = u32le(b, 0x54);
        let s_journal_inum = u32le(b, 0xE0);
        let s_usr_quota_inum = u32le(b, 0x240);
        let s_grp_quota_inum = u32le(b, 0x244);
        let s_prj_quota_inum = u32le(b, 0x26C);
        let s_orphan_file_inum = u32le(b, 0x280);

        let (incompat, ro) = (s_feature_incompat, s_feature_ro_compat);
        if ro & ro_compat::METADATA_CSUM != 0 {
            if s_checksum_type != 1 {
                return Err(ExtError::ChecksumType {
                    offset: at(0x175),
                    found: s_checksum_type,
                });
            }
            let computed = crc32c(!0, &b[..0x3FC]);
            if computed != s_checksum {
                return Err(ExtError::SuperblockChecksum {
                    offset: at(0x3FC),
                    stored: s_checksum,
                    computed,
                });
            }
        }
        if incompat & incompat::JOURNAL_DEV != 0 {
            return Err(ExtError::JournalDevice);
        }
        let unknown = incompat & !incompat::KNOWN;
        if unknown != 0 {
            return Err(ExtError::UnknownIncompat { bits: unknown });
        }

        if s_log_block_size > 6 {
            return Err(ExtError::BlockSize {
                offset: at(0x18),
                log: s_log_block_size,
            });
        }
        let block_size = 1024u32 << s_log_block_size;
        let bigalloc = ro & ro_compat::BIGALLOC != 0;
        let cluster_size = if bigalloc {
            if s_log_cluster_size < s_log_block_size
                || s_log_cluster_size > s_log_block_size + 16
                || s_log_cluster_size > MAX_LOG_CLUSTER_SIZE
            {
                return Err(ExtError::ClusterSize {
                    offset: at(0x1C),
                    log: s_log_cluster_size,
                });
            }
            1024u32 << s_log_cluster_size
        } else {
            block_size
        };
        let ratio = cluster_size / block_size;

        let is64 = incompat & incompat::BIT64 != 0;
        let blocks_count = if is64 {
            hilo(s_blocks_count_hi, s_blocks_count_lo)
        } else {
            u64::from(s_blocks_count_lo)
        };
        let free_blocks = if is64 {
            hilo(s_free_blocks_count_hi, s_free_blocks_count_lo)
        } else {
            u64::from(s_free_blocks_count_lo)
        };

        if s_blocks_per_group == 0 {
            return Err(ExtError::BlocksPerGroupZero { offset: at(0x20) });
        }
        let clusters_per_group = if bigalloc {
            s_clusters_per_group
        } else {
            s_blocks_per_group
        };
        if clusters_per_group == 0
            || clusters_per_group > block_size * 8
            || !clusters_per_group.is_multiple_of(8)
            || u64::from(clusters_per_group) * u64::from(ratio) != u64::from(s_blocks_per_group)
        {
            return Err(ExtError::ClustersPerGroup {
                offset: at(if bigalloc { 0x24 } else { 0x20 }),
                value: clusters_per_group,
                max: block_size * 8,
            });
        }
        let expected_first = u32::from(block_size == 1024 && !bigalloc);
        if s_first_data_block != expected_first {
            return Err(ExtError::FirstDataBlock {
                offset: at(0x14),
                found: s_first_data_block,
                expected: expected_first,
            });
        }
        if blocks_count <= u64::from(s_first_data_block) + 1 {
            return Err(ExtError::BlocksCount {
                offset: at(0x4),
                blocks: blocks_count,
            });
        }
        let inode_size = if s_rev_level == 0 { 128 } else { s_inode_size };
        if inode_size < 128 || !inode_size.is_power_of_two() || u32::from(inode_size) > block_size {
            return Err(ExtError::InodeSize {
                offset: at(0x58),
                size: inode_size,
            });
        }
        // Both the kernel and e2fsck want at least one block of inodes.
        let inodes_per_block = block_size / u32::from(inode_size);
        if s_inodes_per_group < inodes_per_block || s_inodes_per_group > block_size * 8 {
            return Err(ExtError::InodesPerGroup {
                offset: at(0x28),
                value: s_inodes_per_group,
            });
        }
        // The kernel ("reserved GDT blocks insanely large") and e2fsck both
        // refuse more than one indirect block of them.
        if u32::from(s_reserved_gdt_blocks) > block_size / 4 {
            return Err(ExtError::ReservedGdtBlocks {
                offset: at(0xCE),
                value: s_reserved_gdt_blocks,
                max: block_size / 4,
            });
        }
        let desc_size = if is64 { s_desc_size } else { 32 };
        if is64 && (!(64..=1024).contains(&desc_size) || !desc_size.is_power_of_two()) {
            return Err(ExtError::DescSize {
                offset: at(0xFE),
                size: desc_size,
            });
        }
        let groups64 =
            (blocks_count - u64::from(s_first_data_block)).div_ceil(u64::from(s_blocks_per_group));
        let groups = u32::try_from(groups64).map_err(|_| ExtError::InodesCount {
            offset: at(0x0),
            inodes: s_inodes_count,
            expected: u64::MAX,
        })?;
        let expected_inodes = u64::from(groups) * u64::from(s_inodes_per_group);
        if u64::from(s_inodes_count) != expected_inodes {
            return Err(ExtError::InodesCount {
                offset: at(0x0),
                inodes: s_inodes_count,
                expected: expected_inodes,
            });
        }
        if incompat & incompat::META_BG != 0 {
            let desc_blocks = groups.div_ceil(block_size / u32::from(desc_size));
            if s_first_meta_bg > desc_blocks {
                return Err(ExtError::FirstMetaBg {
                    offset: at(0x104),
                    value: s_first_meta_bg,
                    desc_blocks,
                });
            }
        }

        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[0x68..0x78]);
        let csum_seed = if incompat & incompat::CSUM_SEED != 0 {
            s_checksum_seed
        } else {
            crc32c(!0, &uuid)
        };
        Ok(Superblock {
            inodes_count: s_inodes_count,
            blocks_count,
            free_blocks,
            first_data_block: s_first_data_block,
            block_size,
            cluster_size,
            blocks_per_group: s_blocks_per_group,
            clusters_per_group,
            inodes_per_group: s_inodes_per_group,
            state: s_state,
            inode_size,
            feature_compat: s_feature_compat,
            feature_incompat: s_feature_incompat,
            feature_ro_compat: s_feature_ro_compat,
            uuid,
            label: cstr(&b[0x78..0x88]),
            last_mounted: cstr(&b[0x88..0xC8]),
            reserved_gdt_blocks: s_reserved_gdt_blocks,
            desc_size,
            first_meta_bg: s_first_meta_bg,
            backup_bgs: s_backup_bgs,
            mmp_block: s_mmp_block,
            csum_seed,
            groups,
            first_ino: if s_rev_level == 0 { 11 } else { s_first_ino },
            journal_inum: if s_feature_compat & compat::HAS_JOURNAL != 0 {
                s_journal_inum
            } else {
                0
            },
            quota_inums: [s_usr_quota_inum, s_grp_quota_inum, s_prj_quota_inum],
            orphan_file_inum: if s_feature_compat & compat::ORPHAN_FILE != 0 {
                s_orphan_file_inum
            } else {
                0
            },
        })
    }

    /// Whether an incompat feature is set.
    pub fn has_incompat(&self, bit: u32) -> bool {
        self.feature_incompat & bit != 0
    }

    /// Whether a ro_compat feature is set.
    pub fn has_ro_compat(&self, bit: u32) -> bool {
        self.feature_ro_compat & bit != 0
    }

    /// Whether a compat feature is set.
    pub fn has_compat(&self, bit: u32) -> bool {
        self.feature_compat & bit != 0
    }

    /// Blocks per cluster.
    pub fn cluster_ratio(&self) -> u32 {
        self.cluster_size / self.block_size
    }

    /// Group descriptors per descriptor block.
    pub fn descs_per_block(&self) -> u32 {
        self.block_size / u32::from(self.desc_size)
    }

    /// Blocks the descriptor table takes.
    pub fn desc_blocks(&self) -> u32 {
        self.groups.div_ceil(self.descs_per_block())
    }

    /// First block of group `g`.
    pub fn group_first_block(&self, g: u32) -> u64 {
        u64::from(self.first_data_block) + u64::from(g) * u64::from(self.blocks_per_group)
    }

    /// Number of blocks in group `g` (the last group may be short).
    pub fn group_blocks(&self, g: u32) -> u64 {
        let start = self.group_first_block(g);
        u64::from(self.blocks_per_group).min(self.blocks_count - start)
    }

    /// Blocks in each group's inode table.
    pub fn inode_table_blocks(&self) -> u64 {
        (u64::from(self.inodes_per_group) * u64::from(self.inode_size))
            .div_ceil(u64::from(self.block_size))
    }

    /// Whether group `g` holds a superblock backup (the kernel's
    /// `ext4_bg_has_super`).
    pub fn has_super(&self, g: u32) -> bool {
        if g == 0 {
            return true;
        }
        if self.has_compat(compat::SPARSE_SUPER2) {
            return g == self.backup_bgs[0] || g == self.backup_bgs[1];
        }
        if g <= 1 || !self.has_ro_compat(ro_compat::SPARSE_SUPER) {
            return true;
        }
        if g.is_multiple_of(2) {
            return false;
        }
        [3u32, 5, 7].iter().any(|&base| is_power_of(g, base))
    }

    /// Block holding descriptor block `i` of the primary table (the
    /// kernel's `descriptor_loc`).
    pub fn descriptor_block(&self, i: u32) -> u64 {
        let sb_block = SUPERBLOCK_OFFSET / u64::from(self.block_size);
        if !self.has_incompat(incompat::META_BG) || i < self.first_meta_bg {
            return sb_block + 1 + u64::from(i);
        }
        let bg = self.descs_per_block() * i;
        let mut has_super = u64::from(self.has_super(bg));
        if self.block_size == 1024 && i == 0 && self.first_data_block == 0 {
            has_super += 1;
        }
        self.group_first_block(bg) + has_super
    }

    /// Byte offset of group `g`'s descriptor in the primary table.
    pub fn descriptor_offset(&self, g: u32) -> u64 {
        let dpb = self.descs_per_block();
        self.descriptor_block(g / dpb) * u64::from(self.block_size)
            + u64::from(g % dpb) * u64::from(self.desc_size)
    }

    /// The superblock and descriptor blocks group `g` holds, as e2fsprogs'
    /// `ext2fs_super_and_bgd_loc2` and `ext2fs_reserve_super_and_bgd` lay
    /// them out (these also count for BLOCK_UNINIT groups, whose bitmaps
    /// are not on disk). Ranges are clamped to the filesystem.
    pub fn base_metadata(&self, g: u32) -> BaseMetadata {
        let mut start = self.group_first_block(g);
        let mut meta = BaseMetadata::default();
        if start == 0 && self.block_size == 1024 {
            // 1 KiB blocks with bigalloc: block 0 is the boot block, and
            // the superblock is block 1.
            start = 1;
            meta.superblock = Some((0, 2));
        }
        let has_super = self.has_super(g);
        if has_super && meta.superblock.is_none() {
            meta.superblock = Some((start, 1));
        }
        let clamp = |first: u64, n: u64| (first, n.min(self.blocks_count.saturating_sub(first)));
        let dpb = self.descs_per_block();
        if !self.has_incompat(incompat::META_BG) || g / dpb < self.first_meta_bg {
            if has_super {
                meta.old_desc = Some(clamp(start + 1, self.old_desc_blocks()));
            }
        } else {
            let r = g % dpb;
            if r == 0 || r == 1 || r == dpb - 1 {
                let block = start + u64::from(has_super);
                if block < self.blocks_count {
                    meta.new_desc = Some(block);
                }
            }
        }
        meta
    }

    /// Blocks a group with a superblock backup reserves after it for the
    /// old-style descriptor table (e2fsprogs' `old_desc_blocks`).
    pub fn old_desc_blocks(&self) -> u64 {
        if self.has_incompat(incompat::META_BG) {
            u64::from(self.first_meta_bg)
        } else {
            u64::from(self.desc_blocks()) + u64::from(self.reserved_gdt_blocks)
        }
    }
}

/// What a group reserves before its bitmaps: see
/// [`Superblock::base_metadata`]. Each range is (first block, count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BaseMetadata {
    /// The superblock copy (for group 0 of a 1 KiB-block bigalloc
    /// filesystem, the boot block 0 and the superblock at block 1).
    pub superblock: Option<(u64, u64)>,
    /// The old-style descriptor table and the reserved GDT blocks after it.
    pub old_desc: Option<(u64, u64)>,
    /// The one META_BG descriptor block the group holds.
    pub new_desc: Option<u64>,
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    if n == 0 {
        return false;
    }
    while n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers() {
        let yes: Vec<u32> = (0..100)
            .filter(|&g| [3, 5, 7].iter().any(|&b| is_power_of(g, b)))
            .collect();
        assert_eq!(yes, vec![1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    /// A valid superblock: 4 KiB blocks, 32768 blocks in one group, 8192
    /// inodes of 256 bytes.
    fn raw() -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_SIZE];
        let mut put = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put(0x0, 8192);
        put(0x4, 32768);
        put(0x18, 2);
        put(0x1C, 2);
        put(0x20, 32768);
        put(0x24, 32768);
        put(0x28, 8192);
        put(0x4C, 1);
        b[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        b[0x58..0x5A].copy_from_slice(&256u16.to_le_bytes());
        b
    }

    #[test]
    fn cluster_size_limit_is_the_kernels() {
        let mut b = raw();
        b[0x64..0x68].copy_from_slice(&ro_compat::BIGALLOC.to_le_bytes());
        b[0x18] = 6; // 64 KiB blocks
        b[0x24..0x28].copy_from_slice(&8u32.to_le_bytes());
        for (log, ok) in [(20u32, true), (21, false), (22, false)] {
            b[0x1C..0x20].copy_from_slice(&log.to_le_bytes());
            let bpg = 8u32 << (log - 6);
            b[0x20..0x24].copy_from_slice(&bpg.to_le_bytes());
            b[0x4..0x8].copy_from_slice(&bpg.to_le_bytes());
            let r = Superblock::from_bytes(&b);
            if ok {
                let sb = r.unwrap();
                assert_eq!(sb.cluster_size, 1 << 30);
                assert_eq!(sb.cluster_ratio(), 1 << 14);
            } else {
                assert_eq!(
                    r.unwrap_err(),
                    ExtError::ClusterSize {
                        offset: SUPERBLOCK_OFFSET + 0x1C,
                        log
                    }
                );
            }
        }
    }

    #[test]
    fn at_least_a_block_of_inodes_per_group() {
        let mut b = raw();
        assert_eq!(
            Superblock::from_bytes(&b).unwrap().inode_table_blocks(),
            512
        );
        // 16 inodes of 256 bytes fill a 4 KiB block; 8 do not.
        b[0x28..0x2C].copy_from_slice(&8u32.to_le_bytes());
        b[0x0..0x4].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(
            Superblock::from_bytes(&b).unwrap_err(),
            ExtError::InodesPerGroup {
                offset: SUPERBLOCK_OFFSET + 0x28,
                value: 8
            }
        );
    }

    #[test]
    fn descriptor_offsets() {
        let mut b = raw();
        // Two groups of 16384 blocks, 64-byte descriptors.
        b[0x20..0x24].copy_from_slice(&16384u32.to_le_bytes());
        b[0x24..0x28].copy_from_slice(&16384u32.to_le_bytes());
        b[0x28..0x2C].copy_from_slice(&4096u32.to_le_bytes());
        b[0x60] = incompat::BIT64 as u8;
        b[0xFE..0x100].copy_from_slice(&64u16.to_le_bytes());
        let sb = Superblock::from_bytes(&b).unwrap();
        assert_eq!(sb.descriptor_offset(0), 4096);
        assert_eq!(sb.descriptor_offset(1), 4096 + 64);
        // Without sparse_super every group has a superblock copy.
        let base = sb.base_metadata(1);
        assert_eq!(base.superblock, Some((16384, 1)));
        assert_eq!(base.old_desc, Some((16385, 1)));
        assert_eq!(base.new_desc, None);
    }
}
