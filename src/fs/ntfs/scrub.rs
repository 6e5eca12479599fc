//! Metadata-only copies of NTFS: what ntfsclone --metadata wipes, wiped
//! here as the MFT and directory index blocks stream through the copier.
//!
//! In MFT records from 12 on (user files): the slack after the used part,
//! the body of records not in use, and resident `$DATA` values (small
//! files live inside their record). In every record and in `$I30` index
//! entries: the four timestamps, set to 1970-01-01 (NTFS time
//! 116444736000000000) unless kept. In index blocks: the slack after the
//! entries in use. The update sequence is applied again after wiping, so
//! every record and block stays valid.

use super::mft::Extents;
use super::record::{self, AT_DATA, FIXUP_STRIDE, Kind, Record};
use crate::bytes::{u16le, u32le};
use crate::fs::Scrub;
use crate::source::Source;

/// 1970-01-01 in NTFS time (100 ns units since 1601), what ntfsclone
/// writes.
pub const EPOCH_1970: u64 = 116_444_736_000_000_000;
/// Records below this are system files, kept but for timestamps.
pub const FIRST_USER_RECORD: u64 = 12;
/// Attribute types with timestamps or index entries.
const AT_STANDARD_INFORMATION: u32 = 0x10;
const AT_FILE_NAME: u32 = 0x30;
const AT_INDEX_ROOT: u32 = 0x90;
/// Index entry flag: the last entry of a node.
const INDEX_ENTRY_END: u16 = 0x02;

/// Which structure a stretch of the volume holds.
#[derive(Clone, Copy, Debug)]
enum Target {
    Mft,
    /// `$MFTMirr`: copies of records 0-3, wiped like them.
    Mirror,
    Index(usize),
}

/// A run of a scrubbed value on the volume.
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// Absolute byte range.
    start: u64,
    end: u64,
    /// Byte position in the value where the run starts.
    vstart: u64,
    target: Target,
}

/// Wipes MFT records and `$I30` index blocks in the chunks it is given.
pub struct NtfsScrub {
    mft: Extents,
    mirror: Extents,
    records: u64,
    record_size: u64,
    indexes: Vec<Extents>,
    index_block: u64,
    pieces: Vec<Piece>,
    keep_times: bool,
}

impl NtfsScrub {
    /// A scrubber for the MFT at `mft` (`records` records of
    /// `record_size`), its mirror and the `$I30` index allocations
    /// `indexes`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mft: Extents,
        mirror: Extents,
        records: u64,
        record_size: u32,
        indexes: Vec<Extents>,
        index_block: u32,
        cluster_size: u32,
        keep_times: bool,
    ) -> Self {
        let cs = u64::from(cluster_size);
        let mut pieces = Vec::new();
        let mut add = |e: &Extents, target| {
            for r in e.runs() {
                if let Some(lcn) = r.lcn {
                    pieces.push(Piece {
                        start: lcn * cs,
                        end: (lcn + r.len) * cs,
                        vstart: r.vcn * cs,
                        target,
                    });
                }
            }
        };
        add(&mft, Target::Mft);
        add(&mirror, Target::Mirror);
        for (i, e) in indexes.iter().enumerate() {
            add(e, Target::Index(i));
        }
        pieces.sort_by_key(|p| p.start);
        NtfsScrub {
            mft,
            mirror,
            records,
            record_size: u64::from(record_size),
            indexes,
            index_block: u64::from(index_block),
            pieces,
            keep_times,
        }
    }

    /// Rewrites one structure (`pos` in its value) in `buf`.
    fn rewrite(&self, target: Target, pos: u64, buf: &mut [u8]) {
        match target {
            // Past the initialized size: never written as records, and
            // what is there (often an old file's data) reads as zeros.
            Target::Mft if pos / self.record_size >= self.records => buf.fill(0),
            Target::Mft | Target::Mirror => {
                scrub_record(buf, pos / self.record_size, self.keep_times);
            }
            Target::Index(_) => scrub_index_block(buf, self.keep_times),
        }
    }
}

impl Scrub for NtfsScrub {
    fn scrub(&self, src: &dyn Source, offset: u64, data: &mut [u8]) {
        let end = offset + data.len() as u64;
        let first = self.pieces.partition_point(|p| p.end <= offset);
        for p in self.pieces[first..].iter().take_while(|p| p.start < end) {
            let (extents, size) = match p.target {
                Target::Mft => (&self.mft, self.record_size),
                Target::Mirror => (&self.mirror, self.record_size),
                Target::Index(i) => (&self.indexes[i], self.index_block),
            };
            let a = offset.max(p.start);
            let b = end.min(p.end);
            let va = p.vstart + (a - p.start);
            let vb = va + (b - a);
            for k in va / size..vb.div_ceil(size) {
                let pos = k * size;

                let phys = p.start as i128 + pos as i128 - p.vstart as i128;
                let inside = pos >= p.vstart
                    && pos + size <= p.vstart + (p.end - p.start)
                    && phys >= offset as i128
                    && phys + size as i128 <= end as i128;
                if inside {
                    let at = (phys - offset as i128) as usize;
                    self.rewrite(p.target, pos, &mut data[at..at + size as usize]);
                    continue;
                }
                // Cut by the chunk or by a run boundary: rewrite a whole
                // copy and take back the bytes inside `data`.
                let mut whole = vec![0u8; size as usize];
                if !matches!(extents.read(src, pos, &mut whole, false, "index"), Ok(h) if h.is_empty())
                {
                    continue;
                }
                self.rewrite(p.target, pos, &mut whole);
                let mut i = 0u64;
                while i < size {
                    let Some((at, left)) = extents.locate(pos + i) else {
                        break;
                    };
                    let n = left.min(size - i);
                    let (s, e) = (at.max(offset), (at + n).min(end));
                    if s < e {
                        let src_off = (i + (s - at)) as usize;
                        data[(s - offset) as usize..(e - offset) as usize]
                            .copy_from_slice(&whole[src_off..src_off + (e - s) as usize]);
                    }
                    i += n;
                }
            }
        }
    }
}

/// Stamps the update sequence number at the end of every 512 bytes again,
/// saving what was there, after the record was changed.
fn refix(buf: &mut [u8]) {
    let usa_ofs = usize::from(u16le(buf, 4));
    let usa_count = usize::from(u16le(buf, 6));
    let usn = [buf[usa_ofs], buf[usa_ofs + 1]];
    for i in 1..usa_count {
        let end = i * FIXUP_STRIDE;
        let e = usa_ofs + 2 * i;
        let saved = [buf[end - 2], buf[end - 1]];
        buf[e..e + 2].copy_from_slice(&saved);
        buf[end - 2..end].copy_from_slice(&usn);
    }
}

/// Sets `count` timestamps at `at` to 1970.
fn wipe_times(buf: &mut [u8], at: usize, count: usize) {
    for i in 0..count {
        let o = at + 8 * i;
        if let Some(t) = buf.get_mut(o..o + 8) {
            t.copy_from_slice(&EPOCH_1970.to_le_bytes());
        }
    }
}

/// Wipes the timestamps of the `$FILE_NAME` keys of the index entries in
/// `buf[start..end]`.
fn wipe_entry_times(buf: &mut [u8], start: usize, end: usize) {
    let mut pos = start;
    while pos + 16 <= end {
        let len = usize::from(u16le(buf, pos + 8));
        let key_len = usize::from(u16le(buf, pos + 10));
        let flags = u16le(buf, pos + 12);
        if flags & INDEX_ENTRY_END != 0 || len < 16 || pos + len > end {
            break;
        }
        if key_len >= 0x42 && pos + 16 + key_len <= end {
            wipe_times(buf, pos + 16 + 8, 4);
        }
        pos += len;
    }
}

/// Wipes an MFT record (number `n`) in place; a record whose update
/// sequence does not check out is left as it is.
pub fn scrub_record(buf: &mut [u8], n: u64, keep_times: bool) {
    match record::fixup(buf) {
        Ok(Kind::File) => {}
        // Never written as a record: whatever is there is not metadata.
        Ok(Kind::Blank) => {
            buf.fill(0);
            return;
        }
        Err(_) => return,
    }
    let attrs_at = usize::from(u16le(buf, 0x14));
    let used = (u32le(buf, 0x18) as usize).min(buf.len());
    let rec = Record::new(buf);
    let base = match rec.base_record() {
        0 => n,
        b => b,
    };
    let user = base >= FIRST_USER_RECORD;
    if !rec.in_use() {
        if user && attrs_at + 8 <= buf.len() {
            buf[attrs_at..].fill(0);
            buf[attrs_at..attrs_at + 4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
            buf[0x18..0x1C].copy_from_slice(&(attrs_at as u32 + 8).to_le_bytes());
        }
        refix(buf);
        return;
    }
    // (offset, length) of what to wipe, found first, then wiped.
    let mut zero: Vec<(usize, usize)> = Vec::new();
    let mut times: Vec<(usize, usize)> = Vec::new();
    let mut entries: Vec<(usize, usize)> = Vec::new();
    if let Ok(attrs) = rec.attributes() {
        for a in attrs.iter().filter(|a| !a.non_resident()) {
            let value = a.value();
            // The value's offset in the record.
            let v = a.offset + usize::from(u16le(buf, a.offset + 0x14));
            match a.ty {
                AT_DATA if user => zero.push((v, value.len())),
                AT_STANDARD_INFORMATION if value.len() >= 32 => times.push((v, 4)),
                AT_FILE_NAME if value.len() >= 0x42 => times.push((v + 8, 4)),
                AT_INDEX_ROOT if a.name_is("$I30") && value.len() >= 0x20 => {
                    // The index header follows the 16-byte root header.
                    let h = v + 0x10;
                    let first = h + u32le(buf, h) as usize;
                    let in_use = h + u32le(buf, h + 4) as usize;
                    entries.push((first, in_use.min(v + value.len())));
                }
                _ => {}
            }
        }
    }
    if user && used < buf.len() {
        zero.push((used, buf.len() - used));
    }
    for (at, len) in zero {
        buf[at..at + len].fill(0);
    }
    if !keep_times {
        for (at, count) in times {
            wipe_times(buf, at, count);
        }
        for (s, e) in entries {
            wipe_entry_times(buf, s, e);
        }
    }
    refix(buf);
}

/// Wipes an `INDX` block in place: the slack after its entries and, unless
/// kept, the timestamps of its entries.
pub fn scrub_index_block(buf: &mut [u8], keep_times: bool) {
    if buf.len() < 0x28 || record::fixup_signed(buf, b"INDX") != Ok(Kind::File) {
        return;
    }
    let h = 0x18;
    let first = h + u32le(buf, h) as usize;
    let in_use = (h + u32le(buf, h + 4) as usize).min(buf.len());
    if first <= in_use {
        buf[in_use..].fill(0);
        if !keep_times {
            wipe_entry_times(buf, first, in_use);
        }
    }
    refix(buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ntfs::record::tests::record;

    fn resident(ty: u32, name: &str, value: &[u8]) -> Vec<u8> {
        let name: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let vo = (0x18 + name.len()).div_ceil(8) * 8;
        let len = (vo + value.len()).div_ceil(8) * 8;
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&ty.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[9] = (name.len() / 2) as u8;
        a[0x0A..0x0C].copy_from_slice(&0x18u16.to_le_bytes());
        a[0x10..0x14].copy_from_slice(&(value.len() as u32).to_le_bytes());
        a[0x14..0x16].copy_from_slice(&(vo as u16).to_le_bytes());
        a[0x18..0x18 + name.len()].copy_from_slice(&name);
        a[vo..vo + value.len()].copy_from_slice(value);
        a
    }

    #[test]
    fn a_user_record_loses_its_data_slack_and_times() {
        let si = vec![0x11u8; 48];
        let mut fname = vec![0x22u8; 0x42 + 8];
        fname[0x40] = 4; // name length
        let secret = b"SECRET-CONTENTS-OF-A-SMALL-FILE!".to_vec();
        let mut r = record(
            &[
                resident(AT_STANDARD_INFORMATION, "", &si),
                resident(AT_FILE_NAME, "", &fname),
                resident(AT_DATA, "", &secret),
            ],
            1,
        );
        // Stale bytes after the end marker.
        let used = u32le(&r, 0x18) as usize;
        r[used + 4..used + 20].copy_from_slice(b"OLD-DELETED-NAME");
        scrub_record(&mut r, 40, false);
        assert!(!r.windows(8).any(|w| w == b"SECRET-C"));
        assert!(!r.windows(8).any(|w| w == b"OLD-DELE"));
        // Still a valid record with the same attributes and sizes.
        let mut check = r.clone();
        assert_eq!(record::fixup(&mut check), Ok(Kind::File));
        let rec = Record::new(&check);
        let attrs = rec.attributes().unwrap();
        assert_eq!(attrs[2].value().len(), secret.len());
        assert!(attrs[2].value().iter().all(|&b| b == 0));
        assert_eq!(
            u64::from_le_bytes(attrs[0].value()[0..8].try_into().unwrap()),
            EPOCH_1970
        );
        assert_eq!(&attrs[0].value()[32..], &si[32..]);
        assert_eq!(
            u64::from_le_bytes(attrs[1].value()[8..16].try_into().unwrap()),
            EPOCH_1970
        );
        assert_eq!(attrs[1].value()[0x40], 4);
    }

    #[test]
    fn system_records_keep_their_data_and_times_can_be_kept() {
        let data = b"system file data".to_vec();
        let si = vec![0x11u8; 48];
        let mut r = record(
            &[
                resident(AT_STANDARD_INFORMATION, "", &si),
                resident(AT_DATA, "", &data),
            ],
            1,
        );
        let before = r.clone();
        scrub_record(&mut r, 3, true);
        assert_eq!(r, before);
        scrub_record(&mut r, 3, false);
        let mut check = r.clone();
        record::fixup(&mut check).unwrap();
        assert!(check.windows(data.len()).any(|w| w == data));
    }

    #[test]
    fn a_record_not_in_use_is_emptied() {
        let mut r = record(&[resident(AT_DATA, "", b"deleted file contents...")], 0);
        scrub_record(&mut r, 100, false);
        assert!(!r.windows(8).any(|w| w == b"deleted "));
        let mut check = r.clone();
        assert_eq!(record::fixup(&mut check), Ok(Kind::File));
        assert!(Record::new(&check).attributes().unwrap().is_empty());
    }
}
