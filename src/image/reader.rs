//! Streaming image reader: header, records, trailer, front to back, so it
//! works on a pipe. Every structure is checked before it is trusted.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use super::disk::{DiskBlock, TAG_DISK};
use super::header::{HEADER_LEN, Header};
use super::record::{Fixed, RECORD_HEADER_LEN, RawRecord, TAG_DATA, TAG_DATZ};
use super::trailer::{TAG_TRAILER, Trailer};
use super::{ImageError, IndexBuilder};
use crate::error::{Error, Result};

/// Reads an image from any byte stream.
pub struct ImageReader<R> {
    r: R,
    name: String,
    pos: u64,
    header: Header,
    prev_end: u64,
    used_clusters: u64,
    used_bytes: u64,
    index: IndexBuilder,
    trailer: Option<Trailer>,
    disk: Option<DiskBlock>,
    /// Buffers of consumed records, reused for the next records' data.
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept at most.
const MAX_SPARE: usize = 16;

impl<R: Read> ImageReader<R> {
    /// Reads and checks the header. `name` names the image in messages.
    pub fn new(r: R, name: &str) -> Result<Self> {
        let mut me = ImageReader {
            r,
            name: name.to_string(),
            pos: 0,
            header: Header {
                minor: 0,
                fs: 0,
                flags: 0,
                cluster_size: 512,
                device_size: 0,
                total_clusters: 0,
                used_clusters: 0,
                used_bytes: 0,
                compression: 0,
                max_record: 0,
                writer: String::new(),
            },
            prev_end: 0,
            used_clusters: 0,
            used_bytes: 0,
            index: IndexBuilder::new(),
            trailer: None,
            disk: None,
            spare: Vec::new(),
        };
        let mut prefix = [0u8; 16];
        me.fill(&mut prefix, "header", 0)?;
        let len = Header::prefix_len(&prefix)?;
        let mut b = vec![0u8; len];
        b[..16].copy_from_slice(&prefix);
        me.fill(&mut b[16..], "header", 0)?;
        me.header = Header::from_bytes(&b)?;
        if me.header.flags & super::header::FLAG_DISK != 0 {
            me.read_disk_block()?;
        }
        Ok(me)
    }

    /// Reads the disk block that follows the header of a whole disk's image.
    fn read_disk_block(&mut self) -> Result<()> {
        let offset = self.pos;
        let mut head = [0u8; 8];
        self.fill(&mut head, "disk block", offset)?;
        let tag: [u8; 4] = head[..4].try_into().expect("4 bytes");
        if tag != TAG_DISK {
            return Err(ImageError::UnknownTag { offset, tag }.into());
        }
        let len = DiskBlock::check_len(
            offset,
            u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")),
        )?;
        let mut b = head.to_vec();
        b.extend(self.read_vec(len - 8, "disk block", offset)?);
        self.disk = Some(DiskBlock::from_bytes(offset, &b, self.header.device_size)?);
        Ok(())
    }

    /// The disk block of a whole disk's image.
    pub fn disk(&self) -> Option<&DiskBlock> {
        self.disk.as_ref()
    }

    /// The image header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The trailer, once [`Self::next_record`] has returned `None`.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Fills `buf`; the end of input is truncation of `what` (at `start`).
    fn fill(&mut self, buf: &mut [u8], what: &'static str, start: u64) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(ImageError::Truncated {
                        what,
                        offset: start,
                        end: self.pos,
                    }
                    .into());
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Read {
                        name: self.name.clone(),
                        offset: self.pos,
                        len: (buf.len() - done) as u64,
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads `len` bytes into a vector that grows as they arrive, so a
    /// length field in a hostile image cannot make us allocate more than
    /// the input holds (plus one step).
    /// Gives back the buffer of a record that has been consumed, so that a
    /// later record's data is read into it: no allocation, no page faults
    /// and no zeroing per record.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < MAX_SPARE {
            self.spare.push(buf);
        }
    }

    /// A record's `len` bytes of data, read into a spare buffer when one is
    /// large enough.
    fn read_data(&mut self, len: usize, what: &'static str, start: u64) -> Result<Vec<u8>> {
        let Some(i) = self.spare.iter().position(|b| b.capacity() >= len) else {
            return self.read_vec(len, what, start);
        };
        let mut v = self.spare.swap_remove(i);
        // Only bytes the buffer never held are zeroed: a recycled buffer
        // of a full record is reused as it is, then overwritten.
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0);
        }
        self.fill(&mut v, what, start)?;
        Ok(v)
    }

    fn read_vec(&mut self, len: usize, what: &'static str, start: u64) -> Result<Vec<u8>> {
        const STEP: usize = 1 << 20;
        let mut v = Vec::with_capacity(len.min(STEP));
        while v.len() < len {
            let at = v.len();
            v.resize(at + (len - at).min(STEP), 0);
            self.fill(&mut v[at..], what, start)?;
        }
        Ok(v)
    }

    /// The next record, its header and extent table checked; `None` after
    /// the trailer has been read and checked and the input has ended.
    pub fn next_record(&mut self) -> Result<Option<RawRecord>> {
        if self.trailer.is_some() {
            return Ok(None);
        }
        let offset = self.pos;
        let mut head = [0u8; RECORD_HEADER_LEN];
        self.fill(&mut head[..4], "record or trailer", offset)?;
        let tag: [u8; 4] = head[..4].try_into().expect("4 bytes");
        if tag == TAG_TRAILER {
            self.read_trailer(offset)?;
            return Ok(None);
        }
        if tag != TAG_DATA && tag != TAG_DATZ {
            return Err(ImageError::UnknownTag { offset, tag }.into());
        }
        self.fill(&mut head[4..], "record header", offset)?;
        let f = Fixed::from_bytes(&head);
        // Bound what the header asks us to allocate before reading the rest.
        f.check_bounds(offset, &self.header)?;
        let mut table = vec![0u8; f.table_len as usize];
        self.fill(&mut table, "record extent table", offset)?;
        let (extents, end, clusters) =
            f.check(offset, &head, &table, &self.header, self.prev_end)?;
        let stored = self.read_data(f.stored_len as usize, "record data", offset)?;
        self.index.push(offset, f.first_cluster);
        self.prev_end = end;
        self.used_clusters += clusters;
        self.used_bytes += u64::from(f.raw_len);
        Ok(Some(RawRecord {
            offset,
            zstd: f.zstd,
            extents,
            raw_len: f.raw_len,
            payload_crc: f.payload_crc,
            stored,
        }))
    }

    fn read_trailer(&mut self, offset: u64) -> Result<()> {
        let mut len = [0u8; 4];
        self.fill(&mut len, "trailer", offset)?;
        let len = Trailer::check_len(offset, u32::from_le_bytes(len))?;
        let mut b = Vec::with_capacity(8);
        b.extend_from_slice(&super::trailer::TAG_TRAILER);
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend(self.read_vec(len - 8, "trailer", offset)?);
        let t = Trailer::from_bytes(offset, &b, self.header.device_size)?;
        let checks = [
            ("record count", t.records, self.index.records()),
            ("used clusters", t.used_clusters, self.used_clusters),
            ("used bytes", t.used_bytes, self.used_bytes),
            (
                "header's used clusters",
                self.header.used_clusters,
                self.used_clusters,
            ),
            (
                "header's used bytes",
                self.header.used_bytes,
                self.used_bytes,
            ),
            ("index stride", t.stride, self.index.stride),
            (
                "index length",
                t.index.len() as u64,
                self.index.entries.len() as u64,
            ),
        ];
        for (field, stored, actual) in checks {
            if stored != actual {
                return Err(ImageError::TrailerMismatch {
                    offset,
                    field,
                    stored,
                    actual,
                }
                .into());
            }
        }
        if let Some(k) = (0..t.index.len()).find(|&k| t.index[k] != self.index.entries[k]) {
            let ((stored_offset, stored_cluster), (offset_read, cluster_read)) =
                (t.index[k], self.index.entries[k]);
            let (field, stored, actual) = if stored_offset != offset_read {
                ("index entry offset", stored_offset, offset_read)
            } else {
                ("index entry first cluster", stored_cluster, cluster_read)
            };
            return Err(ImageError::TrailerMismatch {
                offset,
                field,
                stored,
                actual,
            }
            .into());
        }
        // The image must end here.
        let mut extra = [0u8; 1];
        loop {
            match self.r.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(ImageError::TrailingGarbage { offset: self.pos }.into()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Read {
                        name: self.name.clone(),
                        offset: self.pos,
                        len: 1,
                        source: e,
                    });
                }
            }
        }
        self.trailer = Some(t);
        Ok(())
    }
}

/// Reads the header and, through the trailer's length at the end, the
/// trailer of a seekable image, without reading the records (`fsimg info`).
/// The header is read from the start of the file, wherever its cursor is.
pub fn read_header_and_trailer(file: &mut File, name: &str) -> Result<(Header, Trailer)> {
    read_ends(file, name).map(|(h, _, t)| (h, t))
}

/// [`read_header_and_trailer`], with the disk block of a whole disk's
/// image, from any seekable reader of the image.
pub fn read_ends<F: Read + Seek>(
    file: &mut F,
    name: &str,
) -> Result<(Header, Option<DiskBlock>, Trailer)> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("cannot seek in", name, e))?;
    let reader = ImageReader::new(&mut *file, name)?;
    let (header, disk) = (reader.header, reader.disk);
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io("cannot seek in", name, e))?;
    let read_at = |file: &mut F, offset: u64, buf: &mut [u8]| -> Result<()> {
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ImageError::Truncated {
                    what: "trailer",
                    offset,
                    end: size,
                }
                .into(),
                _ => Error::Read {
                    name: name.to_string(),
                    offset,
                    len: buf.len() as u64,
                    source: e,
                },
            })
    };
    let tail_at = size
        .checked_sub(16)
        .filter(|&t| t >= HEADER_LEN as u64)
        .ok_or(ImageError::Truncated {
            what: "trailer",
            offset: HEADER_LEN as u64,
            end: size,
        })?;
    let mut tail = [0u8; 16];
    read_at(file, tail_at, &mut tail)?;
    if tail[4..12] != super::trailer::END_MAGIC {
        return Err(ImageError::Truncated {
            what: "trailer",
            offset: tail_at,
            end: size,
        }
        .into());
    }
    let len = Trailer::check_len(
        tail_at,
        u32::from_le_bytes(tail[..4].try_into().expect("4")),
    )?;
    let start = size.checked_sub(len as u64).ok_or(ImageError::Truncated {
        what: "trailer",
        offset: 0,
        end: size,
    })?;
    let mut b = vec![0u8; len];
    read_at(file, start, &mut b)?;
    if b[..4] != TAG_TRAILER {
        return Err(ImageError::UnknownTag {
            offset: start,
            tag: b[..4].try_into().expect("4"),
        }
        .into());
    }
    let t = Trailer::from_bytes(start, &b, header.device_size)?;
    Ok((header, disk, t))
}
