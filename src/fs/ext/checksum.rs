//! The two checksums ext group descriptors use: crc16 (GDT_CSUM) and
//! crc32c (METADATA_CSUM), in the kernel's raw form (no inversion; the
//! caller passes the seed).

/// Table for the reflected CRC-16 polynomial 0x8005 (0xA001 reflected).
const CRC16_TABLE: [u16; 256] = make_crc16_table();
/// Table for the reflected Castagnoli polynomial (0x82F63B78).
const CRC32C_TABLE: [u32; 256] = make_crc32c_table();

const fn make_crc16_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u16;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xA001
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

const fn make_crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// The kernel's `crc16(crc, data)`.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc = (crc >> 8) ^ CRC16_TABLE[usize::from((crc as u8) ^ b)];
    }
    crc
}

/// The kernel's `crc32c_le(crc, data)` as ext4 uses it (`ext4_chksum`).
pub fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = (crc >> 8) ^ CRC32C_TABLE[usize::from((crc as u8) ^ b)];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // CRC-32C("123456789") = 0xE3069283 with init and final inversion.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
        // CRC-16/ARC("123456789") = 0xBB3D (init 0, no inversion).
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }
}
