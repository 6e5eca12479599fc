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
use std::sync::{Mutex, PoisonError};

use crate::copier::Chunk;
use crate::error::{Error, Result};
use crate::pipe::StreamOut;
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
/// outlive a failed run. While armed, the path is also listed for
/// [`remove_unfinished`].
struct RemoveOnDrop(Option<PathBuf>);

/// The files armed guards will remove, for [`remove_unfinished`].
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RemoveOnDrop {
    fn new(path: Option<PathBuf>) -> Self {
        if let Some(p) = &path {
            unfinished().push(p.clone());
        }
        RemoveOnDrop(path)
    }

    fn disarm(&mut self) {
        if let Some(p) = self.0.take() {
            let mut list = unfinished();
            if let Some(i) = list.iter().position(|q| *q == p) {
                list.swap_remove(i);
            }
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
        self.disarm();
    }
}

/// Removes every file that a sink of this process created and has not
/// finished: for a process about to exit without unwinding (a second
/// Ctrl-C, or a run stuck in a read from a stalled pipe), which drops no
/// sink.
pub fn remove_unfinished() {
    for p in unfinished().drain(..) {
        let _ = fs::remove_file(p);
    }
}

/// Bytes at the start of a file or device target that are written last,
/// after the rest is synced: until a copy is complete the target holds no
/// superblock, boot sector or partition table (those of an existing target
/// are zeroed when the copy begins), so an interrupted or crashed copy is
/// not taken for a complete one.
pub const HELD_HEAD: u64 = 64 * 1024;

/// The pieces of the head of a target, held until [`Sink::finish`].
struct Head {
    /// Bytes from 0 that are held.
    limit: u64,
    /// Whether the target existed: its old bytes under each held piece
    /// are zeroed when the piece arrives (the unused ones stay as they were).
    zero: bool,
    held: Vec<(u64, Vec<u8>)>,
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
    /// The head of the target, written last (`None`: written in place).
    head: Option<Head>,
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
        let guard = RemoveOnDrop::new(existing.is_none().then(|| path.to_path_buf()));
        let is_regular = existing.as_ref().is_none_or(|m| m.is_file());
        let head = (is_regular || is_block_device).then(|| Head {
            limit: HELD_HEAD.min(device_size),
            zero: existing.is_some(),
            held: Vec::new(),
        });
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
            head,
        })
    }

    /// Keeps the file even if the run fails: a mapfile vouches for what
    /// was written, and the next run resumes into it. Every byte is then
    /// written in place as it comes (the mapfile says what is there).
    pub fn keep_on_failure(&mut self) {
        self.guard.disarm();
        self.head = None;
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
        for (e, mut data) in chunk.pieces() {
            let mut offset = e.offset;
            if let Some(head) = &mut self.head
                && offset < head.limit
            {
                let n = (head.limit - offset).min(data.len() as u64) as usize;
                if head.zero {
                    // What the target held there (an old superblock) goes now.
                    let zeros = vec![0u8; n];
                    if let Err(err) = self.file.write_all_at(&zeros, offset) {
                        return Err(self.write_error(offset, err));
                    }
                }
                head.held.push((offset, data[..n].to_vec()));
                offset += n as u64;
                data = &data[n..];
            }
            if !data.is_empty() {
                self.file
                    .write_all_at(data, offset)
                    .map_err(|err| self.write_error(offset, err))?;
            }
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
        let sync = |s: &Self| {
            if s.is_regular || s.is_block_device {
                s.file
                    .sync_all()
                    .map_err(|e| Error::io("cannot sync", &s.path, e))?;
            }
            Ok::<(), Error>(())
        };
        if let Some(head) = self.head.take()
            && !head.held.is_empty()
        {
            // Everything else is on disk before the head says it is there.
            sync(self)?;
            for (offset, data) in head.held {
                self.file
                    .write_all_at(&data, offset)
                    .map_err(|err| self.write_error(offset, err))?;
            }
        }
        sync(self)?;
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
    file: StreamOut,
    name: String,
    /// Removes a file we created (or truncated) if the image is not finished.
    guard: RemoveOnDrop,
    regular: bool,
}

impl OutputFile {
    /// Standard output.
    pub fn stdout() -> Result<Self> {
        Ok(OutputFile {
            file: StreamOut::new(stdout_file()?),
            name: "standard output".into(),
            guard: RemoveOnDrop::new(None),
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
            file: StreamOut::new(file),
            name: path.display().to_string(),
            // An overwritten file is removed too: a half-written image that
            // replaced an old one must not pass for complete.
            guard: RemoveOnDrop::new((existing.is_none() || regular).then(|| path.to_path_buf())),
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
                .file()
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
    out: StreamOut,
    pos: u64,
    device_size: u64,
}

impl StdoutSink {
    /// Writes a volume of `device_size` bytes to standard output.
    pub fn new(device_size: u64) -> Result<Self> {
        Ok(StdoutSink {
            out: StreamOut::new(stdout_file()?),
            pos: 0,
            device_size,
        })
    }

    fn zeros_to(&mut self, end: u64) -> Result<()> {
        if end > self.pos {
            self.out
                .write_zeros(end - self.pos)
                .map_err(|e| Error::Write {
                    target: "standard output".into(),
                    offset: self.pos,
                    source: e,
                })?;
            self.pos = end;
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
