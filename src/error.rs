//! The error type of every fsimg operation.
//!
//! Each variant names the problem and, where there is one, the byte offset
//! and the file it concerns, so that the one line printed to the user says
//! what went wrong and where.

use std::io;
use std::path::PathBuf;

use crate::disk::DiskError;
use crate::foreign::ForeignError;
use crate::fs::exfat::ExfatError;
use crate::fs::ext::ExtError;
use crate::fs::fat::FatError;
use crate::fs::xfs::XfsError;
use crate::image::ImageError;

/// Result alias for fsimg operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop an fsimg operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or device could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A read from the source volume failed.
    #[error("read error on {name} at byte {offset} (length {len}): {source}")]
    Read {
        /// Name of the source (its path).
        name: String,
        /// Byte offset of the failed read in the source.
        offset: u64,
        /// Length of the failed read.
        len: u64,
        /// The underlying error.
        source: io::Error,
    },

    /// A read from the source volume failed while copying (not in rescue
    /// mode).
    #[error(
        "read error on {name} at byte {offset} (length {len}): {source}; use --rescue to copy past unreadable sectors"
    )]
    Unreadable {
        /// Name of the source (its path).
        name: String,
        /// Byte offset of the failed read in the source.
        offset: u64,
        /// Length of the failed read.
        len: u64,
        /// The underlying error.
        source: io::Error,
    },

    /// A write to the target failed.
    #[error("write error on {target} at byte {offset}: {source}")]
    Write {
        /// Name of the target.
        target: String,
        /// Byte offset of the failed write in the target.
        offset: u64,
        /// The underlying error.
        source: io::Error,
    },

    /// Some other I/O operation on a named file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot stat", "cannot sync", ...).
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The source is shorter than the filesystem says the volume is.
    #[error(
        "{name} is truncated: the filesystem needs {needed} bytes but the source has only {actual}"
    )]
    SourceTruncated {
        /// Name of the source.
        name: String,
        /// Bytes the filesystem spans.
        needed: u64,
        /// Bytes the source has.
        actual: u64,
    },

    /// No supported filesystem was recognised.
    #[error(
        "{name}: no supported filesystem found ({found}); use --fs-type raw to copy every block"
    )]
    UnknownFilesystem {
        /// Name of the source.
        name: String,
        /// What the probe saw, for the user.
        found: String,
    },

    /// The ext2/3/4 filesystem is corrupt or unsupported.
    #[error(transparent)]
    Ext(#[from] ExtError),

    /// The XFS filesystem is corrupt or unsupported.
    #[error(transparent)]
    Xfs(#[from] XfsError),

    /// The btrfs filesystem is corrupt or unsupported.
    #[error(transparent)]
    Btrfs(#[from] crate::fs::btrfs::BtrfsError),

    /// The FAT filesystem is corrupt.
    #[error(transparent)]
    Fat(#[from] FatError),

    /// The exFAT filesystem is corrupt.
    #[error(transparent)]
    Exfat(#[from] ExfatError),

    /// The NTFS filesystem is corrupt or unsupported.
    #[error(transparent)]
    Ntfs(#[from] crate::fs::ntfs::NtfsError),

    /// The special image is corrupt, truncated or unsupported.
    #[error(transparent)]
    Image(#[from] ImageError),

    /// An ntfsclone or partclone image is corrupt, truncated or
    /// unsupported, or cannot be written.
    #[error(transparent)]
    Foreign(#[from] ForeignError),

    /// The partition table is corrupt or cannot be written to the target.
    #[error(transparent)]
    Disk(#[from] DiskError),

    /// A file inside a volume cannot be found or read.
    #[error(transparent)]
    Files(#[from] crate::files::FileError),

    /// A mount or an unmount (`fsimg mount`, `fsimg umount`) failed.
    #[error(transparent)]
    Mount(#[from] crate::mount::MountError),

    /// The partition table of a named disk is corrupt.
    #[error("{name}: partition table: {source}")]
    Table {
        /// Name of the disk.
        name: String,
        /// What is wrong.
        source: DiskError,
    },

    /// A filesystem inside a partition of a disk is corrupt.
    #[error("{name}: {source}")]
    Partition {
        /// The partition ("sd.img partition 2").
        name: String,
        /// What is wrong.
        source: Box<Error>,
    },

    /// The filesystem is not clean and `--force` was not given.
    #[error("{name}: {problem}; {hint}, or use --force to copy it anyway")]
    NotClean {
        /// Name of the source.
        name: String,
        /// What is wrong with its state.
        problem: String,
        /// How to repair it.
        hint: &'static str,
    },

    /// The filesystem's own counts disagree and `--ignore-fs-check` was not
    /// given.
    #[error(
        "{name}: filesystem inconsistency: {problem}; run {fsck}, or use --ignore-fs-check to copy what the allocation map says"
    )]
    Inconsistent {
        /// Name of the source.
        name: String,
        /// The disagreement, with the numbers.
        problem: String,
        /// The repair tool to run.
        fsck: &'static str,
    },

    /// `-o` was given a path that exists.
    #[error("{} already exists; use -O/--overwrite to overwrite it", path.display())]
    OutputExists {
        /// The existing path.
        path: PathBuf,
    },

    /// The target is, or holds, a mounted filesystem.
    #[error("{} is in use ({why}); refusing to write to it", path.display())]
    TargetInUse {
        /// The target path.
        path: PathBuf,
        /// Where it is mounted or what holds it.
        why: String,
    },

    /// The source is mounted read-write and `--force` was not given.
    #[error(
        "{} is mounted read-write at {mountpoint}; unmount it (or remount it read-only), or use --force",
        path.display()
    )]
    SourceMounted {
        /// The source path.
        path: PathBuf,
        /// Where it is mounted.
        mountpoint: String,
    },

    /// Source and target are the same file or device.
    #[error("source and target are the same {kind} ({}); refusing to copy a volume onto itself", path.display())]
    SameFile {
        /// "file" or "device".
        kind: &'static str,
        /// The target path.
        path: PathBuf,
    },

    /// The target device is smaller than the volume.
    #[error(
        "{} is too small: the volume needs {needed} bytes but the target has only {actual}",
        path.display()
    )]
    TargetTooSmall {
        /// The target path.
        path: PathBuf,
        /// Bytes the volume needs.
        needed: u64,
        /// Bytes the target has.
        actual: u64,
    },

    /// A partition of a disk does not fit the target.
    #[error(
        "{target} ({size} bytes) is too small for this disk: partition {number} ({fs}) would end {shortfall} bytes past the target's last usable sector"
    )]
    DiskTooSmall {
        /// The target.
        target: String,
        /// Bytes of the target.
        size: u64,
        /// The partition that does not fit.
        number: u32,
        /// What it holds.
        fs: &'static str,
        /// Bytes the target lacks for it.
        shortfall: u64,
    },

    /// The user interrupted the run.
    #[error("interrupted: the copy is incomplete (a file this run created is removed)")]
    Interrupted,

    /// The command line asked for something inconsistent.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wraps an I/O error on a named path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The process exit status this error maps to (see README.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Mount(e) => e.exit_code(),
            Error::Interrupted => 130,
            _ => 1,
        }
    }
}
