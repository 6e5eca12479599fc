//! A read-only mount of an image (issue 18): what it shows and how it is
//! served. The image's volume, or a disk and each of its partitions, appear
//! as read-only regular files of their exact sizes in one directory, so
//! that the kernel's own filesystem drivers (a loop mount, `e2fsck`,
//! `ntfs-3g`) read the image without its being restored.
//!
//! This module decides the files ([`open`]: `volume`, or `disk`, `p1`..
//! `pN`); [`fuse`] serves them through FUSE; [`prefetch`] decodes the
//! records ahead of a sequential reader. `fsimg mount` and `fsimg umount`
//! are [`crate::ops::mount`].

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::access::{self, ImageSource};
use crate::disk::open as disk_open;
use crate::error::{Error, Result};
use crate::ops::disk::block_table;
use crate::report::Report;
use crate::source::{Source, SourceView};

pub mod fuse;
pub mod prefetch;

/// Why a mount or an unmount cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point is not a directory.
    #[error("cannot mount on {}: not a directory", dir.display())]
    NotADirectory {
        /// The mount point.
        dir: PathBuf,
    },
    /// The mount point holds files, which the mount would hide.
    #[error("cannot mount on {}: the directory is not empty", dir.display())]
    NotEmpty {
        /// The mount point.
        dir: PathBuf,
    },
    /// The mount point cannot be looked at, or the kernel refused the mount.
    #[error("cannot mount on {}: {source}", dir.display())]
    Mount {
        /// The mount point.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The kernel's FUSE device is missing.
    #[error(
        "/dev/fuse does not exist: load the kernel's fuse module (modprobe fuse); in a container, give it the device"
    )]
    NoFuseDevice,
    /// A user other than root mounts through fusermount3, which is missing.
    #[error(
        "fusermount3 is not installed: a user other than root mounts through it (install the fuse3 package), or mount as root"
    )]
    NoFusermount,
    /// `fsimg umount` of a directory where no fsimg mount is.
    #[error("{} is not an fsimg mount", dir.display())]
    NotMounted {
        /// The directory.
        dir: PathBuf,
    },
    /// The mount is in use (a loop device over one of its files).
    #[error(
        "cannot unmount {}: it is busy (a loop device, a mount or an open file uses a file in it); unmount or close that first",
        dir.display()
    )]
    Busy {
        /// The mount point.
        dir: PathBuf,
    },
    /// The unmount failed otherwise.
    #[error("cannot unmount {}: {why}", dir.display())]
    Unmount {
        /// The mount point.
        dir: PathBuf,
        /// What the kernel or fusermount3 said.
        why: String,
    },
    /// The background server of `fsimg mount` failed before the mount was
    /// ready; its message, and the exit status it would have had.
    #[error("{msg}")]
    Server {
        /// Its message.
        msg: String,
        /// Its exit status.
        code: i32,
    },
    /// The background server ended without saying why.
    #[error("the mount server ended before the mount was ready ({status})")]
    ServerDied {
        /// How it ended.
        status: String,
    },
}

impl MountError {
    /// The exit status of `fsimg mount` that fails with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            MountError::Server { code, .. } => *code,
            _ => 1,
        }
    }
}

/// One file the mount shows.
pub struct Exposed {
    /// Its name in the mount's directory: `volume`, `disk`, `p1`...
    pub name: String,
    /// Its bytes.
    pub source: Arc<dyn Source>,
    /// Where its byte 0 lies in the volume of the fsimg image underneath,
    /// for reading ahead there.
    pub image_offset: Option<u64>,
}

/// What a mount of one image shows.
pub struct Layout {
    /// The files, in the order a listing shows them.
    pub files: Vec<Exposed>,
    /// The fsimg image underneath, if it is one (its cache and counters).
    pub image: Option<Arc<ImageSource>>,
    /// The modification time of the image file (every file shows it).
    pub mtime: SystemTime,
    /// The image holds metadata only (`-m`): file contents read as zeros.
    pub metadata_only: bool,
}

/// The warning for a metadata-only image.
const METADATA_ONLY: &str =
    "this is a metadata-only image (-m): file contents were not saved and read as zeros";

/// Opens `path` (anything [`access::open_volume`] reads) and lays out its
/// files: an fsimg image of a whole disk shows `disk` and a `pN` per
/// partition of its table; a raw disk, a disk image or an image of one
/// holding a partition table (and no filesystem at its start, as `fsimg
/// info` decides) the same; anything else one file, `volume`.
/// `cache_bytes` bounds the decoded records an fsimg image keeps.
pub fn open(path: &Path, cache_bytes: u64, report: &dyn Report) -> Result<Layout> {
    let vol = access::open_volume_with_cache(path, None, cache_bytes, report)?;
    let meta = std::fs::metadata(path).map_err(|e| Error::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if vol.metadata_only {
        report.warn(METADATA_ONLY);
    }
    let name = path.display().to_string();
    let src = vol.source;
    let in_image = |offset: u64| vol.image.as_ref().map(|_| offset);
    let whole = |n: &str| Exposed {
        name: n.to_string(),
        source: Arc::clone(&src),
        image_offset: in_image(0),
    };
    let table = match vol.image.as_ref().and_then(|i| i.disk()) {
        Some(block) => Some(block_table(block, &name)?),
        None => {
            let sector = meta
                .file_type()
                .is_block_device()
                .then(|| src.sector_size());
            match disk_open::detect(src.as_ref(), sector) {
                Ok(t) => t,
                Err(e) => {
                    report.warn(&format!(
                        "{e}; the image is shown whole, as the file `volume`"
                    ));
                    None
                }
            }
        }
    };
    let files = match table {
        None => vec![whole("volume")],
        Some(t) => {
            let mut files = vec![whole("disk")];
            for p in &t.partitions {
                let view = SourceView::new(
                    Arc::clone(&src),
                    p.start,
                    p.len,
                    format!("{name} partition {}", p.number),
                );
                files.push(Exposed {
                    name: format!("p{}", p.number),
                    image_offset: in_image(view.start()),
                    source: Arc::new(view),
                });
            }
            files
        }
    };
    Ok(Layout {
        files,
        image: vol.image,
        mtime,
        metadata_only: vol.metadata_only,
    })
}

/// The fsimg mounts (type `fuse.fsimg`) of this process's mount namespace,
/// from /proc/self/mountinfo: (mount point, device number `MAJOR:MINOR`),
/// oldest first.
pub fn fsimg_mounts() -> Vec<(PathBuf, String)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let (before, after) = l.split_once(" - ")?;
            if after.split(' ').next()? != "fuse.fsimg" {
                return None;
            }
            let mut f = before.split(' ');
            let dev = f.nth(2)?.to_string();
            let point = unescape(f.nth(1)?);
            Some((PathBuf::from(std::ffi::OsStr::from_bytes(&point)), dev))
        })
        .collect()
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape(r"/x\134y"), b"/x\\y");
        assert_eq!(unescape(r"/plain\0"), b"/plain\\0");
    }
}
