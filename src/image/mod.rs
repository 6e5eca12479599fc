//! The special image format: see formats/fsimg-image.md, which this module
//! implements field for field.

pub mod disk;
pub mod header;
pub mod reader;
pub mod record;
pub mod trailer;
pub mod writer;

pub use disk::DiskBlock;
pub use header::Header;
pub use reader::ImageReader;
pub use trailer::Trailer;
pub use writer::ImageWriter;

/// Largest raw payload a record may carry.
pub const MAX_RECORD_PAYLOAD: u32 = 64 << 20;
/// Payload the writer puts in each record (the copier's chunk size).
pub const RECORD_PAYLOAD: u32 = 1 << 20;
/// Payload bytes per record the writer aims for when compressing: each
/// record is a zstd frame of its own, and larger frames compress better
/// (on a 4 GiB FAT32 volume, 1 MiB records came out 3.0 % larger than one
/// zstd stream of the whole image, 2 MiB records 1.5 %, 4 MiB 0.4 % at
/// half again the memory).
pub const ZSTD_RECORD_PAYLOAD: u32 = 2 << 20;
/// Most index entries the writer keeps before halving them.
pub const MAX_INDEX_ENTRIES: usize = 65_536;

/// A corrupt, truncated or unsupported special image. Every `offset` is a
/// byte offset in the image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// The image does not start with the magic.
    #[error("not an fsimg image: bad magic at byte {offset}")]
    BadMagic {
        /// Byte offset in the image.
        offset: u64,
    },
    /// A major version this reader does not know.
    #[error("image format version {major}.{minor} is not supported (this fsimg reads 1.x)")]
    UnsupportedVersion {
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
    },
    /// A CRC does not match.
    #[error(
        "image {what} checksum mismatch at byte {offset}: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )]
    Checksum {
        /// "header", "record header", "record data" or "trailer".
        what: &'static str,
        /// Where the checked structure starts.
        offset: u64,
        /// The stored CRC.
        stored: u32,
        /// The CRC computed.
        computed: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("image {what} at byte {offset}: invalid {field} {value}")]
    Field {
        /// "header", "record" or "trailer".
        what: &'static str,
        /// Where the structure starts.
        offset: u64,
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A record's data does not match its CRC.
    #[error(
        "image record at byte {offset} (volume byte {volume_offset}): data checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )]
    DataChecksum {
        /// Where the record starts in the image.
        offset: u64,
        /// Where its first extent starts in the volume.
        volume_offset: u64,
        /// The stored CRC.
        stored: u32,
        /// The CRC computed.
        computed: u32,
    },
    /// Something other than a record or the trailer.
    #[error("image: unknown record tag {tag:02x?} at byte {offset}")]
    UnknownTag {
        /// Where the tag is.
        offset: u64,
        /// The four bytes found.
        tag: [u8; 4],
    },
    /// A record starts before the previous one ended.
    #[error(
        "image record at byte {offset} is out of order: it starts at cluster {cluster}, before the end of the previous record (cluster {previous_end})"
    )]
    OutOfOrder {
        /// Where the record starts.
        offset: u64,
        /// Its first cluster.
        cluster: u64,
        /// Where the previous record ended.
        previous_end: u64,
    },
    /// A record reaches past the volume.
    #[error(
        "image record at byte {offset} reaches cluster {end}, past the end of the volume ({total} clusters)"
    )]
    PastEnd {
        /// Where the record starts.
        offset: u64,
        /// One past its last cluster.
        end: u64,
        /// Clusters in the volume.
        total: u64,
    },
    /// The extent table is malformed.
    #[error("image record at byte {offset}: bad extent table: {why}")]
    ExtentTable {
        /// Where the record starts.
        offset: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The payload does not decompress to its stated length.
    #[error("image record at byte {offset}: compressed data is corrupt: {why}")]
    Decompress {
        /// Where the record starts.
        offset: u64,
        /// What zstd said.
        why: String,
    },
    /// The input ended early.
    #[error(
        "image is truncated: it ends at byte {end}, inside the {what} that starts at byte {offset}"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// Where the input ended.
        end: u64,
    },
    /// The trailer's counts or index disagree with the records.
    #[error("image trailer at byte {offset}: {field} is {stored} but the records give {actual}")]
    TrailerMismatch {
        /// Where the trailer starts.
        offset: u64,
        /// The disagreeing field.
        field: &'static str,
        /// What the trailer says.
        stored: u64,
        /// What the records say.
        actual: u64,
    },
    /// Bytes after the trailer.
    #[error("image has trailing garbage after its trailer, at byte {offset}")]
    TrailingGarbage {
        /// Where the extra bytes start.
        offset: u64,
    },
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads an unsigned LEB128 varint from `b` at `*pos`, advancing it.
/// `None` when it runs off the end, is longer than 10 bytes, or overflows.
pub fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The record index both the writer and the reader build: one entry per
/// `stride` records, halved whenever it would exceed
/// [`MAX_INDEX_ENTRIES`], so it stays small whatever the image size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexBuilder {
    /// (image offset, first cluster) of records 0, stride, 2·stride, ...
    pub entries: Vec<(u64, u64)>,
    /// Records per entry.
    pub stride: u64,
    records: u64,
}

impl IndexBuilder {
    /// An empty index.
    pub fn new() -> Self {
        IndexBuilder {
            entries: Vec::new(),
            stride: 1,
            records: 0,
        }
    }

    /// Notes a record at `offset` in the image starting at `cluster`.
    pub fn push(&mut self, offset: u64, cluster: u64) {
        if self.records.is_multiple_of(self.stride) {
            if self.entries.len() == MAX_INDEX_ENTRIES {
                let mut i = 0;
                self.entries.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
            if self.records.is_multiple_of(self.stride) {
                self.entries.push((offset, cluster));
            }
        }
        self.records += 1;
    }

    /// Records noted.
    pub fn records(&self) -> u64 {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
        // Too long, overflowing, and cut short.
        assert_eq!(get_varint(&[0x80; 11], &mut 0), None);
        assert_eq!(
            get_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &mut 0
            ),
            None
        );
        assert_eq!(get_varint(&[0x80], &mut 0), None);
    }

    #[test]
    fn index_stays_bounded() {
        let mut ix = IndexBuilder::new();
        for r in 0..(MAX_INDEX_ENTRIES as u64 * 3) {
            ix.push(r * 10, r);
        }
        assert!(ix.entries.len() <= MAX_INDEX_ENTRIES);
        assert_eq!(ix.stride, 4);
        for (k, &(off, c)) in ix.entries.iter().enumerate() {
            assert_eq!(c, k as u64 * ix.stride);
            assert_eq!(off, c * 10);
        }
    }
}
