//! The GUID partition table: its header (at LBA 1, and its backup at the
//! disk's last LBA) and its partition entry array.
//!
//! Offsets and names are those of UEFI 2.10 §5.3.2 (GPT Header) and
//! §5.3.3 (GPT Partition Entry Array). The checks are the kernel's
//! (`block/partitions/efi.c`: signature, header size, header CRC, MyLBA,
//! entry size, array CRC) with bounds on the array so garbage cannot make
//! a reader allocate much.

use super::DiskError;
use super::error::GptHeaderProblem;
use crate::bytes::{u32le, u64le};

/// `Signature`.
pub const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

/// Header field offsets (UEFI 2.10 table 5.21).
pub const HDR_SIGNATURE: usize = 0;
/// `Revision` (0x00010000 for 1.0).
pub const HDR_REVISION: usize = 8;
/// `HeaderSize`.
pub const HDR_HEADER_SIZE: usize = 12;
/// `HeaderCRC32`.
pub const HDR_HEADER_CRC32: usize = 16;
/// `MyLBA`.
pub const HDR_MY_LBA: usize = 24;
/// `AlternateLBA`.
pub const HDR_ALTERNATE_LBA: usize = 32;
/// `FirstUsableLBA`.
pub const HDR_FIRST_USABLE_LBA: usize = 40;
/// `LastUsableLBA`.
pub const HDR_LAST_USABLE_LBA: usize = 48;
/// `DiskGUID`.
pub const HDR_DISK_GUID: usize = 56;
/// `PartitionEntryLBA`.
pub const HDR_PARTITION_ENTRY_LBA: usize = 72;
/// `NumberOfPartitionEntries`.
pub const HDR_NUMBER_OF_PARTITION_ENTRIES: usize = 80;
/// `SizeOfPartitionEntry`.
pub const HDR_SIZE_OF_PARTITION_ENTRY: usize = 84;
/// `PartitionEntryArrayCRC32`.
pub const HDR_PARTITION_ENTRY_ARRAY_CRC32: usize = 88;
/// The smallest `HeaderSize`: the fields above.
pub const MIN_HEADER_SIZE: u32 = 92;

/// Entry field offsets (UEFI 2.10 table 5.22): `PartitionTypeGUID`.
pub const ENT_PARTITION_TYPE_GUID: usize = 0;
/// `UniquePartitionGUID`.
pub const ENT_UNIQUE_PARTITION_GUID: usize = 16;
/// `StartingLBA`.
pub const ENT_STARTING_LBA: usize = 32;
/// `EndingLBA` (inclusive).
pub const ENT_ENDING_LBA: usize = 40;
/// `Attributes`.
pub const ENT_ATTRIBUTES: usize = 48;
/// `PartitionName`: 36 UTF-16LE code units.
pub const ENT_PARTITION_NAME: usize = 56;
/// Bytes of `PartitionName`.
pub const ENT_PARTITION_NAME_SIZE: usize = 72;
/// The smallest entry: `SizeOfPartitionEntry` is a multiple of it.
pub const MIN_ENTRY_SIZE: u32 = 128;

/// Largest `SizeOfPartitionEntry` accepted.
pub const MAX_ENTRY_SIZE: u32 = 4096;
/// Largest `NumberOfPartitionEntries` accepted (128 is the norm).
pub const MAX_ENTRIES: u32 = 4096;
/// Largest entry array accepted, in bytes.
pub const MAX_ARRAY_BYTES: u64 = 1 << 20;

/// A validated GPT header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptHeader {
    /// `Revision`.
    pub revision: u32,
    /// `HeaderSize`.
    pub header_size: u32,
    /// `MyLBA`.
    pub my_lba: u64,
    /// `AlternateLBA`.
    pub alternate_lba: u64,
    /// `FirstUsableLBA`.
    pub first_usable_lba: u64,
    /// `LastUsableLBA`.
    pub last_usable_lba: u64,
    /// `DiskGUID`, as stored.
    pub disk_guid: [u8; 16],
    /// `PartitionEntryLBA`.
    pub entries_lba: u64,
    /// `NumberOfPartitionEntries`.
    pub num_entries: u32,
    /// `SizeOfPartitionEntry`.
    pub entry_size: u32,
    /// `PartitionEntryArrayCRC32`.
    pub entries_crc32: u32,
}

/// Parses and checks the GPT header in `sector` (one logical sector, whose
/// length bounds `HeaderSize`) read at `lba`: signature, header size,
/// header CRC (over `HeaderSize` bytes with the CRC field zeroed),
/// `MyLBA` == `lba`, entry size and count bounds, and `FirstUsableLBA` at
/// most one past `LastUsableLBA`. Where the array and the usable sectors
/// lie on the disk is checked by the table reader, which knows its size.
pub fn parse_header(sector: &[u8], lba: u64) -> Result<GptHeader, DiskError> {
    let bad = |problem| DiskError::GptHeader { lba, problem };
    if sector.len() < GPT_SIGNATURE.len() || sector[..GPT_SIGNATURE.len()] != GPT_SIGNATURE[..] {
        return Err(bad(GptHeaderProblem::Signature));
    }
    let max = u32::try_from(sector.len()).unwrap_or(u32::MAX);
    if sector.len() < MIN_HEADER_SIZE as usize {
        let size = if sector.len() >= HDR_HEADER_SIZE + 4 {
            u32le(sector, HDR_HEADER_SIZE)
        } else {
            0
        };
        return Err(bad(GptHeaderProblem::HeaderSize { size, max }));
    }
    let header_size = u32le(sector, HDR_HEADER_SIZE);
    if header_size < MIN_HEADER_SIZE || header_size > max {
        return Err(bad(GptHeaderProblem::HeaderSize {
            size: header_size,
            max,
        }));
    }
    let stored = u32le(sector, HDR_HEADER_CRC32);
    let computed = header_crc(&sector[..header_size as usize]);
    if stored != computed {
        return Err(bad(GptHeaderProblem::HeaderCrc { stored, computed }));
    }
    let my_lba = u64le(sector, HDR_MY_LBA);
    if my_lba != lba {
        return Err(bad(GptHeaderProblem::MyLba { found: my_lba }));
    }
    let entry_size = u32le(sector, HDR_SIZE_OF_PARTITION_ENTRY);
    if entry_size == 0 || !entry_size.is_multiple_of(MIN_ENTRY_SIZE) || entry_size > MAX_ENTRY_SIZE
    {
        return Err(bad(GptHeaderProblem::EntrySize { size: entry_size }));
    }
    let num_entries = u32le(sector, HDR_NUMBER_OF_PARTITION_ENTRIES);
    if num_entries > MAX_ENTRIES || u64::from(num_entries) * u64::from(entry_size) > MAX_ARRAY_BYTES
    {
        return Err(bad(GptHeaderProblem::EntryCount {
            count: num_entries,
            size: entry_size,
        }));
    }
    let first_usable_lba = u64le(sector, HDR_FIRST_USABLE_LBA);
    let last_usable_lba = u64le(sector, HDR_LAST_USABLE_LBA);
    if first_usable_lba > last_usable_lba.saturating_add(1) {
        return Err(bad(GptHeaderProblem::UsableRange {
            first: first_usable_lba,
            last: last_usable_lba,
        }));
    }
    let mut disk_guid = [0u8; 16];
    disk_guid.copy_from_slice(&sector[HDR_DISK_GUID..HDR_DISK_GUID + 16]);
    Ok(GptHeader {
        revision: u32le(sector, HDR_REVISION),
        header_size,
        my_lba,
        alternate_lba: u64le(sector, HDR_ALTERNATE_LBA),
        first_usable_lba,
        last_usable_lba,
        disk_guid,
        entries_lba: u64le(sector, HDR_PARTITION_ENTRY_LBA),
        num_entries,
        entry_size,
        entries_crc32: u32le(sector, HDR_PARTITION_ENTRY_ARRAY_CRC32),
    })
}

/// Checks where the header `h`, read at `lba`, puts its usable sectors
/// and its array of `n` sectors on a disk of `disk_sectors` sectors: the
/// usable sectors inside the disk, the header outside them, the array
/// inside the disk and clear of both (the kernel refuses a header whose
/// usable sectors pass the disk's end).
pub fn check_geometry(
    h: &GptHeader,
    lba: u64,
    n: u64,
    disk_sectors: u64,
) -> Result<(), GptHeaderProblem> {
    let (first_usable, last_usable) = (h.first_usable_lba, h.last_usable_lba);
    if last_usable >= disk_sectors {
        return Err(GptHeaderProblem::UsablePastDisk {
            last: last_usable,
            disk_sectors,
        });
    }
    if (first_usable..=last_usable).contains(&lba) {
        return Err(GptHeaderProblem::HeaderInUsable {
            first_usable,
            last_usable,
        });
    }
    if n > 0 {
        let first = h.entries_lba;
        let last = first.saturating_add(n - 1);
        if last >= disk_sectors {
            return Err(GptHeaderProblem::ArrayPastDisk {
                first,
                last,
                disk_sectors,
            });
        }
        let on_usable = first <= last_usable && last >= first_usable;
        if on_usable || (first..=last).contains(&lba) {
            return Err(GptHeaderProblem::ArrayOverlap {
                first,
                last,
                first_usable,
                last_usable,
            });
        }
    }
    Ok(())
}

/// The CRC32 of the header bytes `h` (`HeaderSize` long) with the
/// `HeaderCRC32` field taken as zero.
fn header_crc(h: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..HDR_HEADER_CRC32]);
    crc.update(&[0u8; 4]);
    crc.update(&h[HDR_HEADER_CRC32 + 4..]);
    crc.finalize()
}

/// Recomputes `HeaderCRC32` of the header in `sector` (its `HeaderSize`
/// already checked to fit).
pub(crate) fn fix_header_crc(sector: &mut [u8]) {
    let size = (u32le(sector, HDR_HEADER_SIZE) as usize).clamp(HDR_HEADER_CRC32 + 4, sector.len());
    let crc = header_crc(&sector[..size]);
    put_u32(sector, HDR_HEADER_CRC32, crc);
}

/// Writes a little-endian `u32` at `offset`.
pub(crate) fn put_u32(b: &mut [u8], offset: usize, v: u32) {
    b[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian `u64` at `offset`.
pub(crate) fn put_u64(b: &mut [u8], offset: usize, v: u64) {
    b[offset..offset + 8].copy_from_slice(&v.to_le_bytes());
}

/// Bytes of the entry array the header describes.
pub fn array_bytes(h: &GptHeader) -> u64 {
    u64::from(h.num_entries) * u64::from(h.entry_size)
}

/// Sectors the entry array spans: ceil(entries × entry size / sector).
pub fn array_sectors(h: &GptHeader, sector_size: u32) -> u64 {
    array_bytes(h).div_ceil(u64::from(sector_size.max(1)))
}

/// One used GPT partition entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptEntry {
    /// Its 1-based index in the array: the partition number.
    pub number: u32,
    /// `PartitionTypeGUID`, as stored.
    pub type_guid: [u8; 16],
    /// `UniquePartitionGUID`, as stored.
    pub part_guid: [u8; 16],
    /// `StartingLBA`.
    pub first_lba: u64,
    /// `EndingLBA` (inclusive).
    pub last_lba: u64,
    /// `Attributes`.
    pub attributes: u64,
    /// `PartitionName`, up to its first NUL (invalid UTF-16 replaced).
    pub name: String,
}

/// Checks the CRC of the entry `array` (at least the header's entries ×
/// entry size bytes; more is ignored) against `h`, and returns its used
/// entries (type GUID not all zero), in array order. An entry whose first
/// sector is after its last is an error.
pub fn parse_entries(h: &GptHeader, array: &[u8]) -> Result<Vec<GptEntry>, DiskError> {
    let needed = array_bytes(h);
    if (array.len() as u64) < needed {
        return Err(DiskError::GptArrayShort {
            lba: h.entries_lba,
            len: array.len(),
            needed,
        });
    }
    let array = &array[..needed as usize];
    let computed = crc32fast::hash(array);
    if computed != h.entries_crc32 {
        return Err(DiskError::GptArrayCrc {
            lba: h.entries_lba,
            stored: h.entries_crc32,
            computed,
        });
    }
    let mut out = Vec::new();
    for (i, e) in array.chunks_exact(h.entry_size as usize).enumerate() {
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&e[ENT_PARTITION_TYPE_GUID..ENT_PARTITION_TYPE_GUID + 16]);
        if type_guid == [0u8; 16] {
            continue;
        }
        let number = i as u32 + 1;
        let mut part_guid = [0u8; 16];
        part_guid.copy_from_slice(&e[ENT_UNIQUE_PARTITION_GUID..ENT_UNIQUE_PARTITION_GUID + 16]);
        let first_lba = u64le(e, ENT_STARTING_LBA);
        let last_lba = u64le(e, ENT_ENDING_LBA);
        if first_lba > last_lba {
            return Err(DiskError::GptEntryRange {
                number,
                first: first_lba,
                last: last_lba,
            });
        }
        let units: Vec<u16> = e[ENT_PARTITION_NAME..ENT_PARTITION_NAME + ENT_PARTITION_NAME_SIZE]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        out.push(GptEntry {
            number,
            type_guid,
            part_guid,
            first_lba,
            last_lba,
            attributes: u64le(e, ENT_ATTRIBUTES),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(out)
}

/// For each stored GUID byte, the position of its two hex digits in the
/// text form: the first three fields are little-endian, the last two
/// big-endian (UEFI 2.10 appendix A).
const GUID_TEXT_POS: [usize; 16] = [6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34];
/// Where the text form has its dashes.
const GUID_DASHES: [usize; 4] = [8, 13, 18, 23];

/// A GUID as UEFI, sgdisk and sfdisk print it:
/// `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`.
pub fn guid_to_string(g: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut t = [b'-'; 36];
    for (i, &b) in g.iter().enumerate() {
        t[GUID_TEXT_POS[i]] = HEX[usize::from(b >> 4)];
        t[GUID_TEXT_POS[i] + 1] = HEX[usize::from(b & 0xF)];
    }
    t.iter().map(|&c| char::from(c)).collect()
}

/// The value of a hex digit.
const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses the text form of a GUID (either case) into its stored bytes.
const fn parse_guid_bytes(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 36 {
        return None;
    }
    let mut d = 0;
    while d < GUID_DASHES.len() {
        if s[GUID_DASHES[d]] != b'-' {
            return None;
        }
        d += 1;
    }
    let mut g = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let p = GUID_TEXT_POS[i];
        match (hex_digit(s[p]), hex_digit(s[p + 1])) {
            (Some(hi), Some(lo)) => g[i] = (hi << 4) | lo,
            _ => return None,
        }
        i += 1;
    }
    Some(g)
}

/// Parses the text form of a GUID (either case) into its stored bytes.
pub fn parse_guid(s: &str) -> Option<[u8; 16]> {
    parse_guid_bytes(s.as_bytes())
}

/// A GUID constant from its text form (a bad literal fails the build).
const fn guid(s: &str) -> [u8; 16] {
    match parse_guid_bytes(s.as_bytes()) {
        Some(g) => g,
        None => panic!("bad GUID literal"),
    }
}

/// Partition type GUIDs with the names sgdisk and sfdisk give them.
const TYPES: &[([u8; 16], &str)] = &[
    (guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), "EFI System"),
    (guid("21686148-6449-6E6F-744E-656564454649"), "BIOS boot"),
    (
        guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
        "Microsoft basic data",
    ),
    (
        guid("E3C9E316-0B5C-4DB8-817D-F92DF00215AE"),
        "Microsoft reserved",
    ),
    (
        guid("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"),
        "Windows recovery environment",
    ),
    (
        guid("5808C8AA-7E8F-42E0-85D2-E1E90434CFB3"),
        "Microsoft LDM metadata",
    ),
    (
        guid("AF9B60A0-1431-4F62-BC68-3311714A69AD"),
        "Microsoft LDM data",
    ),
    (
        guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        "Linux filesystem",
    ),
    (guid("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"), "Linux swap"),
    (guid("E6D6D379-F507-44C2-A23C-238F2A3DF928"), "Linux LVM"),
    (guid("A19D880F-05FC-4D3B-A006-743F0F84911E"), "Linux RAID"),
    (
        guid("44479540-F297-41B2-9AF7-D131D5F0458A"),
        "Linux root (x86)",
    ),
    (
        guid("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
        "Linux root (x86-64)",
    ),
    (
        guid("69DAD710-2CE4-4E3C-B16C-21A1D49ABED3"),
        "Linux root (ARM)",
    ),
    (
        guid("B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
        "Linux root (ARM-64)",
    ),
    (
        guid("8484680C-9521-48C6-9C11-B0720656F69E"),
        "Linux /usr (x86-64)",
    ),
    (guid("933AC7E1-2EB4-4F13-B844-0E14E2AEF915"), "Linux /home"),
    (guid("3B8F8425-20E0-4F3B-907F-1A25A76F98E8"), "Linux /srv"),
    (
        guid("BC13C2FF-59E6-4262-A352-B275FD6F7172"),
        "Linux extended boot",
    ),
    (guid("CA7D7CCB-63ED-4C53-861C-1742536059CC"), "Linux LUKS"),
    (
        guid("48465300-0000-11AA-AA11-00306543ECAC"),
        "Apple HFS/HFS+",
    ),
    (guid("7C3457EF-0000-11AA-AA11-00306543ECAC"), "Apple APFS"),
    (
        guid("FE3A2A5D-4F32-41A7-B725-ACCC3285A309"),
        "ChromeOS kernel",
    ),
];

/// The name of a partition type GUID ("" when unknown).
pub fn type_name(g: &[u8; 16]) -> &'static str {
    TYPES
        .iter()
        .find(|(t, _)| t == g)
        .map_or("", |&(_, name)| name)
}

/// The GPT of a target of another size, ready to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocated {
    /// The primary header: one whole sector, for LBA 1.
    pub primary_header: Vec<u8>,
    /// The entry array (array sectors × sector size bytes), for both the
    /// primary's `PartitionEntryLBA` and [`Relocated::backup_entries_lba`].
    pub entries: Vec<u8>,
    /// The backup header: one whole sector.
    pub backup_header: Vec<u8>,
    /// Where the backup header goes: the target's last sector.
    pub backup_header_lba: u64,
    /// Where the backup array goes.
    pub backup_entries_lba: u64,
    /// The new `LastUsableLBA`.
    pub last_usable_lba: u64,
}

/// Builds the GPT for a target of `target_sectors` sectors from the
/// primary header sector and its entry array as read from the source.
///
/// Primary: `AlternateLBA` = the last LBA, `LastUsableLBA` = last LBA −
/// array sectors − 1. Backup: `MyLBA` = last LBA, `AlternateLBA` = the
/// primary's `MyLBA` (1), `PartitionEntryLBA` = last LBA − array sectors.
/// `FirstUsableLBA`, the disk GUID and the primary `PartitionEntryLBA`
/// are kept; both header CRCs are recomputed, and the array CRC when an
/// entry grows. With `grow: Some(n)`, partition n (which must end last)
/// ends at the new last usable LBA; a partition is never shrunk.
///
/// Refused: a partition ending past the new last usable LBA (the error
/// gives its number and the bytes missing), a target too small for the
/// table, and a backup array that would overlap the primary one.
pub fn relocate(
    primary_header_sector: &[u8],
    entries: &[u8],
    sector_size: u32,
    target_sectors: u64,
    grow: Option<u32>,
) -> Result<Relocated, DiskError> {
    super::table::check_sector_size(sector_size)?;
    let ss = sector_size as usize;
    let src = &primary_header_sector[..primary_header_sector.len().min(ss)];
    let h = parse_header(src, 1)?;
    let used = parse_entries(&h, entries)?;
    let n = array_sectors(&h, sector_size);

    // The primary header and the usable sectors start at 2 at the
    // earliest, then come the backup array and the backup header.
    let needed = h
        .first_usable_lba
        .max(2)
        .saturating_add(n)
        .saturating_add(1);
    if target_sectors < needed {
        return Err(DiskError::TargetTooSmallForGpt {
            target_sectors,
            first_usable: h.first_usable_lba,
            needed,
        });
    }
    let last_lba = target_sectors - 1;
    let backup_entries_lba = last_lba - n;
    let last_usable_lba = backup_entries_lba - 1;
    if n > 0 && h.entries_lba.saturating_add(n) > backup_entries_lba {
        return Err(DiskError::ArraysOverlap {
            primary_first: h.entries_lba,
            primary_last: h.entries_lba.saturating_add(n - 1),
            backup_first: backup_entries_lba,
            backup_last: last_lba - 1,
            target_sectors,
        });
    }
    let ss64 = u64::from(sector_size);
    if let Some(e) = used.iter().find(|e| e.last_lba > last_usable_lba) {
        return Err(DiskError::PastTarget {
            number: e.number,
            last_lba: e.last_lba,
            shortfall: (e.last_lba - last_usable_lba).saturating_mul(ss64),
            target_bytes: target_sectors.saturating_mul(ss64),
        });
    }

    let array_len = (n as usize).saturating_mul(ss);
    let mut array = vec![0u8; array_len];
    let keep = entries.len().min(array_len);
    array[..keep].copy_from_slice(&entries[..keep]);
    let mut entries_crc32 = h.entries_crc32;
    if let Some(number) = grow {
        let Some(g) = used.iter().find(|e| e.number == number) else {
            return Err(DiskError::GrowNoSuchPartition { number });
        };
        // The first partition among those ending last.
        let last = used
            .iter()
            .fold(g, |a, e| if e.last_lba > a.last_lba { e } else { a });
        if last.number != number {
            return Err(DiskError::GrowNotLast {
                number,
                last_number: last.number,
                last_end: last.last_lba,
            });
        }
        let at = (number as usize - 1) * h.entry_size as usize + ENT_ENDING_LBA;
        put_u64(&mut array, at, last_usable_lba);
        entries_crc32 = crc32fast::hash(&array[..array_bytes(&h) as usize]);
    }

    let mut primary = src.to_vec();
    primary.resize(ss, 0);
    put_u64(&mut primary, HDR_ALTERNATE_LBA, last_lba);
    put_u64(&mut primary, HDR_LAST_USABLE_LBA, last_usable_lba);
    put_u32(&mut primary, HDR_PARTITION_ENTRY_ARRAY_CRC32, entries_crc32);
    let mut backup = primary.clone();
    fix_header_crc(&mut primary);
    put_u64(&mut backup, HDR_MY_LBA, last_lba);
    put_u64(&mut backup, HDR_ALTERNATE_LBA, h.my_lba);
    put_u64(&mut backup, HDR_PARTITION_ENTRY_LBA, backup_entries_lba);
    fix_header_crc(&mut backup);

    // Whatever the source's layout, the new headers must be ones a reader
    // accepts on the target (a primary array placed after the old usable
    // sectors would now lie inside the new ones).
    for (sector, lba) in [(&primary, h.my_lba), (&backup, last_lba)] {
        let new = parse_header(sector, lba)?;
        check_geometry(&new, lba, n, target_sectors)
            .map_err(|problem| DiskError::GptHeader { lba, problem })?;
    }
    Ok(Relocated {
        primary_header: primary,
        entries: array,
        backup_header: backup,
        backup_header_lba: last_lba,
        backup_entries_lba,
        last_usable_lba,
    })
}
