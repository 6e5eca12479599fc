//! Block maps: which volume blocks hold which blocks of a file, from its
//! extent tree or its indirect block map, and the reader that turns them
//! into large source reads.
//!
//! The whole map is read when a file is opened, as sorted runs of
//! logically and physically contiguous blocks. Every tree block is read at
//! most once per file: a tree block met twice (a loop, or two pointers to
//! one block) is corrupt. With bigalloc, extents still map single blocks.

use std::collections::HashSet;

use crate::bytes::{hilo, u16le, u32le};
use crate::error::Result;
use crate::files::FileRead;
use crate::fs::ext::metadata::{EXTENT_MAGIC, INIT_MAX_LEN, extent_header_problem};
use crate::source::Source;

use super::corrupt;
use super::inode::Node;
use crate::fs::ext::inode::flags::EXTENTS as EXTENTS_FL;

/// Blocks `[logical, logical + len)` of a file at `[physical, physical +
/// len)` of the volume; `init` is false for an unwritten (fallocated)
/// extent, which reads as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    /// First file block.
    pub logical: u64,
    /// First volume block.
    pub physical: u64,
    /// Number of blocks.
    pub len: u64,
    /// Whether the blocks hold data.
    pub init: bool,
}

/// Builds the block map of one inode.
struct Mapper<'a> {
    src: &'a dyn Source,
    node: &'a Node,
    path: &'a str,
    /// Block size in bytes.
    bs: u64,
    /// First block a file can use (`s_first_data_block`, at least 1).
    first_block: u64,
    /// `s_blocks_count`.
    blocks_count: u64,
    /// Tree blocks read so far.
    seen: HashSet<u64>,
    runs: Vec<Run>,
}

/// The block map of `node`, sorted by file block. Only the blocks below
/// `limit` matter for an indirect map (whose blocks past the end of the
/// file are not read); extents past it are kept (fallocated past EOF).
pub(super) fn block_map(
    src: &dyn Source,
    sb: &crate::fs::ext::superblock::Superblock,
    node: &Node,
    limit: u64,
    path: &str,
) -> Result<Vec<Run>> {
    let mut m = Mapper {
        src,
        node,
        path,
        bs: u64::from(sb.block_size),
        first_block: u64::from(sb.first_data_block).max(1),
        blocks_count: sb.blocks_count,
        seen: HashSet::new(),
        runs: Vec::new(),
    };
    if node.flags() & EXTENTS_FL != 0 {
        let root = node.i_block().to_vec();
        m.extent_node(&root, node.i_block_at(), None)?;
    } else {
        m.indirect_root(limit)?;
    }
    Ok(m.runs)
}

impl Mapper<'_> {
    fn corrupt(&self, detail: String) -> crate::error::Error {
        corrupt(self.path, self.node.ino, detail)
    }

    /// Checks that `n` blocks from `block` lie inside the filesystem; `at`
    /// is the byte of the pointer, `what` what it is.
    fn check_range(&self, what: &str, at: u64, block: u64, n: u64) -> Result<()> {
        if block >= self.first_block && block.saturating_add(n) <= self.blocks_count {
            return Ok(());
        }
        Err(self.corrupt(format!(
            "{what} at byte {at} points at block {block}{}, outside the filesystem (blocks {}..{})",
            if n > 1 {
                format!(" (+{n})")
            } else {
                String::new()
            },
            self.first_block,
            self.blocks_count
        )))
    }

    /// Reads tree block `block`, which the pointer at byte `at` names,
    /// refusing one met before.
    fn tree_block(&mut self, what: &str, at: u64, block: u64) -> Result<Vec<u8>> {
        self.check_range(what, at, block, 1)?;
        if !self.seen.insert(block) {
            return Err(self.corrupt(format!(
                "{what} at byte {at} points at block {block}, already part of the tree (a loop?)"
            )));
        }
        self.src.read_vec(block * self.bs, self.bs as usize)
    }

    /// Appends a run, merging it with the last when contiguous.
    fn push(&mut self, run: Run) {
        if let Some(last) = self.runs.last_mut()
            && last.init == run.init
            && last.logical + last.len == run.logical
            && last.physical + last.len == run.physical
        {
            last.len += run.len;
            return;
        }
        self.runs.push(run);
    }

    /// Walks extent-tree node `node` at byte `at`; `expect_depth` is what
    /// its parent's index entry implies (`None` for the root in the inode).
    fn extent_node(&mut self, node: &[u8], at: u64, expect_depth: Option<u16>) -> Result<()> {
        if let Some(problem) = extent_header_problem(node, expect_depth) {
            return Err(self.corrupt(format!("extent tree node at byte {at}: {problem}")));
        }
        debug_assert_eq!(u16le(node, 0), EXTENT_MAGIC);
        let entries = usize::from(u16le(node, 2));
        let depth = u16le(node, 6);
        for i in 0..entries {
            let e = 12 + 12 * i;
            let eat = at + e as u64;
            if depth > 0 {
                let child = hilo(u32::from(u16le(node, e + 8)), u32le(node, e + 4));
                let buf = self.tree_block("extent index", eat + 4, child)?;
                self.extent_node(&buf, child * self.bs, Some(depth - 1))?;
            } else {
                self.extent(node, e, eat)?;
            }
        }
        Ok(())
    }

    /// Records the leaf extent at `e` in `node` (at byte `eat`).
    fn extent(&mut self, node: &[u8], e: usize, eat: u64) -> Result<()> {
        let logical = u64::from(u32le(node, e));
        let raw_len = u16le(node, e + 4);
        let (len, init) = if raw_len > INIT_MAX_LEN {
            (raw_len - INIT_MAX_LEN, false)
        } else {
            (raw_len, true)
        };
        if len == 0 {
            return Err(self.corrupt(format!("extent at byte {eat} has length 0")));
        }
        let len = u64::from(len);
        let physical = hilo(u32::from(u16le(node, e + 6)), u32le(node, e + 8));
        self.check_range("extent", eat, physical, len)?;
        if let Some(last) = self.runs.last()
            && logical < last.logical + last.len
        {
            return Err(self.corrupt(format!(
                "extent at byte {eat} maps file block {logical}, before the end of the previous extent (block {})",
                last.logical + last.len
            )));
        }
        self.push(Run {
            logical,
            physical,
            len,
            init,
        });
        Ok(())
    }

    /// Walks the indirect block map in `i_block`: 12 direct pointers, then
    /// a single, a double and a triple indirect block. Block 0 is a hole.
    fn indirect_root(&mut self, limit: u64) -> Result<()> {
        let per = self.bs / 4;
        let iblock = self.node.i_block().to_vec();
        let at = self.node.i_block_at();
        for i in 0..12u64 {
            let p = u64::from(u32le(&iblock, i as usize * 4));
            if p != 0 && i < limit {
                self.data_pointer(at + i * 4, p, i)?;
            }
        }
        let mut first = 12u64;
        for (i, level) in [(12u64, 1u32), (13, 2), (14, 3)] {
            let p = u64::from(u32le(&iblock, i as usize * 4));
            if p != 0 && first < limit {
                self.indirect(at + i * 4, p, level, first, limit)?;
            }
            first += per.pow(level);
        }
        Ok(())
    }

    /// Records data block `p` (named at byte `at`) as file block `logical`.
    fn data_pointer(&mut self, at: u64, p: u64, logical: u64) -> Result<()> {
        self.check_range("block pointer", at, p, 1)?;
        self.push(Run {
            logical,
            physical: p,
            len: 1,
            init: true,
        });
        Ok(())
    }

    /// Walks the indirect block `block` of `level` (1: it points at data),
    /// named at byte `at`, whose first pointer maps file block `first`.
    fn indirect(&mut self, at: u64, block: u64, level: u32, first: u64, limit: u64) -> Result<()> {
        let what = match level {
            1 => "indirect block pointer",
            2 => "double indirect block pointer",
            _ => "triple indirect block pointer",
        };
        let buf = self.tree_block(what, at, block)?;
        let per = self.bs / 4;
        let span = per.pow(level - 1);
        for j in 0..per {
            let logical = first + j * span;
            if logical >= limit {
                break;
            }
            let p = u64::from(u32le(&buf, j as usize * 4));
            if p == 0 {
                continue;
            }
            let pat = block * self.bs + j * 4;
            if level == 1 {
                self.data_pointer(pat, p, logical)?;
            } else {
                self.indirect(pat, p, level - 1, logical, limit)?;
            }
        }
        Ok(())
    }
}

/// Largest number of blocks a file can map: 2^32 with extents, the 12
/// direct blocks and three levels of indirect blocks without.
pub(super) fn max_blocks(node: &Node, bs: u64) -> u64 {
    if node.flags() & EXTENTS_FL != 0 {
        1 << 32
    } else {
        let per = bs / 4;
        12 + per + per * per + per * per * per
    }
}

/// Reads a block-mapped file.
pub(super) struct BlockReader<'a> {
    src: &'a dyn Source,
    bs: u64,
    size: u64,
    runs: Vec<Run>,
}

impl<'a> BlockReader<'a> {
    /// A reader of `size` bytes mapped by `runs` (sorted, disjoint).
    pub fn new(src: &'a dyn Source, bs: u64, size: u64, runs: Vec<Run>) -> Self {
        BlockReader {
            src,
            bs,
            size,
            runs,
        }
    }
}

impl FileRead for BlockReader<'_> {
    fn volume_offset(&self) -> Option<u64> {
        self.runs
            .iter()
            .find(|r| r.init)
            .map(|r| r.physical.saturating_mul(self.bs))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.size - offset) as usize;
        let buf = &mut buf[..n];
        let bs = self.bs;
        let mut done = 0usize;
        while done < n {
            let pos = offset + done as u64;
            let block = pos / bs;
            let left = (n - done) as u64;
            let i = self.runs.partition_point(|r| r.logical + r.len <= block);
            let take = match self.runs.get(i) {
                Some(r) if r.logical <= block => {
                    let take = left.min((r.logical + r.len) * bs - pos) as usize;
                    let out = &mut buf[done..done + take];
                    if r.init {
                        let at = (r.physical + (block - r.logical)) * bs + pos % bs;
                        self.src.read_into(out, at)?;
                    } else {
                        out.fill(0);
                    }
                    take
                }
                next => {
                    let hole_end = next.map_or(u64::MAX, |r| r.logical.saturating_mul(bs));
                    let take = left.min(hole_end - pos) as usize;
                    buf[done..done + take].fill(0);
                    take
                }
            };
            done += take;
        }
        Ok(n)
    }

    fn data_ranges(&mut self) -> Result<Option<Vec<(u64, u64)>>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for r in self.runs.iter().filter(|r| r.init) {
            let start = r.logical * self.bs;
            let end = ((r.logical + r.len) * self.bs).min(self.size);
            if start >= end {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => out.push((start, end)),
            }
        }
        Ok(Some(out))
    }
}

/// Reads data held in memory (inline data, symlink targets); the whole of
/// it is data.
pub(super) struct MemReader {
    data: Vec<u8>,
}

impl MemReader {
    /// A reader of `data`.
    pub fn new(data: Vec<u8>) -> Self {
        MemReader { data }
    }
}

impl FileRead for MemReader {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let len = self.data.len() as u64;
        if offset >= len {
            return Ok(0);
        }
        let start = offset as usize;
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }

    fn data_ranges(&mut self) -> Result<Option<Vec<(u64, u64)>>> {
        let len = self.data.len() as u64;
        Ok(Some(if len == 0 { Vec::new() } else { vec![(0, len)] }))
    }
}
