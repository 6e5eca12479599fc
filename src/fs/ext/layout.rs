//! Where each group's metadata may lie: the checks the kernel
//! (`ext4_check_descriptors`) and e2fsprogs (`ext2fs_check_desc`) make
//! before they trust the descriptors.

use super::ExtError;
use super::group_desc::{BG_ITABLE_UNUSED, GroupDesc};
use super::superblock::{SUPERBLOCK_OFFSET, Superblock, compat, incompat};

/// The names of a group's own metadata, in descriptor order.
pub(super) const FIELDS: [&str; 3] = ["block bitmap", "inode bitmap", "inode table"];

pub(super) fn check_descriptor(
    sb: &Superblock,
    g: u32,
    d: &GroupDesc,
    offset: u64,
) -> Result<(), ExtError> {
    let valid = u64::from(sb.first_data_block)..sb.blocks_count;
    let fields = [
        ("block bitmap", d.block_bitmap, 1),
        ("inode bitmap", d.inode_bitmap, 1),
        ("inode table", d.inode_table, sb.inode_table_blocks()),
    ];
    for (field, block, len) in fields {
        let end = block.saturating_add(len);
        if !valid.contains(&block) || end > sb.blocks_count {
            let bad = if valid.contains(&block) {
                end - 1
            } else {
                block
            };
            return Err(ExtError::DescriptorField {
                group: g,
                offset,
                field,
                block: bad,
                first_data_block: sb.first_data_block,
                blocks_count: sb.blocks_count,
            });
        }
    }
    Ok(())
}

/// The blocks a group's own metadata takes: (first block, count) of its
/// block bitmap, inode bitmap and inode table, in [`FIELDS`] order.
pub(super) fn own_metadata(sb: &Superblock, d: &GroupDesc) -> [(u64, u64); 3] {
    [
        (d.block_bitmap, 1),
        (d.inode_bitmap, 1),
        (d.inode_table, sb.inode_table_blocks()),
    ]
}

/// Without FLEX_BG, a group's bitmaps and inode table must lie inside the
/// group: the kernel refuses to mount otherwise ("not in group"), and
/// e2fsck's `ext2fs_check_desc` rejects the descriptors. Runs after
/// [`check_descriptor`], so every range is inside the filesystem.
pub(super) fn check_in_group(
    sb: &Superblock,
    g: u32,
    d: &GroupDesc,
    offset: u64,
) -> Result<(), ExtError> {
    if sb.has_incompat(incompat::FLEX_BG) {
        return Ok(());
    }
    let first = sb.group_first_block(g);
    let last = first + sb.group_blocks(g) - 1;
    for (field, (block, len)) in FIELDS.into_iter().zip(own_metadata(sb, d)) {
        let end = block + len - 1;
        if block < first || end > last {
            return Err(ExtError::NotInGroup {
                group: g,
                offset,
                field,
                block: if block < first || block > last {
                    block
                } else {
                    last + 1
                },
                first,
                last,
            });
        }
    }
    Ok(())
}

/// Who a block range belongs to, for [`check_overlaps`].
#[derive(Clone, Copy, Debug)]
enum Owner {
    /// A superblock copy of this group.
    Superblock(u32),
    /// A descriptor table copy (with reserved GDT blocks) of this group.
    Descriptors(u32),
    /// A group's bitmap or inode table: the group and the [`FIELDS`] index.
    Own(u32, usize),
}

/// A block range `[start, end)` and its owner.
#[derive(Clone, Copy, Debug)]
pub(super) struct Extent {
    start: u64,
    end: u64,
    owner: Owner,
}

/// No bitmap or inode table may share a block with a superblock copy, a
/// descriptor table copy (reserved GDT blocks included), or another bitmap
/// or inode table: e2fsprogs' `ext2fs_check_desc`, which e2fsck runs before
/// anything else (it then falls back to the backup descriptors). The
/// kernel refuses a read-write mount for the primary superblock and table.
/// Superblock and descriptor copies are not checked against each other.
pub(super) fn check_overlaps(sb: &Superblock, descs: &[GroupDesc]) -> Result<(), ExtError> {
    let mut extents = Vec::with_capacity(descs.len() * 5);
    for (g, d) in descs.iter().enumerate() {
        let g = g as u32;
        let base = sb.base_metadata(g);
        let mut push = |start: u64, n: u64, owner: Owner| {
            if n > 0 {
                extents.push(Extent {
                    start,
                    end: start + n,
                    owner,
                });
            }
        };
        if let Some((block, n)) = base.superblock {
            push(block, n, Owner::Superblock(g));
        }
        if let Some((block, n)) = base.old_desc {
            push(block, n, Owner::Descriptors(g));
        }
        if let Some(block) = base.new_desc {
            push(block, 1, Owner::Descriptors(g));
        }
        for (i, (block, n)) in own_metadata(sb, d).into_iter().enumerate() {
            push(block, n, Owner::Own(g, i));
        }
    }
    // A stable sort keeps descriptor order among equal ranges, so the later
    // group (or field) is the one reported, as e2fsck does.
    extents.sort_by_key(|e| (e.start, e.end));
    // The extent reaching furthest so far, among all and among the groups'
    // own metadata: an extent overlaps an earlier one if and only if the
    // furthest-reaching earlier one ends after it starts.
    let mut reach_all: Option<Extent> = None;
    let mut reach_own: Option<Extent> = None;
    for e in extents {
        let own = matches!(e.owner, Owner::Own(..));
        let earlier = if own { reach_all } else { reach_own };
        if let Some(p) = earlier
            && p.end > e.start
        {
            let (mine, other) = if own { (e, p) } else { (p, e) };
            // `mine` is always a group's own: `e` when `own`, else from
            // `reach_own`.
            if let Owner::Own(g, i) = mine.owner {
                return Err(overlap_error(sb, g, i, other, e.start));
            }
        }
        if reach_all.is_none_or(|r| e.end > r.end) {
            reach_all = Some(e);
        }
        if own && reach_own.is_none_or(|r| e.end > r.end) {
            reach_own = Some(e);
        }
    }
    Ok(())
}

/// The error for field `i` of group `group` sharing `block` with `other`.
pub(super) fn overlap_error(
    sb: &Superblock,
    group: u32,
    i: usize,
    other: Extent,
    block: u64,
) -> ExtError {
    let offset = sb.descriptor_offset(group);
    let field = FIELDS[i];
    match other.owner {
        Owner::Superblock(sb_group) => ExtError::OverlapsSuperblock {
            group,
            offset,
            field,
            block,
            sb_group,
        },
        Owner::Descriptors(gdt_group) => ExtError::OverlapsDescriptors {
            group,
            offset,
            field,
            block,
            gdt_group,
            first: other.start,
            last: other.end - 1,
        },
        Owner::Own(other_group, j) => ExtError::MetadataOverlap {
            group,
            offset,
            field,
            block,
            other_group,
            other_offset: sb.descriptor_offset(other_group),
            other_field: FIELDS[j],
        },
    }
}

/// The resize inode's feature and superblock field agree with the rest, as
/// e2fsck's `check_resize_inode` wants: no resize_inode with meta_bg (mke2fs
/// has refused to make that since 1.43), and no reserved GDT blocks
/// without resize_inode (the kernel refuses to resize such a filesystem).
pub(super) fn check_resize_inode(sb: &Superblock) -> Result<(), ExtError> {
    let resize = sb.has_compat(compat::RESIZE_INODE);
    if resize && sb.has_incompat(incompat::META_BG) {
        return Err(ExtError::ResizeInodeWithMetaBg {
            offset: SUPERBLOCK_OFFSET + 0x5C,
        });
    }
    if !resize && sb.reserved_gdt_blocks != 0 {
        return Err(ExtError::ReservedGdtWithoutResizeInode {
            offset: SUPERBLOCK_OFFSET + 0xCE,
            value: sb.reserved_gdt_blocks,
        });
    }
    Ok(())
}

/// `bg_itable_unused` may not exceed the group's free inodes nor its
/// inodes (e2fsck's check, with descriptor checksums only: without them
/// the field is unused).
pub(super) fn check_itable_unused(sb: &Superblock, g: u32, d: &GroupDesc) -> Result<(), ExtError> {
    if d.itable_unused > d.free_inodes || d.itable_unused > sb.inodes_per_group {
        return Err(ExtError::ItableUnused {
            group: g,
            offset: sb.descriptor_offset(g) + BG_ITABLE_UNUSED,
            unused: d.itable_unused,
            free: d.free_inodes,
            per_group: sb.inodes_per_group,
        });
    }
    Ok(())
}
