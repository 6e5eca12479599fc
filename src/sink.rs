//! Where copied bytes go: a sparse file, an existing file or device, or
//! standard output. (The special image writer is in [`crate::image`].)
//!
//! Every sink receives chunks in ascending volume order and is finished
//! once; a file this run created is removed if the run does not finish, so
//! a partial copy never looks complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::copier::Chunk;
use crate::error::{Error, Result};
use crate::safety;

/// Receives the used bytes of a volume.
pub trait Sink {
    /// Writes a chunk; chunks arrive in ascending volume order. Returns a
    /// chunk whose buffer the copier may reuse (the same one, or an older
    /// one a sink that works in the background is done with).
    fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>>;

    /// Completes the output (size, trailing zeros, trailer) and syncs it.
    fn finish(&mut self) -> Result<()>;
}

/// Removes a file on drop unless disarmed: what this run created must not
/// outlive a failed run.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// How a file target is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileMode {
    /// `-o`: a new file; an existing one is refused.
    Create,
    /// `-O`: an existing file or device, created if missing.
    Overwrite,
}

/// A regular file or a block device receiving a volume.
pub struct FileSink {
    file: File,
    path: PathBuf,
    /// Removes the file on failure if this run created it.
    guard: RemoveOnDrop,
    is_block_device: bool,
    /// A regular file is sized to the volume; a character device such as
    /// /dev/null is neither sized nor synced.
    is_regular: bool,
    device_size: u64,
}

impl FileSink {
    /// Opens `path` as the target of a volume of `device_size` bytes,
    /// refusing an existing file in `Create` mode, a mounted or busy
    /// target, the source itself (`source`), and a device that is too small.
    pub fn open(
        path: &Path,
        mode: FileMode,
        device_size: u64,
        source: Option<&File>,
    ) -> Result<Self> {
        let existing = check_target(path, mode, source)?;
        let is_block_device = existing
            .as_ref()
            .is_some_and(|m| m.file_type().is_block_device());
        let mut opts = OpenOptions::new();
        opts.write(true);
        match mode {
            FileMode::Create => {
                opts.create_new(true);
            }
            FileMode::Overwrite if is_block_device => {
                // O_EXCL on a block device: the kernel refuses it with EBUSY
                // while the device is mounted or held by another driver.
                opts.custom_flags(rustix::fs::OFlags::EXCL.bits() as i32);
            }
            FileMode::Overwrite => {
                opts.create(true);
            }
        }
        let mut file = opts.open(path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::OutputExists {
                path: path.to_path_buf(),
            },
            _ if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                Error::TargetInUse {
                    path: path.to_path_buf(),
                    why: "the device is busy: mounted, or held by another driver".into(),
                }
            }
            _ => Error::Open {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let guard = RemoveOnDrop(existing.is_none().then(|| path.to_path_buf()));
        let is_regular = existing.as_ref().is_none_or(|m| m.is_file());
        let sink_path = path.to_path_buf();
        if is_block_device {
            let size = file
                .seek(SeekFrom::End(0))
                .map_err(|e| Error::io("cannot find the size of", path, e))?;
            if size < device_size {
                return Err(Error::TargetTooSmall {
                    path: sink_path,
                    needed: device_size,
                    actual: size,
                });
            }
        }
        Ok(FileSink {
            file,
            path: sink_path,
            guard,
            is_block_device,
            is_regular,
            device_size,
        })
    }

    /// Keeps the file even if the run fails: a mapfile vouches for what
    /// was written, and the next run resumes into it.
    pub fn keep_on_failure(&mut self) {
        self.guard.disarm();
    }

    fn write_error(&self, offset: u64, e: io::Error) -> Error {
        Error::Write {
            target: self.path.display().to_string(),
            offset,
            source: e,
        }
    }
}

impl Sink for FileSink {
    fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
        for (e, data) in chunk.pieces() {
            self.file
                .write_all_at(data, e.offset)
                .map_err(|err| self.write_error(e.offset, err))?;
        }
        Ok(Some(chunk))
    }

    fn finish(&mut self) -> Result<()> {
        if self.is_regular {
            // A new file gets holes for the unused space; an existing one is
            // extended or truncated to the volume size.
            self.file
                .set_len(self.device_size)
                .map_err(|e| self.write_error(self.device_size, e))?;
        }
        if self.is_regular || self.is_block_device {
            self.file
                .sync_all()
                .map_err(|e| Error::io("cannot sync", &self.path, e))?;
        }
        self.guard.disarm();
        Ok(())
    }
}

/// The checks every file target gets before it is opened: `-o` refuses an
/// existing path; an existing target must not be the source, nor mounted,
/// nor busy. Returns the target's metadata if it exists.
fn check_target(
    path: &Path,
    mode: FileMode,
    source: Option<&File>,
) -> Result<Option<fs::Metadata>> {
    let existing = fs::metadata(path).ok();
    if mode == FileMode::Create && existing.is_some() {
        return Err(Error::OutputExists {
            path: path.to_path_buf(),
        });
    }
    if let Some(meta) = &existing {
        if let Some(src) = source {
            safety::check_not_same(src, meta, path)?;
        }
        safety::check_target_not_in_use(path, meta)?;
    }
    Ok(existing)
}

/// A file written front to back (an image), or standard output. A file
/// this run created is removed unless [`OutputFile::commit`] is reached.
pub struct OutputFile {
    file: File,
    name: String,
    /// Removes a file we created (or truncated) if the image is not finished.
    guard: RemoveOnDrop,
    regular: bool,
}

impl OutputFile {
    /// Standard output.
    pub fn stdout() -> Result<Self> {
        Ok(OutputFile {
            file: stdout_file()?,
            name: "standard output".into(),
            guard: RemoveOnDrop(None),
            regular: false,
        })
    }

    /// A file: new (`Create`) or truncated (`Overwrite`), after the checks
    /// of [`FileSink::open`].
    pub fn open(path: &Path, mode: FileMode, source: Option<&File>) -> Result<Self> {
        let existing = check_target(path, mode, source)?;
        let mut opts = OpenOptions::new();
        opts.write(true);
        match mode {
            FileMode::Create => opts.create_new(true),
            FileMode::Overwrite => opts.create(true).truncate(true),
        };
        let file = opts.open(path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::OutputExists {
                path: path.to_path_buf(),
            },
            _ => Error::Open {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        Ok(OutputFile {
            file,
            name: path.display().to_string(),
            // An overwritten file is removed too: a half-written image that
            // replaced an old one must not pass for complete.
            guard: RemoveOnDrop((existing.is_none() || regular).then(|| path.to_path_buf())),
            regular,
        })
    }

    /// The name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Syncs a regular file and keeps it.
    pub fn commit(mut self) -> Result<()> {
        if self.regular {
            self.file
                .sync_all()
                .map_err(|e| Error::io("cannot sync", &self.name, e))?;
        }
        self.guard.disarm();
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Standard output: the whole volume, unused space as zeros.
pub struct StdoutSink {
    out: File,
    pos: u64,
    device_size: u64,
}

/// Zeros written for gaps, a block at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl StdoutSink {
    /// Writes a volume of `device_size` bytes to standard output.
    pub fn new(device_size: u64) -> Result<Self> {
        Ok(StdoutSink {
            out: stdout_file()?,
            pos: 0,
            device_size,
        })
    }

    fn zeros_to(&mut self, end: u64) -> Result<()> {
        while self.pos < end {
            let n = (end - self.pos).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(|e| Error::Write {
            target: "standard output".into(),
            offset: self.pos,
            source: e,
        })?;
        self.pos += data.len() as u64;
        Ok(())
    }
}

/// Standard output as an unbuffered `File` (std's `Stdout` is line
/// buffered, which would scan every byte for newlines).
pub fn stdout_file() -> Result<File> {
    io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| Error::io("cannot use", "standard output", e))
}

impl Sink for StdoutSink {
    fn write_chunk(&mut self, chunk: Chunk) -> Result<Option<Chunk>> {
        for (e, data) in chunk.pieces() {
            self.zeros_to(e.offset)?;
            self.write(data)?;
        }
        Ok(Some(chunk))
    }

    fn finish(&mut self) -> Result<()> {
        self.zeros_to(self.device_size)?;
        self.out.flush().map_err(|e| Error::Write {
            target: "standard output".into(),
            offset: self.pos,
            source: e,
        })
    }
}
