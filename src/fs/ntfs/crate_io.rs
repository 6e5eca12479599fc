//! The ntfs crate reads through `Read + Seek`; this adapter serves it from
//! a [`Source`] and keeps the real error when a read fails, so that an
//! unreadable sector is reported as one, with its offset.

use std::io::{self, Read, Seek, SeekFrom};

use super::error::NtfsError;
use crate::error::Error;
use crate::source::Source;

/// `Read + Seek` over the first `size` bytes of a source. When
/// `boot_override` is set, the first sector reads as those bytes (the
/// backup boot sector standing in for an unreadable one).
pub struct CrateReader<'a> {
    src: &'a dyn Source,
    size: u64,
    pos: u64,
    boot_override: Option<&'a [u8]>,
    failure: Option<Error>,
}

impl<'a> CrateReader<'a> {
    /// A reader at offset 0.
    pub fn new(src: &'a dyn Source, size: u64, boot_override: Option<&'a [u8]>) -> Self {
        CrateReader {
            src,
            size: size.min(src.size()),
            pos: 0,
            boot_override,
            failure: None,
        }
    }

    /// The error to report for a crate error met while reading `what`: the
    /// source's own error when a read failed, else the crate's.
    pub fn error(&mut self, what: &'static str, e: ntfs::NtfsError) -> Error {
        self.failure.take().unwrap_or_else(|| {
            NtfsError::Structure {
                what,
                message: e.to_string(),
            }
            .into()
        })
    }
}

impl Read for CrateReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.size.saturating_sub(self.pos)) as usize;
        if n == 0 {
            return Ok(0);
        }
        let out = &mut buf[..n];
        if let Some(boot) = self.boot_override
            && self.pos < boot.len() as u64
        {
            let from = &boot[self.pos as usize..];
            let k = from.len().min(n);
            out[..k].copy_from_slice(&from[..k]);
            self.pos += k as u64;
            return Ok(k);
        }
        match self.src.read_into(out, self.pos) {
            Ok(()) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) => {
                let msg = e.to_string();
                self.failure = Some(e);
                Err(io::Error::other(msg))
            }
        }
    }
}

impl Seek for CrateReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek before the start of the volume"))?;
        Ok(self.pos)
    }
}
