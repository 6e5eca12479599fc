//! The exFAT boot region: the main boot sector (sector 0), its extended
//! boot sectors, OEM parameters and the checksum sector (sector 11),
//! repeated as the backup boot region in sectors 12-23.

use super::error::ExfatError;
use crate::bytes::{u16le, u32le, u64le};

/// Sectors in one boot region (main boot sector, 8 extended boot sectors,
/// OEM parameters, reserved, checksum).
pub const REGION_SECTORS: u64 = 12;
/// Sectors before the checksum sector.
const CHECKSUMMED_SECTORS: usize = 11;
/// Field offsets in the main boot sector.
const FS_NAME: usize = 3;
const VOLUME_LENGTH: usize = 0x48;
const FAT_OFFSET: usize = 0x50;
const FAT_LENGTH: usize = 0x54;
const HEAP_OFFSET: usize = 0x58;
const CLUSTER_COUNT: usize = 0x5C;
const ROOT_CLUSTER: usize = 0x60;
const SERIAL: usize = 0x64;
const REVISION: usize = 0x68;
const VOLUME_FLAGS: usize = 0x6A;
const BPS_SHIFT: usize = 0x6C;
const SPC_SHIFT: usize = 0x6D;
const NUM_FATS: usize = 0x6E;
const PERCENT_IN_USE: usize = 0x70;
const SIGNATURE: usize = 510;
/// VolumeFlags bits.
const ACTIVE_FAT: u16 = 1;
const VOLUME_DIRTY: u16 = 2;
const MEDIA_FAILURE: u16 = 4;
/// The most clusters a volume may have (2^32 - 11).
const MAX_CLUSTERS: u64 = 0xFFFF_FFF5;

/// Whether `sector` (the first 512 bytes at least) names itself exFAT.
pub fn probe(sector: &[u8]) -> bool {
    sector.len() >= 11 && &sector[FS_NAME..FS_NAME + 8] == b"EXFAT   "
}

/// A validated main boot sector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boot {
    /// Byte offset of the region it was read from (0, or the backup's).
    pub at: u64,
    /// log2 of the sector size.
    pub bps_shift: u8,
    /// log2 of the sectors per cluster.
    pub spc_shift: u8,
    /// VolumeLength, in sectors.
    pub volume_length: u64,
    /// FatOffset, in sectors.
    pub fat_offset: u32,
    /// FatLength, in sectors.
    pub fat_length: u32,
    /// ClusterHeapOffset, in sectors.
    pub heap_offset: u32,
    /// ClusterCount.
    pub cluster_count: u32,
    /// FirstClusterOfRootDirectory.
    pub root_cluster: u32,
    /// VolumeSerialNumber.
    pub serial: u32,
    /// FileSystemRevision (major.minor as 0xMMmm).
    pub revision: u16,
    /// VolumeFlags.
    pub flags: u16,
    /// NumberOfFats (2: TexFAT).
    pub num_fats: u8,
    /// PercentInUse (0xFF: not available).
    pub percent_in_use: u8,
}

impl Boot {
    /// Parses and validates the main boot sector of a region read at byte
    /// `at` (the checksum is checked separately, by [`check_region`]).
    pub fn parse(b: &[u8], at: u64) -> Result<Boot, ExfatError> {
        if !probe(b) {
            return Err(ExfatError::Signature {
                at: at + FS_NAME as u64,
                found: String::from_utf8_lossy(
                    &b[FS_NAME.min(b.len())..(FS_NAME + 8).min(b.len())],
                )
                .into_owned(),
            });
        }
        let sig = u16le(b, SIGNATURE);
        if sig != 0xAA55 {
            return Err(ExfatError::BootSignature {
                at: at + SIGNATURE as u64,
                value: sig,
            });
        }
        let bps_shift = b[BPS_SHIFT];
        if !(9..=12).contains(&bps_shift) {
            return Err(ExfatError::BytesPerSectorShift {
                at: at + BPS_SHIFT as u64,
                value: bps_shift,
            });
        }
        let spc_shift = b[SPC_SHIFT];
        let max = 25 - bps_shift;
        if spc_shift > max {
            return Err(ExfatError::SectorsPerClusterShift {
                at: at + SPC_SHIFT as u64,
                value: spc_shift,
                max,
            });
        }
        let num_fats = b[NUM_FATS];
        if !(1..=2).contains(&num_fats) {
            return Err(ExfatError::NumberOfFats {
                at: at + NUM_FATS as u64,
                value: num_fats,
            });
        }
        let boot = Boot {
            at,
            bps_shift,
            spc_shift,
            volume_length: u64le(b, VOLUME_LENGTH),
            fat_offset: u32le(b, FAT_OFFSET),
            fat_length: u32le(b, FAT_LENGTH),
            heap_offset: u32le(b, HEAP_OFFSET),
            cluster_count: u32le(b, CLUSTER_COUNT),
            root_cluster: u32le(b, ROOT_CLUSTER),
            serial: u32le(b, SERIAL),
            revision: u16le(b, REVISION),
            flags: u16le(b, VOLUME_FLAGS),
            num_fats,
            percent_in_use: b[PERCENT_IN_USE],
        };
        boot.check_layout()?;
        Ok(boot)
    }

    fn check_layout(&self) -> Result<(), ExfatError> {
        let layout = |problem: String| ExfatError::Layout {
            at: self.at,
            problem,
        };
        // Every byte of the volume must be addressable in 64 bits.
        if self.volume_length > u64::MAX >> self.bps_shift {
            return Err(layout(format!(
                "VolumeLength {} sectors overflows 64-bit byte offsets",
                self.volume_length
            )));
        }
        if u64::from(self.fat_offset) < 2 * REGION_SECTORS {
            return Err(layout(format!(
                "FatOffset {} is inside the boot regions (sectors 0-23)",
                self.fat_offset
            )));
        }
        let fat_bytes = u64::from(self.fat_length) << self.bps_shift;
        let entries = u64::from(self.cluster_count) + 2;
        if fat_bytes < entries * 4 {
            return Err(layout(format!(
                "FatLength {} sectors cannot hold the {} entries ClusterCount {} needs",
                self.fat_length, entries, self.cluster_count
            )));
        }
        let fats_end =
            u64::from(self.fat_offset) + u64::from(self.num_fats) * u64::from(self.fat_length);
        if u64::from(self.heap_offset) < fats_end {
            return Err(layout(format!(
                "ClusterHeapOffset {} is inside the FATs (they end at sector {fats_end})",
                self.heap_offset
            )));
        }
        if u64::from(self.cluster_count) > MAX_CLUSTERS {
            return Err(layout(format!(
                "ClusterCount {} is above the maximum {MAX_CLUSTERS}",
                self.cluster_count
            )));
        }
        let heap_end = self.heap_end_sector();
        if heap_end > self.volume_length {
            return Err(layout(format!(
                "the cluster heap ends at sector {heap_end} (ClusterHeapOffset {} + ClusterCount {} << {}), past VolumeLength {}",
                self.heap_offset, self.cluster_count, self.spc_shift, self.volume_length
            )));
        }
        let last = self.last_cluster();
        if self.root_cluster < 2 || u64::from(self.root_cluster) > last {
            return Err(ExfatError::RootCluster {
                at: self.at + ROOT_CLUSTER as u64,
                value: self.root_cluster,
                last,
            });
        }
        Ok(())
    }

    /// Sector size in bytes.
    pub fn sector_size(&self) -> u64 {
        1 << self.bps_shift
    }

    /// Cluster size in bytes (at most 32 MiB).
    pub fn cluster_size(&self) -> u64 {
        1 << (self.bps_shift + self.spc_shift)
    }

    /// Size of the volume in bytes.
    pub fn volume_size(&self) -> u64 {
        self.volume_length << self.bps_shift
    }

    /// Byte offset of the cluster heap (cluster 2).
    pub fn heap_bytes(&self) -> u64 {
        u64::from(self.heap_offset) << self.bps_shift
    }

    /// The sector after the last cluster.
    fn heap_end_sector(&self) -> u64 {
        u64::from(self.heap_offset) + (u64::from(self.cluster_count) << self.spc_shift)
    }

    /// Byte offset of the end of the cluster heap.
    pub fn heap_end_bytes(&self) -> u64 {
        self.heap_end_sector() << self.bps_shift
    }

    /// The last valid cluster number (ClusterCount + 1).
    pub fn last_cluster(&self) -> u64 {
        u64::from(self.cluster_count) + 1
    }

    /// Byte offset of cluster `c` (2..=last).
    pub fn cluster_offset(&self, c: u32) -> u64 {
        self.heap_bytes() + (u64::from(c - 2) << (self.bps_shift + self.spc_shift))
    }

    /// Byte offset of FAT `n` (0-based).
    pub fn fat_bytes(&self, n: u8) -> u64 {
        (u64::from(self.fat_offset) + u64::from(n) * u64::from(self.fat_length)) << self.bps_shift
    }

    /// The FAT (and allocation bitmap) in use: 0, or 1 on TexFAT volumes
    /// whose ActiveFat bit is set.
    pub fn active_fat(&self) -> u8 {
        if self.num_fats == 2 && self.flags & ACTIVE_FAT != 0 {
            1
        } else {
            0
        }
    }

    /// VolumeFlags and PercentInUse from `main` (the main boot sector's
    /// bytes), which the filesystem updates and the backup does not.
    pub fn take_state(&mut self, main: &[u8]) {
        self.flags = u16le(main, VOLUME_FLAGS);
        self.percent_in_use = main[PERCENT_IN_USE];
    }

    /// The VolumeDirty flag.
    pub fn dirty(&self) -> bool {
        self.flags & VOLUME_DIRTY != 0
    }

    /// The MediaFailure flag.
    pub fn media_failure(&self) -> bool {
        self.flags & MEDIA_FAILURE != 0
    }
}

/// The boot checksum of sectors 0-10 (`region`, 11 sectors of
/// `sector_size` bytes): VolumeFlags (bytes 106-107) and PercentInUse (byte
/// 112) are left out, as the filesystem changes them without rewriting the
/// checksum.
pub fn checksum(region: &[u8], sector_size: usize) -> u32 {
    let mut sum = 0u32;
    for (i, &b) in region[..CHECKSUMMED_SECTORS * sector_size]
        .iter()
        .enumerate()
    {
        if i == 106 || i == 107 || i == 112 {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(u32::from(b));
    }
    sum
}

/// Validates a whole boot region (12 sectors read at byte `at`): its boot
/// sector, and sector 11 repeating the checksum of sectors 0-10.
pub fn check_region(region: &[u8], at: u64) -> Result<Boot, ExfatError> {
    let boot = Boot::parse(region, at)?;
    let ss = boot.sector_size() as usize;
    let computed = checksum(region, ss);
    let sums = &region[CHECKSUMMED_SECTORS * ss..(CHECKSUMMED_SECTORS + 1) * ss];
    if let Some(i) = (0..ss / 4).find(|&i| u32le(sums, i * 4) != computed) {
        return Err(ExfatError::BootChecksum {
            at: at + (CHECKSUMMED_SECTORS * ss + i * 4) as u64,
            stored: u32le(sums, i * 4),
            computed,
        });
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid region: 512-byte sectors, 4 KiB clusters, 100
    /// clusters, one FAT at sector 24.
    fn region() -> Vec<u8> {
        let mut r = vec![0u8; 12 * 512];
        r[0..3].copy_from_slice(&[0xEB, 0x76, 0x90]);
        r[3..11].copy_from_slice(b"EXFAT   ");
        r[VOLUME_LENGTH..VOLUME_LENGTH + 8].copy_from_slice(&1000u64.to_le_bytes());
        r[FAT_OFFSET..FAT_OFFSET + 4].copy_from_slice(&24u32.to_le_bytes());
        r[FAT_LENGTH..FAT_LENGTH + 4].copy_from_slice(&1u32.to_le_bytes());
        r[HEAP_OFFSET..HEAP_OFFSET + 4].copy_from_slice(&32u32.to_le_bytes());
        r[CLUSTER_COUNT..CLUSTER_COUNT + 4].copy_from_slice(&100u32.to_le_bytes());
        r[ROOT_CLUSTER..ROOT_CLUSTER + 4].copy_from_slice(&4u32.to_le_bytes());
        r[BPS_SHIFT] = 9;
        r[SPC_SHIFT] = 3;
        r[NUM_FATS] = 1;
        r[510] = 0x55;
        r[511] = 0xAA;
        let sum = checksum(&r, 512);
        for i in 0..128 {
            r[11 * 512 + i * 4..11 * 512 + i * 4 + 4].copy_from_slice(&sum.to_le_bytes());
        }
        r
    }

    #[test]
    fn a_valid_region_parses() {
        let b = check_region(&region(), 0).unwrap();
        assert_eq!(b.cluster_size(), 4096);
        assert_eq!(b.cluster_offset(2), 32 * 512);
        assert_eq!(b.last_cluster(), 101);
    }

    #[test]
    fn flags_and_percent_are_outside_the_checksum() {
        let mut r = region();
        r[VOLUME_FLAGS] = 2;
        r[PERCENT_IN_USE] = 50;
        assert!(check_region(&r, 0).unwrap().dirty());
        r[SERIAL] ^= 1;
        assert!(matches!(
            check_region(&r, 0),
            Err(ExfatError::BootChecksum { at: 5632, .. })
        ));
    }

    #[test]
    fn a_one_sector_fat_cannot_hold_200_clusters() {
        let mut r = region();
        r[CLUSTER_COUNT..CLUSTER_COUNT + 4].copy_from_slice(&200u32.to_le_bytes());
        let e = Boot::parse(&r, 0).unwrap_err();
        assert!(
            e.to_string().contains("FatLength 1 sectors cannot hold"),
            "{e}"
        );
    }
}
