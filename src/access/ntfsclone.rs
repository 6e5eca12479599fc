//! Random access to the volume inside an ntfsclone image (10.0, 10.1 and
//! the older host-endian ones), as partclone-utils gives it.
//!
//! The format has no index: at open, one pass over the record stream
//! (formats/foreign-images.md, 2.2) builds an offset table, one entry per
//! run of clusters stored one after another, which says where each stored
//! cluster's bytes lie in the image. The data itself is skipped, not
//! decoded: ntfsclone stores clusters raw, so a read is a binary search of
//! the table and positioned reads straight from the image. Clusters no
//! record holds read as zeros, as they restore.
//!
//! The records are read and checked by the same code as the sequential
//! reader ([`crate::foreign::ntfsclone::next_record`]), so a bad header or
//! record is the same error at open. A truncated image still opens: the
//! table covers what the image holds, [`NtfscloneSource::truncated_at`]
//! says where it ends, and a read of what is missing fails naming the image
//! byte where the image ends.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};

use crate::error::{Error, Result};
use crate::foreign::ntfsclone::{NtfscloneHeader, Record, next_record};
use crate::foreign::{ForeignError, Input, read_block_at};
use crate::source::Source;

const FORMAT: &str = "ntfsclone";

/// Clusters stored one after another in the image: cluster `first + k`'s
/// bytes start at image byte `data + k × (cluster size + 1)` (each cluster
/// record is a 1-byte tag, then the cluster). 24 bytes per run; a volume
/// imaged whole is one run, and each gap record starts another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    count: u64,
    data: u64,
}

impl Run {
    fn end(&self) -> u64 {
        self.first + self.count
    }

    /// Clusters `from..to` of this run, as a run of their own.
    fn part(&self, from: u64, to: u64, stride: u64) -> Run {
        Run {
            first: from,
            count: to - from,
            data: self.data + (from - self.first) * stride,
        }
    }
}

/// Where a truncated image ends, and which clusters that leaves unknown.
#[derive(Debug)]
struct Cut {
    /// The image's length.
    end: u64,
    /// The truncation, as the sequential reader reports it.
    why: String,
    /// Clusters from here on that no run holds may have been in the
    /// missing part.
    from: u64,
    /// The stream had gone back (a metadata image): every cluster no run
    /// holds may have been in the missing part.
    all: bool,
}

/// The volume inside an ntfsclone image, read in place.
pub struct NtfscloneSource {
    file: File,
    name: String,
    header: NtfscloneHeader,
    /// Sorted by cluster, not overlapping.
    runs: Vec<Run>,
    cut: Option<Cut>,
}

impl NtfscloneSource {
    /// Reads the header and walks the records of the ntfsclone image in
    /// `file` (from its byte 0, whatever the file's position), building the
    /// offset table. `name` names the image in messages. A corrupt header
    /// or record is the error the sequential reader gives; a truncated
    /// image opens (see [`NtfscloneSource::truncated_at`]).
    pub fn open(file: File, name: &str) -> Result<NtfscloneSource> {
        (&file).seek(SeekFrom::Start(0)).map_err(|e| Error::Read {
            name: name.to_string(),
            offset: 0,
            len: 0,
            source: e,
        })?;
        let mut input = Input::new(BufReader::with_capacity(1 << 16, &file), name, FORMAT);
        let header = NtfscloneHeader::read(&mut input)?;
        let stride = u64::from(header.cluster_size) + 1;
        let mut runs: Vec<Run> = Vec::new();
        let mut pos = 0u64;
        let mut back = false;
        // The truncation error, if the image ends early.
        let truncated = loop {
            let at = input.pos();
            match next_record(&mut input, &header, pos) {
                Ok(None | Some(Record::NoBackupBootSector)) => break None,
                Ok(Some(Record::Gap { count, to })) => {
                    back |= count < 0;
                    pos = to;
                }
                Ok(Some(Record::Cluster { len })) => {
                    let data = at + 1;
                    match runs.last_mut() {
                        Some(r) if r.end() == pos && r.data + r.count * stride == data => {
                            r.count += 1;
                        }
                        _ => runs.push(Run {
                            first: pos,
                            count: 1,
                            data,
                        }),
                    }
                    let got = input.skip_some(len)?;
                    let c = pos;
                    pos += 1;
                    if got < len {
                        break Some(ForeignError::TruncatedBlock {
                            format: FORMAT,
                            block: c,
                            volume_offset: c * u64::from(header.cluster_size),
                            offset: data,
                            end: input.pos(),
                        });
                    }
                }
                Err(Error::Foreign(why @ ForeignError::Truncated { .. })) => break Some(why),
                Err(e) => return Err(e),
            }
        };
        let cut = truncated.map(|why| Cut {
            end: input.pos(),
            why: why.to_string(),
            from: pos,
            all: back,
        });
        drop(input);
        if !runs.windows(2).all(|w| w[0].end() <= w[1].first) {
            runs = later_wins(runs, stride);
        }
        runs.shrink_to_fit();
        Ok(NtfscloneSource {
            file,
            name: name.to_string(),
            header,
            runs,
            cut,
        })
    }

    /// The image's header.
    pub fn header(&self) -> &NtfscloneHeader {
        &self.header
    }

    /// Where the image ends, if it ends before its last record does
    /// (truncation): reads of what is missing fail.
    pub fn truncated_at(&self) -> Option<u64> {
        self.cut.as_ref().map(|c| c.end)
    }

    /// Entries in the offset table (runs of stored clusters).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Bytes of the volume the image stores.
    pub fn stored_bytes(&self) -> u64 {
        let cs = u64::from(self.header.cluster_size);
        let size = self.header.device_size;
        self.runs
            .iter()
            .map(|r| (r.end() * cs).min(size) - r.first * cs)
            .sum()
    }

    /// The error for volume byte `at`, which no run holds, if it may have
    /// been in the missing part of a truncated image.
    fn missing(&self, at: u64, to: u64) -> io::Result<()> {
        let Some(cut) = &self.cut else {
            return Ok(());
        };
        let cs = u64::from(self.header.cluster_size);
        let first = if cut.all {
            at
        } else {
            at.max(cut.from.saturating_mul(cs))
        };
        if first >= to {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: volume byte {first} lies in what the image no longer holds",
                cut.why
            ),
        ))
    }
}

/// Makes runs recorded in stream order sorted and disjoint, a cluster
/// stored twice (metadata images go back) taking its last record's bytes,
/// as a restore that writes the records in order leaves it.
fn later_wins(runs: Vec<Run>, stride: u64) -> Vec<Run> {
    let mut kept: BTreeMap<u64, Run> = BTreeMap::new();
    for r in runs.into_iter().rev() {
        // The later runs over r, in ascending order.
        let mut over: Vec<Run> = kept
            .range(..r.end())
            .rev()
            .map(|(_, k)| *k)
            .take_while(|k| k.end() > r.first)
            .collect();
        over.reverse();
        let mut from = r.first;
        let mut pieces = Vec::new();
        for k in &over {
            if k.first > from {
                pieces.push(r.part(from, k.first, stride));
            }
            from = from.max(k.end());
        }
        if from < r.end() {
            pieces.push(r.part(from, r.end(), stride));
        }
        for p in pieces {
            kept.insert(p.first, p);
        }
    }
    kept.into_values().collect()
}

impl Source for NtfscloneSource {
    fn size(&self) -> u64 {
        self.header.device_size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.header.device_size)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let cs = u64::from(self.header.cluster_size);
        let stride = cs + 1;
        let mut i = self.runs.partition_point(|r| r.end() * cs <= offset);
        let mut at = offset;
        while at < end {
            let out = (at - offset) as usize;
            let c = at / cs;
            match self.runs.get(i) {
                Some(r) if r.first <= c => {
                    // One cluster at a time: a tag byte separates them.
                    let inner = at - c * cs;
                    let n = (cs - inner).min(end - at);
                    let data = r.data + (c - r.first) * stride;
                    read_block_at(
                        &self.file,
                        &mut buf[out..out + n as usize],
                        data + inner,
                        FORMAT,
                        c,
                        c * cs,
                        data,
                    )?;
                    at += n;
                    if at >= r.end() * cs {
                        i += 1;
                    }
                }
                next => {
                    let to = next.map_or(end, |r| (r.first * cs).min(end));
                    self.missing(at, to)?;
                    buf[out..out + (to - at) as usize].fill(0);
                    at = to;
                }
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
    use crate::foreign::ntfsclone::{CMD_GAP, CMD_NEXT};
    use std::io::Write;

    fn open(img: &[u8]) -> Result<NtfscloneSource> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(img).unwrap();
        NtfscloneSource::open(f, "t")
    }

    /// An image of 512-byte clusters: `(cluster, fill byte)` records in
    /// stream order, gaps between them as needed.
    fn image(device_size: u64, nr: u64, records: &[(u64, u8)]) -> Vec<u8> {
        let mut b = NtfscloneHeader::new(512, device_size, nr, 2).to_bytes();
        let mut pos = 0u64;
        for &(c, fill) in records {
            if c != pos {
                b.push(CMD_GAP);
                b.extend_from_slice(&(c as i64 - pos as i64).to_le_bytes());
            }
            b.push(CMD_NEXT);
            let len = (device_size - c * 512).min(512) as usize;
            b.extend(std::iter::repeat_n(fill, len));
            pos = c + 1;
        }
        b
    }

    fn read(s: &NtfscloneSource, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0xEE; len];
        s.read_exact_at(&mut v, offset)?;
        Ok(v)
    }

    #[test]
    fn runs_gaps_and_a_short_last_cluster() {
        // Clusters 0, 1, 3 and the 100-byte cluster 4.
        let img = image(2148, 4, &[(0, 1), (1, 2), (3, 3), (4, 4)]);
        let s = open(&img).unwrap();
        assert_eq!(s.runs(), 2);
        assert_eq!(s.size(), 2148);
        assert_eq!(s.stored_bytes(), 3 * 512 + 100);
        let v = read(&s, 0, 2148).unwrap();
        let mut want = vec![1u8; 512];
        want.extend([2; 512]);
        want.extend([0; 512]);
        want.extend([3; 512]);
        want.extend([4; 100]);
        assert_eq!(v, want);
        assert_eq!(read(&s, 1000, 100).unwrap(), want[1000..1100]);
        assert_eq!(read(&s, 2147, 1).unwrap(), [4]);
        assert_eq!(read(&s, 2148, 0).unwrap(), Vec::<u8>::new());
        let err = read(&s, 2147, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(read(&s, u64::MAX, 1).is_err());
    }

    #[test]
    fn a_cluster_stored_twice_reads_as_its_last_record() {
        // 0, 1, 2, back to 1, on to 3: cluster 1 holds 9.
        let img = image(2048, 3, &[(0, 1), (1, 2), (2, 3), (1, 9), (3, 4)]);
        let s = open(&img).unwrap();
        let v = read(&s, 0, 2048).unwrap();
        for (c, want) in [1u8, 9, 3, 4].iter().enumerate() {
            assert!(v[c * 512..][..512].iter().all(|x| x == want), "cluster {c}");
        }
    }

    #[test]
    fn later_wins_splits_runs() {
        let r = |first, count, data| Run { first, count, data };
        // 0..10, then 2..4 and 6..7 again, then 3..8.
        let runs = vec![r(0, 10, 0), r(2, 2, 100), r(6, 1, 200), r(3, 5, 300)];
        assert_eq!(
            later_wins(runs, 10),
            vec![r(0, 2, 0), r(2, 1, 100), r(3, 5, 300), r(8, 2, 80),]
        );
    }

    #[test]
    fn truncation_keeps_what_is_there() {
        let img = image(2048, 3, &[(0, 1), (2, 3), (3, 4)]);
        // Cut inside cluster 2's data: 56 + 513 + 9 + 1 + 100.
        let s = open(&img[..679]).unwrap();
        assert_eq!(s.truncated_at(), Some(679));
        assert_eq!(read(&s, 0, 1024).unwrap()[..512], [1; 512]);
        assert_eq!(read(&s, 1024, 100).unwrap(), [3; 100]);
        let err = read(&s, 1024, 101).unwrap_err().to_string();
        assert!(
            err.contains(
                "ends at byte 679, inside block 2 (volume byte 1024), whose data starts at byte 579"
            ),
            "{err}"
        );
        let err = read(&s, 1536, 10).unwrap_err().to_string();
        assert!(
            err.contains("volume byte 1536 lies in what the image no longer holds"),
            "{err}"
        );
        // Cut inside the gap record: cluster 1 onwards is unknown.
        let s = open(&img[..575]).unwrap();
        assert_eq!(s.truncated_at(), Some(575));
        assert!(read(&s, 0, 512).is_ok());
        let err = read(&s, 500, 100).unwrap_err().to_string();
        assert!(
            err.contains("inside the gap record that starts at byte 569"),
            "{err}"
        );
    }

    #[test]
    fn bad_records_fail_at_open() {
        let mut img = image(2048, 3, &[(0, 1), (3, 4)]);
        img[56] = 7;
        let err = open(&img).err().unwrap().to_string();
        assert!(
            err.contains("invalid command byte 0x07 at byte 56"),
            "{err}"
        );
        let mut img = image(2048, 3, &[(0, 1)]);
        img[18] = 3;
        let err = open(&img).err().unwrap().to_string();
        assert!(err.contains("invalid cluster size at byte 18"), "{err}");
    }
}
