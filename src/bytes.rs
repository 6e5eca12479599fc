//! Field readers for on-disk structures: little-endian (most formats) and
//! big-endian (XFS).
//!
//! Callers pass a slice they have already checked to be long enough for the
//! structure; an out-of-range offset is a programming error, not bad input.

/// Reads a little-endian `u16` at `offset`.
#[track_caller]
pub fn u16le(bytes: &[u8], offset: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&bytes[offset..offset + 2]);
    u16::from_le_bytes(b)
}

/// Reads a little-endian `u32` at `offset`.
#[track_caller]
pub fn u32le(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian `u64` at `offset`.
#[track_caller]
pub fn u64le(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(b)
}

/// Reads a big-endian `u16` at `offset`.
#[track_caller]
pub fn u16be(bytes: &[u8], offset: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&bytes[offset..offset + 2]);
    u16::from_be_bytes(b)
}

/// Reads a big-endian `u32` at `offset`.
#[track_caller]
pub fn u32be(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_be_bytes(b)
}

/// Reads a big-endian `u64` at `offset`.
#[track_caller]
pub fn u64be(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_be_bytes(b)
}

/// Joins the high and low halves of a 64-bit on-disk quantity.
pub fn hilo(hi: u32, lo: u32) -> u64 {
    (u64::from(hi) << 32) | u64::from(lo)
}
