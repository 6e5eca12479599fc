//! Read-only access to the volume being copied.
//!
//! A [`Source`] is read with positioned reads from any thread, so the copier
//! can read ahead on its own thread while the sink writes.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A read-only volume.
pub trait Source: Send + Sync {
    /// Size of the volume in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` from byte `offset`. A read past the end is an
    /// `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// The smallest unit the device can fail to read (its logical sector
    /// size); 512 for regular files.
    fn sector_size(&self) -> u32 {
        512
    }

    /// A name for messages (the path).
    fn name(&self) -> &str;
}

impl dyn Source + '_ {
    /// Reads `len` bytes at `offset` into a new vector, mapping failures to
    /// [`Error::Read`] or, past the end, [`Error::SourceTruncated`].
    pub fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(&mut buf, offset)?;
        Ok(buf)
    }

    /// Fills `buf` from `offset`, mapping failures like [`Self::read_vec`].
    pub fn read_into(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.size() {
            return Err(Error::SourceTruncated {
                name: self.name().to_string(),
                needed: end,
                actual: self.size(),
            });
        }
        self.read_exact_at(buf, offset).map_err(|e| Error::Read {
            name: self.name().to_string(),
            offset,
            len: buf.len() as u64,
            source: e,
        })
    }
}

/// A regular file or a block device, opened read-only.
pub struct FileSource {
    file: File,
    path: PathBuf,
    name: String,
    size: u64,
    sector_size: u32,
    is_block_device: bool,
}

impl FileSource {
    /// Opens `path` read-only. The size of a block device comes from the
    /// device itself (seeking to its end), not from `stat`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|e| Error::Open {
                path: path.to_path_buf(),
                source: e,
            })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("cannot stat", path, e))?;
        let ft = meta.file_type();
        let is_block_device = ft.is_block_device();
        let (size, sector_size) = if is_block_device {
            let size = file
                .seek(SeekFrom::End(0))
                .map_err(|e| Error::io("cannot find the size of", path, e))?;
            let sector = rustix::fs::ioctl_blksszget(&file).unwrap_or(512);
            (size, sector.max(512))
        } else if ft.is_file() {
            (meta.len(), 512)
        } else {
            return Err(Error::Usage(format!(
                "{} is neither a regular file nor a block device",
                path.display()
            )));
        };
        Ok(FileSource {
            file,
            name: path.display().to_string(),
            path: path.to_path_buf(),
            size,
            sector_size,
            is_block_device,
        })
    }

    /// The path the source was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the source is a block device.
    pub fn is_block_device(&self) -> bool {
        self.is_block_device
    }

    /// The open file, for identity checks (same file as the target?).
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A volume held in memory, for tests and for images built on the fly.
pub struct MemSource {
    data: Vec<u8>,
    name: String,
}

impl MemSource {
    /// Wraps `data` under the name `name`.
    pub fn new(data: Vec<u8>, name: &str) -> Self {
        MemSource {
            data,
            name: name.to_string(),
        }
    }
}

impl Source for MemSource {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.data.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A range of another source, read as a volume of its own: a partition of
/// a disk. Filesystem modules read it from byte 0 and never learn where it
/// lies on the disk.
#[derive(Clone)]
pub struct SourceView {
    inner: Arc<dyn Source>,
    start: u64,
    len: u64,
    name: String,
}

impl SourceView {
    /// `len` bytes of `inner` from byte `start` (clamped to `inner`), named
    /// `name` in messages.
    pub fn new(inner: Arc<dyn Source>, start: u64, len: u64, name: String) -> Self {
        let start = start.min(inner.size());
        let len = len.min(inner.size() - start);
        SourceView {
            inner,
            start,
            len,
            name,
        }
    }

    /// Where the view starts in the source it is cut from.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl Source for SourceView {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        if end > self.len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.inner.read_exact_at(buf, self.start + offset)
    }

    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Source for Arc<dyn Source> {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }

    fn sector_size(&self) -> u32 {
        (**self).sector_size()
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}
