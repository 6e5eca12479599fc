//! Random access to the volume inside a partclone image, formats 0001 and
//! 0002 (Clonezilla's `*-ptcl-img` included), as partclone-utils gives it.
//!
//! The stored blocks follow the bitmap in ascending order, with a checksum
//! after every `blocks_per_checksum` of them (formats/foreign-images.md,
//! 3.3 and 4), so where block *b* lies in the image follows from the number
//! *r* of stored blocks before it:
//!
//! ```text
//! data start + r × block size + (r / blocks per checksum) × checksum size
//! ```
//!
//! *r* is a rank over the bitmap: a prefix count is kept every
//! [`RANK_STEP`] blocks, and the bits after the sample are counted 64 at a
//! time. The header and bitmap are read and checked at open by the same
//! code as the sequential reader ([`crate::foreign::partclone`]), so a bad
//! header or bitmap is the same error.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};
use crate::foreign::partclone::{BitmapMode, Head, PartcloneHeader, crc32_v1, v1_checksum_width};
use crate::foreign::{Input, read_block_at};
use crate::source::Source;

const FORMAT: &str = "partclone";

/// Blocks per sampled prefix count: 8 bytes of index per 512 bytes of
/// bitmap (1.6 % on top of the bitmap), and a lookup counts at most 64
/// words.
pub const RANK_STEP: u64 = 4096;

/// The volume inside a partclone image, read in place.
///
/// The data checksums are skipped, not verified (partclone-utils does the
/// same): a checksum covers a whole group of blocks, which a random read
/// does not read. `fsimg verify` checks them.
pub struct PartcloneSource {
    file: File,
    name: String,
    header: PartcloneHeader,
    /// One bit per block, least significant first; empty when every block
    /// is stored (no bitmap).
    bitmap: Vec<u8>,
    all_stored: bool,
    /// `rank[k]`: stored blocks before block `k × RANK_STEP`.
    rank: Vec<u64>,
    stored_blocks: u64,
    /// Where block data starts in the image.
    data_start: u64,
    /// Bytes of each stored checksum (0: none; 8 in some 0001 images).
    checksum_width: u64,
    /// Stored blocks per checksum (at least 1).
    blocks_per_checksum: u64,
    /// The image's length at open, if shorter than its layout needs.
    truncated_at: Option<u64>,
}

impl PartcloneSource {
    /// Reads and checks the header and the bitmap of the partclone image in
    /// `file` (from its byte 0, whatever the file's position). `name` names
    /// the image in messages. A corrupt header or bitmap is the error the
    /// sequential reader gives; a truncated image opens (see
    /// [`PartcloneSource::truncated_at`]).
    pub fn open(file: File, name: &str) -> Result<PartcloneSource> {
        let io_err = |offset, e| Error::Read {
            name: name.to_string(),
            offset,
            len: 0,
            source: e,
        };
        (&file).seek(SeekFrom::Start(0)).map_err(|e| io_err(0, e))?;
        let mut input = Input::new(BufReader::with_capacity(1 << 20, &file), name, FORMAT);
        let Head {
            header,
            bitmap,
            stored_blocks,
        } = Head::read(&mut input)?;
        let data_start = input.pos();
        drop(input);
        let image_len = file.metadata().map_err(|e| io_err(0, e))?.len();
        let all_stored = header.bitmap == BitmapMode::None;
        let rank = if all_stored {
            Vec::new()
        } else {
            let mut sum = 0u64;
            bitmap
                .chunks((RANK_STEP / 8) as usize)
                .map(|c| {
                    let before = sum;
                    sum += c.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
                    before
                })
                .collect()
        };
        let bs = u64::from(header.block_size);
        let mut checksum_width = u64::from(header.checksum.size());
        if header.version == 1 && stored_blocks >= 2 && bs >= 4 {
            checksum_width = v1_width(&file, data_start, bs, image_len) as u64;
        }
        let blocks_per_checksum = u64::from(header.blocks_per_checksum).max(1);
        let needed = data_start
            .saturating_add(stored_blocks.saturating_mul(bs))
            .saturating_add(
                stored_blocks
                    .div_ceil(blocks_per_checksum)
                    .saturating_mul(checksum_width),
            );
        Ok(PartcloneSource {
            file,
            name: name.to_string(),
            header,
            bitmap,
            all_stored,
            rank,
            stored_blocks,
            data_start,
            checksum_width,
            blocks_per_checksum,
            truncated_at: (image_len < needed).then_some(image_len),
        })
    }

    /// The image's header.
    pub fn header(&self) -> &PartcloneHeader {
        &self.header
    }

    /// Blocks the image stores (set bits in its bitmap).
    pub fn stored_blocks(&self) -> u64 {
        self.stored_blocks
    }

    /// Where the image ended at open, if it ends before its last block's
    /// checksum does (truncation): reads of what is missing fail.
    pub fn truncated_at(&self) -> Option<u64> {
        self.truncated_at
    }

    fn is_stored(&self, b: u64) -> bool {
        self.all_stored || self.bitmap[(b / 8) as usize] & (1 << (b % 8)) != 0
    }

    /// Stored blocks before block `b` (`b` < total blocks).
    fn rank(&self, b: u64) -> u64 {
        if self.all_stored {
            return b;
        }
        let k = (b / RANK_STEP) as usize;
        let from = k * (RANK_STEP / 8) as usize;
        let to = (b / 8) as usize;
        let mut r = self.rank[k];
        let mut words = self.bitmap[from..to].chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            r += u64::from(u64::from_le_bytes(a).count_ones());
        }
        r += words
            .remainder()
            .iter()
            .map(|x| u64::from(x.count_ones()))
            .sum::<u64>();
        if !b.is_multiple_of(8) {
            r += u64::from((self.bitmap[to] & ((1u8 << (b % 8)) - 1)).count_ones());
        }
        r
    }

    /// Where the data of the stored block with `r` stored blocks before it
    /// starts in the image.
    fn data_offset(&self, r: u64) -> u64 {
        let bs = u64::from(self.header.block_size);
        self.data_start
            .saturating_add(r.saturating_mul(bs))
            .saturating_add((r / self.blocks_per_checksum).saturating_mul(self.checksum_width))
    }
}

/// Format 0001: the width of the stored CRCs, found as the sequential
/// reader finds it (4 unless the image is complete enough to tell).
fn v1_width(file: &File, data_start: u64, bs: u64, image_len: u64) -> usize {
    let look = bs + 8;
    let after = data_start.saturating_add(bs + 4);
    if image_len < after.saturating_add(look) {
        return 4;
    }
    let mut first = [0u8; 1];
    let mut buf = vec![0u8; look as usize];
    if file.read_exact_at(&mut first, data_start).is_err()
        || file.read_exact_at(&mut buf, after).is_err()
    {
        return 4;
    }
    let mut fill = Vec::new();
    let state = crc32_v1(0xFFFF_FFFF, first[0], bs as usize, &mut fill);
    v1_checksum_width(state, bs as usize, &buf, &mut fill)
}

impl Source for PartcloneSource {
    fn size(&self) -> u64 {
        self.header.device_size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.header.device_size)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let bs = u64::from(self.header.block_size);
        let total = self.header.total_blocks;
        let bpc = self.blocks_per_checksum;
        // Stored blocks before the block at `at`, once a stored one is met.
        let mut rank = None;
        let mut at = offset;
        while at < end {
            let out = (at - offset) as usize;
            let b = at / bs;
            if b >= total {
                // After the last block (a device larger than the blocks).
                buf[out..].fill(0);
                break;
            }
            let last = ((end - 1) / bs).min(total - 1);
            let stored = self.is_stored(b);
            let mut m = 1;
            if stored {
                let r = *rank.get_or_insert_with(|| self.rank(b));
                // Blocks in a row up to the next checksum lie together.
                let group = if self.checksum_width > 0 {
                    bpc - r % bpc
                } else {
                    u64::MAX
                };
                while b + m <= last && m < group && self.is_stored(b + m) {
                    m += 1;
                }
                let to = ((b + m) * bs).min(end);
                let start = self.data_offset(r);
                let dst = &mut buf[out..out + (to - at) as usize];
                let inner = at - b * bs;
                if let Err(e) =
                    read_block_at(&self.file, dst, start + inner, FORMAT, b, b * bs, start)
                {
                    if m == 1 {
                        return Err(e);
                    }
                    // Again a block at a time, to name the block that fails.
                    for k in 0..m {
                        let v = ((b + k) * bs).max(at);
                        let w = ((b + k + 1) * bs).min(end);
                        let s = start + k * bs;
                        let d = &mut buf[(v - offset) as usize..(w - offset) as usize];
                        read_block_at(
                            &self.file,
                            d,
                            s + (v - (b + k) * bs),
                            FORMAT,
                            b + k,
                            (b + k) * bs,
                            s,
                        )?;
                    }
                    return Err(e);
                }
                rank = Some(r + m);
                at = to;
            } else {
                while b + m <= last && !self.is_stored(b + m) {
                    m += 1;
                }
                let to = ((b + m) * bs).min(end);
                buf[out..out + (to - at) as usize].fill(0);
                at = to;
            }
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foreign::partclone::{ChecksumKind, HEADER_V2_LEN, tests};
    use std::io::Write;

    /// The sequential reader's test header, the device 7 bytes larger
    /// than the blocks.
    fn header(total: u64, used: u64, bs: u32, kind: ChecksumKind, bpc: u32) -> PartcloneHeader {
        let mut h = tests::header(total, used, bs, kind, bpc);
        h.device_size += 7;
        h
    }

    fn open(img: &[u8]) -> Result<PartcloneSource> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(img).unwrap();
        PartcloneSource::open(f, "t")
    }

    fn volume(h: &PartcloneHeader, blocks: &[u64]) -> Vec<u8> {
        let bs = h.block_size as usize;
        let mut v = vec![0u8; h.device_size as usize];
        for &b in blocks {
            v[b as usize * bs..][..bs].fill(b as u8);
        }
        v
    }

    #[test]
    fn every_byte_range_of_a_small_image() {
        let blocks = [0, 1, 2, 5, 6, 9, 10, 11, 12, 20];
        for kind in [
            ChecksumKind::None,
            ChecksumKind::Crc32,
            ChecksumKind::Xxh128,
        ] {
            let h = header(21, blocks.len() as u64, 16, kind, 3);
            let s = open(&tests::build(&h, &blocks)).unwrap();
            let want = volume(&h, &blocks);
            assert_eq!(s.size(), want.len() as u64);
            for a in 0..want.len() {
                for b in a..=want.len() {
                    let mut v = vec![0xEE; b - a];
                    s.read_exact_at(&mut v, a as u64).unwrap();
                    assert_eq!(v, want[a..b], "{kind:?} {a}..{b}");
                }
            }
            let mut v = [0u8; 2];
            let err = s.read_exact_at(&mut v, want.len() as u64 - 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn rank_across_samples() {
        // Every third block of 10,000 stored, no checksums.
        let blocks: Vec<u64> = (0..10_000).filter(|b| b % 3 == 0).collect();
        let h = header(10_000, blocks.len() as u64, 1, ChecksumKind::None, 0);
        let s = open(&tests::build(&h, &blocks)).unwrap();
        for b in [0, 1, 7, 8, 4095, 4096, 4097, 8191, 8192, 9999] {
            assert_eq!(s.rank(b), b.div_ceil(3), "block {b}");
        }
        let want = volume(&h, &blocks);
        let mut v = vec![0u8; want.len()];
        s.read_exact_at(&mut v, 0).unwrap();
        assert_eq!(v, want);
    }

    #[test]
    fn without_a_bitmap_every_block_is_stored() {
        let mut h = header(9, 9, 16, ChecksumKind::Xxh64, 4);
        h.bitmap = BitmapMode::None;
        let mut img = h.to_bytes_v2();
        for b in 0..9u8 {
            img.extend([b; 16]);
            if b % 4 == 3 || b == 8 {
                img.extend([0xCC; 8]);
            }
        }
        let s = open(&img).unwrap();
        let blocks: Vec<u64> = (0..9).collect();
        let want = volume(&h, &blocks);
        let mut v = vec![0u8; want.len()];
        s.read_exact_at(&mut v, 0).unwrap();
        assert_eq!(v, want);
        assert_eq!(s.truncated_at(), None);
    }

    #[test]
    fn truncated_data_names_the_block() {
        let blocks = [0, 1, 2, 5, 6];
        let h = header(8, 5, 16, ChecksumKind::Crc32, 2);
        let img = tests::build(&h, &blocks);
        // The header, a 1-byte bitmap and its CRC.
        let data = HEADER_V2_LEN + 1 + 4;
        // Cut 5 bytes into block 5 (after blocks 0, 1, a CRC and block 2).
        let cut = data + 2 * 16 + 4 + 16 + 5;
        let s = open(&img[..cut]).unwrap();
        assert_eq!(s.truncated_at(), Some(cut as u64));
        let mut v = vec![0u8; 5 * 16 + 5];
        s.read_exact_at(&mut v, 0).unwrap();
        assert_eq!(v, volume(&h, &blocks)[..85]);
        let mut v = vec![0u8; 7 * 16];
        let err = s.read_exact_at(&mut v, 0).unwrap_err().to_string();
        let want = format!(
            "ends at byte {cut}, inside block 5 (volume byte 80), whose data starts at byte {}",
            cut - 5
        );
        assert!(err.contains(&want), "{err}");
    }

    #[test]
    fn a_bad_header_is_the_readers_error() {
        let h = header(8, 1, 16, ChecksumKind::Crc32, 2);
        let mut img = tests::build(&h, &[3]);
        img[60] ^= 1;
        let err = open(&img).err().unwrap().to_string();
        assert!(
            err.contains("partclone image header checksum mismatch at byte 106"),
            "{err}"
        );
    }
}
