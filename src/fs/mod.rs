//! Filesystem modules: they recognise a volume, describe it, and say which
//! clusters are in use. They only read.

pub mod btrfs;
pub mod exfat;
pub mod ext;
pub mod fat;
pub mod ntfs;
pub mod raw;
pub mod xfs;

use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;

/// The filesystem the user asked for (`--fs-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsChoice {
    /// Recognise it from its signature.
    Auto,
    /// ext2, ext3 or ext4.
    Ext,
    /// FAT12, FAT16 or FAT32.
    Fat,
    /// NTFS.
    Ntfs,
    /// exFAT.
    Exfat,
    /// XFS (v4 and v5).
    Xfs,
    /// btrfs (one device).
    Btrfs,
    /// Any content: every cluster is copied.
    Raw,
}

/// The filesystem found on a volume; its code is stored in image headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    /// Unknown content copied whole.
    Raw,
    /// ext2 (no journal).
    Ext2,
    /// ext3 (journal, no ext4 features).
    Ext3,
    /// ext4.
    Ext4,
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// NTFS.
    Ntfs,
    /// exFAT.
    Exfat,
    /// XFS.
    Xfs,
    /// btrfs.
    Btrfs,
}

impl FsKind {
    /// The user-visible name.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Raw => "raw",
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Fat12 => "fat12",
            FsKind::Fat16 => "fat16",
            FsKind::Fat32 => "fat32",
            FsKind::Ntfs => "ntfs",
            FsKind::Exfat => "exfat",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
        }
    }

    /// The code stored in an image header (formats/fsimg-image.md).
    pub fn code(self) -> u16 {
        match self {
            FsKind::Raw => 1,
            FsKind::Ext2 => 2,
            FsKind::Ext3 => 3,
            FsKind::Ext4 => 4,
            FsKind::Fat12 => 5,
            FsKind::Fat16 => 6,
            FsKind::Fat32 => 7,
            FsKind::Ntfs => 8,
            FsKind::Exfat => 9,
            FsKind::Xfs => 10,
            FsKind::Btrfs => 11,
        }
    }

    /// The kind for an image header code, if known.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => FsKind::Raw,
            2 => FsKind::Ext2,
            3 => FsKind::Ext3,
            4 => FsKind::Ext4,
            5 => FsKind::Fat12,
            6 => FsKind::Fat16,
            7 => FsKind::Fat32,
            8 => FsKind::Ntfs,
            9 => FsKind::Exfat,
            10 => FsKind::Xfs,
            11 => FsKind::Btrfs,
            _ => return None,
        })
    }
}

/// Why a filesystem is not clean, and how to repair it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unclean {
    /// What is wrong ("the filesystem has errors").
    pub problem: String,
    /// The repair ("run e2fsck -f").
    pub hint: &'static str,
}

/// The used clusters of a volume and what the filesystem's own counts say
/// about them.
#[derive(Debug)]
pub struct Allocation {
    /// One bit per cluster.
    pub map: AllocationMap,
    /// Disagreements between the map and the filesystem's counters. Copying
    /// such a volume needs `--ignore-fs-check`.
    pub inconsistencies: Vec<String>,
    /// Disagreements that do not put the copy at risk (a summary counter the
    /// filesystem recomputes); reported, never refused.
    pub warnings: Vec<String>,
    /// Filesystem-specific counts for `fsimg info`.
    pub details: Vec<(&'static str, String)>,
}

/// What a metadata-only copy (`-m`) takes from a volume.
pub struct Metadata {
    /// The clusters holding metadata (in `map`), with the same
    /// consistency findings as a full copy.
    pub allocation: Allocation,
    /// Rewrites metadata as it is copied, wiping what must not leave the
    /// machine (file contents kept inside metadata, timestamps); `None`
    /// when the metadata is copied as it is.
    pub scrub: Option<Box<dyn Scrub>>,
}

/// Rewrites metadata blocks on their way to the output.
pub trait Scrub: Send + Sync {
    /// Rewrites `data`, the volume's bytes at `offset` as read from `src`.
    /// A structure only partly inside `data` is read whole from `src`, so
    /// that the part inside is rewritten like the rest.
    fn scrub(&self, src: &dyn Source, offset: u64, data: &mut [u8]);
}

/// A recognised filesystem.
pub trait Filesystem {
    /// Which filesystem this is.
    fn kind(&self) -> FsKind;

    /// Allocation unit, in bytes.
    fn cluster_size(&self) -> u32;

    /// Size of the volume in bytes (everything a copy must reproduce).
    fn device_size(&self) -> u64;

    /// Lines for `fsimg info`: (field, value).
    fn describe(&self) -> Vec<(&'static str, String)>;

    /// Why the volume is not clean, if it is not.
    fn unclean(&self) -> Option<Unclean>;

    /// The repair tool to suggest for inconsistencies.
    fn fsck_hint(&self) -> &'static str;

    /// Reads the allocation map from the volume.
    fn allocation(&self, src: &dyn Source) -> Result<Allocation>;

    /// The metadata clusters, for a metadata-only copy (`-m`): enough for
    /// the copy to mount and pass fsck with every file reading as zeros.
    fn metadata(&self, _src: &dyn Source) -> Result<Metadata> {
        Err(Error::Usage(format!(
            "--metadata is not supported for {} volumes",
            self.kind().name()
        )))
    }

    /// For `-m`: keep timestamps instead of wiping them, where the
    /// scrubber wipes them.
    fn set_keep_timestamps(&mut self, _on: bool) {}

    /// In rescue mode, unreadable metadata does not stop
    /// [`Filesystem::allocation`]: what it describes is treated as used,
    /// with a warning.
    fn set_rescue(&mut self, _on: bool) {}
}

/// Recognises the filesystem on `src`.
pub fn open(src: &dyn Source, choice: FsChoice) -> Result<Box<dyn Filesystem>> {
    match choice {
        FsChoice::Raw => Ok(Box::new(raw::Raw::new(src))),
        FsChoice::Ext => Ok(Box::new(ext::Ext::open(src)?)),
        FsChoice::Fat => Ok(Box::new(fat::Fat::open(src)?)),
        FsChoice::Ntfs => Ok(Box::new(ntfs::Ntfs::open(src)?)),
        FsChoice::Exfat => Ok(Box::new(exfat::Exfat::open(src)?)),
        FsChoice::Xfs => Ok(Box::new(xfs::Xfs::open(src)?)),
        FsChoice::Btrfs => Ok(Box::new(btrfs::Btrfs::open(src)?)),
        FsChoice::Auto => {
            if ntfs::Ntfs::probe(src)? {
                return Ok(Box::new(ntfs::Ntfs::open(src)?));
            }
            if exfat::Exfat::probe(src)? {
                return Ok(Box::new(exfat::Exfat::open(src)?));
            }
            if ext::Ext::probe(src)? {
                return Ok(Box::new(ext::Ext::open(src)?));
            }
            if xfs::Xfs::probe(src)? {
                return Ok(Box::new(xfs::Xfs::open(src)?));
            }
            if btrfs::Btrfs::probe(src)? {
                return Ok(Box::new(btrfs::Btrfs::open(src)?));
            }
            if fat::Fat::probe(src)? {
                return Ok(Box::new(fat::Fat::open(src)?));
            }
            Err(Error::UnknownFilesystem {
                name: src.name().to_string(),
                found: describe_unknown(src)?,
            })
        }
    }
}

/// Whether `src` holds a filesystem fsimg recognises.
pub fn probe_any(src: &dyn Source) -> Result<bool> {
    Ok(ntfs::Ntfs::probe(src)?
        || exfat::Exfat::probe(src)?
        || ext::Ext::probe(src)?
        || xfs::Xfs::probe(src)?
        || btrfs::Btrfs::probe(src)?
        || fat::Fat::probe(src)?)
}

/// A short description of what an unrecognised volume starts with.
fn describe_unknown(src: &dyn Source) -> Result<String> {
    let n = src.size().min(4096) as usize;
    if n < 2048 {
        return Ok(format!("the source is only {} bytes long", src.size()));
    }
    let head = src.read_vec(0, n)?;
    let magic = crate::bytes::u16le(&head, 1024 + 0x38);
    Ok(if head.iter().all(|&b| b == 0) {
        "the first 4 KiB are all zeros".to_string()
    } else {
        format!(
            "no ext superblock magic at byte 1080 (found 0x{magic:04x}), no FAT, exFAT or NTFS boot sector, no XFS or btrfs superblock"
        )
    })
}
