//! The FUSE side of a mount (the fuser crate): one read-only directory
//! holding the files of a [`Layout`], served until the mount is unmounted,
//! or a signal asks for it to be.
//!
//! One thread reads the kernel's requests (fuser gives each of its threads
//! a 16 MiB request buffer, all of it resident) and answers all but reads
//! at once; reads go to a pool of threads that answer them when their
//! bytes are decoded, so several are served at a time.
//!
//! Inode 1 is the directory; file `i` of the layout is inode `i + 2`. The
//! files never change, so the kernel may cache their attributes, names and
//! pages for as long as it likes (`FOPEN_KEEP_CACHE`): a loop device over
//! one of them reads each page from the image once.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, Request, Session, SessionACL,
    SessionUnmounter,
};
use signal_hook::iterator::Signals;

use super::prefetch::Prefetcher;
use super::{Layout, MountError};
use crate::access::ImageSource;
use crate::error::Result;
use crate::report::Report;
use crate::source::Source;

/// How long the kernel may keep what it was told: the files never change.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The block size `stat` shows: what `cat` and `cp` read at a time.
const BLKSIZE: u32 = 128 << 10;

/// The kernel's read-ahead on a mount, in KiB, as root can set it (its
/// default, 128 KiB, makes a request of every 128 KiB and keeps few in
/// flight: a `dd` of a mounted 4 GiB volume took 2.5 s with it, 1.8 s
/// with this, 2.4 s with 16 MiB).
const READ_AHEAD_KB: u32 = 4096;

/// Distinct read errors logged at most (each is logged once).
const MAX_LOGGED: usize = 100;

/// How a mount is served.
#[derive(Clone, Debug)]
pub struct Options {
    /// Threads serving reads.
    pub threads: usize,
    /// Threads reading ahead of sequential readers (fsimg images).
    pub prefetch_threads: usize,
    /// The cache of decoded records the image was opened with, in bytes
    /// (bounds the read-ahead window).
    pub cache_bytes: u64,
    /// Let root in as well as the mounting user: the mount is made with
    /// `allow_other`, which a loop device needs (the default as root).
    pub allow_root: bool,
    /// The name the mount shows as its source (`/proc/mounts`, `df`):
    /// the image's path.
    pub fsname: String,
}

/// What the mount served, counted while it ran.
#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

/// What a mount served, when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Read requests served.
    pub reads: u64,
    /// Bytes they returned.
    pub bytes: u64,
    /// Reads answered with EIO.
    pub errors: u64,
    /// Image records decoded (cache misses), for an fsimg image.
    pub records_decoded: u64,
    /// Records found decoded in the cache.
    pub cache_hits: u64,
}

/// Logs each distinct read error once, and counts them all.
struct ErrorLog {
    seen: Mutex<HashSet<String>>,
    report: Arc<dyn Report + Send + Sync>,
}

impl ErrorLog {
    fn log(&self, file: &str, offset: u64, len: u64, e: &io::Error) {
        let msg = e.to_string();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() > MAX_LOGGED || seen.contains(&msg) {
            return;
        }
        if seen.len() == MAX_LOGGED {
            seen.insert(String::new());
            self.report.error(&format!(
                "more than {MAX_LOGGED} different read errors: no more are logged"
            ));
            return;
        }
        self.report.error(&format!(
            "read error in {file} at bytes {offset}..{} (answered EIO; the rest is served): {msg}",
            offset + len
        ));
        seen.insert(msg);
    }
}

/// One file of the mount.
struct Node {
    name: String,
    source: Arc<dyn Source>,
    image_offset: Option<u64>,
    attr: FileAttr,
}

thread_local! {
    /// Each serving thread's read buffer, kept between requests.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A read for the pool: `len` bytes at `offset` of file `node`.
struct ReadJob {
    node: usize,
    offset: u64,
    len: u64,
    reply: ReplyData,
}

/// What the request thread and the read threads share.
struct Shared {
    nodes: Vec<Node>,
    prefetch: Option<Prefetcher>,
    counters: Arc<Counters>,
    errors: ErrorLog,
}

impl Shared {
    /// Answers `job` with its bytes, or EIO (logged once).
    fn serve(&self, job: ReadJob) {
        let node = &self.nodes[job.node];
        if let (Some(p), Some(base)) = (&self.prefetch, node.image_offset) {
            p.note(job.node, base, node.attr.size, job.offset, job.len);
        }
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.resize(job.len as usize, 0);
            match node.source.read_exact_at(&mut buf, job.offset) {
                Ok(()) => {
                    self.counters.bytes.fetch_add(job.len, Ordering::Relaxed);
                    job.reply.data(&buf);
                }
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.errors.log(&node.name, job.offset, job.len, &e);
                    job.reply.error(Errno::EIO);
                }
            }
        });
    }
}

/// A read thread: serves the reads queued until the queue closes.
fn read_thread(shared: &Shared, rx: &Mutex<Receiver<ReadJob>>) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => shared.serve(job),
            Err(_) => return,
        }
    }
}

/// The filesystem fuser serves.
struct ImageFs {
    root: FileAttr,
    shared: Arc<Shared>,
    queue: Mutex<Option<Sender<ReadJob>>>,
    readers: Vec<JoinHandle<()>>,
}

impl ImageFs {
    fn node(&self, ino: INodeNo) -> Option<(usize, &Node)> {
        let i = usize::try_from(ino.0.checked_sub(2)?).ok()?;
        self.shared.nodes.get(i).map(|n| (i, n))
    }

    fn attr(&self, ino: INodeNo) -> Option<&FileAttr> {
        if ino == INodeNo::ROOT {
            Some(&self.root)
        } else {
            self.node(ino).map(|(_, n)| &n.attr)
        }
    }
}

impl Filesystem for ImageFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Larger reads: fewer requests per megabyte (the kernel caps it).
        let _ = config
            .set_max_readahead(4 << 20)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for r in std::mem::take(&mut self.readers) {
            let _ = r.join();
        }
        if let Some(p) = &self.shared.prefetch {
            p.stop();
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        match self
            .shared
            .nodes
            .iter()
            .find(|n| OsStr::new(&n.name) == name)
        {
            Some(n) => reply.entry(&TTL, &n.attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.node(ino).is_none() {
            return reply.error(if ino == INodeNo::ROOT {
                Errno::EISDIR
            } else {
                Errno::ENOENT
            });
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some((i, node)) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let len = u64::from(size).min(node.attr.size.saturating_sub(offset));
        if len == 0 {
            return reply.data(&[]);
        }
        let job = ReadJob {
            node: i,
            offset,
            len,
            reply,
        };
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        match queue.as_ref().map(|q| q.send(job)) {
            Some(Ok(())) => {}
            Some(Err(std::sync::mpsc::SendError(job))) => job.reply.error(Errno::EIO),
            None => {}
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [".", ".."]
            .into_iter()
            .map(|d| (d, INodeNo::ROOT, FileType::Directory))
            .chain(
                self.shared
                    .nodes
                    .iter()
                    .map(|n| (n.name.as_str(), n.attr.ino, FileType::RegularFile)),
            );
        for (k, (name, ino, kind)) in entries.enumerate().skip(offset as usize) {
            if reply.add(ino, k as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bytes: u64 = self.shared.nodes.iter().map(|n| n.attr.size).sum();
        let files = self.shared.nodes.len() as u64 + 1;
        reply.statfs(bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.attr(ino) {
            None => reply.error(Errno::ENOENT),
            Some(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Some(a) if mask.contains(AccessFlags::X_OK) && a.kind != FileType::Directory => {
                reply.error(Errno::EACCES)
            }
            Some(_) => reply.ok(),
        }
    }
}

/// An image mounted and ready, to be served by [`Server::run`].
pub struct Server {
    session: Session<ImageFs>,
    dir: PathBuf,
    files: Vec<(String, u64)>,
    counters: Arc<Counters>,
    image: Option<Arc<ImageSource>>,
    report: Arc<dyn Report + Send + Sync>,
}

/// The attributes of a file of `size` bytes (`ino` 1: the directory).
fn attr(ino: u64, size: u64, mtime: SystemTime, kind: FileType) -> FileAttr {
    let dir = kind == FileType::Directory;
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind,
        perm: if dir { 0o555 } else { 0o444 },
        nlink: if dir { 2 } else { 1 },
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The name a mount shows as its source, escaped for fusermount3's option
/// list (`\` and `,` are its separators' escapes).
fn fsname_option(name: &str, through_fusermount: bool) -> String {
    if !through_fusermount {
        return name.to_string();
    }
    name.replace('\\', "\\\\").replace(',', "\\,")
}

impl Server {
    /// Mounts `layout` on `dir`; returns once the kernel has started the
    /// session (the mount is ready). Read errors are logged to `report`.
    pub fn mount(
        layout: Layout,
        dir: &Path,
        opts: &Options,
        report: Arc<dyn Report + Send + Sync>,
    ) -> Result<Server> {
        let mtime = layout.mtime;
        let nodes: Vec<Node> = layout
            .files
            .into_iter()
            .enumerate()
            .map(|(i, f)| Node {
                attr: attr(i as u64 + 2, f.source.size(), mtime, FileType::RegularFile),
                name: f.name,
                source: f.source,
                image_offset: f.image_offset,
            })
            .collect();
        let files = nodes
            .iter()
            .map(|n| (n.name.clone(), n.attr.size))
            .collect();
        let prefetch = layout.image.as_ref().map(|img| {
            Prefetcher::new(
                Arc::clone(img),
                nodes.len(),
                opts.prefetch_threads,
                opts.cache_bytes,
            )
        });
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            nodes,
            prefetch,
            counters: Arc::clone(&counters),
            errors: ErrorLog {
                seen: Mutex::new(HashSet::new()),
                report: Arc::clone(&report),
            },
        });
        let (tx, rx) = channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut readers = Vec::new();
        for i in 0..opts.threads.max(1) {
            let (shared, rx) = (Arc::clone(&shared), Arc::clone(&rx));
            let t = std::thread::Builder::new()
                .name(format!("fsimg-read-{i}"))
                .spawn(move || read_thread(&shared, &rx))
                .map_err(|e| MountError::Mount {
                    dir: dir.to_path_buf(),
                    source: e,
                })?;
            readers.push(t);
        }
        let fs = ImageFs {
            root: attr(1, 0, mtime, FileType::Directory),
            shared,
            queue: Mutex::new(Some(tx)),
            readers,
        };
        let root = rustix::process::geteuid().is_root();
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::RO,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoExec,
            MountOption::DefaultPermissions,
            MountOption::FSName(fsname_option(&opts.fsname, !root)),
            // A kernel option (fuser passes its Subtype to fusermount3
            // alone): /proc/mounts then says fuse.fsimg either way.
            MountOption::CUSTOM("subtype=fsimg".into()),
        ];
        config.acl = if opts.allow_root {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        // One request thread: reads are handed to the pool.
        config.n_threads = Some(1);
        // Absolute, for unmounting once the background server has left its
        // directory; found before the mount hides what is there.
        let abs_dir = dir
            .canonicalize()
            .or_else(|_| std::path::absolute(dir))
            .unwrap_or_else(|_| dir.to_path_buf());
        let session = Session::new(fs, dir, &config).map_err(|e| MountError::Mount {
            dir: dir.to_path_buf(),
            source: e,
        })?;
        if root {
            raise_readahead(&abs_dir);
        }
        Ok(Server {
            session,
            dir: abs_dir,
            files,
            counters,
            image: layout.image,
            report,
        })
    }

    /// The files shown: (name, size).
    pub fn files(&self) -> &[(String, u64)] {
        &self.files
    }

    /// Serves the mount until it is unmounted. A signal that `signals`
    /// delivers unmounts it (if a loop device or an open file keeps it
    /// busy, it is detached from the tree and served until the last user
    /// lets go); another detaches it whatever the first achieved. With
    /// `stop_now`, unmounts at once (the mount is not wanted any more).
    pub fn run(mut self, signals: Signals, stop_now: bool) -> Result<Stats> {
        let mut unmounter = self.session.unmount_callable();
        let dir = self.dir.clone();
        let report = Arc::clone(&self.report);
        if stop_now {
            stop(&mut unmounter, &dir, report.as_ref());
        }
        let handle = signals.handle();
        let mut signals = signals;
        let watcher = std::thread::Builder::new()
            .name("fsimg-signals".into())
            .spawn(move || {
                for (k, _) in signals.forever().enumerate() {
                    if k == 0 {
                        stop(&mut unmounter, &dir, report.as_ref());
                    } else {
                        detach(&dir);
                    }
                }
            })
            .map_err(|e| MountError::Mount {
                dir: self.dir.clone(),
                source: e,
            })?;
        let served = self.session.run();
        handle.close();
        let _ = watcher.join();
        served.map_err(|e| MountError::Mount {
            dir: self.dir.clone(),
            source: e,
        })?;
        let c = &self.counters;
        Ok(Stats {
            reads: c.reads.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            records_decoded: self.image.as_ref().map_or(0, |i| i.records_decoded()),
            cache_hits: self.image.as_ref().map_or(0, |i| i.cache_hits()),
        })
    }
}

/// Sets the read-ahead of the mount on `dir` to [`READ_AHEAD_KB`]
/// (through its backing device's sysfs entry, which root may write; the
/// FUSE protocol can only lower it). Nothing happens where it cannot.
fn raise_readahead(dir: &Path) {
    if let Some((_, dev)) = super::fsimg_mounts()
        .into_iter()
        .rev()
        .find(|(p, _)| p == dir)
    {
        let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
        let _ = std::fs::write(knob, READ_AHEAD_KB.to_string());
    }
}

/// Detaches the mount on `dir` from the tree (umount2 with MNT_DETACH as
/// root, `fusermount3 -u -z` otherwise), if it is still there.
fn detach(dir: &Path) {
    if rustix::process::geteuid().is_root() {
        let _ = rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH);
    } else {
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z", "-q", "--"])
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Unmounts `dir`; if it is busy, detaches it (the kernel ends the session
/// when the last user of its files lets go).
fn stop(unmounter: &mut SessionUnmounter, dir: &Path, report: &dyn Report) {
    match unmounter.unmount() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            match rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH) {
                Ok(()) => report.warn(&format!(
                    "{} is busy (a loop device or an open file uses a file in it): detached, and served until the last user lets go",
                    dir.display()
                )),
                Err(e) => report.error(&format!("cannot unmount {}: {e}", dir.display())),
            }
        }
        Err(e) => report.error(&format!("cannot unmount {}: {e}", dir.display())),
    }
}
