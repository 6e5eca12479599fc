//! `fsimg cat`: a file's contents to standard output, streamed in large
//! reads (each one maps onto the few records or clusters that hold it).

use std::io::Write;

use crate::error::{Error, Result};
use crate::files::walk;
use crate::files::{FileError, Kind, Tree};

/// Bytes read from the volume per call.
pub const READ_SIZE: usize = 1 << 20;

/// Writes the contents of `paths` (symlinks followed) to `out`, one after
/// the other; returns the bytes written.
pub fn cat(tree: &dyn Tree, paths: &[String], out: &mut dyn Write) -> Result<u64> {
    let mut total = 0;
    let mut buf = vec![0u8; READ_SIZE];
    for path in paths {
        let found = walk::resolve(tree, path, true)?;
        if found.meta.kind == Kind::Dir {
            return Err(FileError::IsADirectory { path: path.clone() }.into());
        }
        if found.meta.kind != Kind::File {
            return Err(FileError::NotAFile {
                path: path.clone(),
                kind: found.meta.kind,
            }
            .into());
        }
        let mut file = walk::open(tree, &found)?;
        let mut offset = 0u64;
        while offset < found.meta.size {
            let want = (found.meta.size - offset).min(READ_SIZE as u64) as usize;
            let n = file.read_at(offset, &mut buf[..want])?;
            if n == 0 {
                return Err(FileError::Corrupt {
                    path: found.path.clone(),
                    what: "file".into(),
                    detail: format!(
                        "its data ends at byte {offset} of the {} its size says",
                        found.meta.size
                    ),
                }
                .into());
            }
            out.write_all(&buf[..n])
                .map_err(|e| Error::io("cannot write", "standard output", e))?;
            offset += n as u64;
        }
        total += offset;
    }
    out.flush()
        .map_err(|e| Error::io("cannot write", "standard output", e))?;
    Ok(total)
}
