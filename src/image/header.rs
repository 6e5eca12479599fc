//! The 128-byte image header (formats/fsimg-image.md section 1).

use super::{ImageError, MAX_RECORD_PAYLOAD};
use crate::bytes::{u16le, u32le, u64le};

/// "FSIMG\r\n\x1a".
pub const MAGIC: [u8; 8] = *b"FSIMG\r\n\x1a";
/// Major version written and read.
pub const MAJOR: u16 = 1;
/// Minor version written for a volume (its images are 1.0 images).
pub const MINOR: u16 = 0;
/// Minor version written for a whole disk: 1.1 added the disk block.
pub const MINOR_DISK: u16 = 1;
/// Header length in version 1.0.
pub const HEADER_LEN: usize = 128;
/// Largest header length a reader accepts.
pub const MAX_HEADER_LEN: usize = 4096;

/// Header flag: only metadata was saved.
pub const FLAG_METADATA: u16 = 0x1;
/// Header flag: saved in rescue mode.
pub const FLAG_RESCUE: u16 = 0x2;
/// Header flag: a whole disk; the disk block follows the header (1.1).
pub const FLAG_DISK: u16 = 0x4;
/// Filesystem code of a whole disk (its partitions' are in the disk block).
pub const FS_DISK: u16 = 16;

/// Checksum kind: CRC32.
pub const CHECKSUM_CRC32: u8 = 1;
/// Compression kind: none.
pub const COMPRESSION_NONE: u8 = 0;
/// Compression kind: zstd.
pub const COMPRESSION_ZSTD: u8 = 1;

/// A validated image header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Minor version of the writer's format.
    pub minor: u16,
    /// Filesystem code ([`crate::fs::FsKind::code`]).
    pub fs: u16,
    /// FLAG_* bits.
    pub flags: u16,
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// Volume size in bytes.
    pub device_size: u64,
    /// `ceil(device_size / cluster_size)`.
    pub total_clusters: u64,
    /// Clusters held by the records.
    pub used_clusters: u64,
    /// Bytes held by the records.
    pub used_bytes: u64,
    /// COMPRESSION_* kind.
    pub compression: u8,
    /// Largest raw record payload.
    pub max_record: u32,
    /// Name and version of the writer.
    pub writer: String,
}

impl Header {
    /// The 128 header bytes, CRC included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&MAJOR.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..18].copy_from_slice(&self.fs.to_le_bytes());
        b[18..20].copy_from_slice(&self.flags.to_le_bytes());
        b[20..24].copy_from_slice(&self.cluster_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.device_size.to_le_bytes());
        b[32..40].copy_from_slice(&self.total_clusters.to_le_bytes());
        b[40..48].copy_from_slice(&self.used_clusters.to_le_bytes());
        b[48..56].copy_from_slice(&self.used_bytes.to_le_bytes());
        b[56] = CHECKSUM_CRC32;
        b[57] = self.compression;
        b[60..64].copy_from_slice(&self.max_record.to_le_bytes());
        let w = self.writer.as_bytes();
        let n = w.len().min(32);
        b[64..64 + n].copy_from_slice(&w[..n]);
        let crc = crc32fast::hash(&b[..HEADER_LEN - 4]);
        b[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Checks the fixed part (the first 16 bytes: magic, version, length)
    /// and returns the header length.
    pub fn prefix_len(b: &[u8; 16]) -> Result<usize, ImageError> {
        if b[0..8] != MAGIC {
            return Err(ImageError::BadMagic { offset: 0 });
        }
        let major = u16le(b, 8);
        if major != MAJOR {
            return Err(ImageError::UnsupportedVersion {
                major,
                minor: u16le(b, 10),
            });
        }
        let len = u32le(b, 12) as usize;
        if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&len) {
            return Err(field(12, "header length", len as u64));
        }
        Ok(len)
    }

    /// Parses and validates the whole header (`b` is `prefix_len` bytes).
    pub fn from_bytes(b: &[u8]) -> Result<Self, ImageError> {
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&b[..16]);
        let len = Self::prefix_len(&prefix)?;
        assert_eq!(b.len(), len, "caller passes the whole header");
        let stored = u32le(b, len - 4);
        let computed = crc32fast::hash(&b[..len - 4]);
        if stored != computed {
            return Err(ImageError::Checksum {
                what: "header",
                offset: 0,
                stored,
                computed,
            });
        }
        let h = Header {
            minor: u16le(b, 10),
            fs: u16le(b, 16),
            flags: u16le(b, 18),
            cluster_size: u32le(b, 20),
            device_size: u64le(b, 24),
            total_clusters: u64le(b, 32),
            used_clusters: u64le(b, 40),
            used_bytes: u64le(b, 48),
            compression: b[57],
            max_record: u32le(b, 60),
            writer: {
                let w = &b[64..96];
                let end = w.iter().position(|&c| c == 0).unwrap_or(32);
                String::from_utf8_lossy(&w[..end]).into_owned()
            },
        };
        if !(512..=MAX_RECORD_PAYLOAD).contains(&h.cluster_size) {
            return Err(field(20, "cluster size", h.cluster_size.into()));
        }
        if h.device_size == 0 {
            return Err(field(24, "device size", 0));
        }
        if h.total_clusters != h.device_size.div_ceil(h.cluster_size.into()) {
            return Err(field(32, "total clusters", h.total_clusters));
        }
        if h.used_clusters > h.total_clusters {
            return Err(field(40, "used clusters", h.used_clusters));
        }
        if h.used_bytes > h.device_size {
            return Err(field(48, "used bytes", h.used_bytes));
        }
        if b[56] != CHECKSUM_CRC32 {
            return Err(field(56, "checksum kind", b[56].into()));
        }
        if h.compression > COMPRESSION_ZSTD {
            return Err(field(57, "compression kind", h.compression.into()));
        }
        if h.max_record == 0 || h.max_record > MAX_RECORD_PAYLOAD || h.max_record < h.cluster_size {
            return Err(field(60, "max record payload", h.max_record.into()));
        }
        Ok(h)
    }
}

fn field(offset: u64, name: &'static str, value: u64) -> ImageError {
    ImageError::Field {
        what: "header",
        offset,
        field: name,
        value,
    }
}
