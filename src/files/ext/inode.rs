//! One inode as the file reader sees it: read from its group's inode
//! table, checked (number, checksum, `i_extra_isize`, in use), and turned
//! into a [`Meta`].
//!
//! Fields are read at the offsets of the kernel's `struct ext4_inode`; the
//! 64-bit parts (`i_size_high`, `l_i_uid_high`, `l_i_gid_high`) and the
//! `*_extra` timestamp words (nanoseconds and epoch bits) only where the
//! kernel reads them.

use crate::bytes::{hilo, u16le, u32le};
use crate::files::{Kind, Meta, Time};
use crate::fs::ext::inode::{self as ext_inode, GOOD_OLD_INODE_SIZE, I_BLOCK, I_BLOCK_LEN, Inode};
use crate::fs::ext::superblock::{Superblock, incompat, ro_compat};

use super::corrupt;
use crate::error::Result;
use crate::fs::ext::inode::flags;

/// Offset of `i_extra_isize`.
const I_EXTRA_ISIZE: usize = 0x80;
/// Offsets of `l_i_checksum_lo` and `i_checksum_hi`.
const I_CHECKSUM_LO: usize = 0x7C;
const I_CHECKSUM_HI: usize = 0x82;
/// Offsets of the timestamps and of their `_extra` words.
const I_ATIME: usize = 0x08;
const I_MTIME: usize = 0x10;
const I_ATIME_EXTRA: usize = 0x8C;
const I_MTIME_EXTRA: usize = 0x88;

/// An inode read from the inode table.
pub(super) struct Node {
    /// The inode number.
    pub ino: u32,
    /// Byte offset of the inode in the volume (for messages).
    pub at: u64,
    /// Its `s_inode_size` bytes.
    pub raw: Vec<u8>,
    /// The fields the metadata copy also reads.
    pub inode: Inode,
    /// End of the fixed fields: 128 + `i_extra_isize` (128 for 128-byte
    /// inodes); the in-inode extended attributes follow.
    pub extra_end: usize,
}

impl Node {
    /// Parses and checks inode `ino` from its bytes `raw`, read at byte
    /// `at`: `i_extra_isize` inside the inode, and the inode in use.
    /// `path` names it in errors. See [`Node::check_checksum`].
    pub fn parse(sb: &Superblock, ino: u32, at: u64, raw: Vec<u8>, path: &str) -> Result<Self> {
        let inode = Inode::from_bytes(sb, &raw);
        let extra_end = if raw.len() > GOOD_OLD_INODE_SIZE {
            let extra = usize::from(u16le(&raw, I_EXTRA_ISIZE));
            let end = GOOD_OLD_INODE_SIZE + extra;
            if end > raw.len() || !extra.is_multiple_of(4) {
                return Err(corrupt(
                    path,
                    ino,
                    format!(
                        "i_extra_isize {extra} at byte {} does not fit in a {}-byte inode",
                        at + I_EXTRA_ISIZE as u64,
                        raw.len()
                    ),
                ));
            }
            end
        } else {
            GOOD_OLD_INODE_SIZE
        };
        let node = Node {
            ino,
            at,
            raw,
            inode,
            extra_end,
        };
        if node.inode.links == 0 {
            return Err(corrupt(
                path,
                ino,
                format!(
                    "the inode at byte {at} is not in use (i_links_count 0, i_mode 0o{:o})",
                    node.inode.mode
                ),
            ));
        }
        Ok(node)
    }

    /// Checks the metadata_csum inode checksum, as the kernel's
    /// `ext4_inode_csum_verify` does, before the inode's data is trusted.
    /// (A directory listing shows the inode without this check, so that
    /// one damaged inode leaves its siblings readable.)
    pub fn check_checksum(&self, sb: &Superblock, path: &str) -> Result<()> {
        if !sb.has_ro_compat(ro_compat::METADATA_CSUM) {
            return Ok(());
        }
        let (lo, hi) = ext_inode::checksum(sb, self.ino, &self.raw);
        let stored_lo = u16le(&self.raw, I_CHECKSUM_LO);
        let stored_hi = hi.map(|_| u16le(&self.raw, I_CHECKSUM_HI));
        if stored_lo == lo && stored_hi == hi {
            return Ok(());
        }
        let join = |l: u16, h: Option<u16>| (u32::from(h.unwrap_or(0)) << 16) | u32::from(l);
        Err(corrupt(
            path,
            self.ino,
            format!(
                "inode checksum mismatch at byte {}: stored 0x{:08x}, computed 0x{:08x}",
                self.at,
                join(stored_lo, stored_hi),
                join(lo, hi)
            ),
        ))
    }

    /// `i_flags`.
    pub fn flags(&self) -> u32 {
        self.inode.flags
    }

    /// Whether the file is encrypted.
    pub fn encrypted(&self) -> bool {
        self.flags() & flags::ENCRYPT != 0
    }

    /// Whether the data is inside the inode.
    pub fn inline(&self) -> bool {
        self.flags() & flags::INLINE_DATA != 0
    }

    /// The 60 bytes of `i_block`.
    pub fn i_block(&self) -> &[u8] {
        &self.raw[I_BLOCK..I_BLOCK + I_BLOCK_LEN]
    }

    /// Byte offset of `i_block` in the volume.
    pub fn i_block_at(&self) -> u64 {
        self.at + I_BLOCK as u64
    }

    /// What the inode is, from the type bits of `i_mode`.
    pub fn kind(&self, path: &str) -> Result<Kind> {
        Ok(match self.inode.mode & 0xF000 {
            0x1000 => Kind::Fifo,
            0x2000 => Kind::CharDevice,
            0x4000 => Kind::Dir,
            0x6000 => Kind::BlockDevice,
            0x8000 => Kind::File,
            0xA000 => Kind::Symlink,
            0xC000 => Kind::Socket,
            _ => {
                return Err(corrupt(
                    path,
                    self.ino,
                    format!("unknown file type in i_mode 0o{:06o}", self.inode.mode),
                ));
            }
        })
    }

    /// The size in bytes: `i_size_high` counts for regular files, and for
    /// directories with large_dir (the kernel's `ext4_isize`).
    pub fn size(&self, sb: &Superblock) -> u64 {
        let lo = u32le(&self.raw, 0x4);
        let ft = self.inode.mode & 0xF000;
        if ft == 0x8000 || sb.has_incompat(incompat::LARGEDIR) {
            hilo(u32le(&self.raw, 0x6C), lo)
        } else {
            u64::from(lo)
        }
    }

    /// Whether the 4-byte field at `off` lies inside the fixed fields
    /// (`i_extra_isize` covers it).
    fn has_field(&self, off: usize) -> bool {
        off + 4 <= self.extra_end
    }

    /// A timestamp: the signed 32-bit seconds at `sec`, and where the inode
    /// is large enough the `_extra` word at `extra`, whose low 2 bits
    /// extend the seconds past 2038 and whose upper 30 bits are
    /// nanoseconds (the kernel's `ext4_decode_extra_time`).
    fn time(&self, sec: usize, extra: usize) -> Time {
        let mut secs = i64::from(u32le(&self.raw, sec) as i32);
        let mut nanos = 0;
        if self.has_field(extra) {
            let x = u32le(&self.raw, extra);
            secs += i64::from(x & 3) << 32;
            nanos = (x >> 2).min(999_999_999);
        }
        Time { secs, nanos }
    }

    /// Major and minor numbers of a device node: the old 16-bit encoding in
    /// `i_block[0]`, else the new 32-bit one in `i_block[1]` (the kernel's
    /// `old_decode_dev` and `new_decode_dev`).
    fn rdev(&self) -> (u32, u32) {
        let b = self.i_block();
        let old = u32le(b, 0);
        if old != 0 {
            ((old >> 8) & 0xFF, old & 0xFF)
        } else {
            let dev = u32le(b, 4);
            (
                (dev & 0xF_FF00) >> 8,
                (dev & 0xFF) | ((dev >> 12) & 0xF_FF00),
            )
        }
    }

    /// The [`Meta`] of the inode.
    pub fn meta(&self, sb: &Superblock, path: &str) -> Result<Meta> {
        let kind = self.kind(path)?;
        let hi16 = |off: usize| u32::from(u16le(&self.raw, off)) << 16;
        Ok(Meta {
            id: u64::from(self.ino),
            kind,
            mode: u32::from(self.inode.mode) & 0o7777,
            uid: hi16(0x78) | u32::from(u16le(&self.raw, 0x2)),
            gid: hi16(0x7A) | u32::from(u16le(&self.raw, 0x18)),
            size: self.size(sb),
            mtime: self.time(I_MTIME, I_MTIME_EXTRA),
            atime: Some(self.time(I_ATIME, I_ATIME_EXTRA)),
            nlink: u32::from(self.inode.links),
            rdev: matches!(kind, Kind::CharDevice | Kind::BlockDevice).then(|| self.rdev()),
        })
    }
}
