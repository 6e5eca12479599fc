//! The AG free space header (AGF, sector 1 of each AG), as `struct
//! xfs_agf` in xfs_format.h.

use super::error::XfsError;
use super::superblock::{Superblock, checksum};
use crate::bytes::u32be as be32;

/// "XAGF".
pub const AGF_MAGIC: u32 = 0x5841_4746;
/// Byte offset of `agf_crc` (v5).
const AGF_CRC_OFFSET: usize = 216;
/// Most levels a free-space btree may have (`XFS_BTREE_MAXLEVELS`).
pub const MAX_LEVELS: u32 = 9;

/// The fields of one AGF this module uses.
#[derive(Clone, Debug)]
pub struct Agf {
    /// Blocks in this AG.
    pub length: u32,
    /// Root block of the bnobt.
    pub bno_root: u32,
    /// Root block of the cntbt.
    pub cnt_root: u32,
    /// Levels of the bnobt.
    pub bno_level: u32,
    /// Levels of the cntbt.
    pub cnt_level: u32,
    /// First AGFL slot in use.
    pub flfirst: u32,
    /// Last AGFL slot in use.
    pub fllast: u32,
    /// AGFL slots in use.
    pub flcount: u32,
    /// Free blocks in the free-space btrees.
    pub freeblks: u32,
    /// Longest free extent.
    pub longest: u32,
    /// Blocks of the free-space (and rmap) btrees beyond their roots.
    pub btreeblks: u32,
    /// Blocks of the rmapbt (v5 with rmapbt).
    pub rmap_blocks: u32,
}

impl Agf {
    /// Parses and checks the AGF of AG `ag` read at byte `offset`
    /// (`raw` is one sector).
    pub fn from_bytes(sb: &Superblock, ag: u32, offset: u64, raw: &[u8]) -> Result<Self, XfsError> {
        let magic = be32(raw, 0);
        if magic != AGF_MAGIC {
            return Err(XfsError::HeaderMagic {
                what: "AGF",
                ag,
                offset,
                found: magic,
                expected: AGF_MAGIC,
            });
        }
        if sb.has_crc() {
            let (stored, computed) = checksum(raw, AGF_CRC_OFFSET);
            if stored != computed {
                return Err(XfsError::HeaderChecksum {
                    what: "AGF",
                    ag,
                    offset,
                    stored,
                    computed,
                });
            }
        }
        let field = |field, found: String, expected: String| XfsError::HeaderField {
            what: "AGF",
            ag,
            offset,
            field,
            found,
            expected,
        };
        if sb.has_crc() && raw[64..80] != sb.metadata_uuid()[..] {
            return Err(field(
                "agf_uuid",
                "another filesystem's".into(),
                "the superblock's".into(),
            ));
        }
        let version = be32(raw, 4);
        if version != 1 {
            return Err(field("agf_versionnum", version.to_string(), "1".into()));
        }
        let seqno = be32(raw, 8);
        if seqno != ag {
            return Err(field("agf_seqno", seqno.to_string(), ag.to_string()));
        }
        let agf = Agf {
            length: be32(raw, 12),
            bno_root: be32(raw, 16),
            cnt_root: be32(raw, 20),
            bno_level: be32(raw, 28),
            cnt_level: be32(raw, 32),
            flfirst: be32(raw, 40),
            fllast: be32(raw, 44),
            flcount: be32(raw, 48),
            freeblks: be32(raw, 52),
            longest: be32(raw, 56),
            btreeblks: be32(raw, 60),
            rmap_blocks: be32(raw, 80),
        };
        let length = sb.ag_length(ag);
        if agf.length != length {
            return Err(field(
                "agf_length",
                agf.length.to_string(),
                length.to_string(),
            ));
        }
        for (name, level) in [
            ("agf_bno_level", agf.bno_level),
            ("agf_cnt_level", agf.cnt_level),
        ] {
            if level == 0 || level > MAX_LEVELS {
                return Err(field(name, level.to_string(), format!("1 to {MAX_LEVELS}")));
            }
        }
        let first = sb.first_free_able();
        for (name, root) in [
            ("agf_bno_root", agf.bno_root),
            ("agf_cnt_root", agf.cnt_root),
        ] {
            if root < first || root >= length {
                return Err(field(
                    name,
                    root.to_string(),
                    format!("a block in {first}..{length}"),
                ));
            }
        }
        if agf.freeblks > length {
            return Err(field(
                "agf_freeblks",
                agf.freeblks.to_string(),
                format!("at most the AG length {length}"),
            ));
        }
        Ok(agf)
    }
}
