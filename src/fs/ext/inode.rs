//! Inodes: the fields a metadata copy needs (the kernel's `struct
//! ext4_inode`, read at its offsets under its names), the metadata_csum
//! inode checksum, and the wiping of a regular file's inline data.

use super::checksum::crc32c;
use super::superblock::{Superblock, incompat, ro_compat};
use crate::bytes::{hilo, u16le, u32le};

/// Size of the original inode; the rest (`i_extra_isize` and in-inode
/// extended attributes) follows it.
pub const GOOD_OLD_INODE_SIZE: usize = 128;
/// Offset of `i_block`, the 60 bytes of block pointers, extent-tree root,
/// fast symlink target or inline data.
pub const I_BLOCK: usize = 0x28;
/// Bytes in `i_block`.
pub const I_BLOCK_LEN: usize = 60;
/// Offset of `l_i_checksum_lo`.
const I_CHECKSUM_LO: usize = 0x7C;
/// Offset of `i_extra_isize`.
const I_EXTRA_ISIZE: usize = 0x80;
/// Offset of `i_checksum_hi`.
const I_CHECKSUM_HI: usize = 0x82;

/// The file type bits of `i_mode`.
pub const S_IFMT: u16 = 0xF000;
/// Directory.
pub const S_IFDIR: u16 = 0x4000;
/// Regular file.
pub const S_IFREG: u16 = 0x8000;
/// Symbolic link.
pub const S_IFLNK: u16 = 0xA000;

/// `i_flags` bits.
pub mod flags {
    /// The file is encrypted (`EXT4_ENCRYPT_FL`).
    pub const ENCRYPT: u32 = 0x800;
    /// `i_blocks` counts filesystem blocks, not 512-byte sectors.
    pub const HUGE_FILE: u32 = 0x4_0000;
    /// `i_block` holds an extent tree.
    pub const EXTENTS: u32 = 0x8_0000;
    /// The inode holds a large extended attribute value.
    pub const EA_INODE: u32 = 0x20_0000;
    /// The file's data is inside the inode.
    pub const INLINE_DATA: u32 = 0x1000_0000;
}

/// `h_magic` of the in-inode extended attribute area.
const XATTR_MAGIC: u32 = 0xEA02_0000;
/// `e_name_index` of `system.*` attributes.
const XATTR_INDEX_SYSTEM: u8 = 7;

/// The fields of an inode a metadata copy looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inode {
    /// `i_mode`.
    pub mode: u16,
    /// `i_size_lo` and `i_size_high`.
    pub size: u64,
    /// `i_links_count`.
    pub links: u16,
    /// `i_dtime`.
    pub dtime: u32,
    /// `i_blocks_lo` and `l_i_blocks_high`, in the units `flags` say.
    pub blocks: u64,
    /// `i_flags`.
    pub flags: u32,
    /// `i_file_acl_lo` and, with 64BIT, `l_i_file_acl_high`.
    pub file_acl: u64,
}

impl Inode {
    /// Reads the fields from an inode's bytes (at least 128).
    pub fn from_bytes(sb: &Superblock, b: &[u8]) -> Self {
        let acl_hi = if sb.has_incompat(incompat::BIT64) {
            u32::from(u16le(b, 0x76))
        } else {
            0
        };
        Inode {
            mode: u16le(b, 0x0),
            size: hilo(u32le(b, 0x6C), u32le(b, 0x4)),
            links: u16le(b, 0x1A),
            dtime: u32le(b, 0x14),
            blocks: hilo(u32::from(u16le(b, 0x74)), u32le(b, 0x1C)),
            flags: u32le(b, 0x20),
            file_acl: hilo(acl_hi, u32le(b, 0x68)),
        }
    }

    /// The file type bits.
    pub fn file_type(&self) -> u16 {
        self.mode & S_IFMT
    }

    /// Whether the inode is a live file: linked, or not yet deleted (an
    /// orphan still holds its blocks).
    pub fn in_use(&self) -> bool {
        self.links > 0 || (self.dtime == 0 && self.mode != 0)
    }

    /// Whether a symlink keeps its target in `i_block` (the kernel's
    /// `ext4_inode_is_fast_symlink`: no blocks but the xattr block's).
    pub fn is_fast_symlink(&self, sb: &Superblock) -> bool {
        if self.flags & (flags::EXTENTS | flags::INLINE_DATA) != 0 {
            return false;
        }
        let acl = if self.file_acl != 0 {
            if self.flags & flags::HUGE_FILE != 0 {
                u64::from(sb.cluster_ratio())
            } else {
                u64::from(sb.cluster_size / 512)
            }
        } else {
            0
        };
        self.blocks == acl || self.blocks == 0
    }
}

/// The metadata_csum checksum of inode `ino` (the kernel's
/// `ext4_inode_csum`), over its `s_inode_size` bytes in `b`: the low 16
/// bits, and the high 16 bits when the inode has room for them.
pub fn checksum(sb: &Superblock, ino: u32, b: &[u8]) -> (u16, Option<u16>) {
    let size = usize::from(sb.inode_size).min(b.len());
    let generation = &b[0x64..0x68];
    let seed = crc32c(crc32c(sb.csum_seed, &ino.to_le_bytes()), generation);
    let mut c = crc32c(seed, &b[..I_CHECKSUM_LO]);
    c = crc32c(c, &[0, 0]);
    c = crc32c(c, &b[I_CHECKSUM_LO + 2..GOOD_OLD_INODE_SIZE]);
    let mut has_hi = false;
    if size > GOOD_OLD_INODE_SIZE {
        c = crc32c(c, &b[GOOD_OLD_INODE_SIZE..I_CHECKSUM_HI]);
        let mut rest = I_CHECKSUM_HI;
        if has_checksum_hi(b, size) {
            c = crc32c(c, &[0, 0]);
            rest += 2;
            has_hi = true;
        }
        c = crc32c(c, &b[rest..size]);
    }
    ((c & 0xFFFF) as u16, has_hi.then_some((c >> 16) as u16))
}

/// Whether `i_checksum_hi` lies inside the inode's extra space.
fn has_checksum_hi(b: &[u8], size: usize) -> bool {
    size >= I_CHECKSUM_HI + 2
        && GOOD_OLD_INODE_SIZE + usize::from(u16le(b, I_EXTRA_ISIZE)) >= I_CHECKSUM_HI + 2
}

/// Stores the checksum of inode `ino` when the filesystem has metadata_csum.
pub fn seal(sb: &Superblock, ino: u32, b: &mut [u8]) {
    if !sb.has_ro_compat(ro_compat::METADATA_CSUM) || b.len() < GOOD_OLD_INODE_SIZE {
        return;
    }
    let (lo, hi) = checksum(sb, ino, b);
    b[I_CHECKSUM_LO..I_CHECKSUM_LO + 2].copy_from_slice(&lo.to_le_bytes());
    if let Some(hi) = hi {
        b[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].copy_from_slice(&hi.to_le_bytes());
    }
}

/// Zeroes the inline data of a regular file: the 60 bytes of `i_block`
/// and the value of its `system.data` attribute in the inode's extra
/// space (whose hash is recomputed), then reseals the checksum. `b` holds
/// the inode's `s_inode_size` bytes; malformed attribute areas are left
/// as they are (e2fsck would complain about them in the source too).
pub fn wipe_inline_data(sb: &Superblock, ino: u32, b: &mut [u8]) {
    if b.len() < GOOD_OLD_INODE_SIZE {
        return;
    }
    b[I_BLOCK..I_BLOCK + I_BLOCK_LEN].fill(0);
    let size = usize::from(sb.inode_size).min(b.len());
    if size > GOOD_OLD_INODE_SIZE + 2 {
        wipe_system_data(&mut b[..size]);
    }
    seal(sb, ino, b);
}

/// Zeroes the value of the in-inode `system.data` attribute.
fn wipe_system_data(b: &mut [u8]) {
    let start = GOOD_OLD_INODE_SIZE + usize::from(u16le(b, I_EXTRA_ISIZE));
    if start + 4 > b.len() || u32le(b, start) != XATTR_MAGIC {
        return;
    }
    // Entries, and the offsets of values, count from the first entry.
    let first = start + 4;
    let mut p = first;
    while p + 16 <= b.len() && u32le(b, p) != 0 {
        let name_len = usize::from(b[p]);
        let index = b[p + 1];
        let value_offs = usize::from(u16le(b, p + 2));
        let value_inum = u32le(b, p + 4);
        let value_size = u32le(b, p + 8) as usize;
        let name_end = p + 16 + name_len;
        if name_end > b.len() {
            return;
        }
        if index == XATTR_INDEX_SYSTEM && &b[p + 16..name_end] == b"data" && value_inum == 0 {
            let v0 = (first + value_offs).min(b.len());
            let v1 = (v0 + value_size.div_ceil(4) * 4).min(b.len());
            b[v0..v1].fill(0);
            if u32le(b, p + 12) != 0 {
                let hash = entry_hash(&b[p + 16..name_end], value_size);
                b[p + 12..p + 16].copy_from_slice(&hash.to_le_bytes());
            }
        }
        p += (16 + name_len).div_ceil(4) * 4;
    }
}

/// e2fsprogs' `ext2fs_ext_attr_hash_entry` of an attribute named `name`
/// whose value is `size` zero bytes.
fn entry_hash(name: &[u8], size: usize) -> u32 {
    let mut hash = 0u32;
    for &c in name {
        // The name's bytes are signed chars.
        hash = hash.rotate_left(5) ^ (c as i8 as i32 as u32);
    }
    for _ in 0..size.div_ceil(4) {
        hash = hash.rotate_left(16);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_hash_matches_e2fsprogs() {
        // For "data" with an empty value the hash is the name hash alone:
        // ((('d' << 5 ^ 'a') << 5 ^ 't') << 5) ^ 'a'.
        let want = ((((u32::from(b'd') << 5) ^ u32::from(b'a')) << 5 ^ u32::from(b't')) << 5)
            ^ u32::from(b'a');
        assert_eq!(entry_hash(b"data", 0), want);
        // Zero words rotate it by 16 bits each.
        assert_eq!(entry_hash(b"data", 5), want);
        assert_eq!(entry_hash(b"data", 3), want.rotate_left(16));
    }
}
