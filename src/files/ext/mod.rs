//! ext2, ext3 and ext4 files: fsimg's own reader of directories, file
//! contents and symlinks, on the superblock and group descriptors that
//! [`Ext::open`] reads and checks (meta_bg included).
//!
//! fsimg does not use the ext4-view crate here: it refuses meta_bg,
//! inline_data, mmp and large_dir volumes, and keeps inode numbers and
//! link counts (which `extract` needs for hard links) to itself.
//!
//! What is read: inodes through the group descriptors ([`inode`]), linear
//! and htree directories and inline ones ([`dir`]), extent trees and
//! indirect block maps ([`map`]), inline data ([`inline`]). The journal is
//! never replayed: a volume that needs recovery reads as its last
//! checkpoint left it ([`ExtTree::needs_recovery`] says so).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::Filesystem;
use crate::fs::ext::Ext;
use crate::fs::ext::superblock::{Superblock, incompat};
use crate::source::Source;

use super::walk::join;
use super::{DirEntry, FileError, FileRead, Kind, Meta, Tree, dir_entry};

mod dir;
mod inline;
mod inode;
mod map;
#[cfg(test)]
mod tests;

use dir::{Area, parse_entries};
use inode::Node;
use map::{BlockReader, MemReader, Run, block_map, max_blocks};

/// The root directory's inode (`EXT2_ROOT_INO`).
const ROOT_INO: u32 = 2;
/// Largest read of directory blocks at once.
const MAX_DIR_READ: u64 = 1 << 20;

/// A corrupt structure of inode `ino`, met reading `path`.
fn corrupt(path: &str, ino: u32, detail: String) -> Error {
    FileError::Corrupt {
        path: path.to_string(),
        what: format!("inode {ino}"),
        detail,
    }
    .into()
}

/// The files of an ext2/3/4 volume.
pub struct ExtTree {
    src: Arc<dyn Source>,
    ext: Ext,
}

impl ExtTree {
    /// Reads and checks the superblock and group descriptors of `src`.
    /// A journal that needs recovery is not replayed.
    pub fn open(src: Arc<dyn Source>) -> Result<Self> {
        let ext = Ext::open(&*src)?;
        Ok(ExtTree { src, ext })
    }

    /// Whether the journal holds transactions not yet written to their
    /// place (`INCOMPAT_RECOVER`): files then read as the last checkpoint
    /// left them, which may miss recent changes.
    pub fn needs_recovery(&self) -> bool {
        self.sb().has_incompat(incompat::RECOVER)
    }

    fn sb(&self) -> &Superblock {
        self.ext.superblock()
    }

    fn bs(&self) -> u64 {
        u64::from(self.sb().block_size)
    }

    /// Byte offset of inode `id` in its group's inode table.
    fn inode_at(&self, id: u64, path: &str) -> Result<u64> {
        let sb = self.sb();
        let ino = match u32::try_from(id) {
            Ok(i) if i >= 1 && i <= sb.inodes_count => i,
            _ => {
                return Err(FileError::Corrupt {
                    path: path.to_string(),
                    what: format!("inode {id}"),
                    detail: format!(
                        "no such inode: the filesystem has inodes 1 to {}",
                        sb.inodes_count
                    ),
                }
                .into());
            }
        };
        let ipg = sb.inodes_per_group;
        let group = ((ino - 1) / ipg) as usize;
        let index = u64::from((ino - 1) % ipg);
        let table = self.ext.descriptors()[group].inode_table;
        Ok(table * self.bs() + index * u64::from(sb.inode_size))
    }

    /// Reads and checks inode `id`, checksum included, before its data is
    /// read.
    fn node(&self, id: u64, path: &str) -> Result<Node> {
        let at = self.inode_at(id, path)?;
        let raw = self.src.read_vec(at, usize::from(self.sb().inode_size))?;
        let node = Node::parse(self.sb(), id as u32, at, raw, path)?;
        node.check_checksum(self.sb(), path)?;
        Ok(node)
    }

    /// Reads inode `id` through `cache`, the last inode-table block read,
    /// for a directory listing: without its checksum, which
    /// [`ExtTree::node`] checks when the file is read.
    fn node_cached(&self, id: u64, path: &str, cache: &mut Option<(u64, Vec<u8>)>) -> Result<Node> {
        let at = self.inode_at(id, path)?;
        let bs = self.bs();
        let block = at / bs * bs;
        if cache.as_ref().is_none_or(|(b, _)| *b != block) {
            *cache = Some((block, self.src.read_vec(block, bs as usize)?));
        }
        let isz = usize::from(self.sb().inode_size);
        let off = (at - block) as usize;
        let raw = match cache {
            Some((_, buf)) => buf[off..off + isz].to_vec(),
            None => unreachable!("filled above"),
        };
        Node::parse(self.sb(), id as u32, at, raw, path)
    }

    /// Refuses encrypted files.
    fn check_not_encrypted(node: &Node, path: &str) -> Result<()> {
        if node.encrypted() {
            return Err(FileError::Unsupported {
                path: path.to_string(),
                what: "an encrypted file".to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// The block map of a file or directory of `size` bytes, after
    /// checking that size against the largest the map can address.
    fn runs(&self, node: &Node, size: u64, path: &str) -> Result<Vec<Run>> {
        let bs = self.bs();
        let max = max_blocks(node, bs).saturating_mul(bs);
        if size > max {
            return Err(corrupt(
                path,
                node.ino,
                format!("size {size} is more than the largest its block map can hold ({max})"),
            ));
        }
        block_map(&*self.src, self.sb(), node, size.div_ceil(bs), path)
    }

    /// The `(inode, name)` entries of directory `node`.
    fn dir_entries(&self, node: &Node, path: &str) -> Result<Vec<(u32, Vec<u8>)>> {
        let sb = self.sb();
        let mut out = Vec::new();
        if node.inline() {
            let area = Area {
                path,
                ino: node.ino,
                at: node.i_block_at() + 4,
                kind: "inline data",
            };
            parse_entries(sb, &node.i_block()[4..], &area, &mut out)?;
            if let Some((v0, len)) = inline::system_data(node, path)? {
                let area = Area {
                    at: node.at + v0 as u64,
                    ..area
                };
                parse_entries(sb, &node.raw[v0..v0 + len], &area, &mut out)?;
            }
            return Ok(out);
        }
        let size = node.size(sb);
        if size > self.src.size() {
            return Err(corrupt(
                path,
                node.ino,
                format!(
                    "directory size {size} is larger than the volume ({} bytes)",
                    self.src.size()
                ),
            ));
        }
        let bs = self.bs();
        let nblocks = size.div_ceil(bs);
        // Holes and unwritten extents hold no entries.
        for r in self.runs(node, size, path)?.into_iter().filter(|r| r.init) {
            let end = (r.logical + r.len).min(nblocks);
            let mut b = r.logical;
            while b < end {
                let n = (end - b).min(MAX_DIR_READ / bs).max(1);
                let phys = r.physical + (b - r.logical);
                let buf = self.src.read_vec(phys * bs, (n * bs) as usize)?;
                for (k, block) in buf.chunks_exact(bs as usize).enumerate() {
                    let area = Area {
                        path,
                        ino: node.ino,
                        at: (phys + k as u64) * bs,
                        kind: "block",
                    };
                    parse_entries(sb, block, &area, &mut out)?;
                }
                b += n;
            }
        }
        Ok(out)
    }

    /// The target of symlink `node`, of `size` bytes: inline, in `i_block`
    /// (a fast symlink) or in its first data block.
    fn link_target(&self, node: &Node, path: &str) -> Result<Vec<u8>> {
        let size = node.size(self.sb());
        if node.inline() {
            return inline::content(node, size, path);
        }
        if node.inode.is_fast_symlink(self.sb()) {
            if size > node.i_block().len() as u64 {
                return Err(corrupt(
                    path,
                    node.ino,
                    format!("fast symlink of {size} bytes, more than the 60 of i_block"),
                ));
            }
            return Ok(node.i_block()[..size as usize].to_vec());
        }
        let bs = self.bs();
        if size > bs {
            return Err(corrupt(
                path,
                node.ino,
                format!("symlink of {size} bytes, more than a block ({bs})"),
            ));
        }
        let runs = self.runs(node, size, path)?;
        let mut target = vec![0u8; size as usize];
        let n = BlockReader::new(&*self.src, bs, size, runs).read_at(0, &mut target)?;
        target.truncate(n);
        Ok(target)
    }
}

impl Tree for ExtTree {
    fn fs_name(&self) -> String {
        self.ext.kind().name().to_string()
    }

    fn warnings(&self) -> Vec<String> {
        if self.needs_recovery() {
            vec![
                "the journal needs recovery (the volume is mounted or was not cleanly unmounted), which fsimg does not replay: files read as its last checkpoint left them, without the latest changes".to_string(),
            ]
        } else {
            Vec::new()
        }
    }

    fn root(&self) -> Result<Meta> {
        let node = self.node(u64::from(ROOT_INO), "/")?;
        let meta = node.meta(self.sb(), "/")?;
        if meta.kind != Kind::Dir {
            return Err(corrupt(
                "/",
                ROOT_INO,
                format!(
                    "the root directory is not a directory (i_mode 0o{:06o})",
                    node.inode.mode
                ),
            ));
        }
        Ok(meta)
    }

    fn read_dir(&self, dir: &Meta, path: &str) -> Result<Vec<DirEntry>> {
        let node = self.node(dir.id, path)?;
        if node.kind(path)? != Kind::Dir {
            return Err(FileError::NotADirectory {
                path: path.to_string(),
            }
            .into());
        }
        Self::check_not_encrypted(&node, path)?;
        let found = self.dir_entries(&node, path)?;
        // Inodes are read in inode order, each inode-table block once.
        let mut order: Vec<usize> = (0..found.len()).collect();
        order.sort_by_key(|&i| found[i].0);
        let mut metas: Vec<Option<Result<Meta>>> = (0..found.len()).map(|_| None).collect();
        let mut cache = None;
        for i in order {
            let (ino, name) = &found[i];
            let child = join(path, name);
            let meta = self
                .node_cached(u64::from(*ino), &child, &mut cache)
                .and_then(|node| node.meta(self.sb(), &child));
            metas[i] = Some(meta);
        }
        Ok(found
            .into_iter()
            .zip(metas)
            .filter_map(|((_, name), meta)| meta.map(|meta| dir_entry(path, name, meta)))
            .collect())
    }

    fn open<'a>(&'a self, file: &Meta, path: &str) -> Result<Box<dyn FileRead + 'a>> {
        let node = self.node(file.id, path)?;
        Self::check_not_encrypted(&node, path)?;
        match node.kind(path)? {
            Kind::Symlink => Ok(Box::new(MemReader::new(self.link_target(&node, path)?))),
            Kind::File | Kind::Dir => {
                let size = node.size(self.sb());
                if node.inline() {
                    return Ok(Box::new(MemReader::new(inline::content(
                        &node, size, path,
                    )?)));
                }
                let runs = self.runs(&node, size, path)?;
                Ok(Box::new(BlockReader::new(
                    &*self.src,
                    self.bs(),
                    size,
                    runs,
                )))
            }
            // Devices, fifos and sockets have no data.
            _ => Ok(Box::new(MemReader::new(Vec::new()))),
        }
    }

    fn read_link(&self, link: &Meta, path: &str) -> Result<Vec<u8>> {
        let node = self.node(link.id, path)?;
        if node.kind(path)? != Kind::Symlink {
            return Err(corrupt(
                path,
                node.ino,
                format!("not a symlink (i_mode 0o{:06o})", node.inode.mode),
            ));
        }
        Self::check_not_encrypted(&node, path)?;
        self.link_target(&node, path)
    }
}
