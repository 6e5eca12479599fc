//! One copy of the file allocation table, read on demand in 64 KiB
//! windows (a FAT32 table can be megabytes; a walk touches a few windows),
//! shared by the metadata walk and the file reader.

use std::collections::HashMap;

use super::bpb::{Bpb, FatType};
use crate::bytes::{u16le, u32le};
use crate::error::Result;
use crate::source::Source;

/// Bytes of the FAT read at a time.
const FAT_WINDOW: u64 = 64 * 1024;
/// Windows cached before the cache is emptied (16 MiB).
const MAX_WINDOWS: usize = 256;

/// One FAT copy, read in windows on demand.
pub(crate) struct FatTable {
    /// Byte offset of the copy.
    at: u64,
    /// Its length in bytes.
    len: u64,
    ty: FatType,
    windows: HashMap<u64, Vec<u8>>,
}

impl FatTable {
    /// FAT copy `copy` (0-based) of the volume `bpb` describes.
    pub(crate) fn new(bpb: &Bpb, copy: u32) -> Self {
        FatTable {
            at: bpb.fat_offset(copy),
            len: u64::from(bpb.fat_size) * u64::from(bpb.bytes_per_sector),
            ty: bpb.fat_type,
            windows: HashMap::new(),
        }
    }

    /// The entry of cluster `n` (FAT32's top four bits dropped) and the
    /// byte offset of the volume it was read from.
    pub(crate) fn entry(&mut self, src: &dyn Source, n: u32) -> Result<(u32, u64)> {
        let n64 = u64::from(n);
        let (off, width) = match self.ty {
            FatType::Fat12 => (n64 + n64 / 2, 2),
            FatType::Fat16 => (n64 * 2, 2),
            FatType::Fat32 => (n64 * 4, 4),
        };
        let mut raw = [0u8; 4];
        for (i, r) in raw.iter_mut().enumerate().take(width) {
            *r = self.byte(src, off + i as u64)?;
        }
        let v = match self.ty {
            FatType::Fat12 => {
                let v = u16le(&raw, 0);
                u32::from(if n % 2 == 1 { v >> 4 } else { v & 0xFFF })
            }
            FatType::Fat16 => u32::from(u16le(&raw, 0)),
            FatType::Fat32 => u32le(&raw, 0) & 0x0FFF_FFFF,
        };
        Ok((v, self.at + off))
    }

    /// Byte `off` of the FAT (0 past its end, which the boot sector's
    /// checks rule out for cluster entries).
    fn byte(&mut self, src: &dyn Source, off: u64) -> Result<u8> {
        if off >= self.len {
            return Ok(0);
        }
        let w = off / FAT_WINDOW;
        if !self.windows.contains_key(&w) {
            if self.windows.len() >= MAX_WINDOWS {
                self.windows.clear();
            }
            let start = w * FAT_WINDOW;
            let len = FAT_WINDOW.min(self.len - start);
            self.windows
                .insert(w, src.read_vec(self.at + start, len as usize)?);
        }
        Ok(self
            .windows
            .get(&w)
            .and_then(|v| v.get((off % FAT_WINDOW) as usize))
            .copied()
            .unwrap_or(0))
    }
}
