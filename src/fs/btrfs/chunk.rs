//! Chunks: the map from btrfs logical addresses to device offsets.
//!
//! The superblock's `sys_chunk_array` holds the SYSTEM chunks (enough to
//! read the chunk tree); the chunk tree's CHUNK_ITEMs hold them all. A
//! chunk item (`struct btrfs_chunk`) is 48 bytes followed by
//! `num_stripes` stripes (`struct btrfs_stripe`, 32 bytes: devid, offset,
//! dev_uuid).

use super::error::BtrfsError;
use crate::bytes::{u16le, u64le};

/// Size of `struct btrfs_chunk` without its stripes.
pub const CHUNK_ITEM_SIZE: usize = 48;
/// Size of `struct btrfs_stripe`.
pub const STRIPE_SIZE: usize = 32;
/// Size of `struct btrfs_disk_key`.
pub const DISK_KEY_SIZE: usize = 17;

/// Block group / chunk type bits (`BTRFS_BLOCK_GROUP_*`).
pub mod bg {
    /// File data.
    pub const DATA: u64 = 1 << 0;
    /// The chunk tree.
    pub const SYSTEM: u64 = 1 << 1;
    /// Tree blocks.
    pub const METADATA: u64 = 1 << 2;
    /// Striped over devices.
    pub const RAID0: u64 = 1 << 3;
    /// Mirrored on two devices.
    pub const RAID1: u64 = 1 << 4;
    /// Two copies on one device.
    pub const DUP: u64 = 1 << 5;
    /// Striped mirrors.
    pub const RAID10: u64 = 1 << 6;
    /// Parity.
    pub const RAID5: u64 = 1 << 7;
    /// Double parity.
    pub const RAID6: u64 = 1 << 8;
    /// Three copies.
    pub const RAID1C3: u64 = 1 << 9;
    /// Four copies.
    pub const RAID1C4: u64 = 1 << 10;
    /// Every profile bit.
    pub const PROFILES: u64 = RAID0 | RAID1 | DUP | RAID10 | RAID5 | RAID6 | RAID1C3 | RAID1C4;
}

/// The name btrfs-progs gives a chunk's profile.
pub fn profile_name(ty: u64) -> &'static str {
    match ty & bg::PROFILES {
        0 => "single",
        bg::DUP => "DUP",
        bg::RAID0 => "RAID0",
        bg::RAID1 => "RAID1",
        bg::RAID10 => "RAID10",
        bg::RAID5 => "RAID5",
        bg::RAID6 => "RAID6",
        bg::RAID1C3 => "RAID1C3",
        bg::RAID1C4 => "RAID1C4",
        _ => "several profiles",
    }
}

/// One chunk: a logical range and where its copies are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Logical start (the key offset).
    pub logical: u64,
    /// Length in bytes.
    pub length: u64,
    /// Type and profile bits.
    pub ty: u64,
    /// (devid, physical offset) of each stripe.
    pub stripes: Vec<(u64, u64)>,
}

impl Chunk {
    /// Parses the chunk item at the start of `item` for logical `logical`;
    /// returns it and its size in bytes.
    pub fn parse(item: &[u8], logical: u64) -> Result<(Chunk, usize), BtrfsError> {
        let err = |why: String| BtrfsError::Chunk { logical, why };
        if item.len() < CHUNK_ITEM_SIZE {
            return Err(err(format!("item is {} bytes, too short", item.len())));
        }
        let length = u64le(item, 0);
        let ty = u64le(item, 24);
        let num_stripes = u16le(item, 44);
        let size = CHUNK_ITEM_SIZE + STRIPE_SIZE * usize::from(num_stripes);
        if num_stripes == 0 {
            return Err(err("no stripes".into()));
        }
        if item.len() < size {
            return Err(err(format!(
                "{num_stripes} stripes do not fit in {} bytes",
                item.len()
            )));
        }
        if length == 0 || logical.checked_add(length).is_none() {
            return Err(err(format!("invalid length {length}")));
        }
        let stripes = (0..usize::from(num_stripes))
            .map(|i| {
                let s = CHUNK_ITEM_SIZE + STRIPE_SIZE * i;
                (u64le(item, s), u64le(item, s + 8))
            })
            .collect();
        Ok((
            Chunk {
                logical,
                length,
                ty,
                stripes,
            },
            size,
        ))
    }

    /// Whether `logical` is inside the chunk.
    pub fn contains(&self, logical: u64) -> bool {
        logical >= self.logical && logical - self.logical < self.length
    }
}

/// Every chunk of the volume, by logical address.
#[derive(Default, Debug)]
pub struct ChunkMap {
    chunks: Vec<Chunk>,
}

impl ChunkMap {
    /// Adds a chunk (kept sorted; the same chunk twice is kept once; an
    /// overlap with another is an error).
    pub fn insert(&mut self, c: Chunk) -> Result<(), BtrfsError> {
        let i = self.chunks.partition_point(|x| x.logical < c.logical);
        if self.chunks.get(i) == Some(&c) {
            return Ok(());
        }
        let overlaps_next = self
            .chunks
            .get(i)
            .is_some_and(|n| c.logical + c.length > n.logical);
        let overlaps_prev =
            i > 0 && self.chunks[i - 1].logical + self.chunks[i - 1].length > c.logical;
        if overlaps_next || overlaps_prev {
            return Err(BtrfsError::Chunk {
                logical: c.logical,
                why: "overlaps another chunk".into(),
            });
        }
        self.chunks.insert(i, c);
        Ok(())
    }

    /// The chunk holding `logical`.
    pub fn find(&self, logical: u64) -> Option<&Chunk> {
        let i = self.chunks.partition_point(|x| x.logical <= logical);
        i.checked_sub(1)
            .map(|i| &self.chunks[i])
            .filter(|c| c.contains(logical))
    }

    /// The index in [`Self::chunks`] of the chunk holding `logical`.
    pub fn index(&self, logical: u64) -> Option<usize> {
        let i = self.chunks.partition_point(|x| x.logical <= logical);
        i.checked_sub(1)
            .filter(|&i| self.chunks[i].contains(logical))
    }

    /// Every chunk.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Calls `f(physical, len)` for every copy on device `devid` of the
    /// logical range `[logical, logical + len)`, split at chunk ends.
    /// Returns the first address no chunk maps, if any.
    pub fn map_range(
        &self,
        devid: u64,
        logical: u64,
        len: u64,
        mut f: impl FnMut(u64, u64),
    ) -> Result<(), u64> {
        let end = logical.saturating_add(len);
        let mut at = logical;
        while at < end {
            let c = self.find(at).ok_or(at)?;
            let off = at - c.logical;
            let n = (c.length - off).min(end - at);
            for &(dev, phys) in &c.stripes {
                if dev == devid {
                    f(phys + off, n);
                }
            }
            at += n;
        }
        Ok(())
    }
}

/// Parses the superblock's `sys_chunk_array` (`array` at byte `base` of
/// the volume): pairs of a disk key and a chunk item.
pub fn parse_sys_chunk_array(array: &[u8], base: u64) -> Result<ChunkMap, BtrfsError> {
    let mut map = ChunkMap::default();
    let mut at = 0usize;
    while at < array.len() {
        let offset = base + at as u64;
        let bad = |why| BtrfsError::SysChunkArray { offset, why };
        if array.len() - at < DISK_KEY_SIZE {
            return Err(bad("truncated key"));
        }
        if array[at + 8] != super::tree::key::CHUNK_ITEM {
            return Err(bad("entry is not a CHUNK_ITEM"));
        }
        let logical = u64le(array, at + 9);
        at += DISK_KEY_SIZE;
        let (chunk, size) = Chunk::parse(&array[at..], logical)?;
        if chunk.ty & bg::SYSTEM == 0 {
            return Err(bad("chunk is not a SYSTEM chunk"));
        }
        map.insert(chunk)?;
        at += size;
    }
    if map.chunks.is_empty() {
        return Err(BtrfsError::SysChunkArray {
            offset: base,
            why: "no system chunk",
        });
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(logical: u64, length: u64, stripes: &[(u64, u64)]) -> Chunk {
        Chunk {
            logical,
            length,
            ty: bg::METADATA | bg::DUP,
            stripes: stripes.to_vec(),
        }
    }

    #[test]
    fn maps_every_stripe_of_this_device_only() {
        let mut m = ChunkMap::default();
        m.insert(chunk(
            1 << 20,
            1 << 20,
            &[(1, 5 << 20), (1, 9 << 20), (2, 0)],
        ))
        .unwrap();
        m.insert(chunk(2 << 20, 1 << 20, &[(1, 7 << 20)])).unwrap();
        let mut got = Vec::new();
        m.map_range(1, (2 << 20) - 4096, 8192, |p, n| got.push((p, n)))
            .unwrap();
        assert_eq!(
            got,
            vec![
                ((6 << 20) - 4096, 4096),
                ((10 << 20) - 4096, 4096),
                (7 << 20, 4096)
            ]
        );
        assert_eq!(m.map_range(1, 3 << 20, 1, |_, _| {}), Err(3 << 20));
        assert_eq!(m.map_range(1, 0, 1, |_, _| {}), Err(0));
    }

    #[test]
    fn overlapping_chunks_refused() {
        let mut m = ChunkMap::default();
        m.insert(chunk(1 << 20, 1 << 20, &[(1, 0)])).unwrap();
        m.insert(chunk(1 << 20, 1 << 20, &[(1, 0)])).unwrap();
        assert!(m.insert(chunk(3 << 19, 1 << 20, &[(1, 0)])).is_err());
        assert_eq!(m.chunks().len(), 1);
    }
}
