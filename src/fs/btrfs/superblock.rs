//! The btrfs superblock: 4096 bytes at 64 KiB, mirrored at 64 MiB and
//! 256 GiB when the device reaches that far. Fields are read at the
//! offsets of `struct btrfs_super_block` (btrfs_tree.h) under its names.

use super::csum::{CsumType, hex};
use super::error::BtrfsError;
use crate::bytes::{u16le, u32le, u64le};

/// Byte offset of the primary superblock.
pub const PRIMARY_OFFSET: u64 = 64 * 1024;
/// Size of a superblock on disk (`BTRFS_SUPER_INFO_SIZE`).
pub const SUPER_SIZE: usize = 4096;
/// `BTRFS_MAGIC`, "_BHRfS_M".
pub const MAGIC: &[u8; 8] = b"_BHRfS_M";
/// Byte offset of the `sys_chunk_array` in the superblock.
pub const SYS_CHUNK_ARRAY: usize = 0x32b;
/// Size of the `sys_chunk_array` (`BTRFS_SYSTEM_CHUNK_ARRAY_SIZE`).
pub const SYS_CHUNK_ARRAY_SIZE: usize = 2048;

/// Offset of superblock copy `i` (0 primary, 1 and 2 mirrors):
/// `btrfs_sb_offset()`.
pub fn mirror_offset(i: u32) -> u64 {
    if i == 0 {
        PRIMARY_OFFSET
    } else {
        (16 * 1024u64) << (12 * i)
    }
}

/// `incompat_flags` bits.
pub mod incompat {
    /// Back references of the mixed format (always set since 2.6.31).
    pub const MIXED_BACKREF: u64 = 1 << 0;
    /// A default subvolume other than the top one.
    pub const DEFAULT_SUBVOL: u64 = 1 << 1;
    /// Data and metadata share block groups.
    pub const MIXED_GROUPS: u64 = 1 << 2;
    /// LZO compressed extents.
    pub const COMPRESS_LZO: u64 = 1 << 3;
    /// ZSTD compressed extents.
    pub const COMPRESS_ZSTD: u64 = 1 << 4;
    /// Tree blocks larger than 4 KiB.
    pub const BIG_METADATA: u64 = 1 << 5;
    /// Extended inode references.
    pub const EXTENDED_IREF: u64 = 1 << 6;
    /// RAID5/6 profiles.
    pub const RAID56: u64 = 1 << 7;
    /// METADATA_ITEM instead of EXTENT_ITEM for tree blocks.
    pub const SKINNY_METADATA: u64 = 1 << 8;
    /// No explicit hole extents.
    pub const NO_HOLES: u64 = 1 << 9;
    /// Tree blocks carry `metadata_uuid` instead of the fsid.
    pub const METADATA_UUID: u64 = 1 << 10;
    /// RAID1C3/RAID1C4 profiles.
    pub const RAID1C34: u64 = 1 << 11;
    /// Zoned devices.
    pub const ZONED: u64 = 1 << 12;
    /// Extent tree v2 (experimental).
    pub const EXTENT_TREE_V2: u64 = 1 << 13;
    /// The raid stripe tree.
    pub const RAID_STRIPE_TREE: u64 = 1 << 14;
    /// Simple quotas.
    pub const SIMPLE_QUOTA: u64 = 1 << 16;
    /// Every bit this module reads volumes with.
    pub const KNOWN: u64 = MIXED_BACKREF
        | DEFAULT_SUBVOL
        | MIXED_GROUPS
        | COMPRESS_LZO
        | COMPRESS_ZSTD
        | BIG_METADATA
        | EXTENDED_IREF
        | SKINNY_METADATA
        | NO_HOLES
        | METADATA_UUID
        | SIMPLE_QUOTA;
}

/// `compat_ro_flags` bits.
pub mod compat_ro {
    /// Block group items live in their own tree (id 11).
    pub const BLOCK_GROUP_TREE: u64 = 1 << 3;
}

/// Superblock `flags` bits.
pub mod flags {
    /// The filesystem hit an error (`BTRFS_SUPER_FLAG_ERROR`).
    pub const ERROR: u64 = 1 << 2;
    /// A seed device (`BTRFS_SUPER_FLAG_SEEDING`).
    pub const SEEDING: u64 = 1 << 32;
    /// An fsid change was interrupted.
    pub const CHANGING_FSID: u64 = 1 << 35;
    /// A metadata_uuid change was interrupted.
    pub const CHANGING_FSID_V2: u64 = 1 << 36;
}

/// The fields of a superblock this module uses.
#[derive(Clone, Debug)]
pub struct Superblock {
    /// `bytenr`: where this copy says it is.
    pub bytenr: u64,
    /// `fsid`.
    pub fsid: [u8; 16],
    /// `metadata_uuid` (the fsid tree blocks carry when METADATA_UUID).
    pub metadata_uuid: [u8; 16],
    /// `flags`.
    pub flags: u64,
    /// `generation`.
    pub generation: u64,
    /// `root`: logical address of the root tree.
    pub root: u64,
    /// `chunk_root`.
    pub chunk_root: u64,
    /// `log_root` (0: none).
    pub log_root: u64,
    /// `total_bytes` of all devices.
    pub total_bytes: u64,
    /// `bytes_used`.
    pub bytes_used: u64,
    /// `num_devices`.
    pub num_devices: u64,
    /// `sectorsize`.
    pub sectorsize: u32,
    /// `nodesize`.
    pub nodesize: u32,
    /// `sys_chunk_array_size`.
    pub sys_chunk_array_size: u32,
    /// `chunk_root_generation`.
    pub chunk_root_generation: u64,
    /// `compat_ro_flags`.
    pub compat_ro_flags: u64,
    /// `incompat_flags`.
    pub incompat_flags: u64,
    /// `csum_type`.
    pub csum_type: CsumType,
    /// `root_level`.
    pub root_level: u8,
    /// `chunk_root_level`.
    pub chunk_root_level: u8,
    /// `log_root_level`.
    pub log_root_level: u8,
    /// `dev_item.devid`.
    pub devid: u64,
    /// `dev_item.total_bytes`: the size of this device.
    pub dev_total_bytes: u64,
    /// `label`, up to the first NUL.
    pub label: String,
    /// The system chunk array (the first `sys_chunk_array_size` bytes).
    pub sys_chunk_array: Vec<u8>,
}

impl Superblock {
    /// Whether `raw` starts with the btrfs magic at its place.
    pub fn has_magic(raw: &[u8]) -> bool {
        raw.len() >= 0x48 && &raw[0x40..0x48] == MAGIC
    }

    /// Parses and checks the superblock `raw` read at `offset`.
    pub fn parse(raw: &[u8], offset: u64) -> Result<Self, BtrfsError> {
        if !Self::has_magic(raw) {
            return Err(BtrfsError::BadMagic { offset });
        }
        let code = u16le(raw, 0xc4);
        let csum_type = CsumType::from_code(code).ok_or(BtrfsError::ChecksumType {
            offset,
            found: code,
        })?;
        csum_type
            .verify(&raw[..SUPER_SIZE])
            .map_err(|(stored, computed)| BtrfsError::SuperblockChecksum {
                offset,
                kind: csum_type.name(),
                stored,
                computed,
            })?;
        let uuid = |at: usize| -> [u8; 16] {
            let mut u = [0u8; 16];
            u.copy_from_slice(&raw[at..at + 16]);
            u
        };
        let label_raw = &raw[0x12b..0x12b + 256];
        let label_len = label_raw.iter().position(|&b| b == 0).unwrap_or(256);
        let sb = Superblock {
            fsid: uuid(0x20),
            bytenr: u64le(raw, 0x30),
            flags: u64le(raw, 0x38),
            generation: u64le(raw, 0x48),
            root: u64le(raw, 0x50),
            chunk_root: u64le(raw, 0x58),
            log_root: u64le(raw, 0x60),
            total_bytes: u64le(raw, 0x70),
            bytes_used: u64le(raw, 0x78),
            num_devices: u64le(raw, 0x88),
            sectorsize: u32le(raw, 0x90),
            nodesize: u32le(raw, 0x94),
            sys_chunk_array_size: u32le(raw, 0xa0),
            chunk_root_generation: u64le(raw, 0xa4),
            compat_ro_flags: u64le(raw, 0xb4),
            incompat_flags: u64le(raw, 0xbc),
            csum_type,
            root_level: raw[0xc6],
            chunk_root_level: raw[0xc7],
            log_root_level: raw[0xc8],
            devid: u64le(raw, 0xc9),
            dev_total_bytes: u64le(raw, 0xc9 + 8),
            label: String::from_utf8_lossy(&label_raw[..label_len]).into_owned(),
            metadata_uuid: uuid(0x23b),
            sys_chunk_array: Vec::new(),
        };
        sb.validate()?;
        let n = sb.sys_chunk_array_size as usize;
        Ok(Superblock {
            sys_chunk_array: raw[SYS_CHUNK_ARRAY..SYS_CHUNK_ARRAY + n].to_vec(),
            ..sb
        })
    }

    /// The range checks of `btrfs_validate_super()` this module relies on.
    fn validate(&self) -> Result<(), BtrfsError> {
        let bad = |field, value: u64, why| Err(BtrfsError::Superblock { field, value, why });
        let ss = self.sectorsize;
        if !ss.is_power_of_two() || !(4096..=65536).contains(&ss) {
            return bad(
                "sectorsize",
                ss.into(),
                "must be a power of two from 4096 to 65536",
            );
        }
        let ns = self.nodesize;
        if !ns.is_power_of_two() || ns < ss || ns > 65536 {
            return bad(
                "nodesize",
                ns.into(),
                "must be a power of two from the sectorsize to 65536",
            );
        }
        if self.sys_chunk_array_size as usize > SYS_CHUNK_ARRAY_SIZE {
            return bad(
                "sys_chunk_array_size",
                self.sys_chunk_array_size.into(),
                "at most 2048",
            );
        }
        for (field, level) in [
            ("root_level", self.root_level),
            ("chunk_root_level", self.chunk_root_level),
            ("log_root_level", self.log_root_level),
        ] {
            if level >= super::tree::MAX_LEVEL {
                return bad(field, level.into(), "levels are 0 to 7");
            }
        }
        for (field, addr) in [("root", self.root), ("chunk_root", self.chunk_root)] {
            if addr == 0 || !addr.is_multiple_of(u64::from(ss)) {
                return bad(field, addr, "must be a non-zero multiple of the sectorsize");
            }
        }
        if !self.log_root.is_multiple_of(u64::from(ss)) {
            return bad(
                "log_root",
                self.log_root,
                "must be a multiple of the sectorsize",
            );
        }
        if self.dev_total_bytes < 1024 * 1024 {
            return bad(
                "dev_item.total_bytes",
                self.dev_total_bytes,
                "at least 1 MiB",
            );
        }
        Ok(())
    }

    /// The fsid tree block headers carry.
    pub fn tree_fsid(&self) -> [u8; 16] {
        if self.incompat_flags & incompat::METADATA_UUID != 0 {
            self.metadata_uuid
        } else {
            self.fsid
        }
    }
}

/// A UUID in its usual text form.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h = hex(u);
    let h = &h[2..];
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
