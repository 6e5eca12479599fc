//! The master boot record (sector 0) and the extended boot records (EBRs)
//! of an extended partition.
//!
//! Both hold a table of four 16-byte entries at byte 446 and end with the
//! 55 AA signature; offsets and names follow the MBR layout as UEFI 2.10
//! §5.2.1 and the kernel's `block/partitions/msdos.c` read it. In an EBR,
//! the logical partition's start is relative to the EBR itself, the link
//! to the next EBR's relative to the extended partition's start.

use super::DiskError;
use crate::bytes::u32le;

/// Bytes of the MBR (and of an EBR) that hold the table; the rest of a
/// larger logical sector is not part of it.
pub const MBR_SIZE: usize = 512;
/// `UniqueMBRDiskSignature`: the disk identifier (Linux's PARTUUID prefix).
pub const MBR_DISK_SIGNATURE_OFFSET: usize = 440;
/// `PartitionRecord[0]`: the first of the four entries.
pub const MBR_TABLE_OFFSET: usize = 446;
/// Size of one partition record.
pub const MBR_ENTRY_SIZE: usize = 16;
/// Number of partition records.
pub const MBR_SLOTS: u8 = 4;
/// `Signature`: 0x55 0xAA.
pub const MBR_SIGNATURE_OFFSET: usize = 510;
/// The two signature bytes.
pub const MBR_SIGNATURE: [u8; 2] = [0x55, 0xAA];

/// In a partition record: `BootIndicator` (0x80 active, 0 not).
pub const ENTRY_STATUS: usize = 0;
/// In a partition record: `OSType`.
pub const ENTRY_TYPE: usize = 4;
/// In a partition record: `StartingLBA`.
pub const ENTRY_START_LBA: usize = 8;
/// In a partition record: `SizeInLBA`.
pub const ENTRY_SECTORS: usize = 12;

/// The type of a GPT protective (or hybrid MBR's GPT) entry.
pub const TYPE_GPT_PROTECTIVE: u8 = 0xEE;

/// Most logical partitions followed in an EBR chain (Linux's fdisk
/// refuses more; the kernel numbers only up to its minor limit).
pub const MAX_LOGICALS: u32 = 128;
/// Most EBRs followed, those describing no partition included.
pub const MAX_EBRS: u32 = 2 * MAX_LOGICALS;

/// One non-empty entry of an MBR or EBR table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MbrEntry {
    /// Its slot in the table, 0..=3.
    pub slot: u8,
    /// `BootIndicator`.
    pub status: u8,
    /// `OSType`.
    pub kind: u8,
    /// `StartingLBA` (relative to the EBR or the extended partition in an
    /// EBR).
    pub start_lba: u32,
    /// `SizeInLBA`.
    pub sectors: u32,
}

/// A parsed MBR (or EBR) sector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mbr {
    /// `UniqueMBRDiskSignature`.
    pub disk_signature: u32,
    /// The non-empty entries (type and size both non-zero), by slot.
    pub entries: Vec<MbrEntry>,
}

/// Parses an MBR or EBR sector: `None` when it is shorter than 512 bytes
/// or lacks the 55 AA signature.
pub fn parse(sector0: &[u8]) -> Option<Mbr> {
    if sector0.len() < MBR_SIZE
        || sector0[MBR_SIGNATURE_OFFSET..MBR_SIGNATURE_OFFSET + 2] != MBR_SIGNATURE
    {
        return None;
    }
    let entries = (0..MBR_SLOTS)
        .filter_map(|slot| {
            let e = &sector0[entry_offset(slot)..entry_offset(slot) + MBR_ENTRY_SIZE];
            let entry = MbrEntry {
                slot,
                status: e[ENTRY_STATUS],
                kind: e[ENTRY_TYPE],
                start_lba: u32le(e, ENTRY_START_LBA),
                sectors: u32le(e, ENTRY_SECTORS),
            };
            (entry.kind != 0 && entry.sectors != 0).then_some(entry)
        })
        .collect();
    Some(Mbr {
        disk_signature: u32le(sector0, MBR_DISK_SIGNATURE_OFFSET),
        entries,
    })
}

/// Byte offset of the record of `slot` (0..=3) in the sector.
fn entry_offset(slot: u8) -> usize {
    MBR_TABLE_OFFSET + usize::from(slot) * MBR_ENTRY_SIZE
}

/// Whether `kind` is an extended partition (DOS, W95 LBA, Linux).
pub fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

/// Whether `m` is a protective MBR: one entry, of type 0xEE.
pub fn is_protective(m: &Mbr) -> bool {
    m.entries.len() == 1 && m.entries[0].kind == TYPE_GPT_PROTECTIVE
}

/// The name fdisk gives an MBR partition type ("" when unknown).
pub fn type_name(kind: u8) -> &'static str {
    match kind {
        0x01 => "FAT12",
        0x04 => "FAT16 <32M",
        0x05 => "Extended",
        0x06 => "FAT16",
        0x07 => "HPFS/NTFS/exFAT",
        0x0B => "W95 FAT32",
        0x0C => "W95 FAT32 (LBA)",
        0x0E => "W95 FAT16 (LBA)",
        0x0F => "W95 Ext'd (LBA)",
        0x11 => "Hidden FAT12",
        0x12 => "Compaq diagnostics",
        0x14 => "Hidden FAT16 <32M",
        0x16 => "Hidden FAT16",
        0x17 => "Hidden HPFS/NTFS",
        0x1B => "Hidden W95 FAT32",
        0x1C => "Hidden W95 FAT32 (LBA)",
        0x1E => "Hidden W95 FAT16 (LBA)",
        0x27 => "Hidden NTFS WinRE",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0x8E => "Linux LVM",
        0xA5 => "FreeBSD",
        0xA6 => "OpenBSD",
        0xA8 => "Darwin UFS",
        0xA9 => "NetBSD",
        0xAF => "HFS / HFS+",
        0xDA => "Non-FS data",
        0xDE => "Dell Utility",
        0xEA => "Linux extended boot",
        0xEE => "GPT",
        0xEF => "EFI (FAT-12/16/32)",
        0xFB => "VMware VMFS",
        0xFD => "Linux raid autodetect",
        _ => "",
    }
}

/// A logical partition found in the EBR chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logical {
    /// Its number: 5 for the first, 6, ...
    pub number: u32,
    /// The EBR describing it.
    pub ebr_lba: u64,
    /// Its slot in that EBR.
    pub slot_in_ebr: u8,
    /// `OSType`.
    pub kind: u8,
    /// Its first sector, absolute.
    pub start_lba: u64,
    /// Its size in sectors.
    pub sectors: u64,
}

/// Follows the EBR chain of the extended partition at
/// `ext_start_lba..ext_start_lba + ext_sectors`, calling `read(lba)` for
/// each EBR sector (at least 512 bytes). In each EBR the first entry of a
/// non-extended type is the logical partition and the first of an
/// extended type the link to the next EBR (as Linux and fdisk read them);
/// an EBR without a partition (the chain's first may have none) is
/// skipped and the chain followed on. Refused: an EBR visited twice, an
/// EBR or a logical partition outside the extended partition, an EBR
/// without 55 AA, more than [`MAX_LOGICALS`] partitions or [`MAX_EBRS`]
/// EBRs. An extended partition of no sectors has no chain.
///
/// Returns the logical partitions and every EBR visited, in chain order.
pub fn read_ebr_chain(
    ext_start_lba: u64,
    ext_sectors: u64,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, DiskError>,
) -> Result<(Vec<Logical>, Vec<u64>), DiskError> {
    let mut logicals = Vec::new();
    let mut visited: Vec<u64> = Vec::new();
    if ext_sectors == 0 {
        return Ok((logicals, visited));
    }
    let first = ext_start_lba;
    let last = ext_start_lba.saturating_add(ext_sectors - 1);
    let mut ebr_lba = ext_start_lba;
    loop {
        if visited.contains(&ebr_lba) {
            return Err(DiskError::EbrLoop { lba: ebr_lba });
        }
        if visited.len() >= MAX_EBRS as usize {
            return Err(DiskError::EbrChainTooLong { lba: ebr_lba });
        }
        visited.push(ebr_lba);
        let sector = read(ebr_lba)?;
        let ebr = parse(&sector).ok_or(DiskError::EbrSignature { lba: ebr_lba })?;

        if let Some(e) = ebr.entries.iter().find(|e| !is_extended(e.kind)) {
            let start = ebr_lba.saturating_add(u64::from(e.start_lba));
            let end = start.saturating_add(u64::from(e.sectors) - 1);
            if start < first || end > last {
                return Err(DiskError::EbrOutside {
                    ebr_lba,
                    first,
                    last,
                });
            }
            if logicals.len() >= MAX_LOGICALS as usize {
                return Err(DiskError::TooManyLogicals { lba: ebr_lba });
            }
            logicals.push(Logical {
                number: 5 + logicals.len() as u32,
                ebr_lba,
                slot_in_ebr: e.slot,
                kind: e.kind,
                start_lba: start,
                sectors: u64::from(e.sectors),
            });
        }

        let Some(link) = ebr.entries.iter().find(|e| is_extended(e.kind)) else {
            break;
        };
        let next = ext_start_lba.saturating_add(u64::from(link.start_lba));
        if next > last {
            return Err(DiskError::EbrLinkOutside {
                ebr_lba,
                next_lba: next,
                first,
                last,
            });
        }
        ebr_lba = next;
    }
    Ok((logicals, visited))
}

/// Sets the size in sectors (`SizeInLBA`) of entry `slot` of an MBR or EBR
/// sector in place (to grow the last partition). A slot past 3 or a
/// sector shorter than 512 bytes is left alone.
pub fn set_entry_sectors(sector: &mut [u8], slot: u8, sectors: u32) {
    if slot >= MBR_SLOTS || sector.len() < MBR_SIZE {
        return;
    }
    let at = entry_offset(slot) + ENTRY_SECTORS;
    sector[at..at + 4].copy_from_slice(&sectors.to_le_bytes());
}

/// If `sector0` is a protective MBR (one 0xEE entry), sets that entry's
/// size to min(`total_sectors` - 1, 0xFFFFFFFF), as UEFI asks, and
/// returns true. A hybrid MBR (other entries besides the 0xEE one), or
/// anything else, is left unchanged and false returned.
pub fn patch_protective(sector0: &mut [u8], total_sectors: u64) -> bool {
    let Some(m) = parse(sector0) else {
        return false;
    };
    if !is_protective(&m) {
        return false;
    }
    let sectors = u32::try_from(total_sectors.saturating_sub(1)).unwrap_or(u32::MAX);
    set_entry_sectors(sector0, m.entries[0].slot, sectors);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sector with 55 AA and the given (slot, type, start, sectors).
    pub(crate) fn sector(entries: &[(u8, u8, u32, u32)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[MBR_SIGNATURE_OFFSET..].copy_from_slice(&MBR_SIGNATURE);
        for &(slot, kind, start, sectors) in entries {
            let at = entry_offset(slot);
            s[at + ENTRY_TYPE] = kind;
            s[at + ENTRY_START_LBA..at + ENTRY_START_LBA + 4].copy_from_slice(&start.to_le_bytes());
            s[at + ENTRY_SECTORS..at + ENTRY_SECTORS + 4].copy_from_slice(&sectors.to_le_bytes());
        }
        s
    }

    #[test]
    fn parses_entries_and_signature() {
        let mut s = sector(&[
            (0, 0x0C, 2048, 1000),
            (2, 0x83, 4096, 0),
            (3, 0x83, 8192, 10),
        ]);
        s[MBR_DISK_SIGNATURE_OFFSET..MBR_DISK_SIGNATURE_OFFSET + 4]
            .copy_from_slice(&0x5a8b3c1du32.to_le_bytes());
        s[MBR_TABLE_OFFSET] = 0x80;
        let m = parse(&s).unwrap();
        assert_eq!(m.disk_signature, 0x5a8b3c1d);
        assert_eq!(
            m.entries,
            vec![
                MbrEntry {
                    slot: 0,
                    status: 0x80,
                    kind: 0x0C,
                    start_lba: 2048,
                    sectors: 1000
                },
                MbrEntry {
                    slot: 3,
                    status: 0,
                    kind: 0x83,
                    start_lba: 8192,
                    sectors: 10
                },
            ]
        );
        assert!(!is_protective(&m));
        assert!(parse(&s[..511]).is_none());
        s[511] = 0;
        assert!(parse(&s).is_none());
    }

    #[test]
    fn protective_patch_and_hybrid() {
        let mut s = sector(&[(0, 0xEE, 1, 8191)]);
        assert!(is_protective(&parse(&s).unwrap()));
        assert!(patch_protective(&mut s, 20000));
        assert_eq!(parse(&s).unwrap().entries[0].sectors, 19999);
        assert!(patch_protective(&mut s, 1 << 40));
        assert_eq!(parse(&s).unwrap().entries[0].sectors, u32::MAX);
        assert!(patch_protective(&mut s, 0));
        // Size 0 empties the slot; it is no longer protective.
        assert!(!patch_protective(&mut s, 100));

        let mut h = sector(&[(0, 0xEE, 1, 8191), (1, 0x0C, 2048, 100)]);
        let before = h.clone();
        assert!(!patch_protective(&mut h, 20000));
        assert_eq!(h, before);
        let mut short = vec![0u8; 100];
        assert!(!patch_protective(&mut short, 20000));
        set_entry_sectors(&mut short, 0, 5);
        set_entry_sectors(&mut h, 9, 5);
        assert_eq!(h, before);
        set_entry_sectors(&mut h, 1, 5);
        assert_eq!(parse(&h).unwrap().entries[1].sectors, 5);
    }

    #[test]
    fn extended_kinds() {
        for k in [0x05, 0x0F, 0x85] {
            assert!(is_extended(k));
        }
        assert!(!is_extended(0x83));
        assert_eq!(type_name(0x0C), "W95 FAT32 (LBA)");
        assert_eq!(type_name(0x42), "");
    }

    /// A chain reader over a map of EBR sectors.
    fn reader(
        ebrs: Vec<(u64, Vec<u8>)>,
    ) -> impl FnMut(u64) -> Result<Vec<u8>, DiskError> + 'static {
        move |lba| {
            Ok(ebrs
                .iter()
                .find(|(l, _)| *l == lba)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| vec![0u8; 512]))
        }
    }

    #[test]
    fn follows_a_chain_skipping_an_empty_ebr() {
        // Extended partition 1000..=2999: the first EBR has no partition,
        // only a link; then two logicals, the second's EBR inside the
        // first's partition (util-linux #3925 style is not needed: after).
        let mut read = reader(vec![
            (1000, sector(&[(1, 0x05, 100, 900)])),
            (1100, sector(&[(0, 0x83, 2, 500), (1, 0x05, 700, 300)])),
            (1700, sector(&[(0, 0x82, 1, 299)])),
        ]);
        let (l, v) = read_ebr_chain(1000, 2000, &mut read).unwrap();
        assert_eq!(v, vec![1000, 1100, 1700]);
        assert_eq!(
            l,
            vec![
                Logical {
                    number: 5,
                    ebr_lba: 1100,
                    slot_in_ebr: 0,
                    kind: 0x83,
                    start_lba: 1102,
                    sectors: 500
                },
                Logical {
                    number: 6,
                    ebr_lba: 1700,
                    slot_in_ebr: 0,
                    kind: 0x82,
                    start_lba: 1701,
                    sectors: 299
                },
            ]
        );
        assert_eq!(read_ebr_chain(5, 0, &mut read).unwrap(), (vec![], vec![]));
    }

    fn chain_err(ebrs: Vec<(u64, Vec<u8>)>) -> String {
        read_ebr_chain(1000, 2000, &mut reader(ebrs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn chain_errors() {
        assert_eq!(
            chain_err(vec![
                (1000, sector(&[(0, 0x83, 1, 10), (1, 0x05, 100, 50)])),
                (1100, sector(&[(0, 0x83, 1, 10), (1, 0x05, 0, 50)])),
            ]),
            "the EBR chain of the extended partition loops back to sector 1000"
        );
        assert_eq!(
            chain_err(vec![(1000, sector(&[(0, 0x83, 1, 2000)]))]),
            "EBR at sector 1000 points to a logical partition outside the extended partition (sectors 1000..=2999)"
        );
        assert_eq!(
            chain_err(vec![(
                1000,
                sector(&[(0, 0x83, 1, 10), (1, 0x0F, 2000, 5)])
            )]),
            "EBR at sector 1000 links to a next EBR at sector 3000, outside the extended partition (sectors 1000..=2999)"
        );
        assert_eq!(
            chain_err(vec![(
                1000,
                sector(&[(0, 0x83, 1, 10), (1, 0x05, 100, 50)])
            )]),
            "EBR at sector 1100 has no 55 AA boot signature"
        );
        // 129 logicals, one sector each.
        let many: Vec<_> = (0..=MAX_LOGICALS as u64)
            .map(|i| {
                (
                    1000 + 2 * i,
                    sector(&[(0, 0x83, 1, 1), (1, 0x05, 2 * (i as u32 + 1), 2)]),
                )
            })
            .collect();
        assert_eq!(
            chain_err(many),
            "the extended partition holds more than 128 logical partitions (EBR at sector 1256)"
        );
        // 257 EBRs without a partition.
        let empty: Vec<_> = (0..=MAX_EBRS as u64)
            .map(|i| (1000 + i, sector(&[(1, 0x05, i as u32 + 1, 1)])))
            .collect();
        assert_eq!(
            chain_err(empty),
            "the EBR chain of the extended partition is longer than 256 EBRs (EBR at sector 1256)"
        );
        // A read error passes through.
        let mut failing = |lba: u64| -> Result<Vec<u8>, DiskError> {
            Err(DiskError::ReadSector {
                lba,
                source: std::io::Error::other("boom"),
            })
        };
        assert_eq!(
            read_ebr_chain(7, 10, &mut failing).unwrap_err().to_string(),
            "cannot read sector 7: boom"
        );
    }
}
