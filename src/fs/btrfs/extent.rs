//! The items of the extent tree (and the block group tree) that say what
//! is in use: EXTENT_ITEM (key bytenr, length), METADATA_ITEM (key
//! bytenr, level; length nodesize) and BLOCK_GROUP_ITEM (key start,
//! length; `used` first in the item).

use super::tree::{Block, key};
use crate::bytes::u64le;

/// `BTRFS_EXTENT_FLAG_TREE_BLOCK` in `btrfs_extent_item.flags`.
pub const FLAG_TREE_BLOCK: u64 = 2;

/// A used extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Logical start.
    pub logical: u64,
    /// Length in bytes.
    pub length: u64,
    /// Whether it holds a tree block (metadata).
    pub tree_block: bool,
}

/// A block group item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGroup {
    /// Logical start.
    pub logical: u64,
    /// Length.
    pub length: u64,
    /// `used` bytes.
    pub used: u64,
    /// Type and profile bits.
    pub flags: u64,
}

/// What one leaf item of the extent or block group tree is.
pub enum Item {
    /// A used extent.
    Extent(Extent),
    /// A block group.
    BlockGroup(BlockGroup),
    /// An item too short for its type: (slot, type, size).
    Short(u32, u8, u32),
    /// Anything else (back references, ...).
    Other,
}

/// Decodes item `slot` of a leaf of the extent or block group tree.
pub fn item(leaf: &Block, slot: u32, nodesize: u32) -> Item {
    let k = leaf.key(slot);
    let data = leaf.item(slot);
    let short = || Item::Short(slot, k.ty, data.len() as u32);
    match k.ty {
        key::EXTENT_ITEM | key::METADATA_ITEM => {
            // An EXTENT_ITEM of the pre-2.6.31 format (v0, 4 bytes) has no
            // flags; such volumes are refused by the kernel since 5.x.
            if data.len() < 24 {
                return short();
            }
            let tree_block = u64le(data, 16) & FLAG_TREE_BLOCK != 0;
            let length = if k.ty == key::METADATA_ITEM {
                u64::from(nodesize)
            } else {
                k.offset
            };
            Item::Extent(Extent {
                logical: k.objectid,
                length,
                tree_block: tree_block || k.ty == key::METADATA_ITEM,
            })
        }
        key::BLOCK_GROUP_ITEM => {
            if data.len() < 24 {
                return short();
            }
            Item::BlockGroup(BlockGroup {
                logical: k.objectid,
                length: k.offset,
                used: u64le(data, 0),
                flags: u64le(data, 16),
            })
        }
        _ => Item::Other,
    }
}

/// `btrfs_file_extent_item` types that point at disk extents.
const FILE_EXTENT_REG: u8 = 1;
const FILE_EXTENT_PREALLOC: u8 = 2;

/// The disk extent (logical start, length) an EXTENT_DATA item points
/// at, if any (not inline, not a hole). `None` for a short item too.
pub fn file_extent(data: &[u8]) -> Option<(u64, u64)> {
    // generation 8, ram_bytes 8, compression 1, encryption 1,
    // other_encoding 2, type 1 (byte 20), disk_bytenr (21),
    // disk_num_bytes (29), offset, num_bytes.
    if data.len() < 53 || !matches!(data[20], FILE_EXTENT_REG | FILE_EXTENT_PREALLOC) {
        return None;
    }
    let bytenr = u64le(data, 21);
    (bytenr != 0).then(|| (bytenr, u64le(data, 29)))
}
