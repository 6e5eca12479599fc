//! The disk block of an image of a whole disk (formats/fsimg-image.md
//! section 1a): the partition table's own bytes, so a reader knows the
//! layout before any record arrives (to check that the target is large
//! enough, to move the backup GPT, to pick one partition), and what fsimg
//! found in each partition.

use super::ImageError;
use crate::bytes::{u16le, u32le, u64le};

/// "DISK".
pub const TAG_DISK: [u8; 4] = *b"DISK";
/// Bytes before the partition entries.
pub const FIXED_LEN: usize = 32;
/// Bytes of one partition entry.
pub const PART_LEN: usize = 40;
/// Bytes before each table piece's bytes.
pub const PIECE_HEAD_LEN: usize = 16;
/// Largest disk block a reader accepts (a GPT entry array is at most 1 MiB).
pub const MAX_DISK_BLOCK: usize = 16 << 20;
/// Most partitions a disk block may describe.
pub const MAX_PARTITIONS: usize = 256;
/// Most table pieces (sector 0, GPT header and array, one per EBR).
pub const MAX_PIECES: usize = 1024;

/// Partition flag: only the partition's first page was copied (swap).
pub const PART_HEADER_ONLY: u16 = 0x1;
/// Partition flag: nothing of the partition was copied (`-m` of content
/// fsimg does not know).
pub const PART_LEFT_OUT: u16 = 0x2;

/// What fsimg copied of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// The number the partition table gives it (1.., 5.. for logical).
    pub number: u32,
    /// Filesystem code ([`crate::fs::FsKind::code`]); 0 for swap.
    pub fs: u16,
    /// PART_* flags.
    pub flags: u16,
    /// Byte offset on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Bytes of it the image holds.
    pub used_bytes: u64,
    /// The filesystem's cluster size (0 when none).
    pub cluster_size: u32,
}

/// The disk block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskBlock {
    /// Logical sector size the table is written for.
    pub sector_size: u32,
    /// Bytes of the disk (the header's device size).
    pub disk_size: u64,
    /// Each partition, as ordered in the table.
    pub partitions: Vec<PartInfo>,
    /// The table's sectors: sector 0, the primary GPT header and entry
    /// array, every EBR; (disk byte offset, bytes), ascending.
    pub pieces: Vec<(u64, Vec<u8>)>,
}

impl DiskBlock {
    /// The encoded block, CRC included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TAG_DISK);
        b.extend_from_slice(&0u32.to_le_bytes()); // length, set below
        b.extend_from_slice(&self.sector_size.to_le_bytes());
        b.extend_from_slice(&(self.partitions.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.disk_size.to_le_bytes());
        b.extend_from_slice(&(self.pieces.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for p in &self.partitions {
            b.extend_from_slice(&p.number.to_le_bytes());
            b.extend_from_slice(&p.fs.to_le_bytes());
            b.extend_from_slice(&p.flags.to_le_bytes());
            b.extend_from_slice(&p.start.to_le_bytes());
            b.extend_from_slice(&p.len.to_le_bytes());
            b.extend_from_slice(&p.used_bytes.to_le_bytes());
            b.extend_from_slice(&p.cluster_size.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        for (offset, bytes) in &self.pieces {
            b.extend_from_slice(&offset.to_le_bytes());
            b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(bytes);
        }
        let len = (b.len() + 4) as u32;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Checks the block's length field (at byte `offset` of the image)
    /// before the rest is read.
    pub fn check_len(offset: u64, len: u32) -> Result<usize, ImageError> {
        let len = len as usize;
        if !(FIXED_LEN + 4..=MAX_DISK_BLOCK).contains(&len) {
            return Err(field(offset, "length", len as u64));
        }
        Ok(len)
    }

    /// Parses and checks the whole block `b` (tag to CRC), found at byte
    /// `offset` of an image whose device size is `device_size`.
    pub fn from_bytes(offset: u64, b: &[u8], device_size: u64) -> Result<Self, ImageError> {
        let len = b.len();
        if len < FIXED_LEN + 4 {
            return Err(field(offset, "length", len as u64));
        }
        let stored = u32le(b, len - 4);
        let computed = crc32fast::hash(&b[..len - 4]);
        if stored != computed {
            return Err(ImageError::Checksum {
                what: "disk block",
                offset,
                stored,
                computed,
            });
        }
        let sector_size = u32le(b, 8);
        if !(512..=4096).contains(&sector_size) || !sector_size.is_power_of_two() {
            return Err(field(offset, "sector size", sector_size.into()));
        }
        let nparts = u32le(b, 12) as usize;
        if nparts > MAX_PARTITIONS {
            return Err(field(offset, "partition count", nparts as u64));
        }
        let disk_size = u64le(b, 16);
        if disk_size != device_size {
            return Err(field(offset, "disk size", disk_size));
        }
        let npieces = u32le(b, 24) as usize;
        if npieces > MAX_PIECES {
            return Err(field(offset, "table piece count", npieces as u64));
        }
        let body = len - 4;
        let parts_end = FIXED_LEN + nparts * PART_LEN;
        if parts_end > body {
            return Err(field(offset, "partition count", nparts as u64));
        }
        let mut partitions = Vec::with_capacity(nparts);
        for i in 0..nparts {
            let at = FIXED_LEN + i * PART_LEN;
            let p = PartInfo {
                number: u32le(b, at),
                fs: u16le(b, at + 4),
                flags: u16le(b, at + 6),
                start: u64le(b, at + 8),
                len: u64le(b, at + 16),
                used_bytes: u64le(b, at + 24),
                cluster_size: u32le(b, at + 32),
            };
            let end = p.start.checked_add(p.len);
            if end.is_none_or(|e| e > disk_size) {
                return Err(field(
                    offset,
                    "partition end",
                    p.start.saturating_add(p.len),
                ));
            }
            if p.used_bytes > p.len {
                return Err(field(offset, "partition used bytes", p.used_bytes));
            }
            partitions.push(p);
        }
        let mut pieces: Vec<(u64, Vec<u8>)> = Vec::with_capacity(npieces);
        let mut at = parts_end;
        for _ in 0..npieces {
            if at + PIECE_HEAD_LEN > body {
                return Err(field(offset, "table piece count", npieces as u64));
            }
            let o = u64le(b, at);
            let n = u32le(b, at + 8) as usize;
            at += PIECE_HEAD_LEN;
            if n == 0 || n > body - at {
                return Err(field(offset, "table piece length", n as u64));
            }
            let prev_end = pieces.last().map_or(0, |(po, pb)| po + pb.len() as u64);
            if (!pieces.is_empty() && o < prev_end)
                || o.checked_add(n as u64).is_none_or(|e| e > disk_size)
            {
                return Err(field(offset, "table piece offset", o));
            }
            pieces.push((o, b[at..at + n].to_vec()));
            at += n;
        }
        if at != body {
            return Err(field(offset, "length", len as u64));
        }
        Ok(DiskBlock {
            sector_size,
            disk_size,
            partitions,
            pieces,
        })
    }

    /// `len` bytes at disk byte `offset` if a piece holds them all.
    pub fn piece_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.pieces.iter().find_map(|(o, b)| {
            let from = offset.checked_sub(*o)? as usize;
            b.get(from..from.checked_add(len)?)
        })
    }
}

fn field(offset: u64, name: &'static str, value: u64) -> ImageError {
    ImageError::Field {
        what: "disk block",
        offset,
        field: name,
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DiskBlock {
        DiskBlock {
            sector_size: 512,
            disk_size: 1 << 20,
            partitions: vec![PartInfo {
                number: 1,
                fs: 4,
                flags: 0,
                start: 4096,
                len: 8192,
                used_bytes: 4096,
                cluster_size: 4096,
            }],
            pieces: vec![(0, vec![1; 512]), (512, vec![2; 512])],
        }
    }

    #[test]
    fn round_trip_and_lookup() {
        let d = sample();
        let b = d.to_bytes();
        assert_eq!(DiskBlock::check_len(128, u32le(&b, 4)).unwrap(), b.len());
        let back = DiskBlock::from_bytes(128, &b, 1 << 20).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.piece_at(600, 4), Some(&[2u8; 4][..]));
        assert_eq!(back.piece_at(1000, 100), None);
    }

    #[test]
    fn corrupt_blocks_are_refused() {
        let mut b = sample().to_bytes();
        b[40] ^= 1;
        let e = DiskBlock::from_bytes(128, &b, 1 << 20).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("image disk block checksum mismatch at byte 128"),
            "{e}"
        );
        let b = sample().to_bytes();
        let e = DiskBlock::from_bytes(128, &b, 2 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image disk block at byte 128: invalid disk size 1048576"
        );
        let mut d = sample();
        d.partitions[0].len = 2 << 20;
        let e = DiskBlock::from_bytes(128, &d.to_bytes(), 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image disk block at byte 128: invalid partition end 2101248"
        );
        // Every truncation and every flipped byte: an error, never a panic.
        let b = sample().to_bytes();
        for i in 0..b.len() {
            let mut m = b.clone();
            m[i] ^= 0x5a;
            let _ = DiskBlock::from_bytes(0, &m, 1 << 20);
        }
        for n in 4..b.len() {
            let _ = DiskBlock::from_bytes(0, &b[..n], 1 << 20);
        }
    }
}
