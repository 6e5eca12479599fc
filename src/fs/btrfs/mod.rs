//! btrfs (one device, SINGLE and DUP profiles).
//!
//! The used physical ranges of the device are:
//! - the first 1 MiB: btrfs never allocates it; it holds the primary
//!   superblock and what boot loaders put before it;
//! - every superblock mirror inside the device (64 KiB, 64 MiB, 256 GiB):
//!   the kernel and `btrfs rescue super-recover` read them;
//! - every used extent of the extent tree (EXTENT_ITEM: data and, without
//!   skinny metadata, tree blocks; METADATA_ITEM: tree blocks), mapped
//!   through its chunk to *every* stripe on this device (both copies of
//!   DUP);
//! - every block of the trees read here (chunk, root, extent, block group
//!   and log trees), also mapped to every stripe: already in the extent
//!   tree except the log trees;
//! - the log trees when `log_root` is set, and the data extents their
//!   file extent items point at: written by an fsync after the last
//!   commit, they are in no committed extent item, and the kernel replays
//!   them at the next mount.
//!
//! Multi-device volumes, RAID profiles, zoned and seed devices and
//! unknown incompat features are refused, naming what is not supported.

mod chunk;
mod csum;
mod error;
mod extent;
mod superblock;
mod tree;

pub use error::{BlockProblem, BtrfsError};

use super::{Allocation, Filesystem, FsKind, Metadata, Unclean};
use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;
use chunk::{ChunkMap, bg, profile_name};
use extent::{BlockGroup, Item};
use superblock::{SUPER_SIZE, Superblock, compat_ro, flags, incompat, mirror_offset};
use tree::{Block, Reader, key, objectid};

/// The area before the first chunk btrfs never allocates.
const RESERVED_HEAD: u64 = 1024 * 1024;

/// A btrfs volume.
pub struct Btrfs {
    sb: Superblock,
    chunks: ChunkMap,
    /// Logical addresses of the chunk tree's blocks.
    chunk_tree_blocks: Vec<u64>,
    /// Superblock mirrors that are bad or older (warnings).
    mirror_warnings: Vec<String>,
    /// Superblock mirrors newer than the primary (inconsistencies).
    mirror_inconsistencies: Vec<String>,
    /// Copies of chunk tree blocks that failed while another was good.
    read_warnings: Vec<String>,
    rescue: bool,
}

/// What a walk of the volume's trees found.
struct Walked {
    map: AllocationMap,
    inconsistencies: Vec<String>,
    warnings: Vec<String>,
    details: Vec<(&'static str, String)>,
}

impl Btrfs {
    /// Whether `src` holds this filesystem: the magic at 64 KiB.
    pub fn probe(src: &dyn Source) -> Result<bool> {
        let at = superblock::PRIMARY_OFFSET;
        if src.size() < at + SUPER_SIZE as u64 {
            return Ok(false);
        }
        // An unreadable sector there says nothing: another filesystem's
        // probe (FAT's, in rescue) may still recognise the volume.
        match src.read_vec(at, 0x48) {
            Ok(raw) => Ok(Superblock::has_magic(&raw)),
            Err(Error::Read { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens the volume: reads and checks the superblock and its mirrors,
    /// refuses what is not supported, and reads the chunk tree.
    pub fn open(src: &dyn Source) -> Result<Self> {
        let at = superblock::PRIMARY_OFFSET;
        let raw = src.read_vec(at, SUPER_SIZE)?;
        let sb = Superblock::parse(&raw, at)?;
        refuse_unsupported(&sb)?;
        if sb.dev_total_bytes > src.size() {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: sb.dev_total_bytes,
                actual: src.size(),
            });
        }
        let sys = chunk::parse_sys_chunk_array(
            &sb.sys_chunk_array,
            at + superblock::SYS_CHUNK_ARRAY as u64,
        )?;
        for c in sys.chunks() {
            check_chunk(&sb, c)?;
        }
        let mut chunks = ChunkMap::default();
        let mut chunk_tree_blocks = Vec::new();
        let mut reader = Reader {
            src,
            sb: &sb,
            chunks: &sys,
            warnings: Vec::new(),
        };
        let mut found = Vec::new();
        reader.walk(
            "chunk",
            sb.chunk_root,
            sb.chunk_root_level,
            Some(sb.chunk_root_generation),
            |_, b| {
                chunk_tree_blocks.push(b.logical);
                if b.level() == 0 {
                    for slot in 0..b.nritems() {
                        let k = b.key(slot);
                        if k.ty == key::CHUNK_ITEM {
                            found.push(chunk::Chunk::parse(b.item(slot), k.offset)?.0);
                        }
                    }
                }
                Ok(())
            },
        )?;
        let read_warnings = reader.warnings;
        for c in found {
            check_chunk(&sb, &c)?;
            chunks.insert(c)?;
        }
        for c in sys.chunks() {
            if chunks.find(c.logical) != Some(c) {
                return Err(Error::Btrfs(BtrfsError::Chunk {
                    logical: c.logical,
                    why: "the superblock's system chunk is not the chunk tree's".into(),
                }));
            }
        }
        let (mirror_warnings, mirror_inconsistencies) = check_mirrors(src, &sb);
        Ok(Btrfs {
            sb,
            chunks,
            chunk_tree_blocks,
            mirror_warnings,
            mirror_inconsistencies,
            read_warnings,
            rescue: false,
        })
    }

    /// The profiles of the chunks of `kind` (data, metadata, system).
    fn profiles(&self, kind: u64) -> String {
        let mut names: Vec<&str> = Vec::new();
        for c in self.chunks.chunks() {
            if c.ty & kind != 0 {
                let n = profile_name(c.ty);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Marks every copy on this device of the logical range.
    fn mark_logical(
        &self,
        map: &mut AllocationMap,
        logical: u64,
        len: u64,
    ) -> std::result::Result<(), u64> {
        self.chunks.map_range(self.sb.devid, logical, len, |p, n| {
            map.mark_bytes_used(p, n)
        })
    }

    /// Marks every chunk's stripes on this device: what rescue mode copies
    /// when a tree cannot be read.
    fn mark_all_chunks(&self, map: &mut AllocationMap) {
        for c in self.chunks.chunks() {
            let _ = self.mark_logical(map, c.logical, c.length);
        }
    }

    /// Walks the trees and builds the map: every used extent, or with
    /// `metadata_only` only the tree blocks.
    fn walk(&self, src: &dyn Source, metadata_only: bool) -> Result<Walked> {
        let sb = &self.sb;
        let mut map = AllocationMap::new(sb.sectorsize, self.device_size());
        let mut inconsistencies = self.mirror_inconsistencies.clone();
        let mut warnings = self.mirror_warnings.clone();
        warnings.extend(self.read_warnings.iter().cloned());
        map.mark_bytes_used(0, RESERVED_HEAD);
        for i in 0..3 {
            let at = mirror_offset(i);
            if at + SUPER_SIZE as u64 <= self.device_size() {
                map.mark_bytes_used(at, SUPER_SIZE as u64);
            }
        }
        let ns = u64::from(sb.nodesize);
        for &b in &self.chunk_tree_blocks {
            let _ = self.mark_logical(&mut map, b, ns);
        }
        let mut reader = Reader {
            src,
            sb,
            chunks: &self.chunks,
            warnings: Vec::new(),
        };
        let result = self.walk_trees(&mut reader, &mut map, metadata_only);
        warnings.append(&mut reader.warnings);
        let mut details = Vec::new();
        match result {
            Ok(scan) => {
                details = scan.details(self);
                inconsistencies.extend(scan.check(self));
            }
            Err(Error::Read { offset, .. }) if self.rescue => {
                warnings.push(format!(
                    "btrfs: a tree block at byte {offset} cannot be read; every chunk is copied whole"
                ));
                self.mark_all_chunks(&mut map);
            }
            Err(e) => return Err(e),
        }
        Ok(Walked {
            map,
            inconsistencies,
            warnings,
            details,
        })
    }

    fn walk_trees(
        &self,
        reader: &mut Reader,
        map: &mut AllocationMap,
        metadata_only: bool,
    ) -> Result<Scan> {
        let sb = &self.sb;
        let ns = u64::from(sb.nodesize);
        let mut scan = Scan {
            chunk_extent_bytes: vec![0; self.chunks.chunks().len()],
            ..Scan::default()
        };
        let mark_block = |map: &mut AllocationMap, b: &Block| {
            let _ = self.mark_logical(map, b.logical, ns);
        };
        // The root tree: where the extent and block group trees are.
        let mut extent_root = None;
        let mut bg_root = None;
        reader.walk(
            "root",
            sb.root,
            sb.root_level,
            Some(sb.generation),
            |_, b| {
                mark_block(map, b);
                let leaf_items = if b.level() == 0 { b.nritems() } else { 0 };
                for slot in 0..leaf_items {
                    let k = b.key(slot);
                    if k.ty != key::ROOT_ITEM {
                        continue;
                    }
                    let root = root_item(b, slot, "root")?;
                    match k.objectid {
                        objectid::EXTENT_TREE => extent_root = Some(root),
                        objectid::BLOCK_GROUP_TREE => bg_root = Some(root),
                        objectid::FS_TREE => scan.subvolumes += 1,
                        id if (objectid::FIRST_FREE..=objectid::LAST_FREE).contains(&id) => {
                            scan.subvolumes += 1
                        }
                        _ => {}
                    }
                }
                Ok(())
            },
        )?;
        let extent_root = extent_root.ok_or(BtrfsError::MissingRoot { tree: "extent" })?;
        let has_bg_tree = sb.compat_ro_flags & compat_ro::BLOCK_GROUP_TREE != 0;
        let leaf_items =
            |map: &mut AllocationMap, scan: &mut Scan, b: &Block, tree: &str| -> Result<()> {
                if b.level() > 0 {
                    return Ok(());
                }
                for slot in 0..b.nritems() {
                    match extent::item(b, slot, sb.nodesize) {
                        Item::Extent(e) => {
                            scan.extent_bytes = scan.extent_bytes.saturating_add(e.length);
                            if let Some(i) = self.chunks.index(e.logical) {
                                scan.chunk_extent_bytes[i] =
                                    scan.chunk_extent_bytes[i].saturating_add(e.length);
                            }
                            scan.extents += 1;
                            if e.tree_block {
                                scan.tree_blocks += 1;
                            }
                            if (e.tree_block || !metadata_only)
                                && self.mark_logical(map, e.logical, e.length).is_err()
                            {
                                scan.unmapped.push(e.logical);
                            }
                        }
                        Item::BlockGroup(g) => scan.block_groups.push(g),
                        Item::Short(slot, item_type, size) => {
                            return Err(Error::Btrfs(BtrfsError::ShortItem {
                                tree: tree.to_string(),
                                logical: b.logical,
                                slot,
                                item_type,
                                size,
                            }));
                        }
                        Item::Other => {}
                    }
                }
                Ok(())
            };
        let (bytenr, level, generation) = extent_root;
        reader.walk("extent", bytenr, level, Some(generation), |_, b| {
            mark_block(map, b);
            leaf_items(map, &mut scan, b, "extent")
        })?;
        if has_bg_tree {
            let (bytenr, level, generation) = bg_root.ok_or(BtrfsError::MissingRoot {
                tree: "block group",
            })?;
            reader.walk("block group", bytenr, level, Some(generation), |_, b| {
                mark_block(map, b);
                leaf_items(map, &mut scan, b, "block group")
            })?;
        }
        if sb.log_root != 0 {
            // The log root tree: its ROOT_ITEMs (TREE_LOG, ROOT_ITEM,
            // subvolume id) point at each subvolume's log tree.
            let mut logs = Vec::new();
            reader.walk("log root", sb.log_root, sb.log_root_level, None, |_, b| {
                mark_block(map, b);
                scan.log_blocks += 1;
                if b.level() == 0 {
                    for slot in 0..b.nritems() {
                        let k = b.key(slot);
                        if k.ty == key::ROOT_ITEM && k.objectid == objectid::TREE_LOG {
                            logs.push(root_item(b, slot, "log root")?);
                        }
                    }
                }
                Ok(())
            })?;
            for (bytenr, level, generation) in logs {
                reader.walk("log", bytenr, level, Some(generation), |_, b| {
                    mark_block(map, b);
                    scan.log_blocks += 1;
                    if b.level() == 0 && !metadata_only {
                        for slot in 0..b.nritems() {
                            if b.key(slot).ty != key::EXTENT_DATA {
                                continue;
                            }
                            if let Some((at, len)) = extent::file_extent(b.item(slot))
                                && self.mark_logical(map, at, len).is_err()
                            {
                                scan.unmapped.push(at);
                            }
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(scan)
    }
}

/// Counts and findings of a walk.
#[derive(Default)]
struct Scan {
    block_groups: Vec<BlockGroup>,
    extents: u64,
    tree_blocks: u64,
    extent_bytes: u64,
    /// Bytes of the extent items inside each chunk (by chunk index).
    chunk_extent_bytes: Vec<u64>,
    log_blocks: u64,
    subvolumes: u64,
    /// Extents no chunk maps.
    unmapped: Vec<u64>,
}

impl Scan {
    fn details(&self, fs: &Btrfs) -> Vec<(&'static str, String)> {
        vec![
            ("chunks", fs.chunks.chunks().len().to_string()),
            ("block groups", self.block_groups.len().to_string()),
            (
                "extents",
                format!("{} ({} tree blocks)", self.extents, self.tree_blocks),
            ),
            ("subvolumes", self.subvolumes.to_string()),
            ("log tree blocks", self.log_blocks.to_string()),
        ]
    }

    /// The counters against each other.
    fn check(&self, fs: &Btrfs) -> Vec<String> {
        let sb = &fs.sb;
        let mut out = Vec::new();
        if let Some(&first) = self.unmapped.first() {
            out.push(format!(
                "btrfs: the extent at logical {first} is in no chunk ({} such extents)",
                self.unmapped.len()
            ));
        }
        let used = self
            .block_groups
            .iter()
            .fold(0u64, |s, g| s.saturating_add(g.used));
        if used != sb.bytes_used {
            out.push(format!(
                "btrfs: the block groups' used bytes sum to {used}, the superblock's bytes_used is {}",
                sb.bytes_used
            ));
        }
        if self.extent_bytes != sb.bytes_used {
            out.push(format!(
                "btrfs: the extent items cover {} bytes, the superblock's bytes_used is {}",
                self.extent_bytes, sb.bytes_used
            ));
        }
        for g in &self.block_groups {
            let ok = fs
                .chunks
                .find(g.logical)
                .is_some_and(|c| c.logical == g.logical && c.length == g.length);
            if !ok || g.used > g.length {
                out.push(format!(
                    "btrfs: block group at logical {} (length {}, used {}) does not match its chunk",
                    g.logical, g.length, g.used
                ));
                break;
            }
        }
        // Each block group's used bytes against the extent items inside
        // it: names the first block group that disagrees.
        let bad: Vec<(&BlockGroup, u64)> = self
            .block_groups
            .iter()
            .filter_map(|g| {
                let i = fs.chunks.index(g.logical)?;
                let items = self.chunk_extent_bytes[i];
                (items != g.used).then_some((g, items))
            })
            .collect();
        if let Some(&(g, items)) = bad.first() {
            out.push(format!(
                "btrfs: block group at logical {} says {} bytes used, its extent items cover {items} ({} such block groups)",
                g.logical,
                g.used,
                bad.len()
            ));
        }
        if self.block_groups.len() != fs.chunks.chunks().len() {
            out.push(format!(
                "btrfs: {} block groups for {} chunks",
                self.block_groups.len(),
                fs.chunks.chunks().len()
            ));
        }
        out
    }
}

/// A ROOT_ITEM's (bytenr, level, generation).
fn root_item(b: &Block, slot: u32, tree: &str) -> Result<(u64, u8, u64)> {
    let data = b.item(slot);
    if data.len() < 239 {
        return Err(Error::Btrfs(BtrfsError::ShortItem {
            tree: tree.to_string(),
            logical: b.logical,
            slot,
            item_type: key::ROOT_ITEM,
            size: data.len() as u32,
        }));
    }
    let level = data[238];
    if level >= tree::MAX_LEVEL {
        return Err(Error::Btrfs(BtrfsError::TreeBlock {
            tree: tree.to_string(),
            logical: b.logical,
            physical: b.physical,
            problem: BlockProblem::Level {
                expected: tree::MAX_LEVEL - 1,
                found: level,
            },
        }));
    }
    Ok((
        crate::bytes::u64le(data, 176),
        level,
        crate::bytes::u64le(data, 160),
    ))
}

/// Refuses what this module cannot image right.
fn refuse_unsupported(sb: &Superblock) -> Result<()> {
    let no = |what: String| Err(Error::Btrfs(BtrfsError::Unsupported { what }));
    if sb.num_devices != 1 {
        return no(format!(
            "a multi-device volume ({} devices)",
            sb.num_devices
        ));
    }
    let unknown = sb.incompat_flags & !incompat::KNOWN;
    for (bit, what) in [
        (incompat::ZONED, "a zoned volume"),
        (incompat::RAID56, "RAID5/6"),
        (incompat::RAID1C34, "RAID1C3/RAID1C4"),
        (incompat::EXTENT_TREE_V2, "extent tree v2"),
        (incompat::RAID_STRIPE_TREE, "the raid stripe tree"),
    ] {
        if sb.incompat_flags & bit != 0 {
            return no(what.into());
        }
    }
    if unknown != 0 {
        return no(format!("unknown incompat flags 0x{unknown:x}"));
    }
    if sb.flags & flags::SEEDING != 0 {
        return no("a seed device".into());
    }
    if sb.flags & (flags::CHANGING_FSID | flags::CHANGING_FSID_V2) != 0 {
        return no("a volume with an interrupted fsid change".into());
    }
    Ok(())
}

/// Checks a chunk: SINGLE or DUP, every stripe on this device and inside it.
fn check_chunk(sb: &Superblock, c: &chunk::Chunk) -> Result<()> {
    let profile = c.ty & bg::PROFILES;
    if profile != 0 && profile != bg::DUP {
        return Err(Error::Btrfs(BtrfsError::Unsupported {
            what: format!(
                "the {} profile (chunk at logical {})",
                profile_name(c.ty),
                c.logical
            ),
        }));
    }
    let want = if profile == bg::DUP { 2 } else { 1 };
    if c.stripes.len() != want {
        return Err(Error::Btrfs(BtrfsError::Chunk {
            logical: c.logical,
            why: format!(
                "{} stripes for the {} profile",
                c.stripes.len(),
                profile_name(c.ty)
            ),
        }));
    }
    for &(devid, physical) in &c.stripes {
        if devid != sb.devid {
            return Err(Error::Btrfs(BtrfsError::Unsupported {
                what: format!(
                    "a multi-device volume (chunk at logical {} is on device {devid})",
                    c.logical
                ),
            }));
        }
        if physical
            .checked_add(c.length)
            .is_none_or(|end| end > sb.dev_total_bytes)
        {
            return Err(Error::Btrfs(BtrfsError::ChunkPastDevice {
                logical: c.logical,
                length: c.length,
                physical,
                device_size: sb.dev_total_bytes,
            }));
        }
    }
    Ok(())
}

/// Reads the mirrors inside the device. A bad or older mirror is a
/// warning: the copy reproduces it byte for byte and the kernel mounts
/// from the primary, rewriting every mirror at the next commit. A mirror
/// newer than the primary is an inconsistency: the primary may have been
/// rolled back, and `btrfs rescue super-recover` should decide first.
fn check_mirrors(src: &dyn Source, sb: &Superblock) -> (Vec<String>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut inconsistencies = Vec::new();
    for i in 1..3 {
        let at = mirror_offset(i);
        if at + SUPER_SIZE as u64 > sb.dev_total_bytes {
            break;
        }
        let m = match src.read_vec(at, SUPER_SIZE) {
            Ok(raw) => Superblock::parse(&raw, at).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match m {
            Err(e) => warnings.push(format!(
                "btrfs: superblock mirror at byte {at} is unusable: {e}"
            )),
            Ok(m) if m.fsid != sb.fsid || m.bytenr != at => warnings.push(format!(
                "btrfs: superblock mirror at byte {at} belongs to another filesystem or place"
            )),
            Ok(m) if m.generation < sb.generation => warnings.push(format!(
                "btrfs: superblock mirror at byte {at} is older (generation {}, primary {})",
                m.generation, sb.generation
            )),
            Ok(m) if m.generation > sb.generation => inconsistencies.push(format!(
                "btrfs: superblock mirror at byte {at} is newer than the primary (generation {}, primary {}); run `btrfs rescue super-recover`",
                m.generation, sb.generation
            )),
            Ok(_) => {}
        }
    }
    (warnings, inconsistencies)
}

impl Filesystem for Btrfs {
    fn kind(&self) -> FsKind {
        FsKind::Btrfs
    }

    fn cluster_size(&self) -> u32 {
        self.sb.sectorsize
    }

    fn device_size(&self) -> u64 {
        self.sb.dev_total_bytes
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let sb = &self.sb;
        let state = match self.unclean() {
            Some(u) => u.problem,
            None if sb.log_root != 0 => "clean, with a log tree (replayed at mount)".into(),
            None => "clean".into(),
        };
        vec![
            ("label", sb.label.clone()),
            ("uuid", superblock::uuid_string(&sb.fsid)),
            ("nodesize", sb.nodesize.to_string()),
            ("sectorsize", sb.sectorsize.to_string()),
            ("checksum", sb.csum_type.name().to_string()),
            ("data profile", self.profiles(bg::DATA)),
            ("metadata profile", self.profiles(bg::METADATA)),
            ("system profile", self.profiles(bg::SYSTEM)),
            (
                "devices",
                format!("{} (devid {})", sb.num_devices, sb.devid),
            ),
            ("generation", sb.generation.to_string()),
            ("total bytes", sb.total_bytes.to_string()),
            ("bytes used", format!("{} (superblock)", sb.bytes_used)),
            (
                "features",
                format!(
                    "incompat 0x{:x}, compat_ro 0x{:x}",
                    sb.incompat_flags, sb.compat_ro_flags
                ),
            ),
            ("state", state),
        ]
    }

    fn unclean(&self) -> Option<Unclean> {
        (self.sb.flags & flags::ERROR != 0).then(|| Unclean {
            problem: "the kernel recorded a filesystem error".into(),
            hint: "run btrfs check",
        })
    }

    fn fsck_hint(&self) -> &'static str {
        "btrfs check --readonly"
    }

    fn set_rescue(&mut self, on: bool) {
        self.rescue = on;
    }

    fn allocation(&self, src: &dyn Source) -> Result<Allocation> {
        let w = self.walk(src, false)?;
        Ok(Allocation {
            map: w.map,
            inconsistencies: w.inconsistencies,
            warnings: w.warnings,
            details: w.details,
        })
    }

    /// Every tree block of every tree (both DUP copies), the superblocks
    /// and the first MiB; file data is left out (reads as zeros).
    fn metadata(&self, src: &dyn Source) -> Result<Metadata> {
        let w = self.walk(src, true)?;
        Ok(Metadata {
            allocation: Allocation {
                map: w.map,
                inconsistencies: w.inconsistencies,
                warnings: w.warnings,
                details: w.details,
            },
            scrub: None,
        })
    }
}
