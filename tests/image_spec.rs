//! The example of formats/fsimg-image.md section 7, built by hand from the
//! specification alone: no encoder of the crate is used here. Every field
//! is written as little-endian bytes with our own CRC (crc32fast), our own
//! LEB128 and, for `DATZ`, a zstd frame made by the zstd crate.
//!
//! The volume is 10,000 bytes of 4,096-byte clusters (3 clusters, the last
//! one 1,808 bytes long); clusters 0 and 2 are used.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use fsimg::copier::Extent;
use fsimg::image::ImageReader;

const CLUSTER: u32 = 4096;
const DEVICE: u64 = 10_000;
const TOTAL_CLUSTERS: u64 = 3;
/// Cluster 2 spans bytes 8192..10000.
const TAIL: u64 = DEVICE - 2 * CLUSTER as u64;

/// The volume: recognisable bytes in the used clusters, zeros elsewhere
/// (cluster 1 is unused, so a restore writes zeros there).
fn volume() -> Vec<u8> {
    let mut v = vec![0u8; DEVICE as usize];
    for (i, b) in v[..CLUSTER as usize].iter_mut().enumerate() {
        *b = (i % 251) as u8 ^ 0x5a;
    }
    // Cluster 2: compressible, so a DATZ frame is smaller than the data.
    for (i, b) in v[2 * CLUSTER as usize..].iter_mut().enumerate() {
        *b = b"the short last cluster "[i % 23];
    }
    v
}

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Unsigned LEB128 (spec: conventions).
fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Section 1: the 128-byte header.
fn header(used_clusters: u64, used_bytes: u64, compression: u8, max_record: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(128);
    h.extend_from_slice(&[0x46, 0x53, 0x49, 0x4D, 0x47, 0x0D, 0x0A, 0x1A]); // magic
    h.extend_from_slice(&1u16.to_le_bytes()); // major
    h.extend_from_slice(&0u16.to_le_bytes()); // minor
    h.extend_from_slice(&128u32.to_le_bytes()); // header length
    h.extend_from_slice(&1u16.to_le_bytes()); // filesystem: raw
    h.extend_from_slice(&0u16.to_le_bytes()); // flags
    h.extend_from_slice(&CLUSTER.to_le_bytes());
    h.extend_from_slice(&DEVICE.to_le_bytes());
    h.extend_from_slice(&TOTAL_CLUSTERS.to_le_bytes());
    h.extend_from_slice(&used_clusters.to_le_bytes());
    h.extend_from_slice(&used_bytes.to_le_bytes());
    h.push(1); // checksum kind: CRC32
    h.push(compression);
    h.extend_from_slice(&[0, 0]); // reserved
    h.extend_from_slice(&max_record.to_le_bytes());
    let mut writer = [0u8; 32];
    writer[..9].copy_from_slice(b"hand-made");
    h.extend_from_slice(&writer);
    h.extend_from_slice(&[0u8; 28]); // reserved
    assert_eq!(h.len(), 124);
    let crc = crc32(&[&h]);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// Section 2: one record. `extents` are (skip, count) pairs; `raw` is the
/// concatenated extent bytes; with `zstd` the payload is one zstd frame.
fn record(first_cluster: u64, extents: &[(u64, u64)], raw: &[u8], zstd: bool) -> Vec<u8> {
    let mut table = Vec::new();
    for &(skip, count) in extents {
        leb128(&mut table, skip);
        leb128(&mut table, count);
    }
    let stored = if zstd {
        let z = zstd::bulk::compress(raw, 3).unwrap();
        assert!(z.len() < raw.len(), "the test data compresses");
        z
    } else {
        raw.to_vec()
    };
    let mut r = Vec::new();
    r.extend_from_slice(if zstd { b"DATZ" } else { b"DATA" });
    r.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    r.extend_from_slice(&first_cluster.to_le_bytes());
    r.extend_from_slice(&(table.len() as u32).to_le_bytes());
    r.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    r.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc32(&[raw]).to_le_bytes());
    assert_eq!(r.len(), 32);
    let head_crc = crc32(&[&r, &table]);
    r.extend_from_slice(&head_crc.to_le_bytes());
    r.extend_from_slice(&table);
    r.extend_from_slice(&stored);
    r
}

/// Section 3: the trailer, with an index of stride 1 over `records`
/// (image offset, first cluster) and no bad ranges.
fn trailer(records: &[(u64, u64)], used_clusters: u64, used_bytes: u64) -> Vec<u8> {
    trailer_with_stride(records, 1, used_clusters, used_bytes)
}

/// The trailer with an index of every `stride`-th record.
fn trailer_with_stride(
    records: &[(u64, u64)],
    stride: usize,
    used_clusters: u64,
    used_bytes: u64,
) -> Vec<u8> {
    let index: Vec<(u64, u64)> = records.iter().copied().step_by(stride).collect();
    let len = 72 + 16 * index.len() as u32;
    let mut t = Vec::new();
    t.extend_from_slice(&[0x54, 0x52, 0x4C, 0x52]); // "TRLR"
    t.extend_from_slice(&len.to_le_bytes());
    t.extend_from_slice(&(records.len() as u64).to_le_bytes());
    t.extend_from_slice(&used_clusters.to_le_bytes());
    t.extend_from_slice(&used_bytes.to_le_bytes());
    t.extend_from_slice(&0u64.to_le_bytes()); // bad ranges
    t.extend_from_slice(&(index.len() as u64).to_le_bytes()); // index entries
    t.extend_from_slice(&(stride as u64).to_le_bytes());
    for &(offset, cluster) in &index {
        t.extend_from_slice(&offset.to_le_bytes());
        t.extend_from_slice(&cluster.to_le_bytes());
    }
    t.extend_from_slice(&len.to_le_bytes());
    t.extend_from_slice(b"FSIMGEND");
    let crc = crc32(&[&t]);
    t.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(t.len(), len as usize);
    t
}

fn used_bytes() -> u64 {
    CLUSTER as u64 + TAIL
}

/// One `DATA` record holding both extents: (skip 0, count 1) for cluster
/// 0, then (skip 1, count 1) for cluster 2.
fn one_record_image() -> Vec<u8> {
    let v = volume();
    let mut raw = v[..CLUSTER as usize].to_vec();
    raw.extend_from_slice(&v[2 * CLUSTER as usize..]);
    assert_eq!(raw.len(), 5904);
    let mut img = header(2, used_bytes(), 0, 8192);
    let at = img.len() as u64;
    img.extend(record(0, &[(0, 1), (1, 1)], &raw, false));
    img.extend(trailer(&[(at, 0)], 2, used_bytes()));
    img
}

/// Two records: `DATA` for cluster 0, then `DATZ` for cluster 2.
fn two_record_image() -> Vec<u8> {
    let v = volume();
    let mut img = header(2, used_bytes(), 1, 8192);
    let first = img.len() as u64;
    img.extend(record(0, &[(0, 1)], &v[..CLUSTER as usize], false));
    let second = img.len() as u64;
    img.extend(record(2, &[(0, 1)], &v[2 * CLUSTER as usize..], true));
    img.extend(trailer(&[(first, 0), (second, 2)], 2, used_bytes()));
    img
}

/// What the reader delivered: each chunk's extents and data.
fn read(img: &[u8], threads: usize) -> Vec<(Vec<Extent>, Vec<u8>)> {
    let reader = ImageReader::new(Cursor::new(img.to_vec()), "test").unwrap();
    let mut got = Vec::new();
    let summary = fsimg::ops::read_records(reader, threads, &fsimg::report::Silent, |c| {
        got.push((c.extents, c.data));
        Ok(None)
    })
    .unwrap();
    assert_eq!(summary.header.device_size, DEVICE);
    assert_eq!(summary.header.cluster_size, CLUSTER);
    assert_eq!(summary.header.total_clusters, TOTAL_CLUSTERS);
    assert_eq!(summary.header.writer, "hand-made");
    assert_eq!(summary.trailer.used_clusters, 2);
    assert_eq!(summary.trailer.used_bytes, used_bytes());
    assert_eq!(summary.trailer.records, got.len() as u64);
    got
}

fn ext(offset: u64, len: u64) -> Extent {
    Extent { offset, len }
}

#[test]
fn one_data_record_reads_as_the_spec_says() {
    let v = volume();
    let img = one_record_image();
    for threads in [1, 3] {
        let got = read(&img, threads);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, vec![ext(0, 4096), ext(8192, 1808)]);
        let mut want = v[..4096].to_vec();
        want.extend_from_slice(&v[8192..]);
        assert_eq!(got[0].1, want);
    }
}

#[test]
fn data_then_datz_reads_as_the_spec_says() {
    let v = volume();
    let img = two_record_image();
    for threads in [1, 3] {
        let got = read(&img, threads);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, vec![ext(0, 4096)]);
        assert_eq!(got[0].1, v[..4096]);
        assert_eq!(got[1].0, vec![ext(8192, 1808)]);
        assert_eq!(got[1].1, v[8192..]);
    }
}

fn fsimg(args: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fsimg"))
        .args(args)
        .output()
        .unwrap()
}

fn restore_and_verify(img: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.fsimg");
    std::fs::write(&path, img).unwrap();

    let verify = fsimg(&[Path::new("verify"), &path]);
    assert!(
        verify.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let out = dir.path().join("restored.img");
    let restore = fsimg(&[
        Path::new("-q"),
        Path::new("-r"),
        Path::new("-o"),
        &out,
        &path,
    ]);
    assert!(
        restore.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let restored = std::fs::read(&out).unwrap();
    assert_eq!(restored.len(), DEVICE as usize);
    assert!(restored == volume(), "the restored volume differs");
}

#[test]
fn binary_restores_and_verifies_one_data_record() {
    restore_and_verify(&one_record_image());
}

#[test]
fn binary_restores_and_verifies_data_then_datz() {
    restore_and_verify(&two_record_image());
}

/// The CRC convention of the spec (CRC32("123456789") = 0xCBF43926) and
/// the LEB128 encoding of a two-byte value, as a check on the helpers.
#[test]
fn helpers_follow_the_conventions() {
    assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    let mut b = Vec::new();
    leb128(&mut b, 300);
    assert_eq!(b, [0xac, 0x02]);
}

/// Section 3: the stride is the smallest power of two that keeps the index
/// at 65,536 entries or fewer, so two records take stride 1; a trailer
/// with stride 2 (one entry) is refused even though its entry is right.
#[test]
fn index_stride_must_be_the_smallest() {
    let v = volume();
    let mut img = header(2, used_bytes(), 0, 8192);
    let first = img.len() as u64;
    img.extend(record(0, &[(0, 1)], &v[..CLUSTER as usize], false));
    let second = img.len() as u64;
    img.extend(record(2, &[(0, 1)], &v[2 * CLUSTER as usize..], false));
    let at = img.len() as u64;
    img.extend(trailer_with_stride(
        &[(first, 0), (second, 2)],
        2,
        2,
        used_bytes(),
    ));
    let reader = ImageReader::new(Cursor::new(img), "test").unwrap();
    let err =
        fsimg::ops::read_records(reader, 1, &fsimg::report::Silent, |_| Ok(None)).unwrap_err();
    assert!(
        matches!(
            err,
            fsimg::Error::Image(fsimg::image::ImageError::TrailerMismatch {
                offset,
                field: "index stride",
                stored: 2,
                actual: 1,
            }) if offset == at
        ),
        "{err:?}"
    );
}

/// Section 2: a `DATZ` payload larger than zstd's compress bound of *R* is
/// refused (before it is read), whatever the frame holds.
#[test]
fn datz_larger_than_the_compress_bound_is_refused() {
    let v = volume();
    let raw = &v[2 * CLUSTER as usize..];
    let mut img = header(1, TAIL, 1, 8192);
    let at = img.len();
    let mut rec = record(2, &[(0, 1)], raw, true);
    let bound = zstd::zstd_safe::compress_bound(raw.len()) as u32;
    rec[24..28].copy_from_slice(&(bound + 1).to_le_bytes());
    let crc = crc32(&[&rec[..32], &rec[36..38]]);
    rec[32..36].copy_from_slice(&crc.to_le_bytes());
    img.extend(rec);
    let mut reader = ImageReader::new(Cursor::new(img), "test").unwrap();
    let err = reader.next_record().unwrap_err();
    assert!(
        matches!(
            err,
            fsimg::Error::Image(fsimg::image::ImageError::Field {
                what: "record",
                offset,
                field: "stored payload length",
                value,
            }) if offset == at as u64 && value == u64::from(bound) + 1
        ),
        "{err:?}"
    );
}

/// Section 2: a `DATZ` payload is one zstd frame: two frames that together
/// decompress to the right bytes are refused.
#[test]
fn datz_of_two_frames_is_refused() {
    let v = volume();
    let raw = &v[2 * CLUSTER as usize..];
    let mut z = zstd::bulk::compress(&raw[..1000], 3).unwrap();
    z.extend(zstd::bulk::compress(&raw[1000..], 3).unwrap());
    let mut img = header(1, TAIL, 1, 8192);
    let at = img.len() as u64;
    let mut r = Vec::new();
    r.extend_from_slice(b"DATZ");
    r.extend_from_slice(&1u32.to_le_bytes());
    r.extend_from_slice(&2u64.to_le_bytes());
    r.extend_from_slice(&2u32.to_le_bytes());
    r.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    r.extend_from_slice(&(z.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc32(&[raw]).to_le_bytes());
    let c = crc32(&[&r, &[0, 1]]);
    r.extend_from_slice(&c.to_le_bytes());
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&z);
    img.extend(r);
    img.extend(trailer(&[(at, 2)], 1, TAIL));
    let reader = ImageReader::new(Cursor::new(img), "test").unwrap();
    let err =
        fsimg::ops::read_records(reader, 1, &fsimg::report::Silent, |_| Ok(None)).unwrap_err();
    assert!(
        matches!(
            err,
            fsimg::Error::Image(fsimg::image::ImageError::Decompress { offset, .. }) if offset == at
        ),
        "{err:?}"
    );
}
