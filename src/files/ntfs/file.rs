//! The volume's geometry, MFT records read by number, and a file's
//! attributes gathered from its base record and the extension records its
//! `$ATTRIBUTE_LIST` names.
//!
//! Records are decoded with fsimg's own NTFS parsing (fixups, attribute
//! headers, mapping pairs in `crate::fs::ntfs`), so every length and
//! offset read from disk is checked before use.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::files::FileError;
use crate::fs::ntfs::record::{AT_ATTRIBUTE_LIST, Kind as RecordKind, Record, fixup};
use crate::fs::ntfs::runs::{Run, Runs};
use crate::source::Source;

/// Attribute type of `$STANDARD_INFORMATION`.
pub const AT_STANDARD_INFORMATION: u32 = 0x10;
/// Attribute type of `$FILE_NAME`.
pub const AT_FILE_NAME: u32 = 0x30;
/// Attribute type of `$INDEX_ROOT`.
pub const AT_INDEX_ROOT: u32 = 0x90;
/// Attribute type of `$INDEX_ALLOCATION`.
pub const AT_INDEX_ALLOCATION: u32 = 0xA0;
/// Attribute type of `$BITMAP`.
pub const AT_BITMAP: u32 = 0xB0;
/// Attribute type of `$REPARSE_POINT`.
pub const AT_REPARSE_POINT: u32 = 0xC0;
/// Record header flag: the record is a directory (has a `$I30` index).
const FLAG_DIRECTORY: u16 = 0x0002;
/// Largest attribute list read (real ones are a few hundred KiB at most).
const MAX_ATTRIBUTE_LIST: u64 = 16 << 20;
/// The root directory's record number.
pub const ROOT_RECORD: u64 = 5;

/// The `Corrupt` error for MFT record `record` reached through `path`.
pub fn corrupt(path: &str, record: u64, detail: impl Into<String>) -> Error {
    FileError::Corrupt {
        path: path.to_string(),
        what: format!("MFT record {record}"),
        detail: detail.into(),
    }
    .into()
}

/// A little-endian `u16` at `at`, if `b` holds it.
pub fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// A little-endian `u32` at `at`, if `b` holds it.
pub fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A little-endian `u64` at `at`, if `b` holds it.
pub fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// UTF-16 code units from little-endian bytes.
pub fn utf16(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The volume: its source, cluster geometry and where the MFT is.
pub struct Volume {
    /// The partition.
    pub src: Arc<dyn Source>,
    /// Bytes per cluster.
    pub cluster_size: u64,
    /// Clusters in the volume; every run must lie below.
    pub total_clusters: u64,
    /// Bytes per MFT record.
    pub record_size: u32,
    /// `$MFT`'s runs (checked to lie inside the volume).
    pub mft_runs: Vec<Run>,
    /// Records the MFT holds.
    pub mft_records: u64,
}

impl Volume {
    /// Reads `buf.len()` bytes of a non-resident value mapped by `runs`
    /// from byte `pos`, one source read per run. Sparse runs read as zeros
    /// when `zero_sparse`; otherwise they, like bytes no run maps, are an
    /// error made by `bad`.
    pub fn read_mapped(
        &self,
        runs: &[Run],
        pos: u64,
        buf: &mut [u8],
        zero_sparse: bool,
        bad: &dyn Fn(String) -> Error,
    ) -> Result<()> {
        let cs = self.cluster_size;
        let mut done = 0usize;
        while done < buf.len() {
            let p = pos
                .checked_add(done as u64)
                .ok_or_else(|| bad(format!("byte offset {pos} + {done} overflows")))?;
            let vcn = p / cs;
            let i = runs.partition_point(|r| r.vcn.saturating_add(r.len) <= vcn);
            let Some(r) = runs.get(i).filter(|r| r.vcn <= vcn) else {
                return Err(bad(format!("no data run maps its byte {p}")));
            };
            let run_end = r.vcn.saturating_add(r.len).saturating_mul(cs);
            let n = (run_end - p).min((buf.len() - done) as u64) as usize;
            let piece = &mut buf[done..done + n];
            match r.lcn {
                None if zero_sparse => piece.fill(0),
                None => return Err(bad(format!("its byte {p} lies in a sparse run"))),
                Some(lcn) => {
                    // Runs are checked to end below total_clusters.
                    let at = (lcn + (vcn - r.vcn)) * cs + p % cs;
                    self.src.read_into(piece, at)?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// MFT record `number`, fixed up and checked to be in use.
    pub fn read_record(&self, number: u64, path: &str) -> Result<Vec<u8>> {
        if number >= self.mft_records {
            return Err(corrupt(
                path,
                number,
                format!(
                    "it lies past the end of the MFT ({} records)",
                    self.mft_records
                ),
            ));
        }
        let rs = u64::from(self.record_size);
        let mut buf = vec![0u8; self.record_size as usize];
        let bad = |d: String| corrupt(path, number, format!("$MFT: {d}"));
        self.read_mapped(&self.mft_runs, number * rs, &mut buf, false, &bad)?;
        match fixup(&mut buf) {
            Ok(RecordKind::File) => {}
            Ok(RecordKind::Blank) => return Err(corrupt(path, number, "it was never written")),
            Err(p) => return Err(corrupt(path, number, p)),
        }
        if !Record::new(&buf).in_use() {
            return Err(corrupt(path, number, "it is not in use (a deleted file)"));
        }
        Ok(buf)
    }

    /// File `number`: its base record's header and every attribute, from
    /// the base record and its extension records.
    pub fn read_file(&self, number: u64, path: &str) -> Result<FileRecord> {
        let buf = self.read_record(number, path)?;
        let rec = Record::new(&buf);
        if rec.base_record() != 0 {
            return Err(corrupt(
                path,
                number,
                format!(
                    "it is an extension record of record {}, not a file",
                    rec.base_record()
                ),
            ));
        }
        let mut file = FileRecord {
            number,
            flags: rec.flags(),
            link_count: le16(&buf, 0x12).unwrap_or(1),
            attrs: Vec::new(),
        };
        collect(&buf, number, &mut file.attrs, path)?;
        if let Some(list) = file.attrs.iter().find(|a| a.ty == AT_ATTRIBUTE_LIST) {
            let value = self.attribute_list(list, number, path)?;
            let mut seen = vec![number];
            for ext in list_records(&value) {
                if seen.contains(&ext) {
                    continue;
                }
                seen.push(ext);
                let ebuf = self.read_record(ext, path)?;
                let base = Record::new(&ebuf).base_record();
                if base != number {
                    return Err(corrupt(
                        path,
                        ext,
                        format!(
                            "record {number}'s attribute list names it, but its base record is {base}"
                        ),
                    ));
                }
                collect(&ebuf, ext, &mut file.attrs, path)?;
            }
        }
        for a in &mut file.attrs {
            if let Value::NonResident(nr) = &mut a.value {
                nr.runs.sort_by_key(|r| r.vcn);
                check_runs(&nr.runs, self.cluster_size, self.total_clusters)
                    .map_err(|d| corrupt(path, number, format!("attribute 0x{:x}: {d}", a.ty)))?;
            }
        }
        Ok(file)
    }

    /// The value of an `$ATTRIBUTE_LIST`, resident or not.
    fn attribute_list(&self, list: &Attr, number: u64, path: &str) -> Result<Vec<u8>> {
        match &list.value {
            Value::Resident(v) => Ok(v.clone()),
            Value::NonResident(nr) => {
                if nr.data_size > MAX_ATTRIBUTE_LIST {
                    return Err(corrupt(
                        path,
                        number,
                        format!("its attribute list claims {} bytes", nr.data_size),
                    ));
                }
                let mut runs = nr.runs.clone();
                runs.sort_by_key(|r| r.vcn);
                check_runs(&runs, self.cluster_size, self.total_clusters)
                    .map_err(|d| corrupt(path, number, format!("its attribute list: {d}")))?;
                let mut v = vec![0u8; nr.data_size as usize];
                let bad = |d: String| corrupt(path, number, format!("its attribute list: {d}"));
                self.read_mapped(&runs, 0, &mut v, false, &bad)?;
                Ok(v)
            }
        }
    }
}

/// A file's base record header and attributes.
pub struct FileRecord {
    /// Its record number.
    pub number: u64,
    /// Record header flags (in use, directory).
    pub flags: u16,
    /// Hard link count from the record header (what ntfs-3g reports as
    /// `st_nlink` for files).
    pub link_count: u16,
    /// Every attribute; the pieces of a non-resident one spread over
    /// several records are merged.
    pub attrs: Vec<Attr>,
}

impl FileRecord {
    /// Whether the record header marks a directory.
    pub fn is_dir(&self) -> bool {
        self.flags & FLAG_DIRECTORY != 0
    }

    /// The attribute of type `ty` named `name`.
    pub fn find(&self, ty: u32, name: &str) -> Option<&Attr> {
        self.attrs
            .iter()
            .find(|a| a.ty == ty && a.name.iter().copied().eq(name.encode_utf16()))
    }
}

/// One attribute, owned.
pub struct Attr {
    /// Attribute type.
    pub ty: u32,
    /// Name as UTF-16 code units (empty for unnamed).
    pub name: Vec<u16>,
    /// Attribute flags (0x0001 compressed, 0x4000 encrypted, 0x8000
    /// sparse), at byte 0x0C of the attribute header.
    pub flags: u16,
    /// Where the value is.
    pub value: Value,
}

impl Attr {
    /// The value's size in bytes.
    pub fn size(&self) -> u64 {
        match &self.value {
            Value::Resident(v) => v.len() as u64,
            Value::NonResident(nr) => nr.data_size,
        }
    }
}

/// An attribute's value.
pub enum Value {
    /// Inside the record.
    Resident(Vec<u8>),
    /// In clusters.
    NonResident(NonResident),
}

/// A non-resident value: its runs and sizes.
#[derive(Clone)]
pub struct NonResident {
    /// Runs of every piece, sorted by VCN once the file is read.
    pub runs: Vec<Run>,
    /// Size in bytes (`data_size`, header byte 0x30).
    pub data_size: u64,
    /// Bytes ever written (`initialized_size`, 0x38); the rest reads as
    /// zeros.
    pub initialized_size: u64,
    /// Log2 of clusters per compression unit (byte 0x22).
    pub compression_unit: u8,
    /// Whether the piece starting at VCN 0 (which holds the sizes) was
    /// found.
    pub sized: bool,
}

/// Appends the attributes of record `number` (fixed up, in `buf`) to
/// `into`, merging the pieces of a non-resident attribute.
fn collect(buf: &[u8], number: u64, into: &mut Vec<Attr>, path: &str) -> Result<()> {
    let rec = Record::new(buf);
    let attrs = rec.attributes().map_err(|p| corrupt(path, number, p))?;
    for a in attrs {
        let name: Vec<u16> = a.name().collect();
        let flags = le16(buf, a.offset + 0x0C).unwrap_or(0);
        if !a.non_resident() {
            into.push(Attr {
                ty: a.ty,
                name,
                flags,
                value: Value::Resident(a.value().to_vec()),
            });
            continue;
        }
        let runs = Runs::new(a.mapping_pairs(), a.lowest_vcn())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                corrupt(
                    path,
                    number,
                    format!(
                        "attribute 0x{:x} at offset {}: {} (byte {} of its mapping pairs)",
                        a.ty, a.offset, e.problem, e.at
                    ),
                )
            })?;
        let existing = into.iter_mut().find_map(|x| match &mut x.value {
            Value::NonResident(nr) if x.ty == a.ty && x.name == name => Some(nr),
            _ => None,
        });
        let nr = match existing {
            Some(nr) => nr,
            None => {
                into.push(Attr {
                    ty: a.ty,
                    name,
                    flags,
                    value: Value::NonResident(NonResident {
                        runs: Vec::new(),
                        data_size: 0,
                        initialized_size: 0,
                        compression_unit: 0,
                        sized: false,
                    }),
                });
                match into.last_mut().map(|x| &mut x.value) {
                    Some(Value::NonResident(nr)) => nr,
                    _ => unreachable!("just pushed a non-resident attribute"),
                }
            }
        };
        nr.runs.extend(runs);
        if a.lowest_vcn() == 0 {
            nr.data_size = a.data_size();
            nr.initialized_size = a.initialized_size();
            nr.compression_unit = buf.get(a.offset + 0x22).copied().unwrap_or(0);
            nr.sized = true;
        }
    }
    Ok(())
}

/// Checks runs sorted by VCN: they start at VCN 0, follow each other
/// without gap or overlap, lie inside the volume, and their byte size
/// fits 64 bits.
pub fn check_runs(runs: &[Run], cluster_size: u64, total_clusters: u64) -> Result<(), String> {
    let mut next = 0u64;
    for r in runs {
        if r.vcn != next {
            return Err(format!(
                "its runs jump from VCN {next} to VCN {} (a missing or overlapping piece)",
                r.vcn
            ));
        }
        next = r
            .vcn
            .checked_add(r.len)
            .filter(|&e| e.checked_mul(cluster_size).is_some())
            .ok_or_else(|| format!("a run at VCN {} of {} clusters overflows", r.vcn, r.len))?;
        if let Some(lcn) = r.lcn
            && lcn.checked_add(r.len).is_none_or(|e| e > total_clusters)
        {
            return Err(format!(
                "a run of {} clusters at cluster {lcn} ends past the last cluster ({})",
                r.len,
                total_clusters.saturating_sub(1)
            ));
        }
    }
    Ok(())
}

/// The extension record numbers an attribute list names, in order. A
/// malformed entry ends the list.
fn list_records(value: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while let (Some(len), Some(mref)) = (le16(value, off + 4), le64(value, off + 0x10)) {
        let len = usize::from(len);
        if len < 0x1A || off + len > value.len() {
            break;
        }
        out.push(mref & 0x0000_FFFF_FFFF_FFFF);
        off += len;
    }
    out
}

/// Merges runs that follow each other on the volume (fewer, larger
/// reads).
pub fn merge_runs(runs: &[Run]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::with_capacity(runs.len());
    for &r in runs {
        if let Some(last) = out.last_mut() {
            let follows = match (last.lcn, r.lcn) {
                (None, None) => true,
                (Some(a), Some(b)) => a + last.len == b,
                _ => false,
            };
            if follows && last.vcn + last.len == r.vcn {
                last.len += r.len;
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// What `$STANDARD_INFORMATION` says.
pub struct StandardInfo {
    /// Last data change (NTFS time).
    pub mtime: u64,
    /// Last access (NTFS time).
    pub atime: u64,
    /// File attribute flags (read-only 0x1, sparse 0x200, reparse point
    /// 0x400, compressed 0x800, encrypted 0x4000).
    pub attributes: u32,
}

/// File attribute: read-only.
pub const FILE_READONLY: u32 = 0x0001;
/// File attribute: encrypted.
pub const FILE_ENCRYPTED: u32 = 0x4000;

impl StandardInfo {
    /// Parses the file's `$STANDARD_INFORMATION` (resident, at least 0x24
    /// bytes: four times, then the attribute flags).
    pub fn of(file: &FileRecord, path: &str) -> Result<Self> {
        let v = match file.find(AT_STANDARD_INFORMATION, "").map(|a| &a.value) {
            Some(Value::Resident(v)) => v,
            Some(Value::NonResident(_)) => {
                return Err(corrupt(
                    path,
                    file.number,
                    "its $STANDARD_INFORMATION is non-resident",
                ));
            }
            None => {
                return Err(corrupt(
                    path,
                    file.number,
                    "it has no $STANDARD_INFORMATION",
                ));
            }
        };
        match (le64(v, 0x08), le64(v, 0x18), le32(v, 0x20)) {
            (Some(mtime), Some(atime), Some(attributes)) => Ok(StandardInfo {
                mtime,
                atime,
                attributes,
            }),
            _ => Err(corrupt(
                path,
                file.number,
                format!("its $STANDARD_INFORMATION is {} bytes, too short", v.len()),
            )),
        }
    }
}

/// The parent directory's record number from the file's first non-DOS
/// `$FILE_NAME`.
pub fn parent_of(file: &FileRecord) -> Option<u64> {
    file.attrs
        .iter()
        .filter(|a| a.ty == AT_FILE_NAME)
        .filter_map(|a| match &a.value {
            Value::Resident(v) => Some(v),
            Value::NonResident(_) => None,
        })
        .find(|v| v.get(0x41).is_some_and(|&ns| ns != 2))
        .and_then(|v| le64(v, 0))
        .map(|r| r & 0x0000_FFFF_FFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_checked() {
        let run = |vcn, lcn, len| Run { vcn, lcn, len };
        assert_eq!(
            check_runs(&[run(0, Some(1), 2), run(2, None, 5)], 4096, 10),
            Ok(())
        );
        assert!(
            check_runs(&[run(1, Some(1), 2)], 4096, 10)
                .unwrap_err()
                .contains("jump")
        );
        assert!(
            check_runs(&[run(0, Some(9), 2)], 4096, 10)
                .unwrap_err()
                .contains("past the last cluster (9)")
        );
        assert!(
            check_runs(&[run(0, None, u64::MAX / 2)], 4096, 10)
                .unwrap_err()
                .contains("overflows")
        );
        assert_eq!(
            merge_runs(&[
                run(0, Some(1), 2),
                run(2, Some(3), 1),
                run(3, None, 1),
                run(4, None, 2)
            ]),
            vec![run(0, Some(1), 3), run(3, None, 3)]
        );
    }
}
