//! The multiple-mount-protection block (MMP feature), checked as the kernel
//! checks it before a read-write mount.

use super::ExtError;
use super::checksum::crc32c;
use super::superblock::{SUPERBLOCK_OFFSET, Superblock, incompat, ro_compat};
use crate::bytes::u32le;
use crate::error::Result;
use crate::source::Source;

/// Byte offset of `s_mmp_block` in the superblock.
pub(super) const S_MMP_BLOCK: u64 = 0x168;
/// `mmp_magic`.
pub(super) const MMP_MAGIC: u32 = 0x004D_4D50;
/// `mmp_seq` of a filesystem no node has mounted.
pub(super) const MMP_SEQ_CLEAN: u32 = 0xFF4D_4D50;
/// `mmp_seq` while e2fsck runs.
pub(super) const MMP_SEQ_FSCK: u32 = 0xE24D_4D50;
/// Offset of `mmp_checksum` in the MMP block (what it covers).
pub(super) const MMP_CHECKSUM: usize = 1020;

/// Validates the MMP block as the kernel does before a read-write mount
/// (`ext4_multi_mount_protect`, `read_mmp_block`) and returns its
/// `mmp_seq`, or `None` without the MMP feature.
pub(super) fn read_mmp(src: &dyn Source, sb: &Superblock) -> Result<Option<u32>> {
    if !sb.has_incompat(incompat::MMP) {
        return Ok(None);
    }
    let block = sb.mmp_block;
    if block < u64::from(sb.first_data_block) || block >= sb.blocks_count {
        return Err(ExtError::MmpBlockRange {
            offset: SUPERBLOCK_OFFSET + S_MMP_BLOCK,
            block,
            first_data_block: sb.first_data_block,
            blocks_count: sb.blocks_count,
        }
        .into());
    }
    let at = block * u64::from(sb.block_size);
    // The MMP structure is 1024 bytes, never more than a block.
    let b = src.read_vec(at, 1024)?;
    let magic = u32le(&b, 0);
    if magic != MMP_MAGIC {
        return Err(ExtError::MmpMagic {
            offset: at,
            found: magic,
        }
        .into());
    }
    if sb.has_ro_compat(ro_compat::METADATA_CSUM) {
        let stored = u32le(&b, MMP_CHECKSUM);
        let computed = crc32c(sb.csum_seed, &b[..MMP_CHECKSUM]);
        if stored != computed {
            return Err(ExtError::MmpChecksum {
                offset: at + MMP_CHECKSUM as u64,
                stored,
                computed,
            }
            .into());
        }
    }
    Ok(Some(u32le(&b, 4)))
}
