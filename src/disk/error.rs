//! Errors of the partition-table layer: each names the problem and the
//! sector (LBA, in units of the disk's logical sector) or the partition
//! number it concerns. Partition numbers are the ones Linux gives: 1-4 for
//! the MBR slots, 5 on for logical partitions, the 1-based entry index for
//! GPT.

use std::io;

use super::gpt::{MAX_ARRAY_BYTES, MAX_ENTRIES, MAX_ENTRY_SIZE, MIN_HEADER_SIZE};
use super::mbr::{MAX_EBRS, MAX_LOGICALS};
use super::table::{MAX_SECTOR_SIZE, MIN_SECTOR_SIZE};

/// A partition table that is corrupt, unreadable, or cannot be laid out on
/// a target of another size.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A sector of the table could not be read.
    #[error("cannot read sector {lba}: {source}")]
    ReadSector {
        /// The sector.
        lba: u64,
        /// The underlying error.
        source: io::Error,
    },

    /// A logical sector size this module does not handle.
    #[error(
        "sector size {size} is not supported (a power of two from {MIN_SECTOR_SIZE} to {MAX_SECTOR_SIZE} bytes)"
    )]
    SectorSize {
        /// The size given.
        size: u32,
    },

    /// Two partitions (or a primary partition and the extended container)
    /// share sectors. `first` starts first.
    #[error(
        "partitions {first} and {second} overlap: partition {second} starts at sector {second_start}, before partition {first} ends at sector {first_end}"
    )]
    Overlap {
        /// The partition starting first.
        first: u32,
        /// The other one.
        second: u32,
        /// First sector of `second`.
        second_start: u64,
        /// Last sector of `first`.
        first_end: u64,
    },

    /// A partition ends past the last sector of the disk.
    #[error(
        "partition {number} (sectors {first}..={last}) ends past the end of the disk ({disk_sectors} sectors of {sector_size} bytes)"
    )]
    PastDiskEnd {
        /// The partition.
        number: u32,
        /// Its first sector.
        first: u64,
        /// Its last sector.
        last: u64,
        /// Sectors in the disk.
        disk_sectors: u64,
        /// The logical sector size.
        sector_size: u32,
    },

    /// More than one MBR slot holds an extended partition.
    #[error(
        "partitions {first} and {second} are both extended partitions; an MBR may hold only one"
    )]
    TwoExtended {
        /// The first extended partition (slot + 1).
        first: u32,
        /// The second (slot + 1).
        second: u32,
    },

    /// An EBR links back to one already visited.
    #[error("the EBR chain of the extended partition loops back to sector {lba}")]
    EbrLoop {
        /// The EBR visited twice.
        lba: u64,
    },

    /// An EBR describes a logical partition reaching outside the extended
    /// partition.
    #[error(
        "EBR at sector {ebr_lba} points to a logical partition outside the extended partition (sectors {first}..={last})"
    )]
    EbrOutside {
        /// The EBR.
        ebr_lba: u64,
        /// First sector of the extended partition.
        first: u64,
        /// Last sector of the extended partition.
        last: u64,
    },

    /// An EBR links to a next EBR outside the extended partition.
    #[error(
        "EBR at sector {ebr_lba} links to a next EBR at sector {next_lba}, outside the extended partition (sectors {first}..={last})"
    )]
    EbrLinkOutside {
        /// The EBR holding the link.
        ebr_lba: u64,
        /// Where the link points.
        next_lba: u64,
        /// First sector of the extended partition.
        first: u64,
        /// Last sector of the extended partition.
        last: u64,
    },

    /// An EBR sector lacks the 55 AA boot signature.
    #[error("EBR at sector {lba} has no 55 AA boot signature")]
    EbrSignature {
        /// The EBR.
        lba: u64,
    },

    /// The EBR chain describes more logical partitions than allowed.
    #[error(
        "the extended partition holds more than {MAX_LOGICALS} logical partitions (EBR at sector {lba})"
    )]
    TooManyLogicals {
        /// The EBR describing the one too many.
        lba: u64,
    },

    /// The EBR chain is longer than allowed (EBRs describing no partition
    /// included).
    #[error(
        "the EBR chain of the extended partition is longer than {MAX_EBRS} EBRs (EBR at sector {lba})"
    )]
    EbrChainTooLong {
        /// The EBR one past the limit.
        lba: u64,
    },

    /// A GPT header that cannot be used.
    #[error("GPT header at sector {lba}: {problem}")]
    GptHeader {
        /// Where the header is.
        lba: u64,
        /// What is wrong with it.
        problem: GptHeaderProblem,
    },

    /// The CRC32 of a GPT partition entry array does not match its header.
    #[error(
        "GPT partition entry array at sector {lba}: CRC mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})"
    )]
    GptArrayCrc {
        /// First sector of the array.
        lba: u64,
        /// The CRC the header records.
        stored: u32,
        /// The CRC of the array.
        computed: u32,
    },

    /// Fewer bytes of a GPT partition entry array were given than its
    /// header describes.
    #[error("GPT partition entry array at sector {lba}: {len} bytes given, {needed} needed")]
    GptArrayShort {
        /// First sector of the array.
        lba: u64,
        /// Bytes given.
        len: usize,
        /// Entries × entry size.
        needed: u64,
    },

    /// Neither GPT header (with its entry array) can be used. The two
    /// reasons are the errors met reading each copy.
    #[error(
        "both copies of the GPT are damaged: primary at sector {primary_lba}: {}; backup at sector {backup_lba}: {}",
        primary.why(),
        backup.why()
    )]
    GptBothDamaged {
        /// Where the primary header was looked for.
        primary_lba: u64,
        /// What is wrong with it.
        primary: Box<DiskError>,
        /// Where the backup header was looked for.
        backup_lba: u64,
        /// What is wrong with it.
        backup: Box<DiskError>,
    },

    /// A GPT entry whose first sector is after its last.
    #[error("GPT partition {number}: first sector {first} is after its last sector {last}")]
    GptEntryRange {
        /// The partition (1-based entry index).
        number: u32,
        /// `StartingLBA`.
        first: u64,
        /// `EndingLBA`.
        last: u64,
    },

    /// A GPT entry outside the header's usable sectors.
    #[error(
        "GPT partition {number} (sectors {first}..={last}) lies outside the usable sectors {first_usable}..={last_usable}"
    )]
    GptOutsideUsable {
        /// The partition (1-based entry index).
        number: u32,
        /// `StartingLBA`.
        first: u64,
        /// `EndingLBA`.
        last: u64,
        /// `FirstUsableLBA`.
        first_usable: u64,
        /// `LastUsableLBA`.
        last_usable: u64,
    },

    /// Relocation: a partition ends past the last usable sector of the
    /// target. The caller may name the filesystem; `shortfall` is the
    /// number of bytes the target lacks for it.
    #[error(
        "partition {number} ends at sector {last_lba}: {shortfall} bytes past the last usable sector of a target of {target_bytes} bytes"
    )]
    PastTarget {
        /// The partition.
        number: u32,
        /// Its last sector.
        last_lba: u64,
        /// Bytes missing on the target.
        shortfall: u64,
        /// Size of the target in bytes.
        target_bytes: u64,
    },

    /// Relocation: the primary entry array would share sectors with (or
    /// lie past) the backup array at the end of the target.
    #[error(
        "on a target of {target_sectors} sectors the primary GPT partition entry array (sectors {primary_first}..={primary_last}) does not end before the backup array (sectors {backup_first}..={backup_last})"
    )]
    ArraysOverlap {
        /// First sector of the primary array.
        primary_first: u64,
        /// Last sector of the primary array.
        primary_last: u64,
        /// First sector of the backup array.
        backup_first: u64,
        /// Last sector of the backup array.
        backup_last: u64,
        /// Sectors in the target.
        target_sectors: u64,
    },

    /// Relocation: the target is too small for the table itself.
    #[error(
        "a target of {target_sectors} sectors is too small for the GPT: with its first usable sector {first_usable} it needs at least {needed} sectors"
    )]
    TargetTooSmallForGpt {
        /// Sectors in the target.
        target_sectors: u64,
        /// `FirstUsableLBA`.
        first_usable: u64,
        /// The fewest sectors that hold the table.
        needed: u64,
    },

    /// Relocation: the partition to grow is not the one ending last.
    #[error(
        "partition {number} cannot be grown to the end of the disk: partition {last_number} ends after it, at sector {last_end}"
    )]
    GrowNotLast {
        /// The partition asked to grow.
        number: u32,
        /// The partition ending last.
        last_number: u32,
        /// Its last sector.
        last_end: u64,
    },

    /// Relocation: the partition to grow does not exist.
    #[error("cannot grow partition {number}: the GPT has no such partition")]
    GrowNoSuchPartition {
        /// The partition asked to grow.
        number: u32,
    },
}

impl DiskError {
    /// The message without the location of a GPT header, for
    /// [`DiskError::GptBothDamaged`], which names the location itself.
    pub fn why(&self) -> String {
        match self {
            DiskError::GptHeader { problem, .. } => problem.to_string(),
            other => {
                let s = other.to_string();
                s.strip_prefix("GPT ").map(str::to_owned).unwrap_or(s)
            }
        }
    }
}

/// What is wrong with a GPT header (its location is in
/// [`DiskError::GptHeader`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptHeaderProblem {
    /// `Signature` is not "EFI PART".
    #[error("no \"EFI PART\" signature")]
    Signature,

    /// `HeaderSize` below 92 or larger than the sector.
    #[error("header size {size} is out of range ({MIN_HEADER_SIZE}..={max})")]
    HeaderSize {
        /// The value found.
        size: u32,
        /// The sector size.
        max: u32,
    },

    /// `HeaderCRC32` does not match.
    #[error("header CRC mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})")]
    HeaderCrc {
        /// The value found.
        stored: u32,
        /// The CRC over `HeaderSize` bytes with the field zeroed.
        computed: u32,
    },

    /// `MyLBA` is not where the header was read.
    #[error("it gives its own location as sector {found}")]
    MyLba {
        /// The value found.
        found: u64,
    },

    /// `SizeOfPartitionEntry` not a multiple of 128 or too large.
    #[error(
        "partition entry size {size} is out of range (a multiple of 128, at most {MAX_ENTRY_SIZE})"
    )]
    EntrySize {
        /// The value found.
        size: u32,
    },

    /// `NumberOfPartitionEntries` too large.
    #[error(
        "{count} partition entries of {size} bytes is out of range (at most {MAX_ENTRIES} entries / {} MiB array)",
        MAX_ARRAY_BYTES >> 20
    )]
    EntryCount {
        /// The value found.
        count: u32,
        /// `SizeOfPartitionEntry`.
        size: u32,
    },

    /// `FirstUsableLBA` more than one past `LastUsableLBA`.
    #[error("first usable sector {first} is after last usable sector {last}")]
    UsableRange {
        /// `FirstUsableLBA`.
        first: u64,
        /// `LastUsableLBA`.
        last: u64,
    },

    /// `LastUsableLBA` past the disk (the kernel then ignores the header).
    #[error("last usable sector {last} is past the end of the disk ({disk_sectors} sectors)")]
    UsablePastDisk {
        /// `LastUsableLBA`.
        last: u64,
        /// Sectors in the disk.
        disk_sectors: u64,
    },

    /// The header lies inside its own usable sectors.
    #[error("the header lies inside its usable sectors {first_usable}..={last_usable}")]
    HeaderInUsable {
        /// `FirstUsableLBA`.
        first_usable: u64,
        /// `LastUsableLBA`.
        last_usable: u64,
    },

    /// The entry array reaches past the disk.
    #[error(
        "its partition entry array (sectors {first}..={last}) reaches past the end of the disk ({disk_sectors} sectors)"
    )]
    ArrayPastDisk {
        /// `PartitionEntryLBA`.
        first: u64,
        /// Last sector of the array.
        last: u64,
        /// Sectors in the disk.
        disk_sectors: u64,
    },

    /// The entry array lies inside the usable sectors, or on the header.
    #[error(
        "its partition entry array (sectors {first}..={last}) overlaps the header or the usable sectors {first_usable}..={last_usable}"
    )]
    ArrayOverlap {
        /// `PartitionEntryLBA`.
        first: u64,
        /// Last sector of the array.
        last: u64,
        /// `FirstUsableLBA`.
        first_usable: u64,
        /// `LastUsableLBA`.
        last_usable: u64,
    },
}
