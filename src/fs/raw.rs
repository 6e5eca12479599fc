//! The raw "filesystem": every byte of the source is in use. It serves
//! filesystems fsimg does not know and whole disks (partclone.dd's job).

use super::{Allocation, Filesystem, FsKind, Unclean};
use crate::allocmap::AllocationMap;
use crate::error::Result;
use crate::source::Source;

/// Cluster size used for raw copies: large enough that the map is small,
/// and a multiple of every sector size.
pub const RAW_CLUSTER_SIZE: u32 = 64 * 1024;

/// A volume copied whole.
pub struct Raw {
    size: u64,
}

impl Raw {
    /// Treats all of `src` as used.
    pub fn new(src: &dyn Source) -> Self {
        Raw { size: src.size() }
    }
}

impl Filesystem for Raw {
    fn kind(&self) -> FsKind {
        FsKind::Raw
    }

    fn cluster_size(&self) -> u32 {
        RAW_CLUSTER_SIZE
    }

    fn device_size(&self) -> u64 {
        self.size
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        vec![("note", "raw copy: every block is treated as used".into())]
    }

    fn unclean(&self) -> Option<Unclean> {
        None
    }

    fn fsck_hint(&self) -> &'static str {
        "the filesystem's own checker"
    }

    fn allocation(&self, _src: &dyn Source) -> Result<Allocation> {
        Ok(Allocation {
            map: AllocationMap::all_used(RAW_CLUSTER_SIZE, self.size),
            inconsistencies: Vec::new(),
            warnings: Vec::new(),
            details: Vec::new(),
        })
    }
}
