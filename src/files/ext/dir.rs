//! Directories: linear `ext4_dir_entry_2` records, read block by block.
//!
//! Indexed (htree) directories are read linearly too: their dx_root block
//! is `.` and a `..` whose `rec_len` spans the index, and each dx_node
//! block is one empty entry (inode 0) spanning the block, so the index is
//! skipped like any empty slot; so is the metadata_csum tail (inode 0,
//! `rec_len` 12). An inline directory holds the parent's inode number in
//! the first 4 bytes of `i_block`, then entries in the other 56, then more
//! in the `system.data` attribute's value.

use crate::error::Result;
use crate::fs::ext::superblock::Superblock;

use super::corrupt;

/// Smallest valid `rec_len`: 8 bytes of header and a 1-byte name, rounded.
const MIN_REC_LEN: usize = 12;

/// `rec_len` as stored (`ext2fs_get_rec_len`): in blocks of 64 KiB or
/// more, 0 and 65535 mean the whole block and the low 2 bits are bits 16
/// and 17.
pub(super) fn rec_len(raw: u16, area_len: usize) -> usize {
    if area_len < 65536 {
        usize::from(raw)
    } else if raw == 0 || raw == u16::MAX {
        area_len
    } else {
        usize::from(raw & 65532) | (usize::from(raw & 3) << 16)
    }
}

/// Where a run of entries comes from, for messages.
pub(super) struct Area<'a> {
    /// The directory's path.
    pub path: &'a str,
    /// The directory's inode.
    pub ino: u32,
    /// Byte offset of the area in the volume.
    pub at: u64,
    /// "block" or "inline data".
    pub kind: &'static str,
}

/// Appends the live entries of `buf` (one directory block, or one part of
/// an inline directory) to `out` as `(inode, name)`, without `.` and
/// `..`. Every record is checked like the kernel's
/// `ext4_check_dir_entry`: `rec_len` at least 12, a multiple of 4 and
/// inside the area; the name inside `rec_len`; the inode number at most
/// `s_inodes_count`. Names are checked by the caller
/// ([`crate::files::dir_entry`]), so that a bad one costs only its entry.
pub(super) fn parse_entries(
    sb: &Superblock,
    buf: &[u8],
    area: &Area,
    out: &mut Vec<(u32, Vec<u8>)>,
) -> Result<()> {
    let len = buf.len();
    let mut off = 0usize;
    while off < len {
        let at = area.at + off as u64;
        let bad = |detail: String| {
            corrupt(
                area.path,
                area.ino,
                format!("directory entry at byte {at}: {detail}"),
            )
        };
        if len - off < 8 {
            return Err(bad(format!(
                "only {} bytes left in its {} of {len} bytes",
                len - off,
                area.kind
            )));
        }
        let h = &buf[off..off + 8];
        let inode = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let rlen = rec_len(u16::from_le_bytes([h[4], h[5]]), len);
        let name_len = usize::from(h[6]);
        if rlen < MIN_REC_LEN {
            return Err(bad(format!("rec_len {rlen} is less than {MIN_REC_LEN}")));
        }
        if !rlen.is_multiple_of(4) {
            return Err(bad(format!("rec_len {rlen} is not a multiple of 4")));
        }
        if rlen > len - off {
            return Err(bad(format!(
                "rec_len {rlen} runs past the end of its {} ({} bytes left of {len})",
                area.kind,
                len - off
            )));
        }
        if name_len + 8 > rlen {
            return Err(bad(format!(
                "name_len {name_len} does not fit in rec_len {rlen}"
            )));
        }
        if inode > sb.inodes_count {
            return Err(bad(format!(
                "inode {inode} is past the last inode {}",
                sb.inodes_count
            )));
        }
        if inode != 0 {
            let name = &buf[off + 8..off + 8 + name_len];
            if name != b"." && name != b".." {
                out.push((inode, name.to_vec()));
            }
        }
        off += rlen;
    }
    Ok(())
}
