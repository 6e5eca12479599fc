//! Files inside a volume, read without restoring or mounting it: the layer
//! under `fsimg ls`, `cat` and `extract`.
//!
//! A [`Tree`] reads one filesystem's directories, file contents and
//! symlinks from any [`Source`] — a raw volume, or the random-access
//! reader over an image ([`crate::access`]). Each filesystem has its own
//! module, named after what it reads; the commands above see only this
//! interface.
//!
//! Every reader treats the volume as hostile: a corrupt directory, inode or
//! MFT record is a [`FileError`] naming it (and the path that led there),
//! never a panic and never a silent wrong answer.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::FsChoice;
use crate::source::Source;

pub mod error;
pub mod ext;
pub mod fat;
pub mod ntfs;
pub mod walk;

pub use error::FileError;

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl Kind {
    /// The first letter of `ls -l`.
    pub fn letter(self) -> char {
        match self {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::CharDevice => 'c',
            Kind::BlockDevice => 'b',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
        }
    }
}

/// A point in time: seconds since the Unix epoch (negative before 1970)
/// and nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    /// Seconds since 1970-01-01 00:00:00 UTC.
    pub secs: i64,
    /// Nanoseconds, below 1,000,000,000.
    pub nanos: u32,
}

/// What `ls -l` shows and `extract` restores of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The filesystem's own number for the file (ext inode, NTFS MFT
    /// record); hard links share it. For filesystems without hard links
    /// (FAT) it is unique per entry, and [`Meta::nlink`] is 1.
    pub id: u64,
    /// What the entry is.
    pub kind: Kind,
    /// Permission bits, with setuid, setgid and sticky (`0o7777`). FAT and
    /// NTFS, which have none, get 0o755 for directories, 0o644 for files
    /// (0o555/0o444 when read-only).
    pub mode: u32,
    /// Owner (0 where the filesystem has none).
    pub uid: u32,
    /// Group (0 where the filesystem has none).
    pub gid: u32,
    /// Size in bytes (of a symlink: its target's length).
    pub size: u64,
    /// Last modification.
    pub mtime: Time,
    /// Last access, where the filesystem keeps it.
    pub atime: Option<Time>,
    /// Number of names the file has (1 where the filesystem does not say).
    pub nlink: u32,
    /// Major and minor numbers of a device node.
    pub rdev: Option<(u32, u32)>,
}

/// A name in a directory and what it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name, as the filesystem stores it (UTF-8 for FAT and NTFS;
    /// bytes for ext). Never empty, never `.` or `..`, never holding `/`
    /// or NUL: such a name is a [`BadEntry`] with [`FileError::BadName`].
    pub name: Vec<u8>,
    /// The file.
    pub meta: Meta,
}

/// A name in a directory whose file cannot be listed: a name that cannot
/// be a file name ([`FileError::BadName`]), or an inode or record that
/// cannot be read. The rest of the directory still lists.
#[derive(Debug)]
pub struct BadEntry {
    /// The name, as stored.
    pub name: Vec<u8>,
    /// What is wrong, naming the path (boxed: listings are mostly good
    /// entries, kept small).
    pub error: Box<Error>,
}

/// One slot of a directory listing: an entry, or a name whose file cannot
/// be listed.
pub type DirEntry = std::result::Result<Entry, BadEntry>;

/// Checks an entry's name ([`error::check_name`]) and wraps the result of
/// reading its file as a listing slot.
pub fn dir_entry(dir: &str, name: Vec<u8>, meta: Result<Meta>) -> DirEntry {
    if let Err(e) = error::check_name(dir, &name) {
        return Err(BadEntry {
            name,
            error: Box::new(e.into()),
        });
    }
    match meta {
        Ok(meta) => Ok(Entry { name, meta }),
        Err(error) => Err(BadEntry {
            name,
            error: Box::new(error),
        }),
    }
}

/// Every entry of a listing, or the error of its first bad one: for
/// callers that cannot go on without the whole directory.
pub fn all_entries(listing: Vec<DirEntry>) -> Result<Vec<Entry>> {
    listing
        .into_iter()
        .map(|e| e.map_err(|bad| *bad.error))
        .collect()
}

/// [`Tree::read_dir`] with [`all_entries`].
pub trait ListAll: Tree {
    /// The entries of `dir`, or the first error met listing it.
    fn list_all(&self, dir: &Meta, path: &str) -> Result<Vec<Entry>> {
        self.read_dir(dir, path).and_then(all_entries)
    }
}

impl<T: Tree + ?Sized> ListAll for T {}

/// A named data stream of a file (NTFS alternate data streams).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The stream's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Reads a file's contents at any offset.
pub trait FileRead {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at
    /// or past the end). Holes and unwritten extents read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// The byte ranges `[start, end)` that hold data, in order, for a
    /// sparse extraction: the rest of the file is holes (or unwritten
    /// extents) and reads as zeros. `None` when the reader does not know
    /// (every byte is then treated as data).
    fn data_ranges(&mut self) -> Result<Option<Vec<(u64, u64)>>> {
        Ok(None)
    }

    /// The byte of the volume where the file's stored data starts, so that
    /// many files can be read in the order they lie (an image's records
    /// are then decoded once each). `None` when the data is stored with
    /// the metadata (inline, resident) or there is none.
    fn volume_offset(&self) -> Option<u64> {
        None
    }
}

/// One filesystem's files.
///
/// `path` arguments are for messages only: readers name the file they
/// were reading with it when something is corrupt. Readers find files by
/// [`Meta::id`].
pub trait Tree {
    /// Which filesystem this is ("ext4", "FAT32", "NTFS").
    fn fs_name(&self) -> String;

    /// The root directory.
    fn root(&self) -> Result<Meta>;

    /// What the user should know before trusting what is read (an ext
    /// journal that needs recovery: files read as its last checkpoint
    /// left them).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The entries of directory `dir`, without `.` and `..`, in the order
    /// the directory stores them. Names the filesystem hides (NTFS DOS 8.3
    /// duplicates, FAT volume labels and deleted entries) are left out. An
    /// entry whose name or file is bad is a [`BadEntry`] in its place (build
    /// slots with [`dir_entry`]); an error for the whole call means the
    /// directory itself cannot be read.
    fn read_dir(&self, dir: &Meta, path: &str) -> Result<Vec<DirEntry>>;

    /// A reader of file `file`'s contents (its unnamed stream).
    fn open<'a>(&'a self, file: &Meta, path: &str) -> Result<Box<dyn FileRead + 'a>>;

    /// The target of symlink `link`.
    fn read_link(&self, link: &Meta, path: &str) -> Result<Vec<u8>>;

    /// The named data streams of a file (NTFS); none elsewhere.
    fn streams(&self, _file: &Meta, _path: &str) -> Result<Vec<Stream>> {
        Ok(Vec::new())
    }

    /// A reader of the named stream `stream` of `file`.
    fn open_stream<'a>(
        &'a self,
        _file: &Meta,
        path: &str,
        stream: &str,
    ) -> Result<Box<dyn FileRead + 'a>> {
        Err(FileError::NotFound {
            path: format!("{path}:{stream}"),
        }
        .into())
    }
}

/// Opens the filesystem on `src` for reading files: the one `choice`
/// names, or the one recognised.
pub fn open(src: Arc<dyn Source>, choice: FsChoice) -> Result<Box<dyn Tree>> {
    use crate::fs::{ext::Ext, fat::Fat, ntfs::Ntfs};
    let choice = match choice {
        FsChoice::Auto => {
            if Ntfs::probe(&*src)? {
                FsChoice::Ntfs
            } else if Ext::probe(&*src)? {
                FsChoice::Ext
            } else if Fat::probe(&*src)? {
                FsChoice::Fat
            } else {
                // The same message as a copy's: names what was found.
                return Err(match crate::fs::open(&*src, FsChoice::Auto) {
                    Err(e) => e,
                    Ok(fs) => not_readable(&*src, fs.kind().name()),
                });
            }
        }
        c => c,
    };
    match choice {
        FsChoice::Ext => Ok(Box::new(ext::ExtTree::open(src)?)),
        FsChoice::Fat => Ok(Box::new(fat::FatTree::open(src)?)),
        FsChoice::Ntfs => Ok(Box::new(ntfs::NtfsTree::open(src)?)),
        FsChoice::Exfat => Err(not_readable(&*src, "exfat")),
        FsChoice::Xfs => Err(not_readable(&*src, "xfs")),
        FsChoice::Btrfs => Err(not_readable(&*src, "btrfs")),
        _ => Err(Error::Usage(format!(
            "{}: files can be read from ext2/3/4, FAT and NTFS volumes only",
            src.name()
        ))),
    }
}

/// The error for a volume fsimg copies but cannot read files from.
fn not_readable(src: &dyn Source, fs: &str) -> Error {
    Error::Usage(format!(
        "{}: files can be read from ext2/3/4, FAT and NTFS volumes only, not {fs}; \
         restore it and mount the copy",
        src.name()
    ))
}
