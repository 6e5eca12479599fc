//! Reading a `$DATA` attribute (the unnamed stream or a named one):
//! resident values, non-resident values with sparse runs (holes read as
//! zeros, one source read per run), and LZNT1-compressed values, decoded
//! one compression unit at a time.
//!
//! A compressed value is cut into units of 16 clusters. A unit whose
//! clusters are all allocated is stored as it is; one whose clusters are
//! all sparse is zeros; one with fewer allocated clusters followed by
//! sparse ones holds LZNT1 chunks in the allocated clusters.

use super::file::{Attr, Value, Volume, corrupt, merge_runs};
use super::lznt1;
use crate::error::Result;
use crate::files::{FileError, FileRead};
use crate::fs::ntfs::runs::Run;

/// Attribute flag: compressed (the low byte names the method; 1 = LZNT1).
const ATTR_COMPRESSION_MASK: u16 = 0x00FF;
/// Attribute flag: LZNT1 compression.
const ATTR_LZNT1: u16 = 0x0001;
/// Attribute flag: encrypted.
pub const ATTR_ENCRYPTED: u16 = 0x4000;
/// Largest compression unit accepted (Windows uses 64 KiB).
const MAX_UNIT: u64 = 4 << 20;

/// Where a stream's bytes are.
enum Content {
    /// Inside the MFT record.
    Resident(Vec<u8>),
    /// In clusters, as they are.
    Plain {
        /// Runs, merged where contiguous.
        runs: Vec<Run>,
    },
    /// In clusters, LZNT1-compressed per unit.
    Compressed {
        /// Runs.
        runs: Vec<Run>,
        /// Clusters per compression unit.
        unit_clusters: u64,
        /// The last unit decoded: (unit number, its bytes).
        cache: Option<(u64, Vec<u8>)>,
    },
}

/// A reader of one `$DATA` attribute.
pub struct StreamReader<'a> {
    vol: &'a Volume,
    path: String,
    record: u64,
    /// Size in bytes.
    size: u64,
    /// Bytes from here on read as zeros (`initialized_size`).
    initialized: u64,
    content: Content,
}

impl<'a> StreamReader<'a> {
    /// A reader of `attr` of MFT record `record`, reached through `path`.
    pub fn new(vol: &'a Volume, record: u64, attr: &Attr, path: &str) -> Result<Self> {
        if attr.flags & ATTR_ENCRYPTED != 0 {
            return Err(FileError::Unsupported {
                path: path.to_string(),
                what: "an encrypted file".into(),
            }
            .into());
        }
        let nr = match &attr.value {
            Value::Resident(v) => {
                return Ok(StreamReader {
                    vol,
                    path: path.to_string(),
                    record,
                    size: v.len() as u64,
                    initialized: v.len() as u64,
                    content: Content::Resident(v.clone()),
                });
            }
            Value::NonResident(nr) => nr,
        };
        if !nr.sized {
            return Err(corrupt(
                path,
                record,
                "the piece of its $DATA at VCN 0 is missing",
            ));
        }
        let cs = vol.cluster_size;
        let mapped = nr.runs.last().map_or(0, |r| r.vcn + r.len) * cs;
        if nr.data_size > mapped {
            return Err(corrupt(
                path,
                record,
                format!(
                    "its $DATA is {} bytes but its runs map only {mapped}",
                    nr.data_size
                ),
            ));
        }
        let runs = merge_runs(&nr.runs);
        let method = attr.flags & ATTR_COMPRESSION_MASK;
        let content = if method == 0 {
            Content::Plain { runs }
        } else {
            let unit_clusters = 1u64 << nr.compression_unit.min(63);
            if method != ATTR_LZNT1
                || nr.compression_unit == 0
                || unit_clusters.saturating_mul(cs) > MAX_UNIT
            {
                return Err(FileError::Unsupported {
                    path: path.to_string(),
                    what: format!(
                        "a file compressed with method {method} in units of 2^{} clusters",
                        nr.compression_unit
                    ),
                }
                .into());
            }
            Content::Compressed {
                runs,
                unit_clusters,
                cache: None,
            }
        };
        Ok(StreamReader {
            vol,
            path: path.to_string(),
            record,
            size: nr.data_size,
            initialized: nr.initialized_size.min(nr.data_size),
            content,
        })
    }

    /// Fills `out` with the bytes at `offset`, all below `initialized`.
    fn read_data(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        let (vol, path, record) = (self.vol, self.path.as_str(), self.record);
        match &mut self.content {
            Content::Resident(v) => {
                let start = offset as usize;
                out.copy_from_slice(&v[start..start + out.len()]);
                Ok(())
            }
            Content::Plain { runs } => {
                let bad = |d: String| corrupt(path, record, format!("$DATA: {d}"));
                vol.read_mapped(runs, offset, out, true, &bad)
            }
            Content::Compressed {
                runs,
                unit_clusters,
                cache,
            } => {
                let unit_bytes = *unit_clusters * vol.cluster_size;
                let mut done = 0usize;
                while done < out.len() {
                    let pos = offset + done as u64;
                    let unit = pos / unit_bytes;
                    if cache.as_ref().is_none_or(|(u, _)| *u != unit) {
                        let bytes = decode_unit(vol, runs, *unit_clusters, unit, path, record)?;
                        *cache = Some((unit, bytes));
                    }
                    let Some((_, bytes)) = cache.as_ref() else {
                        unreachable!("the unit was just decoded")
                    };
                    let at = (pos % unit_bytes) as usize;
                    let n = (bytes.len() - at).min(out.len() - done);
                    out[done..done + n].copy_from_slice(&bytes[at..at + n]);
                    done += n;
                }
                Ok(())
            }
        }
    }
}

/// Decodes compression unit `unit`: reads its allocated clusters, and
/// decompresses them when fewer than the whole unit are allocated.
fn decode_unit(
    vol: &Volume,
    runs: &[Run],
    unit_clusters: u64,
    unit: u64,
    path: &str,
    record: u64,
) -> Result<Vec<u8>> {
    let cs = vol.cluster_size;
    let first = unit * unit_clusters;
    let end = first.saturating_add(unit_clusters);
    let what = |d: String| {
        corrupt(
            path,
            record,
            format!("compression unit {unit} (VCN {first}): {d}"),
        )
    };
    // Allocated pieces (LCN, clusters), in VCN order.
    let mut pieces: Vec<(u64, u64)> = Vec::new();
    let mut allocated = 0u64;
    let mut hole = false;
    let i = runs.partition_point(|r| r.vcn + r.len <= first);
    for r in runs[i..].iter().take_while(|r| r.vcn < end) {
        let (s, e) = (r.vcn.max(first), (r.vcn + r.len).min(end));
        match r.lcn {
            Some(lcn) => {
                if hole {
                    return Err(what("allocated clusters follow a hole inside it".into()));
                }
                pieces.push((lcn + (s - r.vcn), e - s));
                allocated += e - s;
            }
            None => hole = true,
        }
    }
    let mut out = vec![0u8; (unit_clusters * cs) as usize];
    if allocated == 0 {
        return Ok(out);
    }
    let mut stored = vec![0u8; (allocated * cs) as usize];
    let mut at = 0usize;
    for (lcn, len) in pieces {
        let n = (len * cs) as usize;
        vol.src.read_into(&mut stored[at..at + n], lcn * cs)?;
        at += n;
    }
    if allocated == unit_clusters {
        return Ok(stored);
    }
    lznt1::decompress(&stored, &mut out).map_err(what)?;
    Ok(out)
}

impl FileRead for StreamReader<'_> {
    fn volume_offset(&self) -> Option<u64> {
        let runs = match &self.content {
            Content::Resident(_) => return None,
            Content::Plain { runs } | Content::Compressed { runs, .. } => runs,
        };
        runs.iter()
            .find_map(|r| r.lcn)
            .map(|lcn| lcn.saturating_mul(self.vol.cluster_size))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.size - offset) as usize;
        let data = if offset >= self.initialized {
            0
        } else {
            (n as u64).min(self.initialized - offset) as usize
        };
        self.read_data(offset, &mut buf[..data])?;
        buf[data..n].fill(0);
        Ok(n)
    }

    fn data_ranges(&mut self) -> Result<Option<Vec<(u64, u64)>>> {
        let cs = self.vol.cluster_size;
        let (runs, unit) = match &self.content {
            Content::Resident(_) => {
                return Ok(Some(
                    vec![(0, self.size)]
                        .into_iter()
                        .filter(|r| r.1 > 0)
                        .collect(),
                ));
            }
            Content::Plain { runs } => (runs, 1),
            Content::Compressed {
                runs,
                unit_clusters,
                ..
            } => (runs, *unit_clusters),
        };
        let mut out: Vec<(u64, u64)> = Vec::new();
        for r in runs.iter().filter(|r| r.lcn.is_some()) {
            // Whole units holding any allocated cluster are data.
            let start = (r.vcn / unit * unit).saturating_mul(cs).min(self.size);
            let end = (r.vcn + r.len)
                .div_ceil(unit)
                .saturating_mul(unit)
                .saturating_mul(cs)
                .min(self.size);
            if start >= end {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 >= start => last.1 = last.1.max(end),
                _ => out.push((start, end)),
            }
        }
        Ok(Some(out))
    }
}
