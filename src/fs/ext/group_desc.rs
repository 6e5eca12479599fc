//! Block group descriptors: 32 bytes, or `s_desc_size` with 64BIT.

use super::checksum::{crc16, crc32c};
use super::superblock::{Superblock, incompat, ro_compat};
use crate::bytes::{hilo, u16le, u32le};

/// `bg_flags`: the inode bitmap is not initialised on disk (no inode of
/// the group is in use).
pub const BG_INODE_UNINIT: u16 = 0x1;
/// `bg_flags`: the block bitmap is not initialised on disk.
pub const BG_BLOCK_UNINIT: u16 = 0x2;

/// Offset of `bg_checksum` in a descriptor.
const BG_CHECKSUM: usize = 0x1E;
/// Offset of `bg_itable_unused_lo` in a descriptor.
pub const BG_ITABLE_UNUSED: u64 = 0x1C;

/// One parsed group descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupDesc {
    /// `bg_block_bitmap`.
    pub block_bitmap: u64,
    /// `bg_inode_bitmap`.
    pub inode_bitmap: u64,
    /// `bg_inode_table`.
    pub inode_table: u64,
    /// `bg_free_blocks_count` (free clusters in the group).
    pub free_clusters: u32,
    /// `bg_free_inodes_count`.
    pub free_inodes: u32,
    /// `bg_itable_unused`: inodes at the end of the inode table never used.
    pub itable_unused: u32,
    /// `bg_flags`.
    pub flags: u16,
    /// Whether `bg_checksum` matches (true when the filesystem has no
    /// descriptor checksums).
    pub checksum_ok: bool,
}

impl GroupDesc {
    /// Parses descriptor `group` from its `sb.desc_size` bytes.
    pub fn from_bytes(sb: &Superblock, group: u32, b: &[u8]) -> Self {
        let wide = sb.has_incompat(incompat::BIT64) && sb.desc_size >= 64;
        let hi = |off: usize| if wide { u32le(b, off) } else { 0 };
        let hi16 = |off: usize| if wide { u16le(b, off) } else { 0 };
        GroupDesc {
            block_bitmap: hilo(hi(0x20), u32le(b, 0x0)),
            inode_bitmap: hilo(hi(0x24), u32le(b, 0x4)),
            inode_table: hilo(hi(0x28), u32le(b, 0x8)),
            free_clusters: (u32::from(hi16(0x2C)) << 16) | u32::from(u16le(b, 0xC)),
            free_inodes: (u32::from(hi16(0x2E)) << 16) | u32::from(u16le(b, 0xE)),
            itable_unused: (u32::from(hi16(0x32)) << 16) | u32::from(u16le(b, 0x1C)),
            flags: u16le(b, 0x12),
            checksum_ok: checksum(sb, group, b).is_none_or(|c| c == u16le(b, BG_CHECKSUM)),
        }
    }

    /// Whether the block bitmap is uninitialised on disk.
    pub fn block_uninit(&self) -> bool {
        self.flags & BG_BLOCK_UNINIT != 0
    }

    /// Whether the inode bitmap is uninitialised on disk.
    pub fn inode_uninit(&self) -> bool {
        self.flags & BG_INODE_UNINIT != 0
    }
}

/// The checksum descriptor `group` should carry, or `None` when the
/// filesystem has no descriptor checksums (the kernel's `ext4_group_desc_csum`).
pub fn checksum(sb: &Superblock, group: u32, b: &[u8]) -> Option<u16> {
    let size = usize::from(sb.desc_size);
    let le_group = group.to_le_bytes();
    if sb.has_ro_compat(ro_compat::METADATA_CSUM) {
        let mut c = crc32c(sb.csum_seed, &le_group);
        c = crc32c(c, &b[..BG_CHECKSUM]);
        c = crc32c(c, &[0, 0]);
        c = crc32c(c, &b[BG_CHECKSUM + 2..size]);
        return Some((c & 0xFFFF) as u16);
    }
    if sb.has_ro_compat(ro_compat::GDT_CSUM) {
        let mut c = crc16(!0, &sb.uuid);
        c = crc16(c, &le_group);
        c = crc16(c, &b[..BG_CHECKSUM]);
        if sb.has_incompat(incompat::BIT64) && size > BG_CHECKSUM + 2 {
            c = crc16(c, &b[BG_CHECKSUM + 2..size]);
        }
        return Some(c);
    }
    None
}
