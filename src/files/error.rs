//! What can go wrong reading files out of a volume.

use thiserror::Error;

/// A file, directory or structure that cannot be read.
#[derive(Debug, Error)]
pub enum FileError {
    /// No entry of that name.
    #[error("no such file or directory: {path}")]
    NotFound {
        /// The path asked for.
        path: String,
    },

    /// A path component that must be a directory is not.
    #[error("not a directory: {path}")]
    NotADirectory {
        /// The path of the non-directory.
        path: String,
    },

    /// `extract` would replace something that exists.
    #[error("{path} exists; {hint}")]
    Exists {
        /// The existing path on this machine.
        path: String,
        /// What to do about it.
        hint: &'static str,
    },

    /// A directory where a file is needed.
    #[error("is a directory: {path}")]
    IsADirectory {
        /// The path asked for.
        path: String,
    },

    /// A device node, FIFO or socket where a regular file is needed.
    #[error("not a regular file ({kind:?}): {path}")]
    NotAFile {
        /// The path asked for.
        path: String,
        /// What it is.
        kind: super::Kind,
    },

    /// A filesystem structure is corrupt: `what` names it ("inode 12",
    /// "MFT record 40", "directory cluster 77"), `path` the file that led
    /// to it.
    #[error("{path}: corrupt {what}: {detail}")]
    Corrupt {
        /// The file being read.
        path: String,
        /// The structure ("inode 12", "MFT record 40").
        what: String,
        /// What is wrong with it.
        detail: String,
    },

    /// A file fsimg cannot decode (encrypted, an unknown reparse point,
    /// an unknown compression).
    #[error("{path}: cannot read {what}")]
    Unsupported {
        /// The file.
        path: String,
        /// What it is ("an encrypted file", "a reparse point of tag 0x...").
        what: String,
    },

    /// A directory entry holds a name that cannot be a file name (`/`,
    /// NUL, empty, `.` or `..`): extracting it could write outside the
    /// target directory.
    #[error(
        "{dir}: directory entry with an invalid name {name:?} (a name must not be empty, '.', '..', or hold '/' or NUL)"
    )]
    BadName {
        /// The directory holding it.
        dir: String,
        /// The name, lossily decoded.
        name: String,
    },
}

/// Checks a name read from a directory: never empty, `.`, `..`, and
/// without `/` or NUL.
pub fn check_name(dir: &str, name: &[u8]) -> Result<(), FileError> {
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(FileError::BadName {
            dir: dir.to_string(),
            name: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(())
}
