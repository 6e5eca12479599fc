//! Errors of the XFS module: each names the structure, its allocation
//! group where it has one, and its absolute byte offset in the volume.

/// What is wrong with one free-space btree block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtreeFault {
    /// The block's magic is not the tree's.
    #[error("bad magic 0x{found:08x} (expected 0x{expected:08x})")]
    Magic {
        /// The value found.
        found: u32,
        /// The tree's magic for this filesystem version.
        expected: u32,
    },
    /// The v5 CRC32C does not match.
    #[error("checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}")]
    Checksum {
        /// The stored value.
        stored: u32,
        /// The value computed over the block.
        computed: u32,
    },
    /// `bb_level` is not the level the walk reached it at.
    #[error("level {found}, expected {expected}")]
    Level {
        /// The value found.
        found: u16,
        /// The level below its parent.
        expected: u16,
    },
    /// `bb_blkno` (v5) is not the block's own address.
    #[error("bb_blkno {found} is not its own address (sector {expected})")]
    Blkno {
        /// The value found.
        found: u64,
        /// The block's address in 512-byte sectors.
        expected: u64,
    },
    /// `bb_owner` (v5) is not the AG number.
    #[error("bb_owner {found} is not its AG")]
    Owner {
        /// The value found.
        found: u32,
    },
    /// `bb_uuid` (v5) is not the filesystem's.
    #[error("bb_uuid is not the filesystem's UUID")]
    Uuid,
    /// `bb_numrecs` is zero (outside a root leaf) or more than fit.
    #[error("{found} records, at most {max} fit")]
    Numrecs {
        /// The value found.
        found: u16,
        /// The most that fit in one block.
        max: usize,
    },
    /// A sibling pointer that does not link back, or leaves the AG.
    #[error("{which} sibling {found} (expected {expected})")]
    Sibling {
        /// "left" or "right".
        which: &'static str,
        /// The value found.
        found: u32,
        /// The value the walk expected.
        expected: String,
    },
    /// A child pointer outside the AG.
    #[error("child pointer {index} is block {found}, outside the AG ({length} blocks)")]
    Pointer {
        /// Index of the pointer.
        index: usize,
        /// The value found.
        found: u32,
        /// The AG length.
        length: u32,
    },
    /// A free extent outside the AG's free-able blocks.
    #[error(
        "record {index} (start {start}, length {count}) is outside the AG's free blocks {first}..{length}"
    )]
    RecordRange {
        /// Index of the record in the block.
        index: usize,
        /// Its first block.
        start: u32,
        /// Its length.
        count: u32,
        /// The first block after the AG headers.
        first: u32,
        /// The AG length.
        length: u32,
    },
    /// A record out of the tree's order, or overlapping the previous one.
    #[error("record {index} (start {start}, length {count}) is out of order")]
    RecordOrder {
        /// Index of the record in the block.
        index: usize,
        /// Its first block.
        start: u32,
        /// Its length.
        count: u32,
    },
    /// More levels than a btree of this AG can have.
    #[error("{levels} levels, at most {max} possible")]
    TooDeep {
        /// The root's level count.
        levels: u32,
        /// The limit.
        max: u32,
    },
    /// More blocks in one level than the AG holds (a loop).
    #[error("more than {limit} blocks at level {level}: the sibling chain loops")]
    Loop {
        /// The level walked.
        level: u16,
        /// The AG length.
        limit: u32,
    },
}

/// A corrupt or unsupported XFS volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XfsError {
    /// `sb_magicnum` is not "XFSB".
    #[error("xfs: bad superblock magic 0x{found:08x} at byte 0 (expected 0x58465342, \"XFSB\")")]
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// A version this module does not read.
    #[error("xfs: unsupported superblock version {version} at byte 100 (only 4 and 5)")]
    Version {
        /// The version number (low 4 bits of `sb_versionnum`).
        version: u16,
    },
    /// A geometry field out of range.
    #[error("xfs: invalid superblock: {field} {value} at byte {offset} ({why})")]
    Geometry {
        /// The field name.
        field: &'static str,
        /// The value found.
        value: u64,
        /// Its byte offset.
        offset: u64,
        /// The rule it breaks.
        why: &'static str,
    },
    /// The v5 superblock CRC32C does not match.
    #[error(
        "xfs: superblock checksum mismatch at byte 224: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )]
    SuperblockChecksum {
        /// The stored value.
        stored: u32,
        /// The value computed over the superblock sector.
        computed: u32,
    },
    /// Feature bits this module does not know.
    #[error("xfs: unknown {which} feature bits 0x{bits:x} in the superblock; use --fs-type raw")]
    UnknownFeatures {
        /// "incompat", "ro_compat", "log_incompat" or "v4 features2".
        which: &'static str,
        /// The unknown bits.
        bits: u32,
    },
    /// The NEEDSREPAIR incompat bit: xfs_repair was interrupted.
    #[error(
        "xfs: the superblock has NEEDSREPAIR set (an xfs_repair run did not finish); run xfs_repair first"
    )]
    NeedsRepair,
    /// The log is on another device.
    #[error(
        "xfs: the log is external (sb_logstart is 0): it lives on another device, which fsimg does not copy; use --fs-type raw for the data device alone"
    )]
    ExternalLog,
    /// A realtime section on another device.
    #[error(
        "xfs: the filesystem has a realtime section ({rblocks} blocks) on another device, which fsimg does not copy; use --fs-type raw for the data device alone"
    )]
    Realtime {
        /// `sb_rblocks`.
        rblocks: u64,
    },
    /// An AG header (AGF, AGFL) whose magic is wrong.
    #[error(
        "xfs: bad {what} magic 0x{found:08x} in AG {ag} at byte {offset} (expected 0x{expected:08x})"
    )]
    HeaderMagic {
        /// "AGF" or "AGFL".
        what: &'static str,
        /// The AG.
        ag: u32,
        /// Byte offset of the header.
        offset: u64,
        /// The value found.
        found: u32,
        /// The expected magic.
        expected: u32,
    },
    /// An AG header whose v5 CRC32C does not match.
    #[error(
        "xfs: {what} checksum mismatch in AG {ag} at byte {offset}: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )]
    HeaderChecksum {
        /// "AGF" or "AGFL".
        what: &'static str,
        /// The AG.
        ag: u32,
        /// Byte offset of the header.
        offset: u64,
        /// The stored value.
        stored: u32,
        /// The value computed over the sector.
        computed: u32,
    },
    /// An AG header field that disagrees with the superblock.
    #[error("xfs: {what} of AG {ag} at byte {offset}: {field} is {found}, expected {expected}")]
    HeaderField {
        /// "AGF" or "AGFL".
        what: &'static str,
        /// The AG.
        ag: u32,
        /// Byte offset of the header.
        offset: u64,
        /// The field.
        field: &'static str,
        /// The value found.
        found: String,
        /// What the superblock implies.
        expected: String,
    },
    /// An AGFL entry outside the AG.
    #[error(
        "xfs: AGFL of AG {ag} at byte {offset}: entry {index} is block {block}, outside the AG's free-able blocks"
    )]
    AgflEntry {
        /// The AG.
        ag: u32,
        /// Byte offset of the AGFL.
        offset: u64,
        /// The ring index.
        index: u32,
        /// The block found.
        block: u32,
    },
    /// A bad free-space btree block.
    #[error("xfs: {tree} block {block} of AG {ag} at byte {offset}: {fault}")]
    Btree {
        /// "bnobt" or "cntbt".
        tree: &'static str,
        /// The AG.
        ag: u32,
        /// The AG-relative block number.
        block: u32,
        /// Its absolute byte offset.
        offset: u64,
        /// What is wrong.
        fault: BtreeFault,
    },
}
