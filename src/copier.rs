//! The copier: turns the runs of an allocation map into large reads on one
//! thread while the sink writes on another. It knows nothing of any
//! filesystem.
//!
//! Runs are cut into chunks of at most `chunk_bytes` used bytes, on cluster
//! boundaries, so that the same map always gives the same chunks (the image
//! writer turns each chunk into one record). Runs separated by small gaps
//! are read with one read and the gap dropped, so a fragmented map does not
//! become many small reads.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use crate::error::{Error, Result};
pub use crate::extent::{Extent, UsedExtents, push_range};
use crate::fs::Scrub;
use crate::report::Report;
use crate::sink::Sink;
use crate::source::Source;

/// What an unreadable sector is filled with in rescue mode: these 10 bytes,
/// then `?` to the end of the sector (ntfsclone's convention).
pub const BAD_SECTOR_MARKER: &[u8; 10] = b"BadSectoR\0";

/// Used bytes of the volume on their way to a sink.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Extents in ascending order, not touching each other.
    pub extents: Vec<Extent>,
    /// The bytes of the extents, concatenated.
    pub data: Vec<u8>,
    /// Ranges of the extents that could not be read (rescue mode); their
    /// bytes in `data` hold the bad-sector marker.
    pub bad: Vec<Extent>,
}

impl Chunk {
    /// Each extent with its bytes.
    pub fn pieces(&self) -> impl Iterator<Item = (Extent, &[u8])> {
        let mut at = 0usize;
        self.extents.iter().map(move |e| {
            let s = &self.data[at..at + e.len as usize];
            at += e.len as usize;
            (*e, s)
        })
    }
}

/// Tuning of the copier.
#[derive(Clone, Copy, Debug)]
pub struct CopyOptions {
    /// Most used bytes per chunk (rounded down to whole clusters).
    pub chunk_bytes: u64,
    /// Largest gap between runs that is read through rather than skipped.
    pub max_read_gap: u64,
    /// Chunks in flight between the reader and the writer.
    pub depth: usize,
    /// Go on past read errors, marking each unreadable sector.
    pub rescue: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            chunk_bytes: 1 << 20,
            max_read_gap: 64 << 10,
            depth: 4,
            rescue: false,
        }
    }
}

/// Cuts the extents of a plan into chunk-sized lists of extents.
pub struct ChunkPlan<'a> {
    extents: Box<dyn Iterator<Item = Extent> + 'a>,
    /// The rest of an extent that did not fit the previous chunk.
    pending: Option<Extent>,
    limit: u64,
}

impl<'a> ChunkPlan<'a> {
    /// Plans chunks of at most `chunk_bytes` used bytes over `map`, cut on
    /// its units.
    pub fn new(map: &'a dyn UsedExtents, chunk_bytes: u64) -> Self {
        let unit = u64::from(map.unit().max(1));
        ChunkPlan {
            extents: map.extents(),
            pending: None,
            limit: (chunk_bytes / unit).max(1) * unit,
        }
    }
}

impl Iterator for ChunkPlan<'_> {
    type Item = Vec<Extent>;

    fn next(&mut self) -> Option<Vec<Extent>> {
        let mut out = Vec::new();
        let mut room = self.limit;
        while room > 0 {
            let e = match self.pending.take() {
                Some(e) => e,
                None => match self.extents.next() {
                    Some(e) => e,
                    None => break,
                },
            };
            if e.len > room {
                out.push(Extent {
                    offset: e.offset,
                    len: room,
                });
                self.pending = Some(Extent {
                    offset: e.offset + room,
                    len: e.len - room,
                });
                break;
            }
            room -= e.len;
            out.push(e);
        }
        (!out.is_empty()).then_some(out)
    }
}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Used bytes copied.
    pub bytes: u64,
    /// Chunks handed to the sink.
    pub chunks: u64,
    /// Unreadable ranges, ascending and merged (rescue mode).
    pub bad: Vec<Extent>,
}

/// Fills an unreadable piece with the bad-sector marker.
fn mark_bad(buf: &mut [u8]) {
    buf.fill(b'?');
    let n = buf.len().min(BAD_SECTOR_MARKER.len());
    buf[..n].copy_from_slice(&BAD_SECTOR_MARKER[..n]);
}

/// Reads `buf` from `offset`; a failed read is split in two on a sector
/// boundary, down to single sectors, so exactly the unreadable sectors are
/// marked and listed in `bad`.
fn rescue_read(
    src: &dyn Source,
    buf: &mut [u8],
    offset: u64,
    sector: u64,
    bad: &mut Vec<Extent>,
) -> Result<()> {
    match src.read_into(buf, offset) {
        Ok(()) => return Ok(()),
        Err(Error::Read { .. }) => {}
        Err(e) => return Err(e),
    }
    let len = buf.len() as u64;
    let next_boundary = (offset / sector + 1) * sector;
    if next_boundary >= offset + len {
        mark_bad(buf);
        push_range(bad, Extent { offset, len });
        return Ok(());
    }
    let mid = ((offset + len / 2) / sector * sector).max(next_boundary);
    let (a, b) = buf.split_at_mut((mid - offset) as usize);
    rescue_read(src, a, offset, sector, bad)?;
    rescue_read(src, b, mid, sector, bad)
}

/// Reads the chunk whose extents are `extents` into `chunk`. Without
/// `rescue`, a read error is [`Error::Unreadable`]; with it, the failed
/// extents are read again sector by sector.
pub fn read_chunk(
    src: &dyn Source,
    extents: Vec<Extent>,
    opts: &CopyOptions,
    chunk: &mut Chunk,
    scratch: &mut Vec<u8>,
) -> Result<()> {
    let max_gap = opts.max_read_gap;
    chunk.bad.clear();
    let total = extents.iter().map(|e| e.len).sum::<u64>() as usize;
    // Every byte is overwritten by the reads below, so a reused buffer is
    // only resized, not zeroed again (re-zeroing cost 15% of a save).
    if chunk.data.len() < total {
        chunk.data.resize(total, 0);
    } else {
        chunk.data.truncate(total);
    }
    let mut at = 0usize;
    let mut i = 0;
    while i < extents.len() {
        // Extents i..j are close enough to read in one go.
        let mut j = i + 1;
        while j < extents.len() && extents[j].offset - extents[j - 1].end() <= max_gap {
            j += 1;
        }
        let group_at = at;
        let read = if j == i + 1 {
            let n = extents[i].len as usize;
            at += n;
            src.read_into(&mut chunk.data[group_at..at], extents[i].offset)
        } else {
            let start = extents[i].offset;
            let span = (extents[j - 1].end() - start) as usize;
            scratch.resize(span, 0);
            let r = src.read_into(&mut scratch[..span], start);
            for e in &extents[i..j] {
                let from = (e.offset - start) as usize;
                let n = e.len as usize;
                if r.is_ok() {
                    chunk.data[at..at + n].copy_from_slice(&scratch[from..from + n]);
                }
                at += n;
            }
            r
        };
        match read {
            Ok(()) => {}
            Err(Error::Read {
                name,
                offset,
                len,
                source,
            }) if !opts.rescue => {
                return Err(Error::Unreadable {
                    name,
                    offset,
                    len,
                    source,
                });
            }
            // Read each extent again (not the gaps between them), down to
            // the sectors that fail.
            Err(Error::Read { .. }) => {
                let sector = u64::from(src.sector_size().max(1));
                let mut a = group_at;
                for e in &extents[i..j] {
                    let n = e.len as usize;
                    rescue_read(
                        src,
                        &mut chunk.data[a..a + n],
                        e.offset,
                        sector,
                        &mut chunk.bad,
                    )?;
                    a += n;
                }
            }
            Err(e) => return Err(e),
        }
        i = j;
    }
    chunk.extents = extents;
    Ok(())
}

/// Copies the used bytes `map` plans from `src` to `sink`, reading on a
/// second thread. The sink is not finished; the caller does that.
pub fn copy(
    src: &dyn Source,
    map: &dyn UsedExtents,
    sink: &mut dyn Sink,
    opts: &CopyOptions,
    report: &dyn Report,
) -> Result<CopyStats> {
    copy_scrubbed(src, map, sink, opts, None, report)
}

/// [`copy`], with every chunk rewritten by `scrub` after it is read
/// (metadata-only copies).
pub fn copy_scrubbed(
    src: &dyn Source,
    map: &dyn UsedExtents,
    sink: &mut dyn Sink,
    opts: &CopyOptions,
    scrub: Option<&dyn Scrub>,
    report: &dyn Report,
) -> Result<CopyStats> {
    let total = map.used_bytes();
    let depth = opts.depth.max(1);
    let (full_tx, full_rx): (SyncSender<Result<Chunk>>, Receiver<Result<Chunk>>) =
        sync_channel(depth);
    let (free_tx, free_rx) = sync_channel::<Chunk>(depth + 1);
    for _ in 0..depth {
        free_tx
            .send(Chunk::default())
            .expect("the receiver is alive");
    }
    thread::scope(|s| {
        // The writer's channel ends move into this closure, so an early
        // return (a sink error, Ctrl-C) drops them before the scope joins
        // the reader, which then wakes up from its blocked send or receive
        // and stops.
        let (full_rx, free_tx) = (full_rx, free_tx);
        s.spawn(move || {
            let mut scratch = Vec::new();
            for extents in ChunkPlan::new(map, opts.chunk_bytes) {
                // The writer hung up (error or done): stop reading.
                let Ok(mut chunk) = free_rx.recv() else {
                    return;
                };
                let r = read_chunk(src, extents, opts, &mut chunk, &mut scratch);
                if let (Ok(()), Some(scrub)) = (&r, scrub) {
                    let mut at = 0usize;
                    for e in &chunk.extents {
                        let end = at + e.len as usize;
                        scrub.scrub(src, e.offset, &mut chunk.data[at..end]);
                        at = end;
                    }
                }
                let failed = r.is_err();
                if full_tx.send(r.map(|()| chunk)).is_err() || failed {
                    return;
                }
            }
        });
        let mut stats = CopyStats::default();
        for chunk in full_rx.iter() {
            if report.cancelled() {
                return Err(Error::Interrupted);
            }
            let chunk = chunk?;
            stats.bytes += chunk.data.len() as u64;
            stats.chunks += 1;
            if !chunk.bad.is_empty() {
                for &e in &chunk.bad {
                    push_range(&mut stats.bad, e);
                }
                report.bad(stats.bad.iter().map(|e| e.len).sum());
            }
            let back = sink.write_chunk(chunk)?;
            report.progress(stats.bytes, total);
            // The reader may have finished; a lost buffer is fine then.
            let _ = free_tx.send(back.unwrap_or_default());
        }
        Ok(stats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocmap::AllocationMap;
    use crate::source::MemSource;

    struct Collect(Vec<(u64, Vec<u8>)>);
    impl Sink for Collect {
        fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
            for (e, d) in chunk.pieces() {
                self.0.push((e.offset, d.to_vec()));
            }
            Ok(Some(chunk))
        }
        fn finish(&mut self) -> Result<()> {
            Ok(())
        }
    }

    fn volume(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn chunks_split_runs_on_cluster_boundaries() {
        let mut map = AllocationMap::new(1024, 20 * 1024 + 100);
        map.mark_used(0, 5);
        map.mark_used(6, 1);
        map.mark_used(18, 3);
        let plan: Vec<Vec<Extent>> = ChunkPlan::new(&map, 3 * 1024 + 10).collect();
        let e = |o: u64, l: u64| Extent {
            offset: o * 1024,
            len: l,
        };
        assert_eq!(
            plan,
            vec![
                vec![e(0, 3072)],
                vec![e(3, 2048), e(6, 1024)],
                vec![e(18, 2048 + 100)],
            ]
        );
    }

    #[test]
    fn copy_delivers_exactly_the_used_bytes() {
        let data = volume(64 * 1024 + 300);
        let src = MemSource::new(data.clone(), "mem");
        let mut map = AllocationMap::new(512, data.len() as u64);
        for c in [0, 1, 2, 5, 9, 10, 40, 41, 42, 43, 128] {
            map.mark_used(c, 1);
        }
        for gap in [0, 512, 1 << 20] {
            let mut sink = Collect(Vec::new());
            let opts = CopyOptions {
                chunk_bytes: 2048,
                max_read_gap: gap,
                depth: 2,
                rescue: false,
            };
            let stats = copy(&src, &map, &mut sink, &opts, &crate::report::Silent).unwrap();
            assert_eq!(stats.bytes, map.used_bytes());
            for (off, bytes) in &sink.0 {
                let o = *off as usize;
                assert_eq!(&data[o..o + bytes.len()], &bytes[..]);
            }
            let covered: u64 = sink.0.iter().map(|(_, b)| b.len() as u64).sum();
            assert_eq!(covered, 10 * 512 + 300);
        }
    }

    /// A sink that fails at once must not leave the reader blocked on a
    /// full channel (which hung the scope before the channel ends moved
    /// into it).
    #[test]
    fn sink_error_does_not_hang() {
        struct Failing;
        impl Sink for Failing {
            fn write_chunk(&mut self, _: Chunk) -> Result<Option<Chunk>> {
                Err(Error::Usage("sink failed".into()))
            }
            fn finish(&mut self) -> Result<()> {
                Ok(())
            }
        }
        let src = MemSource::new(vec![7; 1 << 20], "mem");
        let map = AllocationMap::all_used(512, 1 << 20);
        let opts = CopyOptions {
            chunk_bytes: 4096,
            max_read_gap: 0,
            depth: 2,
            rescue: false,
        };
        let err = copy(&src, &map, &mut Failing, &opts, &crate::report::Silent).unwrap_err();
        assert_eq!(err.to_string(), "sink failed");
    }

    #[test]
    fn read_error_stops_the_copy_with_its_offset() {
        let src = MemSource::new(vec![0; 4096], "short");
        let mut map = AllocationMap::new(1024, 8192);
        map.mark_used(0, 8);
        let mut sink = Collect(Vec::new());
        let err = copy(
            &src,
            &map,
            &mut sink,
            &CopyOptions::default(),
            &crate::report::Silent,
        )
        .unwrap_err();
        assert!(
            matches!(err, crate::Error::SourceTruncated { needed: 8192, .. }),
            "{err}"
        );
    }

    /// A volume whose reads fail with EIO where they touch a bad range;
    /// with `flaky`, each read touching one fails only the first N times.
    struct Failing {
        data: Vec<u8>,
        bad: Vec<(u64, u64)>,
        flaky: Option<std::sync::Mutex<u32>>,
    }

    impl Source for Failing {
        fn size(&self) -> u64 {
            self.data.len() as u64
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            let end = offset + buf.len() as u64;
            if self.bad.iter().any(|&(s, e)| offset < e && s < end) {
                let fail = match &self.flaky {
                    None => true,
                    Some(n) => {
                        let mut n = n.lock().unwrap();
                        let f = *n > 0;
                        *n = n.saturating_sub(1);
                        f
                    }
                };
                if fail {
                    return Err(std::io::Error::from_raw_os_error(5));
                }
            }
            let o = offset as usize;
            buf.copy_from_slice(&self.data[o..o + buf.len()]);
            Ok(())
        }
        fn name(&self) -> &str {
            "failing"
        }
    }

    fn rescue_opts() -> CopyOptions {
        CopyOptions {
            chunk_bytes: 16 << 10,
            max_read_gap: 8 << 10,
            depth: 2,
            rescue: true,
        }
    }

    /// Checks `out` (the whole volume) against `data`: markers exactly on
    /// the bad sectors, the source's bytes on every other used byte.
    fn assert_rescued(data: &[u8], out: &[u8], map: &AllocationMap, bad: &[(u64, u64)]) {
        for (i, (&d, &o)) in data.iter().zip(out).enumerate() {
            let i = i as u64;
            if !map.is_used(i / u64::from(map.cluster_size())) {
                continue;
            }
            match bad.iter().find(|&&(s, e)| s <= i && i < e) {
                Some(_) => {
                    let in_sector = (i % 512) as usize;
                    let want = BAD_SECTOR_MARKER.get(in_sector).copied().unwrap_or(b'?');
                    assert_eq!(o, want, "byte {i} of a bad sector");
                }
                None => assert_eq!(o, d, "byte {i}"),
            }
        }
    }

    #[test]
    fn rescue_marks_exactly_the_bad_sectors() {
        let data = volume(256 << 10);
        // One sector, four sectors across a chunk boundary, the last one.
        let bad = vec![
            (5120, 5632),
            (16384 - 1024, 16384 + 1024),
            (262144 - 512, 262144),
        ];
        let src = Failing {
            data: data.clone(),
            bad: bad.clone(),
            flaky: None,
        };
        let mut map = AllocationMap::new(4096, data.len() as u64);
        map.mark_used(0, 40);
        map.mark_used(41, 10); // a gap that is read through
        map.mark_used(60, 4);
        let mut sink = Collect(Vec::new());
        let stats = copy(
            &src,
            &map,
            &mut sink,
            &rescue_opts(),
            &crate::report::Silent,
        )
        .unwrap();
        let want: Vec<Extent> = bad
            .iter()
            .map(|&(s, e)| Extent {
                offset: s,
                len: e - s,
            })
            .collect();
        assert_eq!(stats.bad, want);
        let mut out = vec![0u8; data.len()];
        for (off, bytes) in &sink.0 {
            out[*off as usize..*off as usize + bytes.len()].copy_from_slice(bytes);
        }
        assert_rescued(&data, &out, &map, &bad);
    }

    #[test]
    fn without_rescue_a_read_error_stops_with_a_hint() {
        let data = volume(64 << 10);
        let src = Failing {
            data,
            bad: vec![(8192, 8704)],
            flaky: None,
        };
        let map = AllocationMap::all_used(4096, 64 << 10);
        let opts = CopyOptions {
            rescue: false,
            ..rescue_opts()
        };
        let err = copy(
            &src,
            &map,
            &mut Collect(Vec::new()),
            &opts,
            &crate::report::Silent,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("read error on failing at byte 0 (length 16384)"),
            "{msg}"
        );
        assert!(
            msg.ends_with("use --rescue to copy past unreadable sectors"),
            "{msg}"
        );
    }

    #[test]
    fn a_flaky_range_read_again_is_not_bad() {
        let data = volume(64 << 10);
        let src = Failing {
            data: data.clone(),
            bad: vec![(8192, 8704)],
            flaky: Some(std::sync::Mutex::new(1)),
        };
        let map = AllocationMap::all_used(4096, 64 << 10);
        let mut sink = Collect(Vec::new());
        let stats = copy(
            &src,
            &map,
            &mut sink,
            &rescue_opts(),
            &crate::report::Silent,
        )
        .unwrap();
        assert!(stats.bad.is_empty());
        let out: Vec<u8> = sink.0.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(out, data);
    }

    #[test]
    fn rescue_into_a_sparse_file_and_an_image() {
        use crate::image::{Header, ImageReader, ImageWriter, header};
        use crate::sink::{FileMode, FileSink};
        let data = volume(128 << 10);
        let bad = vec![(4096, 4608), (70000 / 512 * 512, 70000 / 512 * 512 + 1536)];
        let src = Failing {
            data: data.clone(),
            bad: bad.clone(),
            flaky: None,
        };
        let mut map = AllocationMap::new(4096, data.len() as u64);
        map.mark_used(0, 20);
        map.mark_used(24, 8);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clone.img");
        let mut sink = FileSink::open(&path, FileMode::Create, data.len() as u64, None).unwrap();
        let stats = copy(
            &src,
            &map,
            &mut sink,
            &rescue_opts(),
            &crate::report::Silent,
        )
        .unwrap();
        sink.finish().unwrap();
        assert_rescued(&data, &std::fs::read(&path).unwrap(), &map, &bad);

        let h = Header {
            minor: header::MINOR,
            fs: 1,
            flags: header::FLAG_RESCUE,
            cluster_size: 4096,
            device_size: data.len() as u64,
            total_clusters: map.total_clusters(),
            used_clusters: map.used_clusters(),
            used_bytes: map.used_bytes(),
            compression: header::COMPRESSION_ZSTD,
            max_record: 16 << 10,
            writer: "test".into(),
        };
        let mut w = ImageWriter::new(Vec::new(), "mem", &h, Some(1), 2).unwrap();
        let stats2 = copy(&src, &map, &mut w, &rescue_opts(), &crate::report::Silent).unwrap();
        assert_eq!(stats2.bad, stats.bad);
        w.set_bad_ranges(stats2.bad.clone());
        w.finish().unwrap();
        let bytes = w.into_inner();
        let mut out = vec![0u8; data.len()];
        let reader = ImageReader::new(std::io::Cursor::new(bytes), "mem").unwrap();
        let s = crate::ops::read_records(reader, 2, &crate::report::Silent, |c| {
            for (e, d) in c.pieces() {
                out[e.offset as usize..e.end() as usize].copy_from_slice(d);
            }
            Ok(Some(c))
        })
        .unwrap();
        assert_eq!(s.trailer.bad_ranges, stats.bad);
        assert_rescued(&data, &out, &map, &bad);
    }
}
