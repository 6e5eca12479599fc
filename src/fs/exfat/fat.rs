//! One exFAT file allocation table, read on demand in 64 KiB windows (a
//! FAT can be hundreds of megabytes; a walk touches the windows of the
//! chains it follows). exFAT files allocated contiguously (NoFatChain)
//! have no FAT chain at all: their FAT entries are meaningless.

use std::collections::{HashMap, HashSet};

use super::boot::Boot;
use crate::bytes::u32le;
use crate::error::{Error, Result};
use crate::source::Source;

/// Bytes of the FAT read at a time.
const WINDOW: u64 = 64 * 1024;
/// Windows cached before the cache is emptied (16 MiB).
const MAX_WINDOWS: usize = 256;
/// The bad-cluster mark.
pub const BAD: u32 = 0xFFFF_FFF7;
/// The end-of-chain mark.
pub const END: u32 = 0xFFFF_FFFF;

/// The FAT a volume uses (the active one on TexFAT volumes).
pub struct FatTable {
    /// Byte offset of the FAT.
    at: u64,
    /// Its length in bytes.
    len: u64,
    windows: HashMap<u64, Vec<u8>>,
    /// Windows that could not be read whole: their entries are read one
    /// by one, so that one bad sector loses only its own entries.
    failed: HashSet<u64>,
}

impl FatTable {
    /// The active FAT of `boot`.
    pub fn new(boot: &Boot) -> Self {
        FatTable {
            at: boot.fat_bytes(boot.active_fat()),
            len: u64::from(boot.fat_length) << boot.bps_shift,
            windows: HashMap::new(),
            failed: HashSet::new(),
        }
    }

    /// Byte offset of the entry of cluster `c`.
    pub fn entry_offset(&self, c: u32) -> u64 {
        self.at + u64::from(c) * 4
    }

    /// The entry of cluster `c` (0 past the FAT's end, which the boot
    /// sector's checks rule out for valid clusters).
    pub fn entry(&mut self, src: &dyn Source, c: u32) -> Result<u32> {
        let off = u64::from(c) * 4;
        if off + 4 > self.len {
            return Ok(0);
        }
        let w = off / WINDOW;
        if self.failed.contains(&w) {
            return Ok(u32le(&src.read_vec(self.at + off, 4)?, 0));
        }
        if !self.windows.contains_key(&w) {
            if self.windows.len() >= MAX_WINDOWS {
                self.windows.clear();
            }
            let start = w * WINDOW;
            let len = WINDOW.min(self.len - start);
            match src.read_vec(self.at + start, len as usize) {
                Ok(v) => {
                    self.windows.insert(w, v);
                }
                Err(Error::Read { .. }) => {
                    self.failed.insert(w);
                    return Ok(u32le(&src.read_vec(self.at + off, 4)?, 0));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self
            .windows
            .get(&w)
            .map_or(0, |v| u32le(v, (off % WINDOW) as usize)))
    }
}
