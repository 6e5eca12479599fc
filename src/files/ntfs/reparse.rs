//! Reparse points: NTFS symbolic links and junctions become symlinks;
//! every other tag (WOF/CompactOS, deduplication, cloud files…) is named
//! in an `Unsupported` error when the file is read.
//!
//! The `$REPARSE_POINT` value is a tag (u32), a data length (u16), two
//! reserved bytes, then the data. Symlink and junction data hold the
//! offsets and lengths of a substitute name and a print name in a path
//! buffer (after 8 more bytes of flags for a symlink).

use super::file::{le16, le32, utf16};

/// Tag of an NTFS symbolic link.
pub const TAG_SYMLINK: u32 = 0xA000_000C;
/// Tag of a junction (mount point).
pub const TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// Symlink flag: the target is relative to the link's directory.
const SYMLINK_RELATIVE: u32 = 0x0000_0001;

/// The tag of a `$REPARSE_POINT` value.
pub fn tag(value: &[u8]) -> Option<u32> {
    le32(value, 0)
}

/// The POSIX target of a symlink or junction reparse point `value`, for
/// a link whose directory is `depth` levels below the root. Relative
/// targets keep their form with `/` for `\`; absolute ones (`\??\C:\a\b`)
/// are taken to be on this volume and made relative (`../../a/b`), so an
/// extracted tree stays self-contained. Returns `Ok(None)` for other tags.
pub fn link_target(value: &[u8], depth: usize) -> Result<Option<String>, String> {
    let Some(tag) = tag(value) else {
        return Err(format!(
            "its reparse point is {} bytes, too short",
            value.len()
        ));
    };
    let (buffer, relative) = match tag {
        TAG_SYMLINK => (
            20,
            le32(value, 16).is_some_and(|f| f & SYMLINK_RELATIVE != 0),
        ),
        TAG_MOUNT_POINT => (16, false),
        _ => return Ok(None),
    };
    let data_len = usize::from(le16(value, 4).unwrap_or(0));
    let data_end = 8 + data_len;
    let (Some(off), Some(len)) = (le16(value, 8), le16(value, 10)) else {
        return Err("its link reparse data is truncated".into());
    };
    let start = buffer + usize::from(off);
    let end = start + usize::from(len);
    if end > data_end || end > value.len() || len % 2 != 0 {
        return Err(format!(
            "its link target ({len} bytes at {off}) lies outside its {data_len} bytes of reparse data"
        ));
    }
    let name = String::from_utf16_lossy(&utf16(&value[start..end]));
    let name = name.replace('\\', "/");
    if relative {
        return Ok(Some(name));
    }
    let bare = name
        .strip_prefix("/??/")
        .or_else(|| name.strip_prefix("//?/"))
        .unwrap_or(&name);
    let mut chars = bare.chars();
    let drive =
        matches!((chars.next(), chars.next()), (Some(c), Some(':')) if c.is_ascii_alphabetic());
    if !drive {
        // A volume GUID or a network path: nothing on this volume.
        return Ok(Some(bare.to_string()));
    }
    let rest = bare[2..].trim_start_matches('/');
    let up = "../".repeat(depth);
    let target = match (up.is_empty(), rest.is_empty()) {
        (true, true) => ".".to_string(),
        (false, true) => up.trim_end_matches('/').to_string(),
        _ => format!("{up}{rest}"),
    };
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink reparse value with substitute name `sub`.
    fn symlink(sub: &str, flags: u32) -> Vec<u8> {
        let name: Vec<u8> = sub.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut v = Vec::new();
        v.extend(TAG_SYMLINK.to_le_bytes());
        v.extend(((12 + name.len()) as u16).to_le_bytes());
        v.extend([0, 0]);
        v.extend(0u16.to_le_bytes());
        v.extend((name.len() as u16).to_le_bytes());
        v.extend(0u16.to_le_bytes());
        v.extend(0u16.to_le_bytes());
        v.extend(flags.to_le_bytes());
        v.extend(name);
        v
    }

    #[test]
    fn symlink_targets() {
        assert_eq!(
            link_target(&symlink("..\\a\\b.txt", 1), 3),
            Ok(Some("../a/b.txt".into()))
        );
        assert_eq!(
            link_target(&symlink("\\??\\C:\\Users\\x", 0), 2),
            Ok(Some("../../Users/x".into()))
        );
        assert_eq!(
            link_target(&symlink("\\??\\C:\\", 0), 0),
            Ok(Some(".".into()))
        );
        let mut bad = symlink("x", 1);
        bad[10] = 0xFF;
        assert!(link_target(&bad, 0).unwrap_err().contains("outside"));
        let mut wof = symlink("x", 1);
        wof[0..4].copy_from_slice(&0x8000_0017u32.to_le_bytes());
        assert_eq!(link_target(&wof, 0), Ok(None));
    }
}
