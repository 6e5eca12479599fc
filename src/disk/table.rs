//! A disk's partition table, whatever its kind: an MBR with its EBR
//! chain, a GPT (with its protective MBR), or a hybrid of both; the
//! partitions in it, and the sectors the table itself occupies.
//!
//! The rules of which table counts are the kernel's: a GPT is only read
//! when sector 0 has an 0xEE entry (or no MBR at all); an MBR with
//! partitions and no 0xEE entry is an MBR disk, whatever GPT leftovers
//! follow it. Unlike the kernel, which skips what it cannot use, a table
//! with overlapping partitions or partitions past the disk is an error:
//! a copy of it would not be a copy of what the user sees.

use std::io;

use super::DiskError;
use super::error::GptHeaderProblem;
use super::gpt::{self, GptEntry, GptHeader};
use super::mbr::{self, Mbr};

/// Smallest logical sector size handled.
pub const MIN_SECTOR_SIZE: u32 = 512;
/// Largest logical sector size handled.
pub const MAX_SECTOR_SIZE: u32 = 65536;
/// Sector sizes tried, in order, when the caller does not know it (a
/// disk image file): 512, then 4096 (4Kn).
pub const PROBED_SECTOR_SIZES: [u32; 2] = [512, 4096];

/// Checks a logical sector size: a power of two from 512 to 65536.
pub fn check_sector_size(size: u32) -> Result<(), DiskError> {
    if size.is_power_of_two() && (MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(DiskError::SectorSize { size })
    }
}

/// The kind of partition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// MBR (DOS) partitions, with logical ones in an extended partition.
    Mbr,
    /// GPT behind a protective MBR.
    Gpt,
    /// A valid GPT, and sector 0 has other entries besides the 0xEE one.
    Hybrid,
}

impl TableKind {
    /// "mbr", "gpt" or "hybrid".
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Mbr => "mbr",
            TableKind::Gpt => "gpt",
            TableKind::Hybrid => "hybrid",
        }
    }
}

/// Where a partition's entry lives in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableSlot {
    /// Slot 0..=3 of the MBR in sector 0.
    Mbr {
        /// The slot.
        slot: u8,
    },
    /// Slot 0..=3 of the EBR at `lba`.
    Ebr {
        /// The EBR's sector.
        lba: u64,
        /// The slot.
        slot: u8,
    },
    /// Entry `index` (0-based: the partition number less one) of the GPT
    /// entry array.
    Gpt {
        /// The 0-based index.
        index: u32,
    },
}

/// One partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Its number as Linux names it: 1-4 primary, 5 on logical; the GPT
    /// entry's 1-based index.
    pub number: u32,
    /// Its first byte on the disk.
    pub start: u64,
    /// Its length in bytes.
    pub len: u64,
    /// "0x0c" for MBR, the type GUID for GPT.
    pub type_id: String,
    /// The type's name ("" when unknown).
    pub type_name: &'static str,
    /// The GPT partition name; "" for MBR.
    pub name: String,
    /// The GPT partition GUID.
    pub guid: Option<String>,
    /// Whether it is an MBR logical partition.
    pub logical: bool,
    /// Where its entry lives.
    pub table_slot: TableSlot,
}

/// The GPT of a GPT or hybrid disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptInfo {
    /// The header the table was read from: 1, or the backup's sector.
    pub header_lba: u64,
    /// Where the backup header is (or belongs, when it is damaged).
    pub backup_lba: u64,
    /// `PartitionEntryLBA` of the primary header (as in
    /// [`GptInfo::primary_header`]).
    pub entries_lba: u64,
    /// Where the backup entry array is (or belongs).
    pub backup_entries_lba: u64,
    /// Sectors of one entry array.
    pub array_sectors: u64,
    /// `FirstUsableLBA`.
    pub first_usable_lba: u64,
    /// `LastUsableLBA`.
    pub last_usable_lba: u64,
    /// Whether the primary was damaged and the backup used.
    pub from_backup: bool,
    /// One whole sector: the primary header as it should be (when the
    /// primary is damaged, rebuilt from the backup with `MyLBA` 1,
    /// `AlternateLBA` the backup's sector, `PartitionEntryLBA` 2 and its
    /// CRC recomputed).
    pub primary_header: Vec<u8>,
    /// The entry array (array sectors × sector size bytes).
    pub entries: Vec<u8>,
}

/// A disk's partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// MBR, GPT or hybrid.
    pub kind: TableKind,
    /// The logical sector size the table was read with.
    pub sector_size: u32,
    /// Size of the disk in bytes.
    pub disk_size: u64,
    /// "0x5a8b3c1d" (the MBR disk signature) or the disk GUID.
    pub disk_id: String,
    /// The partitions, by start; the MBR extended container is not one.
    pub partitions: Vec<Partition>,
    /// The MBR extended partition: (slot, first sector, sectors).
    pub extended: Option<(u8, u64, u64)>,
    /// The table's own sectors as byte (offset, length) ranges: sector 0,
    /// every EBR, the primary GPT header and array, the backup array and
    /// header; clamped to the disk, sorted, overlapping and touching
    /// ranges merged.
    pub regions: Vec<(u64, u64)>,
    /// The GPT, on a GPT or hybrid disk.
    pub gpt: Option<GptInfo>,
    /// Sector 0 (one logical sector).
    pub sector0: Vec<u8>,
    /// What was odd but usable, for the user.
    pub warnings: Vec<String>,
}

/// The reader `read_table` is given: `read(offset, len)`.
type Reader<'a> = dyn FnMut(u64, usize) -> Result<Vec<u8>, DiskError> + 'a;

/// Reads the partition table of a disk of `disk_size` bytes through
/// `read(offset, len)`.
///
/// `sector_size`: the logical sector size when known (a block device's,
/// or the user's); `None` for an image file: the GPT header is looked for
/// at byte 512, then 4096 (4Kn), then a backup header at the last sector
/// for each size; an MBR alone is read with 512-byte sectors.
///
/// `Ok(None)`: no table, when sector 0 has no 55 AA signature (or four
/// empty slots) and no GPT header is found. Whether sector 0 is rather a
/// filesystem's boot sector (a FAT or NTFS "superfloppy") is for the
/// caller to decide first.
///
/// Refused: partitions overlapping or ending past the disk; GPT entries
/// outside the usable sectors; a protective MBR whose GPT copies are both
/// missing or damaged; EBR chain faults (see [`mbr::read_ebr_chain`]). A
/// damaged primary GPT with a good backup gives the backup's table and a
/// warning.
pub fn read_table(
    read: &mut Reader<'_>,
    disk_size: u64,
    sector_size: Option<u32>,
) -> Result<Option<Table>, DiskError> {
    if let Some(size) = sector_size {
        check_sector_size(size)?;
    }
    let sizes: &[u32] = match &sector_size {
        Some(size) => std::slice::from_ref(size),
        None => &PROBED_SECTOR_SIZES,
    };
    let first_size = sizes[0];
    if disk_size < u64::from(first_size) {
        return Ok(None);
    }
    let head = read_exact(read, 0, mbr::MBR_SIZE, 0)?;
    let mbr = mbr::parse(&head);
    let has_protective = mbr
        .as_ref()
        .is_some_and(|m| m.entries.iter().any(|e| e.kind == mbr::TYPE_GPT_PROTECTIVE));
    let has_entries = mbr.as_ref().is_some_and(|m| !m.entries.is_empty());
    let mut warnings = Vec::new();

    if has_entries && !has_protective {
        if let Some(size) = probe_primary(read, disk_size, sizes) {
            warnings.push(format!(
                "sector 0 is an MBR without a GPT protective entry; the GPT header at byte {size} is ignored"
            ));
        }
        let ss = first_size;
        let m = mbr.unwrap_or(Mbr {
            disk_signature: 0,
            entries: Vec::new(),
        });
        return read_mbr(read, disk_size, ss, &m, warnings).map(Some);
    }

    let found =
        probe_primary(read, disk_size, sizes).or_else(|| probe_backup(read, disk_size, sizes));
    let ss = match found {
        Some(size) => size,
        // A protective entry promises a GPT: its absence is an error,
        // which read_gpt reports with what it finds at both places.
        None if has_protective => first_size,
        None => return Ok(None),
    };
    if !has_protective {
        warnings.push("sector 0 holds no protective MBR; the GPT is read without it".to_string());
    }
    let hybrid = has_entries && !mbr.as_ref().is_some_and(mbr::is_protective);
    read_gpt(read, disk_size, ss, hybrid, warnings).map(Some)
}

/// Reads exactly `len` bytes at `offset` (sector `lba`, for errors).
fn read_exact(
    read: &mut Reader<'_>,
    offset: u64,
    len: usize,
    lba: u64,
) -> Result<Vec<u8>, DiskError> {
    let mut v = read(offset, len)?;
    if v.len() < len {
        return Err(DiskError::ReadSector {
            lba,
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read: {} of {len} bytes", v.len()),
            ),
        });
    }
    v.truncate(len);
    Ok(v)
}

/// Reads sector `lba` of `ss` bytes of a disk of `disk_sectors` sectors.
fn read_sector(
    read: &mut Reader<'_>,
    lba: u64,
    ss: u32,
    disk_sectors: u64,
) -> Result<Vec<u8>, DiskError> {
    read_sectors(read, lba, 1, ss, disk_sectors)
}

/// Reads `count` sectors from `lba`, refusing any past the disk.
fn read_sectors(
    read: &mut Reader<'_>,
    lba: u64,
    count: u64,
    ss: u32,
    disk_sectors: u64,
) -> Result<Vec<u8>, DiskError> {
    let past = |lba| DiskError::ReadSector {
        lba,
        source: io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the disk"),
    };
    let end = lba.checked_add(count).ok_or_else(|| past(lba))?;
    if end > disk_sectors {
        return Err(past(lba.max(disk_sectors)));
    }
    let ss = u64::from(ss);
    let len = usize::try_from(count * ss).map_err(|_| past(lba))?;
    read_exact(read, lba * ss, len, lba)
}

/// Whether the 8 bytes at `offset` are the GPT signature (a read error
/// counts as no).
fn signature_at(read: &mut Reader<'_>, disk_size: u64, offset: u64) -> bool {
    offset.saturating_add(8) <= disk_size
        && read(offset, 8).is_ok_and(|b| b.len() >= 8 && b[..8] == gpt::GPT_SIGNATURE[..])
}

/// The first sector size whose LBA 1 starts with "EFI PART".
fn probe_primary(read: &mut Reader<'_>, disk_size: u64, sizes: &[u32]) -> Option<u32> {
    sizes
        .iter()
        .copied()
        .find(|&ss| u64::from(ss) * 2 <= disk_size && signature_at(read, disk_size, u64::from(ss)))
}

/// The first sector size whose last sector starts with "EFI PART".
fn probe_backup(read: &mut Reader<'_>, disk_size: u64, sizes: &[u32]) -> Option<u32> {
    sizes.iter().copied().find(|&ss| {
        let sectors = disk_size / u64::from(ss);
        sectors >= 3 && signature_at(read, disk_size, (sectors - 1) * u64::from(ss))
    })
}

/// Checks partition ranges (number, first, last) for overlaps.
fn check_overlaps(ranges: &mut [(u32, u64, u64)]) -> Result<(), DiskError> {
    ranges.sort_by_key(|&(number, first, _)| (first, number));
    let mut reach: Option<(u32, u64)> = None;
    for &(number, first, last) in ranges.iter() {
        if let Some((prev, end)) = reach
            && first <= end
        {
            return Err(DiskError::Overlap {
                first: prev,
                second: number,
                second_start: first,
                first_end: end,
            });
        }
        if reach.is_none_or(|(_, end)| last > end) {
            reach = Some((number, last));
        }
    }
    Ok(())
}

/// Sorts byte ranges, drops empty ones, clamps them to the disk and merges
/// those that overlap or touch.
fn merge_regions(mut r: Vec<(u64, u64)>, disk_size: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    r.retain(|&(o, l)| l > 0 && o < disk_size);
    r.sort();
    for (o, l) in r {
        let end = o.saturating_add(l).min(disk_size);
        match out.last_mut() {
            Some((po, pl)) if o <= *po + *pl => *pl = (*pl).max(end - *po),
            _ => out.push((o, end - o)),
        }
    }
    out
}

/// The MBR (DOS) table of sector 0 `m`, with `ss`-byte sectors.
fn read_mbr(
    read: &mut Reader<'_>,
    disk_size: u64,
    ss: u32,
    m: &Mbr,
    warnings: Vec<String>,
) -> Result<Table, DiskError> {
    let disk_sectors = disk_size / u64::from(ss);
    let bytes = u64::from(ss);
    let sector0 = read_sector(read, 0, ss, disk_sectors)?;
    let mut partitions = Vec::new();
    let mut extended: Option<(u8, u64, u64)> = None;
    let mut primaries = Vec::new();
    for e in &m.entries {
        let number = u32::from(e.slot) + 1;
        let first = u64::from(e.start_lba);
        let sectors = u64::from(e.sectors);
        let last = first + sectors - 1;
        if last >= disk_sectors {
            return Err(DiskError::PastDiskEnd {
                number,
                first,
                last,
                disk_sectors,
                sector_size: ss,
            });
        }
        primaries.push((number, first, last));
        if mbr::is_extended(e.kind) {
            if let Some((slot, _, _)) = extended {
                return Err(DiskError::TwoExtended {
                    first: u32::from(slot) + 1,
                    second: number,
                });
            }
            extended = Some((e.slot, first, sectors));
            continue;
        }
        partitions.push(Partition {
            number,
            start: first * bytes,
            len: sectors * bytes,
            type_id: format!("0x{:02x}", e.kind),
            type_name: mbr::type_name(e.kind),
            name: String::new(),
            guid: None,
            logical: false,
            table_slot: TableSlot::Mbr { slot: e.slot },
        });
    }
    // Primary partitions against each other and the extended container.
    check_overlaps(&mut primaries)?;

    let mut regions = vec![(0, bytes)];
    if let Some((slot, first, sectors)) = extended {
        let mut read_ebr = |lba: u64| read_sector(read, lba, ss, disk_sectors);
        let (logicals, ebrs) = mbr::read_ebr_chain(first, sectors, &mut read_ebr)?;
        regions.extend(ebrs.iter().map(|&lba| (lba * bytes, bytes)));
        // Logical partitions against each other and the primaries.
        let mut ranges: Vec<(u32, u64, u64)> = primaries
            .iter()
            .copied()
            .filter(|&(number, _, _)| number != u32::from(slot) + 1)
            .collect();
        for l in &logicals {
            let last = l.start_lba + l.sectors - 1;
            if last >= disk_sectors {
                return Err(DiskError::PastDiskEnd {
                    number: l.number,
                    first: l.start_lba,
                    last,
                    disk_sectors,
                    sector_size: ss,
                });
            }
            ranges.push((l.number, l.start_lba, last));
            partitions.push(Partition {
                number: l.number,
                start: l.start_lba * bytes,
                len: l.sectors * bytes,
                type_id: format!("0x{:02x}", l.kind),
                type_name: mbr::type_name(l.kind),
                name: String::new(),
                guid: None,
                logical: true,
                table_slot: TableSlot::Ebr {
                    lba: l.ebr_lba,
                    slot: l.slot_in_ebr,
                },
            });
        }
        check_overlaps(&mut ranges)?;
    }
    partitions.sort_by_key(|p| (p.start, p.number));
    Ok(Table {
        kind: TableKind::Mbr,
        sector_size: ss,
        disk_size,
        disk_id: format!("0x{:08x}", m.disk_signature),
        partitions,
        extended,
        regions: merge_regions(regions, disk_size),
        gpt: None,
        sector0,
        warnings,
    })
}

/// One copy of the GPT, read and checked.
struct GptCopy {
    /// The header's sector.
    sector: Vec<u8>,
    /// The header.
    h: GptHeader,
    /// Its entry array, whole sectors.
    array: Vec<u8>,
    /// The used entries, or what is wrong with one of them (a fault of
    /// the table, not damage to this copy: its CRC matched).
    entries: Result<Vec<GptEntry>, DiskError>,
}

/// Reads and checks the GPT copy whose header is at `lba`.
fn read_copy(
    read: &mut Reader<'_>,
    lba: u64,
    ss: u32,
    disk_sectors: u64,
) -> Result<GptCopy, DiskError> {
    let sector = read_sector(read, lba, ss, disk_sectors)?;
    let h = gpt::parse_header(&sector, lba)?;
    let n = gpt::array_sectors(&h, ss);
    gpt::check_geometry(&h, lba, n, disk_sectors)
        .map_err(|problem| DiskError::GptHeader { lba, problem })?;
    let array = read_sectors(read, h.entries_lba, n, ss, disk_sectors)?;
    let entries = match gpt::parse_entries(&h, &array) {
        Err(e @ DiskError::GptEntryRange { .. }) => Err(e),
        other => Ok(other?),
    };
    Ok(GptCopy {
        sector,
        h,
        array,
        entries,
    })
}

/// The GPT of the disk, with `ss`-byte sectors.
fn read_gpt(
    read: &mut Reader<'_>,
    disk_size: u64,
    ss: u32,
    hybrid: bool,
    mut warnings: Vec<String>,
) -> Result<Table, DiskError> {
    let bytes = u64::from(ss);
    let disk_sectors = disk_size / bytes;
    let last_sector = disk_sectors.saturating_sub(1);
    let sector0 = read_sector(read, 0, ss, disk_sectors)?;
    let primary = read_copy(read, 1, ss, disk_sectors);

    let backup_lba = match &primary {
        Ok(p) => {
            let alt = p.h.alternate_lba;
            if alt < disk_sectors && alt > p.h.last_usable_lba {
                if alt != last_sector {
                    warnings.push(format!(
                        "the backup GPT header is at sector {alt}, not at the last sector {last_sector}"
                    ));
                }
                alt
            } else {
                warnings.push(format!(
                    "the primary GPT header puts its backup at sector {alt}, which is not past its usable sectors and inside the disk; looking at the last sector {last_sector}"
                ));
                last_sector
            }
        }
        Err(_) => last_sector,
    };
    let backup = if backup_lba > 1 {
        read_copy(read, backup_lba, ss, disk_sectors)
    } else {
        Err(DiskError::GptHeader {
            lba: backup_lba,
            problem: GptHeaderProblem::Signature,
        })
    };

    let (used, from_backup, primary_header, entries_lba, backup_entries_lba) = match (
        primary, backup,
    ) {
        (Ok(p), b) => {
            let n = gpt::array_sectors(&p.h, ss);
            let backup_entries_lba = match b {
                Ok(b) => {
                    if b.h.entries_crc32 != p.h.entries_crc32
                        || b.h.first_usable_lba != p.h.first_usable_lba
                        || b.h.last_usable_lba != p.h.last_usable_lba
                        || b.h.disk_guid != p.h.disk_guid
                    {
                        warnings.push(format!(
                                "the backup GPT at sector {backup_lba} differs from the primary; the primary is used"
                            ));
                    }
                    b.h.entries_lba
                }
                Err(e) => {
                    warnings.push(format!(
                            "the backup GPT header at sector {backup_lba} is damaged ({}); the primary at sector 1 is used",
                            e.why()
                        ));
                    backup_lba.saturating_sub(n).max(p.h.last_usable_lba + 1)
                }
            };
            let entries_lba = p.h.entries_lba;
            (p, false, None, entries_lba, backup_entries_lba)
        }
        (Err(e), Ok(b)) => {
            warnings.push(format!(
                    "the primary GPT header at sector 1 is damaged ({}); using the backup at sector {backup_lba}",
                    e.why()
                ));
            let mut rebuilt = b.sector.clone();
            gpt::put_u64(&mut rebuilt, gpt::HDR_MY_LBA, 1);
            gpt::put_u64(&mut rebuilt, gpt::HDR_ALTERNATE_LBA, backup_lba);
            gpt::put_u64(&mut rebuilt, gpt::HDR_PARTITION_ENTRY_LBA, 2);
            gpt::fix_header_crc(&mut rebuilt);
            let backup_entries_lba = b.h.entries_lba;
            (b, true, Some(rebuilt), 2, backup_entries_lba)
        }
        (Err(pe), Err(be)) => {
            return Err(DiskError::GptBothDamaged {
                primary_lba: 1,
                primary: Box::new(pe),
                backup_lba,
                backup: Box::new(be),
            });
        }
    };
    let GptCopy {
        sector,
        h,
        array,
        entries,
    } = used;
    let n = gpt::array_sectors(&h, ss);
    let entries = entries?;

    let mut ranges = Vec::new();
    let mut partitions = Vec::new();
    for e in &entries {
        if e.first_lba < h.first_usable_lba || e.last_lba > h.last_usable_lba {
            return Err(DiskError::GptOutsideUsable {
                number: e.number,
                first: e.first_lba,
                last: e.last_lba,
                first_usable: h.first_usable_lba,
                last_usable: h.last_usable_lba,
            });
        }
        if e.last_lba >= disk_sectors {
            return Err(DiskError::PastDiskEnd {
                number: e.number,
                first: e.first_lba,
                last: e.last_lba,
                disk_sectors,
                sector_size: ss,
            });
        }
        ranges.push((e.number, e.first_lba, e.last_lba));
        partitions.push(Partition {
            number: e.number,
            start: e.first_lba * bytes,
            len: (e.last_lba - e.first_lba + 1) * bytes,
            type_id: gpt::guid_to_string(&e.type_guid),
            type_name: gpt::type_name(&e.type_guid),
            name: e.name.clone(),
            guid: Some(gpt::guid_to_string(&e.part_guid)),
            logical: false,
            table_slot: TableSlot::Gpt {
                index: e.number - 1,
            },
        });
    }
    check_overlaps(&mut ranges)?;
    partitions.sort_by_key(|p| (p.start, p.number));

    let array_bytes = n.saturating_mul(bytes);
    let regions = vec![
        (0, bytes),
        (bytes, bytes),
        (entries_lba.saturating_mul(bytes), array_bytes),
        (backup_entries_lba.saturating_mul(bytes), array_bytes),
        (backup_lba.saturating_mul(bytes), bytes),
    ];
    Ok(Table {
        kind: if hybrid {
            TableKind::Hybrid
        } else {
            TableKind::Gpt
        },
        sector_size: ss,
        disk_size,
        disk_id: gpt::guid_to_string(&h.disk_guid),
        partitions,
        extended: None,
        regions: merge_regions(regions, disk_size),
        gpt: Some(GptInfo {
            header_lba: if from_backup { backup_lba } else { 1 },
            backup_lba,
            entries_lba,
            backup_entries_lba,
            array_sectors: n,
            first_usable_lba: h.first_usable_lba,
            last_usable_lba: h.last_usable_lba,
            from_backup,
            primary_header: primary_header.unwrap_or(sector),
            entries: array,
        }),
        sector0,
        warnings,
    })
}

/// Builders of MBR, EBR and GPT bytes for the tests of this module and
/// its siblings.
#[cfg(test)]
pub(crate) mod testutil {
    use super::super::DiskError;
    use super::super::gpt::{self, *};
    use super::super::mbr::*;
    use super::{Table, read_table};

    /// Copies `v` into `b` at `at`.
    pub fn put(b: &mut [u8], at: usize, v: &[u8]) {
        b[at..at + v.len()].copy_from_slice(v);
    }

    /// A 512-byte MBR or EBR: 55 AA, the disk signature and the entries
    /// (slot, type, start, sectors).
    pub fn mbr_sector(disk_signature: u32, entries: &[(u8, u8, u32, u32)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        put(&mut s, MBR_SIGNATURE_OFFSET, &MBR_SIGNATURE);
        put(
            &mut s,
            MBR_DISK_SIGNATURE_OFFSET,
            &disk_signature.to_le_bytes(),
        );
        for &(slot, kind, start, sectors) in entries {
            let at = MBR_TABLE_OFFSET + usize::from(slot) * MBR_ENTRY_SIZE;
            s[at + ENTRY_TYPE] = kind;
            put(&mut s, at + ENTRY_START_LBA, &start.to_le_bytes());
            put(&mut s, at + ENTRY_SECTORS, &sectors.to_le_bytes());
        }
        s
    }

    /// The disk GUID of built GPT disks.
    pub const DISK_GUID: &str = "1B4E28BA-2FA1-11D2-883F-B9A761BDE3FB";

    /// The partition GUID of built entry `number`.
    pub fn part_guid(number: u32) -> [u8; 16] {
        let mut g = gpt::parse_guid("0A1B2C3D-4E5F-4061-8273-000000000000").unwrap();
        g[12..].copy_from_slice(&number.to_be_bytes());
        g
    }

    /// One GPT header sector.
    #[allow(clippy::too_many_arguments)]
    pub fn header(
        ss: u32,
        my: u64,
        alt: u64,
        first_usable: u64,
        last_usable: u64,
        entries_lba: u64,
        num: u32,
        size: u32,
        array_crc: u32,
    ) -> Vec<u8> {
        let mut h = vec![0u8; ss as usize];
        put(&mut h, HDR_SIGNATURE, GPT_SIGNATURE);
        put(&mut h, HDR_REVISION, &0x0001_0000u32.to_le_bytes());
        put(&mut h, HDR_HEADER_SIZE, &MIN_HEADER_SIZE.to_le_bytes());
        put(&mut h, HDR_MY_LBA, &my.to_le_bytes());
        put(&mut h, HDR_ALTERNATE_LBA, &alt.to_le_bytes());
        put(&mut h, HDR_FIRST_USABLE_LBA, &first_usable.to_le_bytes());
        put(&mut h, HDR_LAST_USABLE_LBA, &last_usable.to_le_bytes());
        put(&mut h, HDR_DISK_GUID, &gpt::parse_guid(DISK_GUID).unwrap());
        put(&mut h, HDR_PARTITION_ENTRY_LBA, &entries_lba.to_le_bytes());
        put(&mut h, HDR_NUMBER_OF_PARTITION_ENTRIES, &num.to_le_bytes());
        put(&mut h, HDR_SIZE_OF_PARTITION_ENTRY, &size.to_le_bytes());
        put(
            &mut h,
            HDR_PARTITION_ENTRY_ARRAY_CRC32,
            &array_crc.to_le_bytes(),
        );
        gpt::fix_header_crc(&mut h);
        h
    }

    /// Writes entry `number` (1-based) of a 128-byte-entry array.
    pub fn put_entry(array: &mut [u8], number: u32, ty: &str, first: u64, last: u64, name: &str) {
        let at = (number as usize - 1) * 128;
        put(
            array,
            at + ENT_PARTITION_TYPE_GUID,
            &gpt::parse_guid(ty).unwrap(),
        );
        put(array, at + ENT_UNIQUE_PARTITION_GUID, &part_guid(number));
        put(array, at + ENT_STARTING_LBA, &first.to_le_bytes());
        put(array, at + ENT_ENDING_LBA, &last.to_le_bytes());
        for (i, u) in name.encode_utf16().enumerate() {
            put(array, at + ENT_PARTITION_NAME + 2 * i, &u.to_le_bytes());
        }
    }

    /// Linux filesystem.
    pub const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    /// EFI System.
    pub const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

    /// A whole GPT disk of `sectors` sectors: protective MBR, primary
    /// header, 128 entries of 128 bytes at LBA 2, backup array and header
    /// at the end. Parts: (number, type, first, last, name).
    pub fn gpt_disk(ss: u32, sectors: u64, parts: &[(u32, &str, u64, u64, &str)]) -> Vec<u8> {
        let ssz = ss as usize;
        let n = (128 * 128u64).div_ceil(u64::from(ss));
        let mut array = vec![0u8; n as usize * ssz];
        for &(number, ty, first, last, name) in parts {
            put_entry(&mut array, number, ty, first, last, name);
        }
        let crc = crc32fast::hash(&array[..128 * 128]);
        let last = sectors - 1;
        let (fu, lu) = (2 + n, last - n - 1);
        let mut disk = vec![0u8; sectors as usize * ssz];
        let pmbr = mbr_sector(0, &[(0, 0xEE, 1, (sectors - 1).min(0xFFFF_FFFF) as u32)]);
        put(&mut disk, 0, &pmbr);
        put(
            &mut disk,
            ssz,
            &header(ss, 1, last, fu, lu, 2, 128, 128, crc),
        );
        put(&mut disk, 2 * ssz, &array);
        put(&mut disk, (last - n) as usize * ssz, &array);
        put(
            &mut disk,
            last as usize * ssz,
            &header(ss, last, 1, fu, lu, last - n, 128, 128, crc),
        );
        disk
    }

    /// Recomputes the array and header CRCs of the GPT headers at LBA 1
    /// and at the last sector, where they carry the signature and sane
    /// enough fields.
    pub fn refresh_crcs(disk: &mut [u8], ss: u32) {
        let ssz = ss as usize;
        let sectors = disk.len() / ssz;
        for lba in [1, sectors.saturating_sub(1)] {
            let at = lba * ssz;
            if lba == 0 || at + ssz > disk.len() || disk[at..at + 8] != GPT_SIGNATURE[..] {
                continue;
            }
            let h = &disk[at..at + ssz];
            let num = u64::from(crate::bytes::u32le(h, HDR_NUMBER_OF_PARTITION_ENTRIES));
            let size = u64::from(crate::bytes::u32le(h, HDR_SIZE_OF_PARTITION_ENTRY));
            let entries_lba = crate::bytes::u64le(h, HDR_PARTITION_ENTRY_LBA);
            let bytes = num * size;
            if bytes <= MAX_ARRAY_BYTES
                && let Some(start) = entries_lba.checked_mul(u64::from(ss))
                && start + bytes <= disk.len() as u64
            {
                let crc = crc32fast::hash(&disk[start as usize..(start + bytes) as usize]);
                put(
                    disk,
                    at + HDR_PARTITION_ENTRY_ARRAY_CRC32,
                    &crc.to_le_bytes(),
                );
            }
            gpt::fix_header_crc(&mut disk[at..at + ssz]);
        }
    }

    /// A reader over `disk`; reads past its end fail.
    pub fn reader(disk: &[u8]) -> impl FnMut(u64, usize) -> Result<Vec<u8>, DiskError> + '_ {
        move |offset, len| {
            let end = offset.checked_add(len as u64);
            match end {
                Some(end) if end <= disk.len() as u64 => {
                    Ok(disk[offset as usize..end as usize].to_vec())
                }
                _ => Err(DiskError::ReadSector {
                    lba: offset / 512,
                    source: std::io::Error::other("past the buffer"),
                }),
            }
        }
    }

    /// `read_table` of the whole of `disk`.
    pub fn read(disk: &[u8], ss: Option<u32>) -> Result<Option<Table>, DiskError> {
        read_table(&mut reader(disk), disk.len() as u64, ss)
    }
}

#[cfg(test)]
mod tests {
    use super::super::gpt::{self, *};
    use super::testutil::*;
    use super::*;

    /// 4096 sectors: partition 1 (FAT32 LBA) at 2048, the extended
    /// partition 2 at 3100..=3999 whose first EBR holds logical 5 and links
    /// to the EBR at 3500 holding logical 6, and partition 4 at 100.
    fn mbr_disk() -> Vec<u8> {
        let mut d = vec![0u8; 4096 * 512];
        let s0 = mbr_sector(
            0x5a8b3c1d,
            &[
                (0, 0x0C, 2048, 1000),
                (1, 0x05, 3100, 900),
                (3, 0x83, 100, 500),
            ],
        );
        put(&mut d, 0, &s0);
        put(
            &mut d,
            3100 * 512,
            &mbr_sector(0, &[(0, 0x83, 2, 300), (1, 0x05, 400, 500)]),
        );
        put(&mut d, 3500 * 512, &mbr_sector(0, &[(0, 0x82, 1, 400)]));
        d
    }

    #[test]
    fn mbr_with_logical_partitions() {
        let d = mbr_disk();
        for ss in [None, Some(512)] {
            let t = read(&d, ss).unwrap().unwrap();
            assert_eq!(t.kind, TableKind::Mbr);
            assert_eq!(t.kind.name(), "mbr");
            assert_eq!(t.sector_size, 512);
            assert_eq!(t.disk_size, 4096 * 512);
            assert_eq!(t.disk_id, "0x5a8b3c1d");
            assert_eq!(t.extended, Some((1, 3100, 900)));
            assert!(t.gpt.is_none());
            assert_eq!(t.sector0, d[..512]);
            assert!(t.warnings.is_empty());
            let got: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.number,
                        p.start / 512,
                        p.len / 512,
                        p.type_id.as_str(),
                        p.logical,
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    (4, 100, 500, "0x83", false),
                    (1, 2048, 1000, "0x0c", false),
                    (5, 3102, 300, "0x83", true),
                    (6, 3501, 400, "0x82", true),
                ]
            );
            assert_eq!(t.partitions[1].type_name, "W95 FAT32 (LBA)");
            assert_eq!(t.partitions[0].table_slot, TableSlot::Mbr { slot: 3 });
            assert_eq!(
                t.partitions[3].table_slot,
                TableSlot::Ebr { lba: 3500, slot: 0 }
            );
            assert_eq!(t.partitions[2].guid, None);
            assert_eq!(
                t.regions,
                vec![(0, 512), (3100 * 512, 512), (3500 * 512, 512)]
            );
        }
    }

    /// 8192 sectors of 512: ESP at 2048..=4095, Linux at 4096..=8158.
    fn gpt_8192() -> Vec<u8> {
        gpt_disk(
            512,
            8192,
            &[
                (1, ESP, 2048, 4095, "EFI"),
                (3, LINUX, 4096, 8158, "root ü"),
            ],
        )
    }

    #[test]
    fn gpt_with_512_and_4096_byte_sectors() {
        for (ss, sectors) in [(512u32, 8192u64), (4096, 1024)] {
            let n = 16384 / u64::from(ss);
            let last = sectors - 1;
            let d = gpt_disk(
                ss,
                sectors,
                &[
                    (1, ESP, 2 + n, 100, "EFI"),
                    (3, LINUX, 101, last - n - 1, "root ü"),
                ],
            );
            for opt in [None, Some(ss)] {
                let t = read(&d, opt).unwrap().unwrap();
                assert_eq!(t.kind, TableKind::Gpt);
                assert_eq!(t.sector_size, ss);
                assert_eq!(t.disk_id, DISK_GUID);
                assert!(t.warnings.is_empty(), "{:?}", t.warnings);
                assert_eq!(t.sector0.len(), ss as usize);
                let b = u64::from(ss);
                let p: Vec<_> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.number,
                            p.start / b,
                            p.len / b,
                            p.type_name,
                            p.name.as_str(),
                        )
                    })
                    .collect();
                assert_eq!(
                    p,
                    vec![
                        (1, 2 + n, 99 - n, "EFI System", "EFI"),
                        (3, 101, last - n - 101, "Linux filesystem", "root ü"),
                    ]
                );
                assert_eq!(t.partitions[0].type_id, ESP);
                assert_eq!(
                    t.partitions[1].guid.as_deref(),
                    Some(gpt::guid_to_string(&part_guid(3)).as_str())
                );
                assert_eq!(t.partitions[1].table_slot, TableSlot::Gpt { index: 2 });
                let g = t.gpt.as_ref().unwrap();
                assert_eq!(
                    (
                        g.header_lba,
                        g.backup_lba,
                        g.entries_lba,
                        g.backup_entries_lba,
                        g.array_sectors,
                        g.first_usable_lba,
                        g.last_usable_lba,
                        g.from_backup
                    ),
                    (1, last, 2, last - n, n, 2 + n, last - n - 1, false)
                );
                assert_eq!(g.primary_header, d[ss as usize..2 * ss as usize]);
                assert_eq!(g.entries.len() as u64, n * b);
                assert_eq!(
                    t.regions,
                    vec![(0, (2 + n) * b), ((last - n) * b, (n + 1) * b)]
                );
            }
        }
        // A 4Kn disk read as 512: sector 0 promises a GPT that is not there.
        let d = gpt_disk(4096, 1024, &[]);
        assert_eq!(
            read(&d, Some(512)).unwrap_err().to_string(),
            "both copies of the GPT are damaged: primary at sector 1: no \"EFI PART\" signature; backup at sector 8191: no \"EFI PART\" signature"
        );
    }

    #[test]
    fn hybrid_mbr() {
        let mut d = gpt_8192();
        put(
            &mut d,
            0,
            &mbr_sector(0, &[(0, 0xEE, 1, 2047), (1, 0x0C, 2048, 2048)]),
        );
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(t.kind, TableKind::Hybrid);
        assert_eq!(t.kind.name(), "hybrid");
        assert_eq!(t.partitions.len(), 2);
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn damaged_primary_gives_the_backup_table() {
        let good = read(&gpt_8192(), None).unwrap().unwrap();
        let mut d = gpt_8192();
        d[512 + 40] ^= 1; // FirstUsableLBA, CRC now wrong
        let stored = crate::bytes::u32le(&d, 512 + HDR_HEADER_CRC32);
        let t = read(&d, None).unwrap().unwrap();
        let g = t.gpt.as_ref().unwrap();
        assert!(g.from_backup);
        assert_eq!((g.header_lba, g.backup_lba, g.entries_lba), (8191, 8191, 2));
        assert_eq!(t.partitions, good.partitions);
        // The rebuilt primary is the original one.
        assert_eq!(g.primary_header, good.gpt.as_ref().unwrap().primary_header);
        let h = gpt::parse_header(&g.primary_header, 1).unwrap();
        assert_eq!((h.alternate_lba, h.entries_lba), (8191, 2));
        let mut copy = d[512..1024].to_vec();
        put(&mut copy, HDR_HEADER_CRC32, &[0; 4]);
        let computed = crc32fast::hash(&copy[..92]);
        assert_eq!(
            t.warnings,
            vec![format!(
                "the primary GPT header at sector 1 is damaged (header CRC mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})); using the backup at sector 8191"
            )]
        );
        assert_eq!(t.regions, good.regions);

        // A primary whose usable sectors pass the disk's end.
        let mut d = gpt_8192();
        put(&mut d, 512 + HDR_LAST_USABLE_LBA, &9000u64.to_le_bytes());
        refresh_crcs(&mut d, 512);
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(
            t.warnings,
            vec![
                "the primary GPT header at sector 1 is damaged (last usable sector 9000 is past the end of the disk (8192 sectors)); using the backup at sector 8191"
            ]
        );
        // No signature at LBA 1 at all: found by the backup probe.
        let mut d = gpt_8192();
        d[512..1024].fill(0);
        let t = read(&d, None).unwrap().unwrap();
        assert!(t.gpt.unwrap().from_backup);
        assert_eq!(
            t.warnings,
            vec![
                "the primary GPT header at sector 1 is damaged (no \"EFI PART\" signature); using the backup at sector 8191"
            ]
        );
        // The primary array's CRC.
        let mut d = gpt_8192();
        d[1024 + 200] ^= 0xFF;
        let t = read(&d, None).unwrap().unwrap();
        assert!(
            t.warnings[0].starts_with(
                "the primary GPT header at sector 1 is damaged (partition entry array at sector 2: CRC mismatch (stored 0x"
            ),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn damaged_backup_is_a_warning() {
        let mut d = gpt_8192();
        d[8191 * 512..].fill(0);
        let t = read(&d, None).unwrap().unwrap();
        let g = t.gpt.as_ref().unwrap();
        assert!(!g.from_backup);
        assert_eq!((g.backup_lba, g.backup_entries_lba), (8191, 8159));
        assert_eq!(
            t.warnings,
            vec![
                "the backup GPT header at sector 8191 is damaged (no \"EFI PART\" signature); the primary at sector 1 is used"
            ]
        );
        // A backup that disagrees.
        let mut d = gpt_8192();
        put(
            &mut d,
            8191 * 512 + HDR_LAST_USABLE_LBA,
            &8000u64.to_le_bytes(),
        );
        refresh_crcs(&mut d, 512);
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(
            t.warnings,
            vec!["the backup GPT at sector 8191 differs from the primary; the primary is used"]
        );
        // A backup not at the end (a disk image grown by appending).
        let mut d = gpt_8192();
        d.resize(9000 * 512, 0);
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(
            t.warnings,
            vec!["the backup GPT header is at sector 8191, not at the last sector 8999"]
        );
        assert_eq!(t.gpt.unwrap().backup_lba, 8191);
        // A primary pointing its backup into its usable sectors.
        let mut d = gpt_8192();
        put(&mut d, 512 + HDR_ALTERNATE_LBA, &100u64.to_le_bytes());
        refresh_crcs(&mut d, 512);
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(
            t.warnings,
            vec![
                "the primary GPT header puts its backup at sector 100, which is not past its usable sectors and inside the disk; looking at the last sector 8191"
            ]
        );
    }

    #[test]
    fn no_table() {
        // Too small, all zero, no 55 AA, 55 AA with four empty slots.
        assert!(read(&[0u8; 100], None).unwrap().is_none());
        assert!(read(&vec![0u8; 1 << 20], None).unwrap().is_none());
        assert!(read(&vec![0u8; 1 << 20], Some(4096)).unwrap().is_none());
        let mut d = mbr_disk();
        d[510] = 0;
        assert!(read(&d, None).unwrap().is_none());
        let mut d = vec![0u8; 1 << 20];
        put(&mut d, 0, &mbr_sector(0x1234, &[(0, 0x83, 2048, 0)]));
        assert!(read(&d, None).unwrap().is_none());
    }

    #[test]
    fn gpt_leftovers_and_missing_protective_mbr() {
        // An MBR disk with a stale GPT: the MBR counts.
        let mut d = gpt_8192();
        put(&mut d, 0, &mbr_sector(7, &[(0, 0x83, 2048, 4096)]));
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(t.kind, TableKind::Mbr);
        assert_eq!(
            t.warnings,
            vec![
                "sector 0 is an MBR without a GPT protective entry; the GPT header at byte 512 is ignored"
            ]
        );
        // A GPT with sector 0 wiped.
        let mut d = gpt_8192();
        d[..512].fill(0);
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(t.kind, TableKind::Gpt);
        assert_eq!(
            t.warnings,
            vec!["sector 0 holds no protective MBR; the GPT is read without it"]
        );
    }

    fn err(d: &[u8]) -> String {
        read(d, None).unwrap_err().to_string()
    }

    #[test]
    fn mbr_errors() {
        let mut d = vec![0u8; 16384 * 512];
        put(
            &mut d,
            0,
            &mbr_sector(1, &[(0, 0x83, 2048, 6144), (1, 0x83, 4096, 100)]),
        );
        assert_eq!(
            err(&d),
            "partitions 1 and 2 overlap: partition 2 starts at sector 4096, before partition 1 ends at sector 8191"
        );
        // A nested one is found against the one reaching furthest.
        put(
            &mut d,
            0,
            &mbr_sector(
                1,
                &[
                    (0, 0x83, 2048, 6144),
                    (1, 0x83, 3000, 10),
                    (2, 0x83, 5000, 10),
                ],
            ),
        );
        assert_eq!(
            err(&d),
            "partitions 1 and 2 overlap: partition 2 starts at sector 3000, before partition 1 ends at sector 8191"
        );
        let mut d = vec![0u8; 4096 * 512];
        put(&mut d, 0, &mbr_sector(1, &[(2, 0x83, 100, 4901)]));
        assert_eq!(
            err(&d),
            "partition 3 (sectors 100..=5000) ends past the end of the disk (4096 sectors of 512 bytes)"
        );
        put(
            &mut d,
            0,
            &mbr_sector(1, &[(0, 0x05, 100, 100), (2, 0x0F, 1000, 100)]),
        );
        assert_eq!(
            err(&d),
            "partitions 1 and 3 are both extended partitions; an MBR may hold only one"
        );
        // A primary inside the extended partition.
        put(
            &mut d,
            0,
            &mbr_sector(1, &[(0, 0x05, 100, 1000), (1, 0x83, 500, 10)]),
        );
        assert_eq!(
            err(&d),
            "partitions 1 and 2 overlap: partition 2 starts at sector 500, before partition 1 ends at sector 1099"
        );
        // Two logical partitions sharing sectors (the third EBR inside
        // the first logical partition, as util-linux #3925 describes).
        let mut d = mbr_disk();
        put(
            &mut d,
            3500 * 512,
            &mbr_sector(0, &[(0, 0x82, 1, 400), (1, 0x05, 101, 100)]),
        );
        put(&mut d, 3201 * 512, &mbr_sector(0, &[(0, 0x83, 1, 10)]));
        assert_eq!(
            err(&d),
            "partitions 5 and 7 overlap: partition 7 starts at sector 3202, before partition 5 ends at sector 3401"
        );
    }

    #[test]
    fn ebr_errors_through_the_table() {
        let mut d = vec![0u8; 16384 * 512];
        put(&mut d, 0, &mbr_sector(1, &[(0, 0x0F, 2048, 6144)]));
        put(
            &mut d,
            2048 * 512,
            &mbr_sector(0, &[(0, 0x83, 1, 100), (1, 0x05, 200, 100)]),
        );
        put(
            &mut d,
            2248 * 512,
            &mbr_sector(0, &[(0, 0x83, 1, 10), (1, 0x05, 0, 100)]),
        );
        assert_eq!(
            err(&d),
            "the EBR chain of the extended partition loops back to sector 2048"
        );
        put(&mut d, 2248 * 512, &mbr_sector(0, &[(0, 0x83, 1, 6000)]));
        assert_eq!(
            err(&d),
            "EBR at sector 2248 points to a logical partition outside the extended partition (sectors 2048..=8191)"
        );
        put(
            &mut d,
            2248 * 512,
            &mbr_sector(0, &[(0, 0x83, 1, 10), (1, 0x05, 7000, 100)]),
        );
        assert_eq!(
            err(&d),
            "EBR at sector 2248 links to a next EBR at sector 9048, outside the extended partition (sectors 2048..=8191)"
        );
        d[2248 * 512 + 511] = 0;
        assert_eq!(err(&d), "EBR at sector 2248 has no 55 AA boot signature");
        // The extended partition's sectors are in the regions, all EBRs.
        put(&mut d, 2248 * 512, &mbr_sector(0, &[(0, 0x83, 1, 10)]));
        let t = read(&d, None).unwrap().unwrap();
        assert_eq!(
            t.regions,
            vec![(0, 512), (2048 * 512, 512), (2248 * 512, 512)]
        );
        assert_eq!(t.partitions.len(), 2);
    }

    #[test]
    fn read_errors_and_sector_size() {
        let d = mbr_disk();
        let mut failing = |_: u64, _: usize| -> Result<Vec<u8>, DiskError> {
            Err(DiskError::ReadSector {
                lba: 0,
                source: io::Error::other("boom"),
            })
        };
        assert_eq!(
            read_table(&mut failing, 1 << 20, None)
                .unwrap_err()
                .to_string(),
            "cannot read sector 0: boom"
        );
        let mut short = |_: u64, _: usize| -> Result<Vec<u8>, DiskError> { Ok(vec![0; 100]) };
        assert_eq!(
            read_table(&mut short, 1 << 20, None)
                .unwrap_err()
                .to_string(),
            "cannot read sector 0: short read: 100 of 512 bytes"
        );
        // The disk is larger than the buffer: an EBR past the buffer.
        let mut r = reader(&d[..3200 * 512]);
        assert_eq!(
            read_table(&mut r, d.len() as u64, None)
                .unwrap_err()
                .to_string(),
            "cannot read sector 3500: past the buffer"
        );
        for size in [0, 256, 1000, 131072] {
            assert_eq!(
                read(&d, Some(size)).unwrap_err().to_string(),
                format!(
                    "sector size {size} is not supported (a power of two from 512 to 65536 bytes)"
                )
            );
        }
    }

    #[test]
    fn gpt_errors() {
        // Both copies damaged, the why of each without its location.
        let mut d = gpt_8192();
        d[1024 + 200] ^= 0xFF;
        d[8159 * 512 + 200] ^= 0xFF;
        let e = err(&d);
        assert!(
            e.starts_with(
                "both copies of the GPT are damaged: primary at sector 1: partition entry array at sector 2: CRC mismatch (stored 0x"
            ) && e.contains("; backup at sector 8191: partition entry array at sector 8159: CRC mismatch (stored 0x"),
            "{e}"
        );
        // A protective MBR and nothing else.
        let mut d = vec![0u8; 8192 * 512];
        put(&mut d, 0, &mbr_sector(0, &[(0, 0xEE, 1, 8191)]));
        assert_eq!(
            err(&d),
            "both copies of the GPT are damaged: primary at sector 1: no \"EFI PART\" signature; backup at sector 8191: no \"EFI PART\" signature"
        );

        let d = gpt_disk(
            512,
            8192,
            &[(1, LINUX, 2048, 4095, ""), (4, LINUX, 5000, 4000, "")],
        );
        assert_eq!(
            err(&d),
            "GPT partition 4: first sector 5000 is after its last sector 4000"
        );
        let d = gpt_disk(512, 8192, &[(2, LINUX, 10, 100, "")]);
        assert_eq!(
            err(&d),
            "GPT partition 2 (sectors 10..=100) lies outside the usable sectors 34..=8158"
        );
        let d = gpt_disk(512, 8192, &[(2, LINUX, 8000, 8159, "")]);
        assert_eq!(
            err(&d),
            "GPT partition 2 (sectors 8000..=8159) lies outside the usable sectors 34..=8158"
        );
        let d = gpt_disk(
            512,
            8192,
            &[(1, LINUX, 2048, 4095, ""), (2, LINUX, 4000, 5000, "")],
        );
        assert_eq!(
            err(&d),
            "partitions 1 and 2 overlap: partition 2 starts at sector 4000, before partition 1 ends at sector 4095"
        );
    }

    /// A small xorshift64 generator: deterministic, no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// A disk relocated: sector 0 patched, the new GPT written.
    pub(crate) fn relocated_disk(t: &Table, r: &gpt::Relocated, target_sectors: u64) -> Vec<u8> {
        let ss = t.sector_size as usize;
        let mut d = vec![0u8; target_sectors as usize * ss];
        let mut s0 = t.sector0.clone();
        mbr::patch_protective(&mut s0, target_sectors);
        put(&mut d, 0, &s0);
        put(&mut d, ss, &r.primary_header);
        let entries_lba = crate::bytes::u64le(&r.primary_header, HDR_PARTITION_ENTRY_LBA);
        put(&mut d, entries_lba as usize * ss, &r.entries);
        put(&mut d, r.backup_entries_lba as usize * ss, &r.entries);
        put(&mut d, r.backup_header_lba as usize * ss, &r.backup_header);
        d
    }

    /// Checks what any table read must satisfy, and relocates a GPT to a
    /// few sizes; those it accepts must read back with the same
    /// partitions.
    fn check_table(t: &Table, rng: &mut XorShift) {
        let mut prev_end = 0;
        for p in &t.partitions {
            assert!(p.len > 0 && p.start.checked_add(p.len).unwrap() <= t.disk_size);
            assert!(p.start >= prev_end || p.logical, "{t:?}");
            prev_end = prev_end.max(p.start + p.len);
        }
        let mut prev = 0;
        for &(o, l) in &t.regions {
            assert!(
                l > 0 && o >= prev && o + l <= t.disk_size,
                "{:?}",
                t.regions
            );
            prev = o + l + 1;
        }
        let Some(g) = &t.gpt else { return };
        let ss = u64::from(t.sector_size);
        let sectors = t.disk_size / ss;
        let last = t
            .partitions
            .iter()
            .max_by_key(|p| p.start + p.len)
            .map(|p| p.number);
        for target in [
            sectors,
            sectors + 7,
            sectors * 2,
            sectors / 2,
            0,
            3,
            u64::MAX,
        ] {
            for grow in [None, last, Some(rng.below(6) as u32)] {
                let Ok(r) =
                    gpt::relocate(&g.primary_header, &g.entries, t.sector_size, target, grow)
                else {
                    continue;
                };
                assert_eq!(r.backup_header_lba, target - 1);
                gpt::parse_header(&r.backup_header, target - 1).unwrap();
                if target.saturating_mul(ss) > 8 << 20 {
                    continue;
                }
                let d = relocated_disk(t, &r, target);
                let back = read(&d, Some(t.sector_size))
                    .unwrap_or_else(|e| panic!("relocated to {target}: {e}; {t:?}"))
                    .unwrap();
                assert_eq!(back.partitions.len(), t.partitions.len());
                for (a, b) in t.partitions.iter().zip(&back.partitions) {
                    assert_eq!((a.number, a.start), (b.number, b.start));
                    if Some(a.number) != grow {
                        assert_eq!(a.len, b.len);
                    }
                }
                assert_eq!(back.gpt.unwrap().last_usable_lba, r.last_usable_lba);
            }
        }
    }

    /// Mutates `base` `rounds` times inside `hot` byte ranges and at
    /// `fields` (offset, width), fixing the GPT CRCs half the time, and
    /// reads it with every sector-size choice and a few disk sizes.
    fn mutate(base: &[u8], ss: u32, hot: &[(usize, usize)], fields: &[(usize, u8)], seed: u64) {
        let mut rng = XorShift(seed);
        let mut d = base.to_vec();
        let sectors = (base.len() / ss as usize) as u64;
        let mut accepted = 0;
        for _ in 0..3000 {
            for &(o, l) in hot {
                d[o..o + l].copy_from_slice(&base[o..o + l]);
            }
            for _ in 0..=rng.below(4) {
                if rng.below(2) == 0 {
                    let &(o, l) = &hot[rng.below(hot.len() as u64) as usize];
                    let at = o + rng.below(l as u64) as usize;
                    d[at] = rng.next() as u8;
                } else {
                    let &(o, w) = &fields[rng.below(fields.len() as u64) as usize];
                    let values = [
                        0,
                        1,
                        2,
                        33,
                        34,
                        92,
                        128,
                        4096,
                        sectors - 1,
                        sectors,
                        sectors + 1,
                        u64::from(u32::MAX),
                        u64::MAX,
                        rng.next(),
                        rng.below(sectors + 100),
                    ];
                    let v = values[rng.below(values.len() as u64) as usize].to_le_bytes();
                    put(&mut d, o, &v[..usize::from(w)]);
                }
            }
            if rng.below(2) == 0 {
                refresh_crcs(&mut d, ss);
            }
            let len = d.len() as u64;
            for (size, opt) in [
                (len, None),
                (len, Some(512)),
                (len, Some(4096)),
                (len - 4096, None),
                (len + 512, None),
            ] {
                if let Ok(Some(t)) = read_table(&mut reader(&d), size, opt) {
                    accepted += 1;
                    check_table(&t, &mut rng);
                }
            }
        }
        eprintln!("STAT accepted {accepted}");
        assert!(accepted > 100, "only {accepted} mutants read");
    }

    /// The header and entry fields of a GPT copy.
    fn gpt_fields(ss: usize, lba: usize, entries_lba: usize) -> Vec<(usize, u8)> {
        let h = lba * ss;
        let mut f: Vec<(usize, u8)> = [
            (HDR_HEADER_SIZE, 4),
            (HDR_MY_LBA, 8),
            (HDR_ALTERNATE_LBA, 8),
            (HDR_FIRST_USABLE_LBA, 8),
            (HDR_LAST_USABLE_LBA, 8),
            (HDR_PARTITION_ENTRY_LBA, 8),
            (HDR_NUMBER_OF_PARTITION_ENTRIES, 4),
            (HDR_SIZE_OF_PARTITION_ENTRY, 4),
        ]
        .iter()
        .map(|&(o, w)| (h + o, w))
        .collect();
        for i in 0..4 {
            let e = entries_lba * ss + i * 128;
            f.extend([(e + ENT_STARTING_LBA, 8), (e + ENT_ENDING_LBA, 8), (e, 1)]);
        }
        f
    }

    /// The fields of the entries of an MBR or EBR at byte `at`.
    fn mbr_fields(at: usize) -> Vec<(usize, u8)> {
        (0..4)
            .flat_map(|i| {
                let e = at + mbr::MBR_TABLE_OFFSET + 16 * i;
                [(e + 4, 1), (e + 8, 4), (e + 12, 4)]
            })
            .collect()
    }

    #[test]
    fn mutated_tables_never_panic() {
        // MBR with logical partitions.
        let d = mbr_disk();
        let hot = [(0, 512), (3100 * 512, 512), (3500 * 512, 512)];
        let mut fields = mbr_fields(0);
        fields.extend(mbr_fields(3100 * 512));
        fields.extend(mbr_fields(3500 * 512));
        mutate(&d, 512, &hot, &fields, 0x9E37_79B9_7F4A_7C15);

        // GPT, 512-byte sectors, and hybrid.
        for hybrid in [false, true] {
            let mut d = gpt_disk(
                512,
                256,
                &[(1, ESP, 34, 100, "EFI"), (2, LINUX, 101, 222, "root")],
            );
            if hybrid {
                put(
                    &mut d,
                    0,
                    &mbr_sector(0, &[(0, 0xEE, 1, 33), (1, 0x0C, 34, 67)]),
                );
            }
            let hot = [
                (0, 512),
                (512, 512),
                (1024, 512),
                (222 * 512, 1024),
                (255 * 512, 512),
            ];
            let mut fields = mbr_fields(0);
            fields.extend(gpt_fields(512, 1, 2));
            fields.extend(gpt_fields(512, 255, 223));
            mutate(&d, 512, &hot, &fields, 0xDEAD_BEEF + u64::from(hybrid));
        }

        // GPT, 4096-byte sectors.
        let d = gpt_disk(
            4096,
            64,
            &[(1, ESP, 6, 20, "EFI"), (2, LINUX, 21, 58, "root")],
        );
        let hot = [
            (0, 4096),
            (4096, 4096),
            (8192, 1024),
            (59 * 4096, 1024),
            (63 * 4096, 4096),
        ];
        let mut fields = mbr_fields(0);
        fields.extend(gpt_fields(4096, 1, 2));
        fields.extend(gpt_fields(4096, 63, 59));
        mutate(&d, 4096, &hot, &fields, 0x1234_5678);
    }
}
