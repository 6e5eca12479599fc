//! Random access to the volume inside anything fsimg reads: any byte range
//! of it, unused clusters as zeros, without restoring it. Shared by
//! `ls`/`cat`/`extract` and the read-only mount (issues 17 and 18).
//!
//! Each kind of image is a [`crate::source::Source`], so every reader of
//! volumes (the filesystems' parsers included) works on it unchanged.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::foreign::{self, DETECT_LEN, Format};
use crate::image::header::FLAG_METADATA;
use crate::ops::disk::{block_table, find_partition, partition_view};
use crate::report::Report;
use crate::source::{FileSource, Source, SourceView};

pub mod image;
pub mod ntfsclone;
pub mod partclone;

pub use image::ImageSource;

/// Opens `path` for random access: the volume an fsimg, ntfsclone or
/// partclone image holds, or a raw volume, sparse clone, block device or
/// disk image read as it is. With `partition`, partition N of a whole
/// disk (a disk image of fsimg's, through its disk block's table, or a
/// raw disk or disk image, through its table). `report` gets the
/// warnings (an image without its trailer). A pipe, a FIFO or standard
/// input (`-`) is refused: random access needs a seekable file.
pub fn open(path: &Path, partition: Option<u32>, report: &dyn Report) -> Result<Arc<dyn Source>> {
    Ok(open_volume(path, partition, report)?.source)
}

/// A volume opened for random access, with what its image says about it.
pub struct Volume {
    /// The volume's bytes.
    pub source: Arc<dyn Source>,
    /// The image holds metadata only (`-m`): file contents read as zeros.
    pub metadata_only: bool,
    /// The fsimg image underneath, for its counters (records decoded)
    /// and read-ahead.
    pub image: Option<Arc<ImageSource>>,
    /// Where the volume starts in the image's device (a partition's
    /// start; 0 for a volume).
    pub offset: u64,
}

impl Volume {
    /// Decodes ahead into the image's cache the records holding volume
    /// bytes `offset..offset + len`, for a reader about to read them (an
    /// fsimg image; nothing for other sources). Errors are left for the
    /// read itself to meet.
    pub fn prefetch(&self, offset: u64, len: u64) {
        if let Some(img) = &self.image {
            let _ = img.prefetch(self.offset.saturating_add(offset), len);
        }
    }
}

/// [`open`], also saying whether the image holds metadata only and
/// giving the fsimg image underneath.
pub fn open_volume(path: &Path, partition: Option<u32>, report: &dyn Report) -> Result<Volume> {
    open_volume_with_cache(path, partition, image::CACHE_BYTES, report)
}

/// [`open_volume`] with a cache of `cache_bytes` of decoded records for an
/// fsimg image (`fsimg mount --cache-size`).
pub fn open_volume_with_cache(
    path: &Path,
    partition: Option<u32>,
    cache_bytes: u64,
    report: &dyn Report,
) -> Result<Volume> {
    let plain = |source: Arc<dyn Source>| Volume {
        source,
        metadata_only: false,
        image: None,
        offset: 0,
    };
    if path.as_os_str() == "-" {
        return Err(image::not_seekable("standard input"));
    }
    let name = path.display().to_string();
    // Looked at before opening: opening a FIFO waits for a writer.
    let ft = std::fs::metadata(path)
        .map_err(|e| Error::Open {
            path: path.to_path_buf(),
            source: e,
        })?
        .file_type();
    if ft.is_fifo() || ft.is_socket() || ft.is_char_device() {
        return Err(image::not_seekable(&name));
    }
    let file = File::open(path).map_err(|e| Error::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let len = image::seekable_len(&file, &name)?;
    let mut prefix = vec![0u8; DETECT_LEN.min(len as usize)];
    file.read_exact_at(&mut prefix, 0)
        .map_err(|e| Error::Read {
            name: name.clone(),
            offset: 0,
            len: prefix.len() as u64,
            source: e,
        })?;
    let one_volume = |src: Arc<dyn Source>| match partition {
        None => Ok(plain(src)),
        Some(_) => Err(Error::Usage(format!(
            "--partition needs an image of a whole disk; {name} holds one volume"
        ))),
    };
    match foreign::detect(&prefix) {
        Some(Format::Fsimg) => {
            let img = Arc::new(ImageSource::open_with_cache(
                file,
                &name,
                report,
                cache_bytes,
            )?);
            let metadata_only = img.header().flags & FLAG_METADATA != 0;
            let (source, offset): (Arc<dyn Source>, u64) = match (partition, img.disk()) {
                (Some(n), Some(block)) => {
                    let table = block_table(block, &name)?;
                    let p = find_partition(&table.partitions, n, &name)?;
                    let (start, len) = (p.start, p.len);
                    let view =
                        SourceView::new(img.clone(), start, len, format!("{name} partition {n}"));
                    (Arc::new(view), start)
                }
                _ => (one_volume(img.clone())?.source, 0),
            };
            Ok(Volume {
                source,
                metadata_only,
                image: Some(img),
                offset,
            })
        }
        Some(Format::Ntfsclone) => {
            let src = ntfsclone::NtfscloneSource::open(file, &name)?;
            warn_truncated(&name, src.truncated_at(), report);
            one_volume(Arc::new(src))
        }
        Some(Format::Partclone) => {
            let src = partclone::PartcloneSource::open(file, &name)?;
            warn_truncated(&name, src.truncated_at(), report);
            one_volume(Arc::new(src))
        }
        None => {
            drop(file);
            let src = FileSource::open(path)?;
            let sector = src.is_block_device().then(|| src.sector_size());
            let src: Arc<dyn Source> = Arc::new(src);
            match partition {
                None => Ok(plain(src)),
                Some(n) => Ok(plain(Arc::new(partition_view(&src, sector, n)?))),
            }
        }
    }
}

/// Warns that an ntfsclone or partclone image ends early: what it holds
/// reads as usual, the rest fails.
fn warn_truncated(name: &str, at: Option<u64>, report: &dyn Report) {
    if let Some(at) = at {
        report.warn(&format!(
            "{name}: the image is truncated at byte {at}: the volume's bytes after it cannot be read"
        ));
    }
}
