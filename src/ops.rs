//! The operations the command line runs: each takes a validated plan and
//! reports through [`Report`].

use std::path::{Path, PathBuf};

use crate::copier::{self, CopyOptions, CopyStats};
use crate::error::{Error, Result};
use crate::fs::{self, Allocation, Filesystem, FsChoice};
use crate::report::Report;
use crate::safety;
use crate::sink::{FileMode, FileSink, Sink, StdoutSink};
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

/// Checks the user can relax.
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    /// `--force`: copy an unclean or mounted volume.
    pub force: bool,
    /// `--ignore-fs-check`: copy despite inconsistent counts.
    pub ignore_fs_check: bool,
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
    let fs = fs::open(&src, choice)?;
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
    if !alloc.inconsistencies.is_empty() {
        if !checks.ignore_fs_check {
            return Err(Error::Inconsistent {
                name: opened.src.name().to_string(),
                problem: alloc.inconsistencies.join("; "),
                fsck: opened.fs.fsck_hint(),
            });
        }
        for i in &alloc.inconsistencies {
            report.warn(&format!("filesystem inconsistency ignored: {i}"));
        }
    }
    Ok(alloc)
}

/// Opens the sink for a clone of a volume of `device_size` bytes.
pub fn clone_sink(output: &Output, device_size: u64, src: &FileSource) -> Result<Box<dyn Sink>> {
    Ok(match output {
        Output::Stdout => Box::new(StdoutSink::new(device_size)?),
        Output::New(p) => Box::new(FileSink::open(
            p,
            FileMode::Create,
            device_size,
            src.file(),
        )?),
        Output::Overwrite(p) => Box::new(FileSink::open(
            p,
            FileMode::Overwrite,
            device_size,
            src.file(),
        )?),
    })
}

/// Clones the used clusters of `source` to `output`.
pub fn clone(
    source: &Path,
    output: &Output,
    choice: FsChoice,
    checks: Checks,
    report: &dyn Report,
) -> Result<Summary> {
    let opened = open_source(source, choice, checks)?;
    let device_size = opened.fs.device_size();
    let mut sink = clone_sink(output, device_size, &opened.src)?;
    let alloc = allocation(&opened, checks, report)?;
    let stats = copier::copy(
        &opened.src,
        &alloc.map,
        sink.as_mut(),
        &CopyOptions::default(),
        report,
    )?;
    sink.finish()?;
    Ok(Summary {
        fs: opened.fs.kind().name(),
        device_size,
        cluster_size: alloc.map.cluster_size(),
        used_clusters: alloc.map.used_clusters(),
        total_clusters: alloc.map.total_clusters(),
        stats,
    })
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
        }
        Err(e) => lines.push(("allocation map", format!("unreadable: {e}"))),
    }
    Ok(lines)
}
