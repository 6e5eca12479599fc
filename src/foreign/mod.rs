//! Images written by other tools: ntfsclone's special image and partclone's
//! image, formats 0001 and 0002 (formats/foreign-images.md says what is
//! read, byte by byte). Each reader streams its image front to back, so it
//! works on a pipe, and yields the same [`Chunk`]s (extents and their bytes)
//! the restore path hands to its sinks. Every structure is checked before it
//! is trusted; a corrupt or truncated image is a [`ForeignError`] naming the
//! byte offset in the image (and the block, where there is one).
//!
//! [`ntfsclone::NtfscloneWriter`] goes the other way: a [`crate::sink::Sink`]
//! that writes the ntfsclone 10.1 layout.

pub mod ntfsclone;
pub mod partclone;

use std::io::{self, Read};

use crate::copier::Chunk;
use crate::error::{Error, Result};
use crate::image::header::MAGIC as FSIMG_MAGIC;
use crate::report::Report;

pub use ntfsclone::{NtfscloneReader, NtfscloneWriter};
pub use partclone::PartcloneReader;

/// Bytes [`detect`] needs to tell the formats apart.
pub const DETECT_LEN: usize = 16;

/// Used bytes a reader puts in one chunk (at least one block).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The image formats fsimg restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// fsimg's own format (formats/fsimg-image.md).
    Fsimg,
    /// ntfsclone's special image (`ntfsclone --save-image`).
    Ntfsclone,
    /// partclone's image (`partclone.<fs> -c`), format 0001 or 0002.
    Partclone,
}

/// ntfsclone's magic: a NUL, then "ntfsclone-image" (16 bytes).
pub const NTFSCLONE_MAGIC: &[u8; 16] = b"\0ntfsclone-image";
/// partclone's magic: the first 15 bytes of both formats.
pub const PARTCLONE_MAGIC: &[u8; 15] = b"partclone-image";

/// Recognises an image from its first bytes (up to [`DETECT_LEN`]).
pub fn detect(prefix: &[u8]) -> Option<Format> {
    if prefix.starts_with(&FSIMG_MAGIC) {
        Some(Format::Fsimg)
    } else if prefix.starts_with(NTFSCLONE_MAGIC) {
        Some(Format::Ntfsclone)
    } else if prefix.starts_with(PARTCLONE_MAGIC) {
        Some(Format::Partclone)
    } else {
        None
    }
}

/// Reads up to [`DETECT_LEN`] bytes from `r` (fewer only at the end of the
/// input), for [`detect`]; chain them back in front of `r` to read on.
pub fn read_prefix(r: &mut dyn Read, name: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; DETECT_LEN];
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::Read {
                    name: name.to_string(),
                    offset: n as u64,
                    len: (DETECT_LEN - n) as u64,
                    source: e,
                });
            }
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// The first bytes of an unrecognised input, in hex, for the message.
pub fn describe_start(prefix: &[u8]) -> String {
    if prefix.is_empty() {
        return "it is empty".into();
    }
    let hex: Vec<String> = prefix.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("it starts with {}", hex.join(" "))
}

/// A corrupt, truncated or unsupported ntfsclone or partclone image, or a
/// request the ntfsclone writer cannot meet. Every `offset` is a byte offset
/// in the image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForeignError {
    /// Neither an fsimg, an ntfsclone nor a partclone image.
    #[error(
        "not an fsimg image: bad magic at byte 0 (nor an ntfsclone or partclone image: {start})"
    )]
    UnknownFormat {
        /// What the input starts with.
        start: String,
    },
    /// The input ended early.
    #[error(
        "{format} image is truncated: it ends at byte {end}, inside the {what} that starts at byte {offset}"
    )]
    Truncated {
        /// "ntfsclone" or "partclone".
        format: &'static str,
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// Where the input ended.
        end: u64,
    },
    /// The input ended inside a block's data.
    #[error(
        "{format} image is truncated: it ends at byte {end}, inside block {block} (volume byte {volume_offset}), whose data starts at byte {offset}"
    )]
    TruncatedBlock {
        /// "ntfsclone" or "partclone".
        format: &'static str,
        /// The block (cluster) being read.
        block: u64,
        /// Where that block lies in the volume.
        volume_offset: u64,
        /// Where its data starts in the image.
        offset: u64,
        /// Where the input ended.
        end: u64,
    },
    /// A field holds a value the format does not allow.
    #[error("{format} image: invalid {field} at byte {offset}: {value}")]
    Field {
        /// "ntfsclone" or "partclone".
        format: &'static str,
        /// Byte offset of the field.
        offset: u64,
        /// The field's name.
        field: &'static str,
        /// The value found, and what was expected where that helps.
        value: String,
    },
    /// An image version this reader does not know.
    #[error("{format} image version {version} is not supported (fsimg reads {supported})")]
    Version {
        /// "ntfsclone" or "partclone".
        format: &'static str,
        /// The version found.
        version: String,
        /// The versions fsimg reads.
        supported: &'static str,
    },
    /// partclone's header or bitmap CRC does not match.
    #[error(
        "partclone image {what} checksum mismatch at byte {offset}: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )]
    Crc {
        /// "header" or "bitmap".
        what: &'static str,
        /// Where the CRC is stored.
        offset: u64,
        /// The stored CRC.
        stored: u32,
        /// The CRC computed.
        computed: u32,
    },
    /// A data checksum does not match: the blocks it covers are corrupt.
    #[error(
        "partclone image: {kind} checksum mismatch at byte {offset} for the {blocks} block(s) ending at block {block} (blocks {first_block}..={block}): stored {stored}, computed {computed}; the image is corrupt (--ignore-checksums restores it anyway)"
    )]
    BlockChecksum {
        /// "CRC32", "XXH64", ...
        kind: &'static str,
        /// Where the checksum is stored in the image.
        offset: u64,
        /// The last block it covers (partclone's block_id).
        block: u64,
        /// The first block it covers.
        first_block: u64,
        /// How many stored blocks it covers.
        blocks: u64,
        /// The stored checksum, hex.
        stored: String,
        /// The checksum computed, hex.
        computed: String,
    },
    /// An ntfsclone command byte other than gap (0) or cluster (1).
    #[error(
        "ntfsclone image: invalid command byte 0x{code:02x} at byte {offset} (expected 0x00 for a gap or 0x01 for a cluster)"
    )]
    BadCommand {
        /// Where the byte is.
        offset: u64,
        /// The byte found.
        code: u8,
    },
    /// An ntfsclone gap of 0 clusters, or one that leaves the volume.
    #[error(
        "ntfsclone image: gap of {count} clusters at byte {offset} goes from cluster {from} to {to}, outside clusters 0..={last}"
    )]
    BadGap {
        /// Where the gap record is.
        offset: u64,
        /// Its count.
        count: i64,
        /// The cluster it starts from.
        from: u64,
        /// Where it would lead.
        to: i128,
        /// The last cluster an image may hold (the backup boot sector's).
        last: u64,
    },
    /// An ntfsclone cluster that lies past the end of the device.
    #[error(
        "ntfsclone image: cluster {cluster} at byte {offset} starts at volume byte {volume_offset}, at or past the end of the device ({device_size} bytes)"
    )]
    ClusterPastEnd {
        /// Where the cluster record is.
        offset: u64,
        /// The cluster.
        cluster: u64,
        /// Where it would start in the volume.
        volume_offset: u64,
        /// The device size from the header.
        device_size: u64,
    },
    /// Data that goes backwards (an ntfsclone metadata image) cannot be
    /// restored to standard output.
    #[error(
        "{format} image at byte {offset} goes back to volume byte {volume_offset} (an ntfsclone metadata image): it can be restored to a file or a device, not to standard output"
    )]
    Backward {
        /// "ntfsclone".
        format: &'static str,
        /// Where in the image.
        offset: u64,
        /// The volume byte it goes back to.
        volume_offset: u64,
    },
    /// Bytes after the end of the image.
    #[error("{format} image has trailing data after its end, at byte {offset}")]
    TrailingData {
        /// "ntfsclone" or "partclone".
        format: &'static str,
        /// Where the extra bytes start.
        offset: u64,
    },
    /// Data checksums that did not match, each reported as it was found
    /// (`verify --ignore-checksums`).
    #[error(
        "partclone image: {count} checksum mismatch(es), listed above: the blocks they cover are corrupt"
    )]
    Mismatches {
        /// How many.
        count: u64,
    },
    /// `--format ntfsclone` on a volume that is not NTFS.
    #[error(
        "{name} holds {fs}, and --format ntfsclone writes NTFS volumes only (ntfsclone restores nothing else); save it in fsimg's own format (leave out --format)"
    )]
    NotNtfs {
        /// The source.
        name: String,
        /// The filesystem found.
        fs: &'static str,
    },
    /// The data handed to the ntfsclone writer does not fit its layout.
    #[error("cannot write an ntfsclone image: {why}")]
    Unwritable {
        /// What does not fit.
        why: String,
    },
}

/// What a full read of a foreign image could and could not check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Data checksums verified (partclone).
    pub checksums: u64,
    /// Data checksums that did not match (only with --ignore-checksums).
    pub mismatches: u64,
    /// One line on what was checked.
    pub what: String,
    /// One line on what the format does not let fsimg check, if anything.
    pub unchecked: Option<String>,
}

/// Options of the foreign readers.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Go on past data checksum mismatches, warning about each
    /// (`--ignore-checksums`, partclone's `--ignore_crc`).
    pub ignore_checksums: bool,
}

/// A streaming reader of an ntfsclone or partclone image.
pub trait ForeignReader: Send {
    /// The format and version ("ntfsclone 10.1", "partclone 0002").
    fn format(&self) -> String;

    /// Lines for `fsimg info`.
    fn describe(&self) -> Vec<(&'static str, String)>;

    /// Bytes the restored volume spans: the target must hold this much.
    fn device_size(&self) -> u64;

    /// Used bytes the header announces (for progress).
    fn used_bytes(&self) -> u64;

    /// The next chunk of used blocks, in image order; `None` at the end of
    /// the image. Warnings (a checksum mismatch with `ignore_checksums`, a
    /// missing backup boot sector) go to `report`.
    fn next_chunk(&mut self, report: &dyn Report) -> Result<Option<Chunk>>;

    /// After the last chunk: the offset of any bytes that follow the image.
    fn trailing(&mut self) -> Result<Option<u64>>;

    /// What reading the image through has checked.
    fn checked(&self) -> Checked;

    /// Refuse data that goes backwards, for a target written front to back
    /// (standard output). Only ntfsclone metadata images go backwards.
    fn set_sequential(&mut self, _on: bool) {}

    /// What the user should know before this image is restored.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A byte stream with its position, turning the end of input into
/// truncation errors that name what was being read and where.
pub(crate) struct Input<R> {
    r: R,
    name: String,
    format: &'static str,
    pos: u64,
    /// Bytes given back by [`Input::unread`], read again first.
    back: Vec<u8>,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(r: R, name: &str, format: &'static str) -> Self {
        Input {
            r,
            name: name.to_string(),
            format,
            pos: 0,
            back: Vec::new(),
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Reads as much of `buf` as the input has; returns how much.
    pub(crate) fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        if !self.back.is_empty() {
            let n = self.back.len().min(buf.len());
            buf[..n].copy_from_slice(&self.back[..n]);
            self.back.drain(..n);
            done = n;
            self.pos += n as u64;
        }
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Read {
                        name: self.name.clone(),
                        offset: self.pos,
                        len: (buf.len() - done) as u64,
                        source: e,
                    });
                }
            }
        }
        Ok(done)
    }

    /// Appends up to `len` bytes to `v`, growing it a step at a time as
    /// they arrive, so that a length from a hostile header cannot make us
    /// allocate much more than the input holds. Returns the bytes appended
    /// (fewer than `len` only at the end of input).
    pub(crate) fn append(&mut self, v: &mut Vec<u8>, len: usize) -> Result<usize> {
        const STEP: usize = 1 << 20;
        let mut done = 0;
        while done < len {
            let at = v.len();
            let n = (len - done).min(STEP);
            v.resize(at + n, 0);
            let got = self.read_some(&mut v[at..])?;
            done += got;
            if got < n {
                v.truncate(at + got);
                break;
            }
        }
        Ok(done)
    }

    /// Fills `buf`; the end of input is truncation of `what` (at `start`).
    pub(crate) fn fill(&mut self, buf: &mut [u8], what: &'static str, start: u64) -> Result<()> {
        if self.read_some(buf)? < buf.len() {
            return Err(self.truncated(what, start));
        }
        Ok(())
    }

    /// The truncation error for `what` starting at `start`, at the current
    /// position.
    pub(crate) fn truncated(&self, what: &'static str, start: u64) -> Error {
        ForeignError::Truncated {
            format: self.format,
            what,
            offset: start,
            end: self.pos,
        }
        .into()
    }

    /// One byte, or `None` at the end of input.
    pub(crate) fn byte(&mut self) -> Result<Option<u8>> {
        let mut b = [0u8; 1];
        Ok((self.read_some(&mut b)? == 1).then_some(b[0]))
    }

    /// Skips `n` bytes of `what` (at `start`).
    pub(crate) fn skip(&mut self, n: u64, what: &'static str, start: u64) -> Result<()> {
        if self.skip_some(n)? < n {
            return Err(self.truncated(what, start));
        }
        Ok(())
    }

    /// Skips up to `n` bytes; returns how many (fewer only at the end of
    /// input).
    pub(crate) fn skip_some(&mut self, n: u64) -> Result<u64> {
        let mut buf = [0u8; 4096];
        let mut done = 0;
        while done < n {
            let k = (n - done).min(buf.len() as u64) as usize;
            let got = self.read_some(&mut buf[..k])?;
            done += got as u64;
            if got < k {
                break;
            }
        }
        Ok(done)
    }

    /// Gives bytes just read back to the input, to be read again.
    pub(crate) fn unread(&mut self, bytes: &[u8]) {
        let mut v = bytes.to_vec();
        v.extend_from_slice(&self.back);
        self.back = v;
        self.pos -= bytes.len() as u64;
    }

    /// Whether any byte follows; if so, its offset.
    pub(crate) fn trailing(&mut self) -> Result<Option<u64>> {
        let at = self.pos;
        Ok(self.byte()?.map(|_| at))
    }
}

/// Fills `buf` from byte `offset` of the image `file` with positioned
/// reads (for random access to the volume inside an image): bytes of
/// `block` (volume byte `volume_offset`), whose data starts at image byte
/// `start`. The end of the file there is an `UnexpectedEof` error that says
/// where the image ends and where the block lies ([`ForeignError::TruncatedBlock`]);
/// any other failure names the image byte too.
pub(crate) fn read_block_at(
    file: &std::fs::File,
    buf: &mut [u8],
    offset: u64,
    format: &'static str,
    block: u64,
    volume_offset: u64,
    start: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => {
                // The read may start past the end.
                let end = file.metadata().map_or(at, |m| m.len().min(at));
                let err = ForeignError::TruncatedBlock {
                    format,
                    block,
                    volume_offset,
                    offset: start,
                    end,
                };
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, err));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{format} image: cannot read block {block} (volume byte {volume_offset}) at byte {at}: {e}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Formats a little-endian stored checksum as one hex number.
pub(crate) fn hex_le(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes.iter().rev() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
