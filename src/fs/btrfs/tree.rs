//! Tree blocks (`struct btrfs_header`, then key pointers in nodes or items
//! in leaves) and a walker that reads a tree one block at a time, checking
//! every block it reads.
//!
//! Memory is bounded by the depth of the tree: the walker keeps the blocks
//! on the path from the root (at most [`MAX_LEVEL`]) and, per level, the
//! last key seen. Keys must ascend across all the blocks of a level, so a
//! block reached twice (a loop or a cross link) is caught without keeping
//! a set of visited blocks.

use super::chunk::ChunkMap;
use super::error::{BlockProblem, BtrfsError};
use super::superblock::Superblock;
use crate::bytes::{u32le, u64le};
use crate::error::{Error, Result};
use crate::source::Source;

/// Size of `struct btrfs_header`.
pub const HEADER_SIZE: usize = 101;
/// Size of `struct btrfs_key_ptr` (key, blockptr, generation).
pub const KEY_PTR_SIZE: usize = 33;
/// Size of `struct btrfs_item` (key, offset, size).
pub const ITEM_SIZE: usize = 25;
/// `BTRFS_MAX_LEVEL`.
pub const MAX_LEVEL: u8 = 8;

/// Key types (`BTRFS_*_KEY`).
pub mod key {
    /// A file extent.
    pub const EXTENT_DATA: u8 = 108;
    /// A tree's root item (in the root tree and the log root tree).
    pub const ROOT_ITEM: u8 = 132;
    /// A used extent: key (bytenr, 168, length).
    pub const EXTENT_ITEM: u8 = 168;
    /// A used tree block (skinny metadata): key (bytenr, 169, level).
    pub const METADATA_ITEM: u8 = 169;
    /// A block group: key (start, 192, length).
    pub const BLOCK_GROUP_ITEM: u8 = 192;
    /// A chunk (chunk tree and sys_chunk_array).
    pub const CHUNK_ITEM: u8 = 228;
}

/// Tree object ids (`BTRFS_*_OBJECTID`).
pub mod objectid {
    /// The extent tree.
    pub const EXTENT_TREE: u64 = 2;
    /// The top subvolume.
    pub const FS_TREE: u64 = 5;
    /// The block group tree.
    pub const BLOCK_GROUP_TREE: u64 = 11;
    /// First subvolume id after the top one.
    pub const FIRST_FREE: u64 = 256;
    /// Last subvolume id.
    pub const LAST_FREE: u64 = -256i64 as u64;
    /// Log trees (`BTRFS_TREE_LOG_OBJECTID`, -6).
    pub const TREE_LOG: u64 = -6i64 as u64;
}

/// A key: (objectid, type, offset), ordered in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Object id.
    pub objectid: u64,
    /// Item type.
    pub ty: u8,
    /// Type-specific offset.
    pub offset: u64,
}

impl Key {
    /// Reads a `struct btrfs_disk_key` at `at`.
    pub fn read(b: &[u8], at: usize) -> Key {
        Key {
            objectid: u64le(b, at),
            ty: b[at + 8],
            offset: u64le(b, at + 9),
        }
    }
}

/// A tree block as read and checked.
pub struct Block {
    /// Its logical address.
    pub logical: u64,
    /// The physical offset of the copy read.
    pub physical: u64,
    /// Its `nodesize` bytes.
    pub data: Vec<u8>,
}

impl Block {
    /// `level`: 0 for a leaf.
    pub fn level(&self) -> u8 {
        self.data[0x64]
    }
    /// `nritems`.
    pub fn nritems(&self) -> u32 {
        u32le(&self.data, 0x60)
    }
    /// `generation`.
    pub fn generation(&self) -> u64 {
        u64le(&self.data, 0x50)
    }
    /// The key of item (leaf) or pointer (node) `slot`.
    pub fn key(&self, slot: u32) -> Key {
        let size = if self.level() == 0 {
            ITEM_SIZE
        } else {
            KEY_PTR_SIZE
        };
        Key::read(&self.data, HEADER_SIZE + size * slot as usize)
    }
    /// A node's pointer `slot`: (blockptr, generation).
    pub fn ptr(&self, slot: u32) -> (u64, u64) {
        let at = HEADER_SIZE + KEY_PTR_SIZE * slot as usize;
        (u64le(&self.data, at + 17), u64le(&self.data, at + 25))
    }
    /// A leaf's item `slot` data (bounds checked by [`Reader::read`]).
    pub fn item(&self, slot: u32) -> &[u8] {
        let at = HEADER_SIZE + ITEM_SIZE * slot as usize;
        let off = u32le(&self.data, at + 17) as usize;
        let size = u32le(&self.data, at + 21) as usize;
        &self.data[HEADER_SIZE + off..HEADER_SIZE + off + size]
    }
}

/// Reads and checks tree blocks.
pub struct Reader<'a> {
    /// The volume.
    pub src: &'a dyn Source,
    /// Its superblock.
    pub sb: &'a Superblock,
    /// The chunks known so far.
    pub chunks: &'a ChunkMap,
    /// Copies that failed their checks while another copy was good.
    pub warnings: Vec<String>,
}

impl Reader<'_> {
    fn block_err(&self, tree: &str, logical: u64, physical: u64, problem: BlockProblem) -> Error {
        Error::Btrfs(BtrfsError::TreeBlock {
            tree: tree.to_string(),
            logical,
            physical,
            problem,
        })
    }

    /// The physical offsets of every copy of the block at `logical` on
    /// this device.
    pub fn copies(&self, tree: &str, logical: u64) -> Result<Vec<u64>> {
        let ns = u64::from(self.sb.nodesize);
        let unmapped = || {
            Error::Btrfs(BtrfsError::Unmapped {
                what: format!("{tree} tree block"),
                logical,
            })
        };
        let c = self.chunks.find(logical).ok_or_else(unmapped)?;
        if !c.contains(logical.saturating_add(ns - 1)) {
            return Err(unmapped());
        }
        let off = logical - c.logical;
        let copies: Vec<u64> = c
            .stripes
            .iter()
            .filter(|s| s.0 == self.sb.devid)
            .map(|s| s.1 + off)
            .collect();
        if copies.is_empty() {
            return Err(unmapped());
        }
        Ok(copies)
    }

    /// Reads the block at `logical` and checks it: checksum, bytenr, fsid
    /// on each copy until one passes (a failed copy beside a good one is a
    /// warning); then level, generation (when the parent gives one),
    /// nritems, item bounds and key order.
    pub fn read(
        &mut self,
        tree: &str,
        logical: u64,
        level: u8,
        generation: Option<u64>,
    ) -> Result<Block> {
        let ns = self.sb.nodesize as usize;
        let mut first_err = None;
        let mut block = None;
        for physical in self.copies(tree, logical)? {
            // An unreadable or bad copy is passed over while another copy
            // may be good, as the kernel does with DUP.
            let checked = self.src.read_vec(physical, ns).and_then(|data| {
                match self.check_copy(&data, logical) {
                    Ok(()) => Ok(data),
                    Err(p) => Err(self.block_err(tree, logical, physical, p)),
                }
            });
            match checked {
                Ok(data) => {
                    block = Some(Block {
                        logical,
                        physical,
                        data,
                    });
                    break;
                }
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some((physical, e));
                    }
                }
            }
        }
        let Some(block) = block else {
            let (_, e) = first_err.expect("at least one copy");
            return Err(e);
        };
        if let Some((physical, e)) = first_err {
            let e = match e {
                Error::Btrfs(BtrfsError::TreeBlock { problem, .. }) => problem.to_string(),
                e => e.to_string(),
            };
            self.warnings.push(format!(
                "btrfs: {tree} tree block at logical {logical}: the copy at physical {physical} is bad ({e}); another copy is good (a scrub repairs it)"
            ));
        }
        let bad = |p| Err(self.block_err(tree, logical, block.physical, p));
        if block.level() != level {
            return bad(BlockProblem::Level {
                expected: level,
                found: block.level(),
            });
        }
        if let Some(g) = generation.filter(|&g| g != block.generation()) {
            return bad(BlockProblem::Generation {
                expected: g,
                found: block.generation(),
            });
        }
        let n = block.nritems();
        let room = (ns - HEADER_SIZE) as u32;
        let max = room / if level == 0 { ITEM_SIZE } else { KEY_PTR_SIZE } as u32;
        if n > max || (level > 0 && n == 0) {
            return bad(BlockProblem::Nritems { nritems: n, max });
        }
        if level == 0 {
            let items_end = n as usize * ITEM_SIZE;
            for slot in 0..n {
                let at = HEADER_SIZE + ITEM_SIZE * slot as usize;
                let off = u32le(&block.data, at + 17) as usize;
                let size = u32le(&block.data, at + 21) as usize;
                if off < items_end || off + size > room as usize {
                    return bad(BlockProblem::ItemBounds { slot });
                }
            }
        }
        for slot in 1..n {
            if block.key(slot) <= block.key(slot - 1) {
                return bad(BlockProblem::KeyOrder { slot });
            }
        }
        Ok(block)
    }

    /// Checks one copy: checksum, bytenr, fsid.
    fn check_copy(&self, data: &[u8], logical: u64) -> std::result::Result<(), BlockProblem> {
        self.sb
            .csum_type
            .verify(data)
            .map_err(|(stored, computed)| BlockProblem::Checksum { stored, computed })?;
        let found = u64le(data, 0x30);
        if found != logical {
            return Err(BlockProblem::Bytenr { found });
        }
        if data[0x20..0x30] != self.sb.tree_fsid() {
            let mut u = [0u8; 16];
            u.copy_from_slice(&data[0x20..0x30]);
            return Err(BlockProblem::Fsid {
                found: super::superblock::uuid_string(&u),
            });
        }
        Ok(())
    }

    /// Walks the tree rooted at `root` (of `level`, and `generation` when
    /// known), calling `visit` on every block, root first, in key order.
    pub fn walk(
        &mut self,
        tree: &str,
        root: u64,
        level: u8,
        generation: Option<u64>,
        mut visit: impl FnMut(&mut Self, &Block) -> Result<()>,
    ) -> Result<()> {
        // A tree cannot have more blocks than fit on the device.
        let budget = self.sb.dev_total_bytes / u64::from(self.sb.nodesize);
        let mut visited = 0u64;
        let mut last: [Option<Key>; MAX_LEVEL as usize] = [None; MAX_LEVEL as usize];
        // The path from the root: (block, next child slot).
        let mut path: Vec<(Block, u32)> = Vec::with_capacity(MAX_LEVEL as usize);
        let mut next = Some((root, level, generation));
        loop {
            if let Some((logical, level, generation)) = next.take() {
                visited += 1;
                if visited > budget {
                    let physical = self.copies(tree, logical)?[0];
                    return Err(self.block_err(
                        tree,
                        logical,
                        physical,
                        BlockProblem::TooManyBlocks,
                    ));
                }
                let block = self.read(tree, logical, level, generation)?;
                let n = block.nritems();
                if n > 0 {
                    let l = &mut last[usize::from(level)];
                    if l.is_some_and(|k| block.key(0) <= k) {
                        return Err(self.block_err(
                            tree,
                            logical,
                            block.physical,
                            BlockProblem::KeyOrder { slot: 0 },
                        ));
                    }
                    *l = Some(block.key(n - 1));
                }
                visit(self, &block)?;
                if level > 0 {
                    path.push((block, 0));
                }
            }
            let Some((node, slot)) = path.last_mut() else {
                return Ok(());
            };
            if *slot >= node.nritems() {
                path.pop();
                continue;
            }
            let (child, generation) = node.ptr(*slot);
            let level = node.level() - 1;
            *slot += 1;
            if path.iter().any(|(b, _)| b.logical == child) {
                let (logical, physical) = {
                    let n = &path[path.len() - 1].0;
                    (n.logical, n.physical)
                };
                return Err(self.block_err(
                    tree,
                    logical,
                    physical,
                    BlockProblem::Loop { target: child },
                ));
            }
            next = Some((child, level, Some(generation)));
        }
    }
}
