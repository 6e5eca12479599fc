//! XFS (v4 and v5): the allocation map from each allocation group's
//! free-space btrees.
//!
//! Used = every block of the data section except the free extents of each
//! AG's by-block btree (bnobt) and the blocks on its free list (AGFL).
//! The internal log is allocated, so it is copied. An external log or a
//! realtime section lives on another device and is refused.
//!
//! Checked before the map is trusted, each failure an [`XfsError`] naming
//! the structure and its byte offset: the superblock's geometry and, on
//! v5, the CRC32C of the superblock, every AGF, AGFL and free-space btree
//! block; each btree block's magic, level, own address, owner and UUID;
//! sibling chains (the left pointer must link back, so a chain cannot
//! loop); records inside the AG and in the tree's order. Counters that
//! disagree with the trees are inconsistencies (`--ignore-fs-check`):
//! agf_freeblks against both trees. The superblock's free count, a lazy
//! summary the kernel recomputes from the AGFs, is only a warning.
//!
//! All block arithmetic is 64-bit: AG `a` starts at byte
//! `a * agblocks * blocksize`, which passes 16 TiB on large volumes.

mod agf;
mod agfl;
mod btree;
mod error;
mod log;
mod superblock;

pub use error::{BtreeFault, XfsError};
pub use log::LogState;
pub use superblock::Superblock;

use std::fmt::Write as _;

use agf::Agf;
use btree::Tree;
use superblock::{SB_MAGIC, incompat, ro_compat};

use super::{Allocation, Filesystem, FsKind, Metadata, Unclean};
use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;

/// An XFS volume with its superblock checked and its log state read.
pub struct Xfs {
    sb: Superblock,
    /// First block of the internal log.
    log_block: u64,
    log: LogState,
    /// Survive unreadable AG headers and btree blocks (rescue mode).
    rescue: bool,
}

/// What the free-space structures of one AG hold.
#[derive(Default)]
struct AgCounts {
    freeblks: u64,
    flcount: u64,
    btreeblks: u64,
    extents: u64,
}

impl Xfs {
    /// Whether `src` starts with the XFS superblock magic. An unreadable
    /// first sector is not XFS to this module (it does not fall back to
    /// the AG 1 superblock), so the probes of filesystems with a backup
    /// boot sector (FAT32, NTFS) still run.
    pub fn probe(src: &dyn Source) -> Result<bool> {
        if src.size() < 512 {
            return Ok(false);
        }
        match src.read_vec(0, 4) {
            Ok(m) => Ok(u32::from_be_bytes([m[0], m[1], m[2], m[3]]) == SB_MAGIC),
            Err(Error::Read { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads and checks the superblock, refuses what cannot be copied,
    /// and reads the log's state.
    pub fn open(src: &dyn Source) -> Result<Self> {
        let head = src.read_vec(0, 512.min(src.size()) as usize)?;
        if head.len() < 512 {
            return Err(XfsError::BadMagic { found: 0 }.into());
        }
        let mut sb = Superblock::from_bytes(&head)?;
        let sector = src.read_vec(0, usize::from(sb.sect_size))?;
        sb.read_v5(&sector)?;
        sb.check_features()?;
        let Some(log_block) = sb.log_block() else {
            return Err(XfsError::Geometry {
                field: "sb_logstart",
                value: sb.logstart,
                offset: 48,
                why: "the internal log must lie inside the data section",
            }
            .into());
        };
        let fs_bytes = sb.dblocks.saturating_mul(u64::from(sb.block_size));
        if src.size() < fs_bytes {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: fs_bytes,
                actual: src.size(),
            });
        }
        let log = match log::state(src, &sb, log_block) {
            Ok(s) => s,
            Err(e @ Error::Read { .. }) => LogState::Dirty {
                reason: format!("the log cannot be read ({e})"),
            },
            Err(e) => return Err(e),
        };
        Ok(Xfs {
            sb,
            log_block,
            log,
            rescue: false,
        })
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The log's state.
    pub fn log_state(&self) -> &LogState {
        &self.log
    }

    /// Reads AG `ag`'s free-space structures and marks its free blocks in
    /// `map`; disagreements go to `inconsistencies` and `warnings`.
    fn read_ag(
        &self,
        src: &dyn Source,
        ag: u32,
        map: &mut AllocationMap,
        inconsistencies: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Result<AgCounts> {
        let sb = &self.sb;
        let ss = u64::from(sb.sect_size);
        let base = sb.ag_byte(ag, 0);
        let agf_at = base + ss;
        let agf = Agf::from_bytes(sb, ag, agf_at, &src.read_vec(agf_at, ss as usize)?)?;
        let agfl_at = base + 3 * ss;
        let agfl = agfl::free_list(sb, &agf, ag, agfl_at, &src.read_vec(agfl_at, ss as usize)?)?;
        let bs = u64::from(sb.block_size);
        let first_cluster = u64::from(ag) * u64::from(sb.agblocks);
        let bno = btree::walk(
            src,
            sb,
            ag,
            Tree::Bno,
            agf.bno_root,
            agf.bno_level,
            agf.length,
            |s, c| map.mark_bytes_free(sb.ag_byte(ag, s), u64::from(c) * bs),
        )?;
        let mut longest = 0u32;
        let cnt = btree::walk(
            src,
            sb,
            ag,
            Tree::Cnt,
            agf.cnt_root,
            agf.cnt_level,
            agf.length,
            |_, c| longest = c,
        )?;
        let mut twice = Vec::new();
        for &b in &agfl {
            let c = first_cluster + u64::from(b);
            if !map.is_used(c) {
                twice.push(b);
            }
            map.mark_bytes_free(sb.ag_byte(ag, b), bs);
        }
        if !twice.is_empty() {
            inconsistencies.push(format!(
                "AG {ag}: block{} {} on the AGFL {} also free in the bnobt",
                if twice.len() > 1 { "s" } else { "" },
                list(&twice),
                if twice.len() > 1 { "are" } else { "is" }
            ));
        }
        if bno.free != u64::from(agf.freeblks) {
            inconsistencies.push(format!(
                "AG {ag}: agf_freeblks is {}, the bnobt's free extents add up to {}",
                agf.freeblks, bno.free
            ));
        }
        if cnt.free != bno.free || cnt.extents != bno.extents {
            inconsistencies.push(format!(
                "AG {ag}: the cntbt holds {} free blocks in {} extents, the bnobt {} in {}",
                cnt.free, cnt.extents, bno.free, bno.extents
            ));
        }
        if longest != agf.longest && cnt.extents > 0 {
            warnings.push(format!(
                "AG {ag}: agf_longest is {}, the longest free extent is {longest} blocks",
                agf.longest
            ));
        }
        if sb.lazy_count() {
            let rmap = if sb.ro_compat & ro_compat::RMAPBT != 0 {
                u64::from(agf.rmap_blocks).saturating_sub(1)
            } else {
                0
            };
            let counted = bno.blocks - 1 + cnt.blocks - 1 + rmap;
            if counted != u64::from(agf.btreeblks) {
                warnings.push(format!(
                    "AG {ag}: agf_btreeblks is {}, the free-space and rmap btrees have {counted} blocks beyond their roots",
                    agf.btreeblks
                ));
            }
        }
        Ok(AgCounts {
            freeblks: u64::from(agf.freeblks),
            flcount: u64::from(agf.flcount),
            btreeblks: u64::from(agf.btreeblks),
            extents: bno.extents,
        })
    }

    fn features(&self) -> String {
        let sb = &self.sb;
        let mut f: Vec<&str> = Vec::new();
        if sb.has_crc() {
            f.push("crc");
            for (bit, name) in [
                (ro_compat::FINOBT, "finobt"),
                (ro_compat::RMAPBT, "rmapbt"),
                (ro_compat::REFLINK, "reflink"),
                (ro_compat::INOBTCNT, "inobtcount"),
            ] {
                if sb.ro_compat & bit != 0 {
                    f.push(name);
                }
            }
            for (bit, name) in [
                (incompat::FTYPE, "ftype"),
                (incompat::SPINODES, "sparse inodes"),
                (incompat::META_UUID, "meta_uuid"),
                (incompat::BIGTIME, "bigtime"),
                (incompat::NREXT64, "nrext64"),
                (incompat::EXCHRANGE, "exchange-range"),
                (incompat::PARENT, "parent"),
            ] {
                if sb.incompat & bit != 0 {
                    f.push(name);
                }
            }
        } else if sb.features2 & superblock::features2::FTYPE != 0 {
            f.push("ftype");
        }
        if sb.lazy_count() {
            f.push("lazy-count");
        }
        f.join(", ")
    }
}

/// "1, 2, 3" (at most 8 shown).
fn list(v: &[u32]) -> String {
    let mut s = String::new();
    for (i, x) in v.iter().take(8).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{x}");
    }
    if v.len() > 8 {
        let _ = write!(s, " and {} more", v.len() - 8);
    }
    s
}

fn uuid(u: &[u8; 16]) -> String {
    u.iter().enumerate().fold(String::new(), |mut s, (i, b)| {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Filesystem for Xfs {
    fn kind(&self) -> FsKind {
        FsKind::Xfs
    }

    fn cluster_size(&self) -> u32 {
        self.sb.block_size
    }

    fn device_size(&self) -> u64 {
        self.sb.dblocks * u64::from(self.sb.block_size)
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let sb = &self.sb;
        let (log_ag, log_agbno) = sb.log_position();
        let state = match self.unclean() {
            None => "clean".to_string(),
            Some(u) => u.problem,
        };
        vec![
            ("label", sb.label.clone()),
            ("uuid", uuid(&sb.uuid)),
            ("version", format!("v{}", sb.version())),
            ("block size", sb.block_size.to_string()),
            ("sector size", sb.sect_size.to_string()),
            ("inode size", sb.inode_size.to_string()),
            ("blocks", sb.dblocks.to_string()),
            (
                "allocation groups",
                format!(
                    "{} of {} blocks (last {})",
                    sb.agcount,
                    sb.agblocks,
                    sb.ag_length(sb.agcount - 1)
                ),
            ),
            (
                "log",
                format!(
                    "internal, {} blocks at block {} (AG {log_ag} block {log_agbno})",
                    sb.logblocks, self.log_block
                ),
            ),
            ("features", self.features()),
            ("free blocks", format!("{} (superblock)", sb.fdblocks)),
            ("inodes", format!("{} ({} free)", sb.icount, sb.ifree)),
            ("state", state),
        ]
    }

    fn unclean(&self) -> Option<Unclean> {
        if self.sb.inprogress != 0 {
            return Some(Unclean {
                problem: "the superblock says mkfs.xfs did not finish (sb_inprogress)".into(),
                hint: "make the filesystem again",
            });
        }
        match &self.log {
            LogState::Empty | LogState::Clean { .. } => None,
            LogState::Dirty { reason } => Some(Unclean {
                problem: format!(
                    "the log is dirty: {reason} (the filesystem is mounted or was not cleanly unmounted; blocks allocated since its last checkpoint are free in the on-disk map and would not be copied)"
                ),
                hint: "mount it once and unmount it to replay the log (xfs_repair -L would zero the log and lose the changes in it)",
            }),
        }
    }

    fn fsck_hint(&self) -> &'static str {
        "xfs_repair"
    }

    fn metadata(&self, _src: &dyn Source) -> Result<Metadata> {
        Err(Error::Usage(
            "--metadata is not supported for xfs volumes (it would need every inode's extent tree); use xfs_metadump".into(),
        ))
    }

    fn set_rescue(&mut self, on: bool) {
        self.rescue = on;
    }

    fn allocation(&self, src: &dyn Source) -> Result<Allocation> {
        let sb = &self.sb;
        let mut map = AllocationMap::new(sb.block_size, self.device_size());
        map.mark_used(0, sb.dblocks);
        let mut inconsistencies = Vec::new();
        let mut warnings = Vec::new();
        let mut total = AgCounts::default();
        let mut skipped = 0u32;
        for ag in 0..sb.agcount {
            match self.read_ag(src, ag, &mut map, &mut inconsistencies, &mut warnings) {
                Ok(c) => {
                    total.freeblks += c.freeblks;
                    total.flcount += c.flcount;
                    total.btreeblks += c.btreeblks;
                    total.extents += c.extents;
                }
                Err(e @ Error::Read { .. }) if self.rescue => {
                    let first = u64::from(ag) * u64::from(sb.agblocks);
                    let n = u64::from(sb.ag_length(ag));
                    map.mark_used(first, n);
                    skipped += 1;
                    warnings.push(format!(
                        "AG {ag}'s free-space metadata is unreadable ({e}): all {n} of its blocks are copied"
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        // sb_fdblocks counts the free extents, the AGFL blocks and the
        // free-space btree blocks beyond the roots (xfs_initialize_perag_data,
        // xfs_repair's phase 2). With lazy counters the kernel does not keep
        // it current on disk while mounted and recomputes it from the AGFs
        // after a crash; xfs_repair rewrites it. The map comes from the
        // btrees, so a wrong summary does not put the copy at risk: a
        // warning, and only when the log is clean (a dirty log may hold the
        // newer counts).
        let summed = total.freeblks + total.flcount + total.btreeblks;
        if skipped == 0 && self.unclean().is_none() && summed != sb.fdblocks {
            warnings.push(format!(
                "the superblock says {} blocks are free, the AGFs say {summed} (free extents + AGFL + btree blocks; a summary xfs_repair recomputes)",
                sb.fdblocks
            ));
        }
        let details = vec![
            (
                "free extents",
                format!(
                    "{} blocks in {} extents (bnobt)",
                    total.freeblks, total.extents
                ),
            ),
            ("AGFL blocks", total.flcount.to_string()),
            ("free-space btree blocks", total.btreeblks.to_string()),
        ];
        Ok(Allocation {
            map,
            inconsistencies,
            warnings,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::agf::Agf;
    use super::*;
    use crate::source::MemSource;

    /// A v4 superblock: `agcount` AGs of `agblocks` blocks of `bs` bytes,
    /// a log of `logblocks` blocks at AG 0 block 8.
    fn sb_bytes(bs: u32, agblocks: u32, agcount: u32, logblocks: u32) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..4].copy_from_slice(&SB_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&bs.to_be_bytes());
        let dblocks = u64::from(agblocks) * u64::from(agcount);
        b[8..16].copy_from_slice(&dblocks.to_be_bytes());
        b[48..56].copy_from_slice(&8u64.to_be_bytes());
        b[84..88].copy_from_slice(&agblocks.to_be_bytes());
        b[88..92].copy_from_slice(&agcount.to_be_bytes());
        b[96..100].copy_from_slice(&logblocks.to_be_bytes());
        b[100..102].copy_from_slice(&0xb4a4u16.to_be_bytes());
        b[102..104].copy_from_slice(&512u16.to_be_bytes());
        b[120] = bs.trailing_zeros() as u8;
        b[124] = agblocks.next_power_of_two().trailing_zeros() as u8;
        b
    }

    #[test]
    fn ags_past_16_tib_use_64_bit_offsets() {
        // 64 KiB blocks, 1 TiB AGs (2^24 blocks), 20 AGs: 20 TiB.
        let sb = Superblock::from_bytes(&sb_bytes(65536, 1 << 24, 20, 1024)).unwrap();
        assert_eq!(sb.ag_byte(17, 5), (17u64 << 40) + 5 * 65536);
        assert_eq!(sb.ag_length(19), 1 << 24);
        assert_eq!(sb.dblocks * u64::from(sb.block_size), 20u64 << 40);
        assert_eq!(sb.log_block(), Some(8));
    }

    #[test]
    fn bad_geometry_is_refused() {
        let mut b = sb_bytes(4096, 1000, 4, 64);
        b[124] = 11; // agblklog: 10 is log2(1000) rounded up
        assert_eq!(
            Superblock::from_bytes(&b).unwrap_err().to_string(),
            "xfs: invalid superblock: sb_agblklog 11 at byte 124 (log2 of sb_agblocks rounded up)"
        );
        // sb_blocklog 200 (found by fuzzing: a shift overflowed).
        let mut b = sb_bytes(4096, 1000, 4, 64);
        b[120] = 200;
        assert!(matches!(
            Superblock::from_bytes(&b),
            Err(XfsError::Geometry {
                field: "sb_blocksize",
                ..
            })
        ));
        let mut b = sb_bytes(4096, 1000, 4, 64);
        b[8..16].copy_from_slice(&5000u64.to_be_bytes());
        assert!(matches!(
            Superblock::from_bytes(&b),
            Err(XfsError::Geometry {
                field: "sb_dblocks",
                ..
            })
        ));
    }

    fn agf(flfirst: u32, fllast: u32, flcount: u32) -> Agf {
        Agf {
            length: 1000,
            bno_root: 1,
            cnt_root: 2,
            bno_level: 1,
            cnt_level: 1,
            flfirst,
            fllast,
            flcount,
            freeblks: 0,
            longest: 0,
            btreeblks: 0,
            rmap_blocks: 0,
        }
    }

    #[test]
    fn agfl_ring_wraps() {
        let sb = Superblock::from_bytes(&sb_bytes(4096, 1000, 4, 64)).unwrap();
        // v4: 128 slots of 4 bytes in a 512-byte sector.
        let mut raw = vec![0u8; 512];
        for (slot, block) in [(126usize, 10u32), (127, 11), (0, 12), (1, 13)] {
            raw[slot * 4..slot * 4 + 4].copy_from_slice(&block.to_be_bytes());
        }
        assert_eq!(
            agfl::free_list(&sb, &agf(126, 1, 4), 0, 1536, &raw).unwrap(),
            vec![10, 11, 12, 13]
        );
        assert_eq!(
            agfl::free_list(&sb, &agf(126, 1, 3), 0, 1536, &raw)
                .unwrap_err()
                .to_string(),
            "xfs: AGF of AG 0 at byte 512: agf_flcount is 3, expected 4 (the AGFL ring from slot 126 to slot 1 of 128)"
        );
        raw[4..8].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(
            agfl::free_list(&sb, &agf(126, 1, 4), 0, 1536, &raw).unwrap_err(),
            XfsError::AgflEntry {
                ag: 0,
                offset: 1536,
                index: 1,
                block: 5000
            }
        );
    }

    /// A volume whose log (8 blocks of 4 KiB = 64 sectors at block 8)
    /// holds one record at sector `at`: `logops` operations, the first
    /// with `flags`, cycle 1; later sectors of cycle `rest`.
    fn log_volume(at: usize, logops: u32, flags: u8, rest: u32) -> (Superblock, MemSource) {
        let bytes = sb_bytes(4096, 1000, 4, 8);
        let sb = Superblock::from_bytes(&bytes).unwrap();
        let mut vol = vec![0u8; 4000 * 4096];
        vol[..512].copy_from_slice(&bytes);
        let log = 8 * 4096;
        for s in 0..64 {
            let c = if s <= at + 1 { 1u32 } else { rest };
            vol[log + s * 512..log + s * 512 + 4].copy_from_slice(&c.to_be_bytes());
        }
        let h = log + at * 512;
        vol[h..h + 4].copy_from_slice(&0xFEED_BABEu32.to_be_bytes());
        vol[h + 4..h + 8].copy_from_slice(&1u32.to_be_bytes());
        vol[h + 8..h + 12].copy_from_slice(&2u32.to_be_bytes());
        vol[h + 12..h + 16].copy_from_slice(&512u32.to_be_bytes());
        vol[h + 40..h + 44].copy_from_slice(&logops.to_be_bytes());
        vol[h + 320..h + 324].copy_from_slice(&32768u32.to_be_bytes());
        vol[h + 512 + 9] = flags;
        (sb, MemSource::new(vol, "log"))
    }

    #[test]
    fn log_head_and_unmount_record() {
        let (sb, src) = log_volume(0, 1, 0x20, 0);
        assert_eq!(
            log::state(&src, &sb, 8).unwrap(),
            LogState::Clean { head: 2 }
        );
        let (sb, src) = log_volume(4, 3, 0x20, 0);
        assert_eq!(
            log::state(&src, &sb, 8).unwrap(),
            LogState::Dirty {
                reason: "the last log record (block 4 of the log) is not an unmount record".into()
            }
        );
        let (sb, src) = log_volume(0, 1, 0x02, 0);
        assert!(matches!(
            log::state(&src, &sb, 8).unwrap(),
            LogState::Dirty { .. }
        ));
        // Every sector of cycle 1: the head is at the wrap point, and the
        // last record (sectors 62 and 63) ends there.
        let (sb, src) = log_volume(62, 1, 0x20, 1);
        assert_eq!(
            log::state(&src, &sb, 8).unwrap(),
            LogState::Clean { head: 0 }
        );
        let zero = vec![0u8; 4000 * 4096];
        let src = MemSource::new(zero, "zeroed");
        assert_eq!(log::state(&src, &sb, 8).unwrap(), LogState::Empty);
    }

    /// A sparse source: stored pieces on zeros.
    struct Sparse {
        size: u64,
        pieces: std::collections::BTreeMap<u64, Vec<u8>>,
    }

    impl Source for Sparse {
        fn size(&self) -> u64 {
            self.size
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            let end = offset + buf.len() as u64;
            assert!(end <= self.size);
            buf.fill(0);
            for (&at, p) in self.pieces.range(..end) {
                let (from, to) = (at.max(offset), (at + p.len() as u64).min(end));
                if from < to {
                    buf[(from - offset) as usize..(to - offset) as usize]
                        .copy_from_slice(&p[(from - at) as usize..(to - at) as usize]);
                }
            }
            Ok(())
        }
        fn name(&self) -> &str {
            "sparse"
        }
    }

    /// 17 AGs of 1 TiB (64 KiB blocks): AGs 16 starts at 16 TiB. Each AG
    /// has one free extent (blocks 100 to the end) and one AGFL block (3).
    #[test]
    fn a_17_tib_volume_maps_every_ag() {
        const BS: u64 = 65536;
        const AGB: u32 = 1 << 24;
        let mut pieces = std::collections::BTreeMap::new();
        let free = AGB - 100;
        let mut sb = sb_bytes(BS as u32, AGB, 17, 16);
        sb[144..152].copy_from_slice(&(17 * u64::from(free + 1)).to_be_bytes());
        pieces.insert(0, sb);
        let be = |v: u32| v.to_be_bytes();
        for ag in 0..17u32 {
            let base = u64::from(ag) * u64::from(AGB) * BS;
            let mut agf = vec![0u8; 512];
            for (o, v) in [
                (0, agf::AGF_MAGIC),
                (4, 1),
                (8, ag),
                (12, AGB),
                (16, 1),
                (20, 2),
                (28, 1),
                (32, 1),
                (40, 0),
                (44, 0),
                (48, 1),
                (52, free),
                (56, free),
            ] {
                agf[o..o + 4].copy_from_slice(&be(v));
            }
            pieces.insert(base + 512, agf);
            let mut agfl = vec![0u8; 512];
            agfl[..4].copy_from_slice(&be(3));
            pieces.insert(base + 1536, agfl);
            for (block, magic) in [(1u64, 0x4142_5442u32), (2, 0x4142_5443)] {
                let mut b = vec![0u8; 24];
                b[..4].copy_from_slice(&be(magic));
                b[6..8].copy_from_slice(&1u16.to_be_bytes());
                b[8..16].fill(0xff);
                b[16..20].copy_from_slice(&be(100));
                b[20..24].copy_from_slice(&be(free));
                pieces.insert(base + block * BS, b);
            }
        }
        let src = Sparse {
            size: 17 * u64::from(AGB) * BS,
            pieces,
        };
        let xfs = Xfs::open(&src).unwrap();
        assert_eq!(xfs.log_state(), &LogState::Empty);
        assert_eq!(xfs.device_size(), 17u64 << 40);
        let a = xfs.allocation(&src).unwrap();
        assert!(a.inconsistencies.is_empty(), "{:?}", a.inconsistencies);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        assert_eq!(a.map.used_clusters(), 17 * 99);
        let ag16 = 16 * u64::from(AGB);
        assert!(a.map.is_used(ag16 + 99) && a.map.is_used(ag16 + 2));
        assert!(!a.map.is_used(ag16 + 3) && !a.map.is_used(ag16 + 100));
        assert!(!a.map.is_used(17 * u64::from(AGB) - 1));
    }
}
