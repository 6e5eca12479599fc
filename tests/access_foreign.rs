//! Random access to the volume inside ntfsclone and partclone images
//! (src/access/{ntfsclone,partclone}.rs): for every image in
//! testdata/foreign, any byte range read in place equals the same range of
//! the volume `fsimg -r` restores from it; the filesystem parsers work
//! through it; a truncated image fails only where data is missing, naming
//! the image byte; a corrupt header is the sequential reader's error.

mod common;

use std::fs::{self, File};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};

use common::*;
use fsimg::access::ntfsclone::NtfscloneSource;
use fsimg::access::partclone::PartcloneSource;
use fsimg::foreign::{ForeignReader, NtfscloneReader, PartcloneReader, ReadOptions};
use fsimg::fs::{FsChoice, open};
use fsimg::report::Silent;
use fsimg::source::{MemSource, Source};

/// An image from testdata/foreign, decompressed, with the volume fsimg's
/// sequential restore makes of it.
struct Case {
    name: String,
    dir: tempfile::TempDir,
    image: PathBuf,
    bytes: Vec<u8>,
    reference: Vec<u8>,
}

impl Case {
    fn load(name: &str) -> Case {
        let z = fs::read(testdata(&format!("foreign/{name}.zst"))).expect("test image exists");
        let bytes = zstd::decode_all(&z[..]).expect("test image decompresses");
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join(name);
        fs::write(&image, &bytes).unwrap();
        let reference = dir.path().join("ref.img");
        run_ok(&["-r", "-o", s(&reference), s(&image)]);
        let reference = fs::read(&reference).unwrap();
        Case {
            name: name.to_string(),
            dir,
            image,
            bytes,
            reference,
        }
    }

    /// The image's bytes written to a file of the scratch directory.
    fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(file);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn is_ntfsclone(&self) -> bool {
        self.name.ends_with(".ntfsclone")
    }
}

/// The images (not the source volumes) in testdata/foreign.
/// Collects the warnings.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl fsimg::report::Report for Warnings {
    fn warn(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
}

fn images() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(testdata("foreign"))
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            let n = n.strip_suffix(".zst")?;
            (n.ends_with(".ntfsclone") || n.ends_with(".ptcl")).then(|| n.to_string())
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 8,
        "foreign test images are missing: {names:?}"
    );
    names
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The image at `path` as a source, and where it is truncated, if it is.
fn source(path: &Path, name: &str) -> fsimg::error::Result<(Box<dyn Source>, Option<u64>)> {
    let f = File::open(path).unwrap();
    if name.ends_with(".ntfsclone") {
        let src = NtfscloneSource::open(f, name)?;
        let cut = src.truncated_at();
        Ok((Box::new(src), cut))
    } else {
        let src = PartcloneSource::open(f, name)?;
        let cut = src.truncated_at();
        Ok((Box::new(src), cut))
    }
}

/// The sequential reader's error on the image `bytes`, at open or while
/// reading it through.
fn reader_error(name: &str, bytes: &[u8]) -> String {
    let r: fsimg::error::Result<Box<dyn ForeignReader>> = if name.ends_with(".ntfsclone") {
        NtfscloneReader::new(Cursor::new(bytes.to_vec()), name)
            .map(|r| Box::new(r) as Box<dyn ForeignReader>)
    } else {
        PartcloneReader::new(Cursor::new(bytes.to_vec()), name, ReadOptions::default())
            .map(|r| Box::new(r) as Box<dyn ForeignReader>)
    };
    let mut r = match r {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    loop {
        match r.next_chunk(&Silent) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("{name}: the sequential reader accepts the image"),
            Err(e) => return e.to_string(),
        }
    }
}

/// A deterministic xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn read(src: &dyn Source, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0xA5; len];
    src.read_exact_at(&mut v, offset)?;
    Ok(v)
}

#[test]
fn every_byte_equals_the_restored_volume() {
    for name in images() {
        let case = Case::load(&name);
        let (src, cut) = source(&case.image, &name).unwrap();
        assert_eq!(cut, None, "{name}");
        let size = src.size();
        assert_eq!(size, case.reference.len() as u64, "{name}: size");
        assert_eq!(src.name(), name);

        // The whole volume in odd-sized chunks.
        const CHUNK: usize = (1 << 20) + 513;
        let mut at = 0u64;
        while at < size {
            let len = CHUNK.min((size - at) as usize);
            let got = read(&*src, at, len).unwrap();
            assert!(
                got == case.reference[at as usize..][..len],
                "{name}: chunk at {at}"
            );
            at += len as u64;
        }

        // 2,000 random reads, from two threads: most short, some long,
        // some on cluster boundaries.
        std::thread::scope(|scope| {
            for seed in [0x9E37_79B9_7F4A_7C15u64, 0xD1B5_4A32_D192_ED03] {
                let (src, reference, name) = (&src, &case.reference, &name);
                scope.spawn(move || {
                    let mut rng = Rng(seed);
                    for i in 0..1000 {
                        let mut offset = rng.below(size);
                        if i % 4 == 0 {
                            offset = (offset & !4095).saturating_sub(rng.below(3));
                        }
                        let max = match i % 3 {
                            0 => 16,
                            1 => 9000,
                            _ => 300_000,
                        };
                        let len = rng.below(max + 1).min(size - offset) as usize;
                        let got = read(&**src, offset, len)
                            .unwrap_or_else(|e| panic!("{name}: {len} bytes at {offset}: {e}"));
                        assert!(
                            got == reference[offset as usize..][..len],
                            "{name}: {len} bytes at {offset}"
                        );
                    }
                });
            }
        });

        // Reads ending at the end, and one byte past it.
        for len in [0usize, 1, 512, 4097] {
            let offset = size - len as u64;
            assert_eq!(
                read(&*src, offset, len).unwrap(),
                case.reference[offset as usize..],
                "{name}: the last {len} bytes"
            );
            let err = read(&*src, offset, len + 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{name}: {err}");
        }
        assert!(read(&*src, u64::MAX, 1).is_err());
        let err = (&*src as &dyn Source)
            .read_vec(size - 10, 11)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&name), "{err}");
    }
}

#[test]
fn filesystems_read_through_the_source() {
    for name in images() {
        let case = Case::load(&name);
        let (src, _) = source(&case.image, &name).unwrap();
        let fs = open(&*src, FsChoice::Auto).unwrap_or_else(|e| panic!("{name}: {e}"));
        let through = fs.allocation(&*src).unwrap().map;
        let mem = MemSource::new(case.reference.clone(), "ref.img");
        let fs_ref = open(&mem, FsChoice::Auto).unwrap();
        assert_eq!(fs.kind(), fs_ref.kind(), "{name}");
        let want = fs_ref.allocation(&mem).unwrap().map;
        assert_eq!(through.cluster_size(), want.cluster_size(), "{name}");
        assert_eq!(through.device_size(), want.device_size(), "{name}");
        let runs: Vec<_> = through.runs().collect();
        let want_runs: Vec<_> = want.runs().collect();
        assert!(!runs.is_empty(), "{name}");
        assert_eq!(runs, want_runs, "{name}: allocation map");
    }
}

#[test]
fn truncated_images_fail_only_where_data_is_missing() {
    for name in images() {
        let case = Case::load(&name);
        let cut = case.bytes.len() / 2;
        let path = case.write("cut", &case.bytes[..cut]);
        let (src, at) = source(&path, &name).unwrap();
        assert_eq!(at, Some(cut as u64), "{name}");
        // Opened by access::open, the user is told.
        let warned = Warnings::default();
        fsimg::access::open(&path, None, &warned).unwrap();
        assert_eq!(
            *warned.0.lock().unwrap(),
            vec![format!(
                "{}: the image is truncated at byte {cut}: the volume's bytes after it cannot be read",
                path.display()
            )],
            "{name}"
        );
        // Read the volume a piece at a time: pieces before the missing part
        // read as restored, then what is missing fails, naming where the
        // image ends.
        let piece = 4096u64;
        let (mut ok, mut ok_data, mut failed) = (0, 0, 0);
        let mut first_failure = None;
        let mut at = 0u64;
        while at < src.size() {
            let len = piece.min(src.size() - at) as usize;
            let want = &case.reference[at as usize..][..len];
            match read(&*src, at, len) {
                Ok(got) => {
                    assert!(got == want, "{name}: {len} bytes at {at}");
                    ok += 1;
                    if want.iter().any(|&b| b != 0) {
                        ok_data += 1;
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let format = if case.is_ntfsclone() {
                        "ntfsclone"
                    } else {
                        "partclone"
                    };
                    assert!(
                        msg.starts_with(&format!(
                            "{format} image is truncated: it ends at byte {cut}, inside "
                        )),
                        "{name}: {len} bytes at {at}: {msg}"
                    );
                    failed += 1;
                    first_failure.get_or_insert((at, len));
                }
            }
            at += len as u64;
        }
        assert!(
            ok > 10 && ok_data >= 3,
            "{name}: {ok} pieces read, {ok_data} of them not all zeros"
        );
        eprintln!("{name} cut at {cut}: {ok} pieces read ({ok_data} with data), {failed} failed");
        assert!(failed > 10, "{name}: {failed} pieces failed ({ok} read)");
        // Through the Source's error mapping: the image's name and the
        // volume byte, then where the image ends.
        let (at, len) = first_failure.unwrap();
        let msg = (&*src as &dyn Source)
            .read_vec(at, len)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!("read error on {name} at byte {at}"))
                && msg.contains(&format!("ends at byte {cut}")),
            "{msg}"
        );
    }
}

#[test]
fn corrupt_headers_are_the_sequential_readers_errors() {
    for name in images() {
        let case = Case::load(&name);
        // (byte, XOR mask, the error's start)
        let cases: Vec<(usize, u8, String)> = if case.is_ntfsclone() {
            vec![
                (0, b'X', "ntfsclone image: invalid magic at byte 0".into()),
                (
                    16,
                    1,
                    "ntfsclone image version 11.1 is not supported".into(),
                ),
                (
                    18,
                    3,
                    "ntfsclone image: invalid cluster size at byte 18".into(),
                ),
                (
                    46,
                    0x38,
                    "ntfsclone image: invalid data offset at byte 46".into(),
                ),
                // The first record, a cluster or a gap: 0x06 or 0x07.
                (56, 7, "ntfsclone image: invalid command byte 0x0".into()),
            ]
        } else if case.bytes[30..34] == *b"0001" {
            let total = u64::from_le_bytes(case.bytes[48..56].try_into().unwrap()) as usize;
            vec![
                (
                    31,
                    9,
                    "partclone image version \"0901\" is not supported".into(),
                ),
                (
                    39,
                    0x80,
                    "partclone image: invalid block size at byte 36".into(),
                ),
                (
                    4160 + total + 2,
                    0x20,
                    format!(
                        "partclone image: invalid bitmap magic at byte {}",
                        4160 + total
                    ),
                ),
            ]
        } else {
            vec![
                (
                    60,
                    0x55,
                    "partclone image header checksum mismatch at byte 106".into(),
                ),
                (
                    113,
                    0x55,
                    "partclone image bitmap checksum mismatch at byte".into(),
                ),
            ]
        };
        for (at, value, want) in cases {
            let mut bad = case.bytes.clone();
            bad[at] ^= value;
            let path = case.write("bad", &bad);
            let err = match source(&path, &name) {
                Ok(_) => panic!("{name}: byte {at} ^ {value:#x} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with(&want), "{name}: {want:?} not in {err:?}");
            assert_eq!(err, reader_error(&name, &bad), "{name}: byte {at}");
        }
    }
}

#[test]
fn partclone_0001_with_8_byte_crcs() {
    // Old 64-bit builds stored each CRC in 8 bytes (the CRC, 4 zeros).
    let case = Case::load("ext4-0001.ptcl");
    let img = &case.bytes;
    let total = u64::from_le_bytes(img[48..56].try_into().unwrap()) as usize;
    let bs = u32::from_le_bytes(img[36..40].try_into().unwrap()) as usize;
    let data = 4160 + total + 8;
    let stored = img[4160..4160 + total].iter().filter(|&&b| b == 1).count();
    let mut wide = img[..data].to_vec();
    for i in 0..stored {
        wide.extend_from_slice(&img[data + i * (bs + 4)..][..bs + 4]);
        wide.extend_from_slice(&[0; 4]);
    }
    let path = case.write("wide.ptcl", &wide);
    let (src, cut) = source(&path, "wide.ptcl").unwrap();
    assert_eq!(cut, None);
    let got = read(&*src, 0, src.size() as usize).unwrap();
    assert!(got == case.reference, "the 8-byte layout reads differently");
}
