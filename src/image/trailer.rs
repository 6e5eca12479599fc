//! The trailer (formats/fsimg-image.md section 3).

use super::ImageError;
use crate::bytes::{u32le, u64le};
use crate::copier::Extent;

/// "TRLR".
pub const TAG_TRAILER: [u8; 4] = *b"TRLR";
/// "FSIMGEND".
pub const END_MAGIC: [u8; 8] = *b"FSIMGEND";
/// Length of a trailer with no bad ranges and no index entries.
pub const TRAILER_BASE_LEN: usize = 72;
/// Largest trailer a reader accepts.
pub const MAX_TRAILER_LEN: u64 = 256 << 20;

/// The trailer's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Number of data records.
    pub records: u64,
    /// Clusters in all records.
    pub used_clusters: u64,
    /// Raw payload bytes in all records.
    pub used_bytes: u64,
    /// Ranges of the volume that could not be read.
    pub bad_ranges: Vec<Extent>,
    /// (image offset, first cluster) of every `stride`-th record.
    pub index: Vec<(u64, u64)>,
    /// Records per index entry.
    pub stride: u64,
}

impl Trailer {
    /// Encodes the whole trailer, CRC included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = TRAILER_BASE_LEN + 16 * (self.bad_ranges.len() + self.index.len());
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&TAG_TRAILER);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        for v in [
            self.records,
            self.used_clusters,
            self.used_bytes,
            self.bad_ranges.len() as u64,
            self.index.len() as u64,
            self.stride,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for r in &self.bad_ranges {
            b.extend_from_slice(&r.offset.to_le_bytes());
            b.extend_from_slice(&r.len.to_le_bytes());
        }
        for (off, c) in &self.index {
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&c.to_le_bytes());
        }
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&END_MAGIC);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(b.len(), len);
        b
    }

    /// Checks a trailer length read at byte 4 of the trailer at `offset`.
    pub fn check_len(offset: u64, len: u32) -> Result<usize, ImageError> {
        let l = u64::from(len);
        if l < TRAILER_BASE_LEN as u64
            || l > MAX_TRAILER_LEN
            || !(l - TRAILER_BASE_LEN as u64).is_multiple_of(16)
        {
            return Err(field(offset, "trailer length", l));
        }
        Ok(len as usize)
    }

    /// Parses the whole trailer `b` (its length already checked), which
    /// starts at `offset` in the image of a volume of `device_size` bytes.
    pub fn from_bytes(offset: u64, b: &[u8], device_size: u64) -> Result<Self, ImageError> {
        let len = b.len();
        let stored = u32le(b, len - 4);
        let computed = crc32fast::hash(&b[..len - 4]);
        if stored != computed {
            return Err(ImageError::Checksum {
                what: "trailer",
                offset,
                stored,
                computed,
            });
        }
        if b[len - 12..len - 4] != END_MAGIC {
            return Err(field(offset + (len - 12) as u64, "end magic", 0));
        }
        if u32le(b, len - 16) as usize != len {
            return Err(field(
                offset + (len - 16) as u64,
                "repeated trailer length",
                u32le(b, len - 16).into(),
            ));
        }
        let nbad = u64le(b, 32);
        let nindex = u64le(b, 40);
        let stride = u64le(b, 48);
        let want =
            (TRAILER_BASE_LEN as u64).checked_add(nbad.saturating_add(nindex).saturating_mul(16));
        if want != Some(len as u64) {
            return Err(field(
                offset + 32,
                "bad range and index counts",
                nbad.saturating_add(nindex),
            ));
        }
        if stride == 0 || !stride.is_power_of_two() {
            return Err(field(offset + 48, "index stride", stride));
        }
        let mut pos = 56;
        let mut bad_ranges = Vec::with_capacity(nbad as usize);
        let mut prev_end = 0;
        for _ in 0..nbad {
            let r = Extent {
                offset: u64le(b, pos),
                len: u64le(b, pos + 8),
            };
            if r.len == 0
                || r.offset < prev_end
                || r.offset.checked_add(r.len).is_none_or(|e| e > device_size)
            {
                return Err(field(offset + pos as u64, "bad range", r.offset));
            }
            prev_end = r.end();
            bad_ranges.push(r);
            pos += 16;
        }
        let mut index = Vec::with_capacity(nindex as usize);
        for _ in 0..nindex {
            index.push((u64le(b, pos), u64le(b, pos + 8)));
            pos += 16;
        }
        Ok(Trailer {
            records: u64le(b, 8),
            used_clusters: u64le(b, 16),
            used_bytes: u64le(b, 24),
            bad_ranges,
            index,
            stride,
        })
    }
}

fn field(offset: u64, name: &'static str, value: u64) -> ImageError {
    ImageError::Field {
        what: "trailer",
        offset,
        field: name,
        value,
    }
}
