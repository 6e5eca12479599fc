//! Btrfs: placeholder until the module lands (the helper replaces this file).

use super::{Allocation, Filesystem, FsKind, Unclean};
use crate::error::{Error, Result};
use crate::source::Source;

/// A Btrfs volume.
pub struct Btrfs {
    size: u64,
}

impl Btrfs {
    /// Whether `src` holds this filesystem.
    pub fn probe(_src: &dyn Source) -> Result<bool> {
        Ok(false)
    }

    /// Opens the volume.
    pub fn open(src: &dyn Source) -> Result<Self> {
        let _ = Btrfs { size: src.size() }.size;
        Err(Error::Usage("btrfs: not implemented".into()))
    }
}

impl Filesystem for Btrfs {
    fn kind(&self) -> FsKind {
        FsKind::Btrfs
    }
    fn cluster_size(&self) -> u32 {
        4096
    }
    fn device_size(&self) -> u64 {
        self.size
    }
    fn describe(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn unclean(&self) -> Option<Unclean> {
        None
    }
    fn fsck_hint(&self) -> &'static str {
        "fsck"
    }
    fn allocation(&self, _src: &dyn Source) -> Result<Allocation> {
        Err(Error::Usage("btrfs: not implemented".into()))
    }
}
