//! The special image format (see formats/fsimg-image.md).

/// A corrupt, truncated or unsupported special image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// The image does not start with the magic.
    #[error("not an fsimg image: bad magic at byte {offset}")]
    BadMagic {
        /// Byte offset in the image.
        offset: u64,
    },
}
