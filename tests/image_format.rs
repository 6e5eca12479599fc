//! Corruption and robustness tests of the special image format at library
//! level: every damaged image must give the exact error the format calls
//! for, at the exact offset, never a panic and never silently wrong data.
//!
//! Images are made in memory by `ImageWriter` (fed by the copier or by
//! `Sink::write_chunk`); the tests find the structures in them with their
//! own little parser of formats/fsimg-image.md and re-seal hand-edited
//! structures with their own CRCs.

mod common;

use std::io::{Cursor, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use common::Rng;
use fsimg::Error;
use fsimg::allocmap::AllocationMap;
use fsimg::copier::{self, Chunk, CopyOptions, Extent};
use fsimg::image::{Header, ImageError, ImageReader, ImageWriter, header};
use fsimg::ops::{ImageSummary, read_records};
use fsimg::report::Silent;
use fsimg::sink::Sink;
use fsimg::source::MemSource;

// ---------------------------------------------------------------------------
// Helpers: PRNG, building, reading, parsing.

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn make_header(map: &AllocationMap, level: Option<i32>, max_record: u32) -> Header {
    Header {
        minor: header::MINOR,
        fs: 1,
        flags: 0,
        cluster_size: map.cluster_size(),
        device_size: map.device_size(),
        total_clusters: map.total_clusters(),
        used_clusters: map.used_clusters(),
        used_bytes: map.used_bytes(),
        compression: if level.is_some() {
            header::COMPRESSION_ZSTD
        } else {
            header::COMPRESSION_NONE
        },
        max_record,
        writer: "image_format test".into(),
    }
}

/// Saves the used clusters of `volume` as an image, in records of at most
/// `chunk_bytes` (rounded down to whole clusters, at least one).
fn save(
    volume: &[u8],
    map: &AllocationMap,
    level: Option<i32>,
    threads: usize,
    chunk_bytes: u64,
) -> Vec<u8> {
    let cs = u64::from(map.cluster_size());
    let max_record = ((chunk_bytes / cs).max(1) * cs) as u32;
    let header = make_header(map, level, max_record);
    let mut w = ImageWriter::new(Vec::new(), "memory", &header, level, threads).unwrap();
    let src = MemSource::new(volume.to_vec(), "volume");
    let opts = CopyOptions {
        chunk_bytes: u64::from(max_record),
        ..CopyOptions::default()
    };
    copier::copy(&src, map, &mut w, &opts, &Silent).unwrap();
    w.finish().unwrap();
    w.into_inner()
}

/// Reads a whole image through `ops::read_records`.
fn read(img: &[u8], threads: usize) -> fsimg::Result<(Vec<Chunk>, ImageSummary)> {
    let reader = ImageReader::new(Cursor::new(img.to_vec()), "test")?;
    let mut chunks = Vec::new();
    let summary = read_records(reader, threads, &Silent, |c| {
        chunks.push(c);
        Ok(None)
    })?;
    Ok((chunks, summary))
}

/// The image error a damaged image gives.
#[track_caller]
fn image_err(img: &[u8], threads: usize) -> ImageError {
    match read(img, threads) {
        Err(Error::Image(e)) => e,
        Err(e) => panic!("not an image error: {e}"),
        Ok(_) => panic!("a damaged image was accepted"),
    }
}

/// A structure after the header, as this test's own parser finds it.
#[derive(Clone, Copy, Debug)]
enum Part {
    Record {
        offset: usize,
        table_len: usize,
        stored_len: usize,
        zstd: bool,
    },
    Trailer {
        offset: usize,
        len: usize,
    },
}

impl Part {
    fn offset(&self) -> usize {
        match *self {
            Part::Record { offset, .. } | Part::Trailer { offset, .. } => offset,
        }
    }
    fn end(&self) -> usize {
        match *self {
            Part::Record {
                offset,
                table_len,
                stored_len,
                ..
            } => offset + 36 + table_len + stored_len,
            Part::Trailer { offset, len } => offset + len,
        }
    }
}

/// The records and trailer of a valid image, from the spec's layout.
fn parts(img: &[u8]) -> Vec<Part> {
    let mut at = u32le(img, 12) as usize;
    let mut out = Vec::new();
    loop {
        match &img[at..at + 4] {
            b"TRLR" => {
                let len = u32le(img, at + 4) as usize;
                out.push(Part::Trailer { offset: at, len });
                assert_eq!(at + len, img.len());
                return out;
            }
            tag @ (b"DATA" | b"DATZ") => {
                let p = Part::Record {
                    offset: at,
                    table_len: u32le(img, at + 16) as usize,
                    stored_len: u32le(img, at + 24) as usize,
                    zstd: tag == b"DATZ",
                };
                at = p.end();
                out.push(p);
            }
            t => panic!("unexpected tag {t:?} at {at}"),
        }
    }
}

fn records(img: &[u8]) -> Vec<Part> {
    parts(img)
        .into_iter()
        .filter(|p| matches!(p, Part::Record { .. }))
        .collect()
}

fn trailer_at(img: &[u8]) -> usize {
    match parts(img).last() {
        Some(Part::Trailer { offset, .. }) => *offset,
        _ => unreachable!(),
    }
}

/// Re-seals the header CRC after an edit.
fn seal_header(img: &mut [u8]) {
    let len = u32le(img, 12) as usize;
    let c = crc(&[&img[..len - 4]]);
    put32(img, len - 4, c);
}

/// Re-seals the header CRC of the record at `offset` after an edit.
fn seal_record(img: &mut [u8], offset: usize) {
    let t = u32le(img, offset + 16) as usize;
    let c = crc(&[
        &img[offset..offset + 32],
        &img[offset + 36..offset + 36 + t],
    ]);
    put32(img, offset + 32, c);
}

/// Re-seals the trailer CRC after an edit.
fn seal_trailer(img: &mut [u8]) {
    let at = trailer_at(img);
    let end = img.len();
    let c = crc(&[&img[at..end - 4]]);
    put32(img, end - 4, c);
}

/// A 5,220-byte volume of 512-byte clusters (the last one 100 bytes),
/// clusters 0, 1, 2, 5, 9 and 10 used, saved in records of 1,024 bytes:
/// [0-1], [2, 5], [9-10 (612 bytes)]. The data compresses well.
fn small(level: Option<i32>) -> (Vec<u8>, Vec<u8>) {
    let volume: Vec<u8> = (0..10 * 512 + 100)
        .map(|i: usize| (i / 3 % 17 + i / 512) as u8)
        .collect();
    let mut map = AllocationMap::new(512, volume.len() as u64);
    for c in [0, 1, 2, 5, 9, 10] {
        map.mark_used(c, 1);
    }
    let img = save(&volume, &map, level, 2, 1024);
    let recs = records(&img);
    assert_eq!(recs.len(), 3);
    for r in &recs {
        assert!(matches!(r, Part::Record { zstd, .. } if *zstd == level.is_some()));
    }
    (volume, img)
}

fn both() -> [(Option<i32>, Vec<u8>); 2] {
    [(None, small(None).1), (Some(3), small(Some(3)).1)]
}

// ---------------------------------------------------------------------------
// Sanity: the fixtures are valid.

#[test]
fn small_images_read_back() {
    for (level, img) in both() {
        let (volume, _) = small(level);
        for threads in [1, 2, 4] {
            let (chunks, summary) = read(&img, threads).unwrap();
            let e = |c: u64, len: u64| Extent {
                offset: c * 512,
                len,
            };
            let got: Vec<Vec<Extent>> = chunks.iter().map(|c| c.extents.clone()).collect();
            assert_eq!(
                got,
                vec![
                    vec![e(0, 1024)],
                    vec![e(2, 512), e(5, 512)],
                    vec![e(9, 612)]
                ]
            );
            for c in &chunks {
                for (x, data) in c.pieces() {
                    assert_eq!(data, &volume[x.offset as usize..x.end() as usize]);
                }
            }
            assert_eq!(summary.trailer.records, 3);
            assert_eq!(summary.trailer.used_clusters, 6);
            assert_eq!(summary.trailer.used_bytes, 5 * 512 + 100);
            assert_eq!(summary.header.total_clusters, 11);
        }
    }
}

// ---------------------------------------------------------------------------
// Header.

#[test]
fn header_byte_flips() {
    for (_, img) in both() {
        for i in 0..128 {
            for mask in [0xff, 0x01] {
                let mut b = img.clone();
                b[i] ^= mask;
                let want = match i {
                    0..8 => ImageError::BadMagic { offset: 0 },
                    8..10 => ImageError::UnsupportedVersion {
                        major: u16::from_le_bytes([b[8], b[9]]),
                        minor: 0,
                    },
                    12..16 => {
                        let len = u32le(&b, 12);
                        if (128..=4096).contains(&len) && len as usize > b.len() {
                            ImageError::Truncated {
                                what: "header",
                                offset: 0,
                                end: b.len() as u64,
                            }
                        } else if (128..=4096).contains(&len) {
                            // A longer header: its CRC is elsewhere.
                            let len = len as usize;
                            ImageError::Checksum {
                                what: "header",
                                offset: 0,
                                stored: u32le(&b, len - 4),
                                computed: crc(&[&b[..len - 4]]),
                            }
                        } else {
                            ImageError::Field {
                                what: "header",
                                offset: 12,
                                field: "header length",
                                value: len.into(),
                            }
                        }
                    }
                    _ => ImageError::Checksum {
                        what: "header",
                        offset: 0,
                        stored: u32le(&b, 124),
                        computed: crc(&[&b[..124]]),
                    },
                };
                assert_eq!(image_err(&b, 1), want, "header byte {i} ^ {mask:#x}");
            }
        }
    }
}

#[test]
fn major_version_2_with_a_correct_crc_is_unsupported() {
    let (_, mut img) = small(None);
    img[8..10].copy_from_slice(&2u16.to_le_bytes());
    img[10..12].copy_from_slice(&5u16.to_le_bytes());
    seal_header(&mut img);
    assert_eq!(
        image_err(&img, 1),
        ImageError::UnsupportedVersion { major: 2, minor: 5 }
    );
}

/// Spec section 6: a 1.0 reader accepts a later 1.x minor version, and
/// skips header fields a later minor version appends (the CRC stays last).
#[test]
fn later_minor_version_and_longer_header_are_accepted() {
    let (volume, img) = small(Some(3));
    let mut b = img.clone();
    b[10..12].copy_from_slice(&7u16.to_le_bytes());
    seal_header(&mut b);
    let (chunks, summary) = read(&b, 2).unwrap();
    assert_eq!(summary.header.minor, 7);
    assert_eq!(chunks.len(), 3);

    // A 144-byte header: 16 more bytes of fields before the CRC. Every
    // record moves 16 bytes, so the trailer's index offsets move too.
    let extra = 16;
    let mut b = img[..124].to_vec();
    b.extend_from_slice(&[0xAB; 16]);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&img[128..]);
    put32(&mut b, 12, 128 + extra as u32);
    b[10..12].copy_from_slice(&1u16.to_le_bytes());
    seal_header(&mut b);
    let t = trailer_at(&b);
    let nbad = u64le(&b, t + 32) as usize;
    let nindex = u64le(&b, t + 40) as usize;
    for k in 0..nindex {
        let at = t + 56 + 16 * (nbad + k);
        let off = u64le(&b, at);
        put64(&mut b, at, off + extra);
    }
    seal_trailer(&mut b);
    let (chunks, _) = read(&b, 2).unwrap();
    for c in &chunks {
        for (x, data) in c.pieces() {
            assert_eq!(data, &volume[x.offset as usize..x.end() as usize]);
        }
    }
}

// ---------------------------------------------------------------------------
// Records.

/// The error a record whose header or table was damaged must give, when
/// the damage leaves the stated lengths alone (or plausible).
fn record_header_checksum(b: &[u8], offset: usize, table_len: usize) -> ImageError {
    ImageError::Checksum {
        what: "record header",
        offset: offset as u64,
        stored: u32le(b, offset + 32),
        computed: crc(&[
            &b[offset..offset + 32],
            &b[offset + 36..offset + 36 + table_len],
        ]),
    }
}

#[test]
fn record_header_and_extent_table_byte_flips() {
    for (_, img) in both() {
        // max record 1024, cluster 512: at most 3 extents per record.
        let max_extents = 1024 / 512 + 1;
        for rec in records(&img) {
            let Part::Record {
                offset: o,
                table_len: t,
                ..
            } = rec
            else {
                unreachable!()
            };
            let n = u32le(&img, o + 4) as usize;
            for i in 0..36 + t {
                for mask in [0xff, 0x01, 0x80] {
                    let mut b = img.clone();
                    b[o + i] ^= mask;
                    let off = o as u64;
                    let want = match i {
                        0..4 => ImageError::UnknownTag {
                            offset: off,
                            tag: b[o..o + 4].try_into().unwrap(),
                        },
                        // The extent count and table length are read (and
                        // bounded) before the CRC that covers the table.
                        4..8 => {
                            let n2 = u32le(&b, o + 4);
                            if n2 == 0 || n2 > max_extents {
                                ImageError::Field {
                                    what: "record",
                                    offset: off,
                                    field: "extent count",
                                    value: n2.into(),
                                }
                            } else if t > n2 as usize * 20 {
                                ImageError::Field {
                                    what: "record",
                                    offset: off,
                                    field: "extent table length",
                                    value: t as u64,
                                }
                            } else {
                                record_header_checksum(&b, o, t)
                            }
                        }
                        16..20 => {
                            let t2 = u32le(&b, o + 16) as usize;
                            if t2 > n * 20 {
                                ImageError::Field {
                                    what: "record",
                                    offset: off,
                                    field: "extent table length",
                                    value: t2 as u64,
                                }
                            } else if o + 36 + t2 > b.len() {
                                ImageError::Truncated {
                                    what: "record extent table",
                                    offset: off,
                                    end: b.len() as u64,
                                }
                            } else {
                                record_header_checksum(&b, o, t2)
                            }
                        }
                        // First cluster, R, S, payload CRC, header CRC and
                        // every table byte: covered by the header CRC.
                        _ => record_header_checksum(&b, o, t),
                    };
                    assert_eq!(
                        image_err(&b, 2),
                        want,
                        "record at {o}, byte {i} ^ {mask:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn uncompressed_record_data_byte_flips() {
    let (_, img) = small(None);
    for rec in records(&img) {
        let Part::Record {
            offset: o,
            table_len: t,
            stored_len: s,
            ..
        } = rec
        else {
            unreachable!()
        };
        let data = o + 36 + t;
        for i in data..data + s {
            let mut b = img.clone();
            b[i] ^= 0x10;
            assert_eq!(
                image_err(&b, 1 + i % 3),
                ImageError::DataChecksum {
                    offset: o as u64,
                    volume_offset: u64le(&b, o + 8) * 512,
                    stored: u32le(&b, o + 28),
                    computed: crc(&[&b[data..data + s]]),
                },
                "data byte {i}"
            );
        }
    }
}

#[test]
fn compressed_record_data_byte_flips() {
    let (volume, img) = small(Some(3));
    for rec in records(&img) {
        let Part::Record {
            offset: o,
            table_len: t,
            stored_len: s,
            zstd,
        } = rec
        else {
            unreachable!()
        };
        assert!(zstd);
        let data = o + 36 + t;
        for i in data..data + s {
            for mask in [0xff, 0x01] {
                let mut b = img.clone();
                b[i] ^= mask;
                match read(&b, 1 + i % 3) {
                    Err(Error::Image(ImageError::Decompress { offset, .. })) => {
                        assert_eq!(offset, o as u64, "data byte {i}")
                    }
                    Err(Error::Image(ImageError::DataChecksum {
                        offset,
                        volume_offset,
                        stored,
                        ..
                    })) => {
                        assert_eq!(offset, o as u64, "data byte {i}");
                        assert_eq!(volume_offset, u64le(&b, o + 8) * 512);
                        assert_eq!(stored, u32le(&b, o + 28));
                    }
                    // A flip zstd does not see (an unused bit) is fine only
                    // if the data is still exactly right.
                    Ok((chunks, _)) => {
                        for c in &chunks {
                            for (x, d) in c.pieces() {
                                assert_eq!(d, &volume[x.offset as usize..x.end() as usize]);
                            }
                        }
                    }
                    Err(e) => panic!("data byte {i} ^ {mask:#x}: unexpected error {e:?}"),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Trailer.

#[test]
fn trailer_byte_flips() {
    for (_, img) in both() {
        let at = trailer_at(&img);
        let len = img.len() - at;
        let off = at as u64;
        for i in 0..len {
            for mask in [0xff, 0x01, 0x10] {
                let mut b = img.clone();
                b[at + i] ^= mask;
                let checksum = |l: usize| ImageError::Checksum {
                    what: "trailer",
                    offset: off,
                    stored: u32le(&b, at + l - 4),
                    computed: crc(&[&b[at..at + l - 4]]),
                };
                let want = match i {
                    0..4 => ImageError::UnknownTag {
                        offset: off,
                        tag: b[at..at + 4].try_into().unwrap(),
                    },
                    4..8 => {
                        let l2 = u32le(&b, at + 4) as usize;
                        if !(72..=256 << 20).contains(&l2) || !(l2 - 72).is_multiple_of(16) {
                            ImageError::Field {
                                what: "trailer",
                                offset: off,
                                field: "trailer length",
                                value: l2 as u64,
                            }
                        } else if at + l2 > b.len() {
                            ImageError::Truncated {
                                what: "trailer",
                                offset: off,
                                end: b.len() as u64,
                            }
                        } else {
                            checksum(l2)
                        }
                    }
                    _ => checksum(len),
                };
                assert_eq!(image_err(&b, 2), want, "trailer byte {i} ^ {mask:#x}");
            }
        }
    }
}

/// Hand-edits of trailer fields, the CRC re-sealed: the counts must agree
/// with the records.
#[test]
fn trailer_counts_that_disagree() {
    for (_, img) in both() {
        let at = trailer_at(&img);
        let off = at as u64;
        let recs = records(&img);
        let edit = |field_at: usize, delta: u64| {
            let mut b = img.clone();
            let v = u64le(&b, at + field_at);
            put64(&mut b, at + field_at, v.wrapping_add(delta));
            seal_trailer(&mut b);
            image_err(&b, 2)
        };
        let mismatch = |field, stored, actual| ImageError::TrailerMismatch {
            offset: off,
            field,
            stored,
            actual,
        };
        assert_eq!(edit(8, 1), mismatch("record count", 4, 3));
        assert_eq!(edit(16, 1), mismatch("used clusters", 7, 6));
        assert_eq!(edit(24, u64::MAX), mismatch("used bytes", 2659, 2660));
        assert_eq!(edit(48, 1), mismatch("index stride", 2, 1));
        // Index entries: (image offset, first cluster) of records 0, 1, 2.
        let r1 = recs[1].offset() as u64;
        assert_eq!(edit(72, 1), mismatch("index entry offset", r1 + 1, r1));
        assert_eq!(edit(80, 1), mismatch("index entry first cluster", 3, 2));
        // One index entry fewer (the lengths adjusted to match).
        let mut b = img[..img.len() - 16 - 16].to_vec();
        b.extend_from_slice(&img[img.len() - 16..]);
        put64(&mut b, at + 40, 2);
        put32(&mut b, at + 4, 72 + 16 * 2);
        let l = b.len();
        put32(&mut b, l - 16, 72 + 16 * 2);
        seal_trailer(&mut b);
        assert_eq!(image_err(&b, 2), mismatch("index length", 2, 3));
        // The header's count disagrees with the records (and the trailer).
        let mut b = img.clone();
        put64(&mut b, 40, 5);
        seal_header(&mut b);
        assert_eq!(image_err(&b, 2), mismatch("header's used clusters", 5, 6));
        let mut b = img.clone();
        put64(&mut b, 48, 2661);
        seal_header(&mut b);
        assert_eq!(
            image_err(&b, 2),
            mismatch("header's used bytes", 2661, 2660)
        );
    }
}

/// A trailer with bad ranges reads back the same through the streaming
/// reader and `read_header_and_trailer`.
#[test]
fn bad_ranges_round_trip() {
    let (volume, _) = small(None);
    let mut map = AllocationMap::new(512, volume.len() as u64);
    map.mark_used(0, 3);
    let header = make_header(&map, None, 1024);
    let mut w = ImageWriter::new(Vec::new(), "memory", &header, None, 1).unwrap();
    let src = MemSource::new(volume.clone(), "volume");
    let opts = CopyOptions {
        chunk_bytes: 1024,
        ..CopyOptions::default()
    };
    copier::copy(&src, &map, &mut w, &opts, &Silent).unwrap();
    let bad = vec![
        Extent {
            offset: 512,
            len: 512,
        },
        Extent {
            offset: 5000,
            len: 220,
        },
    ];
    w.set_bad_ranges(bad.clone());
    w.finish().unwrap();
    let img = w.into_inner();
    let (_, summary) = read(&img, 1).unwrap();
    assert_eq!(summary.trailer.bad_ranges, bad);
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&img).unwrap();
    let (_, t) = fsimg::image::reader::read_header_and_trailer(&mut f, "tmp").unwrap();
    assert_eq!(t, summary.trailer);

    // A bad range past the end of the volume is refused.
    let at = trailer_at(&img);
    let mut b = img.clone();
    put64(&mut b, at + 56 + 16, 5001);
    seal_trailer(&mut b);
    assert_eq!(
        image_err(&b, 1),
        ImageError::Field {
            what: "trailer",
            offset: (at + 56 + 16) as u64,
            field: "bad range",
            value: 5001,
        }
    );
}

// ---------------------------------------------------------------------------
// Truncation and trailing garbage.

/// The truncation error for an image valid up to `cut` bytes.
fn expected_truncation(img: &[u8], cut: usize) -> ImageError {
    let end = cut as u64;
    if cut < 128 {
        return ImageError::Truncated {
            what: "header",
            offset: 0,
            end,
        };
    }
    let p = parts(img)
        .into_iter()
        .find(|p| (p.offset()..p.end()).contains(&cut))
        .expect("the cut is inside the image");
    let rel = cut - p.offset();
    let what = match p {
        _ if rel < 4 => "record or trailer",
        Part::Trailer { .. } => "trailer",
        Part::Record { table_len, .. } => {
            if rel < 36 {
                "record header"
            } else if rel < 36 + table_len {
                "record extent table"
            } else {
                "record data"
            }
        }
    };
    ImageError::Truncated {
        what,
        offset: p.offset() as u64,
        end,
    }
}

#[test]
fn truncation_at_every_offset() {
    for (_, img) in both() {
        for cut in 0..img.len() {
            assert_eq!(
                image_err(&img[..cut], 1 + cut % 2),
                expected_truncation(&img, cut),
                "cut at {cut} of {}",
                img.len()
            );
        }
    }
}

#[test]
fn trailing_garbage() {
    for (_, img) in both() {
        let len = img.len() as u64;
        let at = trailer_at(&img);
        for extra in [vec![0u8], vec![0xff; 100], img[at..].to_vec(), img.clone()] {
            let mut b = img.clone();
            b.extend_from_slice(&extra);
            assert_eq!(
                image_err(&b, 2),
                ImageError::TrailingGarbage { offset: len }
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Order and bounds of records.

#[test]
fn records_out_of_order() {
    for (_, img) in both() {
        let recs = records(&img);
        let (r1, r2) = (recs[1], recs[2]);
        // Swap records 1 (clusters 2 and 5) and 2 (clusters 9-10).
        let mut b = img[..r1.offset()].to_vec();
        b.extend_from_slice(&img[r2.offset()..r2.end()]);
        let moved = b.len();
        b.extend_from_slice(&img[r1.offset()..r1.end()]);
        b.extend_from_slice(&img[r2.end()..]);
        assert_eq!(
            image_err(&b, 2),
            ImageError::OutOfOrder {
                offset: moved as u64,
                cluster: 2,
                previous_end: 11,
            }
        );
        // Record 1 moved back onto record 0's last cluster, CRC re-sealed.
        let mut b = img.clone();
        put64(&mut b, r1.offset() + 8, 1);
        seal_record(&mut b, r1.offset());
        assert_eq!(
            image_err(&b, 2),
            ImageError::OutOfOrder {
                offset: r1.offset() as u64,
                cluster: 1,
                previous_end: 2,
            }
        );
    }
}

#[test]
fn extent_past_the_end() {
    for (_, img) in both() {
        let r2 = records(&img)[2];
        let o = r2.offset();
        assert_eq!(&img[o + 36..o + 38], &[0, 2], "table (skip 0, count 2)");
        let past = |end| ImageError::PastEnd {
            offset: o as u64,
            end,
            total: 11,
        };
        // Count 3: clusters 9..12 of 11.
        let mut b = img.clone();
        b[o + 37] = 3;
        seal_record(&mut b, o);
        assert_eq!(image_err(&b, 2), past(12));
        // First cluster 10: clusters 10..12.
        let mut b = img.clone();
        put64(&mut b, o + 8, 10);
        seal_record(&mut b, o);
        assert_eq!(image_err(&b, 2), past(12));
        // First cluster 11: starts past the end.
        let mut b = img.clone();
        put64(&mut b, o + 8, 11);
        seal_record(&mut b, o);
        assert_eq!(image_err(&b, 2), past(13));
        // A huge count must not overflow.
        let mut b = img[..o + 36].to_vec();
        b.extend_from_slice(&[
            0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        b.extend_from_slice(&img[o + 38..]);
        put32(&mut b, o + 16, 11);
        seal_record(&mut b, o);
        assert_eq!(image_err(&b, 2), past(u64::MAX));
    }
}

/// A volume whose size is just below 2^64 and not a whole number of
/// clusters: the last cluster's end in bytes does not fit in 64 bits, and
/// the record that holds it must still read back.
#[test]
fn last_cluster_of_a_volume_near_2_pow_64() {
    let device_size = u64::MAX - 100;
    let cs = 512u64;
    let total = device_size.div_ceil(cs);
    let header = Header {
        minor: 0,
        fs: 1,
        flags: 0,
        cluster_size: cs as u32,
        device_size,
        total_clusters: total,
        used_clusters: 1,
        used_bytes: device_size - (total - 1) * cs,
        compression: 0,
        max_record: 1024,
        writer: "test".into(),
    };
    let offset = (total - 1) * cs;
    let len = device_size - offset;
    assert!(len < cs);
    let mut w = ImageWriter::new(Vec::new(), "memory", &header, None, 1).unwrap();
    w.write_chunk(Chunk {
        extents: vec![Extent { offset, len }],
        data: vec![7; len as usize],
        bad: Vec::new(),
    })
    .unwrap();
    w.finish().unwrap();
    let img = w.into_inner();
    let (chunks, _) = read(&img, 1).unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].extents, vec![Extent { offset, len }]);
}

// ---------------------------------------------------------------------------
// Determinism and round trips.

/// A volume of `len` bytes: runs of random bytes and of compressible text.
fn mixed_volume(rng: &mut Rng, len: usize, max_run: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = (1 + rng.below(max_run) as usize).min(len - v.len());
        if rng.chance(50) {
            v.extend((0..n).map(|_| rng.next() as u8));
        } else {
            let text = b"fsimg copies only the clusters a filesystem uses. ";
            let shift = rng.below(text.len() as u64) as usize;
            v.extend((0..n).map(|i| text[(i + shift) % text.len()]));
        }
    }
    v
}

/// A random allocation map: runs of used and free clusters.
fn random_map(rng: &mut Rng, cluster_size: u32, device_size: u64) -> AllocationMap {
    let mut map = AllocationMap::new(cluster_size, device_size);
    let total = map.total_clusters();
    let mode = rng.below(5);
    let mut c = 0;
    while c < total {
        let run = 1 + rng.below(match mode {
            0 => 2,
            1 => 8,
            _ => 40,
        });
        let used = match mode {
            3 => true,
            4 => false,
            _ => rng.chance(50),
        };
        if used {
            map.mark_used(c, run);
        }
        c += run;
    }
    if rng.chance(50) {
        map.mark_used(total - 1, 1);
    }
    map
}

#[test]
fn same_image_whatever_the_thread_count() {
    let mut rng = Rng::new(42);
    let volume = mixed_volume(&mut rng, 3 << 20, 400_000);
    let map = random_map(&mut rng, 4096, volume.len() as u64);
    let images: Vec<Vec<u8>> = [1, 2, 8]
        .iter()
        .map(|&t| save(&volume, &map, Some(3), t, 128 << 10))
        .collect();
    assert!(images[0] == images[1], "1 and 2 threads differ");
    assert!(images[0] == images[2], "1 and 8 threads differ");
    let recs = records(&images[0]);
    assert!(recs.len() > 10);
    assert!(
        recs.iter()
            .any(|r| matches!(r, Part::Record { zstd: true, .. }))
    );
    assert!(
        recs.iter()
            .any(|r| matches!(r, Part::Record { zstd: false, .. }))
    );
    let (chunks, _) = read(&images[0], 2).unwrap();
    assert_eq!(chunks.len(), recs.len());
}

/// Restores the chunks of `img` onto zeros and checks them against the
/// source, byte for byte, and the extents against the map.
fn check_round_trip(volume: &[u8], map: &AllocationMap, img: &[u8], threads: usize, what: &str) {
    let (chunks, summary) = read(img, threads).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut restored = vec![0u8; volume.len()];
    let mut covered = vec![false; volume.len()];
    let mut prev_end = 0;
    for c in &chunks {
        assert_eq!(
            c.data.len() as u64,
            c.extents.iter().map(|e| e.len).sum::<u64>()
        );
        for (e, d) in c.pieces() {
            assert!(e.offset >= prev_end, "{what}: extents ascend");
            prev_end = e.end();
            restored[e.offset as usize..e.end() as usize].copy_from_slice(d);
            covered[e.offset as usize..e.end() as usize].fill(true);
        }
    }
    let cs = map.cluster_size() as usize;
    for (i, (&r, &v)) in restored.iter().zip(volume).enumerate() {
        let used = map.is_used((i / cs) as u64);
        assert_eq!(covered[i], used, "{what}: byte {i} covered iff used");
        assert_eq!(r, if used { v } else { 0 }, "{what}: byte {i}");
    }
    assert_eq!(summary.header.used_bytes, map.used_bytes());
    assert_eq!(summary.trailer.used_clusters, map.used_clusters());
    assert_eq!(summary.trailer.records, chunks.len() as u64);
}

#[test]
fn random_maps_round_trip() {
    let mut rng = Rng::new(7);
    for cs in [512u32, 4096, 65536] {
        let max_clusters = if cs == 65536 { 40 } else { 300 };
        for round in 0..12 {
            let clusters = 1 + rng.below(max_clusters);
            // Never a whole number of clusters.
            let tail = 1 + rng.below(u64::from(cs) - 1);
            let device_size = (clusters - 1) * u64::from(cs) + tail;
            let volume = mixed_volume(&mut rng, device_size as usize, 20_000);
            let map = random_map(&mut rng, cs, device_size);
            let chunk = [u64::from(cs), 3 * u64::from(cs), 1 << 20][round % 3];
            for level in [None, Some(3)] {
                let threads = 1 + rng.below(4) as usize;
                let img = save(&volume, &map, level, threads, chunk);
                let what = format!(
                    "cs {cs}, size {device_size}, {} used, chunk {chunk}, {level:?}",
                    map.used_clusters()
                );
                check_round_trip(&volume, &map, &img, threads, &what);
            }
        }
    }
}

#[test]
fn empty_and_full_maps_round_trip() {
    let mut rng = Rng::new(9);
    let volume = mixed_volume(&mut rng, 10 * 4096 + 1, 20_000);
    let empty = AllocationMap::new(4096, volume.len() as u64);
    let full = AllocationMap::all_used(4096, volume.len() as u64);
    for level in [None, Some(3)] {
        let img = save(&volume, &empty, level, 2, 8192);
        assert_eq!(records(&img).len(), 0);
        check_round_trip(&volume, &empty, &img, 2, "empty");
        let img = save(&volume, &full, level, 2, 8192);
        assert_eq!(records(&img).len(), 6);
        check_round_trip(&volume, &full, &img, 2, "full");
    }
}

// ---------------------------------------------------------------------------
// The seekable reader of `fsimg info`.

#[test]
fn read_header_and_trailer_matches_the_streaming_reader() {
    for (_, img) in both() {
        let (_, summary) = read(&img, 1).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&img).unwrap();
        let (h, t) = fsimg::image::reader::read_header_and_trailer(&mut f, "tmp").unwrap();
        assert_eq!(h, summary.header);
        assert_eq!(t, summary.trailer);

        // Cut anywhere: an error, never a panic.
        for cut in (0..img.len() as u64).rev() {
            f.set_len(cut).unwrap();
            let r = fsimg::image::reader::read_header_and_trailer(&mut f, "tmp");
            assert!(r.is_err(), "cut at {cut} accepted");
        }
        // Cut just before the end: the last 16 bytes are not the tail.
        f.set_len(0).unwrap();
        f.write_all(&img[..img.len() - 1]).unwrap();
        match fsimg::image::reader::read_header_and_trailer(&mut f, "tmp") {
            Err(Error::Image(ImageError::Truncated {
                what: "trailer", ..
            })) => {}
            r => panic!("unexpected {r:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// A deterministic mutation fuzzer: cargo-fuzz does not run in CI, so this
// keeps a bounded, seeded version of it in the test suite.

/// Reads `img` record by record on this thread (and every 8th time
/// through `read_records`), checking what an accepted image delivers.
fn read_anything(img: &[u8], via_pool: bool) {
    let Ok(mut reader) = ImageReader::new(Cursor::new(img), "fuzz") else {
        return;
    };
    let device_size = reader.header().device_size;
    let check = |c: &Chunk| {
        assert_eq!(
            c.data.len() as u64,
            c.extents.iter().map(|e| e.len).sum::<u64>()
        );
        for e in &c.extents {
            assert!(e.end() <= device_size);
        }
    };
    if via_pool {
        let _ = read_records(reader, 2, &Silent, |c| {
            check(&c);
            Ok(Some(c))
        });
        return;
    }
    let mut dctx = None;
    while let Ok(Some(raw)) = reader.next_record() {
        match raw.decode(&mut dctx, &mut Vec::new()) {
            Ok(c) => check(&c),
            Err(_) => return,
        }
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len().max(1) as u64;
        let at = rng.below(len) as usize;
        match rng.below(8) {
            0 | 1 => {
                if let Some(x) = b.get_mut(at) {
                    *x ^= 1 << rng.below(8);
                }
            }
            2 => {
                if let Some(x) = b.get_mut(at) {
                    *x = rng.next() as u8;
                }
            }
            3 => b.truncate(at),
            4 => {
                let n = 1 + rng.below(16) as usize;
                let at = at.min(b.len());
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, ins);
            }
            5 => {
                let n = (1 + rng.below(16) as usize).min(b.len() - at.min(b.len()));
                let at = at.min(b.len());
                b.drain(at..at + n);
            }
            6 => {
                // An interesting value in a field-sized slot.
                let v: u64 = [
                    0,
                    1,
                    0x7f,
                    0x80,
                    0xff,
                    u64::from(u32::MAX),
                    u64::MAX,
                    1 << 26,
                ][rng.below(8) as usize];
                let w = [1usize, 2, 4, 8][rng.below(4) as usize];
                if at + w <= b.len() {
                    b[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
                }
            }
            _ => {
                // Duplicate a slice somewhere else.
                let n = (1 + rng.below(64) as usize).min(b.len() - at.min(b.len()));
                let at = at.min(b.len());
                let piece = b[at..at + n].to_vec();
                let to = rng.below(b.len() as u64 + 1) as usize;
                b.splice(to..to, piece);
            }
        }
    }
    if rng.chance(30) {
        // Re-seal whatever CRCs still have a place, so the mutation gets
        // past them and reaches the checks behind.
        reseal(&mut b);
    }
    b
}

/// Re-seals the header, record and trailer CRCs of a mutated image as far
/// as its lengths allow.
fn reseal(b: &mut [u8]) {
    if b.len() < 128 {
        return;
    }
    let hlen = u32le(b, 12) as usize;
    if !(128..=4096).contains(&hlen) || hlen > b.len() {
        return;
    }
    seal_header(b);
    let mut at = hlen;
    while at + 36 <= b.len() {
        match &b[at..at + 4] {
            b"DATA" | b"DATZ" => {
                let t = u32le(b, at + 16) as usize;
                let s = u32le(b, at + 24) as usize;
                if at + 36 + t > b.len() {
                    return;
                }
                seal_record(b, at);
                at = at.saturating_add(36 + t).saturating_add(s);
            }
            b"TRLR" => {
                let l = u32le(b, at + 4) as usize;
                if l >= 72 && at + l <= b.len() {
                    let c = crc(&[&b[at..at + l - 4]]);
                    put32(b, at + l - 4, c);
                }
                return;
            }
            _ => return,
        }
    }
}

#[test]
fn mutated_images_never_panic() {
    let (_, plain) = small(None);
    let (_, packed) = small(Some(3));
    let mut rng = Rng::new(2024);
    let iterations = if cfg!(debug_assertions) {
        3_000
    } else {
        20_000
    };
    let start = Instant::now();
    for i in 0..iterations {
        let base = if i % 2 == 0 { &plain } else { &packed };
        let b = mutate(&mut rng, base);
        let r = catch_unwind(AssertUnwindSafe(|| read_anything(&b, i % 8 == 0)));
        if r.is_err() {
            let path = std::env::temp_dir().join(format!("fsimg-mutation-{i}.bin"));
            let _ = std::fs::write(&path, &b);
            panic!("mutation {i} panicked; input saved to {}", path.display());
        }
    }
    eprintln!(
        "{iterations} mutations in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}
