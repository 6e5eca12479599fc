//! The operations on a whole disk: clone, save, rescue, restore and info
//! of a partitioned disk, each partition copied as its volume would be.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use super::{
    Checks, Content, DiskInfo, DiskOptions, DiskTable, ImageInfo, ImageInput, Info, Output,
    PartSummary, PartitionInfo, ReadSummary, Resume, SaveFormat, SaveOptions, Summary, checked,
    human, read_records, rescue_copy, volume_sink, write_image,
};
use crate::allocmap::AllocationMap;
use crate::copier::{self, CopyOptions};
use crate::disk::open::{self as disk_open, Disk};
use crate::disk::plan::{DiskPlan, DiskScrub, PartPlan};
use crate::disk::retarget::{DiskSink, PartitionSink, Retarget};
use crate::disk::table::{self, Partition, Table};
use crate::disk::{DiskError, open::in_partition};
use crate::error::{Error, Result};
use crate::extent::{Extent, UsedExtents};
use crate::fs::raw::RAW_CLUSTER_SIZE;
use crate::fs::{FsKind, Scrub};
use crate::image::disk::{PART_HEADER_ONLY, PART_LEFT_OUT, PartInfo};
use crate::image::{DiskBlock, Header, ImageReader, Trailer, header};
use crate::mapfile::Mapfile;
use crate::report::Report;
use crate::sink::{FileSink, OutputFile, Sink};
use crate::source::{FileSource, Source, SourceView};

/// A whole disk opened for copying.
pub struct OpenedDisk {
    /// The disk, its table and its partitions.
    pub disk: Disk,
    /// The file or device it is read from, for identity checks.
    pub file: File,
}

/// Partition `n` of the disk `src` as a volume (`--partition N`).
pub fn partition_view(src: &Arc<dyn Source>, sector: Option<u32>, n: u32) -> Result<SourceView> {
    let (_, p) = table_partition(src, sector, n)?;
    Ok(view_of(src, &p))
}

/// The table of the disk `src` and its partition `n`.
fn table_partition(
    src: &Arc<dyn Source>,
    sector: Option<u32>,
    n: u32,
) -> Result<(Table, Partition)> {
    let table = disk_open::read(src.as_ref(), sector)?.ok_or_else(|| {
        Error::Usage(format!(
            "{}: no partition table found; --partition needs a whole disk",
            src.name()
        ))
    })?;
    let p = find_partition(&table.partitions, n, src.name())?.clone();
    Ok((table, p))
}

/// Partition `p` of the disk `src` as a volume.
fn view_of(src: &Arc<dyn Source>, p: &Partition) -> SourceView {
    SourceView::new(
        Arc::clone(src),
        p.start,
        p.len,
        format!("{} partition {}", src.name(), p.number),
    )
}

/// Partition `n` of `parts`, or an error listing the numbers there are.
pub fn find_partition<'a>(parts: &'a [Partition], n: u32, disk: &str) -> Result<&'a Partition> {
    parts.iter().find(|p| p.number == n).ok_or_else(|| {
        let have: Vec<String> = parts.iter().map(|p| p.number.to_string()).collect();
        Error::Usage(format!(
            "{disk} has no partition {n} (its partitions: {})",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ))
    })
}

/// Opens every partition of a disk and applies the state checks to each
/// filesystem, naming the partition that fails them.
pub fn open_disk(src: Arc<dyn Source>, file: File, t: Table, checks: Checks) -> Result<OpenedDisk> {
    let disk = Disk::open(src, t, checks.rescue)?;
    if !checks.force {
        for p in &disk.parts {
            if let disk_open::Content::Fs(fs) = &p.content
                && let Some(u) = fs.unclean()
            {
                return Err(Error::NotClean {
                    name: p.view.name().to_string(),
                    problem: u.problem,
                    hint: u.hint,
                });
            }
        }
    }
    Ok(OpenedDisk { disk, file })
}

/// What a copy of a disk reads, with each partition's share.
struct Prepared {
    plan: DiskPlan,
    scrub: Option<DiskScrub>,
    infos: Vec<PartInfo>,
}

/// The plan of a copy of `d`: its fixed regions and, per partition, what
/// fsimg copies of that volume (`what`: every used cluster, or with `-m`
/// the metadata), after the same checks a volume gets.
fn prepare(
    d: &mut OpenedDisk,
    checks: Checks,
    what: Content,
    report: &dyn Report,
) -> Result<Prepared> {
    for w in &d.disk.table.warnings {
        report.warn(&format!("{}: {w}", d.disk.src.name()));
    }
    let mut parts = Vec::new();
    let mut infos = Vec::new();
    let mut scrubs = Vec::new();
    for p in &mut d.disk.parts {
        let len = p.part.len;
        let name = p.view.name().to_string();
        let mut flags = 0;
        let (map, fs_code, cluster) = match &mut p.content {
            disk_open::Content::Fs(fs) => {
                let (alloc, scrub) = match what {
                    Content::Used => (fs.allocation(&p.view), None),
                    Content::Metadata { keep_timestamps } => {
                        fs.set_keep_timestamps(keep_timestamps);
                        match fs.metadata(&p.view) {
                            Ok(m) => (Ok(m.allocation), m.scrub),
                            Err(e) => (Err(e), None),
                        }
                    }
                };
                let alloc = alloc.map_err(|e| in_partition(&p.view, e))?;
                let alloc = checked((&name, true), fs.fsck_hint(), alloc, checks, report)?;
                if let Some(s) = scrub {
                    scrubs.push((p.part.start, len, p.view.clone(), s));
                }
                (alloc.map, fs.kind().code(), fs.cluster_size())
            }
            disk_open::Content::Swap { page } => {
                flags |= PART_HEADER_ONLY;
                let mut map = AllocationMap::new(*page as u32, len);
                map.mark_used(0, 1);
                (map, 0, *page as u32)
            }
            disk_open::Content::Raw if what == Content::Used => (
                AllocationMap::all_used(RAW_CLUSTER_SIZE, len),
                FsKind::Raw.code(),
                RAW_CLUSTER_SIZE,
            ),
            disk_open::Content::Raw => {
                report.warn(&format!(
                    "{name}: no filesystem fsimg knows; left out of the metadata copy"
                ));
                flags |= PART_LEFT_OUT;
                (
                    AllocationMap::new(RAW_CLUSTER_SIZE, len),
                    FsKind::Raw.code(),
                    RAW_CLUSTER_SIZE,
                )
            }
        };
        infos.push(PartInfo {
            number: p.part.number,
            fs: fs_code,
            flags,
            start: p.part.start,
            len,
            used_bytes: map.used_bytes().min(len),
            cluster_size: cluster,
        });
        parts.push(PartPlan {
            number: p.part.number,
            start: p.part.start,
            len,
            map,
        });
    }
    let t = &d.disk.table;
    let fixed = d.disk.fixed_extents();
    report.stages(progress_stages(&infos, &fixed));
    let plan = DiskPlan::new(t.sector_size, t.disk_size, fixed, parts);
    let scrub = (!scrubs.is_empty()).then_some(DiskScrub { parts: scrubs });
    Ok(Prepared { plan, scrub, infos })
}

/// The stretches of a disk copy's progress, in the order the copy goes
/// (by disk offset): the tables and boot gap, then each partition's used
/// bytes, with the disk's own regions before a partition (an EBR) counted
/// in its stretch. `fixed`: the disk's own regions.
fn progress_stages(infos: &[PartInfo], fixed: &[Extent]) -> Vec<(u64, String)> {
    let mut order: Vec<&PartInfo> = infos.iter().collect();
    order.sort_by_key(|i| i.start);
    let fixed_before = |at: u64| -> u64 {
        fixed
            .iter()
            .map(|e| e.len.min(at.saturating_sub(e.offset)))
            .sum()
    };
    let mut out = Vec::new();
    if let Some(first) = order.first() {
        let gap = fixed_before(first.start);
        if gap > 0 {
            out.push((gap, "tables and boot gap".to_string()));
        }
    }
    let mut used = 0u64;
    for i in order {
        used += i.used_bytes;
        out.push((
            fixed_before(i.start + i.len) + used,
            format!("partition {} ({})", i.number, part_fs_name(i)),
        ));
    }
    out
}

/// The name a partition's content goes by in a disk block.
fn part_fs_name(i: &PartInfo) -> &'static str {
    if i.flags & PART_HEADER_ONLY != 0 {
        "swap"
    } else {
        FsKind::from_code(i.fs).map_or("unknown", FsKind::name)
    }
}

fn summary(d: &OpenedDisk, p: &Prepared, stats: copier::CopyStats) -> Summary {
    Summary {
        fs: "disk",
        device_size: d.disk.table.disk_size,
        cluster_size: p.plan.unit(),
        used_clusters: p.plan.used_units(),
        total_clusters: p.plan.total_units(),
        stats,
        parts: p.infos.iter().map(part_summary).collect(),
    }
}

/// What the summary says of a partition.
fn part_summary(i: &PartInfo) -> PartSummary {
    PartSummary {
        number: i.number,
        fs: part_fs_name(i),
        used_bytes: i.used_bytes,
        size: i.len,
    }
}

/// The size of the disk `output` names: a block device's or an existing
/// non-empty regular file's own size; the source's (`default`) for a new
/// file or standard output.
fn target_size(output: &Output, default: u64) -> Result<u64> {
    let Output::Overwrite(p) = output else {
        return Ok(default);
    };
    let Ok(meta) = std::fs::metadata(p) else {
        return Ok(default);
    };
    if meta.file_type().is_block_device() {
        let mut f = File::open(p).map_err(|e| Error::Open {
            path: p.to_path_buf(),
            source: e,
        })?;
        return f
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot find the size of", p, e));
    }
    Ok(if meta.is_file() && meta.len() > 0 {
        meta.len()
    } else {
        default
    })
}

/// Plans the writing of a disk onto `output`, refusing a target too small
/// before anything is written.
fn retarget(
    t: &Table,
    pieces: &[(u64, Vec<u8>)],
    fs_of: &dyn Fn(u32) -> &'static str,
    output: &Output,
    dopts: DiskOptions,
) -> Result<Retarget> {
    let target = target_size(output, t.disk_size)?;
    Retarget::new(t, pieces, target, dopts.grow_last).map_err(|e| match e {
        DiskError::PastTarget {
            number, shortfall, ..
        } => Error::DiskTooSmall {
            target: match output {
                Output::Stdout => "standard output".into(),
                Output::New(p) | Output::Overwrite(p) => p.display().to_string(),
            },
            size: target,
            number,
            fs: fs_of(number),
            shortfall,
        },
        e => e.into(),
    })
}

/// After a disk was written: the kernel re-reads a device's table, and a
/// grown partition's filesystem growing command is printed.
fn after_write(
    output: &Output,
    r: &Retarget,
    fs_of: &dyn Fn(u32) -> &'static str,
    report: &dyn Report,
) {
    let target = match output {
        Output::New(p) | Output::Overwrite(p) => Some(p.as_path()),
        Output::Stdout => None,
    };
    let is_device = target
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.file_type().is_block_device());
    if let (true, Some(p)) = (is_device, target) {
        // BLKRRPART, through util-linux (no ioctl without `unsafe` here).
        let ok = std::process::Command::new("blockdev")
            .arg("--rereadpt")
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            report.warn(&format!(
                "the kernel could not re-read the partition table of {}; run partprobe {0} or replug the disk",
                p.display()
            ));
        }
    }
    if let Some(g) = &r.grown {
        let (part, how) = match target {
            Some(p) if is_device => (partition_device(p, g.number), String::new()),
            Some(p) => (
                format!("/dev/loopNp{}", g.number),
                format!(
                    " after `losetup -Pf --show {}` names /dev/loopN",
                    p.display()
                ),
            ),
            None => (format!("partition {}", g.number), String::new()),
        };
        let cmd = match fs_of(g.number) {
            "ext2" | "ext3" | "ext4" => format!("resize2fs {part}"),
            "ntfs" => format!("ntfsresize {part}"),
            "fat12" | "fat16" | "fat32" => format!("fatresize -s max {part}"),
            _ => format!("the filesystem's own resize tool on {part}"),
        };
        report.warn(&format!(
            "partition {} grown from {} to {}; grow its filesystem with: {cmd}{how}",
            g.number,
            human(g.old_len),
            human(g.new_len)
        ));
    }
}

/// The device of partition `n` of disk device `disk`: sda -> sda2,
/// mmcblk0 and nvme0n1 -> mmcblk0p2 and nvme0n1p2.
fn partition_device(disk: &Path, n: u32) -> String {
    let s = disk.display().to_string();
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{s}p{n}")
    } else {
        format!("{s}{n}")
    }
}

/// The filesystem of each partition number, for messages.
fn fs_names(infos: &[PartInfo]) -> impl Fn(u32) -> &'static str + '_ {
    move |n| {
        infos
            .iter()
            .find(|i| i.number == n)
            .map_or("unknown", part_fs_name)
    }
}

/// Plans the writing of the opened disk `d` onto `output` (see
/// [`retarget`]), with what each partition holds, for [`after_write`].
fn retarget_disk(
    d: &OpenedDisk,
    output: &Output,
    dopts: DiskOptions,
) -> Result<(Retarget, Vec<PartInfo>)> {
    let names = content_names(d);
    let r = retarget(
        &d.disk.table,
        &d.disk.pieces,
        &fs_names(&names),
        output,
        dopts,
    )?;
    Ok((r, names))
}

fn content_names(d: &OpenedDisk) -> Vec<PartInfo> {
    d.disk
        .parts
        .iter()
        .map(|p| PartInfo {
            number: p.part.number,
            fs: match &p.content {
                disk_open::Content::Fs(fs) => fs.kind().code(),
                _ => FsKind::Raw.code(),
            },
            flags: match p.content {
                disk_open::Content::Swap { .. } => PART_HEADER_ONLY,
                _ => 0,
            },
            start: p.part.start,
            len: p.part.len,
            used_bytes: 0,
            cluster_size: 0,
        })
        .collect()
}

/// Clones a disk: its tables, the gap before the first partition and what
/// each partition's volume copy takes, to a sparse file, a device (only
/// those bytes written) or standard output (zeros between), on a target
/// of any size the partitions fit.
pub fn clone(
    mut d: OpenedDisk,
    output: &Output,
    checks: Checks,
    what: Content,
    dopts: DiskOptions,
    report: &dyn Report,
) -> Result<Summary> {
    let (r, names) = retarget_disk(&d, output, dopts)?;
    let inner = volume_sink(output, r.target_size, Some(&d.file))?;
    let mut sink = DiskSink::new(inner, r.clone(), *output != Output::Stdout);
    let p = prepare(&mut d, checks, what, report)?;
    let stats = copier::copy_scrubbed(
        d.disk.src.as_ref(),
        &p.plan,
        &mut sink,
        &CopyOptions {
            rescue: checks.rescue,
            ..CopyOptions::default()
        },
        p.scrub.as_ref().map(|s| s as &dyn Scrub),
        report,
    )?;
    sink.finish()?;
    drop(sink);
    after_write(output, &r, &fs_names(&names), report);
    Ok(summary(&d, &p, stats))
}

/// A rescue clone of a disk, recorded in (and resumed from) a mapfile.
pub fn rescue_clone(
    mut d: OpenedDisk,
    output: &Output,
    dopts: DiskOptions,
    resume: &Resume,
    report: &dyn Report,
) -> Result<Summary> {
    let checks = Checks {
        force: true,
        ignore_fs_check: false,
        rescue: true,
    };
    let (r, names) = retarget_disk(&d, output, dopts)?;
    let (path, mode) = output.file().ok_or_else(|| {
        Error::Usage("--mapfile and --retries need a file or device to write to (-o or -O)".into())
    })?;
    let mut file = FileSink::open(path, mode, r.target_size, Some(&d.file))?;
    let mapfile = match &resume.mapfile {
        Some(p) => Mapfile::load(p, d.disk.table.disk_size)?,
        None => Mapfile::new(d.disk.table.disk_size),
    };
    if resume.mapfile.is_some() {
        file.keep_on_failure();
    }
    let mut sink = DiskSink::new(Box::new(file), r.clone(), true);
    let p = prepare(&mut d, checks, Content::Used, report)?;
    let stats = rescue_copy(
        d.disk.src.as_ref(),
        &p.plan,
        &mut sink,
        mapfile,
        resume,
        report,
    )?;
    drop(sink);
    after_write(output, &r, &fs_names(&names), report);
    Ok(summary(&d, &p, stats))
}

/// Saves a disk as one fsimg image: the disk block (the table's sectors
/// and what each partition holds), then the records of every byte a
/// clone writes.
pub fn save(
    mut d: OpenedDisk,
    output: &Output,
    checks: Checks,
    opts: SaveOptions,
    report: &dyn Report,
) -> Result<Summary> {
    if opts.format == SaveFormat::Ntfsclone {
        return Err(Error::Usage(format!(
            "{} is a partitioned disk; an ntfsclone image holds one NTFS volume: name it with --partition N",
            d.disk.src.name()
        )));
    }
    let out = match output.file() {
        None => OutputFile::stdout()?,
        Some((p, mode)) => OutputFile::open(p, mode, Some(&d.file))?,
    };
    let p = prepare(&mut d, checks, opts.content, report)?;
    let block = DiskBlock {
        sector_size: d.disk.table.sector_size,
        disk_size: d.disk.table.disk_size,
        partitions: p.infos.clone(),
        pieces: d.disk.pieces.clone(),
    };
    let stats = write_image(
        out,
        d.disk.src.as_ref(),
        &p.plan,
        (header::FS_DISK, Some(&block)),
        p.scrub.as_ref().map(|s| s as &dyn Scrub),
        checks,
        opts,
        report,
    )?;
    Ok(summary(&d, &p, stats))
}

/// The table of a disk image, parsed again from the sectors its disk block
/// holds.
pub fn block_table(block: &DiskBlock, name: &str) -> Result<Table> {
    let mut read = |offset: u64, len: usize| -> Result<Vec<u8>, DiskError> {
        block
            .piece_at(offset, len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| DiskError::ReadSector {
                lba: offset / u64::from(block.sector_size),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not among the sectors the image's disk block holds",
                ),
            })
    };
    table::read_table(&mut read, block.disk_size, Some(block.sector_size))
        .map_err(|e| Error::Table {
            name: name.to_string(),
            source: e,
        })?
        .ok_or_else(|| Error::Usage(format!("{name}: the disk block holds no partition table")))
}

/// Restores an image of a whole disk: onto a disk of any size its
/// partitions fit (the GPT's end moved), or with `--partition N` one
/// partition's volume alone.
pub fn restore(
    input: ImageInput,
    output: &Output,
    threads: usize,
    dopts: DiskOptions,
    report: &dyn Report,
) -> Result<ReadSummary> {
    let header = input.reader.header().clone();
    let block = input
        .reader
        .disk()
        .cloned()
        .expect("restore::disk is called for disk images");
    if header.flags & header::FLAG_METADATA != 0 {
        report.warn("this is a metadata-only image: file contents will read as zeros");
    }
    let name = input
        .file
        .as_ref()
        .map_or("standard input", |_| "the image");
    let t = block_table(&block, name)?;
    let mut sink: Box<dyn Sink + '_>;
    let mut r = None;
    let mut restored_part = None;
    if let Some(n) = dopts.partition {
        let p = find_partition(&t.partitions, n, name)?;
        let info = block.partitions.iter().find(|i| i.number == n);
        restored_part = Some((p.len, info.map_or(p.len, |i| i.used_bytes)));
        if info.is_some_and(|i| i.flags & PART_LEFT_OUT != 0) {
            report.warn(&format!(
                "partition {n} was left out of this metadata image: the output holds zeros"
            ));
        }
        let inner = volume_sink(output, p.len, input.file.as_ref())?;
        sink = Box::new(PartitionSink::new(inner, p.start, p.len));
    } else {
        let rt = retarget(
            &t,
            &block.pieces,
            &fs_names(&block.partitions),
            output,
            dopts,
        )?;
        let inner = volume_sink(output, rt.target_size, input.file.as_ref())?;
        sink = Box::new(DiskSink::new(inner, rt.clone(), *output != Output::Stdout));
        // The image holds everything before the first partition, then the
        // partitions in disk order (and the table's last sectors).
        let first = block.partitions.iter().map(|i| i.start).min().unwrap_or(0);
        let head = Extent {
            offset: 0,
            len: first,
        };
        report.stages(progress_stages(&block.partitions, &[head]));
        r = Some(rt);
    }
    let mut summary = read_records(input.reader, threads, report, |chunk| {
        sink.write_chunk(chunk)
    })?;
    sink.finish()?;
    drop(sink);
    if let Some(r) = &r {
        after_write(output, r, &fs_names(&block.partitions), report);
    }
    // One partition restored: the summary speaks of it, not of the disk.
    if let Some((len, used)) = restored_part {
        summary.header.device_size = len;
        summary.trailer.used_bytes = used;
    } else {
        summary.parts = block.partitions.iter().map(part_summary).collect();
    }
    Ok(ReadSummary::Fsimg(summary))
}

/// The partition list of `info` for the table `t` of a disk image: what
/// its disk block `block` says each partition holds.
fn image_partition(t: &Table, p: &Partition, block: &DiskBlock) -> PartitionInfo {
    let i = block.partitions.iter().find(|i| i.number == p.number);
    PartitionInfo::new(
        t,
        p,
        i.map_or("unknown", part_fs_name),
        (i.map(|i| i.used_bytes), None),
    )
}

/// `fsimg info` on a disk: its table and, per partition, what it holds and
/// how much of it is used (what a copy would take).
pub fn info_disk(src: Arc<dyn Source>, t: Table) -> Result<DiskInfo> {
    let disk = Disk::open(src, t, false)?;
    let mut total = 0u64;
    let mut parts = Vec::new();
    for p in &disk.parts {
        let (fs, used) = match &p.content {
            disk_open::Content::Fs(fs) => match fs.allocation(&p.view) {
                Ok(a) => (fs.kind().name(), (Some(a.map.used_bytes()), None)),
                Err(e) => (fs.kind().name(), (None, Some(e.to_string()))),
            },
            disk_open::Content::Swap { page } => ("swap", (Some(*page), None)),
            disk_open::Content::Raw => ("raw", (Some(p.part.len), None)),
        };
        total += used.0.unwrap_or(p.part.len);
        parts.push(PartitionInfo::new(&disk.table, &p.part, fs, used));
    }
    let fixed: u64 = disk.fixed_extents().iter().map(|e| e.len).sum();
    Ok(DiskInfo {
        table: DiskTable::new(&disk.table, parts),
        tables_and_boot_gap: fixed,
        unpartitioned: disk.unpartitioned_bytes(),
        to_copy: total + fixed,
        to_copy_in_partitions: total,
    })
}

/// `fsimg info` on an image of a whole disk: the table from its disk
/// block and what each partition holds; with `partition`, that one alone.
pub fn info_image(
    h: &Header,
    block: &DiskBlock,
    t: Option<&Trailer>,
    partition: Option<u32>,
) -> Result<ImageInfo> {
    let table = block_table(block, "the image")?;
    let mut info = super::image_info(h, t);
    if let Some(n) = partition {
        let p = find_partition(&table.partitions, n, "the image")?;
        info.partition = Some(image_partition(&table, p, block));
        return Ok(info);
    }
    let parts = table
        .partitions
        .iter()
        .map(|p| image_partition(&table, p, block))
        .collect();
    info.disk = Some(DiskTable::new(&table, parts));
    Ok(info)
}

/// `fsimg info` on a device or disk image file given by path: a disk, or
/// with `--partition N` one partition of it as a volume; `None` for a
/// path that holds no partition table.
pub fn info_path(
    path: &Path,
    choice: crate::fs::FsChoice,
    dopts: DiskOptions,
) -> Result<Option<Info>> {
    let src = FileSource::open(path)?;
    let sector = dopts
        .sector_size
        .or_else(|| src.is_block_device().then(|| src.sector_size()));
    let src: Arc<dyn Source> = Arc::new(src);
    if let Some(n) = dopts.partition {
        let (table, part) = table_partition(&src, sector, n)?;
        let mut v = super::info_source(&view_of(&src, &part), choice)?;
        let used = (
            v.allocation.as_ref().map(|a| a.used_bytes),
            v.allocation_error.clone(),
        );
        v.partition = Some(PartitionInfo::new(&table, &part, v.filesystem, used));
        return Ok(Some(Info::Volume(v)));
    }
    if choice != crate::fs::FsChoice::Auto {
        return Ok(None);
    }
    match disk_open::detect(src.as_ref(), sector)? {
        Some(t) => info_disk(src, t).map(|d| Some(Info::Disk(d))),
        None => Ok(None),
    }
}

/// An image read through a reader, for `info` on standard input: `None`
/// for an image of one volume.
pub fn info_stream<R: Read>(
    reader: &ImageReader<BufReader<R>>,
    partition: Option<u32>,
) -> Result<Option<ImageInfo>> {
    match reader.disk() {
        Some(b) => info_image(reader.header(), b, None, partition).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, fs: FsKind, start: u64, len: u64, used: u64) -> PartInfo {
        PartInfo {
            number,
            fs: fs.code(),
            flags: 0,
            start,
            len,
            used_bytes: used,
            cluster_size: 4096,
        }
    }

    #[test]
    fn progress_stages_follow_the_disk_order() {
        const M: u64 = 1 << 20;
        // Listed out of order; an EBR-like region of 512 bytes before
        // partition 5, and the backup GPT after the last partition.
        let infos = [
            part(5, FsKind::Ext4, 100 * M, 50 * M, 7 * M),
            part(1, FsKind::Fat32, 4 * M, 60 * M, 3 * M),
        ];
        let fixed = [
            Extent {
                offset: 0,
                len: 4 * M,
            },
            Extent {
                offset: 100 * M - 512,
                len: 512,
            },
            Extent {
                offset: 200 * M,
                len: 16384,
            },
        ];
        assert_eq!(
            progress_stages(&infos, &fixed),
            vec![
                (4 * M, "tables and boot gap".to_string()),
                (7 * M, "partition 1 (fat32)".to_string()),
                (14 * M + 512, "partition 5 (ext4)".to_string()),
            ]
        );
        assert!(progress_stages(&[], &fixed).is_empty());
    }
}
