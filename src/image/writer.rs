//! Image writer: a [`Sink`] that encodes chunks as records, compressing
//! them on every core when asked, and ends the image with its trailer.

use std::io::{self, Write};

use super::IndexBuilder;
use super::disk::DiskBlock;
use super::header::Header;
use super::record::{Layout, encode_head};
use super::trailer::Trailer;
use crate::copier::{Chunk, Extent};
use crate::error::{Error, Result};
use crate::pool::OrderedPool;
use crate::sink::Sink;

/// An encoded record: its header and table, and the compressed payload in
/// `packed` (unless `compressed` is false: the chunk's own bytes are the
/// payload then, and `packed` is only a buffer to reuse).
struct Encoded {
    head: Vec<u8>,
    packed: Vec<u8>,
    compressed: bool,
    layout: Layout,
}

/// A chunk to encode, and a buffer for its compressed bytes.
type Job = (Chunk, Layout, Vec<u8>);
type Done = (Chunk, io::Result<Encoded>);

/// Writes an image to `W`.
pub struct ImageWriter<W: Write> {
    out: W,
    name: String,
    pos: u64,
    cluster_size: u32,
    prev_end: u64,
    used_clusters: u64,
    used_bytes: u64,
    index: IndexBuilder,
    bad_ranges: Vec<Extent>,
    pool: Option<OrderedPool<Job, Done>>,
    max_in_flight: u64,
    /// Compressed-payload buffers of written records, for the next ones
    /// (no allocation per record).
    spare: Vec<Vec<u8>>,
    finished: bool,
}

/// Encodes one record, compressing with `zstd` into `packed` when given,
/// and keeping it when that makes it smaller.
fn encode(
    data: &[u8],
    layout: Layout,
    zstd: Option<&mut zstd::bulk::Compressor<'static>>,
    mut packed: Vec<u8>,
) -> io::Result<Encoded> {
    let crc = crc32fast::hash(data);
    let raw_len = data.len() as u32;
    let compressed = match zstd {
        Some(c) => {
            // The bound makes the frame always fit: the capacity is what
            // zstd writes into.
            packed.clear();
            packed.reserve(zstd::zstd_safe::compress_bound(data.len()));
            c.compress_to_buffer(data, &mut packed)?;
            packed.len() < data.len()
        }
        None => false,
    };
    let stored = if compressed {
        packed.len() as u32
    } else {
        raw_len
    };
    Ok(Encoded {
        head: encode_head(compressed, &layout, raw_len, stored, crc),
        packed,
        compressed,
        layout,
    })
}

impl<W: Write> ImageWriter<W> {
    /// Starts an image on `out` (named `name` in messages) by writing
    /// `header`. With `zstd_level`, records are compressed on `threads`
    /// threads.
    pub fn new(
        out: W,
        name: &str,
        header: &Header,
        zstd_level: Option<i32>,
        threads: usize,
    ) -> Result<Self> {
        Self::with_disk(out, name, header, None, zstd_level, threads)
    }

    /// [`Self::new`] for a whole disk: the disk block follows the header
    /// (whose FLAG_DISK the caller sets).
    pub fn with_disk(
        mut out: W,
        name: &str,
        header: &Header,
        disk: Option<&DiskBlock>,
        zstd_level: Option<i32>,
        threads: usize,
    ) -> Result<Self> {
        let mut head = header.to_bytes().to_vec();
        if let Some(d) = disk {
            head.extend(d.to_bytes());
        }
        out.write_all(&head).map_err(|e| Error::Write {
            target: name.to_string(),
            offset: 0,
            source: e,
        })?;
        let pool = zstd_level.map(|level| {
            OrderedPool::new(threads, move || {
                let mut ctx = zstd::bulk::Compressor::new(level).map(|mut c| {
                    // Content size in the frame; our own CRC covers the data.
                    let _ = c.include_contentsize(true);
                    let _ = c.include_checksum(false);
                    c
                });
                move |(chunk, layout, packed): Job| -> Done {
                    let r = match &mut ctx {
                        Ok(c) => encode(&chunk.data, layout, Some(c), packed),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    };
                    (chunk, r)
                }
            })
        });
        Ok(ImageWriter {
            out,
            name: name.to_string(),
            pos: head.len() as u64,
            cluster_size: header.cluster_size,
            prev_end: 0,
            used_clusters: 0,
            used_bytes: 0,
            index: IndexBuilder::new(),
            bad_ranges: Vec::new(),
            max_in_flight: 2 * threads.max(1) as u64,
            pool,
            spare: Vec::new(),
            finished: false,
        })
    }

    /// Ranges of the volume that could not be read, for the trailer.
    pub fn set_bad_ranges(&mut self, ranges: Vec<Extent>) {
        self.bad_ranges = ranges;
    }

    /// The output, once finished.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| Error::Write {
            target: self.name.clone(),
            offset: self.pos,
            source: e,
        })?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn emit(&mut self, chunk: &Chunk, enc: Encoded) -> Result<()> {
        self.index.push(self.pos, enc.layout.first_cluster);
        self.used_clusters += enc.layout.clusters;
        self.used_bytes += chunk.data.len() as u64;
        self.put(&enc.head)?;
        if enc.compressed {
            self.put(&enc.packed)?;
        } else {
            self.put(&chunk.data)?;
        }
        if enc.packed.capacity() > 0 && (self.spare.len() as u64) <= self.max_in_flight {
            self.spare.push(enc.packed);
        }
        Ok(())
    }

    fn emit_done(&mut self, (chunk, enc): Done) -> Result<Chunk> {
        let enc = enc.map_err(|e| Error::Write {
            target: self.name.clone(),
            offset: self.pos,
            source: e,
        })?;
        self.emit(&chunk, enc)?;
        Ok(chunk)
    }
}

impl<W: Write> Sink for ImageWriter<W> {
    fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
        let layout = Layout::new(&chunk.extents, self.cluster_size);
        debug_assert!(layout.first_cluster >= self.prev_end);
        self.prev_end = layout.end_cluster;
        let Some(pool) = self.pool.as_mut() else {
            let enc = encode(&chunk.data, layout, None, Vec::new()).map_err(|e| Error::Write {
                target: self.name.clone(),
                offset: self.pos,
                source: e,
            })?;
            self.emit(&chunk, enc)?;
            return Ok(Some(chunk));
        };
        let packed = self.spare.pop().unwrap_or_default();
        pool.submit((chunk, layout, packed));
        if pool.in_flight() < self.max_in_flight {
            return Ok(None);
        }
        let done = pool.next_result().expect("records are in flight");
        self.emit_done(done).map(Some)
    }

    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        while let Some(done) = self.pool.as_mut().and_then(|p| p.next_result()) {
            self.emit_done(done)?;
        }
        let trailer = Trailer {
            records: self.index.records(),
            used_clusters: self.used_clusters,
            used_bytes: self.used_bytes,
            bad_ranges: std::mem::take(&mut self.bad_ranges),
            index: self.index.entries.clone(),
            stride: self.index.stride,
        };
        self.put(&trailer.to_bytes())?;
        self.out.flush().map_err(|e| Error::Write {
            target: self.name.clone(),
            offset: self.pos,
            source: e,
        })?;
        self.finished = true;
        Ok(())
    }
}
