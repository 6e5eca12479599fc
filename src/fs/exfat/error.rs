//! What can be wrong with an exFAT volume's boot region or allocation
//! bitmap. Offsets are bytes in the volume.

/// A corrupt or unsupported exFAT volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExfatError {
    /// Bytes 3..11 are not "EXFAT   ".
    #[error("exfat: no exFAT signature at byte {at} (found {found:?}, expected \"EXFAT   \")")]
    Signature {
        /// Offset of the FileSystemName field.
        at: u64,
        /// What is there, lossily decoded.
        found: String,
    },
    /// The boot signature is not 0xAA55.
    #[error("exfat: boot signature 0x{value:04x} at byte {at} (expected 0xaa55)")]
    BootSignature {
        /// Offset of the field.
        at: u64,
        /// The value found.
        value: u16,
    },
    /// BytesPerSectorShift outside 9..=12.
    #[error("exfat: invalid BytesPerSectorShift {value} at byte {at} (expected 9 to 12)")]
    BytesPerSectorShift {
        /// Offset of the field.
        at: u64,
        /// The value found.
        value: u8,
    },
    /// SectorsPerClusterShift makes clusters larger than 32 MiB.
    #[error(
        "exfat: invalid SectorsPerClusterShift {value} at byte {at} (at most {max} with this sector size: clusters are at most 32 MiB)"
    )]
    SectorsPerClusterShift {
        /// Offset of the field.
        at: u64,
        /// The value found.
        value: u8,
        /// The largest valid value.
        max: u8,
    },
    /// NumberOfFats is not 1 or 2.
    #[error("exfat: invalid NumberOfFats {value} at byte {at} (expected 1, or 2 for TexFAT)")]
    NumberOfFats {
        /// Offset of the field.
        at: u64,
        /// The value found.
        value: u8,
    },
    /// The FATs, the cluster heap and the volume length do not fit together.
    #[error("exfat: bad layout in the boot sector at byte {at}: {problem}")]
    Layout {
        /// Offset of the boot sector.
        at: u64,
        /// Which fields disagree, with their values.
        problem: String,
    },
    /// The root directory's first cluster is not a cluster.
    #[error("exfat: root directory cluster {value} at byte {at} is outside clusters 2..={last}")]
    RootCluster {
        /// Offset of the field.
        at: u64,
        /// FirstClusterOfRootDirectory.
        value: u32,
        /// The last cluster.
        last: u64,
    },
    /// Sector 11 does not hold the checksum of sectors 0-10.
    #[error(
        "exfat: boot region checksum mismatch at byte {at}: sector 11 holds 0x{stored:08x}, sectors 0-10 sum to 0x{computed:08x}"
    )]
    BootChecksum {
        /// Offset of the checksum sector.
        at: u64,
        /// The first checksum of sector 11.
        stored: u32,
        /// The checksum computed.
        computed: u32,
    },
    /// Part of the main boot region cannot be read.
    #[error("exfat: {len} bytes of the main boot region at byte {at} are unreadable")]
    Unreadable {
        /// Offset of the failed read.
        at: u64,
        /// Its length.
        len: u64,
    },
    /// Both boot regions are damaged.
    #[error("{main}; the backup boot region is no better: {backup}")]
    BothBootRegions {
        /// The main region's problem.
        main: Box<ExfatError>,
        /// The backup region's problem.
        backup: Box<ExfatError>,
    },
    /// The root directory has no allocation bitmap entry.
    #[error(
        "exfat: the root directory (cluster {root}) has no allocation bitmap entry (type 0x81) for FAT {fat}"
    )]
    NoBitmap {
        /// The root directory's first cluster.
        root: u32,
        /// The active FAT (1 or 2).
        fat: u8,
    },
    /// The bitmap is too short for the clusters.
    #[error(
        "exfat: the allocation bitmap entry at byte {at} says the bitmap is {length} bytes long, but {clusters} clusters need {needed}"
    )]
    BitmapLength {
        /// Offset of the directory entry.
        at: u64,
        /// DataLength.
        length: u64,
        /// ClusterCount.
        clusters: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// The bitmap's own cluster chain is broken.
    #[error(
        "exfat: the allocation bitmap's cluster chain (entry at byte {at}) is broken: {problem}"
    )]
    BitmapChain {
        /// Offset of the directory entry.
        at: u64,
        /// What is wrong with the chain.
        problem: String,
    },
}
