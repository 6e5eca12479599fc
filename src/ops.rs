//! The operations the command line runs: each takes a validated plan and
//! reports through [`Report`].

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::thread;

use crate::allocmap::AllocationMap;
use crate::copier::{self, Chunk, CopyOptions, CopyStats};
use crate::error::{Error, Result};
use crate::fs::{self, Allocation, Filesystem, FsChoice, FsKind, Scrub};
use crate::image::record::RawRecord;
use crate::image::{self, Header, ImageError, ImageReader, ImageWriter, Trailer, header};
use crate::mapfile::{self, Mapfile, MapfileSink};
use crate::pool::OrderedPool;
use crate::report::Report;
use crate::safety;
use crate::sink::{FileMode, FileSink, OutputFile, Sink, StdoutSink};
use crate::source::{FileSource, Source};

/// Where a copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `-o FILE`: a new file.
    New(PathBuf),
    /// `-O FILE`: an existing file or device.
    Overwrite(PathBuf),
    /// `-o -`: standard output.
    Stdout,
}

impl Output {
    /// The file or device and how to open it; `None` for standard output.
    pub fn file(&self) -> Option<(&Path, FileMode)> {
        match self {
            Output::New(p) => Some((p, FileMode::Create)),
            Output::Overwrite(p) => Some((p, FileMode::Overwrite)),
            Output::Stdout => None,
        }
    }
}

/// Checks the user can relax.
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    /// `--force`: copy an unclean or mounted volume.
    pub force: bool,
    /// `--ignore-fs-check`: copy despite inconsistent counts.
    pub ignore_fs_check: bool,
    /// `--rescue`: go on past read errors, marking unreadable sectors.
    pub rescue: bool,
}

/// What a finished copy did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Filesystem name.
    pub fs: &'static str,
    /// Volume size in bytes.
    pub device_size: u64,
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// Used clusters.
    pub used_clusters: u64,
    /// Clusters in the volume.
    pub total_clusters: u64,
    /// Bytes copied.
    pub stats: CopyStats,
}

/// An opened source with its filesystem recognised and checked.
pub struct Opened {
    /// The source.
    pub src: FileSource,
    /// Its filesystem.
    pub fs: Box<dyn Filesystem>,
}

/// Opens `source`, recognises its filesystem and applies the state checks.
pub fn open_source(source: &Path, choice: FsChoice, checks: Checks) -> Result<Opened> {
    let src = FileSource::open(source)?;
    if !checks.force {
        let meta = src
            .file()
            .metadata()
            .map_err(|e| Error::io("cannot stat", source, e))?;
        safety::check_source_not_mounted_rw(source, &meta)?;
    }
    let mut fs = fs::open(&src, choice)?;
    fs.set_rescue(checks.rescue);
    if let Some(u) = fs.unclean()
        && !checks.force
    {
        return Err(Error::NotClean {
            name: src.name().to_string(),
            problem: u.problem,
            hint: u.hint,
        });
    }
    Ok(Opened { src, fs })
}

/// Reads the allocation map, refusing inconsistent counts unless
/// `--ignore-fs-check` (then each is a warning).
pub fn allocation(opened: &Opened, checks: Checks, report: &dyn Report) -> Result<Allocation> {
    let alloc = opened.fs.allocation(&opened.src)?;
    checked(opened, alloc, checks, report)
}

/// Refuses an allocation with inconsistencies unless `--ignore-fs-check`,
/// and reports its warnings.
fn checked(
    opened: &Opened,
    alloc: Allocation,
    checks: Checks,
    report: &dyn Report,
) -> Result<Allocation> {
    if !alloc.inconsistencies.is_empty() && !checks.ignore_fs_check {
        // One message: the refusal carries the warnings too.
        let mut problems = alloc.inconsistencies.clone();
        problems.extend(alloc.warnings.iter().cloned());
        return Err(Error::Inconsistent {
            name: opened.src.name().to_string(),
            problem: problems.join("; "),
            fsck: opened.fs.fsck_hint(),
        });
    }
    for w in &alloc.warnings {
        report.warn(w);
    }
    if !alloc.inconsistencies.is_empty() {
        for i in &alloc.inconsistencies {
            report.warn(&format!("filesystem inconsistency ignored: {i}"));
        }
    }
    Ok(alloc)
}

/// What a copy takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Content {
    /// Every used cluster.
    #[default]
    Used,
    /// `-m`: the metadata clusters, scrubbed; timestamps wiped unless kept.
    Metadata {
        /// `--preserve-timestamps`.
        keep_timestamps: bool,
    },
}

/// The clusters a copy takes, with the scrubber of a metadata-only copy;
/// the same checks apply to both.
pub fn content(
    opened: &mut Opened,
    checks: Checks,
    content: Content,
    report: &dyn Report,
) -> Result<(Allocation, Option<Box<dyn Scrub>>)> {
    let Content::Metadata { keep_timestamps } = content else {
        return Ok((allocation(opened, checks, report)?, None));
    };
    opened.fs.set_keep_timestamps(keep_timestamps);
    let m = opened.fs.metadata(&opened.src)?;
    let alloc = checked(opened, m.allocation, checks, report)?;
    Ok((alloc, m.scrub))
}

/// Opens the sink that rebuilds a volume of `device_size` bytes.
/// `source` is the file read from, which the target must not be.
pub fn volume_sink(
    output: &Output,
    device_size: u64,
    source: Option<&File>,
) -> Result<Box<dyn Sink>> {
    Ok(match output.file() {
        None => Box::new(StdoutSink::new(device_size)?),
        Some((p, mode)) => Box::new(FileSink::open(p, mode, device_size, source)?),
    })
}

/// A rescue clone's mapfile and retries.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// `--mapfile`: ddrescue-format record of what was copied; a rerun
    /// skips what it says is copied.
    pub mapfile: Option<PathBuf>,
    /// `--retries`: passes over the unreadable ranges after the first.
    pub retries: u32,
}

/// A rescue clone to a file or device, recorded in a mapfile (resumed from
/// it if it exists), with retry passes over what could not be read.
pub fn rescue_clone(
    source: &Path,
    output: &Output,
    choice: FsChoice,
    checks: Checks,
    resume: &Resume,
    report: &dyn Report,
) -> Result<Summary> {
    let opened = open_source(source, choice, checks)?;
    let device_size = opened.fs.device_size();
    let (path, mode) = output.file().ok_or_else(|| {
        Error::Usage("--mapfile and --retries need a file or device to write to (-o or -O)".into())
    })?;
    let mut file = FileSink::open(path, mode, device_size, Some(opened.src.file()))?;
    let alloc = allocation(&opened, checks, report)?;
    let mapfile = match &resume.mapfile {
        Some(p) => Mapfile::load(p, device_size)?,
        None => Mapfile::new(device_size),
    };
    if resume.mapfile.is_some() {
        file.keep_on_failure();
    }
    let stats = rescue_copy(&opened.src, &alloc.map, &mut file, mapfile, resume, report)?;
    Ok(summary(&opened, &alloc, stats))
}

/// The passes of a rescue copy: first what `used` holds that `mapfile`
/// does not record as copied or unreadable, then up to `resume.retries`
/// passes over the unreadable ranges. The mapfile is updated as chunks are
/// written (and saved at `resume.mapfile`, if given); the sink is finished.
/// Returns the ranges still unreadable in `bad`.
pub fn rescue_copy(
    src: &dyn Source,
    used: &AllocationMap,
    sink: &mut dyn Sink,
    mapfile: Mapfile,
    resume: &Resume,
    report: &dyn Report,
) -> Result<CopyStats> {
    let opts = CopyOptions {
        rescue: true,
        ..CopyOptions::default()
    };
    let mut todo = used.clone();
    for e in mapfile
        .ranges(mapfile::FINISHED)
        .chain(mapfile.ranges(mapfile::BAD))
    {
        todo.mark_bytes_free(e.offset, e.len);
    }
    let mut sink = MapfileSink::new(sink, mapfile, resume.mapfile.as_deref());
    let mut stats = copier::copy(src, &todo, &mut sink, &opts, report)?;
    for _ in 0..resume.retries {
        let bad: Vec<_> = sink.mapfile().ranges(mapfile::BAD).collect();
        if bad.is_empty() {
            break;
        }
        // Whole clusters at a time: the good sectors among them are written
        // again, the same bytes.
        let mut retry = AllocationMap::new(used.cluster_size(), used.device_size());
        for e in &bad {
            retry.mark_bytes_used(e.offset, e.len);
        }
        let s = copier::copy(src, &retry, &mut sink, &opts, report)?;
        stats.bytes += s.bytes;
        stats.chunks += s.chunks;
    }
    sink.finish()?;
    stats.bad = sink.mapfile().ranges(mapfile::BAD).collect();
    Ok(stats)
}

/// Clones the used clusters of `source` to `output`.
pub fn clone(
    source: &Path,
    output: &Output,
    choice: FsChoice,
    checks: Checks,
    what: Content,
    report: &dyn Report,
) -> Result<Summary> {
    let mut opened = open_source(source, choice, checks)?;
    let device_size = opened.fs.device_size();
    let mut sink = volume_sink(output, device_size, Some(opened.src.file()))?;
    let (alloc, scrub) = content(&mut opened, checks, what, report)?;
    let stats = copier::copy_scrubbed(
        &opened.src,
        &alloc.map,
        sink.as_mut(),
        &CopyOptions {
            rescue: checks.rescue,
            ..CopyOptions::default()
        },
        scrub.as_deref(),
        report,
    )?;
    sink.finish()?;
    Ok(summary(&opened, &alloc, stats))
}

fn summary(opened: &Opened, alloc: &Allocation, stats: CopyStats) -> Summary {
    Summary {
        fs: opened.fs.kind().name(),
        device_size: opened.fs.device_size(),
        cluster_size: alloc.map.cluster_size(),
        used_clusters: alloc.map.used_clusters(),
        total_clusters: alloc.map.total_clusters(),
        stats,
    }
}

/// How to write a special image.
#[derive(Clone, Copy, Debug)]
pub struct SaveOptions {
    /// zstd level, or `None` for verbatim records.
    pub zstd_level: Option<i32>,
    /// Threads compressing.
    pub threads: usize,
    /// Every used cluster, or only the metadata (`-m`).
    pub content: Content,
}

/// Saves the used clusters of `source` as a special image.
pub fn save(
    source: &Path,
    output: &Output,
    choice: FsChoice,
    checks: Checks,
    opts: SaveOptions,
    report: &dyn Report,
) -> Result<Summary> {
    let mut opened = open_source(source, choice, checks)?;
    let cs = opened.fs.cluster_size();
    if cs > image::MAX_RECORD_PAYLOAD {
        return Err(Error::Usage(format!(
            "the cluster size {cs} is larger than the image format allows ({})",
            image::MAX_RECORD_PAYLOAD
        )));
    }
    let out = match output.file() {
        None => OutputFile::stdout()?,
        Some((p, mode)) => OutputFile::open(p, mode, Some(opened.src.file()))?,
    };
    let (alloc, scrub) = content(&mut opened, checks, opts.content, report)?;
    let map = &alloc.map;
    let max_record = (image::RECORD_PAYLOAD / cs).max(1) * cs;
    let header = Header {
        minor: header::MINOR,
        fs: opened.fs.kind().code(),
        flags: if checks.rescue {
            header::FLAG_RESCUE
        } else {
            0
        } | if opts.content != Content::Used {
            header::FLAG_METADATA
        } else {
            0
        },
        cluster_size: cs,
        device_size: map.device_size(),
        total_clusters: map.total_clusters(),
        used_clusters: map.used_clusters(),
        used_bytes: map.used_bytes(),
        compression: if opts.zstd_level.is_some() {
            header::COMPRESSION_ZSTD
        } else {
            header::COMPRESSION_NONE
        },
        max_record,
        writer: concat!("fsimg ", env!("CARGO_PKG_VERSION")).to_string(),
    };
    let name = out.name().to_string();
    let mut writer = ImageWriter::new(out, &name, &header, opts.zstd_level, opts.threads)?;
    let copy_opts = CopyOptions {
        chunk_bytes: u64::from(max_record),
        rescue: checks.rescue,
        ..CopyOptions::default()
    };
    let stats = copier::copy_scrubbed(
        &opened.src,
        map,
        &mut writer,
        &copy_opts,
        scrub.as_deref(),
        report,
    )?;
    writer.set_bad_ranges(stats.bad.clone());
    writer.finish()?;
    writer.into_inner().commit()?;
    Ok(summary(&opened, &alloc, stats))
}

/// An image opened for reading: a file or standard input.
pub struct ImageInput {
    /// The stream, buffered.
    pub reader: ImageReader<BufReader<Box<dyn Read + Send>>>,
    /// The image file (`None` for standard input), for identity checks.
    pub file: Option<File>,
}

/// Opens `path` (`-` is standard input) and reads its header.
pub fn open_image(path: &Path) -> Result<ImageInput> {
    let (stream, file, name): (Box<dyn Read + Send>, Option<File>, String) =
        if path.as_os_str() == "-" {
            let f = stdin_file()?;
            (Box::new(f), None, "standard input".into())
        } else {
            let f = File::open(path).map_err(|e| Error::Open {
                path: path.to_path_buf(),
                source: e,
            })?;
            let keep = f
                .try_clone()
                .map_err(|e| Error::io("cannot open", path, e))?;
            (Box::new(f), Some(keep), path.display().to_string())
        };
    let reader = ImageReader::new(BufReader::with_capacity(1 << 20, stream), &name)?;
    Ok(ImageInput { reader, file })
}

fn stdin_file() -> Result<File> {
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| Error::io("cannot use", "standard input", e))
}

/// What reading an image found.
#[derive(Clone, Debug)]
pub struct ImageSummary {
    /// The header.
    pub header: Header,
    /// The trailer.
    pub trailer: Trailer,
}

/// Reads every record of `input` on a reader thread, decodes and checks
/// them on `threads` threads, and hands the chunks, in order, to `consume`.
pub fn read_records<R: Read + Send>(
    mut reader: ImageReader<R>,
    threads: usize,
    report: &dyn Report,
    mut consume: impl FnMut(Chunk) -> Result<()>,
) -> Result<ImageSummary> {
    let header = reader.header().clone();
    let depth = 2 * threads.max(1);
    let (tx, rx) = sync_channel::<Result<RawRecord>>(depth);
    let mut pool: OrderedPool<RawRecord, Result<Chunk, ImageError>> =
        OrderedPool::new(threads, || {
            let mut dctx = None;
            move |r: RawRecord| r.decode(&mut dctx)
        });
    thread::scope(|s| {
        // `rx` moves into this closure, so an early return drops it before
        // the scope joins the reader, whose blocked send then fails.
        let rx = rx;
        let reading = s.spawn(move || {
            loop {
                match reader.next_record() {
                    Ok(Some(r)) => {
                        if tx.send(Ok(r)).is_err() {
                            return None;
                        }
                    }
                    Ok(None) => return reader.trailer().cloned(),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return None;
                    }
                }
            }
        });
        let mut done = 0u64;
        let mut deliver = |chunk: Chunk| -> Result<()> {
            done += chunk.data.len() as u64;
            consume(chunk)?;
            report.progress(done, header.used_bytes);
            Ok(())
        };
        for raw in rx.iter() {
            if report.cancelled() {
                return Err(Error::Interrupted);
            }
            let raw = match raw {
                Ok(raw) => raw,
                Err(e) => {
                    // Records before the failure come first, so the error
                    // reported does not depend on the thread count.
                    while let Some(chunk) = pool.next_result() {
                        deliver(chunk?)?;
                    }
                    return Err(e);
                }
            };
            pool.submit(raw);
            if pool.in_flight() >= depth as u64 {
                deliver(pool.next_result().expect("in flight")?)?;
            }
        }
        while let Some(chunk) = pool.next_result() {
            deliver(chunk?)?;
        }
        drop(rx);
        let trailer = reading
            .join()
            .expect("the image reader thread does not panic");
        // The channel only closes without an error once the trailer is in.
        let trailer = trailer.expect("the reader ended at the trailer");
        Ok(ImageSummary { header, trailer })
    })
}

/// Restores an image (`-` is standard input) to `output`.
pub fn restore(
    image: &Path,
    output: &Output,
    threads: usize,
    report: &dyn Report,
) -> Result<ImageSummary> {
    let input = open_image(image)?;
    let header = input.reader.header().clone();
    let mut sink = volume_sink(output, header.device_size, input.file.as_ref())?;
    if header.flags & header::FLAG_METADATA != 0 {
        report.warn("this is a metadata-only image: file contents will read as zeros");
    }
    let summary = read_records(input.reader, threads, report, |chunk| {
        sink.write_chunk(chunk).map(drop)
    })?;
    sink.finish()?;
    Ok(summary)
}

/// Reads a whole image and checks every checksum, the order of the records
/// and the trailer.
pub fn verify(image: &Path, threads: usize, report: &dyn Report) -> Result<ImageSummary> {
    let input = open_image(image)?;
    read_records(input.reader, threads, report, |_| Ok(()))
}

/// `fsimg info` on a path: an image's header and trailer, or a volume.
pub fn info(path: &Path, choice: FsChoice) -> Result<Vec<(&'static str, String)>> {
    if path.as_os_str() == "-" {
        let input = open_image(path)?;
        return Ok(image_lines(input.reader.header(), None));
    }
    let mut f = File::open(path).map_err(|e| Error::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut magic = [0u8; 8];
    let is_image = f.read_exact(&mut magic).is_ok() && magic == header::MAGIC;
    if !is_image {
        return info_volume(path, choice);
    }
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("cannot seek in", path, e))?;
    let name = path.display().to_string();
    let (h, t) = image::reader::read_header_and_trailer(&mut f, &name)?;
    Ok(image_lines(&h, Some(&t)))
}

fn image_lines(h: &Header, t: Option<&Trailer>) -> Vec<(&'static str, String)> {
    let fs = FsKind::from_code(h.fs)
        .map_or_else(|| format!("unknown ({})", h.fs), |k| k.name().to_string());
    let mut flags = Vec::new();
    if h.flags & header::FLAG_METADATA != 0 {
        flags.push("metadata-only");
    }
    if h.flags & header::FLAG_RESCUE != 0 {
        flags.push("rescue");
    }
    let mut lines = vec![
        (
            "format",
            format!("fsimg image {}.{}", header::MAJOR, h.minor),
        ),
        ("writer", h.writer.clone()),
        ("filesystem", fs),
        ("device size", h.device_size.to_string()),
        ("cluster size", h.cluster_size.to_string()),
        ("total clusters", h.total_clusters.to_string()),
        ("used clusters", h.used_clusters.to_string()),
        ("used bytes", h.used_bytes.to_string()),
        (
            "compression",
            if h.compression == header::COMPRESSION_ZSTD {
                "zstd"
            } else {
                "none"
            }
            .to_string(),
        ),
        (
            "flags",
            if flags.is_empty() {
                "none".into()
            } else {
                flags.join(", ")
            },
        ),
    ];
    if let Some(t) = t {
        lines.push(("records", t.records.to_string()));
        lines.push(("bad ranges", t.bad_ranges.len().to_string()));
        for r in &t.bad_ranges {
            lines.push((
                "bad range",
                format!("bytes {}..{} ({} bytes)", r.offset, r.end(), r.len),
            ));
        }
    }
    lines
}

/// `fsimg info` on a volume: what the filesystem says about itself and how
/// much of it is in use.
pub fn info_volume(source: &Path, choice: FsChoice) -> Result<Vec<(&'static str, String)>> {
    let src = FileSource::open(source)?;
    let fs = fs::open(&src, choice)?;
    let mut lines = vec![
        ("filesystem", fs.kind().name().to_string()),
        ("device size", fs.device_size().to_string()),
        ("cluster size", fs.cluster_size().to_string()),
    ];
    lines.extend(fs.describe());
    match fs.allocation(&src) {
        Ok(a) => {
            lines.push(("total clusters", a.map.total_clusters().to_string()));
            lines.push(("used clusters", a.map.used_clusters().to_string()));
            lines.push(("used bytes", a.map.used_bytes().to_string()));
            for i in a.inconsistencies {
                lines.push(("inconsistency", i));
            }
            lines.extend(a.details);
            for w in a.warnings {
                lines.push(("warning", w));
            }
        }
        Err(e) => lines.push(("allocation map", format!("unreadable: {e}"))),
    }
    Ok(lines)
}
