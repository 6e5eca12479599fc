//! Whole disks: the partition table (MBR with its EBR chain, GPT, hybrid),
//! the regions a copy of the disk must hold besides the partitions, and
//! each partition opened as a volume of its own.

pub mod error;
pub mod gpt;
pub mod mbr;
pub mod open;
pub mod plan;
pub mod retarget;
pub mod table;

pub use error::DiskError;
pub use open::{Content, Disk, DiskPart};
