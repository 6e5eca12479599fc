//! ntfsclone and partclone images: restores of the images the real tools
//! made (testdata/foreign, tools/make-foreign-testdata.sh) must equal the
//! tools' own restores byte for byte and the source on every block the
//! image holds; every corruption and truncation gives its exact error;
//! the ntfsclone images fsimg writes are ntfsclone's own, and ntfsclone
//! restores them.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use fsimg::copier::Chunk;
use fsimg::foreign::partclone::crc32;
use fsimg::foreign::{
    ForeignReader, NtfscloneReader, NtfscloneWriter, PartcloneReader, ReadOptions,
};
use fsimg::ops::{self, ReadSummary};
use fsimg::report::Silent;
use fsimg::sink::Sink;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Helpers.

/// The decompressed bytes of testdata/foreign/REL.zst.
fn load(rel: &str) -> Vec<u8> {
    let z = fs::read(testdata(&format!("foreign/{rel}.zst"))).expect("test image exists");
    zstd::decode_all(&z[..]).expect("test image decompresses")
}

/// The names of the images (not the source volumes) in testdata/foreign.
fn images() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(testdata("foreign"))
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            let n = n.strip_suffix(".zst")?;
            (!n.ends_with(".vol")).then(|| n.to_string())
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 8,
        "foreign test images are missing: {names:?}"
    );
    names
}

fn expected(name: &str) -> HashMap<String, String> {
    expected_in("foreign", name)
}

fn num(e: &HashMap<String, String>, key: &str) -> u64 {
    expected_u64(e, key)
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn is_metadata(name: &str) -> bool {
    name.contains("metadata")
}

/// A scratch directory holding files.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Self {
        Scratch(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, bytes).unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ops::verify` on `bytes` (in a file): the summary, or the error text.
fn verify_bytes(bytes: &[u8], opts: ReadOptions) -> Result<ReadSummary, String> {
    let dir = Scratch::new();
    let p = dir.write("img", bytes);
    ops::verify(&p, 1, opts, &Silent).map_err(|e| e.to_string())
}

fn verify_err(bytes: &[u8]) -> String {
    match verify_bytes(bytes, ReadOptions::default()) {
        Ok(_) => panic!("a damaged image passed verification"),
        Err(e) => {
            assert!(!e.contains("panicked"), "{e}");
            e
        }
    }
}

/// Runs fsimg with `stdin` as standard input.
fn run_stdin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = fsimg()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // A refused restore stops reading: a broken pipe is fine then.
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn reader(name: &str, bytes: Vec<u8>) -> Box<dyn ForeignReader> {
    if name.ends_with(".ntfsclone") {
        Box::new(NtfscloneReader::new(Cursor::new(bytes), name).unwrap())
    } else {
        Box::new(PartcloneReader::new(Cursor::new(bytes), name, ReadOptions::default()).unwrap())
    }
}

fn chunks(mut r: Box<dyn ForeignReader>) -> Vec<Chunk> {
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk(&Silent).unwrap() {
        out.push(c);
    }
    out
}

/// The stored blocks of a 0002 partclone image with a bit bitmap, by the
/// published layout: (bitmap length, stored block numbers).
fn partclone_blocks(img: &[u8]) -> (usize, Vec<u64>) {
    let total = u64::from_le_bytes(img[60..68].try_into().unwrap());
    let len = total.div_ceil(8) as usize;
    let bm = &img[110..110 + len];
    let blocks = (0..total)
        .filter(|&b| bm[(b / 8) as usize] >> (b % 8) & 1 == 1)
        .collect();
    (len, blocks)
}

// ---------------------------------------------------------------------------
// Restores of the real tools' images.

#[test]
fn restores_match_the_tools_own_restore() {
    let dir = Scratch::new();
    for name in images() {
        let e = expected(&name);
        let img = dir.write(&name, &load(&name));
        let out = dir.path(&format!("{name}.restored"));
        run_ok(&["-q", "-r", "-o", s(&out), s(&img)]);
        let got = fs::read(&out).unwrap();
        assert_eq!(got.len() as u64, num(&e, "restore_size"), "{name}: size");
        assert_eq!(sha(&got), e["restore_sha256"], "{name}: bytes");
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn restores_from_a_pipe_to_a_pipe() {
    let dir = Scratch::new();
    for name in images() {
        let e = expected(&name);
        let bytes = load(&name);
        if is_metadata(&name) {
            // Out-of-order clusters cannot go to a stream; to a file they can.
            let out = run_stdin(&["-q", "-r", "-o", "-", "-"], &bytes);
            assert_eq!(out.status.code(), Some(1), "{name}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("(an ntfsclone metadata image): it can be restored to a file or a device, not to standard output"),
                "{err}"
            );
            let file = dir.path("meta.raw");
            let out = run_stdin(&["-q", "-r", "-o", s(&file), "-"], &bytes);
            assert!(out.status.success(), "{name}");
            assert_eq!(sha(&fs::read(&file).unwrap()), e["restore_sha256"]);
            continue;
        }
        let out = run_stdin(&["-q", "-r", "-o", "-", "-"], &bytes);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len() as u64, num(&e, "restore_size"), "{name}");
        assert_eq!(sha(&out.stdout), e["restore_sha256"], "{name}");
    }
}

#[test]
fn restores_equal_the_source_on_every_block_the_image_holds() {
    for name in images() {
        if is_metadata(&name) {
            // ntfsclone wipes timestamps and unused MFT space in these.
            continue;
        }
        let e = expected(&name);
        let source = load(&format!("{}.vol", e["source"]));
        assert_eq!(sha(&source), e["source_sha256"], "{name}: source");
        let mut bytes = 0u64;
        for c in chunks(reader(&name, load(&name))) {
            for (x, data) in c.pieces() {
                assert!(
                    source[x.offset as usize..x.end() as usize] == *data,
                    "{name}: bytes {}..{} differ from the source",
                    x.offset,
                    x.end()
                );
                bytes += x.len;
            }
        }
        let want = if name.ends_with(".ntfsclone") {
            // Every used cluster, then the 512-byte backup boot sector.
            num(&e, "inuse") * num(&e, "cluster_size") + 512
        } else {
            num(&e, "used_blocks") * num(&e, "block_size")
        };
        assert_eq!(bytes, want, "{name}: used bytes");
    }
}

fn info_lines(path: &Path) -> HashMap<String, String> {
    let out = run_ok(&["info", s(path)]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once("  ")?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[test]
fn info_describes_each_image() {
    let dir = Scratch::new();
    for name in images() {
        let e = expected(&name);
        let img = dir.write(&name, &load(&name));
        let i = info_lines(&img);
        if name.ends_with(".ntfsclone") {
            assert_eq!(i["format"], format!("ntfsclone {}", e["version"]));
            assert_eq!(i["filesystem"], "NTFS");
            assert_eq!(i["cluster size"], e["cluster_size"]);
            assert_eq!(i["device size"], e["device_size"]);
            assert_eq!(i["total clusters"], e["nr_clusters"]);
            assert!(i["used clusters"].starts_with(&format!("{} ", e["inuse"])));
            assert_eq!(i["checksums"], "none (the format has none)");
        } else {
            assert_eq!(i["format"], format!("partclone {}", e["version"]), "{name}");
            assert_eq!(i["filesystem"], e["fs"]);
            assert_eq!(i["block size"], e["block_size"]);
            assert_eq!(i["total blocks"], e["total_blocks"]);
            assert_eq!(i["used blocks"], e["used_blocks"]);
            assert_eq!(i["device size"], e["restore_size"]);
            if e["version"] == "0002" {
                assert_eq!(i["writer"], "partclone v0.3.23");
            }
        }
        // The same from standard input.
        let out = run_stdin(&["info", "-"], &load(&name));
        assert!(out.status.success(), "{name}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&i["format"]));
    }
}

#[test]
fn verify_says_what_it_checked() {
    let dir = Scratch::new();
    for name in images() {
        let e = expected(&name);
        let img = dir.write(&name, &load(&name));
        let out = run_ok(&["verify", s(&img)]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains(": OK: "), "{name}: {text}");
        let checked = text.lines().find(|l| l.contains("checked: ")).unwrap();
        let used = e.get("used_blocks").map(|u| u.parse::<u64>().unwrap());
        match (name.as_str(), e["format"].as_str()) {
            (_, "ntfsclone") => {
                assert!(checked.contains("ending with the backup boot sector"));
                assert!(text.contains(
                    "not checked: ntfsclone images carry no checksums, so the cluster data itself could not be checked"
                ));
            }
            (n, _) if e["checksum"] == "CRC32" => {
                let bpc = num(&e, "blocks_per_checksum");
                let used = used.unwrap();
                assert_eq!(
                    checked.trim(),
                    format!(
                        "checked: the header CRC, the bitmap CRC and {} CRC32 checksums over {used} blocks",
                        used.div_ceil(bpc)
                    ),
                    "{n}"
                );
                assert!(!text.contains("not checked"), "{n}");
            }
            (_, _) if e["checksum"] == "NONE" => {
                assert!(text.contains("not checked: the image has no data checksums"));
            }
            _ => {
                assert_eq!(e["version"], "0001");
                assert!(checked.contains(&format!("{} per-block CRCs", used.unwrap())));
                assert!(text.contains("covers only the first byte of each block"));
            }
        }
        let out = run_stdin(&["verify", "-"], &load(&name));
        assert!(out.status.success(), "{name} from standard input");
    }
}

// ---------------------------------------------------------------------------
// partclone corruption.

#[test]
fn partclone_every_header_byte_flipped() {
    let img = load("ext4.ptcl");
    let stored = u32::from_le_bytes(img[106..110].try_into().unwrap());
    for i in 0..110 {
        let mut bad = img.clone();
        bad[i] ^= 0x01;
        let err = verify_err(&bad);
        let want = if i < 15 {
            "not an fsimg image: bad magic at byte 0 (nor an ntfsclone or partclone image: it starts with ".to_string()
        } else if (30..34).contains(&i) {
            format!(
                "partclone image version {:?} is not supported (fsimg reads 0001 and 0002)",
                String::from_utf8_lossy(&bad[30..34])
            )
        } else {
            let stored = u32::from_le_bytes(bad[106..110].try_into().unwrap());
            format!(
                "partclone image header checksum mismatch at byte 106: stored 0x{stored:08x}, computed 0x{:08x}",
                crc32(0xFFFF_FFFF, &bad[..106])
            )
        };
        assert!(err.starts_with(&want), "byte {i}: {err:?}, want {want:?}");
    }
    assert_eq!(crc32(0xFFFF_FFFF, &img[..106]), stored);
}

/// Sets bytes of a 0002 header and re-seals its CRC.
fn sealed(img: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut b = img.to_vec();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32(0xFFFF_FFFF, &b[..106]);
    b[106..110].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn partclone_header_fields_out_of_range() {
    let img = load("ext4.ptcl");
    let cases: Vec<(usize, Vec<u8>, &str)> = vec![
        (
            34,
            vec![0xc0, 0xde],
            "partclone image: invalid byte order mark at byte 34: 0xdec0 (0xc0de; the image was made on a big-endian machine)",
        ),
        (
            84,
            0u32.to_le_bytes().to_vec(),
            "partclone image: invalid block size at byte 84: 0 (1 to 67108864)",
        ),
        (
            84,
            (64u32 << 20 | 1).to_le_bytes().to_vec(),
            "partclone image: invalid block size at byte 84: 67108865 (1 to 67108864)",
        ),
        (
            60,
            (1u64 << 44).to_le_bytes().to_vec(),
            "partclone image: invalid total blocks at byte 60: 17592186044416 (at most 8796093022208)",
        ),
        (
            76,
            4097u64.to_le_bytes().to_vec(),
            "partclone image: invalid used blocks at byte 76: 4097 (more than the 4096 total blocks)",
        ),
        (
            52,
            1000u64.to_le_bytes().to_vec(),
            "partclone image: invalid device size at byte 52: 1000 (the 4096 blocks of 1024 bytes need 4194304)",
        ),
        (
            96,
            0x21u16.to_le_bytes().to_vec(),
            "partclone image: invalid checksum mode at byte 96: 0x21 (0x00 none, 0x20 CRC32, 0x30 XXH64, 0x31 XXH128)",
        ),
        (
            98,
            8u16.to_le_bytes().to_vec(),
            "partclone image: invalid checksum size at byte 98: 8 (4 for CRC32)",
        ),
        (
            100,
            0u32.to_le_bytes().to_vec(),
            "partclone image: invalid blocks per checksum at byte 100: 0 (with CRC32 checksums)",
        ),
        (
            105,
            vec![2],
            "partclone image: invalid bitmap mode at byte 105: 0x02 (0x00 none, 0x01 bit, 0x08 byte)",
        ),
    ];
    for (at, bytes, want) in cases {
        assert_eq!(verify_err(&sealed(&img, at, &bytes)), want);
    }
    // The most blocks of the largest size overflow 64 bits (found by the
    // fuzzer: an overflow panic before this check existed).
    let huge = sealed(&img, 84, &(64u32 << 20).to_le_bytes());
    assert_eq!(
        verify_err(&sealed(&huge, 60, &(1u64 << 43).to_le_bytes())),
        "partclone image: invalid total blocks at byte 60: 8796093022208 (blocks of 67108864 bytes would span more than 2^64 bytes)"
    );
    // A used count that disagrees with the bitmap: partclone goes by the
    // bitmap, and so does fsimg, with a warning.
    let dir = Scratch::new();
    let p = dir.write("used.ptcl", &sealed(&img, 76, &1000u64.to_le_bytes()));
    let out = dir.path("out");
    let r = run_ok(&["-r", "-o", s(&out), s(&p)]);
    assert!(
        String::from_utf8_lossy(&r.stderr)
            .contains("the partclone header says 1000 used blocks but its bitmap has 1664"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        sha(&fs::read(&out).unwrap()),
        expected("ext4.ptcl")["restore_sha256"]
    );
}

#[test]
fn partclone_bitmap_corruption() {
    let img = load("ext4.ptcl");
    let (len, _) = partclone_blocks(&img);
    let at = 110 + len;
    let stored = u32::from_le_bytes(img[at..at + 4].try_into().unwrap());
    let mut bad = img.clone();
    bad[110 + 300] ^= 0x40;
    assert_eq!(
        verify_err(&bad),
        format!(
            "partclone image bitmap checksum mismatch at byte {at}: stored 0x{stored:08x}, computed 0x{:08x}",
            crc32(0xFFFF_FFFF, &bad[110..at])
        )
    );
}

/// Where stored block `k` of a CRC32 image is, and what its checksum
/// error says up to the stored value: (data offset, message prefix).
fn strip_of(img: &[u8], k: usize, kind: &str) -> (usize, String) {
    let (len, blocks) = partclone_blocks(img);
    let bs = u32::from_le_bytes(img[84..88].try_into().unwrap()) as usize;
    let bpc = u32::from_le_bytes(img[100..104].try_into().unwrap()) as usize;
    let cs = u16::from_le_bytes(img[98..100].try_into().unwrap()) as usize;
    let data = 110 + len + 4;
    let strip = k / bpc;
    let end = ((strip + 1) * bpc).min(blocks.len());
    let first = blocks[strip * bpc];
    let last = blocks[end - 1];
    let sum_at = data + end * bs + strip * cs;
    (
        data + k * bs + (k / bpc) * cs,
        format!(
            "partclone image: {kind} checksum mismatch at byte {sum_at} for the {} block(s) ending at block {last} (blocks {first}..={last}): stored ",
            end - strip * bpc
        ),
    )
}

#[test]
fn partclone_data_corruption_stops_the_restore_with_the_block() {
    let dir = Scratch::new();
    for name in [
        "ext4.ptcl",
        "ext4-k7-noreseed.ptcl",
        "fat16.ptcl",
        "ntfs.ptcl",
    ] {
        let img = load(name);
        let (_, blocks) = partclone_blocks(&img);
        let bs = u32::from_le_bytes(img[84..88].try_into().unwrap()) as u64;
        for k in [0, blocks.len() / 2, blocks.len() - 1] {
            let (at, want) = strip_of(&img, k, "CRC32");
            let mut bad = img.clone();
            bad[at + 5] ^= 0x10;
            let err = verify_err(&bad);
            assert!(
                err.starts_with(&want),
                "{name} block {k}: {err}\nwant {want}"
            );
            assert!(
                err.ends_with("; the image is corrupt (--ignore-checksums restores it anyway)")
            );
            if k != blocks.len() / 2 {
                continue;
            }
            // The restore stops too, and leaves nothing behind.
            let p = dir.write("bad.ptcl", &bad);
            let out = dir.path("out");
            run_err(&["-r", "-o", s(&out), s(&p)], &want);
            assert!(!out.exists(), "{name}: a failed restore left its output");
            // Unless told to go on: then the volume is the tool's restore
            // with the one flipped byte.
            let r = run_ok(&["-r", "--ignore-checksums", "-o", s(&out), s(&p)]);
            let err = String::from_utf8_lossy(&r.stderr);
            assert!(
                err.contains("ignoring a checksum mismatch (--ignore-checksums)"),
                "{err}"
            );
            assert!(err.contains("checksum mismatch(es) ignored"), "{err}");
            let mut fixed = fs::read(&out).unwrap();
            fixed[(blocks[k] * bs + 5) as usize] ^= 0x10;
            assert_eq!(sha(&fixed), expected(name)["restore_sha256"], "{name}");
            fs::remove_file(&out).unwrap();
            // verify --ignore-checksums lists every mismatch and fails.
            let v = run(&["verify", "--ignore-checksums", s(&p)]);
            assert_eq!(v.status.code(), Some(1));
            let verr = String::from_utf8_lossy(&v.stderr);
            assert!(
                verr.contains("checksum mismatch(es), listed above"),
                "{verr}"
            );
            let listed = verr.matches("ignoring a checksum mismatch").count();
            if name.contains("noreseed") {
                // A chained checksum stays wrong after a bad strip.
                assert!(listed > 1, "{verr}");
            } else {
                assert_eq!(listed, 1, "{verr}");
            }
        }
        // A damaged checksum is a mismatch of its strip too.
        let (_, want) = strip_of(&img, 0, "CRC32");
        let sum_at: usize = want
            .split("at byte ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut bad = img.clone();
        bad[sum_at] ^= 0xff;
        assert!(verify_err(&bad).starts_with(&want), "{name}");
    }
}

#[test]
fn truncated_images_at_many_lengths() {
    for name in [
        "ext4.ptcl",
        "fat16-nocsum.ptcl",
        "ext4-0001.ptcl",
        "ntfs.ntfsclone",
    ] {
        let img = load(name);
        let magic = if name.ends_with(".ntfsclone") { 16 } else { 15 };
        let mut lengths: Vec<usize> = (0..160).collect();
        lengths.extend((0..img.len()).step_by(img.len() / 97 + 1));
        lengths.extend([img.len() - 1, img.len() - 4, img.len() - 5]);
        for len in lengths {
            let err = verify_err(&img[..len]);
            if len < magic {
                assert!(
                    err.starts_with("not an fsimg image: bad magic at byte 0"),
                    "{err}"
                );
            } else {
                let format = if name.ends_with(".ntfsclone") {
                    "ntfsclone"
                } else {
                    "partclone"
                };
                assert!(
                    err.starts_with(&format!(
                        "{format} image is truncated: it ends at byte {len}, inside "
                    )),
                    "{name} cut at {len}: {err}"
                );
            }
        }
    }
}

#[test]
fn trailing_data_fails_verify_and_is_a_warning_on_restore() {
    let dir = Scratch::new();
    for name in ["ext4.ptcl", "ntfs.ntfsclone"] {
        let mut img = load(name);
        let len = img.len();
        img.extend_from_slice(b"junk");
        let format = name.split('.').nth(1).unwrap().replace("ptcl", "partclone");
        assert_eq!(
            verify_err(&img),
            format!("{format} image has trailing data after its end, at byte {len}")
        );
        let p = dir.write("t", &img);
        let out = dir.path("out");
        let r = run_ok(&["-r", "-o", s(&out), s(&p)]);
        assert!(String::from_utf8_lossy(&r.stderr).contains("ignored, the volume is complete"));
        assert_eq!(
            sha(&fs::read(&out).unwrap()),
            expected(name)["restore_sha256"]
        );
        fs::remove_file(&out).unwrap();
    }
}

#[test]
fn partclone_0001_checks_and_blind_spots() {
    let img = load("ext4-0001.ptcl");
    let e = expected("ext4-0001.ptcl");
    let total = num(&e, "total_blocks") as usize;
    let bs = num(&e, "block_size") as usize;
    let data = 4160 + total + 8;
    // The bitmap magic.
    let mut bad = img.clone();
    bad[data - 1] = b'x';
    assert_eq!(
        verify_err(&bad),
        format!(
            "partclone image: invalid bitmap magic at byte {}: \"BiTmAgIx\" (\"BiTmAgIc\")",
            data - 8
        )
    );
    let blocks: Vec<usize> = (0..total).filter(|&b| img[4160 + b] == 1).collect();
    // The first byte of a block is covered (k = 10: the 11th stored block)...
    let k = 10;
    let at = data + k * (bs + 4);
    let mut bad = img.clone();
    bad[at] ^= 1;
    let b = blocks[k];
    assert!(
        verify_err(&bad).starts_with(&format!(
            "partclone image: CRC32_0001 checksum mismatch at byte {} for the 1 block(s) ending at block {b} (blocks {b}..={b}): stored ",
            at + bs
        )),
        "{}",
        verify_err(&bad)
    );
    // ... the rest is not (partclone's 0001 bug), and verify says so.
    let mut blind = img.clone();
    blind[at + 1] ^= 1;
    assert!(verify_bytes(&blind, ReadOptions::default()).is_ok());
    // Old 64-bit builds stored each CRC in 8 bytes: the same volume.
    let mut wide = img[..data].to_vec();
    for i in 0..blocks.len() {
        let rec = &img[data + i * (bs + 4)..][..bs + 4];
        wide.extend_from_slice(rec);
        wide.extend_from_slice(&[0; 4]);
    }
    let dir = Scratch::new();
    let p = dir.write("wide.ptcl", &wide);
    let out = dir.path("out");
    run_ok(&["-q", "-r", "-o", s(&out), s(&p)]);
    assert_eq!(sha(&fs::read(&out).unwrap()), e["restore_sha256"]);
    let v = run_ok(&["verify", s(&p)]);
    assert!(String::from_utf8_lossy(&v.stdout).contains("stored in 8 bytes"));
    // An unknown version.
    let mut v3 = img.clone();
    v3[30..34].copy_from_slice(b"0003");
    assert_eq!(
        verify_err(&v3),
        "partclone image version \"0003\" is not supported (fsimg reads 0001 and 0002)"
    );
}

// ---------------------------------------------------------------------------
// ntfsclone corruption.

/// The record offsets of an ntfsclone image: (offset, command, cluster).
fn ntfsclone_records(img: &[u8]) -> Vec<(usize, u8, i64)> {
    let cs = u32::from_le_bytes(img[18..22].try_into().unwrap()) as usize;
    let device = u64::from_le_bytes(img[22..30].try_into().unwrap()) as usize;
    let mut at = 56;
    let mut pos = 0i64;
    let mut out = Vec::new();
    while at < img.len() {
        out.push((at, img[at], pos));
        if img[at] == 0 {
            pos += i64::from_le_bytes(img[at + 1..at + 9].try_into().unwrap());
            at += 9;
        } else {
            at += 1 + cs.min(device - pos as usize * cs);
            pos += 1;
        }
    }
    out
}

#[test]
fn ntfsclone_header_fields() {
    let img = load("ntfs.ntfsclone");
    let cases: Vec<(usize, Vec<u8>, &str)> = vec![
        (
            16,
            vec![11],
            "ntfsclone image version 11.1 is not supported (fsimg reads up to 10.x)",
        ),
        (
            18,
            4095u32.to_le_bytes().to_vec(),
            "ntfsclone image: invalid cluster size at byte 18: 4095 (a power of two from 256 to 2097152)",
        ),
        (
            18,
            (4u32 << 20).to_le_bytes().to_vec(),
            "ntfsclone image: invalid cluster size at byte 18: 4194304 (a power of two from 256 to 2097152)",
        ),
        (
            22,
            0u64.to_le_bytes().to_vec(),
            "ntfsclone image: invalid device size at byte 22: 0",
        ),
        (
            30,
            (-1i64).to_le_bytes().to_vec(),
            "ntfsclone image: invalid cluster count at byte 30: -1 (4096-byte clusters in a 8389120-byte device)",
        ),
        (
            30,
            2049u64.to_le_bytes().to_vec(),
            "ntfsclone image: invalid cluster count at byte 30: 2049 (4096-byte clusters in a 8389120-byte device)",
        ),
        (
            46,
            49u32.to_le_bytes().to_vec(),
            "ntfsclone image: invalid data offset at byte 46: 49 (at least 50, normally 56)",
        ),
        (
            56,
            vec![2],
            "ntfsclone image: invalid command byte 0x02 at byte 56 (expected 0x00 for a gap or 0x01 for a cluster)",
        ),
    ];
    for (at, bytes, want) in cases {
        let mut bad = img.clone();
        bad[at..at + bytes.len()].copy_from_slice(&bytes);
        assert_eq!(verify_err(&bad), want);
    }
    for i in 0..16 {
        let mut bad = img.clone();
        bad[i] ^= 0x01;
        assert!(verify_err(&bad).starts_with("not an fsimg image: bad magic at byte 0"));
    }
}

#[test]
fn ntfsclone_bad_gaps() {
    let img = load("ntfs.ntfsclone");
    let recs = ntfsclone_records(&img);
    let &(at, _, pos) = recs.iter().find(|r| r.1 == 0).expect("a gap record");
    for (count, to) in [
        (0i64, pos as i128),
        (1 << 40, pos as i128 + (1 << 40)),
        (-pos - 1, -1),
        (2049 - pos, 2049),
    ] {
        let mut bad = img.clone();
        bad[at + 1..at + 9].copy_from_slice(&count.to_le_bytes());
        assert_eq!(
            verify_err(&bad),
            format!(
                "ntfsclone image: gap of {count} clusters at byte {at} goes from cluster {pos} to {to}, outside clusters 0..=2048"
            )
        );
    }
}

#[test]
fn ntfsclone_backup_boot_sector_record() {
    let img = load("ntfs.ntfsclone");
    let e = expected("ntfs.ntfsclone");
    let recs = ntfsclone_records(&img);
    let &(last, cmd, cluster) = recs.last().unwrap();
    assert_eq!((cmd, cluster), (1, 2048));
    assert_eq!(img.len() - last, 513, "a 512-byte partial cluster");
    // 10.1 without it: truncated.
    assert_eq!(
        verify_err(&img[..last]),
        format!(
            "ntfsclone image is truncated: it ends at byte {last}, inside the backup boot sector record that starts at byte {last}"
        )
    );
    // 10.0 without it: accepted with a warning, the last sector left out.
    let mut old = img[..last].to_vec();
    old[17] = 0;
    let dir = Scratch::new();
    let p = dir.write("old.ntfsclone", &old);
    let out = dir.path("out");
    let r = run_ok(&["-r", "-o", s(&out), s(&p)]);
    assert!(
        String::from_utf8_lossy(&r.stderr).contains(
            "this ntfsclone 10.0 image has no backup boot sector (images before 10.1 do not): the last 512 bytes of the volume are not restored"
        ),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let got = fs::read(&out).unwrap();
    assert_eq!(got.len() as u64, num(&e, "device_size"));
    assert!(got[got.len() - 512..].iter().all(|&b| b == 0));
    if have("ntfsclone") {
        // ntfsclone restores the same bytes from it.
        let theirs = dir.path("theirs");
        let st = Command::new("ntfsclone")
            .args(["-q", "-r", "-o", s(&theirs), s(&p)])
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let mut t = fs::read(&theirs).unwrap();
        t.resize(got.len(), 0);
        assert_eq!(sha(&t), sha(&got));
    }
}

// ---------------------------------------------------------------------------
// Robustness: random damage never panics.

#[test]
fn mutated_foreign_images_never_panic() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in [
        "fat16-nocsum.ptcl",
        "ntfs-metadata.ntfsclone",
        "ext4-0001.ptcl",
    ] {
        let img = load(name);
        // Damage near the front, where the structure is.
        let front = img.len().min(64 << 10);
        for _ in 0..40 {
            let mut bad = img[..front].to_vec();
            for _ in 0..(1 + next() % 8) {
                let at = (next() % front as u64) as usize;
                bad[at] = next() as u8;
            }
            let cut = (next() % front as u64) as usize;
            bad.truncate(cut.max(1));
            let _ = verify_bytes(&bad, ReadOptions::default());
            let _ = verify_bytes(
                &bad,
                ReadOptions {
                    ignore_checksums: true,
                },
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Writing ntfsclone images.

#[test]
fn ntfsclone_writer_reproduces_ntfsclone_images() {
    let img = load("ntfs.ntfsclone");
    let r = NtfscloneReader::new(Cursor::new(img.clone()), "ntfs.ntfsclone").unwrap();
    let h = r.header().clone();
    let mut w = NtfscloneWriter::new(
        Vec::new(),
        "out",
        h.cluster_size,
        h.device_size,
        h.nr_clusters,
        h.inuse,
    )
    .unwrap();
    for c in chunks(Box::new(r)) {
        w.write_chunk(c).unwrap();
    }
    w.finish().unwrap();
    assert!(w.into_inner().unwrap() == img, "not ntfsclone's bytes");

    // A metadata image goes back and forth; the writer only goes forward.
    let meta = load("ntfs-metadata.ntfsclone");
    let r = NtfscloneReader::new(Cursor::new(meta), "m").unwrap();
    let h = r.header().clone();
    let mut w = NtfscloneWriter::new(
        Vec::new(),
        "out",
        h.cluster_size,
        h.device_size,
        h.nr_clusters,
        h.inuse,
    )
    .unwrap();
    let err = chunks(Box::new(r))
        .into_iter()
        .find_map(|c| w.write_chunk(c).err())
        .expect("refused");
    assert!(
        err.to_string()
            .contains("clusters must come in ascending order"),
        "{err}"
    );
}

#[test]
fn saved_ntfsclone_images_are_ntfsclones_own_and_it_restores_them() {
    let dir = Scratch::new();
    let vol = dir.write("ntfs.vol", &load("ntfs.vol"));
    let img = dir.path("fsimg.ntfsclone");
    run_ok(&["-q", "-s", "--format", "ntfsclone", "-o", s(&img), s(&vol)]);
    // The NTFS module and ntfsclone agree on every used cluster of this
    // volume, so the images are the same bytes.
    assert!(
        fs::read(&img).unwrap() == load("ntfs.ntfsclone"),
        "fsimg's ntfsclone image differs from ntfsclone's"
    );
    // fsimg restores its own ntfsclone image.
    let out = dir.path("restored");
    run_ok(&["-q", "-r", "-o", s(&out), s(&img)]);
    let want = expected("ntfs.ntfsclone")["restore_sha256"].clone();
    assert_eq!(sha(&fs::read(&out).unwrap()), want);
    if !have("ntfsclone") {
        return;
    }
    // fsimg -s --format ntfsclone -o - vol | ntfsclone -r -O out -
    let mut save = fsimg()
        .args(["-q", "-s", "--format", "ntfsclone", "-o", "-", s(&vol)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let theirs = dir.path("theirs");
    fs::write(&theirs, b"").unwrap();
    let restore = Command::new("ntfsclone")
        .args(["-r", "-O", s(&theirs), "-"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        restore.status.success(),
        "ntfsclone -r: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let got = fs::read(&theirs).unwrap();
    assert_eq!(sha(&got), want, "ntfsclone's restore of fsimg's image");
    // Equal to the source on every cluster the NTFS module says is used.
    let source = load("ntfs.vol");
    let src = fsimg::source::MemSource::new(source.clone(), "ntfs.vol");
    let alloc = fsimg::fs::open(&src, fsimg::fs::FsChoice::Auto)
        .unwrap()
        .allocation(&src)
        .unwrap();
    let cs = alloc.map.cluster_size() as usize;
    assert!(alloc.map.used_clusters() > 700);
    for c in 0..alloc.map.total_clusters() as usize {
        if alloc.map.is_used(c as u64) {
            let r = c * cs..((c + 1) * cs).min(source.len());
            assert!(source[r.clone()] == got[r], "cluster {c} differs");
        }
    }
}

#[test]
fn format_ntfsclone_refuses_other_filesystems() {
    let dir = Scratch::new();
    let out = dir.path("out");
    for (vol, fs_name) in [("ext4", "ext4"), ("fat16", "fat16")] {
        let p = dir.write(vol, &load(&format!("{vol}.vol")));
        run_err(
            &["-s", "--format", "ntfsclone", "-o", s(&out), s(&p)],
            &format!(
                "{} holds {fs_name}, and --format ntfsclone writes NTFS volumes only (ntfsclone restores nothing else); save it in fsimg's own format (leave out --format)",
                s(&p)
            ),
        );
        assert!(!out.exists(), "a refused save left its output");
    }
    let ntfs = dir.write("ntfs.vol", &load("ntfs.vol"));
    run_err(
        &[
            "-s",
            "--format",
            "ntfsclone",
            "--fs-type",
            "raw",
            "-o",
            s(&out),
            s(&ntfs),
        ],
        "holds raw, and --format ntfsclone writes NTFS volumes only",
    );
    assert!(!out.exists());
    for args in [
        vec!["-s", "--format", "ntfsclone", "-z", "-o", s(&out), s(&ntfs)],
        vec!["--format", "ntfsclone", "-o", s(&out), s(&ntfs)],
        vec!["--ignore-checksums", "-o", s(&out), s(&ntfs)],
    ] {
        let r = run(&args);
        assert_eq!(r.status.code(), Some(2), "{args:?}");
        assert!(!out.exists());
    }
}

/// Root: the target device must hold the whole volume, checked before
/// anything is written.
#[test]
fn restore_onto_a_small_device_writes_nothing() {
    if !root() || !have("losetup") {
        return;
    }
    let dir = Scratch::new();
    let small = dir.write("small", &vec![0u8; 4 << 20]);
    let lo = Loop::attach(&small, false);
    for name in ["ntfs.ptcl", "ntfs.ntfsclone"] {
        let p = dir.write(name, &load(name));
        run_err(
            &["-r", "-O", &lo.dev, s(&p)],
            &format!(
                "{} is too small: the volume needs 8389120 bytes but the target has only 4194304",
                lo.dev
            ),
        );
    }
    drop(lo);
    assert!(fs::read(&small).unwrap().iter().all(|&b| b == 0));
}

/// `-m --format ntfsclone`: a metadata image in ntfsclone's format, which
/// restores (by fsimg and by ntfsclone) to exactly fsimg's own
/// metadata-only clone.
#[test]
fn metadata_ntfsclone_images_restore_to_the_metadata_clone() {
    let dir = Scratch::new();
    let vol = dir.write("ntfs.vol", &load("ntfs.vol"));
    let clone = dir.path("clone");
    run_ok(&["-q", "-m", "-o", s(&clone), s(&vol)]);
    let want = sha(&fs::read(&clone).unwrap());
    let img = dir.path("meta.ntfsclone");
    run_ok(&[
        "-q",
        "-s",
        "-m",
        "--format",
        "ntfsclone",
        "-o",
        s(&img),
        s(&vol),
    ]);
    assert!(fs::metadata(&img).unwrap().len() < 1 << 20, "metadata only");
    let out = dir.path("restored");
    run_ok(&["-q", "-r", "-o", s(&out), s(&img)]);
    assert_eq!(sha(&fs::read(&out).unwrap()), want);
    if have("ntfsclone") {
        let theirs = dir.path("theirs");
        let r = Command::new("ntfsclone")
            .args(["-r", "-o", s(&theirs), s(&img)])
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(sha(&fs::read(&theirs).unwrap()), want);
    }
}

/// Every NTFS test volume (512-byte to 64 KiB clusters, 4 KiB sectors, a
/// partial last cluster): the ntfsclone image fsimg writes has ntfsclone's
/// header values, is byte for byte what ntfsclone itself writes, and
/// restores (by fsimg and by ntfsclone) to exactly fsimg's own clone.
#[test]
fn ntfsclone_images_of_every_ntfs_test_volume() {
    let dir = Scratch::new();
    for name in common::images("ntfs") {
        let e = expected_in("ntfs", &name);
        let vol = dir.write("vol", &image("ntfs", &name));
        let clone = dir.path("clone");
        run_ok(&["-q", "-o", s(&clone), s(&vol)]);
        let want = sha(&fs::read(&clone).unwrap());
        let img = dir.path("img");
        run_ok(&["-q", "-s", "--format", "ntfsclone", "-o", s(&img), s(&vol)]);
        let bytes = fs::read(&img).unwrap();
        let h = NtfscloneReader::new(Cursor::new(&bytes[..]), &name)
            .unwrap()
            .header()
            .clone();
        assert_eq!(h.nr_clusters, num(&e, "ntfsclone_total_clusters"), "{name}");
        assert_eq!(h.inuse, num(&e, "ntfsclone_used_clusters"), "{name}");
        let out = dir.path("out");
        run_ok(&["-q", "-r", "-o", s(&out), s(&img)]);
        assert_eq!(sha(&fs::read(&out).unwrap()), want, "{name}: fsimg -r");
        if have("ntfsclone") {
            let theirs = dir.path("theirs");
            let r = Command::new("ntfsclone")
                .args(["-r", "-o", s(&theirs), s(&img)])
                .output()
                .unwrap();
            assert!(
                r.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            assert_eq!(
                sha(&fs::read(&theirs).unwrap()),
                want,
                "{name}: ntfsclone -r"
            );
            let r = Command::new("ntfsclone")
                .args(["-s", "-o", "-", s(&vol)])
                .output()
                .unwrap();
            assert!(
                r.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            assert!(
                r.stdout == bytes,
                "{name}: not ntfsclone --save-image's bytes"
            );
            fs::remove_file(&theirs).unwrap();
        }
        for p in [&clone, &img, &out] {
            fs::remove_file(p).unwrap();
        }
    }
}
