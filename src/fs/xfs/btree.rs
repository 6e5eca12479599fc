//! The free-space btrees (bnobt by block, cntbt by size): short-form
//! btree blocks (`struct xfs_btree_block`), walked level by level along
//! the sibling pointers, one block in memory at a time.

use super::error::{BtreeFault, XfsError};
use super::superblock::{Superblock, checksum};
use crate::bytes::{u16be as be16, u32be as be32, u64be as be64};
use crate::error::Result;
use crate::source::Source;

/// No block (`NULLAGBLOCK`).
const NULL_AGBLOCK: u32 = u32::MAX;
/// Header of a v4 short-form block.
const V4_HEADER: usize = 16;
/// Header of a v5 short-form block (blkno, lsn, uuid, owner, crc).
const V5_HEADER: usize = 56;
/// Byte offset of `bb_crc` (v5).
const CRC_OFFSET: usize = 52;

/// Which free-space btree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// By block number.
    Bno,
    /// By extent length.
    Cnt,
}

impl Tree {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Bno => "bnobt",
            Tree::Cnt => "cntbt",
        }
    }

    /// Its block magic ("ABTB"/"ABTC" on v4, "AB3B"/"AB3C" on v5).
    pub fn magic(self, v5: bool) -> u32 {
        match (self, v5) {
            (Tree::Bno, false) => 0x4142_5442,
            (Tree::Cnt, false) => 0x4142_5443,
            (Tree::Bno, true) => 0x4142_3342,
            (Tree::Cnt, true) => 0x4142_3343,
        }
    }
}

/// What a walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Blocks in the tree, root included.
    pub blocks: u64,
    /// Sum of the free extents' lengths.
    pub free: u64,
    /// Number of free extents.
    pub extents: u64,
}

/// Walks tree `tree` of AG `ag` (root `root`, `levels` levels, AG of
/// `length` blocks), checking every block, and calls `leaf(start, count)`
/// for each free extent in the tree's order.
#[allow(clippy::too_many_arguments)]
pub fn walk(
    src: &dyn Source,
    sb: &Superblock,
    ag: u32,
    tree: Tree,
    root: u32,
    levels: u32,
    length: u32,
    mut leaf: impl FnMut(u32, u32),
) -> Result<Walked> {
    let v5 = sb.has_crc();
    let bs = sb.block_size as usize;
    let hdr = if v5 { V5_HEADER } else { V4_HEADER };
    let leaf_max = (bs - hdr) / 8;
    let node_max = (bs - hdr) / 12;
    let first_free = sb.first_free_able();
    let mut walked = Walked::default();
    let mut buf = vec![0u8; bs];
    let mut start = root;
    // The last record seen, across the leaves, for the order check.
    let mut last: Option<(u32, u32)> = None;
    for level in (0..levels as u16).rev() {
        let mut prev = NULL_AGBLOCK;
        let mut cur = start;
        let mut in_level = 0u32;
        let mut next_start = NULL_AGBLOCK;
        while cur != NULL_AGBLOCK {
            let offset = sb.ag_byte(ag, cur);
            let err = |fault| XfsError::Btree {
                tree: tree.name(),
                ag,
                block: cur,
                offset,
                fault,
            };
            in_level += 1;
            if in_level > length {
                return Err(err(BtreeFault::Loop {
                    level,
                    limit: length,
                })
                .into());
            }
            src.read_into(&mut buf, offset)?;
            let magic = be32(&buf, 0);
            let expected = tree.magic(v5);
            if magic != expected {
                return Err(err(BtreeFault::Magic {
                    found: magic,
                    expected,
                })
                .into());
            }
            if v5 {
                let (stored, computed) = checksum(&buf, CRC_OFFSET);
                if stored != computed {
                    return Err(err(BtreeFault::Checksum { stored, computed }).into());
                }
                let blkno = be64(&buf, 16);
                let daddr = offset / 512;
                if blkno != daddr {
                    return Err(err(BtreeFault::Blkno {
                        found: blkno,
                        expected: daddr,
                    })
                    .into());
                }
                if buf[32..48] != sb.metadata_uuid()[..] {
                    return Err(err(BtreeFault::Uuid).into());
                }
                let owner = be32(&buf, 48);
                if owner != ag {
                    return Err(err(BtreeFault::Owner { found: owner }).into());
                }
            }
            let found_level = be16(&buf, 4);
            if found_level != level {
                return Err(err(BtreeFault::Level {
                    found: found_level,
                    expected: level,
                })
                .into());
            }
            let numrecs = be16(&buf, 6);
            let max = if level == 0 { leaf_max } else { node_max };
            let is_root = cur == root;
            if usize::from(numrecs) > max
                || (numrecs == 0 && !is_root)
                || (numrecs == 0 && level > 0)
            {
                return Err(err(BtreeFault::Numrecs {
                    found: numrecs,
                    max,
                })
                .into());
            }
            let left = be32(&buf, 8);
            if left != prev {
                return Err(err(BtreeFault::Sibling {
                    which: "left",
                    found: left,
                    expected: if prev == NULL_AGBLOCK {
                        "none, first block of its level".into()
                    } else {
                        format!("block {prev}")
                    },
                })
                .into());
            }
            let right = be32(&buf, 12);
            if right != NULL_AGBLOCK && (right >= length || right < first_free || right == cur) {
                return Err(err(BtreeFault::Sibling {
                    which: "right",
                    found: right,
                    expected: format!("a block in {first_free}..{length} or none"),
                })
                .into());
            }
            walked.blocks += 1;
            if level > 0 {
                let ptrs = hdr + node_max * 8;
                for i in 0..usize::from(numrecs) {
                    let p = be32(&buf, ptrs + 4 * i);
                    if p < first_free || p >= length {
                        return Err(err(BtreeFault::Pointer {
                            index: i,
                            found: p,
                            length,
                        })
                        .into());
                    }
                    if i == 0 && next_start == NULL_AGBLOCK {
                        next_start = p;
                    }
                }
            } else {
                for i in 0..usize::from(numrecs) {
                    let s = be32(&buf, hdr + 8 * i);
                    let c = be32(&buf, hdr + 8 * i + 4);
                    if c == 0 || s < first_free || u64::from(s) + u64::from(c) > u64::from(length) {
                        return Err(err(BtreeFault::RecordRange {
                            index: i,
                            start: s,
                            count: c,
                            first: first_free,
                            length,
                        })
                        .into());
                    }
                    let ordered = match (tree, last) {
                        (_, None) => true,
                        (Tree::Bno, Some((ps, pc))) => {
                            u64::from(s) >= u64::from(ps) + u64::from(pc)
                        }
                        (Tree::Cnt, Some((ps, pc))) => (c, s) > (pc, ps),
                    };
                    if !ordered {
                        return Err(err(BtreeFault::RecordOrder {
                            index: i,
                            start: s,
                            count: c,
                        })
                        .into());
                    }
                    last = Some((s, c));
                    walked.free += u64::from(c);
                    walked.extents += 1;
                    leaf(s, c);
                }
            }
            if is_root && right != NULL_AGBLOCK {
                return Err(err(BtreeFault::Sibling {
                    which: "right",
                    found: right,
                    expected: "none, the root has no siblings".into(),
                })
                .into());
            }
            prev = cur;
            cur = right;
        }
        start = next_start;
    }
    Ok(walked)
}
