//! LZNT1, the compression of NTFS compressed files.
//!
//! A compressed compression unit (16 clusters of decompressed data) is a
//! sequence of chunks, each decompressing to at most 4096 bytes. A chunk
//! starts with a 16-bit header: bits 0–11 are the chunk's data size minus
//! one, bits 12–14 the signature 3, bit 15 set when the chunk is
//! compressed. A header of 0 ends the unit early (the rest reads as
//! zeros). An uncompressed chunk holds its bytes as they are. A compressed
//! chunk is groups of a flag byte and 8 tokens: a 0 bit is a literal byte,
//! a 1 bit a 16-bit back-reference whose split between displacement and
//! length depends on how far into the 4096-byte chunk it is (4 displacement
//! bits up to byte 16, 5 up to 32, … 12 bits at the end).

/// Bytes a chunk decompresses to (the last one of a stream may be short).
pub const CHUNK: usize = 4096;
/// The signature in bits 12–14 of every chunk header.
const SIGNATURE: u16 = 3;

/// Decompresses the chunks in `input` into `out` (one compression unit,
/// zeroed by the caller), each chunk at the next multiple of 4096 bytes.
/// Returns the bytes of `out` produced, or what is wrong, with the byte
/// offset in `input`.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut at = 0usize;
    let mut produced = 0usize;
    let mut chunk_start = 0usize;
    while at + 2 <= input.len() {
        let header = u16::from_le_bytes([input[at], input[at + 1]]);
        if header == 0 {
            break;
        }
        if (header >> 12) & 7 != SIGNATURE {
            return Err(format!(
                "LZNT1 chunk header 0x{header:04x} at byte {at} has a bad signature"
            ));
        }
        let size = usize::from(header & 0x0FFF) + 1;
        let data = at + 2;
        let end = data + size;
        if end > input.len() {
            return Err(format!(
                "LZNT1 chunk at byte {at} claims {size} bytes, past the end of the {} compressed bytes",
                input.len()
            ));
        }
        if chunk_start >= out.len() {
            return Err(format!(
                "LZNT1 chunk at byte {at} lies past the {} bytes of the compression unit",
                out.len()
            ));
        }
        let limit = (chunk_start + CHUNK).min(out.len());
        let dest = &mut out[chunk_start..limit];
        let n = if header & 0x8000 == 0 {
            if size > dest.len() {
                return Err(format!(
                    "uncompressed LZNT1 chunk at byte {at} holds {size} bytes, more than {}",
                    dest.len()
                ));
            }
            dest[..size].copy_from_slice(&input[data..end]);
            size
        } else {
            chunk(&input[data..end], dest).map_err(|p| format!("LZNT1 chunk at byte {at}: {p}"))?
        };
        produced = chunk_start + n;
        chunk_start += CHUNK;
        at = end;
    }
    Ok(produced)
}

/// Decompresses one compressed chunk's data into `dest` (at most 4096
/// bytes); returns the bytes written.
fn chunk(src: &[u8], dest: &mut [u8]) -> Result<usize, String> {
    let mut i = 0usize;
    let mut o = 0usize;
    while i < src.len() {
        let flags = src[i];
        i += 1;
        for bit in 0..8 {
            if i >= src.len() {
                break;
            }
            if flags >> bit & 1 == 0 {
                let Some(d) = dest.get_mut(o) else {
                    return Err(format!("it decompresses to more than {} bytes", dest.len()));
                };
                *d = src[i];
                i += 1;
                o += 1;
                continue;
            }
            let Some(t) = src.get(i..i + 2) else {
                return Err(format!("a back-reference at byte {i} is truncated"));
            };
            let token = u16::from_le_bytes([t[0], t[1]]);
            i += 2;
            let (back, len) = split(token, o).ok_or_else(|| {
                format!("a back-reference at byte {} comes before any data", i - 2)
            })?;
            if back > o {
                return Err(format!(
                    "a back-reference at byte {} reaches {back} bytes back from byte {o}",
                    i - 2
                ));
            }
            if o + len > dest.len() {
                return Err(format!(
                    "a back-reference at byte {} copies {len} bytes past the {}-byte chunk",
                    i - 2,
                    dest.len()
                ));
            }
            for k in o..o + len {
                dest[k] = dest[k - back];
            }
            o += len;
        }
    }
    Ok(o)
}

/// Splits a back-reference token met at byte `pos` of the chunk into
/// (displacement, length). The displacement takes as many bits as
/// needed to reach the chunk's start (at least 4), the length the rest.
fn split(token: u16, pos: usize) -> Option<(usize, usize)> {
    if pos == 0 {
        return None;
    }
    let mut disp_bits = 4u32;
    let mut i = pos - 1;
    while i >= 0x10 {
        i >>= 1;
        disp_bits += 1;
    }
    let disp_bits = disp_bits.min(12);
    let len_bits = 16 - disp_bits;
    let back = usize::from(token >> len_bits) + 1;
    let len = usize::from(token & ((1u16 << len_bits) - 1)) + 3;
    Some((back, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "abc" then a back-reference of 3 bytes, 9 long: "abcabcabcabc".
    #[test]
    fn literal_and_back_reference() {
        let input = [0x05, 0xB0, 0x08, b'a', b'b', b'c', 0x06, 0x20, 0, 0];
        let mut out = vec![0u8; 16];
        assert_eq!(decompress(&input, &mut out), Ok(12));
        assert_eq!(&out[..12], b"abcabcabcabc");
        assert_eq!(&out[12..], &[0; 4]);
    }

    /// The displacement/length split moves with the position.
    #[test]
    fn split_depends_on_the_position() {
        assert_eq!(split(0x2006, 3), Some((3, 9)));
        assert_eq!(split(0xF000, 16), Some((16, 3)));
        // At byte 17, 5 displacement bits: 0x0800 is displacement 2.
        assert_eq!(split(0x0800, 17), Some((2, 3)));
        // At the end of a chunk, 12 bits of displacement and 4 of length.
        assert_eq!(split(0xFFFF, 4095), Some((4096, 18)));
        assert_eq!(split(0x0001, 0), None);
    }

    /// An uncompressed chunk, then a compressed one, each at its 4 KiB.
    #[test]
    fn chunks_start_every_4096_bytes() {
        let mut input = vec![0xFF, 0x3F]; // uncompressed, 4096 bytes
        input.extend((0..4096).map(|i| i as u8));
        input.extend([0x01, 0xB0, 0x00, b'z']); // compressed, one literal
        let mut out = vec![0u8; 16384];
        assert_eq!(decompress(&input, &mut out), Ok(4097));
        assert_eq!(out[4095], 0xFF);
        assert_eq!(out[4096], b'z');
        assert!(out[4097..].iter().all(|&b| b == 0));
    }

    #[test]
    fn corrupt_chunks_are_errors() {
        let mut out = vec![0u8; 8192];
        // Length past the input.
        assert_eq!(
            decompress(&[0x10, 0xB0, 0x00, b'a'], &mut out),
            Err(
                "LZNT1 chunk at byte 0 claims 17 bytes, past the end of the 4 compressed bytes"
                    .into()
            )
        );
        // Back-reference before any data.
        assert!(
            decompress(&[0x02, 0xB0, 0x01, 0x00, 0x00], &mut out)
                .unwrap_err()
                .contains("comes before any data")
        );
        // Back-reference too far back: at byte 1, displacement 2.
        assert!(
            decompress(&[0x03, 0xB0, 0x02, b'a', 0x00, 0x10], &mut out)
                .unwrap_err()
                .contains("reaches 2 bytes back from byte 1")
        );
        // Bad signature.
        assert!(
            decompress(&[0x00, 0x80, 0x00], &mut out)
                .unwrap_err()
                .contains("bad signature")
        );
        // More chunks than the unit holds.
        let mut small = vec![0u8; 4096];
        assert!(
            decompress(
                &[0x01, 0xB0, 0x00, b'a', 0x01, 0xB0, 0x00, b'b'],
                &mut small
            )
            .unwrap_err()
            .contains("past the 4096 bytes")
        );
    }
}
