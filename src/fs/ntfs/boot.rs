//! The NTFS boot sector (the BIOS parameter block). Parsed here because
//! the ntfs crate keeps the total sector count and the `$MFTMirr` location
//! to itself, and an imager needs both.

use super::error::NtfsError;
use crate::bytes::{u16le, u64le};

/// `NTFS    `, the OEM id at byte 3.
pub const OEM_ID: &[u8; 8] = b"NTFS    ";
/// Size of the boot sector that is parsed.
pub const BOOT_SECTOR_SIZE: usize = 512;
/// Largest cluster size accepted (what mkntfs and the ntfs crate allow).
pub const MAX_CLUSTER_SIZE: u32 = 2 << 20;
/// Largest MFT record size accepted.
pub const MAX_RECORD_SIZE: u32 = 64 << 10;

/// The fields of the boot sector an imager needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSector {
    /// Bytes per sector (byte 11).
    pub bytes_per_sector: u32,
    /// Bytes per cluster (from byte 13).
    pub cluster_size: u32,
    /// Sectors in the volume, not counting the backup boot sector (byte 40).
    pub total_sectors: u64,
    /// First cluster of `$MFT` (byte 48).
    pub mft_lcn: u64,
    /// First cluster of `$MFTMirr` (byte 56).
    pub mftmirr_lcn: u64,
    /// Bytes per MFT record (from byte 64).
    pub record_size: u32,
    /// Bytes per index block (from byte 68; 4096 when the field is
    /// invalid, the size every Windows writes).
    pub index_block_size: u32,
    /// Volume serial number (byte 72).
    pub serial: u64,
}

impl BootSector {
    /// Whether `sector` carries the NTFS OEM id.
    pub fn probe(sector: &[u8]) -> bool {
        sector.len() >= 11 && &sector[3..11] == OEM_ID
    }

    /// Parses and checks a boot sector (at least 512 bytes).
    pub fn from_bytes(b: &[u8]) -> Result<Self, NtfsError> {
        if !Self::probe(b) {
            return Err(NtfsError::Signature {
                found: String::from_utf8_lossy(&b[3..11.min(b.len())]).into_owned(),
            });
        }
        let marker = u16le(b, 510);
        if marker != 0xAA55 {
            return Err(NtfsError::EndMarker { found: marker });
        }
        let bps = u16le(b, 0x0B);
        if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
            return Err(NtfsError::BytesPerSector { value: bps });
        }
        let bps = u32::from(bps);
        let spc_raw = b[0x0D];
        // Above 0x80 the field is a negative power of two (large clusters).
        let spc: u64 = match spc_raw {
            0 => 0,
            1..=0x80 => u64::from(spc_raw),
            _ => {
                let shift = 256 - u32::from(spc_raw);
                if shift > 31 { 0 } else { 1 << shift }
            }
        };
        let cluster = spc * u64::from(bps);
        if !spc.is_power_of_two() || cluster > u64::from(MAX_CLUSTER_SIZE) {
            return Err(NtfsError::SectorsPerCluster { value: spc_raw });
        }
        let cluster_size = cluster as u32;
        let total_sectors = u64le(b, 0x28);
        let clusters = total_sectors.saturating_mul(u64::from(bps)) / cluster;
        if clusters == 0 || total_sectors > u64::MAX / 4096 {
            return Err(NtfsError::TotalSectors {
                sectors: total_sectors,
            });
        }
        let record_raw = b[0x40];
        // Positive: clusters per record; negative: 2^-n bytes.
        let record = match record_raw as i8 {
            n @ 1.. => u64::from(n as u8) * cluster,
            n @ -31..=-1 => 1u64 << n.unsigned_abs(),
            _ => 0,
        };
        if !record.is_power_of_two() || !(256..=u64::from(MAX_RECORD_SIZE)).contains(&record) {
            return Err(NtfsError::RecordSize { value: record_raw });
        }
        let index_block = match b[0x44] as i8 {
            n @ 1.. => u64::from(n as u8) * cluster,
            n @ -31..=-1 => 1u64 << n.unsigned_abs(),
            _ => 0,
        };
        let index_block_size = if index_block.is_power_of_two()
            && (512..=u64::from(MAX_RECORD_SIZE)).contains(&index_block)
        {
            index_block as u32
        } else {
            4096
        };
        let boot = BootSector {
            index_block_size,
            bytes_per_sector: bps,
            cluster_size,
            total_sectors,
            mft_lcn: u64le(b, 0x30),
            mftmirr_lcn: u64le(b, 0x38),
            record_size: record as u32,
            serial: u64le(b, 0x48),
        };
        for (field, offset, lcn) in [
            ("$MFT", 0x30, boot.mft_lcn),
            ("$MFTMirr", 0x38, boot.mftmirr_lcn),
        ] {
            if lcn == 0 || lcn >= clusters {
                return Err(NtfsError::ClusterOutOfRange {
                    field,
                    offset,
                    lcn,
                    last: clusters - 1,
                });
            }
        }
        Ok(boot)
    }

    /// Whole clusters in the volume: the clusters `$Bitmap` describes.
    pub fn total_clusters(&self) -> u64 {
        self.total_sectors * u64::from(self.bytes_per_sector) / u64::from(self.cluster_size)
    }

    /// Bytes a copy must reproduce: every sector including the backup boot
    /// sector, which sits at sector `total_sectors`, after the last
    /// cluster.
    pub fn volume_size(&self) -> u64 {
        (self.total_sectors + 1) * u64::from(self.bytes_per_sector)
    }

    /// Byte offset of the backup boot sector.
    pub fn backup_offset(&self) -> u64 {
        self.total_sectors * u64::from(self.bytes_per_sector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A boot sector as mkntfs writes it for 64 MiB with 4 KiB clusters.
    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[3..11].copy_from_slice(OEM_ID);
        b[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        b[0x0D] = 8;
        b[0x28..0x30].copy_from_slice(&131_071u64.to_le_bytes());
        b[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        b[0x38..0x40].copy_from_slice(&8191u64.to_le_bytes());
        b[0x40] = 0xF6; // -10: 1024-byte records
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn parses_the_geometry() {
        let b = BootSector::from_bytes(&sample()).unwrap();
        assert_eq!(b.cluster_size, 4096);
        assert_eq!(b.record_size, 1024);
        assert_eq!(b.total_clusters(), 16383);
        assert_eq!(b.volume_size(), 64 << 20);
        assert_eq!(b.backup_offset(), (64 << 20) - 512);
    }

    #[test]
    fn large_clusters_use_a_negative_exponent() {
        let mut s = sample();
        s[0x0D] = 0xF4; // 2^12 sectors = 2 MiB
        s[0x28..0x30].copy_from_slice(&(1u64 << 22).to_le_bytes());
        s[0x38..0x40].copy_from_slice(&100u64.to_le_bytes());
        assert_eq!(BootSector::from_bytes(&s).unwrap().cluster_size, 2 << 20);
        s[0x0D] = 0xF3; // 4 MiB: too large
        assert_eq!(
            BootSector::from_bytes(&s),
            Err(NtfsError::SectorsPerCluster { value: 0xF3 })
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(usize, &[u8], NtfsError)> = vec![
            (
                3,
                b"NTFX",
                NtfsError::Signature {
                    found: "NTFX    ".into(),
                },
            ),
            (510, &[0, 0], NtfsError::EndMarker { found: 0 }),
            (0x0B, &[0, 3], NtfsError::BytesPerSector { value: 768 }),
            (0x0D, &[3], NtfsError::SectorsPerCluster { value: 3 }),
            (0x0D, &[0], NtfsError::SectorsPerCluster { value: 0 }),
            (0x28, &[0; 8], NtfsError::TotalSectors { sectors: 0 }),
            (0x40, &[0], NtfsError::RecordSize { value: 0 }),
            (0x40, &[0xEF], NtfsError::RecordSize { value: 0xEF }),
            (
                0x30,
                &[0xFF, 0xFF, 0, 0, 0, 0, 0, 0],
                NtfsError::ClusterOutOfRange {
                    field: "$MFT",
                    offset: 0x30,
                    lcn: 0xFFFF,
                    last: 16382,
                },
            ),
        ];
        for (at, bytes, want) in cases {
            let mut s = sample();
            s[at..at + bytes.len()].copy_from_slice(bytes);
            assert_eq!(BootSector::from_bytes(&s), Err(want), "field at {at}");
        }
    }
}
