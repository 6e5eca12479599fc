//! partclone's image (`partclone.<fs> -c`, Clonezilla's `*-ptcl-img`),
//! formats 0002 (partclone 0.3 and later) and 0001 (before 0.3).
//!
//! 0002: a 110-byte header protected by a CRC, a bitmap of one bit per block
//! with its own CRC, then the used blocks in ascending order with a checksum
//! after every `blocks_per_checksum` of them (and after the last, partial
//! group). 0001: a 4160-byte header, one byte per block, `BiTmAgIc`, then
//! every used block followed by a 4-byte CRC (8 bytes from some old 64-bit
//! builds). formats/foreign-images.md has the details, including partclone's
//! own CRC32 (no final inversion) and 0001's CRC over the first byte only.

use std::io::{BufReader, Read};

use xxhash_rust::xxh3::Xxh3;
use xxhash_rust::xxh64::Xxh64;

use super::{
    CHUNK_BYTES, Checked, ForeignError, ForeignReader, Input, PARTCLONE_MAGIC, ReadOptions, hex_le,
};
use crate::bytes::{u16le, u32le, u64le};
use crate::copier::{Chunk, Extent};
use crate::error::{Error, Result};
use crate::report::Report;

const FORMAT: &str = "partclone";

/// Length of the 0002 header, its CRC included.
pub const HEADER_V2_LEN: usize = 110;
/// Length of the 0001 header.
pub const HEADER_V1_LEN: usize = 4160;
/// Largest block size partclone accepts.
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;
/// Most blocks partclone accepts (a 1 TiB bitmap).
pub const MAX_TOTAL_BLOCKS: u64 = 1 << 43;
/// What follows a byte-per-block bitmap.
pub const BITMAP_MAGIC: &[u8; 8] = b"BiTmAgIc";
/// The 0002 byte order mark, as a little-endian u16 (bytes `DE C0`).
pub const ENDIAN_MAGIC: u16 = 0xC0DE;

/// partclone's CRC32: reflected polynomial 0xEDB88320 without the final
/// inversion, so a running value is continued as is. Start from
/// `0xFFFF_FFFF`.
pub fn crc32(seed: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!seed);
    h.update(data);
    !h.finalize()
}

/// How the data of an image is checksummed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumKind {
    /// No checksums (`-a0`).
    None,
    /// partclone's CRC32 (`-a1`, the default).
    Crc32,
    /// XXH64 with seed 0 (`-a2`).
    Xxh64,
    /// XXH3-128 (`-a3`, Clonezilla's default).
    Xxh128,
    /// Format 0001's CRC32 over the first byte of each block, repeated.
    Crc32V1,
}

impl ChecksumKind {
    /// The kind for a 0002 header's code.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0x00 => ChecksumKind::None,
            0x20 => ChecksumKind::Crc32,
            0x30 => ChecksumKind::Xxh64,
            0x31 => ChecksumKind::Xxh128,
            _ => return None,
        })
    }

    /// The code in a 0002 header.
    pub fn code(self) -> u16 {
        match self {
            ChecksumKind::None => 0x00,
            ChecksumKind::Crc32 => 0x20,
            ChecksumKind::Xxh64 => 0x30,
            ChecksumKind::Xxh128 => 0x31,
            ChecksumKind::Crc32V1 => 0xff,
        }
    }

    /// Bytes of one stored checksum.
    pub fn size(self) -> u16 {
        match self {
            ChecksumKind::None => 0,
            ChecksumKind::Crc32 | ChecksumKind::Crc32V1 => 4,
            ChecksumKind::Xxh64 => 8,
            ChecksumKind::Xxh128 => 16,
        }
    }

    /// The name partclone.info shows.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumKind::None => "NONE",
            ChecksumKind::Crc32 => "CRC32",
            ChecksumKind::Xxh64 => "XXH64",
            ChecksumKind::Xxh128 => "XXH128",
            ChecksumKind::Crc32V1 => "CRC32_0001",
        }
    }
}

/// How the bitmap is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitmapMode {
    /// No bitmap: every block is stored.
    None,
    /// One bit per block, least significant bit first, then a CRC.
    Bit,
    /// One byte per block (1 = stored), then `BiTmAgIc`.
    Byte,
}

impl BitmapMode {
    /// The code in a 0002 header.
    pub fn code(self) -> u8 {
        match self {
            BitmapMode::None => 0x00,
            BitmapMode::Bit => 0x01,
            BitmapMode::Byte => 0x08,
        }
    }
}

/// The header of a partclone image, either format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartcloneHeader {
    /// 1 or 2.
    pub version: u16,
    /// The partclone version that wrote it ("0.3.23"); empty for 0001.
    pub ptc_version: String,
    /// The filesystem name ("EXTFS", "NTFS", "FAT16", ...).
    pub fs: String,
    /// Bytes the restored volume spans.
    pub device_size: u64,
    /// Blocks in the filesystem (bits in the bitmap).
    pub total_blocks: u64,
    /// Used blocks as the filesystem's superblock says (0002 only).
    pub sb_used_blocks: Option<u64>,
    /// Used blocks: those the image stores.
    pub used_blocks: u64,
    /// Bytes per block.
    pub block_size: u32,
    /// 32 or 64 (0002 only; 0 for 0001).
    pub cpu_bits: u16,
    /// The data checksum.
    pub checksum: ChecksumKind,
    /// Blocks per stored checksum.
    pub blocks_per_checksum: u32,
    /// Whether the checksum restarts after each stored one.
    pub reseed: bool,
    /// How the bitmap is stored.
    pub bitmap: BitmapMode,
}

impl PartcloneHeader {
    /// The 110 bytes of a 0002 header, CRC included (for tests and tools).
    pub fn to_bytes_v2(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_V2_LEN];
        b[..16].copy_from_slice(b"partclone-image\0");
        let v = self.ptc_version.as_bytes();
        b[16..16 + v.len().min(14)].copy_from_slice(&v[..v.len().min(14)]);
        b[30..34].copy_from_slice(b"0002");
        b[34..36].copy_from_slice(&ENDIAN_MAGIC.to_le_bytes());
        let f = self.fs.as_bytes();
        b[36..36 + f.len().min(15)].copy_from_slice(&f[..f.len().min(15)]);
        b[52..60].copy_from_slice(&self.device_size.to_le_bytes());
        b[60..68].copy_from_slice(&self.total_blocks.to_le_bytes());
        b[68..76].copy_from_slice(
            &self
                .sb_used_blocks
                .unwrap_or(self.used_blocks)
                .to_le_bytes(),
        );
        b[76..84].copy_from_slice(&self.used_blocks.to_le_bytes());
        b[84..88].copy_from_slice(&self.block_size.to_le_bytes());
        b[88..92].copy_from_slice(&18u32.to_le_bytes());
        b[92..94].copy_from_slice(&2u16.to_le_bytes());
        b[94..96].copy_from_slice(&self.cpu_bits.to_le_bytes());
        b[96..98].copy_from_slice(&self.checksum.code().to_le_bytes());
        b[98..100].copy_from_slice(&self.checksum.size().to_le_bytes());
        b[100..104].copy_from_slice(&self.blocks_per_checksum.to_le_bytes());
        b[104] = u8::from(self.reseed);
        b[105] = self.bitmap.code();
        let crc = crc32(0xFFFF_FFFF, &b[..106]);
        b[106..110].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn read<R: Read>(input: &mut Input<R>) -> Result<Self> {
        let mut b = vec![0u8; HEADER_V2_LEN];
        input.fill(&mut b, "header", 0)?;
        if b[..15] != PARTCLONE_MAGIC[..] {
            return Err(field(0, "magic", super::describe_start(&b[..16])));
        }
        match &b[30..34] {
            b"0002" => Self::from_v2(&b),
            b"0001" => {
                b.resize(HEADER_V1_LEN, 0);
                input.fill(&mut b[HEADER_V2_LEN..], "header", 0)?;
                Self::from_v1(&b)
            }
            v => Err(ForeignError::Version {
                format: FORMAT,
                version: format!("{:?}", String::from_utf8_lossy(v)),
                supported: "0001 and 0002",
            }
            .into()),
        }
    }

    fn from_v2(b: &[u8]) -> Result<Self> {
        let stored = u32le(b, 106);
        let computed = crc32(0xFFFF_FFFF, &b[..106]);
        if stored != computed {
            return Err(ForeignError::Crc {
                what: "header",
                offset: 106,
                stored,
                computed,
            }
            .into());
        }
        let endian = u16le(b, 34);
        if endian != ENDIAN_MAGIC {
            return Err(field(
                34,
                "byte order mark",
                format!("0x{endian:04x} (0xc0de; the image was made on a big-endian machine)"),
            ));
        }
        let mode = u16le(b, 96);
        let checksum = ChecksumKind::from_code(mode).ok_or_else(|| {
            field(
                96,
                "checksum mode",
                format!("0x{mode:02x} (0x00 none, 0x20 CRC32, 0x30 XXH64, 0x31 XXH128)"),
            )
        })?;
        let size = u16le(b, 98);
        if size != checksum.size() {
            return Err(field(
                98,
                "checksum size",
                format!("{size} ({} for {})", checksum.size(), checksum.name()),
            ));
        }
        let bpc = u32le(b, 100);
        if bpc == 0 && checksum != ChecksumKind::None {
            return Err(field(
                100,
                "blocks per checksum",
                format!("0 (with {} checksums)", checksum.name()),
            ));
        }
        let bitmap = match b[105] {
            0x00 => BitmapMode::None,
            0x01 => BitmapMode::Bit,
            0x08 => BitmapMode::Byte,
            m => {
                return Err(field(
                    105,
                    "bitmap mode",
                    format!("0x{m:02x} (0x00 none, 0x01 bit, 0x08 byte)"),
                ));
            }
        };
        let h = PartcloneHeader {
            version: 2,
            ptc_version: c_string(&b[16..30]),
            fs: c_string(&b[36..52]),
            device_size: u64le(b, 52),
            total_blocks: u64le(b, 60),
            sb_used_blocks: Some(u64le(b, 68)),
            used_blocks: u64le(b, 76),
            block_size: u32le(b, 84),
            cpu_bits: u16le(b, 94),
            checksum,
            blocks_per_checksum: bpc,
            reseed: b[104] != 0,
            bitmap,
        };
        h.check_geometry([84, 52, 60, 76])?;
        Ok(h)
    }

    fn from_v1(b: &[u8]) -> Result<Self> {
        let bs = u32le(b, 36) as i32;
        let h = PartcloneHeader {
            version: 1,
            ptc_version: String::new(),
            fs: c_string(&b[15..30]),
            device_size: u64le(b, 40),
            total_blocks: u64le(b, 48),
            sb_used_blocks: None,
            used_blocks: u64le(b, 56),
            block_size: u32::try_from(bs).unwrap_or(0),
            cpu_bits: 0,
            checksum: ChecksumKind::Crc32V1,
            blocks_per_checksum: 1,
            reseed: false,
            bitmap: BitmapMode::Byte,
        };
        if bs <= 0 {
            return Err(field(36, "block size", bs.to_string()));
        }
        h.check_geometry([36, 40, 48, 56])?;
        Ok(h)
    }

    /// The checks both formats share; `at` holds the offsets of the block
    /// size, device size, total and used block fields.
    fn check_geometry(&self, at: [u64; 4]) -> Result<()> {
        let bs = self.block_size;
        if bs == 0 || bs > MAX_BLOCK_SIZE {
            return Err(field(
                at[0],
                "block size",
                format!("{bs} (1 to {MAX_BLOCK_SIZE})"),
            ));
        }
        if self.total_blocks > MAX_TOTAL_BLOCKS {
            return Err(field(
                at[2],
                "total blocks",
                format!("{} (at most {MAX_TOTAL_BLOCKS})", self.total_blocks),
            ));
        }
        if self.used_blocks > self.total_blocks {
            return Err(field(
                at[3],
                "used blocks",
                format!(
                    "{} (more than the {} total blocks)",
                    self.used_blocks, self.total_blocks
                ),
            ));
        }
        let Some(span) = self.total_blocks.checked_mul(u64::from(bs)) else {
            return Err(field(
                at[2],
                "total blocks",
                format!(
                    "{} (blocks of {bs} bytes would span more than 2^64 bytes)",
                    self.total_blocks
                ),
            ));
        };
        if self.device_size == 0 || span > self.device_size {
            return Err(field(
                at[1],
                "device size",
                format!(
                    "{} (the {} blocks of {bs} bytes need {span})",
                    self.device_size, self.total_blocks
                ),
            ));
        }
        Ok(())
    }
}

fn field(offset: u64, field: &'static str, value: String) -> Error {
    ForeignError::Field {
        format: FORMAT,
        offset,
        field,
        value,
    }
    .into()
}

/// A NUL-terminated string from a fixed-size field.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A running data checksum.
enum Sum {
    None,
    Crc32(u32),
    Crc32V1(u32),
    Xxh64(Box<Xxh64>),
    Xxh128(Box<Xxh3>),
}

impl Sum {
    fn new(kind: ChecksumKind) -> Self {
        match kind {
            ChecksumKind::None => Sum::None,
            ChecksumKind::Crc32 => Sum::Crc32(0xFFFF_FFFF),
            ChecksumKind::Crc32V1 => Sum::Crc32V1(0xFFFF_FFFF),
            ChecksumKind::Xxh64 => Sum::Xxh64(Box::new(Xxh64::new(0))),
            ChecksumKind::Xxh128 => Sum::Xxh128(Box::new(Xxh3::new())),
        }
    }

    /// Adds whole blocks of `bs` bytes; `fill` is scratch space.
    fn update(&mut self, data: &[u8], bs: usize, fill: &mut Vec<u8>) {
        match self {
            Sum::None => {}
            Sum::Crc32(s) => *s = crc32(*s, data),
            Sum::Crc32V1(s) => {
                for block in data.chunks(bs) {
                    *s = crc32_v1(*s, block[0], bs, fill);
                }
            }
            Sum::Xxh64(h) => h.update(data),
            Sum::Xxh128(h) => h.update(data),
        }
    }

    /// The checksum as stored (little-endian), in the first `size` bytes.
    fn digest(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        match self {
            Sum::None => {}
            Sum::Crc32(s) | Sum::Crc32V1(s) => out[..4].copy_from_slice(&s.to_le_bytes()),
            Sum::Xxh64(h) => out[..8].copy_from_slice(&h.digest().to_le_bytes()),
            // XXH128_hash_t is { low64, high64 }: the u128's little-endian bytes.
            Sum::Xxh128(h) => out.copy_from_slice(&h.digest128().to_le_bytes()),
        }
        out
    }
}

/// Format 0001's CRC of a block: partclone's CRC32 of its first byte
/// repeated `bs` times (the pointer was never advanced).
pub(crate) fn crc32_v1(seed: u32, first: u8, bs: usize, fill: &mut Vec<u8>) -> u32 {
    if fill.len() != bs || fill.first() != Some(&first) {
        fill.clear();
        fill.resize(bs, first);
    }
    crc32(seed, fill)
}

/// What precedes the data of a partclone image: the header and the bitmap.
pub(crate) struct Head {
    /// The header.
    pub(crate) header: PartcloneHeader,
    /// One bit per block, least significant first, bits past the last block
    /// clear; empty for [`BitmapMode::None`] (every block stored).
    pub(crate) bitmap: Vec<u8>,
    /// Set bits in the bitmap (every block without one): the blocks the
    /// image stores. The bitmap wins over the header's count, as in
    /// partclone.
    pub(crate) stored_blocks: u64,
}

impl Head {
    /// Reads and checks the header and the bitmap, leaving `input` at the
    /// first block's data.
    pub(crate) fn read<R: Read>(input: &mut Input<R>) -> Result<Self> {
        let header = PartcloneHeader::read(input)?;
        let total = header.total_blocks;
        let mut bitmap = Vec::new();
        match header.bitmap {
            BitmapMode::None => {}
            BitmapMode::Bit => {
                let start = input.pos();
                let len = total.div_ceil(8) as usize;
                // Grown as the bytes arrive: a hostile block count cannot
                // make us allocate more than the input holds.
                const STEP: usize = 1 << 20;
                let mut crc = 0xFFFF_FFFF;
                while bitmap.len() < len {
                    let at = bitmap.len();
                    bitmap.resize(at + (len - at).min(STEP), 0);
                    input.fill(&mut bitmap[at..], "bitmap", start)?;
                    crc = crc32(crc, &bitmap[at..]);
                }
                let at = input.pos();
                let mut s = [0u8; 4];
                input.fill(&mut s, "bitmap CRC", at)?;
                let stored = u32::from_le_bytes(s);
                if stored != crc {
                    return Err(ForeignError::Crc {
                        what: "bitmap",
                        offset: at,
                        stored,
                        computed: crc,
                    }
                    .into());
                }
                // Bits past the last block may be set (the ext code fills the
                // bitmap with ones first): they mean nothing.
                if total % 8 != 0
                    && let Some(last) = bitmap.last_mut()
                {
                    *last &= (1u8 << (total % 8)) - 1;
                }
            }
            BitmapMode::Byte => {
                let start = input.pos();
                let mut buf = vec![0u8; 1 << 16];
                let mut done = 0u64;
                while done < total {
                    let n = (total - done).min(buf.len() as u64) as usize;
                    input.fill(&mut buf[..n], "bitmap", start)?;
                    bitmap.resize((done + n as u64).div_ceil(8) as usize, 0);
                    for (i, &v) in buf[..n].iter().enumerate() {
                        if v == 1 {
                            let b = done + i as u64;
                            bitmap[(b / 8) as usize] |= 1 << (b % 8);
                        }
                    }
                    done += n as u64;
                }
                let at = input.pos();
                let mut m = [0u8; 8];
                input.fill(&mut m, "bitmap magic", at)?;
                if &m != BITMAP_MAGIC {
                    return Err(field(
                        at,
                        "bitmap magic",
                        format!("{:?} (\"BiTmAgIc\")", String::from_utf8_lossy(&m)),
                    ));
                }
            }
        }
        let stored_blocks = if header.bitmap == BitmapMode::None {
            total
        } else {
            bitmap.iter().map(|b| u64::from(b.count_ones())).sum()
        };
        Ok(Head {
            header,
            bitmap,
            stored_blocks,
        })
    }
}

/// Format 0001: the width of each stored CRC, 4 bytes or 8 (the CRC and 4
/// zero bytes, from some old 64-bit builds). `state` is the running CRC
/// after the first stored block, and `after` the bytes that follow that
/// block's first 4 CRC bytes (up to block size + 8 are looked at). If they
/// start with 4 zero bytes, the second block's CRC tells the layouts apart.
pub(crate) fn v1_checksum_width(state: u32, bs: usize, after: &[u8], fill: &mut Vec<u8>) -> usize {
    if bs < 4 || after.len() < bs + 8 || after[..4] != [0; 4] {
        return 4;
    }
    let buf = &after[4..bs + 8];
    let narrow = crc32_v1(state, 0, bs, fill).to_le_bytes();
    let wide = crc32_v1(state, buf[0], bs, fill).to_le_bytes();
    if buf[bs..] == wide && buf[bs - 4..bs] != narrow {
        8
    } else {
        4
    }
}

/// Reads a partclone image from any byte stream.
pub struct PartcloneReader<R> {
    input: Input<BufReader<R>>,
    header: PartcloneHeader,
    /// One bit per block, least significant first; empty for
    /// [`BitmapMode::None`] (every block stored).
    bitmap: Vec<u8>,
    /// Set bits in the bitmap: the blocks the image holds.
    stored_blocks: u64,
    opts: ReadOptions,
    warned: bool,
    /// The next block to look at.
    next_block: u64,
    /// Blocks read so far.
    read_blocks: u64,
    /// Blocks read since the last checksum, the first and last of them.
    in_strip: u64,
    strip_first: u64,
    strip_last: u64,
    sum: Sum,
    /// Bytes per stored checksum (8 in 0001 images from the 64-bit bug).
    checksum_width: usize,
    width_known: bool,
    fill: Vec<u8>,
    checksums: u64,
    mismatches: u64,
    ended: bool,
}

impl<R: Read> PartcloneReader<R> {
    /// Reads and checks the header and the bitmap. `name` names the image
    /// in messages.
    pub fn new(r: R, name: &str, opts: ReadOptions) -> Result<Self> {
        let mut input = Input::new(BufReader::with_capacity(1 << 20, r), name, FORMAT);
        let Head {
            header,
            bitmap,
            stored_blocks,
        } = Head::read(&mut input)?;
        Ok(PartcloneReader {
            input,
            sum: Sum::new(header.checksum),
            checksum_width: header.checksum.size() as usize,
            width_known: header.version != 1,
            header,
            bitmap,
            stored_blocks,
            opts,
            warned: false,
            next_block: 0,
            read_blocks: 0,
            in_strip: 0,
            strip_first: 0,
            strip_last: 0,
            fill: Vec::new(),
            checksums: 0,
            mismatches: 0,
            ended: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &PartcloneHeader {
        &self.header
    }

    /// Blocks the image stores (set bits in its bitmap).
    pub fn stored_blocks(&self) -> u64 {
        self.stored_blocks
    }

    fn is_stored(&self, b: u64) -> bool {
        self.bitmap.is_empty() || self.bitmap[(b / 8) as usize] & (1 << (b % 8)) != 0
    }

    /// The first stored block at or after `from` (one exists: fewer blocks
    /// have been read than the bitmap holds).
    fn next_stored(&self, from: u64) -> u64 {
        if self.bitmap.is_empty() {
            return from;
        }
        let mut b = from;
        while b < self.header.total_blocks {
            let byte = self.bitmap[(b / 8) as usize];
            if byte >> (b % 8) == 0 {
                b = (b / 8 + 1) * 8;
            } else if byte & (1 << (b % 8)) != 0 {
                return b;
            } else {
                b += 1;
            }
        }
        b
    }

    /// Stored blocks in a row from `from`, at most `max`.
    fn run_from(&self, from: u64, max: u64) -> u64 {
        let end = from.saturating_add(max).min(self.header.total_blocks);
        if self.bitmap.is_empty() {
            return end - from;
        }
        let mut b = from;
        while b < end && self.is_stored(b) {
            b += 1;
        }
        b - from
    }

    fn checksums_on(&self) -> bool {
        self.header.checksum != ChecksumKind::None
    }

    /// Reads the checksum after the current strip and compares it.
    fn check_strip(&mut self, report: &dyn Report) -> Result<()> {
        let at = self.input.pos();
        let size = self.header.checksum.size() as usize;
        let mut stored = [0u8; 16];
        self.input.fill(&mut stored[..size], "checksum", at)?;
        let computed = self.sum.digest();
        if !self.width_known {
            self.detect_width(&computed);
        } else if self.checksum_width > size {
            let mut pad = [0u8; 8];
            self.input
                .fill(&mut pad[..self.checksum_width - size], "checksum", at)?;
        }
        self.checksums += 1;
        if stored[..size] != computed[..size] {
            let err = ForeignError::BlockChecksum {
                kind: self.header.checksum.name(),
                offset: at,
                block: self.strip_last,
                first_block: self.strip_first,
                blocks: self.in_strip,
                stored: hex_le(&stored[..size]),
                computed: hex_le(&computed[..size]),
            };
            if !self.opts.ignore_checksums {
                return Err(err.into());
            }
            self.mismatches += 1;
            report.warn(&format!(
                "ignoring a checksum mismatch (--ignore-checksums): blocks {}..={} of the image are corrupt ({} at byte {at}: stored {}, computed {})",
                self.strip_first,
                self.strip_last,
                self.header.checksum.name(),
                hex_le(&stored[..size]),
                hex_le(&computed[..size])
            ));
        }
        self.in_strip = 0;
        if self.header.reseed {
            self.sum = Sum::new(self.header.checksum);
        }
        Ok(())
    }

    /// Format 0001, after block 0's CRC: some old 64-bit builds stored each
    /// CRC in 8 bytes (the CRC and 4 zero bytes). If 4 zero bytes follow,
    /// block 1's CRC tells which layout this is; the bytes looked at are
    /// given back to the input.
    fn detect_width(&mut self, after_block0: &[u8; 16]) {
        self.width_known = true;
        let bs = self.header.block_size as usize;
        if self.stored_blocks < 2 || bs < 4 {
            return;
        }
        let mut look = vec![0u8; bs + 8];
        let Ok(got) = self.input.read_some(&mut look) else {
            return;
        };
        let state = u32::from_le_bytes(after_block0[..4].try_into().expect("4 bytes"));
        self.checksum_width = v1_checksum_width(state, bs, &look[..got], &mut self.fill);
        // The 4 zero bytes of block 0's wide CRC stay read.
        let keep = if self.checksum_width == 8 { 4 } else { 0 };
        self.input.unread(&look[keep..got]);
    }
}

impl<R: Read + Send> ForeignReader for PartcloneReader<R> {
    fn format(&self) -> String {
        format!("partclone {:04}", self.header.version)
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let h = &self.header;
        let mut lines = vec![("format", self.format())];
        if h.version >= 2 {
            lines.push(("writer", format!("partclone v{}", h.ptc_version)));
        }
        lines.push(("filesystem", h.fs.clone()));
        lines.push(("device size", h.device_size.to_string()));
        lines.push(("block size", h.block_size.to_string()));
        lines.push(("total blocks", h.total_blocks.to_string()));
        lines.push((
            "used blocks",
            if self.stored_blocks == h.used_blocks {
                h.used_blocks.to_string()
            } else {
                format!(
                    "{} in the bitmap ({} in the header)",
                    self.stored_blocks, h.used_blocks
                )
            },
        ));
        if let Some(sb) = h.sb_used_blocks {
            lines.push(("superblock used blocks", sb.to_string()));
        }
        lines.push((
            "checksum",
            match h.checksum {
                ChecksumKind::None => "none".to_string(),
                ChecksumKind::Crc32V1 => {
                    "CRC32 of each block (0001: of its first byte only)".to_string()
                }
                k => format!(
                    "{}, every {} blocks{}",
                    k.name(),
                    h.blocks_per_checksum,
                    if h.reseed { "" } else { ", not reseeded" }
                ),
            },
        ));
        lines.push((
            "bitmap",
            match h.bitmap {
                BitmapMode::None => "none (every block stored)",
                BitmapMode::Bit => "one bit per block",
                BitmapMode::Byte => "one byte per block",
            }
            .to_string(),
        ));
        if h.cpu_bits != 0 {
            lines.push(("created on", format!("a {}-bit platform", h.cpu_bits)));
        }
        lines
    }

    fn device_size(&self) -> u64 {
        self.header.device_size
    }

    fn used_bytes(&self) -> u64 {
        self.stored_blocks * u64::from(self.header.block_size)
    }

    fn next_chunk(&mut self, report: &dyn Report) -> Result<Option<Chunk>> {
        if !self.warned {
            self.warned = true;
            if self.stored_blocks != self.header.used_blocks {
                report.warn(&format!(
                    "the partclone header says {} used blocks but its bitmap has {}: going by the bitmap, as partclone does",
                    self.header.used_blocks, self.stored_blocks
                ));
            }
        }
        let bs = u64::from(self.header.block_size);
        let limit = (CHUNK_BYTES as u64 / bs).max(1);
        let bpc = u64::from(self.header.blocks_per_checksum);
        let mut chunk = Chunk::default();
        let mut blocks = 0u64;
        while !self.ended && blocks < limit {
            if self.read_blocks == self.stored_blocks {
                if self.checksums_on() && self.in_strip > 0 {
                    self.check_strip(report)?;
                }
                self.ended = true;
                break;
            }
            let first = self.next_stored(self.next_block);
            let mut max = limit - blocks;
            if self.checksums_on() {
                max = max.min(bpc - self.in_strip);
            }
            let n = self.run_from(first, max);
            if n == 0 {
                // Cannot happen: the bitmap holds more stored blocks.
                self.ended = true;
                break;
            }
            let volume_offset = first * bs;
            let start = chunk.data.len();
            let len = (n * bs) as usize;
            let at = self.input.pos();
            let got = self.input.append(&mut chunk.data, len)?;
            if got < len {
                let k = got as u64 / bs;
                return Err(ForeignError::TruncatedBlock {
                    format: FORMAT,
                    block: first + k,
                    volume_offset: (first + k) * bs,
                    offset: at + k * bs,
                    end: self.input.pos(),
                }
                .into());
            }
            if self.in_strip == 0 {
                self.strip_first = first;
            }
            self.sum
                .update(&chunk.data[start..], bs as usize, &mut self.fill);
            match chunk.extents.last_mut() {
                Some(e) if e.end() == volume_offset => e.len += len as u64,
                _ => chunk.extents.push(Extent {
                    offset: volume_offset,
                    len: len as u64,
                }),
            }
            self.next_block = first + n;
            self.read_blocks += n;
            self.in_strip += n;
            self.strip_last = first + n - 1;
            blocks += n;
            if self.checksums_on()
                && (self.in_strip == bpc || self.read_blocks == self.stored_blocks)
            {
                self.check_strip(report)?;
            }
            if self.read_blocks == self.stored_blocks {
                self.ended = true;
            }
        }
        Ok((!chunk.extents.is_empty()).then_some(chunk))
    }

    fn trailing(&mut self) -> Result<Option<u64>> {
        self.input.trailing()
    }

    fn notes(&self) -> Vec<String> {
        if self.header.fs == "NTFS" {
            vec!["partclone.ntfs leaves the NTFS backup boot sector (the volume's last sector, after its last cluster) out of its images, so it is not restored; ntfsclone and fsimg images keep it".into()]
        } else {
            Vec::new()
        }
    }

    fn checked(&self) -> Checked {
        let h = &self.header;
        let head = if h.version >= 2 {
            match h.bitmap {
                BitmapMode::Bit => "the header CRC, the bitmap CRC",
                BitmapMode::Byte => "the header CRC, the bitmap",
                BitmapMode::None => "the header CRC",
            }
        } else {
            "the header, the bitmap and its magic"
        };
        let (what, unchecked) = match h.checksum {
            ChecksumKind::None => (
                format!("{head} and the length of {} blocks", self.read_blocks),
                Some(
                    "the image has no data checksums (partclone -a0), so the block data itself could not be checked"
                        .to_string(),
                ),
            ),
            ChecksumKind::Crc32V1 => (
                format!(
                    "{head} and {} per-block CRCs{}",
                    self.checksums,
                    if self.checksum_width == 8 {
                        " (stored in 8 bytes, by an old 64-bit partclone)"
                    } else {
                        ""
                    }
                ),
                Some(
                    "format 0001's CRC covers only the first byte of each block (a partclone bug), so the rest of the data could not be checked"
                        .to_string(),
                ),
            ),
            k => (
                format!(
                    "{head} and {} {} checksums over {} blocks",
                    self.checksums,
                    k.name(),
                    self.read_blocks
                ),
                None,
            ),
        };
        Checked {
            checksums: self.checksums,
            mismatches: self.mismatches,
            what,
            unchecked,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::Silent;
    use std::io::Cursor;

    #[test]
    fn crc_matches_the_published_values() {
        // The verified header in peers.md: CRC fd 2d 6f b1 of bytes 0..106.
        let mut h = vec![0u8; 106];
        h[..16].copy_from_slice(b"partclone-image\0");
        h[16..22].copy_from_slice(b"0.3.23");
        h[30..34].copy_from_slice(b"0002");
        h[34..36].copy_from_slice(&[0xde, 0xc0]);
        h[36..41].copy_from_slice(b"EXTFS");
        h[52..60].copy_from_slice(&67_108_864u64.to_le_bytes());
        h[60..68].copy_from_slice(&65_536u64.to_le_bytes());
        h[68..76].copy_from_slice(&13_703u64.to_le_bytes());
        h[76..84].copy_from_slice(&13_703u64.to_le_bytes());
        h[84..88].copy_from_slice(&1024u32.to_le_bytes());
        h[88..92].copy_from_slice(&18u32.to_le_bytes());
        h[92..94].copy_from_slice(&2u16.to_le_bytes());
        h[94..96].copy_from_slice(&64u16.to_le_bytes());
        h[96..98].copy_from_slice(&0x20u16.to_le_bytes());
        h[98..100].copy_from_slice(&4u16.to_le_bytes());
        h[100..104].copy_from_slice(&1024u32.to_le_bytes());
        h[104] = 1;
        h[105] = 1;
        assert_eq!(
            crc32(0xFFFF_FFFF, &h).to_le_bytes(),
            [0xfd, 0x2d, 0x6f, 0xb1]
        );
        // Continuing a running value equals one pass.
        assert_eq!(
            crc32(crc32(0xFFFF_FFFF, &h[..50]), &h[50..]),
            crc32(0xFFFF_FFFF, &h)
        );
    }

    /// A 0002 header with a bit bitmap (for tests of the readers).
    pub(crate) fn header(
        total: u64,
        used: u64,
        bs: u32,
        kind: ChecksumKind,
        bpc: u32,
    ) -> PartcloneHeader {
        PartcloneHeader {
            version: 2,
            ptc_version: "0.3.23".into(),
            fs: "raw".into(),
            device_size: total * u64::from(bs),
            total_blocks: total,
            sb_used_blocks: Some(used),
            used_blocks: used,
            block_size: bs,
            cpu_bits: 64,
            checksum: kind,
            blocks_per_checksum: bpc,
            reseed: true,
            bitmap: BitmapMode::Bit,
        }
    }

    /// An image of `blocks` (each filled with its number) by the layout.
    pub(crate) fn build(h: &PartcloneHeader, blocks: &[u64]) -> Vec<u8> {
        let mut img = h.to_bytes_v2();
        let mut bm = vec![0u8; h.total_blocks.div_ceil(8) as usize];
        for &b in blocks {
            bm[(b / 8) as usize] |= 1 << (b % 8);
        }
        img.extend_from_slice(&bm);
        img.extend_from_slice(&crc32(0xFFFF_FFFF, &bm).to_le_bytes());
        let mut sum = Sum::new(h.checksum);
        let mut n = 0;
        let mut fill = Vec::new();
        for &b in blocks {
            let data = vec![b as u8; h.block_size as usize];
            sum.update(&data, data.len(), &mut fill);
            img.extend_from_slice(&data);
            n += 1;
            if n == h.blocks_per_checksum {
                img.extend_from_slice(&sum.digest()[..h.checksum.size() as usize]);
                n = 0;
                if h.reseed {
                    sum = Sum::new(h.checksum);
                }
            }
        }
        if n > 0 {
            img.extend_from_slice(&sum.digest()[..h.checksum.size() as usize]);
        }
        img
    }

    fn restore(img: &[u8], opts: ReadOptions) -> Result<Vec<u8>> {
        let mut r = PartcloneReader::new(Cursor::new(img.to_vec()), "t", opts)?;
        let mut vol = vec![0u8; r.device_size() as usize];
        while let Some(c) = r.next_chunk(&Silent)? {
            for (e, d) in c.pieces() {
                vol[e.offset as usize..e.end() as usize].copy_from_slice(d);
            }
        }
        assert_eq!(r.trailing()?, None);
        Ok(vol)
    }

    #[test]
    fn every_checksum_kind_round_trips() {
        let blocks = [0, 1, 2, 5, 6, 9, 10, 11, 12, 20];
        for kind in [
            ChecksumKind::None,
            ChecksumKind::Crc32,
            ChecksumKind::Xxh64,
            ChecksumKind::Xxh128,
        ] {
            for reseed in [true, false] {
                let mut h = header(21, blocks.len() as u64, 16, kind, 3);
                h.reseed = reseed;
                let img = build(&h, &blocks);
                let vol = restore(&img, ReadOptions::default()).unwrap();
                for b in 0..21u64 {
                    let want = if blocks.contains(&b) { b as u8 } else { 0 };
                    assert!(vol[b as usize * 16..][..16].iter().all(|&x| x == want));
                }
                if kind == ChecksumKind::None {
                    continue;
                }
                // A flipped data byte in block 9: the 6th stored block, the
                // last of the second strip (blocks 5, 6, 9).
                let at = HEADER_V2_LEN + 3 + 4 + 5 * 16 + kind.size() as usize + 3;
                let mut bad = img.clone();
                bad[at] ^= 1;
                let err = restore(&bad, ReadOptions::default())
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains("for the 3 block(s) ending at block 9 (blocks 5..=9)"),
                    "{kind:?}: {err}"
                );
                let opts = ReadOptions {
                    ignore_checksums: true,
                };
                assert!(restore(&bad, opts).is_ok());
            }
        }
    }
}
