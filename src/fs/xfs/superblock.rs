//! The primary superblock (sector 0 of AG 0), big-endian, as
//! `struct xfs_dsb` in xfsprogs' xfs_format.h.

use super::error::XfsError;
use crate::bytes::{u16be as be16, u32be as be32, u64be as be64};
use crate::fs::ext::checksum::crc32c;

/// "XFSB".
pub const SB_MAGIC: u32 = 0x5846_5342;
/// Byte offset of `sb_crc` (v5).
pub const SB_CRC_OFFSET: usize = 224;

/// `sb_versionnum` bits (v4).
pub mod version {
    /// The low nibble: the version number.
    pub const NUMBITS: u16 = 0x000f;
    /// `sb_features2` is valid.
    pub const MOREBITS: u16 = 0x8000;
}

/// `sb_features2` bits.
pub mod features2 {
    /// Lazy superblock counters.
    pub const LAZYSBCOUNT: u32 = 0x2;
    /// Attr2.
    pub const ATTR2: u32 = 0x8;
    /// Parent pointers (old).
    pub const PARENT: u32 = 0x10;
    /// 32-bit project ids.
    pub const PROJID32: u32 = 0x80;
    /// Metadata CRCs (v5 only).
    pub const CRC: u32 = 0x100;
    /// Directory file types.
    pub const FTYPE: u32 = 0x200;
    /// Every bit a v4 or v5 filesystem may have.
    pub const KNOWN: u32 = LAZYSBCOUNT | ATTR2 | PARENT | PROJID32 | CRC | FTYPE;
}

/// v5 `sb_features_ro_compat` bits.
pub mod ro_compat {
    /// Free inode btree.
    pub const FINOBT: u32 = 0x1;
    /// Reverse mapping btree.
    pub const RMAPBT: u32 = 0x2;
    /// Reflink (refcount btree).
    pub const REFLINK: u32 = 0x4;
    /// Inode btree block counters.
    pub const INOBTCNT: u32 = 0x8;
    /// Every known bit.
    pub const KNOWN: u32 = FINOBT | RMAPBT | REFLINK | INOBTCNT;
}

/// v5 `sb_features_incompat` bits.
pub mod incompat {
    /// Directory file types.
    pub const FTYPE: u32 = 0x1;
    /// Sparse inode chunks.
    pub const SPINODES: u32 = 0x2;
    /// Metadata UUID (`sb_meta_uuid` stamps the metadata).
    pub const META_UUID: u32 = 0x4;
    /// Timestamps past 2038.
    pub const BIGTIME: u32 = 0x8;
    /// xfs_repair must run before mounting.
    pub const NEEDSREPAIR: u32 = 0x10;
    /// 64-bit extent counters.
    pub const NREXT64: u32 = 0x20;
    /// Atomic file mapping exchange.
    pub const EXCHRANGE: u32 = 0x40;
    /// Parent pointers.
    pub const PARENT: u32 = 0x80;
    /// Every bit this module knows (none changes the free-space btrees
    /// of the data device).
    pub const KNOWN: u32 =
        FTYPE | SPINODES | META_UUID | BIGTIME | NEEDSREPAIR | NREXT64 | EXCHRANGE | PARENT;
}

/// v5 `sb_features_log_incompat` bits.
pub mod log_incompat {
    /// Logged extended attribute updates.
    pub const XATTRS: u32 = 0x1;
    /// Every known bit.
    pub const KNOWN: u32 = XATTRS;
}

/// The fields of the superblock this module uses.
#[derive(Clone, Debug)]
pub struct Superblock {
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks in the data section.
    pub dblocks: u64,
    /// Blocks in the realtime section.
    pub rblocks: u64,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// The UUID stamped in metadata (`sb_meta_uuid` with META_UUID).
    pub meta_uuid: [u8; 16],
    /// First block of the internal log (AG-encoded), 0 when external.
    pub logstart: u64,
    /// Blocks per AG.
    pub agblocks: u32,
    /// Number of AGs.
    pub agcount: u32,
    /// Log length in blocks.
    pub logblocks: u32,
    /// `sb_versionnum`.
    pub versionnum: u16,
    /// Sector size in bytes.
    pub sect_size: u16,
    /// Inode size in bytes.
    pub inode_size: u16,
    /// Volume label.
    pub label: String,
    /// log2 of the block size.
    pub blocklog: u8,
    /// log2 of agblocks, rounded up (inode and fsblock numbers).
    pub agblklog: u8,
    /// `sb_inprogress`: mkfs did not finish.
    pub inprogress: u8,
    /// Allocated inodes.
    pub icount: u64,
    /// Free inodes.
    pub ifree: u64,
    /// Free data blocks (a lazy counter with LAZYSBCOUNT).
    pub fdblocks: u64,
    /// `sb_features2`.
    pub features2: u32,
    /// v5 compat features.
    pub compat: u32,
    /// v5 ro-compat features.
    pub ro_compat: u32,
    /// v5 incompat features.
    pub incompat: u32,
    /// v5 log incompat features.
    pub log_incompat: u32,
}

/// The XFS CRC32C of `data` with the 4 bytes at `crc_off` taken as zeros
/// (`xfs_start_cksum_safe` + `xfs_end_cksum`), and the stored value.
pub fn checksum(data: &[u8], crc_off: usize) -> (u32, u32) {
    let stored = u32::from_le_bytes(data[crc_off..crc_off + 4].try_into().expect("4 bytes"));
    let mut crc = crc32c(!0, &data[..crc_off]);
    crc = crc32c(crc, &[0; 4]);
    crc = crc32c(crc, &data[crc_off + 4..]);
    (stored, !crc)
}

impl Superblock {
    /// Parses and validates the superblock from the first bytes of the
    /// volume (at least 512, or the sector size when larger).
    pub fn from_bytes(raw: &[u8]) -> Result<Self, XfsError> {
        let magic = be32(raw, 0);
        if magic != SB_MAGIC {
            return Err(XfsError::BadMagic { found: magic });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&raw[32..48]);
        let versionnum = be16(raw, 100);
        let sb = Superblock {
            block_size: be32(raw, 4),
            dblocks: be64(raw, 8),
            rblocks: be64(raw, 16),
            uuid,
            meta_uuid: uuid,
            logstart: be64(raw, 48),
            agblocks: be32(raw, 84),
            agcount: be32(raw, 88),
            logblocks: be32(raw, 96),
            versionnum,
            sect_size: be16(raw, 102),
            inode_size: be16(raw, 104),
            label: String::from_utf8_lossy(&raw[108..120])
                .trim_end_matches('\0')
                .to_string(),
            blocklog: raw[120],
            agblklog: raw[124],
            inprogress: raw[126],
            icount: be64(raw, 128),
            ifree: be64(raw, 136),
            fdblocks: be64(raw, 144),
            features2: if versionnum & version::MOREBITS != 0 {
                be32(raw, 200)
            } else {
                0
            },
            compat: 0,
            ro_compat: 0,
            incompat: 0,
            log_incompat: 0,
        };
        let v = sb.version();
        if v != 4 && v != 5 {
            return Err(XfsError::Version { version: v });
        }
        let geo = |field, value: u64, offset, why| XfsError::Geometry {
            field,
            value,
            offset,
            why,
        };
        let ss = sb.sect_size;
        if !(512..=32768).contains(&ss) || !ss.is_power_of_two() {
            return Err(geo(
                "sb_sectsize",
                ss.into(),
                102,
                "a power of two, 512 to 32768",
            ));
        }
        let bs = sb.block_size;
        if !(512..=65536).contains(&bs)
            || !bs.is_power_of_two()
            || bs < u32::from(ss)
            || u32::from(sb.blocklog) != bs.trailing_zeros()
        {
            return Err(geo(
                "sb_blocksize",
                bs.into(),
                4,
                "a power of two, 512 to 65536, not below the sector size, and 1 << sb_blocklog",
            ));
        }
        if sb.agcount == 0 {
            return Err(geo("sb_agcount", 0, 88, "at least 1"));
        }
        // xfs_sb_good_version / xfs_validate_sb_common: AGs of 64 blocks
        // at least, 1 TiB at most.
        let max_ag = (1u64 << 40) / u64::from(bs);
        if sb.agblocks < 64 || u64::from(sb.agblocks) > max_ag.min(u64::from(u32::MAX >> 1)) {
            return Err(geo(
                "sb_agblocks",
                sb.agblocks.into(),
                84,
                "64 blocks to 1 TiB",
            ));
        }
        if u32::from(sb.agblklog) != sb.agblocks.next_power_of_two().trailing_zeros() {
            return Err(geo(
                "sb_agblklog",
                sb.agblklog.into(),
                124,
                "log2 of sb_agblocks rounded up",
            ));
        }
        let full = u64::from(sb.agcount - 1) * u64::from(sb.agblocks);
        if sb.dblocks <= full || sb.dblocks - full > u64::from(sb.agblocks) {
            return Err(geo(
                "sb_dblocks",
                sb.dblocks,
                8,
                "more than (sb_agcount - 1) * sb_agblocks, at most sb_agcount * sb_agblocks",
            ));
        }
        if sb.dblocks - full < 64 {
            return Err(geo(
                "sb_dblocks",
                sb.dblocks,
                8,
                "the last AG must have 64 blocks at least",
            ));
        }
        Ok(sb)
    }

    /// Reads the v5 fields and checks the superblock CRC over the sector
    /// (`raw` holds at least `sect_size` bytes).
    pub fn read_v5(&mut self, raw: &[u8]) -> Result<(), XfsError> {
        if self.version() != 5 {
            return Ok(());
        }
        let sector = &raw[..usize::from(self.sect_size)];
        let (stored, computed) = checksum(sector, SB_CRC_OFFSET);
        if stored != computed {
            return Err(XfsError::SuperblockChecksum { stored, computed });
        }
        self.compat = be32(raw, 208);
        self.ro_compat = be32(raw, 212);
        self.incompat = be32(raw, 216);
        self.log_incompat = be32(raw, 220);
        if self.incompat & incompat::META_UUID != 0 {
            self.meta_uuid.copy_from_slice(&raw[248..264]);
        }
        Ok(())
    }

    /// Refuses what this module cannot copy correctly.
    pub fn check_features(&self) -> Result<(), XfsError> {
        let unknown = |which, bits: u32| {
            if bits != 0 {
                Err(XfsError::UnknownFeatures { which, bits })
            } else {
                Ok(())
            }
        };
        if self.version() == 4 {
            unknown(
                "v4 features2",
                self.features2 & !(features2::KNOWN & !features2::CRC),
            )?;
        } else {
            unknown("incompat", self.incompat & !incompat::KNOWN)?;
            unknown("ro_compat", self.ro_compat & !ro_compat::KNOWN)?;
            unknown("log_incompat", self.log_incompat & !log_incompat::KNOWN)?;
            if self.incompat & incompat::NEEDSREPAIR != 0 {
                return Err(XfsError::NeedsRepair);
            }
        }
        if self.logstart == 0 {
            return Err(XfsError::ExternalLog);
        }
        if self.rblocks != 0 {
            return Err(XfsError::Realtime {
                rblocks: self.rblocks,
            });
        }
        Ok(())
    }

    /// 4 or 5.
    pub fn version(&self) -> u16 {
        self.versionnum & version::NUMBITS
    }

    /// Whether metadata carries CRCs (v5).
    pub fn has_crc(&self) -> bool {
        self.version() == 5
    }

    /// Whether the AGFs keep `agf_btreeblks` (lazy counters; always on v5).
    pub fn lazy_count(&self) -> bool {
        self.has_crc() || self.features2 & features2::LAZYSBCOUNT != 0
    }

    /// The UUID stamped in metadata blocks.
    pub fn metadata_uuid(&self) -> &[u8; 16] {
        &self.meta_uuid
    }

    /// Blocks in AG `ag` (the last may be short).
    pub fn ag_length(&self, ag: u32) -> u32 {
        if ag + 1 < self.agcount {
            self.agblocks
        } else {
            (self.dblocks - u64::from(self.agcount - 1) * u64::from(self.agblocks)) as u32
        }
    }

    /// Absolute byte offset of AG-relative block `agbno` of AG `ag`.
    pub fn ag_byte(&self, ag: u32, agbno: u32) -> u64 {
        (u64::from(ag) * u64::from(self.agblocks) + u64::from(agbno)) * u64::from(self.block_size)
    }

    /// The first AG block after the AG headers (sb, AGF, AGI, AGFL):
    /// `XFS_AGFL_BLOCK + 1`.
    pub fn first_free_able(&self) -> u32 {
        (4 * u32::from(self.sect_size)).div_ceil(self.block_size)
    }

    /// The internal log as (AG, AG block), decoded from the AG-encoded
    /// `sb_logstart`.
    pub fn log_position(&self) -> (u64, u64) {
        (
            self.logstart >> self.agblklog,
            self.logstart & ((1u64 << self.agblklog) - 1),
        )
    }

    /// The internal log's first block as a linear block number, if it
    /// decodes inside the data section.
    pub fn log_block(&self) -> Option<u64> {
        let (ag, agbno) = self.log_position();
        if ag >= u64::from(self.agcount) || agbno >= u64::from(self.agblocks) {
            return None;
        }
        let b = ag * u64::from(self.agblocks) + agbno;
        (b + u64::from(self.logblocks) <= self.dblocks).then_some(b)
    }
}
