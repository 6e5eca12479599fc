//! MFT file records: the update sequence (fixups) that protects them
//! against torn writes, the header, and the attributes inside.

use crate::bytes::{u16le, u32le, u64le};

/// Stride of the update sequence: NTFS protects every 512 bytes, whatever
/// the sector size.
pub const FIXUP_STRIDE: usize = 512;
/// Record header flag: the record is in use.
pub const FLAG_IN_USE: u16 = 0x0001;
/// Attribute type of `$ATTRIBUTE_LIST`.
pub const AT_ATTRIBUTE_LIST: u32 = 0x20;
/// Attribute type of `$DATA`.
pub const AT_DATA: u32 = 0x80;
/// The attribute list end marker.
const AT_END: u32 = 0xFFFF_FFFF;

/// What the signature of a record says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Never written (all zero signature): not in use.
    Blank,
    /// A `FILE` record.
    File,
}

/// Applies the update sequence of the record in `buf` in place after
/// checking it. Returns what the signature says, or the problem.
pub fn fixup(buf: &mut [u8]) -> Result<Kind, String> {
    fixup_signed(buf, b"FILE")
}

/// [`fixup`] for any structure with an update sequence (`FILE` records,
/// `INDX` blocks) whose signature is `magic`. Every protected stride is
/// checked before any is changed, so a torn structure is left as it was.
pub fn fixup_signed(buf: &mut [u8], magic: &[u8; 4]) -> Result<Kind, String> {
    match &buf[0..4] {
        sig if sig == magic => {}
        [0, 0, 0, 0] => return Ok(Kind::Blank),
        b"BAAD" => return Err("marked BAAD (a multi-sector transfer failed)".into()),
        sig => return Err(format!("bad signature {:?}", String::from_utf8_lossy(sig))),
    }
    let usa_ofs = usize::from(u16le(buf, 4));
    let usa_count = usize::from(u16le(buf, 6));
    let strides = buf.len() / FIXUP_STRIDE;
    if usa_count != strides + 1 || !usa_ofs.is_multiple_of(2) || usa_ofs + 2 * usa_count > buf.len()
    {
        return Err(format!(
            "update sequence array at offset {usa_ofs} with {usa_count} entries does not fit a {}-byte record",
            buf.len()
        ));
    }
    let usn = [buf[usa_ofs], buf[usa_ofs + 1]];
    if let Some(end) = (1..usa_count)
        .map(|i| i * FIXUP_STRIDE)
        .find(|&end| buf[end - 2..end] != usn)
    {
        return Err(format!(
            "update sequence mismatch at byte {} of the record (a torn write)",
            end - 2
        ));
    }
    for i in 1..usa_count {
        let end = i * FIXUP_STRIDE;
        let e = usa_ofs + 2 * i;
        let fix = [buf[e], buf[e + 1]];
        buf[end - 2..end].copy_from_slice(&fix);
    }
    Ok(Kind::File)
}

/// A record whose update sequence has been applied.
pub struct Record<'a> {
    buf: &'a [u8],
}

/// One attribute of a record.
#[derive(Debug)]
pub struct Attribute<'a> {
    /// Attribute type (`$DATA` is 0x80).
    pub ty: u32,
    /// The attribute's bytes, header included.
    bytes: &'a [u8],
    /// Offset of the attribute in the record.
    pub offset: usize,
}

impl<'a> Record<'a> {
    /// A record from a fixed-up buffer.
    pub fn new(buf: &'a [u8]) -> Self {
        Record { buf }
    }

    /// Header flags (in use, directory).
    pub fn flags(&self) -> u16 {
        u16le(self.buf, 0x16)
    }

    /// Whether the record is in use.
    pub fn in_use(&self) -> bool {
        self.flags() & FLAG_IN_USE != 0
    }

    /// The base record of an extension record, 0 for a base record.
    pub fn base_record(&self) -> u64 {
        u64le(self.buf, 0x20) & 0x0000_FFFF_FFFF_FFFF
    }

    /// The attributes, each checked to lie inside the used part of the
    /// record.
    pub fn attributes(&self) -> Result<Vec<Attribute<'a>>, String> {
        let buf = self.buf;
        let used = (u32le(buf, 0x18) as usize).min(buf.len());
        let mut off = usize::from(u16le(buf, 0x14));
        let mut out = Vec::new();
        loop {
            if off + 4 > used {
                return Err(format!(
                    "attribute at offset {off} lies past the used size {used}"
                ));
            }
            let ty = u32le(buf, off);
            if ty == AT_END {
                return Ok(out);
            }
            if off + 16 > used {
                return Err(format!("attribute at offset {off} is truncated"));
            }
            let len = u32le(buf, off + 4) as usize;
            if len < 16 || !len.is_multiple_of(8) || off + len > used {
                return Err(format!(
                    "attribute at offset {off} has an invalid length {len}"
                ));
            }
            let a = Attribute {
                ty,
                bytes: &buf[off..off + len],
                offset: off,
            };
            a.check()
                .map_err(|p| format!("attribute at offset {off}: {p}"))?;
            out.push(a);
            off += len;
        }
    }
}

impl<'a> Attribute<'a> {
    fn check(&self) -> Result<(), &'static str> {
        let b = self.bytes;
        if self.non_resident() && b.len() < 0x40 {
            return Err("a non-resident header shorter than 64 bytes");
        }
        let name_end = usize::from(u16le(b, 0x0A)) + 2 * usize::from(b[9]);
        if name_end > b.len() {
            return Err("its name runs past its end");
        }
        if self.non_resident() {
            if usize::from(u16le(b, 0x20)) >= b.len() {
                return Err("its mapping pairs start past its end");
            }
            if self.lowest_vcn() > self.highest_vcn().wrapping_add(1) {
                return Err("its lowest VCN is above its highest");
            }
        } else {
            let (o, l) = (usize::from(u16le(b, 0x14)), u32le(b, 0x10) as usize);
            if b.len() < 0x18 || o + l > b.len() {
                return Err("its resident value runs past its end");
            }
        }
        Ok(())
    }

    /// Whether the value lives in clusters outside the record.
    pub fn non_resident(&self) -> bool {
        self.bytes[8] != 0
    }

    /// The name as UTF-16 code units (empty for the unnamed stream).
    pub fn name(&self) -> impl Iterator<Item = u16> + '_ {
        let start = usize::from(u16le(self.bytes, 0x0A));
        let len = usize::from(self.bytes[9]);
        self.bytes[start..start + 2 * len]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    }

    /// Whether the name equals `s`.
    pub fn name_is(&self, s: &str) -> bool {
        self.name().eq(s.encode_utf16())
    }

    /// The resident value (empty for a non-resident attribute).
    pub fn value(&self) -> &'a [u8] {
        if self.non_resident() {
            return &[];
        }
        let o = usize::from(u16le(self.bytes, 0x14));
        &self.bytes[o..o + u32le(self.bytes, 0x10) as usize]
    }

    /// First virtual cluster this piece of a non-resident value maps.
    pub fn lowest_vcn(&self) -> u64 {
        u64le(self.bytes, 0x10)
    }

    /// Last virtual cluster this piece maps.
    pub fn highest_vcn(&self) -> u64 {
        u64le(self.bytes, 0x18)
    }

    /// The mapping pairs of a non-resident attribute.
    pub fn mapping_pairs(&self) -> &'a [u8] {
        &self.bytes[usize::from(u16le(self.bytes, 0x20))..]
    }

    /// Offset of the mapping pairs in the attribute.
    pub fn mapping_pairs_offset(&self) -> usize {
        usize::from(u16le(self.bytes, 0x20))
    }

    /// Size of a non-resident value in bytes (`data_size`).
    pub fn data_size(&self) -> u64 {
        u64le(self.bytes, 0x30)
    }

    /// Bytes of a non-resident value that were ever written
    /// (`initialized_size`).
    pub fn initialized_size(&self) -> u64 {
        u64le(self.bytes, 0x38)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 1024-byte record holding `attrs` (each a full attribute), with a
    /// valid update sequence, as mkntfs lays it out.
    pub fn record(attrs: &[Vec<u8>], flags: u16) -> Vec<u8> {
        let mut r = vec![0u8; 1024];
        r[0..4].copy_from_slice(b"FILE");
        r[4..6].copy_from_slice(&0x30u16.to_le_bytes());
        r[6..8].copy_from_slice(&3u16.to_le_bytes());
        r[0x14..0x16].copy_from_slice(&0x38u16.to_le_bytes());
        r[0x16..0x18].copy_from_slice(&flags.to_le_bytes());
        let mut off = 0x38;
        for a in attrs {
            r[off..off + a.len()].copy_from_slice(a);
            off += a.len();
        }
        r[off..off + 4].copy_from_slice(&AT_END.to_le_bytes());
        r[0x18..0x1C].copy_from_slice(&(off as u32 + 8).to_le_bytes());
        r[0x1C..0x20].copy_from_slice(&1024u32.to_le_bytes());
        // Update sequence number 7: save the protected bytes, stamp them.
        r[0x30..0x32].copy_from_slice(&7u16.to_le_bytes());
        for i in 1..3 {
            let end = i * 512;
            let saved = [r[end - 2], r[end - 1]];
            r[0x30 + 2 * i..0x32 + 2 * i].copy_from_slice(&saved);
            r[end - 2..end].copy_from_slice(&7u16.to_le_bytes());
        }
        r
    }

    /// A non-resident attribute of type `ty` named `name` with the given
    /// mapping pairs.
    pub fn non_resident(ty: u32, name: &str, pairs: &[u8]) -> Vec<u8> {
        let name: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mp = 0x40 + name.len();
        let len = (mp + pairs.len()).div_ceil(8) * 8;
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&ty.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[8] = 1;
        a[9] = (name.len() / 2) as u8;
        a[0x0A..0x0C].copy_from_slice(&0x40u16.to_le_bytes());
        a[0x40..mp].copy_from_slice(&name);
        a[0x20..0x22].copy_from_slice(&(mp as u16).to_le_bytes());
        a[mp..mp + pairs.len()].copy_from_slice(pairs);
        a
    }

    #[test]
    fn fixups_restore_the_protected_bytes() {
        let mut r = record(&[non_resident(AT_DATA, "", &[0x11, 2, 5, 0])], 1);
        assert_eq!(fixup(&mut r), Ok(Kind::File));
        let rec = Record::new(&r);
        assert!(rec.in_use());
        let attrs = rec.attributes().unwrap();
        assert_eq!(attrs.len(), 1);
        assert!(attrs[0].non_resident() && attrs[0].name_is(""));
        assert_eq!(attrs[0].mapping_pairs()[..3], [0x11, 2, 5]);
    }

    #[test]
    fn a_torn_record_is_named() {
        let mut r = record(&[], 1);
        r[1022] ^= 1;
        let torn = r.clone();
        assert_eq!(
            fixup(&mut r),
            Err("update sequence mismatch at byte 1022 of the record (a torn write)".into())
        );
        assert_eq!(r, torn, "a torn record is left as it was");
        let mut r = record(&[], 1);
        r[0..4].copy_from_slice(b"BAAD");
        assert!(fixup(&mut r).unwrap_err().contains("BAAD"));
        let mut z = vec![0u8; 1024];
        assert_eq!(fixup(&mut z), Ok(Kind::Blank));
    }

    #[test]
    fn attribute_lengths_are_checked() {
        let mut r = record(&[non_resident(AT_DATA, "$Bad", &[0])], 1);
        fixup(&mut r).unwrap();
        assert!(Record::new(&r).attributes().unwrap()[0].name_is("$Bad"));
        r[0x38 + 4] = 0x18; // shorter than the non-resident header
        assert_eq!(
            Record::new(&r).attributes().err().unwrap(),
            "attribute at offset 56: a non-resident header shorter than 64 bytes"
        );
        r[0x38 + 4] = 0xF8;
        r[0x38 + 5] = 0x03; // longer than the record
        assert!(
            Record::new(&r)
                .attributes()
                .unwrap_err()
                .contains("invalid length")
        );
    }
}
