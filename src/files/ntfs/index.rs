//! Directory indexes (`$I30`): the entries of `$INDEX_ROOT`, then those
//! of every `INDX` block of `$INDEX_ALLOCATION` its `$BITMAP` marks in
//! use, in block order — the order ntfs-3g's readdir returns them. Reading
//! the blocks in order rather than walking the B-tree needs no recursion
//! and cannot loop on a corrupt tree.

use super::file::{
    AT_BITMAP, AT_INDEX_ALLOCATION, AT_INDEX_ROOT, FileRecord, Value, Volume, corrupt, le16, le32,
    le64, utf16,
};
use crate::error::Result;
use crate::fs::ntfs::record::{Kind as RecordKind, fixup_signed};

/// Namespace of a DOS 8.3 name (hidden: the long name is listed).
pub const NAMESPACE_DOS: u8 = 2;
/// Index entry flag: the last entry of a node (holds no key).
const ENTRY_LAST: u16 = 0x0002;
/// Size of an index entry's fixed header.
const ENTRY_HEADER: usize = 0x10;
/// Offset of the name in a `$FILE_NAME` key.
const NAME_OFFSET: usize = 0x42;

/// A name in a directory index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The MFT record it names (sequence number dropped).
    pub record: u64,
    /// The name's namespace (0 POSIX, 1 Win32, 2 DOS, 3 Win32 and DOS).
    pub namespace: u8,
    /// The name, UTF-16.
    pub name: Vec<u16>,
}

/// Every entry of directory `dir`'s `$I30` index.
pub fn entries(vol: &Volume, dir: &FileRecord, path: &str) -> Result<Vec<IndexEntry>> {
    let n = dir.number;
    let root = match dir.find(AT_INDEX_ROOT, "$I30").map(|a| &a.value) {
        Some(Value::Resident(v)) => v,
        Some(Value::NonResident(_)) => {
            return Err(corrupt(path, n, "its $INDEX_ROOT is non-resident"));
        }
        None => return Err(corrupt(path, n, "a directory without a $I30 index root")),
    };
    let mut out = Vec::new();
    parse_node(root, 0x10, &mut out).map_err(|p| corrupt(path, n, format!("$INDEX_ROOT: {p}")))?;
    let Some(alloc) = dir.find(AT_INDEX_ALLOCATION, "$I30") else {
        return Ok(out);
    };
    let Value::NonResident(alloc) = &alloc.value else {
        return Err(corrupt(path, n, "its $INDEX_ALLOCATION is resident"));
    };
    let block_size = le32(root, 0x08).unwrap_or(0);
    if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
        return Err(corrupt(
            path,
            n,
            format!("its $INDEX_ROOT gives an invalid index block size {block_size}"),
        ));
    }
    let bitmap = bitmap(vol, dir, alloc.data_size / u64::from(block_size), path)?;
    // Blocks past the bitmap are not in use: the loop is bounded by it.
    let blocks = (alloc.data_size / u64::from(block_size)).min(bitmap.len() as u64 * 8);
    let mut buf = vec![0u8; block_size as usize];
    for i in 0..blocks {
        let in_use = usize::try_from(i / 8)
            .ok()
            .and_then(|b| bitmap.get(b))
            .is_some_and(|&byte| byte >> (i % 8) & 1 != 0);
        if !in_use {
            continue;
        }
        let bad = |d: String| corrupt(path, n, format!("$INDEX_ALLOCATION: {d}"));
        vol.read_mapped(
            &alloc.runs,
            i * u64::from(block_size),
            &mut buf,
            false,
            &bad,
        )?;
        let problem = match fixup_signed(&mut buf, b"INDX") {
            Ok(RecordKind::File) => parse_node(&buf, 0x18, &mut out).err(),
            Ok(RecordKind::Blank) => Some("never written, though its bitmap bit is set".into()),
            Err(p) => Some(p),
        };
        if let Some(p) = problem {
            return Err(corrupt(path, n, format!("index block {i}: {p}")));
        }
    }
    Ok(out)
}

/// The `$I30` `$BITMAP` of the index blocks in use, for an allocation of
/// `blocks` index blocks.
fn bitmap(vol: &Volume, dir: &FileRecord, blocks: u64, path: &str) -> Result<Vec<u8>> {
    let n = dir.number;
    match dir.find(AT_BITMAP, "$I30").map(|a| &a.value) {
        Some(Value::Resident(v)) => Ok(v.clone()),
        Some(Value::NonResident(nr)) => {
            // One bit per index block (rounded up to 8 bytes), and never
            // more blocks than the volume holds.
            let volume_blocks = vol.total_clusters.saturating_mul(vol.cluster_size) / 512;
            let cap = blocks.min(volume_blocks) / 8 + 8;
            if nr.data_size > cap {
                return Err(corrupt(
                    path,
                    n,
                    format!("its index $BITMAP claims {} bytes", nr.data_size),
                ));
            }
            let mut v = vec![0u8; nr.data_size as usize];
            let bad = |d: String| corrupt(path, n, format!("its index $BITMAP: {d}"));
            vol.read_mapped(&nr.runs, 0, &mut v, false, &bad)?;
            Ok(v)
        }
        None => Err(corrupt(path, n, "its $INDEX_ALLOCATION has no $BITMAP")),
    }
}

/// Appends the entries of the index node whose header is at `hdr` in `buf`
/// (entries offset and bytes in use, relative to the header).
fn parse_node(buf: &[u8], hdr: usize, out: &mut Vec<IndexEntry>) -> Result<(), String> {
    let (Some(first), Some(used)) = (le32(buf, hdr), le32(buf, hdr + 4)) else {
        return Err(format!("the node header at byte {hdr} is truncated"));
    };
    let start = hdr + first as usize;
    let end = hdr + used as usize;
    if end > buf.len() || start > end {
        return Err(format!(
            "the node's entries ({start}..{end}) do not fit its {} bytes",
            buf.len()
        ));
    }
    let mut p = start;
    loop {
        let (Some(mref), Some(len), Some(key_len), Some(flags)) = (
            le64(buf, p),
            le16(buf, p + 8),
            le16(buf, p + 10),
            le16(buf, p + 12),
        ) else {
            return Err(format!("the entry at byte {p} runs past the node's end"));
        };
        if p + ENTRY_HEADER > end {
            return Err(format!(
                "the entry at byte {p} runs past the node's end ({end})"
            ));
        }
        if flags & ENTRY_LAST != 0 {
            return Ok(());
        }
        let (len, key_len) = (usize::from(len), usize::from(key_len));
        if len < ENTRY_HEADER || !len.is_multiple_of(8) || p + len > end {
            return Err(format!("the entry at byte {p} has an invalid length {len}"));
        }
        if key_len < NAME_OFFSET || ENTRY_HEADER + key_len > len {
            return Err(format!(
                "the entry at byte {p} has an invalid key length {key_len}"
            ));
        }
        let key = &buf[p + ENTRY_HEADER..p + ENTRY_HEADER + key_len];
        let name_len = usize::from(key[0x40]);
        let Some(name) = key.get(NAME_OFFSET..NAME_OFFSET + 2 * name_len) else {
            return Err(format!(
                "the name of the entry at byte {p} ({name_len} characters) runs past its key"
            ));
        };
        out.push(IndexEntry {
            record: mref & 0x0000_FFFF_FFFF_FFFF,
            namespace: key[0x41],
            name: utf16(name),
        });
        p += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index node header at 0 followed by `entries`.
    fn node(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        for e in entries {
            b.extend(e);
        }
        let used = b.len() as u32;
        b[0..4].copy_from_slice(&16u32.to_le_bytes());
        b[4..8].copy_from_slice(&used.to_le_bytes());
        b
    }

    fn entry(record: u64, ns: u8, name: &str) -> Vec<u8> {
        let name: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let key_len = NAME_OFFSET + name.len();
        let len = (ENTRY_HEADER + key_len).div_ceil(8) * 8;
        let mut e = vec![0u8; len];
        e[0..8].copy_from_slice(&record.to_le_bytes());
        e[8..10].copy_from_slice(&(len as u16).to_le_bytes());
        e[10..12].copy_from_slice(&(key_len as u16).to_le_bytes());
        e[0x10 + 0x40] = (name.len() / 2) as u8;
        e[0x10 + 0x41] = ns;
        e[0x10 + NAME_OFFSET..0x10 + key_len].copy_from_slice(&name);
        e
    }

    fn last() -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e[8] = 16;
        e[12] = 2;
        e
    }

    #[test]
    fn entries_and_their_bounds() {
        let b = node(&[entry(64 | 3 << 48, 1, "a"), entry(65, 2, "B~1"), last()]);
        let mut out = Vec::new();
        parse_node(&b, 0, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].record, 64);
        assert_eq!(out[1].namespace, NAMESPACE_DOS);
        // No last entry: the node ends in the middle of nowhere.
        let b = node(&[entry(64, 1, "a")]);
        assert!(
            parse_node(&b, 0, &mut Vec::new())
                .unwrap_err()
                .contains("past the node's end")
        );
        // A name longer than its key.
        let mut e = entry(64, 1, "a");
        e[0x10 + 0x40] = 200;
        let b = node(&[e, last()]);
        assert!(
            parse_node(&b, 0, &mut Vec::new())
                .unwrap_err()
                .contains("runs past its key")
        );
        // A zero entry length cannot loop.
        let mut e = entry(64, 1, "a");
        e[8] = 0;
        let b = node(&[e, last()]);
        assert!(
            parse_node(&b, 0, &mut Vec::new())
                .unwrap_err()
                .contains("invalid length 0")
        );
    }
}
