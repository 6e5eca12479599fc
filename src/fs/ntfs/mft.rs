//! The master file table: where `$MFT` lives (its `$DATA` runs, gathered
//! from record 0 and, for a very fragmented MFT, the extension records
//! its attribute list names), and a walk over every record in large
//! reads.

use super::boot::BootSector;
use super::error::NtfsError;
use super::record::{AT_ATTRIBUTE_LIST, AT_DATA, Attribute, Kind, Record, fixup};
use super::runs::{Run, Runs};
use crate::bytes::{u16le, u64le};
use crate::error::{Error, Result};
use crate::source::Source;

/// Bytes read per step of the walk.
const WALK_READ: u64 = 1 << 20;
/// Largest attribute list followed (a list is at most a few hundred KiB).
const MAX_ATTRIBUTE_LIST: u64 = 16 << 20;

/// A non-resident value's clusters, in VCN order, sparse runs dropped.
#[derive(Clone, Debug, Default)]
pub struct Extents {
    runs: Vec<Run>,
    cluster_size: u64,
}

/// Byte ranges of a buffer that could not be read (rescue mode).
pub type Holes = Vec<(usize, usize)>;

impl Extents {
    /// Extents from decoded runs.
    pub fn new(mut runs: Vec<Run>, cluster_size: u32) -> Self {
        runs.retain(|r| r.lcn.is_some());
        runs.sort_by_key(|r| r.vcn);
        Extents {
            runs,
            cluster_size: u64::from(cluster_size),
        }
    }

    /// The runs, each with an LCN.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Absolute byte offset of byte `pos` of the value, and how many bytes
    /// from there are contiguous on the volume.
    pub fn locate(&self, pos: u64) -> Option<(u64, u64)> {
        let vcn = pos / self.cluster_size;
        // Checked: the runs come from a record on the volume, and a
        // hostile one may put them anywhere in 64 bits.
        let i = self
            .runs
            .partition_point(|r| r.vcn.saturating_add(r.len) <= vcn);
        let r = self.runs.get(i).filter(|r| r.vcn <= vcn)?;
        let lcn = r.lcn?;
        let at = lcn
            .checked_add(vcn - r.vcn)?
            .checked_mul(self.cluster_size)?
            .checked_add(pos % self.cluster_size)?;
        let left = r
            .vcn
            .checked_add(r.len)?
            .checked_mul(self.cluster_size)?
            .checked_sub(pos)?;
        Some((at, left))
    }

    /// Absolute byte offset of byte `pos` of the value.
    pub fn offset_of(&self, pos: u64) -> Option<u64> {
        self.locate(pos).map(|(at, _)| at)
    }

    /// Fills `buf` with the value's bytes from `pos`. In rescue mode,
    /// unreadable sectors are left zero and returned; otherwise the first
    /// read error ends it. `what` names the value for errors.
    pub fn read(
        &self,
        src: &dyn Source,
        pos: u64,
        buf: &mut [u8],
        rescue: bool,
        what: &str,
    ) -> Result<Holes> {
        let mut holes = Vec::new();
        let mut done = 0usize;
        while done < buf.len() {
            let p = pos + done as u64;
            let (at, left) = self.locate(p).ok_or_else(|| {
                Error::from(NtfsError::Layout {
                    what: format!("{what} has no cluster for its byte {p}"),
                })
            })?;
            let n = left.min((buf.len() - done) as u64) as usize;
            let piece = &mut buf[done..done + n];
            match src.read_into(piece, at) {
                Ok(()) => {}
                Err(Error::Read { .. }) if rescue => {
                    let sector = src.sector_size() as usize;
                    let mut o = 0;
                    while o < n {
                        // Sector-aligned pieces on the device.
                        let a = at + o as u64;
                        let k = (sector - (a % sector as u64) as usize).min(n - o);
                        if let Err(e) = src.read_into(&mut piece[o..o + k], a) {
                            if !matches!(e, Error::Read { .. }) {
                                return Err(e);
                            }
                            piece[o..o + k].fill(0);
                            holes.push((done + o, done + o + k));
                        }
                        o += k;
                    }
                }
                Err(e) => return Err(e),
            }
            done += n;
        }
        Ok(holes)
    }
}

/// The located `$MFT`.
pub struct Mft {
    /// Where its records are.
    pub extents: Extents,
    /// Bytes per record.
    pub record_size: u32,
    /// Records ever written (`initialized_size / record_size`).
    pub records: u64,
    /// Problems met on the way that did not stop it.
    pub warnings: Vec<String>,
}

/// What one record of the walk turned out to be.
pub enum Visit<'a> {
    /// A record in use, fixed up.
    InUse(Record<'a>),
    /// A record whose update sequence or signature is corrupt.
    Corrupt(String),
    /// A record in an unreadable sector (rescue mode).
    Unreadable,
}

impl Mft {
    /// Reads record 0 (from `$MFTMirr` if `$MFT`'s copy cannot be read or
    /// is corrupt) and gathers `$MFT`'s runs.
    pub fn locate(src: &dyn Source, boot: &BootSector) -> Result<Self> {
        let rs = boot.record_size;
        let cs = u64::from(boot.cluster_size);
        let mut warnings = Vec::new();
        let primary = boot.mft_lcn * cs;
        let mut rec0 = vec![0u8; rs as usize];
        let first = src
            .read_into(&mut rec0, primary)
            .map_err(|e| e.to_string())
            .and_then(|()| fixup(&mut rec0));
        match first {
            Ok(Kind::File) => {}
            other => {
                let problem = match other {
                    Ok(_) => "never written".to_string(),
                    Err(p) => p,
                };
                let mirror = boot.mftmirr_lcn * cs;
                src.read_into(&mut rec0, mirror)?;
                if fixup(&mut rec0) != Ok(Kind::File) {
                    return Err(NtfsError::Record {
                        record: 0,
                        offset: primary,
                        problem: format!("{problem}, and its copy in $MFTMirr is corrupt too"),
                    }
                    .into());
                }
                warnings.push(format!(
                    "MFT record 0 at byte {primary} is unusable ({problem}); using its copy in $MFTMirr at byte {mirror}"
                ));
            }
        }
        let bad = |offset: u64, problem: String| NtfsError::Record {
            record: 0,
            offset,
            problem,
        };
        let rec = Record::new(&rec0);
        let attrs = rec.attributes().map_err(|p| bad(primary, p))?;
        let mut pieces: Vec<Run> = Vec::new();
        let mut sizes = None;
        let mut list = None;
        for a in &attrs {
            if a.ty == AT_DATA && a.name_is("") && a.non_resident() {
                if a.lowest_vcn() == 0 {
                    sizes = Some((a.data_size(), a.initialized_size()));
                }
                pieces.extend(decode(a, 0, primary)?);
            } else if a.ty == AT_ATTRIBUTE_LIST {
                list = Some(a);
            }
        }
        let Some((_, initialized)) = sizes else {
            return Err(bad(primary, "$MFT has no non-resident $DATA attribute".into()).into());
        };
        let mut extents = Extents::new(pieces.clone(), boot.cluster_size);
        if let Some(list) = list {
            // The rest of $MFT's runs sit in extension records the list
            // names; they lie in the part of $MFT already mapped.
            let value = attribute_list_value(src, boot, list, primary)?;
            for (record, lowest_vcn) in list_entries(&value, AT_DATA) {
                if record == 0 || lowest_vcn == 0 {
                    continue;
                }
                let pos = record * u64::from(rs);
                let offset = extents.offset_of(pos).ok_or_else(|| {
                    bad(
                        primary,
                        format!(
                            "its attribute list names record {record}, outside the mapped $MFT"
                        ),
                    )
                })?;
                let mut buf = vec![0u8; rs as usize];
                extents.read(src, pos, &mut buf, false, "$MFT")?;
                let problem = |p: String| NtfsError::Record {
                    record,
                    offset,
                    problem: p,
                };
                if fixup(&mut buf).map_err(problem)? != Kind::File {
                    return Err(problem("never written, but $MFT's list names it".into()).into());
                }
                let r = Record::new(&buf);
                for a in r.attributes().map_err(problem)? {
                    if a.ty == AT_DATA && a.name_is("") && a.non_resident() {
                        pieces.extend(decode(&a, record, offset)?);
                    }
                }
                extents = Extents::new(pieces.clone(), boot.cluster_size);
            }
        }
        let records = initialized / u64::from(rs);
        let mapped = extents
            .runs()
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.len))
            .saturating_mul(cs);
        if records == 0 || mapped < records.saturating_mul(u64::from(rs)) {
            return Err(bad(
                primary,
                format!("$MFT holds {initialized} initialized bytes but its runs map {mapped}"),
            )
            .into());
        }
        Ok(Mft {
            extents,
            record_size: rs,
            records,
            warnings,
        })
    }

    /// Calls `visit` for every record ever written that is in use,
    /// corrupt, or unreadable (rescue mode), in record order, with the
    /// record number and its byte offset.
    pub fn walk(
        &self,
        src: &dyn Source,
        rescue: bool,
        mut visit: impl FnMut(u64, u64, Visit<'_>) -> Result<()>,
    ) -> Result<()> {
        let rs = u64::from(self.record_size);
        let per_read = (WALK_READ / rs).max(1);
        let mut buf = vec![0u8; (per_read * rs) as usize];
        let mut first = 0u64;
        while first < self.records {
            let n = per_read.min(self.records - first);
            let chunk = &mut buf[..(n * rs) as usize];
            let holes = self.extents.read(src, first * rs, chunk, rescue, "$MFT")?;
            for (i, rec) in chunk.chunks_exact_mut(rs as usize).enumerate() {
                let number = first + i as u64;
                let offset = self.extents.offset_of(number * rs).unwrap_or(0);
                let start = i * rs as usize;
                let end = start + rs as usize;
                if holes.iter().any(|&(s, e)| s < end && start < e) {
                    visit(number, offset, Visit::Unreadable)?;
                    continue;
                }
                match fixup(rec) {
                    Ok(Kind::Blank) => {}
                    Ok(Kind::File) => {
                        let r = Record::new(rec);
                        if r.in_use() {
                            visit(number, offset, Visit::InUse(r))?;
                        }
                    }
                    Err(p) => visit(number, offset, Visit::Corrupt(p))?,
                }
            }
            first += n;
        }
        Ok(())
    }
}

/// The runs of a non-resident attribute of record `record` at `offset`.
pub fn decode(a: &Attribute<'_>, record: u64, offset: u64) -> Result<Vec<Run>> {
    Runs::new(a.mapping_pairs(), a.lowest_vcn())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            NtfsError::Record {
                record,
                offset,
                problem: format!(
                    "attribute 0x{:x} at offset {}: {} (byte {} of its mapping pairs)",
                    a.ty, a.offset, e.problem, e.at
                ),
            }
            .into()
        })
}

/// The value of an attribute list, resident or not.
fn attribute_list_value(
    src: &dyn Source,
    boot: &BootSector,
    a: &Attribute<'_>,
    offset: u64,
) -> Result<Vec<u8>> {
    if !a.non_resident() {
        return Ok(a.value().to_vec());
    }
    let size = a.data_size();
    if size > MAX_ATTRIBUTE_LIST {
        return Err(NtfsError::Record {
            record: 0,
            offset,
            problem: format!("its attribute list claims {size} bytes"),
        }
        .into());
    }
    let extents = Extents::new(decode(a, 0, offset)?, boot.cluster_size);
    let mut v = vec![0u8; size as usize];
    extents.read(src, 0, &mut v, false, "$MFT's attribute list")?;
    Ok(v)
}

/// (record, lowest VCN) of each unnamed entry of type `ty` in an attribute
/// list value. A malformed entry ends the list.
fn list_entries(value: &[u8], ty: u32) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 0x1A <= value.len() {
        let len = usize::from(u16le(value, off + 4));
        if len < 0x1A || off + len > value.len() {
            break;
        }
        let name_len = value[off + 6];
        if crate::bytes::u32le(value, off) == ty && name_len == 0 {
            let record = u64le(value, off + 0x10) & 0x0000_FFFF_FFFF_FFFF;
            out.push((record, u64le(value, off + 8)));
        }
        off += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ntfs::record::tests::{non_resident, record};
    use crate::source::MemSource;

    const CS: u64 = 4096;
    const RS: u64 = 1024;

    fn boot() -> BootSector {
        BootSector {
            bytes_per_sector: 512,
            cluster_size: CS as u32,
            total_sectors: 8191,
            mft_lcn: 16,
            mftmirr_lcn: 512,
            record_size: RS as u32,
            index_block_size: 4096,
            serial: 0,
        }
    }

    /// A `$DATA` piece mapping 4 clusters from VCN `lowest` with `pairs`.
    fn data(lowest: u64, pairs: &[u8], size: u64) -> Vec<u8> {
        let mut a = non_resident(AT_DATA, "", pairs);
        a[0x10..0x18].copy_from_slice(&lowest.to_le_bytes());
        a[0x18..0x20].copy_from_slice(&(lowest + 3).to_le_bytes());
        a[0x30..0x38].copy_from_slice(&size.to_le_bytes());
        a[0x38..0x40].copy_from_slice(&size.to_le_bytes());
        a
    }

    /// A resident `$ATTRIBUTE_LIST` naming `$DATA` pieces.
    fn attribute_list(entries: &[(u64, u64)]) -> Vec<u8> {
        let mut value = Vec::new();
        for &(record, lowest) in entries {
            let mut e = vec![0u8; 0x20];
            e[0..4].copy_from_slice(&AT_DATA.to_le_bytes());
            e[4..6].copy_from_slice(&0x20u16.to_le_bytes());
            e[7] = 0x1A;
            e[8..16].copy_from_slice(&lowest.to_le_bytes());
            e[16..24].copy_from_slice(&record.to_le_bytes());
            value.extend(e);
        }
        let mut a = vec![0u8; 0x18 + value.len()];
        a[0..4].copy_from_slice(&AT_ATTRIBUTE_LIST.to_le_bytes());
        let len = a.len() as u32;
        a[4..8].copy_from_slice(&len.to_le_bytes());
        a[0x10..0x14].copy_from_slice(&(value.len() as u32).to_le_bytes());
        a[0x14..0x16].copy_from_slice(&0x18u16.to_le_bytes());
        a[0x18..].copy_from_slice(&value);
        a
    }

    /// A `$MFT` whose second extent is described by record 5, named in
    /// record 0's attribute list: both extents are mapped.
    #[test]
    fn follows_the_mft_attribute_list() {
        let mut vol = vec![0u8; 4 << 20];
        let size = 32 * RS; // 8 clusters: 4 at cluster 16, 4 at cluster 100
        let rec0 = record(
            &[
                attribute_list(&[(0, 0), (5, 4)]),
                data(0, &[0x11, 4, 16, 0], size),
            ],
            1,
        );
        let rec5 = record(&[data(4, &[0x11, 4, 100, 0], 0)], 1);
        let mft = (16 * CS) as usize;
        vol[mft..mft + RS as usize].copy_from_slice(&rec0);
        vol[mft + 5 * RS as usize..mft + 6 * RS as usize].copy_from_slice(&rec5);
        let src = MemSource::new(vol.clone(), "vol");
        let m = Mft::locate(&src, &boot()).unwrap();
        assert_eq!(m.records, 32);
        assert_eq!(
            m.extents.runs(),
            &[
                Run {
                    vcn: 0,
                    lcn: Some(16),
                    len: 4
                },
                Run {
                    vcn: 4,
                    lcn: Some(100),
                    len: 4
                }
            ]
        );
        assert_eq!(m.extents.offset_of(20 * RS), Some(100 * CS + 4 * RS));

        // Without the extension record, the second extent is missing.
        let mut bad = vol;
        bad[mft + 5 * RS as usize..mft + 6 * RS as usize].fill(0);
        let err = Mft::locate(&MemSource::new(bad, "vol"), &boot())
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            format!(
                "ntfs: MFT record 5 at byte {} is corrupt: never written, but $MFT's list names it",
                mft + 5 * RS as usize
            )
        );
    }

    /// Mapped pieces are read across runs; a hole in rescue mode is
    /// zero-filled and returned.
    #[test]
    fn reads_across_runs() {
        let mut vol = vec![0u8; 1 << 20];
        vol[2 * CS as usize..3 * CS as usize].fill(1);
        vol[7 * CS as usize..8 * CS as usize].fill(2);
        let e = Extents::new(
            vec![
                Run {
                    vcn: 0,
                    lcn: Some(2),
                    len: 1,
                },
                Run {
                    vcn: 1,
                    lcn: Some(7),
                    len: 1,
                },
            ],
            CS as u32,
        );
        let src = MemSource::new(vol, "vol");
        let mut buf = vec![0u8; 2048];
        e.read(&src, CS - 1024, &mut buf, false, "x").unwrap();
        assert!(buf[..1024].iter().all(|&b| b == 1) && buf[1024..].iter().all(|&b| b == 2));
        let err = e.read(&src, CS, &mut vec![0u8; CS as usize + 1], false, "x");
        assert_eq!(
            err.unwrap_err().to_string(),
            "ntfs: x has no cluster for its byte 8192"
        );
    }
}
