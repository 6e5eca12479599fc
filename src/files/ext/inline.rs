//! Inline data (the inline_data feature): a small file's, directory's or
//! symlink's data kept in the inode itself, first in the 60 bytes of
//! `i_block`, then in the value of the `system.data` extended attribute in
//! the inode's extra space (after `i_extra_isize`).

use crate::bytes::{u16le, u32le};
use crate::error::Result;

use super::corrupt;
use super::inode::Node;

/// `h_magic` of the in-inode extended attribute area.
const XATTR_MAGIC: u32 = 0xEA02_0000;
/// `e_name_index` of `system.*` attributes.
const XATTR_INDEX_SYSTEM: u8 = 7;
/// Size of an attribute entry before its name.
const XATTR_ENTRY: usize = 16;

/// Where the value of `system.data` lies in `node.raw`: `(offset, len)`,
/// or `None` when the inode has no such attribute. The in-inode area is a
/// 4-byte magic then entries up to a zero word; value offsets count from
/// the first entry. Entries and values must lie inside the inode.
pub(super) fn system_data(node: &Node, path: &str) -> Result<Option<(usize, usize)>> {
    let raw = &node.raw;
    let start = node.extra_end;
    if start + 4 > raw.len() || u32le(raw, start) != XATTR_MAGIC {
        return Ok(None);
    }
    let first = start + 4;
    let end = raw.len();
    let mut p = first;
    while p + 4 <= end && u32le(raw, p) != 0 {
        let at = node.at + p as u64;
        let name_len = usize::from(raw[p]);
        let name_end = p + XATTR_ENTRY + name_len;
        if name_end > end {
            return Err(corrupt(
                path,
                node.ino,
                format!("extended attribute entry at byte {at} runs past the end of the inode"),
            ));
        }
        let index = raw[p + 1];
        if index == XATTR_INDEX_SYSTEM && &raw[p + XATTR_ENTRY..name_end] == b"data" {
            let value_offs = usize::from(u16le(raw, p + 2));
            let value_inum = u32le(raw, p + 4);
            let value_size = u32le(raw, p + 8) as usize;
            if value_inum != 0 {
                return Err(corrupt(
                    path,
                    node.ino,
                    format!(
                        "the system.data attribute at byte {at} is stored in inode {value_inum}"
                    ),
                ));
            }
            let v0 = first + value_offs;
            if v0.saturating_add(value_size) > end {
                return Err(corrupt(
                    path,
                    node.ino,
                    format!(
                        "the system.data attribute at byte {at} has {value_size} bytes at offset {value_offs}, past the end of the inode"
                    ),
                ));
            }
            return Ok(Some((v0, value_size)));
        }
        p = name_end.div_ceil(4) * 4;
    }
    Ok(None)
}

/// The first `size` bytes of a file's inline data: `i_block`, then the
/// `system.data` value.
pub(super) fn content(node: &Node, size: u64, path: &str) -> Result<Vec<u8>> {
    let mut data = node.i_block().to_vec();
    if let Some((at, len)) = system_data(node, path)? {
        data.extend_from_slice(&node.raw[at..at + len]);
    }
    if size > data.len() as u64 {
        return Err(corrupt(
            path,
            node.ino,
            format!(
                "size {size} is more than the {} bytes of inline data",
                data.len()
            ),
        ));
    }
    data.truncate(size as usize);
    Ok(data)
}
