//! Errors of the NTFS module: each names the structure and, where there is
//! one, the absolute byte offset in the volume.

/// A corrupt or unsupported NTFS volume. Offsets are absolute bytes in the
/// volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NtfsError {
    /// The OEM id at byte 3 is not `NTFS    `.
    #[error("ntfs: no NTFS signature at byte 3 (found {found:?})")]
    Signature {
        /// The eight bytes found, lossily decoded.
        found: String,
    },
    /// The boot sector does not end in 0x55 0xAA.
    #[error("ntfs: boot sector end marker is 0x{found:04x} at byte 510 (expected 0xaa55)")]
    EndMarker {
        /// The value found.
        found: u16,
    },
    /// Bytes per sector is not a power of two from 256 to 4096.
    #[error(
        "ntfs: invalid bytes per sector {value} at byte 11 (expected 256, 512, 1024, 2048 or 4096)"
    )]
    BytesPerSector {
        /// The value found.
        value: u16,
    },
    /// Sectors per cluster gives no valid cluster size.
    #[error(
        "ntfs: invalid sectors per cluster 0x{value:02x} at byte 13 (cluster size must be a power of two from the sector size to 2 MiB)"
    )]
    SectorsPerCluster {
        /// The value found.
        value: u8,
    },
    /// The volume has no clusters.
    #[error("ntfs: the total sector count at byte 40 ({sectors}) gives no whole cluster")]
    TotalSectors {
        /// The value found.
        sectors: u64,
    },
    /// A boot sector field names a cluster past the end of the volume.
    #[error("ntfs: {field} cluster {lcn} at byte {offset} is past the last cluster ({last})")]
    ClusterOutOfRange {
        /// `$MFT` or `$MFTMirr`.
        field: &'static str,
        /// Byte offset of the field.
        offset: u64,
        /// The value found.
        lcn: u64,
        /// The last cluster of the volume.
        last: u64,
    },
    /// The MFT record size field is not a power of two from 256 bytes to
    /// 64 KiB.
    #[error("ntfs: invalid MFT record size field 0x{value:02x} at byte 64")]
    RecordSize {
        /// The value found.
        value: u8,
    },
    /// The ntfs crate refused a structure.
    #[error("ntfs: {what}: {message}")]
    Structure {
        /// What was being read.
        what: &'static str,
        /// The crate's description, with its byte position.
        message: String,
    },
    /// The NTFS version is not one this program knows.
    #[error("ntfs: unsupported NTFS version {major}.{minor} in $Volume")]
    Version {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// An MFT record the copy cannot do without is corrupt.
    #[error("ntfs: MFT record {record} at byte {offset} is corrupt: {problem}")]
    Record {
        /// The record number.
        record: u64,
        /// Byte offset of the record in the volume.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// `$Bitmap` has fewer bits than the volume has clusters.
    #[error("ntfs: $Bitmap holds {bits} bits but the volume has {clusters} clusters")]
    BitmapTooShort {
        /// Bits in `$Bitmap`.
        bits: u64,
        /// Clusters in the volume.
        clusters: u64,
    },
    /// A system file's data lies outside the volume or is missing.
    #[error("ntfs: {what}")]
    Layout {
        /// What is wrong, with the numbers.
        what: String,
    },
}
