//! Data records (formats/fsimg-image.md section 2).

use super::header::Header;
use super::{ImageError, get_varint, put_varint};
use crate::bytes::{u32le, u64le};
use crate::copier::{Chunk, Extent};

/// Tag of a record whose payload is stored verbatim.
pub const TAG_DATA: [u8; 4] = *b"DATA";
/// Tag of a record whose payload is one zstd frame.
pub const TAG_DATZ: [u8; 4] = *b"DATZ";
/// Length of the fixed part of a record header.
pub const RECORD_HEADER_LEN: usize = 36;
/// Longest encoding of one extent-table pair (two 10-byte varints).
pub const MAX_PAIR_LEN: usize = 20;

/// The cluster layout of a record, computed from a chunk's extents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First cluster of the first extent.
    pub first_cluster: u64,
    /// One past the last cluster of the last extent.
    pub end_cluster: u64,
    /// Number of extents.
    pub extents: u32,
    /// Used clusters in the record.
    pub clusters: u64,
    /// The encoded extent table.
    pub table: Vec<u8>,
}

impl Layout {
    /// Lays out `extents` (cluster-aligned starts, ascending) in clusters
    /// of `cluster_size` bytes.
    pub fn new(extents: &[Extent], cluster_size: u32) -> Self {
        let cs = u64::from(cluster_size);
        let first_cluster = extents.first().map_or(0, |e| e.offset / cs);
        let mut table = Vec::with_capacity(extents.len() * 2);
        let mut end = first_cluster;
        let mut clusters = 0;
        for e in extents {
            let c = e.offset / cs;
            let n = e.len.div_ceil(cs);
            put_varint(&mut table, c - end);
            put_varint(&mut table, n);
            end = c + n;
            clusters += n;
        }
        Layout {
            first_cluster,
            end_cluster: end,
            extents: extents.len() as u32,
            clusters,
            table,
        }
    }
}

/// Encodes the record header and table for a payload already checked.
pub fn encode_head(
    zstd: bool,
    layout: &Layout,
    raw_len: u32,
    stored_len: u32,
    crc: u32,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(RECORD_HEADER_LEN + layout.table.len());
    h.extend_from_slice(if zstd { &TAG_DATZ } else { &TAG_DATA });
    h.extend_from_slice(&layout.extents.to_le_bytes());
    h.extend_from_slice(&layout.first_cluster.to_le_bytes());
    h.extend_from_slice(&(layout.table.len() as u32).to_le_bytes());
    h.extend_from_slice(&raw_len.to_le_bytes());
    h.extend_from_slice(&stored_len.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h);
    hasher.update(&layout.table);
    h.extend_from_slice(&hasher.finalize().to_le_bytes());
    h.extend_from_slice(&layout.table);
    h
}

/// The fixed fields of a record header, not yet checked against its CRC.
#[derive(Clone, Copy, Debug)]
pub struct Fixed {
    /// `DATZ` rather than `DATA`.
    pub zstd: bool,
    /// Extent count.
    pub extents: u32,
    /// First cluster.
    pub first_cluster: u64,
    /// Extent table length.
    pub table_len: u32,
    /// Raw payload length.
    pub raw_len: u32,
    /// Stored payload length.
    pub stored_len: u32,
    /// CRC32 of the raw payload.
    pub payload_crc: u32,
    /// CRC32 of the header and table.
    pub header_crc: u32,
}

impl Fixed {
    /// Reads the 36 fixed bytes (the tag already checked to be a record's).
    pub fn from_bytes(b: &[u8; RECORD_HEADER_LEN]) -> Self {
        Fixed {
            zstd: b[0..4] == TAG_DATZ,
            extents: u32le(b, 4),
            first_cluster: u64le(b, 8),
            table_len: u32le(b, 16),
            raw_len: u32le(b, 20),
            stored_len: u32le(b, 24),
            payload_crc: u32le(b, 28),
            header_crc: u32le(b, 32),
        }
    }
}

impl Fixed {
    /// Bounds what the header asks a reader to allocate, before the extent
    /// table its CRC covers is read: the extent count and table length.
    pub fn check_bounds(&self, offset: u64, h: &Header) -> Result<(), ImageError> {
        let max_extents = u64::from(h.max_record / h.cluster_size) + 1;
        if self.extents == 0 || u64::from(self.extents) > max_extents {
            return Err(record_field(offset, "extent count", self.extents.into()));
        }
        if self.table_len as usize > self.extents as usize * MAX_PAIR_LEN {
            return Err(record_field(
                offset,
                "extent table length",
                self.table_len.into(),
            ));
        }
        Ok(())
    }

    /// Checks the record header `head` (whose fields are `self`) and its
    /// extent `table` against the header CRC and the image header `h`,
    /// then decodes the table as [`decode_table`] does.
    pub fn check(
        &self,
        offset: u64,
        head: &[u8; RECORD_HEADER_LEN],
        table: &[u8],
        h: &Header,
        prev_end: u64,
    ) -> Result<(Vec<Extent>, u64, u64), ImageError> {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head[..32]);
        hasher.update(table);
        let computed = hasher.finalize();
        if computed != self.header_crc {
            return Err(ImageError::Checksum {
                what: "record header",
                offset,
                stored: self.header_crc,
                computed,
            });
        }
        if self.raw_len == 0 || self.raw_len > h.max_record {
            return Err(record_field(
                offset,
                "raw payload length",
                self.raw_len.into(),
            ));
        }
        let stored_ok = if self.zstd {
            self.stored_len as usize <= zstd::zstd_safe::compress_bound(self.raw_len as usize)
        } else {
            self.stored_len == self.raw_len
        };
        if !stored_ok {
            return Err(record_field(
                offset,
                "stored payload length",
                self.stored_len.into(),
            ));
        }
        decode_table(offset, self, table, &Geometry::of(h), prev_end)
    }
}

fn record_field(offset: u64, field: &'static str, value: u64) -> ImageError {
    ImageError::Field {
        what: "record",
        offset,
        field,
        value,
    }
}

/// Geometry a record is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// Volume size in bytes.
    pub device_size: u64,
    /// Clusters in the volume.
    pub total_clusters: u64,
}

impl Geometry {
    /// The geometry an image header gives.
    pub fn of(h: &Header) -> Self {
        Geometry {
            cluster_size: h.cluster_size,
            device_size: h.device_size,
            total_clusters: h.total_clusters,
        }
    }
}

/// Decodes and checks an extent table: extents in bytes, and the cluster
/// after the last one. `prev_end` is where the previous record ended.
pub fn decode_table(
    offset: u64,
    fixed: &Fixed,
    table: &[u8],
    g: &Geometry,
    prev_end: u64,
) -> Result<(Vec<Extent>, u64, u64), ImageError> {
    let bad = |why| ImageError::ExtentTable { offset, why };
    if fixed.first_cluster < prev_end {
        return Err(ImageError::OutOfOrder {
            offset,
            cluster: fixed.first_cluster,
            previous_end: prev_end,
        });
    }
    let cs = u64::from(g.cluster_size);
    let mut extents = Vec::with_capacity(fixed.extents as usize);
    let mut pos = 0;
    let mut end = fixed.first_cluster;
    let mut clusters = 0u64;
    let mut bytes = 0u64;
    for i in 0..fixed.extents {
        let skip = get_varint(table, &mut pos).ok_or(bad("malformed varint"))?;
        let count = get_varint(table, &mut pos).ok_or(bad("malformed varint"))?;
        if i == 0 && skip != 0 {
            return Err(bad("the first extent's skip is not 0"));
        }
        if i > 0 && skip == 0 {
            return Err(bad("extents touch or overlap"));
        }
        if count == 0 {
            return Err(bad("an extent of zero clusters"));
        }
        let start = end
            .checked_add(skip)
            .filter(|&s| s < g.total_clusters)
            .ok_or(ImageError::PastEnd {
                offset,
                end: end.saturating_add(skip).saturating_add(count),
                total: g.total_clusters,
            })?;
        end = start
            .checked_add(count)
            .filter(|&e| e <= g.total_clusters)
            .ok_or(ImageError::PastEnd {
                offset,
                end: start.saturating_add(count),
                total: g.total_clusters,
            })?;
        // `start < total_clusters`, so `start * cs < device_size`; but
        // `end * cs` overflows when the volume ends within the last
        // cluster below 2^64 (then the clamp to the volume applies).
        let from = start * cs;
        let to = end.saturating_mul(cs).min(g.device_size);
        extents.push(Extent {
            offset: from,
            len: to - from,
        });
        clusters += count;
        bytes += to - from;
    }
    if pos != table.len() {
        return Err(bad("bytes left after the last extent"));
    }
    if bytes != u64::from(fixed.raw_len) {
        return Err(ImageError::Field {
            what: "record",
            offset,
            field: "raw payload length",
            value: fixed.raw_len.into(),
        });
    }
    Ok((extents, end, clusters))
}

/// A record read from an image whose header and table have been checked;
/// its payload is checked by [`RawRecord::decode`].
#[derive(Debug)]
pub struct RawRecord {
    /// Where the record starts in the image.
    pub offset: u64,
    /// Whether the payload is a zstd frame.
    pub zstd: bool,
    /// The extents it fills, in bytes of the volume.
    pub extents: Vec<Extent>,
    /// Raw payload length.
    pub raw_len: u32,
    /// CRC32 of the raw payload.
    pub payload_crc: u32,
    /// The payload as stored.
    pub stored: Vec<u8>,
}

impl RawRecord {
    /// Decompresses (if needed) and checks the payload against its CRC.
    /// A compressed payload is decompressed into `spare`, which then holds
    /// the compressed bytes' buffer, for the next record (no allocation per
    /// record).
    pub fn decode(
        self,
        dctx: &mut Option<zstd::bulk::Decompressor<'static>>,
        spare: &mut Vec<u8>,
    ) -> Result<Chunk, ImageError> {
        let data = if self.zstd {
            // One frame, nothing after it (zstd would decode a second one).
            if let Ok(n) = zstd::zstd_safe::find_frame_compressed_size(&self.stored)
                && n != self.stored.len()
            {
                return Err(ImageError::Decompress {
                    offset: self.offset,
                    why: format!(
                        "{} bytes after the zstd frame",
                        self.stored.len().saturating_sub(n)
                    ),
                });
            }
            let d = match dctx {
                Some(d) => d,
                None => dctx.insert(zstd::bulk::Decompressor::new().map_err(|e| {
                    ImageError::Decompress {
                        offset: self.offset,
                        why: e.to_string(),
                    }
                })?),
            };
            let mut out = std::mem::take(spare);
            out.clear();
            out.reserve(self.raw_len as usize);
            d.decompress_to_buffer(&self.stored, &mut out)
                .map_err(|e| ImageError::Decompress {
                    offset: self.offset,
                    why: e.to_string(),
                })?;
            if out.len() != self.raw_len as usize {
                return Err(ImageError::Decompress {
                    offset: self.offset,
                    why: format!("{} bytes instead of {}", out.len(), self.raw_len),
                });
            }
            *spare = self.stored;
            out
        } else {
            self.stored
        };
        let computed = crc32fast::hash(&data);
        if computed != self.payload_crc {
            return Err(ImageError::DataChecksum {
                offset: self.offset,
                volume_offset: self.extents.first().map_or(0, |e| e.offset),
                stored: self.payload_crc,
                computed,
            });
        }
        Ok(Chunk {
            extents: self.extents,
            data,
            bad: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compressed record of `data` at image offset 4096 that claims
    /// `raw_len` bytes.
    fn zstd_record(data: &[u8], raw_len: u32) -> RawRecord {
        RawRecord {
            offset: 4096,
            zstd: true,
            extents: vec![Extent {
                offset: 0,
                len: u64::from(raw_len),
            }],
            raw_len,
            payload_crc: crc32fast::hash(data),
            stored: zstd::bulk::compress(data, 3).unwrap(),
        }
    }

    #[test]
    fn records_decode_through_one_reused_buffer() {
        let (mut dctx, mut spare) = (None, Vec::new());
        // Growing and shrinking records, each into what the last one left.
        for (fill, len) in [(1u8, 100_000), (2, 300_000), (3, 5_000), (4, 200_000)] {
            let data = vec![fill; len];
            let chunk = zstd_record(&data, len as u32)
                .decode(&mut dctx, &mut spare)
                .unwrap();
            assert_eq!(chunk.data, data);
            // The compressed bytes' buffer is kept for the next record.
            assert!(spare.capacity() > 0);
        }
    }

    #[test]
    fn a_frame_longer_than_stated_is_refused_even_into_a_larger_buffer() {
        let data = vec![7u8; 8192];
        let mut spare = Vec::with_capacity(1 << 20);
        match zstd_record(&data, 4096).decode(&mut None, &mut spare) {
            Err(ImageError::Decompress { offset, why }) => {
                assert_eq!((offset, why.as_str()), (4096, "8192 bytes instead of 4096"));
            }
            other => panic!("{other:?}"),
        }
    }
}
