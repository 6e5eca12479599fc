//! Errors of the ext module: each names the problem and, where there is
//! one, the absolute byte offset in the volume.

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
    /// `s_reserved_gdt_blocks` larger than one block of pointers, which
    /// the kernel and e2fsck refuse.
    #[error("ext: invalid reserved GDT block count {value} at byte {offset} (at most {max})")]
    ReservedGdtBlocks {
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        value: u16,
        /// The largest valid value (block size / 4).
        max: u32,
    },
    /// Without FLEX_BG a group's bitmaps and inode table lie in the group
    /// (the kernel's `ext4_check_descriptors`, e2fsprogs'
    /// `ext2fs_check_desc`).
    #[error(
        "ext: group {group} descriptor (at byte {offset}) puts its {field} at block {block}, outside the group (blocks {first}..={last}) on a filesystem without flex_bg"
    )]
    NotInGroup {
        /// The group.
        group: u32,
        /// Byte offset of the descriptor.
        offset: u64,
        /// "block bitmap", "inode bitmap" or "inode table".
        field: &'static str,
        /// The first block outside the group.
        block: u64,
        /// First block of the group.
        first: u64,
        /// Last block of the group.
        last: u64,
    },
    /// A bitmap or inode table on a superblock copy.
    #[error(
        "ext: group {group} descriptor (at byte {offset}) puts its {field} on block {block}, the superblock of group {sb_group}"
    )]
    OverlapsSuperblock {
        /// The group.
        group: u32,
        /// Byte offset of the descriptor.
        offset: u64,
        /// "block bitmap", "inode bitmap" or "inode table".
        field: &'static str,
        /// The shared block.
        block: u64,
        /// The group whose superblock copy it is.
        sb_group: u32,
    },
    /// A bitmap or inode table inside a copy of the descriptor table or
    /// its reserved GDT blocks.
    #[error(
        "ext: group {group} descriptor (at byte {offset}) puts its {field} on block {block}, inside the group descriptor table of group {gdt_group} (blocks {first}..={last}, reserved GDT blocks included)"
    )]
    OverlapsDescriptors {
        /// The group.
        group: u32,
        /// Byte offset of the descriptor.
        offset: u64,
        /// "block bitmap", "inode bitmap" or "inode table".
        field: &'static str,
        /// The shared block.
        block: u64,
        /// The group holding that copy of the table.
        gdt_group: u32,
        /// First block of that copy.
        first: u64,
        /// Last block of that copy.
        last: u64,
    },
    /// Two bitmaps or inode tables share a block.
    #[error(
        "ext: group {group} descriptor (at byte {offset}) puts its {field} on block {block}, which group {other_group} (descriptor at byte {other_offset}) uses for its {other_field}"
    )]
    MetadataOverlap {
        /// The group.
        group: u32,
        /// Byte offset of its descriptor.
        offset: u64,
        /// "block bitmap", "inode bitmap" or "inode table".
        field: &'static str,
        /// The first shared block.
        block: u64,
        /// The other group (may be the same group).
        other_group: u32,
        /// Byte offset of the other descriptor.
        other_offset: u64,
        /// What the other group keeps there.
        other_field: &'static str,
    },
    /// `s_mmp_block` outside the filesystem (the kernel refuses to mount).
    #[error(
        "ext: MMP block {block} (s_mmp_block at byte {offset}) is outside the filesystem (blocks {first_data_block}..{blocks_count})"
    )]
    MmpBlockRange {
        /// Byte offset of `s_mmp_block`.
        offset: u64,
        /// The block it names.
        block: u64,
        /// The first valid block.
        first_data_block: u32,
        /// Blocks in the filesystem.
        blocks_count: u64,
    },
    /// The MMP block lacks its magic (the kernel refuses to mount).
    #[error("ext: bad MMP block magic 0x{found:08x} at byte {offset} (expected 0x004d4d50)")]
    MmpMagic {
        /// Byte offset of `mmp_magic`.
        offset: u64,
        /// The value found.
        found: u32,
    },
    /// The metadata_csum checksum of the MMP block does not match.
    #[error(
        "ext: MMP block checksum mismatch at byte {offset}: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )]
    MmpChecksum {
        /// Byte offset of `mmp_checksum`.
        offset: u64,
        /// The stored value.
        stored: u32,
        /// The value computed over the block.
        computed: u32,
    },
    /// `bg_itable_unused` exceeds the group's free inodes (e2fsck's "invalid
    /// unused inodes count"). A count disagreement: it is reported among
    /// the inconsistencies `--ignore-fs-check` relaxes, hence no "ext:".
    #[error(
        "group {group} descriptor says its last {unused} inodes were never used (bg_itable_unused at byte {offset}), but it has {free} free inodes of {per_group}"
    )]
    ItableUnused {
        /// The group.
        group: u32,
        /// Byte offset of `bg_itable_unused_lo`.
        offset: u64,
        /// The value found.
        unused: u32,
        /// `bg_free_inodes_count`.
        free: u32,
        /// Inodes per group.
        per_group: u32,
    },
    /// The inode bitmap marks an inode in use in the part of the inode
    /// table `bg_itable_unused` says was never used (e2fsck: "inode found
    /// in group's unused inodes area"). An inconsistency, hence no "ext:".
    #[error(
        "inode {inode} is marked in use (inode bitmap byte {offset}) although the descriptor of group {group} says its last {unused} inodes were never used"
    )]
    InodeBeyondUnused {
        /// The group.
        group: u32,
        /// Byte offset of the bitmap byte holding the inode's bit.
        offset: u64,
        /// The first such inode.
        inode: u64,
        /// `bg_itable_unused`.
        unused: u32,
    },
    /// resize_inode and meta_bg together, which e2fsck rejects. An
    /// inconsistency, hence no "ext:".
    #[error(
        "the resize_inode and meta_bg features are both set (s_feature_compat at byte {offset}), which e2fsck rejects"
    )]
    ResizeInodeWithMetaBg {
        /// Byte offset of `s_feature_compat`.
        offset: u64,
    },
    /// Reserved GDT blocks without the resize_inode feature, which e2fsck
    /// rejects. An inconsistency, hence no "ext:".
    #[error(
        "{value} reserved GDT blocks (s_reserved_gdt_blocks at byte {offset}) without the resize_inode feature"
    )]
    ReservedGdtWithoutResizeInode {
        /// Byte offset of `s_reserved_gdt_blocks`.
        offset: u64,
        /// The value found.
        value: u16,
    },
    /// A corrupt extent-tree node met while walking an inode's blocks
    /// for a metadata copy. An inconsistency (e2fsck repairs it), hence no
    /// "ext:".
    #[error("inode {inode}: corrupt extent tree node at byte {offset}: {problem}")]
    ExtentNode {
        /// The inode.
        inode: u32,
        /// Byte offset of the node's header.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// A block pointer (extent, indirect, xattr block) outside the
    /// filesystem. An inconsistency, hence no "ext:".
    #[error(
        "inode {inode}: block {block} (pointer at byte {offset}) is outside the filesystem (blocks {first_data_block}..{blocks_count})"
    )]
    BlockOutOfRange {
        /// The inode.
        inode: u32,
        /// Byte offset of the pointer.
        offset: u64,
        /// The first block it names.
        block: u64,
        /// The first valid block.
        first_data_block: u32,
        /// Blocks in the filesystem.
        blocks_count: u64,
    },
    /// An extent-tree or indirect block that an earlier inode's (or the
    /// same inode's) tree already uses: e2fsck's multiply-claimed block,
    /// and a loop guard. An inconsistency, hence no "ext:".
    #[error(
        "inode {inode}: tree block {block} (pointer at byte {offset}) is claimed twice (by this or another inode)"
    )]
    TreeBlockShared {
        /// The inode.
        inode: u32,
        /// Byte offset of the pointer.
        offset: u64,
        /// The block.
        block: u64,
    },
    /// A metadata block an inode uses is free in the block bitmap. An
    /// inconsistency, hence no "ext:".
    #[error("inode {inode}: metadata block {block} is free in the block bitmap")]
    MetadataBlockFree {
        /// The inode.
        inode: u32,
        /// The first such block.
        block: u64,
    },
}
