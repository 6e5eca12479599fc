//! Random access to the volume inside one of fsimg's own images, plain or
//! zstd, without reading it from the start: the trailer's index leads to
//! the record that holds a byte (a binary search by first cluster, then at
//! most `stride` record headers read forward), and that record alone is
//! read, decompressed and checked against its CRCs, as the sequential
//! reader checks it (the same functions of [`crate::image::record`]).
//!
//! An image whose trailer is missing or damaged (a truncated copy) is
//! indexed at open by one scan of its record headers (no payload is read),
//! with a warning. Bytes no record holds read as zeros, as a restore writes
//! them; a rescue image's unreadable sectors read as the bad-sector marker
//! its records hold.
//!
//! Memory stays bounded whatever the image size: the index has at most
//! [`crate::image::MAX_INDEX_ENTRIES`] entries (the trailer's, or one the
//! scan builds the same way), and two caches with least-recently-used
//! eviction hold the decoded payloads ([`CACHE_BYTES`]) and the parsed
//! record headers ([`HEADER_CACHE_BYTES`]). The payloads' bound covers
//! every record buffer, those of records being decoded too: there are at
//! most as many as it holds, all of one size, reused rather than freed
//! (see [`Buffers`]).
//!
//! Many threads may read at once (a mount serves reads on several): a
//! record is decoded by one of them while the others that need it wait for
//! it, and [`ImageSource::prefetch`] decodes the records ahead of a
//! sequential reader on other threads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::image::disk::DiskBlock;
use crate::image::header::Header;
use crate::image::reader::read_ends;
use crate::image::record::{Fixed, RECORD_HEADER_LEN, RawRecord, TAG_DATA, TAG_DATZ};
use crate::image::trailer::{TAG_TRAILER, TRAILER_BASE_LEN, Trailer};
use crate::image::{ImageError, ImageReader, IndexBuilder};
use crate::report::Report;
use crate::source::Source;

/// Decoded record payloads kept at most, in bytes: 64 MiB, 32 records of
/// the 2 MiB `-z` writes or 64 of the 1 MiB plain images hold (with the
/// buffers of the records being read). A record is at most 64 MiB (the
/// format's limit), so any one record fits.
pub const CACHE_BYTES: u64 = 64 << 20;

/// Parsed record headers kept at most, in bytes (counted as 64 bytes per
/// header plus 16 per extent): 4 MiB, some 50,000 headers of contiguous
/// records.
pub const HEADER_CACHE_BYTES: u64 = 4 << 20;

/// Decompression contexts kept for reuse between reads.
const MAX_DECODERS: usize = 8;

/// The message for a pipe, a FIFO, a terminal or standard input.
pub fn not_seekable(name: &str) -> Error {
    Error::Usage(format!(
        "{name}: random access needs a seekable file; save the image to a file first"
    ))
}

/// Reads a file through positioned reads: its own position, none shared
/// with other readers of the file.
pub(crate) struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    len: u64,
}

impl<'a> ReadAt<'a> {
    /// Reads `file` (of `len` bytes) from its start.
    pub(crate) fn new(file: &'a File, len: u64) -> Self {
        ReadAt { file, pos: 0, len }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ReadAt<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or(io::ErrorKind::InvalidInput)?;
        Ok(self.pos)
    }
}

/// The length of an open regular file or block device; anything else
/// cannot be read at random.
pub(crate) fn seekable_len(file: &File, name: &str) -> Result<u64> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io("cannot stat", name, e))?;
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(meta.len())
    } else if ft.is_block_device() {
        let mut f = file;
        f.seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot find the size of", name, e))
    } else {
        Err(not_seekable(name))
    }
}

/// A record's header and extent table, parsed and checked.
#[derive(Debug)]
struct Head {
    /// Its number in the image (0 for the first record).
    number: u64,
    /// Where it starts in the image.
    offset: u64,
    /// Its fixed fields.
    fixed: Fixed,
    /// The extents it fills, in bytes of the volume.
    extents: Vec<Extent>,
    /// One past its last cluster.
    end_cluster: u64,
    /// Where its payload starts in the image.
    payload_at: u64,
}

impl Head {
    /// Where the next record (or the trailer) starts.
    fn next(&self) -> u64 {
        self.payload_at + u64::from(self.fixed.stored_len)
    }

    /// The volume bytes from its first extent's start to its last's end.
    fn span(&self) -> (u64, u64) {
        let first = self.extents.first().map_or(0, |e| e.offset);
        (first, self.extents.last().map_or(first, Extent::end))
    }

    /// What it costs in the header cache.
    fn weight(&self) -> u64 {
        64 + 16 * self.extents.len() as u64
    }
}

/// A small least-recently-used map from record numbers to values, bounded
/// by the sum of the values' weights.
struct Lru<V> {
    map: HashMap<u64, (V, u64, u64)>,
    order: BTreeMap<u64, u64>,
    tick: u64,
    bytes: u64,
    limit: u64,
}

impl<V: Clone> Lru<V> {
    fn new(limit: u64) -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            limit,
        }
    }

    fn get(&mut self, key: u64) -> Option<V> {
        let (v, tick, _) = self.map.get_mut(&key)?;
        self.order.remove(tick);
        self.tick += 1;
        *tick = self.tick;
        self.order.insert(self.tick, key);
        Some(v.clone())
    }

    /// Keeps `v` under `key` unless it alone weighs more than the limit,
    /// evicting the least recently used values to make room; returns the
    /// values evicted (or `v`, not kept).
    fn insert(&mut self, key: u64, v: V, weight: u64) -> Vec<V> {
        let mut evicted = Vec::new();
        if weight > self.limit {
            evicted.push(v);
            return evicted;
        }
        if let Some((old, tick, w)) = self.map.remove(&key) {
            self.order.remove(&tick);
            self.bytes -= w;
            evicted.push(old);
        }
        while self.bytes + weight > self.limit {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _, w)) = self.map.remove(&old) {
                self.bytes -= w;
                evicted.push(old);
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.map.insert(key, (v, self.tick, weight));
        self.bytes += weight;
        evicted
    }

    /// Evicts the least recently used value.
    fn pop_lru(&mut self) -> Option<V> {
        while let Some((_, old)) = self.order.pop_first() {
            if let Some((old, _, w)) = self.map.remove(&old) {
                self.bytes -= w;
                return Some(old);
            }
        }
        None
    }
}

/// The caches, behind one lock.
struct Caches {
    /// Record number → parsed header. The index only names every
    /// `stride`-th record, so the headers of the records between are
    /// kept here once read: reading on from one record to the next then
    /// reads no header again. Keyed by number (a record's number and its
    /// image offset identify it equally; the number is what the index
    /// arithmetic gives) and bounded by [`HEADER_CACHE_BYTES`], so a
    /// lookup the cache cannot serve costs at most `stride` header reads.
    heads: Lru<Arc<Head>>,
    /// Record number → decoded, checked payload.
    data: Lru<Arc<Payload>>,
    /// Records some thread is decoding now: another thread that needs one
    /// waits for it (on [`ImageSource::decoded_one`]) instead of decoding
    /// it again.
    decoding: HashSet<u64>,
}

/// Record buffers are allocated in multiples of this.
const BUFFER_UNIT: usize = 64 << 10;

/// The record buffers of one image: all of one capacity, room for its
/// largest record compressed or not, and at most `max` of them, whether
/// cached payloads, records being decoded or spares. They are reused, not
/// freed: glibc does not give back the blocks threads free and allocate in
/// turns (a mount reading a 4 GiB image through a 64 MiB cache grew to
/// 800 MiB of them), and a buffer a few bytes larger than the block freed
/// before leaves a hole.
struct Buffers {
    /// Those no payload holds.
    free: Vec<Vec<u8>>,
    /// Those allocated.
    count: usize,
    /// The most to allocate (more only while readers hold every one).
    max: usize,
    /// The capacity of each.
    unit: usize,
}

impl Buffers {
    /// The buffers of an image with header `h` and a payload cache of
    /// `cache_bytes`.
    fn new(h: &Header, cache_bytes: u64) -> Self {
        let max_record = h.max_record as usize;
        let stored = if h.compression == crate::image::header::COMPRESSION_ZSTD {
            zstd::zstd_safe::compress_bound(max_record)
        } else {
            max_record
        };
        let unit = stored.max(max_record).next_multiple_of(BUFFER_UNIT);
        Buffers {
            free: Vec::new(),
            count: 0,
            // A decode takes two, and one payload is cached.
            max: (usize::try_from(cache_bytes).unwrap_or(usize::MAX) / unit).max(3),
            unit,
        }
    }

    /// Takes `buf` back, or frees it if there are too many.
    fn put(&mut self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        if self.count > self.max || buf.capacity() < self.unit {
            self.count -= 1;
        } else {
            self.free.push(buf);
        }
    }
}

/// A decoded payload. Its buffer goes back to its image's [`Buffers`] when
/// the last reader drops it.
struct Payload {
    data: Vec<u8>,
    home: Arc<Mutex<Buffers>>,
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.data);
        lock_buffers(&self.home).put(buf);
    }
}

fn lock_buffers(b: &Mutex<Buffers>) -> MutexGuard<'_, Buffers> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What [`ImageSource::claim`] found of a record.
enum Claim<'a> {
    /// Its payload, from the cache.
    Cached(Arc<Payload>),
    /// Nobody has it: the caller decodes it, and puts the payload into
    /// the [`Decoding`], which caches it and wakes the waiting threads.
    Mine(Decoding<'a>),
    /// Another thread is decoding it (asked not to wait).
    Busy,
}

/// A record claimed for decoding, released when its decoding ends however
/// it ends (a panic included: the waiting threads then decode it
/// themselves).
struct Decoding<'a> {
    src: &'a ImageSource,
    number: u64,
    data: Option<Arc<Payload>>,
}

impl Drop for Decoding<'_> {
    fn drop(&mut self) {
        let mut c = self.src.lock();
        c.decoding.remove(&self.number);
        let evicted = match self.data.take() {
            Some(d) => {
                let weight = d.data.capacity() as u64;
                c.data.insert(self.number, d, weight)
            }
            None => Vec::new(),
        };
        drop(c);
        self.src.decoded_one.notify_all();
        // Their buffers go back (outside the lock).
        drop(evicted);
    }
}

/// Where a byte of the volume is.
enum Found {
    /// In the span of this record (possibly between two of its extents).
    Record(Arc<Head>),
    /// In no record: zeros up to this volume byte.
    Gap(u64),
}

/// The volume inside an fsimg image file, read at random.
pub struct ImageSource {
    file: File,
    name: String,
    file_len: u64,
    header: Header,
    disk: Option<DiskBlock>,
    /// (image offset, first cluster) of records 0, stride, 2·stride, ...
    index: Vec<(u64, u64)>,
    stride: u64,
    records: u64,
    /// Where the records end: the trailer, or where the scan stopped.
    records_end: u64,
    /// The trailer, when it was found intact.
    trailer: Option<Trailer>,
    caches: Mutex<Caches>,
    /// Signalled each time a thread ends decoding a record.
    decoded_one: Condvar,
    decoders: Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
    decoded: AtomicU64,
    hits: AtomicU64,
    /// The record buffers.
    buffers: Arc<Mutex<Buffers>>,
    /// Their capacity.
    buffer_unit: usize,
}

impl ImageSource {
    /// Opens the image `file`, named `name` in messages, with a payload
    /// cache of [`CACHE_BYTES`]. A missing or damaged trailer is warned
    /// about through `report`, and the records are found by a scan.
    pub fn open(file: File, name: &str, report: &dyn Report) -> Result<Self> {
        Self::open_with_cache(file, name, report, CACHE_BYTES)
    }

    /// [`Self::open`] with a payload cache of `cache_bytes`.
    pub fn open_with_cache(
        file: File,
        name: &str,
        report: &dyn Report,
        cache_bytes: u64,
    ) -> Result<Self> {
        let file_len = seekable_len(&file, name)?;
        let reader = ImageReader::new(ReadAt::new(&file, file_len), name)?;
        let start = reader.position();
        let header = reader.header().clone();
        let disk = reader.disk().cloned();
        let buffers = Buffers::new(&header, cache_bytes);
        let buffer_unit = buffers.unit;
        let mut me = ImageSource {
            file,
            name: name.to_string(),
            file_len,
            header,
            disk,
            index: Vec::new(),
            stride: 1,
            records: 0,
            records_end: start,
            trailer: None,
            caches: Mutex::new(Caches {
                heads: Lru::new(HEADER_CACHE_BYTES),
                data: Lru::new(cache_bytes),
                decoding: HashSet::new(),
            }),
            decoded_one: Condvar::new(),
            decoders: Mutex::new(Vec::new()),
            decoded: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            buffers: Arc::new(Mutex::new(buffers)),
            buffer_unit,
        };
        let trailer = read_ends(&mut ReadAt::new(&me.file, file_len), name)
            .and_then(|(_, _, t)| me.use_trailer(start, t));
        if let Err(damage) = trailer {
            me.scan(start, damage, report)?;
        }
        Ok(me)
    }

    /// Takes the index of trailer `t`, after checking that it can serve:
    /// its counts agree with each other and the header, and its entries
    /// ascend within the records.
    fn use_trailer(&mut self, start: u64, t: Trailer) -> Result<()> {
        let len = TRAILER_BASE_LEN as u64 + 16 * (t.bad_ranges.len() + t.index.len()) as u64;
        let at = self.file_len - len;
        let mismatch = |field, stored, actual| -> Result<()> {
            Err(ImageError::TrailerMismatch {
                offset: at,
                field,
                stored,
                actual,
            }
            .into())
        };
        if t.index.len() as u64 != t.records.div_ceil(t.stride) {
            return mismatch("index length", t.index.len() as u64, t.records);
        }
        for (field, stored, actual) in [
            ("used clusters", t.used_clusters, self.header.used_clusters),
            ("used bytes", t.used_bytes, self.header.used_bytes),
        ] {
            if stored != actual {
                return mismatch(field, stored, actual);
            }
        }
        let mut prev: Option<(u64, u64)> = None;
        for &(offset, cluster) in &t.index {
            let ok = match prev {
                None => offset == start,
                Some((o, c)) => offset > o && cluster > c,
            };
            if !ok || offset >= at || cluster >= self.header.total_clusters {
                return mismatch("index entry offset", offset, prev.map_or(start, |p| p.0));
            }
            prev = Some((offset, cluster));
        }
        self.index = t.index.clone();
        self.stride = t.stride;
        self.records = t.records;
        self.records_end = at;
        self.trailer = Some(t);
        Ok(())
    }

    /// Indexes the records by reading their headers from `start` until the
    /// image ends or a record cannot be read, and warns that the image is
    /// incomplete (`damage`: what was wrong with the trailer).
    fn scan(&mut self, start: u64, damage: Error, report: &dyn Report) -> Result<()> {
        let mut index = IndexBuilder::new();
        let mut pos = start;
        let mut prev_end = 0;
        let why = loop {
            let mut tag = [0u8; 4];
            match self.pread(&mut tag, pos, "record or trailer") {
                Ok(()) if tag == TAG_TRAILER => break damage,
                Ok(()) => {}
                Err(e) => break e,
            }
            let head = match self.read_head(index.records(), pos, prev_end) {
                Ok(h) if h.next() > self.file_len => {
                    break ImageError::Truncated {
                        what: "record data",
                        offset: pos,
                        end: self.file_len,
                    }
                    .into();
                }
                Ok(h) => h,
                Err(e) => break e,
            };
            index.push(pos, head.fixed.first_cluster);
            prev_end = head.end_cluster;
            pos = head.next();
        };
        let n = index.records();
        report.warn(&format!(
            "{}: the image is incomplete ({why}): {n} record{} found by scanning it; \
             the volume's bytes in no record read as zeros",
            self.name,
            if n == 1 { "" } else { "s" }
        ));
        self.stride = index.stride;
        self.index = index.entries;
        self.records = n;
        self.records_end = pos;
        Ok(())
    }

    /// The image header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The disk block of a whole disk's image.
    pub fn disk(&self) -> Option<&DiskBlock> {
        self.disk.as_ref()
    }

    /// The trailer, when the image has an intact one (else its records
    /// were found by a scan).
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// Records the image holds (or, without a trailer, that were found).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Payload bytes in the cache now (at most the cache's bound).
    pub fn cached_bytes(&self) -> u64 {
        self.lock().data.bytes
    }

    /// Records read and decoded so far (cache misses).
    pub fn records_decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    /// Records found decoded in the cache so far (cache hits), counted
    /// once per record a read or a prefetch needed.
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Decodes into the cache the records that hold volume bytes
    /// `offset..offset + len` (clamped to the volume), for a sequential
    /// reader about to read them: records cached or being decoded by
    /// another thread are skipped. Stops at the first record that cannot
    /// be read; the read that needs its bytes meets the error.
    pub fn prefetch(&self, offset: u64, len: u64) -> Result<()> {
        let end = offset.saturating_add(len).min(self.size());
        let mut pos = offset;
        while pos < end {
            let next = match self.locate(pos)? {
                Found::Gap(to) => to,
                Found::Record(h) => {
                    if let Claim::Mine(mut guard) = self.claim(h.number, false) {
                        guard.data = Some(self.decode(&h)?);
                    }
                    h.span().1
                }
            };
            if next <= pos {
                break;
            }
            pos = next;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Caches> {
        // A panic elsewhere cannot leave the caches inconsistent in a way
        // that matters: every entry is checked before it is inserted.
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fills `buf` from image byte `at`; the end of the file is
    /// truncation of `what`.
    fn pread(&self, buf: &mut [u8], at: u64, what: &'static str) -> Result<()> {
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ImageError::Truncated {
                    what,
                    offset: at,
                    end: self.file_len,
                }
                .into()
            } else {
                Error::Read {
                    name: self.name.clone(),
                    offset: at,
                    len: buf.len() as u64,
                    source: e,
                }
            }
        })
    }

    /// Reads and checks the header of record `number` at image byte
    /// `offset`; `prev_end` is where the record before it ended, if known
    /// (else 0).
    fn read_head(&self, number: u64, offset: u64, prev_end: u64) -> Result<Head> {
        let mut head = [0u8; RECORD_HEADER_LEN];
        self.pread(&mut head, offset, "record header")?;
        let tag: [u8; 4] = head[..4].try_into().expect("4 bytes");
        if tag != TAG_DATA && tag != TAG_DATZ {
            return Err(ImageError::UnknownTag { offset, tag }.into());
        }
        let fixed = Fixed::from_bytes(&head);
        fixed.check_bounds(offset, &self.header)?;
        let mut table = vec![0u8; fixed.table_len as usize];
        let table_at = offset + RECORD_HEADER_LEN as u64;
        self.pread(&mut table, table_at, "record extent table")?;
        let (extents, end_cluster, _) =
            fixed.check(offset, &head, &table, &self.header, prev_end)?;
        Ok(Head {
            number,
            offset,
            fixed,
            extents,
            end_cluster,
            payload_at: table_at + u64::from(fixed.table_len),
        })
    }

    /// The header of record `number` at image byte `offset`, from the
    /// cache or read. `expect` is the index entry (image offset, first
    /// cluster) that names the record, if one does.
    fn head(
        &self,
        number: u64,
        offset: u64,
        prev_end: u64,
        expect: Option<(u64, u64)>,
    ) -> Result<Arc<Head>> {
        let mismatch = |field, stored, actual| -> Error {
            ImageError::TrailerMismatch {
                offset: self.records_end,
                field,
                stored,
                actual,
            }
            .into()
        };
        if let Some((at, _)) = expect
            && at != offset
        {
            return Err(mismatch("index entry offset", at, offset));
        }
        if let Some(h) = self.lock().heads.get(number)
            && h.offset == offset
        {
            return Ok(h);
        }
        if offset >= self.records_end {
            return Err(ImageError::Truncated {
                what: "record",
                offset,
                end: self.records_end,
            }
            .into());
        }
        let h = self.read_head(number, offset, prev_end)?;
        if let Some((_, cluster)) = expect
            && cluster != h.fixed.first_cluster
        {
            return Err(mismatch(
                "index entry first cluster",
                cluster,
                h.fixed.first_cluster,
            ));
        }
        if h.next() > self.records_end {
            return Err(ImageError::Truncated {
                what: "record data",
                offset,
                end: self.records_end,
            }
            .into());
        }
        let h = Arc::new(h);
        let _ = self.lock().heads.insert(number, Arc::clone(&h), h.weight());
        Ok(h)
    }

    /// The record whose span holds volume byte `pos`, or the gap of
    /// zeros it lies in.
    fn locate(&self, pos: u64) -> Result<Found> {
        let cs = u64::from(self.header.cluster_size);
        let size = self.header.device_size;
        let c = pos / cs;
        let k = self.index.partition_point(|&(_, first)| first <= c);
        let Some(k) = k.checked_sub(1) else {
            let end = self
                .index
                .first()
                .map_or(size, |&(_, f)| f.saturating_mul(cs));
            return Ok(Found::Gap(end.min(size)));
        };
        let mut number = k as u64 * self.stride;
        let (offset, _) = self.index[k];
        let mut cur = self.head(number, offset, 0, Some(self.index[k]))?;
        // At most `stride` records: entry k + 1 starts after cluster c.
        loop {
            if cur.end_cluster > c {
                return Ok(Found::Record(cur));
            }
            number += 1;
            if number >= self.records {
                return Ok(Found::Gap(size));
            }
            let expect = number
                .is_multiple_of(self.stride)
                .then(|| self.index.get((number / self.stride) as usize))
                .flatten()
                .copied();
            let next = self.head(number, cur.next(), cur.end_cluster, expect)?;
            if next.fixed.first_cluster > c {
                return Ok(Found::Gap(next.span().0));
            }
            cur = next;
        }
    }

    /// Record `number` from the cache, or the right to decode it; if
    /// another thread is decoding it, waits for that (or with `wait`
    /// false, says so).
    fn claim(&self, number: u64, wait: bool) -> Claim<'_> {
        let mut c = self.lock();
        loop {
            if let Some(d) = c.data.get(number) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Claim::Cached(d);
            }
            if c.decoding.insert(number) {
                drop(c);
                return Claim::Mine(Decoding {
                    src: self,
                    number,
                    data: None,
                });
            }
            if !wait {
                return Claim::Busy;
            }
            c = self
                .decoded_one
                .wait(c)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The decoded, checked payload of the record `h`, decoded once
    /// however many threads ask for it at the same time.
    fn payload(&self, h: &Head) -> Result<Arc<Payload>> {
        match self.claim(h.number, true) {
            Claim::Cached(d) => Ok(d),
            Claim::Mine(mut guard) => {
                let d = self.decode(h)?;
                guard.data = Some(Arc::clone(&d));
                Ok(d)
            }
            // Only when asked not to wait.
            Claim::Busy => self.decode(h),
        }
    }

    /// An empty buffer for at least `len` bytes of a record being decoded:
    /// a free one, a new one if fewer than the most are allocated, else
    /// that of the payload least recently used (evicted from the cache).
    fn take_buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = loop {
            {
                let mut b = lock_buffers(&self.buffers);
                if let Some(v) = b.free.pop() {
                    break v;
                }
                if b.count < b.max {
                    b.count += 1;
                    break Vec::new();
                }
            }
            // Its buffer comes back when it is dropped, unless a reader
            // still holds it; then the next one is evicted.
            let Some(lru) = self.lock().data.pop_lru() else {
                // Readers hold every buffer: one more, freed when it
                // comes back.
                lock_buffers(&self.buffers).count += 1;
                break Vec::new();
            };
            drop(lru);
        };
        buf.clear();
        let want = len.max(self.buffer_unit);
        if buf.capacity() < want {
            buf = Vec::with_capacity(want);
        }
        buf
    }

    /// Gives back a buffer [`Self::take_buffer`] gave, and counts those
    /// `lost` (freed with a record that failed to decode).
    fn give_back(&self, buf: Vec<u8>, lost: usize) {
        let mut b = lock_buffers(&self.buffers);
        b.count -= lost;
        b.put(buf);
    }

    /// Reads, decompresses and checks the payload of the record `h`; also
    /// returns the buffer left over (a compressed record's stored bytes),
    /// to keep for reuse.
    fn decode(&self, h: &Head) -> Result<Arc<Payload>> {
        let mut stored = self.take_buffer(h.fixed.stored_len as usize);
        stored.resize(h.fixed.stored_len as usize, 0);
        if let Err(e) = self.pread(&mut stored, h.payload_at, "record data") {
            self.give_back(stored, 0);
            return Err(e);
        }
        let raw = RawRecord {
            offset: h.offset,
            zstd: h.fixed.zstd,
            extents: h.extents.clone(),
            raw_len: h.fixed.raw_len,
            payload_crc: h.fixed.payload_crc,
            stored,
        };
        let mut dctx = self
            .decoders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        // Decompressed into `spare`, which then holds the compressed bytes'
        // buffer (for a plain record, the payload is the stored bytes).
        let mut spare = if h.fixed.zstd {
            self.take_buffer(h.fixed.raw_len as usize)
        } else {
            Vec::new()
        };
        let taken = 1 + usize::from(h.fixed.zstd);
        let chunk = raw.decode(&mut dctx, &mut spare);
        if let Some(d) = dctx {
            let mut pool = self
                .decoders
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if pool.len() < MAX_DECODERS {
                pool.push(d);
            }
        }
        // The buffers not handed back here went with the record: the
        // payload's, or on an error, those the decoder dropped.
        let back = usize::from(spare.capacity() > 0);
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                self.give_back(spare, taken - back);
                return Err(e.into());
            }
        };
        self.give_back(spare, 0);
        self.decoded.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Payload {
            data: chunk.data,
            home: Arc::clone(&self.buffers),
        }))
    }

    /// Fills `buf` (volume bytes from `pos`) as far as the span of record
    /// `h` reaches, and returns how many bytes that is.
    fn copy_record(&self, h: &Head, buf: &mut [u8], pos: u64) -> Result<usize> {
        let stop = (pos + buf.len() as u64).min(h.span().1);
        let n = (stop - pos) as usize;
        buf[..n].fill(0);
        // The first extent that ends after `pos`. If it starts at `stop` or
        // later, the bytes asked for lie between the record's extents:
        // zeros, for which the record is not decoded.
        let first = h.extents.partition_point(|e| e.end() <= pos);
        if h.extents.get(first).is_none_or(|e| e.offset >= stop) {
            return Ok(n);
        }
        let data = self.payload(h)?;
        let mut at: u64 = h.extents[..first].iter().map(|e| e.len).sum();
        for e in &h.extents[first..] {
            if e.offset >= stop {
                break;
            }
            let (lo, hi) = (e.offset.max(pos), e.end().min(stop));
            if lo < hi {
                let from = (at + lo - e.offset) as usize;
                let to = (lo - pos) as usize;
                let len = (hi - lo) as usize;
                buf[to..to + len].copy_from_slice(&data[from..from + len]);
            }
            at += e.len;
        }
        Ok(n)
    }

    /// [`Source::read_exact_at`] with fsimg's errors.
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let out = &mut buf[(pos - offset) as usize..];
            pos += match self.locate(pos)? {
                Found::Gap(to) => {
                    let n = (to.min(end) - pos) as usize;
                    out[..n].fill(0);
                    n
                }
                Found::Record(h) => self.copy_record(&h, out, pos)?,
            } as u64;
        }
        Ok(())
    }
}

impl Source for ImageSource {
    fn size(&self) -> u64 {
        self.header.device_size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.size())
        {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.read(buf, offset).map_err(|e| match e {
            // Already names the image.
            Error::Read { ref source, .. } => io::Error::new(source.kind(), e.to_string()),
            e => io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", self.name)),
        })
    }

    fn sector_size(&self) -> u32 {
        self.disk.as_ref().map_or(512, |d| d.sector_size)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
