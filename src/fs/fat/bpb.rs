//! The FAT boot sector's BIOS parameter block (BPB), read at the offsets of
//! Microsoft's FAT specification under its names, validated once here.

use super::FatError;
use crate::bytes::{u16le, u32le};

/// Clusters below which a volume is FAT12.
pub const FAT16_MIN_CLUSTERS: u32 = 4085;
/// Clusters below which a volume is FAT16 (else FAT32).
pub const FAT32_MIN_CLUSTERS: u32 = 65525;

/// The FAT variant, decided by the cluster count alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    /// 12-bit entries.
    Fat12,
    /// 16-bit entries.
    Fat16,
    /// 28-bit entries in 32 bits.
    Fat32,
}

impl FatType {
    /// The entry value marking a bad cluster.
    pub fn bad_mark(self) -> u32 {
        match self {
            FatType::Fat12 => 0xFF7,
            FatType::Fat16 => 0xFFF7,
            FatType::Fat32 => 0x0FFF_FFF7,
        }
    }

    /// The first reserved value (0xFF0 and up are reserved, bad or end of
    /// chain, never a next-cluster number).
    pub fn reserved_from(self) -> u32 {
        match self {
            FatType::Fat12 => 0xFF0,
            FatType::Fat16 => 0xFFF0,
            FatType::Fat32 => 0x0FFF_FFF0,
        }
    }
}

/// A validated boot sector.
#[derive(Clone, Debug)]
pub struct Bpb {
    /// `BPB_BytsPerSec`.
    pub bytes_per_sector: u32,
    /// `BPB_SecPerClus`.
    pub sectors_per_cluster: u32,
    /// `BPB_RsvdSecCnt`.
    pub reserved_sectors: u32,
    /// `BPB_NumFATs`.
    pub num_fats: u32,
    /// `BPB_RootEntCnt` (0 on FAT32).
    pub root_entries: u32,
    /// `BPB_TotSec16` or `BPB_TotSec32`.
    pub total_sectors: u32,
    /// `BPB_FATSz16` or `BPB_FATSz32`.
    pub fat_size: u32,
    /// FAT32 `BPB_ExtFlags`.
    pub ext_flags: u16,
    /// FAT32 `BPB_RootClus`.
    pub root_cluster: u32,
    /// FAT32 `BPB_FSInfo`.
    pub fsinfo_sector: u32,
    /// `BS_VolLab`.
    pub label: String,
    /// `BS_VolID`.
    pub volume_id: u32,
    /// Bit 0 of `BS_Reserved1` (0x25, or 0x41 on FAT32): set while mounted.
    pub dirty: bool,
    /// Sectors of the root directory region (FAT12/16).
    pub root_dir_sectors: u32,
    /// First sector of cluster 2.
    pub first_data_sector: u32,
    /// Data clusters (numbered 2 ..= cluster_count + 1).
    pub cluster_count: u32,
    /// FAT12, FAT16 or FAT32.
    pub fat_type: FatType,
}

impl Bpb {
    /// Whether sector 0 looks like a FAT boot sector (jump instruction,
    /// plausible BPB, not NTFS or exFAT).
    pub fn probe(b: &[u8]) -> bool {
        if b.len() < 512 {
            return false;
        }
        let jump = b[0] == 0xE9 || (b[0] == 0xEB && b[2] == 0x90);
        let oem = &b[3..11];
        let fs_name = &b[0x36..0x3E] == b"FAT12   "
            || &b[0x36..0x3E] == b"FAT16   "
            || &b[0x36..0x3E] == b"FAT     "
            || &b[0x52..0x5A] == b"FAT32   ";
        let bps = u16le(b, 0x0B);
        let plausible = matches!(bps, 512 | 1024 | 2048 | 4096)
            && b[0x0D].is_power_of_two()
            && u16le(b, 0x0E) > 0
            && b[0x10] > 0
            && (b[0x15] == 0xF0 || b[0x15] >= 0xF8);
        oem != b"NTFS    " && oem != b"EXFAT   " && (fs_name || (jump && plausible))
    }

    /// Parses and validates sector 0.
    pub fn from_bytes(b: &[u8]) -> Result<Self, FatError> {
        assert!(b.len() >= 512);
        let bps = u16le(b, 0x0B);
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(FatError::BytesPerSector { value: bps });
        }
        let spc = b[0x0D];
        if spc == 0 || !spc.is_power_of_two() {
            return Err(FatError::SectorsPerCluster { value: spc });
        }
        let reserved = u16le(b, 0x0E);
        if reserved == 0 {
            return Err(FatError::ReservedSectors);
        }
        let num_fats = b[0x10];
        if num_fats == 0 {
            return Err(FatError::NumFats { value: num_fats });
        }
        let root_entries = u16le(b, 0x11);
        let tot16 = u16le(b, 0x13);
        let fat16 = u16le(b, 0x16);
        let tot32 = u32le(b, 0x20);
        let fat_size = if fat16 != 0 {
            u32::from(fat16)
        } else {
            u32le(b, 0x24)
        };
        if fat_size == 0 {
            return Err(FatError::FatSizeZero {
                offset: if fat16 != 0 { 0x16 } else { 0x24 },
            });
        }
        let total = if tot16 != 0 { u32::from(tot16) } else { tot32 };
        let bps32 = u32::from(bps);
        let root_dir_sectors = (u32::from(root_entries) * 32).div_ceil(bps32);
        let first_data = u64::from(reserved)
            + u64::from(num_fats) * u64::from(fat_size)
            + u64::from(root_dir_sectors);
        if u64::from(total) <= first_data + u64::from(spc) {
            return Err(FatError::TotalSectors {
                total,
                first_data_sector: first_data,
            });
        }
        // In range: first_data < total, a u32.
        let first_data = first_data as u32;
        let cluster_count = (total - first_data) / u32::from(spc);
        let fat_type = if cluster_count < FAT16_MIN_CLUSTERS {
            FatType::Fat12
        } else if cluster_count < FAT32_MIN_CLUSTERS {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        // The FAT must hold an entry for every cluster (and the two
        // reserved entries).
        let entry_bits: u64 = match fat_type {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        };
        let needed = (u64::from(cluster_count) + 2) * entry_bits;
        if u64::from(fat_size) * u64::from(bps32) * 8 < needed {
            return Err(FatError::FatTooSmall {
                fat_sectors: fat_size,
                needed_sectors: needed.div_ceil(u64::from(bps32) * 8),
            });
        }
        let fat32 = fat_type == FatType::Fat32;
        if fat32 && root_entries != 0 {
            return Err(FatError::Fat32RootEntries {
                value: root_entries,
            });
        }
        if !fat32 && root_entries == 0 {
            return Err(FatError::NoRootDirectory);
        }
        let (label_at, id_at, dirty_at) = if fat32 {
            (0x47, 0x43, 0x41)
        } else {
            (0x2B, 0x27, 0x25)
        };
        let root_cluster = if fat32 { u32le(b, 0x2C) } else { 0 };
        if fat32 && !(2..cluster_count + 2).contains(&root_cluster) {
            return Err(FatError::RootCluster {
                value: root_cluster,
                last: cluster_count + 1,
            });
        }
        let label = String::from_utf8_lossy(&b[label_at..label_at + 11])
            .trim_end()
            .to_string();
        Ok(Bpb {
            bytes_per_sector: bps32,
            sectors_per_cluster: u32::from(spc),
            reserved_sectors: u32::from(reserved),
            num_fats: u32::from(num_fats),
            root_entries: u32::from(root_entries),
            total_sectors: total,
            fat_size,
            ext_flags: if fat32 { u16le(b, 0x28) } else { 0 },
            root_cluster,
            fsinfo_sector: if fat32 { u32::from(u16le(b, 0x30)) } else { 0 },
            label,
            volume_id: u32le(b, id_at),
            dirty: b[dirty_at] & 1 != 0,
            root_dir_sectors,
            first_data_sector: first_data,
            cluster_count,
            fat_type,
        })
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u32 {
        self.bytes_per_sector * self.sectors_per_cluster
    }

    /// Volume size in bytes.
    pub fn volume_size(&self) -> u64 {
        u64::from(self.total_sectors) * u64::from(self.bytes_per_sector)
    }

    /// Byte offset of the first data cluster (cluster 2).
    pub fn data_offset(&self) -> u64 {
        u64::from(self.first_data_sector) * u64::from(self.bytes_per_sector)
    }

    /// Byte offset of FAT copy `n`.
    pub fn fat_offset(&self, n: u32) -> u64 {
        (u64::from(self.reserved_sectors) + u64::from(n) * u64::from(self.fat_size))
            * u64::from(self.bytes_per_sector)
    }

    /// The FAT copy in use: FAT32 may turn mirroring off and name one.
    pub fn active_fat(&self) -> Option<u32> {
        (self.fat_type == FatType::Fat32 && self.ext_flags & 0x80 != 0)
            .then_some(u32::from(self.ext_flags & 0xF))
    }
}
