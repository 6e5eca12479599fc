//! The AG free list (AGFL, sector 3 of each AG): a ring of blocks held
//! in reserve for the btrees; they are free space.

use super::agf::Agf;
use super::error::XfsError;
use super::superblock::{Superblock, checksum};
use crate::bytes::u32be as be32;

/// "XAFL".
pub const AGFL_MAGIC: u32 = 0x5841_464c;
/// Bytes of the v5 header (magic, seqno, uuid, lsn, crc).
const V5_HEADER: usize = 36;
/// Byte offset of `agfl_crc` (v5).
const AGFL_CRC_OFFSET: usize = 32;

/// The AG blocks on the free list of AG `ag` (`raw` is its AGFL sector,
/// read at byte `offset`), checked against the AGF's ring indexes.
pub fn free_list(
    sb: &Superblock,
    agf: &Agf,
    ag: u32,
    offset: u64,
    raw: &[u8],
) -> Result<Vec<u32>, XfsError> {
    let header = if sb.has_crc() {
        let magic = be32(raw, 0);
        if magic != AGFL_MAGIC {
            return Err(XfsError::HeaderMagic {
                what: "AGFL",
                ag,
                offset,
                found: magic,
                expected: AGFL_MAGIC,
            });
        }
        let (stored, computed) = checksum(raw, AGFL_CRC_OFFSET);
        if stored != computed {
            return Err(XfsError::HeaderChecksum {
                what: "AGFL",
                ag,
                offset,
                stored,
                computed,
            });
        }
        let field = |field, found: String, expected: String| XfsError::HeaderField {
            what: "AGFL",
            ag,
            offset,
            field,
            found,
            expected,
        };
        let seqno = be32(raw, 4);
        if seqno != ag {
            return Err(field("agfl_seqno", seqno.to_string(), ag.to_string()));
        }
        if raw[8..24] != sb.metadata_uuid()[..] {
            return Err(field(
                "agfl_uuid",
                "another filesystem's".into(),
                "the superblock's".into(),
            ));
        }
        V5_HEADER
    } else {
        0
    };
    let size = ((raw.len() - header) / 4) as u32;
    let agf_field = |field, found: u32, expected: String| XfsError::HeaderField {
        what: "AGF",
        ag,
        offset: offset - 2 * u64::from(sb.sect_size),
        field,
        found: found.to_string(),
        expected,
    };
    if agf.flfirst >= size {
        return Err(agf_field(
            "agf_flfirst",
            agf.flfirst,
            format!("below the AGFL size {size}"),
        ));
    }
    if agf.fllast >= size {
        return Err(agf_field(
            "agf_fllast",
            agf.fllast,
            format!("below the AGFL size {size}"),
        ));
    }
    // The ring runs from flfirst to fllast inclusive, wrapping at size.
    let ring = if agf.flcount == 0 {
        0
    } else {
        (agf.fllast + size - agf.flfirst) % size + 1
    };
    if agf.flcount != ring {
        return Err(agf_field(
            "agf_flcount",
            agf.flcount,
            format!(
                "{ring} (the AGFL ring from slot {} to slot {} of {size})",
                agf.flfirst, agf.fllast
            ),
        ));
    }
    let first = sb.first_free_able();
    let mut blocks = Vec::with_capacity(agf.flcount as usize);
    for k in 0..agf.flcount {
        let index = (agf.flfirst + k) % size;
        let block = be32(raw, header + 4 * index as usize);
        if block < first || block >= agf.length {
            return Err(XfsError::AgflEntry {
                ag,
                offset,
                index,
                block,
            });
        }
        blocks.push(block);
    }
    Ok(blocks)
}
