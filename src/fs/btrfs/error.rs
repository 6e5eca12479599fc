//! Errors of the btrfs module: each names the structure, its logical
//! address where it has one, and the byte offset in the volume.

use std::fmt;

/// What is wrong with one tree block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockProblem {
    /// The stored checksum is not the one computed over the block.
    Checksum {
        /// The checksum stored in the header (hex).
        stored: String,
        /// The checksum computed over the block (hex).
        computed: String,
    },
    /// `bytenr` in the header is not the address the block was read for.
    Bytenr {
        /// The value found in the header.
        found: u64,
    },
    /// The header's fsid is not the filesystem's (metadata) UUID.
    Fsid {
        /// The fsid found.
        found: String,
    },
    /// The level is not the one the parent (or the superblock) gives.
    Level {
        /// The level expected.
        expected: u8,
        /// The level found.
        found: u8,
    },
    /// The header generation is not the one the parent pointer records.
    Generation {
        /// The generation the parent pointer records.
        expected: u64,
        /// The generation in the header.
        found: u64,
    },
    /// More items than fit in the block, or a node with none.
    Nritems {
        /// The item count found.
        nritems: u32,
        /// The most that fit.
        max: u32,
    },
    /// An item's data lies outside the block or over the item headers.
    ItemBounds {
        /// The item index.
        slot: u32,
    },
    /// Keys not in strictly ascending order inside the block, or the
    /// block's keys not after those of the block before it at this level
    /// (a block reached twice: a loop or a cross link).
    KeyOrder {
        /// The item index.
        slot: u32,
    },
    /// A child pointer leads back to a block on the path from the root.
    Loop {
        /// The logical address of the ancestor pointed to.
        target: u64,
    },
    /// More blocks than the volume can hold: the tree is not a tree.
    TooManyBlocks,
}

impl fmt::Display for BlockProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockProblem::Checksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch (stored {stored}, computed {computed})"
                )
            }
            BlockProblem::Bytenr { found } => {
                write!(f, "header bytenr is {found}, not the block's address")
            }
            BlockProblem::Fsid { found } => {
                write!(f, "header fsid {found} is not this filesystem's")
            }
            BlockProblem::Level { expected, found } => {
                write!(f, "level {found}, expected {expected}")
            }
            BlockProblem::Generation { expected, found } => write!(
                f,
                "generation {found}, but its parent points to generation {expected}"
            ),
            BlockProblem::Nritems { nritems, max } => {
                write!(f, "{nritems} items (at most {max} fit, a node needs one)")
            }
            BlockProblem::ItemBounds { slot } => {
                write!(f, "item {slot} lies outside the block's data area")
            }
            BlockProblem::KeyOrder { slot } => write!(
                f,
                "key {slot} is not after the key before it (keys out of order, or the block is reached twice)"
            ),
            BlockProblem::Loop { target } => write!(
                f,
                "loop in the tree: a pointer leads back to block {target} on the path from the root"
            ),
            BlockProblem::TooManyBlocks => {
                write!(
                    f,
                    "more blocks than the volume can hold (a loop in the tree)"
                )
            }
        }
    }
}

/// A corrupt or unsupported btrfs volume. Offsets are absolute bytes in
/// the volume; logical addresses are btrfs's own.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtrfsError {
    /// No `_BHRfS_M` at the primary superblock.
    #[error("btrfs: bad superblock magic at byte {offset} (expected _BHRfS_M)")]
    BadMagic {
        /// Byte offset of the magic.
        offset: u64,
    },
    /// `csum_type` is not one of the four btrfs knows.
    #[error("btrfs: unknown checksum type {found} in the superblock at byte {offset}")]
    ChecksumType {
        /// Byte offset of the superblock.
        offset: u64,
        /// The value found.
        found: u16,
    },
    /// The superblock checksum does not match.
    #[error(
        "btrfs: superblock checksum mismatch at byte {offset}: stored {stored}, computed {computed} ({kind}); `btrfs rescue super-recover` may restore it from a mirror"
    )]
    SuperblockChecksum {
        /// Byte offset of the superblock.
        offset: u64,
        /// The checksum type.
        kind: &'static str,
        /// The stored value (hex).
        stored: String,
        /// The computed value (hex).
        computed: String,
    },
    /// A superblock field out of range.
    #[error("btrfs: invalid superblock: {field} is {value} ({why})")]
    Superblock {
        /// The field name as in btrfs-progs.
        field: &'static str,
        /// The value found.
        value: u64,
        /// What it must be.
        why: &'static str,
    },
    /// Something fsimg does not image correctly yet.
    #[error("btrfs: {what} is not supported; use --fs-type raw to copy every block")]
    Unsupported {
        /// What was found.
        what: String,
    },
    /// The superblock's system chunk array cannot be parsed.
    #[error("btrfs: corrupt sys_chunk_array in the superblock at byte {offset}: {why}")]
    SysChunkArray {
        /// Byte offset of the entry.
        offset: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// A chunk item that cannot be right.
    #[error("btrfs: chunk at logical {logical}: {why}")]
    Chunk {
        /// The chunk's logical start.
        logical: u64,
        /// What is wrong.
        why: String,
    },
    /// A stripe of a chunk ends past the device.
    #[error(
        "btrfs: chunk at logical {logical} (length {length}) has a stripe at physical {physical} past the end of the device ({device_size} bytes)"
    )]
    ChunkPastDevice {
        /// The chunk's logical start.
        logical: u64,
        /// The chunk length.
        length: u64,
        /// The stripe's physical offset.
        physical: u64,
        /// The device size.
        device_size: u64,
    },
    /// A logical address no chunk maps.
    #[error("btrfs: {what} at logical {logical} is in no chunk")]
    Unmapped {
        /// What was looked up ("root tree block").
        what: String,
        /// The logical address.
        logical: u64,
    },
    /// A tree block failed a check.
    #[error("btrfs: {tree} tree block at logical {logical} (physical {physical}): {problem}")]
    TreeBlock {
        /// Which tree ("extent").
        tree: String,
        /// The block's logical address.
        logical: u64,
        /// The physical offset of the copy read.
        physical: u64,
        /// What is wrong.
        problem: BlockProblem,
    },
    /// A tree the volume needs is missing from the root tree.
    #[error("btrfs: the root tree has no {tree} tree root item")]
    MissingRoot {
        /// The tree's name.
        tree: &'static str,
    },
    /// An item too short for its type.
    #[error(
        "btrfs: {tree} tree leaf at logical {logical}: item {slot} (type {item_type}) is {size} bytes, too short"
    )]
    ShortItem {
        /// Which tree.
        tree: String,
        /// The leaf's logical address.
        logical: u64,
        /// The item index.
        slot: u32,
        /// The key type.
        item_type: u8,
        /// Its size.
        size: u32,
    },
}
