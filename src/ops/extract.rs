//! `fsimg extract`: files, directories and symlinks out of a volume into a
//! directory, with their modification times and modes (and owners when
//! run as root), hard links kept, sparse files kept sparse.
//!
//! Nothing is ever written outside the target directory: every file is
//! created relative to its parent directory's descriptor (`openat`,
//! `mkdirat`, `symlinkat`), directories are opened with `O_NOFOLLOW`, and
//! files are created with `O_EXCL | O_NOFOLLOW`, so neither a name from
//! the volume (readers refuse `/`, `..` and NUL in names) nor a symlink
//! extracted earlier can lead a write elsewhere. Existing files are left
//! alone unless `--overwrite`; existing directories are merged into.
//!
//! The tree is walked first: directories, symlinks and special files are
//! made, every regular file is created empty, and files whose data lives
//! with their metadata (inline, resident) are written at once. The other
//! files' data is then copied in the order it lies on the volume, in
//! batches of [`BATCH`] files, so that an image's records are each
//! decoded about once instead of once per file that needs them (the
//! record cache holds 64 MiB; a tree walked in name order would revisit
//! every record many times). Directories get their times and modes last,
//! after everything inside them is written.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, chownat, fchmod, fchown,
    futimens, linkat, mkdirat, mknodat, openat, openat2, statat, symlinkat, unlinkat, utimensat,
};
use rustix::process::{Gid, Uid};

use crate::error::{Error, Result};
use crate::files::error::check_name;
use crate::files::walk::{self, Found};
use crate::files::{FileError, FileRead, Kind, Meta, Time, Tree};
use crate::ops::ls::{MAX_DEPTH, cycle};
use crate::report::Report;

/// Bytes read from the volume and written per call.
const CHUNK: usize = 1 << 20;

/// Files whose data waits to be copied in volume order, at most: bounds
/// the memory of a huge tree (a few hundred bytes each).
pub const BATCH: usize = 1 << 16;

/// Decodes ahead the image records holding volume bytes `(offset, len)`.
pub type Prefetch<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Bytes of file data read ahead of the file being written, at most: a
/// third of the 64 MiB record cache, so that what is decoded ahead is
/// still cached when it is read.
const READ_AHEAD: u64 = 24 << 20;

/// How to extract.
#[derive(Clone, Copy, Default)]
pub struct ExtractOptions<'a> {
    /// Replace existing files, symlinks and special files (`--overwrite`).
    pub overwrite: bool,
    /// Give extracted files their owners and groups (by default when run
    /// as root, as tar does).
    pub owners: bool,
    /// Decodes image records ahead on another thread while files are
    /// written ([`crate::access::Volume::prefetch`]).
    pub prefetch: Option<Prefetch<'a>>,
}

/// What an extraction made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Directories created or merged into.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links made to a file already extracted.
    pub hard_links: u64,
    /// FIFOs and device nodes created.
    pub special: u64,
    /// Bytes of file data written (holes not counted).
    pub bytes: u64,
    /// Entries that could not be extracted (each one reported).
    pub failures: u64,
}

/// Extracts `paths` of `tree` into directory `dest` (created if missing).
/// A directory is extracted as `dest/NAME` with everything below it; `/`
/// puts the root's contents straight into `dest`. Entries that fail are
/// reported through `report` and counted; the rest goes on.
pub fn extract(
    tree: &dyn Tree,
    paths: &[String],
    dest: &Path,
    opts: ExtractOptions<'_>,
    report: &dyn Report,
) -> Result<ExtractSummary> {
    std::fs::create_dir_all(dest).map_err(|e| Error::io("cannot create", dest, e))?;
    let root = openat(
        rustix::fs::CWD,
        dest,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("cannot open directory", dest, e.into()))?;
    let mut x = Extractor {
        tree,
        opts,
        report,
        dest: dest.to_path_buf(),
        root,
        links: HashMap::new(),
        ancestors: Vec::new(),
        pending: Vec::new(),
        dirs: Vec::new(),
        sum: ExtractSummary::default(),
        buf: vec![0u8; CHUNK],
    };
    for path in paths {
        let found = match walk::resolve(tree, path, false) {
            Ok(f) => f,
            Err(e) => {
                x.fail(&e);
                continue;
            }
        };
        if found.path == "/" {
            let root = x
                .root
                .try_clone()
                .map_err(|e| Error::io("cannot open", dest, e))?;
            if let Err(e) = x.dir_contents(&root, Path::new(""), &found) {
                x.fail(&e);
            }
            continue;
        }
        let name = found.path.rsplit('/').next().unwrap_or("").to_string();
        let parent = x
            .root
            .try_clone()
            .map_err(|e| Error::io("cannot open", dest, e))?;
        x.entry(&parent, Path::new(""), name.as_bytes(), &found);
    }
    x.flush();
    x.finish_dirs();
    Ok(x.sum)
}

/// The state of one extraction.
struct Extractor<'a> {
    tree: &'a dyn Tree,
    opts: ExtractOptions<'a>,
    report: &'a dyn Report,
    /// The target directory, for messages.
    dest: PathBuf,
    /// Its descriptor: hard links are made relative to it.
    root: OwnedFd,
    /// Files with several names already extracted: their number and
    /// their path relative to `root`.
    links: HashMap<u64, PathBuf>,
    /// The numbers of the directories being extracted, to stop at a
    /// directory that contains itself.
    ancestors: Vec<u64>,
    /// Files created empty, their data to be copied in volume order.
    pending: Vec<Pending>,
    /// Directories to give their times and modes at the end, deepest
    /// first.
    dirs: Vec<(PathBuf, Meta)>,
    sum: ExtractSummary,
    buf: Vec<u8>,
}

/// A file created empty whose data is still to be copied.
struct Pending {
    /// Where its data starts on the volume.
    at: u64,
    /// Its path below the target directory.
    rel: PathBuf,
    /// The file.
    found: Found,
}

impl Extractor<'_> {
    /// Reports a failed entry and counts it.
    fn fail(&mut self, e: &Error) {
        self.report.error(&e.to_string());
        self.sum.failures += 1;
    }

    /// The path an entry gets on this machine, for messages.
    fn shown(&self, rel: &Path) -> PathBuf {
        self.dest.join(rel)
    }

    /// Extracts one entry named `name` into `parent` (at `parent_rel`
    /// below the target directory); failures are reported and counted.
    fn entry(&mut self, parent: &OwnedFd, parent_rel: &Path, name: &[u8], f: &Found) {
        let rel = parent_rel.join(OsStr::from_bytes(name));
        if let Err(e) = self.try_entry(parent, &rel, name, f) {
            self.fail(&e);
        }
    }

    fn try_entry(&mut self, parent: &OwnedFd, rel: &Path, name: &[u8], f: &Found) -> Result<()> {
        check_name(&self.dest.display().to_string(), name)?;
        let m = &f.meta;
        match m.kind {
            Kind::Dir => {
                self.make_dir(parent, rel, name)?;
                let fd = openat(
                    parent,
                    OsStr::from_bytes(name),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io("cannot open directory", self.shown(rel), e.into()))?;
                self.sum.dirs += 1;
                let listed = self.dir_contents(&fd, rel, f);
                // Its times and mode at the end (even when it cannot be
                // listed whole), once nothing more is written into it.
                self.dirs.push((rel.to_path_buf(), m.clone()));
                listed
            }
            Kind::File if m.nlink > 1 && f.stream.is_none() && self.links.contains_key(&m.id) => {
                let first = self.links[&m.id].clone();
                self.make_room(parent, rel, name)?;
                linkat(
                    &self.root,
                    &first,
                    parent,
                    OsStr::from_bytes(name),
                    AtFlags::empty(),
                )
                .map_err(|e| Error::io("cannot link", self.shown(rel), e.into()))?;
                self.sum.hard_links += 1;
                Ok(())
            }
            Kind::File => {
                let fd = self.create_file(parent, rel, name)?;
                let at = match walk::open(self.tree, f) {
                    Ok(r) => r.volume_offset(),
                    Err(e) => {
                        drop(fd);
                        let _ = unlinkat(parent, OsStr::from_bytes(name), AtFlags::empty());
                        return Err(e);
                    }
                };
                if m.nlink > 1 && f.stream.is_none() {
                    self.links.insert(m.id, rel.to_path_buf());
                }
                match at {
                    // Stored with its metadata, read already: now.
                    None => self.write_file(File::from(fd), rel, f),
                    Some(at) => {
                        self.pending.push(Pending {
                            at,
                            rel: rel.to_path_buf(),
                            found: f.clone(),
                        });
                        if self.pending.len() >= BATCH {
                            self.flush();
                        }
                        Ok(())
                    }
                }
            }
            Kind::Symlink => {
                let target = self.tree.read_link(m, &f.path)?;
                self.make_room(parent, rel, name)?;
                symlinkat(OsStr::from_bytes(&target), parent, OsStr::from_bytes(name))
                    .map_err(|e| Error::io("cannot create symlink", self.shown(rel), e.into()))?;
                self.sum.symlinks += 1;
                self.finish(parent, Some(name), m, rel)
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                let (ft, dev) = match (m.kind, m.rdev.unwrap_or((0, 0))) {
                    (Kind::Fifo, _) => (FileType::Fifo, 0),
                    (Kind::CharDevice, (a, b)) => {
                        (FileType::CharacterDevice, rustix::fs::makedev(a, b))
                    }
                    (_, (a, b)) => (FileType::BlockDevice, rustix::fs::makedev(a, b)),
                };
                self.make_room(parent, rel, name)?;
                mknodat(
                    parent,
                    OsStr::from_bytes(name),
                    ft,
                    Mode::from_raw_mode(0o600),
                    dev,
                )
                .map_err(|e| Error::io("cannot create", self.shown(rel), e.into()))?;
                self.sum.special += 1;
                self.finish(parent, Some(name), m, rel)
            }
            Kind::Socket => {
                self.report
                    .warn(&format!("{}: a socket, not extracted", f.path));
                Ok(())
            }
        }
    }

    /// Extracts the entries of directory `f` into the open directory `fd`.
    fn dir_contents(&mut self, fd: &OwnedFd, rel: &Path, f: &Found) -> Result<()> {
        if self.ancestors.contains(&f.meta.id) || self.ancestors.len() >= MAX_DEPTH {
            return Err(cycle(&f.path, f.meta.id));
        }
        let entries = self.tree.read_dir(&f.meta, &f.path)?;
        self.ancestors.push(f.meta.id);
        for slot in entries {
            let e = match slot {
                Ok(e) => e,
                Err(bad) => {
                    self.fail(&bad.error);
                    continue;
                }
            };
            let path = walk::join(&f.path, &e.name);
            let child = Found {
                meta: e.meta,
                path,
                stream: None,
            };
            self.entry(fd, rel, &e.name, &child);
            if child.meta.kind == Kind::File {
                self.streams(fd, rel, &e.name, &child);
            }
        }
        self.ancestors.pop();
        Ok(())
    }

    /// Extracts the named streams of file `f` (NTFS) beside it, as
    /// `NAME:STREAM`.
    fn streams(&mut self, fd: &OwnedFd, rel: &Path, name: &[u8], f: &Found) {
        let streams = match self.tree.streams(&f.meta, &f.path) {
            Ok(s) => s,
            Err(e) => return self.fail(&e),
        };
        for s in streams {
            let mut sname = name.to_vec();
            sname.push(b':');
            sname.extend_from_slice(s.name.as_bytes());
            let mut meta = f.meta.clone();
            meta.size = s.size;
            meta.nlink = 1;
            let child = Found {
                meta,
                path: format!("{}:{}", f.path, s.name),
                stream: Some(s.name),
            };
            self.entry(fd, rel, &sname, &child);
        }
    }

    /// Copies the data of the pending files, in the order it lies on the
    /// volume, and gives each its owner, mode and times.
    fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|p| p.at);
        let Some(prefetch) = self.opts.prefetch else {
            return self.copy_pending(pending, &AtomicU64::new(0));
        };
        // Another thread decodes the records of the next files while this
        // one writes: up to READ_AHEAD bytes past the file being written.
        let reached = AtomicU64::new(0);
        let ahead: Vec<(u64, u64)> = pending.iter().map(|p| (p.at, p.found.meta.size)).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                for (at, size) in ahead {
                    loop {
                        let r = reached.load(Ordering::Acquire);
                        if r == u64::MAX {
                            return;
                        }
                        if at <= r.saturating_add(READ_AHEAD) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    prefetch(at, size.min(READ_AHEAD));
                }
            });
            self.copy_pending(pending, &reached);
            reached.store(u64::MAX, Ordering::Release);
        });
    }

    /// Copies the pending files, sorted by volume offset, saying in
    /// `reached` where on the volume the copy stands.
    fn copy_pending(&mut self, pending: Vec<Pending>, reached: &AtomicU64) {
        for p in pending {
            reached.fetch_max(p.at, Ordering::Release);
            let file = match self.open_beneath(&p.rel, OFlags::WRONLY) {
                Ok(fd) => File::from(fd),
                Err(e) => {
                    self.fail(&e);
                    continue;
                }
            };
            if let Err(e) = self.write_file(file, &p.rel, &p.found) {
                self.fail(&e);
            }
        }
    }

    /// Writes the data of `f` into `file` (created empty at `rel`), then
    /// its owner, mode and times. A file that cannot be read is removed.
    fn write_file(&mut self, file: File, rel: &Path, f: &Found) -> Result<()> {
        match self.copy_data(f, &file, rel) {
            Ok(n) => {
                self.sum.bytes += n;
                self.sum.files += 1;
                self.finish(file.as_fd(), None, &f.meta, rel)
            }
            Err(e) => {
                drop(file);
                let _ = unlinkat(&self.root, rel, AtFlags::empty());
                Err(e)
            }
        }
    }

    /// Gives the extracted directories their owners, modes and times,
    /// deepest first (a read-only directory is made so after what is in
    /// it).
    fn finish_dirs(&mut self) {
        for (rel, meta) in std::mem::take(&mut self.dirs) {
            let done = self
                .open_beneath(&rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .and_then(|fd| self.finish(&fd, None, &meta, &rel));
            if let Err(e) = done {
                self.fail(&e);
            }
        }
    }

    /// Opens `rel` below the target directory, never through a symlink
    /// nor out of it (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`).
    fn open_beneath(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd> {
        openat2(
            &self.root,
            rel,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| Error::io("cannot open", self.shown(rel), e.into()))
    }

    /// Creates directory `name`, or accepts an existing one.
    fn make_dir(&mut self, parent: &OwnedFd, rel: &Path, name: &[u8]) -> Result<()> {
        let n = OsStr::from_bytes(name);
        match mkdirat(parent, n, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => {
                let st = statat(parent, n, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| Error::io("cannot stat", self.shown(rel), e.into()))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Ok(());
                }
                self.make_room(parent, rel, name)?;
                mkdirat(parent, n, Mode::from_raw_mode(0o700))
                    .map_err(|e| Error::io("cannot create directory", self.shown(rel), e.into()))
            }
            Err(e) => Err(Error::io(
                "cannot create directory",
                self.shown(rel),
                e.into(),
            )),
        }
    }

    /// Makes sure nothing is named `name` in `parent`: an existing file
    /// is an error, or with `--overwrite` is removed (a directory never).
    fn make_room(&mut self, parent: &OwnedFd, rel: &Path, name: &[u8]) -> Result<()> {
        let n = OsStr::from_bytes(name);
        let st = match statat(parent, n, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::io("cannot stat", self.shown(rel), e.into())),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if !self.opts.overwrite || is_dir {
            return Err(FileError::Exists {
                path: self.shown(rel).display().to_string(),
                hint: if is_dir {
                    "a directory is never replaced by a file"
                } else {
                    "use --overwrite to replace it"
                },
            }
            .into());
        }
        unlinkat(parent, n, AtFlags::empty())
            .map_err(|e| Error::io("cannot remove", self.shown(rel), e.into()))
    }

    /// Creates regular file `name`, never through a symlink.
    fn create_file(&mut self, parent: &OwnedFd, rel: &Path, name: &[u8]) -> Result<OwnedFd> {
        self.make_room(parent, rel, name)?;
        openat(
            parent,
            OsStr::from_bytes(name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::io("cannot create", self.shown(rel), e.into()))
    }

    /// Copies the contents of `f` into `file`: only its data ranges, so
    /// that holes stay holes, then the length. Returns the bytes written.
    fn copy_data(&mut self, f: &Found, file: &File, rel: &Path) -> Result<u64> {
        let size = f.meta.size;
        let mut reader = walk::open(self.tree, f)?;
        let ranges = reader.data_ranges()?.unwrap_or_else(|| vec![(0, size)]);
        let mut written = 0;
        for (start, end) in ranges {
            let end = end.min(size);
            let mut at = start;
            while at < end {
                let want = (end - at).min(CHUNK as u64) as usize;
                let n = read_some(&mut *reader, at, &mut self.buf[..want], f)?;
                file.write_all_at(&self.buf[..n], at)
                    .map_err(|e| Error::io("cannot write", self.shown(rel), e))?;
                at += n as u64;
                written += n as u64;
            }
        }
        file.set_len(size)
            .map_err(|e| Error::io("cannot write", self.shown(rel), e))?;
        Ok(written)
    }

    /// Gives an extracted entry its owner, mode and times: on `fd` itself,
    /// or with `name`, on the entry `name` in directory `fd` (symlinks and
    /// special files, never followed).
    fn finish(&self, fd: impl AsFd, name: Option<&[u8]>, m: &Meta, rel: &Path) -> Result<()> {
        let times = Timestamps {
            last_access: timespec(m.atime.unwrap_or(m.mtime)),
            last_modification: timespec(m.mtime),
        };
        let err = |what: &'static str| {
            let shown = self.shown(rel);
            move |e: rustix::io::Errno| Error::io(what, shown, e.into())
        };
        let (uid, gid) = (Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)));
        match name {
            None => {
                if self.opts.owners {
                    fchown(&fd, uid, gid).map_err(err("cannot change the owner of"))?;
                }
                // After chown, which clears setuid and setgid.
                fchmod(&fd, Mode::from_raw_mode(m.mode & 0o7777))
                    .map_err(err("cannot change the mode of"))?;
                futimens(&fd, &times).map_err(err("cannot set the times of"))
            }
            Some(name) => {
                let n = OsStr::from_bytes(name);
                if self.opts.owners {
                    chownat(&fd, n, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(err("cannot change the owner of"))?;
                }
                if m.kind != Kind::Symlink {
                    rustix::fs::chmodat(
                        &fd,
                        n,
                        Mode::from_raw_mode(m.mode & 0o7777),
                        AtFlags::empty(),
                    )
                    .map_err(err("cannot change the mode of"))?;
                }
                utimensat(&fd, n, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(err("cannot set the times of"))
            }
        }
    }
}

/// One read of at least one byte, or the error for a file shorter than
/// its size.
fn read_some(r: &mut dyn FileRead, at: u64, buf: &mut [u8], f: &Found) -> Result<usize> {
    match r.read_at(at, buf)? {
        0 => Err(FileError::Corrupt {
            path: f.path.clone(),
            what: "file".into(),
            detail: format!(
                "its data ends at byte {at} of the {} its size says",
                f.meta.size
            ),
        }
        .into()),
        n => Ok(n),
    }
}

fn timespec(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nanos.min(999_999_999)),
    }
}

/// Whether this process runs as root (and so restores owners).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
