//! ntfsclone's special image (`ntfsclone --save-image`), versions 10.0 and
//! 10.1 (and the older host-endian images, read as little-endian): a
//! 56-byte header, then a stream of one-byte commands. `0x00` is a gap: an
//! 8-byte signed little-endian cluster count to move by. `0x01` is a
//! cluster: its bytes follow. The last record of a 10.1 image is the
//! cluster after the last NTFS cluster, which holds the backup boot sector;
//! it is short when the device does not end on a cluster boundary. There
//! is no checksum and no end marker. formats/foreign-images.md has the
//! details.

use std::io::{BufReader, BufWriter, Read, Write};

use super::{CHUNK_BYTES, Checked, ForeignError, ForeignReader, Input, NTFSCLONE_MAGIC};
use crate::bytes::{u32le, u64le};
use crate::copier::{Chunk, Extent};
use crate::error::{Error, Result};
use crate::report::Report;
use crate::sink::Sink;

const FORMAT: &str = "ntfsclone";

/// Command byte: skip clusters.
pub const CMD_GAP: u8 = 0x00;
/// Command byte: one cluster's bytes follow.
pub const CMD_NEXT: u8 = 0x01;
/// The version this module writes.
pub const MAJOR: u8 = 10;
/// The version this module writes: 10.1 saves the backup boot sector.
pub const MINOR: u8 = 1;
/// Bytes every version has before the data offset field.
pub const HEADER_LEN_OLD: usize = 46;
/// Where the data starts in every image ntfsclone writes.
pub const DATA_OFFSET: u32 = 56;
/// Smallest cluster size read.
pub const MIN_CLUSTER_SIZE: u32 = 256;
/// Largest cluster size read (NTFS allows 2 MiB; ntfsclone saves 64 KiB at
/// most).
pub const MAX_CLUSTER_SIZE: u32 = 2 << 20;

/// The header of an ntfsclone image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NtfscloneHeader {
    /// Major version (10; below 10: the host-endian images before 2007).
    pub major: u8,
    /// Minor version (1 since the backup boot sector is saved).
    pub minor: u8,
    /// Bytes per cluster.
    pub cluster_size: u32,
    /// Bytes in the device, the backup boot sector included.
    pub device_size: u64,
    /// NTFS clusters (`$Boot` sectors / sectors per cluster). The image may
    /// hold clusters 0..=nr_clusters; the last one is the backup boot
    /// sector's.
    pub nr_clusters: u64,
    /// Clusters in use, as the writer counted them (not counting the backup
    /// boot sector's; approximate in metadata images).
    pub inuse: u64,
    /// Where the records start.
    pub data_offset: u32,
}

impl NtfscloneHeader {
    /// A 10.1 header.
    pub fn new(cluster_size: u32, device_size: u64, nr_clusters: u64, inuse: u64) -> Self {
        NtfscloneHeader {
            major: MAJOR,
            minor: MINOR,
            cluster_size,
            device_size,
            nr_clusters,
            inuse,
            data_offset: DATA_OFFSET,
        }
    }

    /// The 56 bytes ntfsclone writes (10.x layout; padding zeroed).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(DATA_OFFSET as usize);
        b.extend_from_slice(NTFSCLONE_MAGIC);
        b.push(self.major);
        b.push(self.minor);
        b.extend_from_slice(&self.cluster_size.to_le_bytes());
        b.extend_from_slice(&self.device_size.to_le_bytes());
        b.extend_from_slice(&self.nr_clusters.to_le_bytes());
        b.extend_from_slice(&self.inuse.to_le_bytes());
        b.extend_from_slice(&self.data_offset.to_le_bytes());
        b.resize(DATA_OFFSET as usize, 0);
        b
    }

    /// Bytes cluster `c` holds in the image: a whole cluster, or what is
    /// left of the device; `None` if it starts at or past the end.
    pub fn cluster_len(&self, c: u64) -> Option<u64> {
        let start = c.checked_mul(u64::from(self.cluster_size))?;
        (start < self.device_size)
            .then(|| (self.device_size - start).min(u64::from(self.cluster_size)))
    }

    /// Whether the image may end just before cluster `nr_clusters` (the
    /// backup boot sector's): images before 10.1 do not save it.
    pub(crate) fn may_lack_backup_boot_sector(&self) -> bool {
        self.major < MAJOR || self.minor == 0
    }

    /// Reads and checks the header, leaving `input` at the first record.
    pub(crate) fn read<R: Read>(input: &mut Input<R>) -> Result<Self> {
        let field = |offset, field, value: String| -> Error {
            ForeignError::Field {
                format: FORMAT,
                offset,
                field,
                value,
            }
            .into()
        };
        let mut b = [0u8; HEADER_LEN_OLD];
        input.fill(&mut b, "header", 0)?;
        if b[..16] != NTFSCLONE_MAGIC[..] {
            return Err(field(0, "magic", super::describe_start(&b[..16])));
        }
        let (major, minor) = (b[16], b[17]);
        if major > MAJOR {
            return Err(ForeignError::Version {
                format: FORMAT,
                version: format!("{major}.{minor}"),
                supported: "up to 10.x",
            }
            .into());
        }
        let data_offset = if major < MAJOR {
            // Before 10.0 the fields were in host order and the data
            // started at the aligned end of the 50-byte struct. Those images
            // were made on little-endian PCs, and ntfsclone reads them so.
            input.skip(u64::from(DATA_OFFSET) - HEADER_LEN_OLD as u64, "header", 0)?;
            DATA_OFFSET
        } else {
            let mut o = [0u8; 4];
            input.fill(&mut o, "header", 0)?;
            let off = u32::from_le_bytes(o);
            let min = HEADER_LEN_OLD as u32 + 4;
            if off < min {
                return Err(field(
                    46,
                    "data offset",
                    format!("{off} (at least {min}, normally {DATA_OFFSET})"),
                ));
            }
            // A later minor version may add fields before the data.
            input.skip(u64::from(off - min), "header", 0)?;
            off
        };
        let cluster_size = u32le(&b, 18);
        if !cluster_size.is_power_of_two()
            || !(MIN_CLUSTER_SIZE..=MAX_CLUSTER_SIZE).contains(&cluster_size)
        {
            return Err(field(
                18,
                "cluster size",
                format!(
                    "{cluster_size} (a power of two from {MIN_CLUSTER_SIZE} to {MAX_CLUSTER_SIZE})"
                ),
            ));
        }
        let device_size = u64le(&b, 22);
        if device_size == 0 {
            return Err(field(22, "device size", "0".into()));
        }
        let nr = u64le(&b, 30) as i64;
        let nr_clusters = u64::try_from(nr)
            .ok()
            .filter(|&n| {
                n.checked_mul(u64::from(cluster_size))
                    .is_some_and(|bytes| bytes <= device_size)
            })
            .ok_or_else(|| {
                field(
                    30,
                    "cluster count",
                    format!("{nr} ({cluster_size}-byte clusters in a {device_size}-byte device)"),
                )
            })?;
        Ok(NtfscloneHeader {
            major,
            minor,
            cluster_size,
            device_size,
            nr_clusters,
            inuse: u64le(&b, 38),
            data_offset,
        })
    }
}

/// One record of the stream, as [`next_record`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// A gap of `count` clusters (negative in metadata images), which the
    /// header allows: the position moves to cluster `to`.
    Gap {
        /// The signed count stored.
        count: i64,
        /// The cluster it leads to.
        to: u64,
    },
    /// The record of the cluster at the position: its `len` bytes follow,
    /// still unread, from the input's position on.
    Cluster {
        /// Bytes of the cluster in the image (short for the last one).
        len: u64,
    },
    /// The input ended just before the backup boot sector's record, where
    /// an image before 10.1 ends: the image is complete without it.
    NoBackupBootSector,
}

/// Reads the record at the input's position, the reader standing at
/// cluster `pos`, and checks it against the header (the cluster's data is
/// left unread). `None`: the image has ended (after cluster `nr_clusters`).
/// The end of input anywhere else is a truncation error.
pub(crate) fn next_record<R: Read>(
    input: &mut Input<R>,
    header: &NtfscloneHeader,
    pos: u64,
) -> Result<Option<Record>> {
    let last = header.nr_clusters;
    if pos > last {
        return Ok(None);
    }
    let at = input.pos();
    let Some(cmd) = input.byte()? else {
        if pos == last && header.may_lack_backup_boot_sector() {
            return Ok(Some(Record::NoBackupBootSector));
        }
        let what = if pos == last {
            "backup boot sector record"
        } else {
            "next record"
        };
        return Err(input.truncated(what, at));
    };
    match cmd {
        CMD_GAP => {
            let mut b = [0u8; 8];
            input.fill(&mut b, "gap record", at)?;
            let count = i64::from_le_bytes(b);
            let to = i128::from(pos) + i128::from(count);
            if count == 0 || to < 0 || to > i128::from(last) {
                return Err(ForeignError::BadGap {
                    offset: at,
                    count,
                    from: pos,
                    to,
                    last,
                }
                .into());
            }
            Ok(Some(Record::Gap {
                count,
                to: to as u64,
            }))
        }
        CMD_NEXT => {
            let len = header
                .cluster_len(pos)
                .ok_or(ForeignError::ClusterPastEnd {
                    offset: at,
                    cluster: pos,
                    volume_offset: pos * u64::from(header.cluster_size),
                    device_size: header.device_size,
                })?;
            Ok(Some(Record::Cluster { len }))
        }
        code => Err(ForeignError::BadCommand { offset: at, code }.into()),
    }
}

/// Reads an ntfsclone image from any byte stream.
pub struct NtfscloneReader<R> {
    input: Input<BufReader<R>>,
    header: NtfscloneHeader,
    /// The cluster the next record is about.
    pos: u64,
    ended: bool,
    /// Refuse negative gaps (the target is written front to back).
    sequential: bool,
    clusters: u64,
    gaps: u64,
    backward_gaps: u64,
    backup_boot_sector: bool,
}

impl<R: Read> NtfscloneReader<R> {
    /// Reads and checks the header. `name` names the image in messages.
    pub fn new(r: R, name: &str) -> Result<Self> {
        let mut input = Input::new(BufReader::with_capacity(1 << 20, r), name, FORMAT);
        let header = NtfscloneHeader::read(&mut input)?;
        Ok(NtfscloneReader {
            input,
            header,
            pos: 0,
            ended: false,
            sequential: false,
            clusters: 0,
            gaps: 0,
            backward_gaps: 0,
            backup_boot_sector: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &NtfscloneHeader {
        &self.header
    }

    fn version(&self) -> String {
        format!("{}.{}", self.header.major, self.header.minor)
    }
}

impl<R: Read + Send> ForeignReader for NtfscloneReader<R> {
    fn format(&self) -> String {
        format!("ntfsclone {}", self.version())
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let h = &self.header;
        let mut lines = vec![
            ("format", self.format()),
            ("filesystem", "NTFS".to_string()),
            ("device size", h.device_size.to_string()),
            ("cluster size", h.cluster_size.to_string()),
            ("total clusters", h.nr_clusters.to_string()),
            (
                "used clusters",
                format!(
                    "{} (the backup boot sector's cluster comes on top)",
                    h.inuse
                ),
            ),
            ("data offset", h.data_offset.to_string()),
            ("checksums", "none (the format has none)".to_string()),
        ];
        if h.major < MAJOR {
            lines.push((
                "note",
                "an image from before ntfsclone 10.0: host byte order, read as little-endian"
                    .into(),
            ));
        }
        lines
    }

    fn device_size(&self) -> u64 {
        self.header.device_size
    }

    fn used_bytes(&self) -> u64 {
        let h = &self.header;
        (h.inuse.min(h.nr_clusters) + 1).saturating_mul(u64::from(h.cluster_size))
    }

    fn next_chunk(&mut self, report: &dyn Report) -> Result<Option<Chunk>> {
        let cs = u64::from(self.header.cluster_size);
        let last = self.header.nr_clusters;
        let mut chunk = Chunk::default();
        while !self.ended {
            let at = self.input.pos();
            match next_record(&mut self.input, &self.header, self.pos)? {
                None => {
                    self.ended = true;
                    break;
                }
                Some(Record::NoBackupBootSector) => {
                    report.warn(&format!(
                        "this ntfsclone {} image has no backup boot sector (images before 10.1 do not): the last {} bytes of the volume are not restored",
                        self.version(),
                        self.header.cluster_len(last).unwrap_or(0)
                    ));
                    self.ended = true;
                    break;
                }
                Some(Record::Gap { count, to }) => {
                    self.gaps += 1;
                    if count < 0 {
                        self.backward_gaps += 1;
                        if self.sequential {
                            return Err(ForeignError::Backward {
                                format: FORMAT,
                                offset: at,
                                volume_offset: to * cs,
                            }
                            .into());
                        }
                    }
                    self.pos = to;
                    // Each chunk stays in ascending order.
                    if count < 0 && !chunk.extents.is_empty() {
                        break;
                    }
                }
                Some(Record::Cluster { len }) => {
                    let c = self.pos;
                    let volume_offset = c * cs;
                    if self.input.append(&mut chunk.data, len as usize)? < len as usize {
                        return Err(ForeignError::TruncatedBlock {
                            format: FORMAT,
                            block: c,
                            volume_offset,
                            offset: at + 1,
                            end: self.input.pos(),
                        }
                        .into());
                    }
                    match chunk.extents.last_mut() {
                        Some(e) if e.end() == volume_offset => e.len += len,
                        _ => chunk.extents.push(Extent {
                            offset: volume_offset,
                            len,
                        }),
                    }
                    self.pos += 1;
                    self.clusters += 1;
                    if c == last {
                        self.backup_boot_sector = true;
                    }
                    if chunk.data.len() >= CHUNK_BYTES {
                        break;
                    }
                }
            }
        }
        Ok((!chunk.extents.is_empty()).then_some(chunk))
    }

    fn trailing(&mut self) -> Result<Option<u64>> {
        self.input.trailing()
    }

    fn set_sequential(&mut self, on: bool) {
        self.sequential = on;
    }

    fn checked(&self) -> Checked {
        let mut what = format!(
            "the record stream: {} cluster records and {} gaps",
            self.clusters, self.gaps
        );
        if self.backward_gaps > 0 {
            what.push_str(&format!(
                " ({} going back: a metadata image)",
                self.backward_gaps
            ));
        }
        what.push_str(if self.backup_boot_sector {
            ", ending with the backup boot sector"
        } else {
            ", without a backup boot sector"
        });
        Checked {
            checksums: 0,
            mismatches: 0,
            what,
            unchecked: Some(
                "ntfsclone images carry no checksums, so the cluster data itself could not be checked"
                    .into(),
            ),
        }
    }
}

/// Writes an ntfsclone 10.1 image: the header, then for each used cluster
/// in ascending order a gap to it if needed and the cluster, ending with the
/// cluster that holds the backup boot sector, exactly as `ntfsclone
/// --save-image` does, so that `ntfsclone --restore-image` restores it.
pub struct NtfscloneWriter<W: Write> {
    out: BufWriter<W>,
    name: String,
    header: NtfscloneHeader,
    /// The cluster the image stands at.
    pos: u64,
    /// Bytes written.
    written: u64,
    backup_boot_sector: bool,
    finished: bool,
}

impl<W: Write> NtfscloneWriter<W> {
    /// Starts an image of a device of `device_size` bytes whose NTFS volume
    /// has `nr_clusters` clusters of `cluster_size` bytes, `inuse` of them
    /// used (before the backup boot sector's), by writing its header.
    pub fn new(
        out: W,
        name: &str,
        cluster_size: u32,
        device_size: u64,
        nr_clusters: u64,
        inuse: u64,
    ) -> Result<Self> {
        let header = NtfscloneHeader::new(cluster_size, device_size, nr_clusters, inuse);
        let fits = nr_clusters
            .checked_mul(u64::from(cluster_size))
            .is_some_and(|b| b < device_size);
        if !cluster_size.is_power_of_two() || !fits {
            return Err(ForeignError::Unwritable {
                why: format!(
                    "{nr_clusters} clusters of {cluster_size} bytes leave no room for the backup boot sector in a {device_size}-byte device"
                ),
            }
            .into());
        }
        let mut w = NtfscloneWriter {
            out: BufWriter::with_capacity(1 << 20, out),
            name: name.to_string(),
            header,
            pos: 0,
            written: 0,
            backup_boot_sector: false,
            finished: false,
        };
        let bytes = w.header.to_bytes();
        w.put(&bytes)?;
        Ok(w)
    }

    /// The header written.
    pub fn header(&self) -> &NtfscloneHeader {
        &self.header
    }

    /// The output, once finished.
    pub fn into_inner(self) -> Result<W> {
        let (name, at) = (self.name, self.written);
        self.out.into_inner().map_err(|e| Error::Write {
            target: name,
            offset: at,
            source: e.into_error(),
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| Error::Write {
            target: self.name.clone(),
            offset: self.written,
            source: e,
        })?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn unwritable(why: String) -> Error {
        ForeignError::Unwritable { why }.into()
    }
}

impl<W: Write> Sink for NtfscloneWriter<W> {
    fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
        let cs = u64::from(self.header.cluster_size);
        let last = self.header.nr_clusters;
        for (e, data) in chunk.pieces() {
            if e.offset % cs != 0 {
                return Err(Self::unwritable(format!(
                    "the data at volume byte {} does not start on a cluster boundary",
                    e.offset
                )));
            }
            let mut c = e.offset / cs;
            let mut at = 0usize;
            while at < data.len() {
                if c > last {
                    return Err(Self::unwritable(format!(
                        "volume byte {} lies after cluster {last}, which holds the backup boot sector and ends an ntfsclone image",
                        c * cs
                    )));
                }
                if c < self.pos {
                    return Err(Self::unwritable(format!(
                        "cluster {c} comes after cluster {}: clusters must come in ascending order",
                        self.pos - 1
                    )));
                }
                let len = self.header.cluster_len(c).unwrap_or(0) as usize;
                if len == 0 || at + len > data.len() {
                    return Err(Self::unwritable(format!(
                        "the data at volume byte {} ends inside cluster {c}",
                        e.offset
                    )));
                }
                if c > self.pos {
                    let mut gap = [0u8; 9];
                    gap[0] = CMD_GAP;
                    gap[1..].copy_from_slice(&((c - self.pos) as i64).to_le_bytes());
                    self.put(&gap)?;
                }
                self.put(&[CMD_NEXT])?;
                self.put(&data[at..at + len])?;
                self.backup_boot_sector |= c == last;
                self.pos = c + 1;
                at += len;
                c += 1;
            }
        }
        Ok(Some(chunk))
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        if !self.backup_boot_sector {
            return Err(Self::unwritable(format!(
                "cluster {}, which holds the backup boot sector, was not written",
                self.header.nr_clusters
            )));
        }
        self.out.flush().map_err(|e| Error::Write {
            target: self.name.clone(),
            offset: self.written,
            source: e,
        })?;
        self.finished = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Silent;
    use std::io::Cursor;

    fn image(device_size: u64, nr: u64, records: &[u8]) -> Vec<u8> {
        let mut b = NtfscloneHeader::new(512, device_size, nr, 2).to_bytes();
        b.extend_from_slice(records);
        b
    }

    fn next(c: u8, len: usize) -> Vec<u8> {
        let mut v = vec![CMD_NEXT];
        v.extend(std::iter::repeat_n(c, len));
        v
    }

    fn gap(n: i64) -> Vec<u8> {
        let mut v = vec![CMD_GAP];
        v.extend_from_slice(&n.to_le_bytes());
        v
    }

    fn read_all(img: &[u8]) -> Result<Vec<Chunk>> {
        let mut r = NtfscloneReader::new(Cursor::new(img.to_vec()), "t")?;
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk(&Silent)? {
            out.push(c);
        }
        Ok(out)
    }

    #[test]
    fn header_round_trips_and_has_the_verified_layout() {
        let h = NtfscloneHeader::new(4096, 67_108_864, 16_383, 1685);
        let b = h.to_bytes();
        assert_eq!(b.len(), 56);
        assert_eq!(&b[16..18], &[10, 1]);
        assert_eq!(&b[46..50], &[0x38, 0, 0, 0]);
        let mut input = Input::new(Cursor::new(b), "t", FORMAT);
        assert_eq!(NtfscloneHeader::read(&mut input).unwrap(), h);
        assert_eq!(input.pos(), 56);
    }

    #[test]
    fn partial_last_cluster_and_gaps() {
        // 3 clusters of 512 and a 100-byte tail: clusters 0, 2 and 3 (short).
        let mut rec = next(1, 512);
        rec.extend(gap(1));
        rec.extend(next(2, 512));
        rec.extend(next(3, 100));
        let chunks = read_all(&image(1636, 3, &rec)).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].extents,
            vec![
                Extent {
                    offset: 0,
                    len: 512
                },
                Extent {
                    offset: 1024,
                    len: 612
                }
            ]
        );
        assert_eq!(chunks[0].data.len(), 1124);
    }

    #[test]
    fn negative_gap_splits_chunks_and_sequential_refuses_it() {
        // Clusters 0 and 2, back to 1, then on to 3 (the last).
        let mut rec = next(1, 512);
        rec.extend(gap(1));
        rec.extend(next(2, 512));
        rec.extend(gap(-2));
        rec.extend(next(3, 512));
        rec.extend(gap(1));
        rec.extend(next(4, 512));
        let img = image(2048, 3, &rec);
        let chunks = read_all(&img).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].extents[0].offset, 512);
        let mut r = NtfscloneReader::new(Cursor::new(img), "t").unwrap();
        r.set_sequential(true);
        let err = loop {
            match r.next_chunk(&Silent) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("accepted"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("goes back to volume byte 512"), "{err}");
    }

    #[test]
    fn bad_records() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (gap(0), "gap of 0 clusters at byte 56"),
            (
                gap(5),
                "gap of 5 clusters at byte 56 goes from cluster 0 to 5",
            ),
            (gap(-1), "gap of -1 clusters"),
            (vec![7], "invalid command byte 0x07 at byte 56"),
            (
                vec![],
                "ends at byte 56, inside the next record that starts at byte 56",
            ),
            (
                next(1, 10),
                "inside block 0 (volume byte 0), whose data starts at byte 57",
            ),
            (
                vec![CMD_GAP, 1, 0],
                "inside the gap record that starts at byte 56",
            ),
        ];
        for (rec, want) in cases {
            let err = read_all(&image(2048, 3, &rec)).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        // 10.1 must end with the backup boot sector; 10.0 may not.
        let mut rec = next(1, 512);
        rec.extend(gap(2));
        let err = read_all(&image(2048, 3, &rec)).unwrap_err().to_string();
        assert!(err.contains("backup boot sector record"), "{err}");
        let mut img = image(2048, 3, &rec);
        img[17] = 0;
        assert_eq!(read_all(&img).unwrap().len(), 1);
    }

    #[test]
    fn writer_gaps_and_refusals() {
        let mut w = NtfscloneWriter::new(Vec::new(), "t", 512, 1636, 3, 2).unwrap();
        let chunk = Chunk {
            extents: vec![
                Extent {
                    offset: 0,
                    len: 512,
                },
                Extent {
                    offset: 1024,
                    len: 612,
                },
            ],
            data: vec![9; 1124],
            bad: vec![],
        };
        w.write_chunk(chunk).unwrap();
        w.finish().unwrap();
        let out = w.into_inner().unwrap();
        let mut want = image(1636, 3, &next(9, 512));
        want.extend(gap(1));
        want.extend(next(9, 512));
        want.extend(next(9, 100));
        assert_eq!(out, want);
        // Without the backup boot sector's cluster, finishing fails.
        let mut w = NtfscloneWriter::new(Vec::new(), "t", 512, 1636, 3, 2).unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(
            err.contains("cluster 3, which holds the backup boot sector"),
            "{err}"
        );
        assert!(NtfscloneWriter::new(Vec::new(), "t", 512, 1536, 3, 2).is_err());
    }
}
