//! The four checksums btrfs stores in superblocks and tree block headers
//! (`csum_type`): each covers the block from byte 32 (after the checksum
//! field) to its end, and is stored from byte 0, zero-padded to 32 bytes.

use crate::fs::ext::checksum::crc32c;
use sha2::Digest;

/// Size of the checksum field at the start of every superblock and
/// tree block.
pub const CSUM_FIELD: usize = 32;

/// `btrfs_csum_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumType {
    /// 0: CRC-32C, standard form (seed ~0, result inverted), 4 bytes.
    Crc32c,
    /// 1: xxHash64 with seed 0, 8 bytes little-endian.
    Xxhash64,
    /// 2: SHA-256, 32 bytes.
    Sha256,
    /// 3: BLAKE2b with a 256-bit digest, unkeyed, 32 bytes.
    Blake2b,
}

impl CsumType {
    /// The type for a `csum_type` code.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0 => CsumType::Crc32c,
            1 => CsumType::Xxhash64,
            2 => CsumType::Sha256,
            3 => CsumType::Blake2b,
            _ => return None,
        })
    }

    /// The name btrfs-progs prints.
    pub fn name(self) -> &'static str {
        match self {
            CsumType::Crc32c => "crc32c",
            CsumType::Xxhash64 => "xxhash64",
            CsumType::Sha256 => "sha256",
            CsumType::Blake2b => "blake2b",
        }
    }

    /// Bytes of the field the checksum uses.
    pub fn size(self) -> usize {
        match self {
            CsumType::Crc32c => 4,
            CsumType::Xxhash64 => 8,
            CsumType::Sha256 | CsumType::Blake2b => 32,
        }
    }

    /// The checksum of `data`, as stored (the first [`Self::size`] bytes).
    pub fn compute(self, data: &[u8]) -> [u8; CSUM_FIELD] {
        let mut out = [0u8; CSUM_FIELD];
        match self {
            CsumType::Crc32c => out[..4].copy_from_slice(&(!crc32c(!0, data)).to_le_bytes()),
            CsumType::Xxhash64 => {
                out[..8].copy_from_slice(&xxhash_rust::xxh64::xxh64(data, 0).to_le_bytes())
            }
            CsumType::Sha256 => out.copy_from_slice(&sha2::Sha256::digest(data)),
            CsumType::Blake2b => out.copy_from_slice(
                &blake2::Blake2b::<blake2::digest::consts::U32>::digest(data),
            ),
        }
        out
    }

    /// Checks the checksum of a block (superblock or tree block): `Ok` or
    /// `Err((stored, computed))` in hex.
    pub fn verify(self, block: &[u8]) -> Result<(), (String, String)> {
        let n = self.size();
        let computed = self.compute(&block[CSUM_FIELD..]);
        if block[..n] == computed[..n] {
            Ok(())
        } else {
            Err((hex(&block[..n]), hex(&computed[..n])))
        }
    }
}

/// Lower-case hex of `bytes`, with a `0x` prefix.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // CRC-32C("123456789") = 0xE3069283, stored little-endian.
        assert_eq!(
            CsumType::Crc32c.compute(b"123456789")[..4],
            0xE306_9283u32.to_le_bytes()
        );
        // XXH64("", 0) = 0xEF46DB3751D8E999.
        assert_eq!(
            CsumType::Xxhash64.compute(b"")[..8],
            0xEF46_DB37_51D8_E999u64.to_le_bytes()
        );
        assert_eq!(
            hex(&CsumType::Sha256.compute(b"abc")),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // BLAKE2b-256("abc").
        assert_eq!(
            hex(&CsumType::Blake2b.compute(b"abc")),
            "0xbddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }
}
