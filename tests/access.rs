//! Random access to the volume inside fsimg's own images (issue 17, first
//! layer): every test volume saved plain and with zstd reads back, whole
//! and at random, as `fsimg -r` restores it; whole disks and their
//! partitions; truncated and damaged images; pipes refused; the record
//! cache bounded.

mod common;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{Rng, image, images, run_ok, testdata};
use fsimg::access::{self, ImageSource, image::CACHE_BYTES};
use fsimg::image::ImageReader;
use fsimg::report::Report;
use fsimg::source::Source;

/// Collects the warnings.
#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl Report for Warnings {
    fn warn(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_string());
    }
}

impl Warnings {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Saves the volume or disk `src` as `name` in `dir` with extra `args`.
fn save(dir: &Path, src: &Path, name: &str, args: &[&str]) -> PathBuf {
    let img = dir.join(name);
    let mut all = vec!["-q", "-s", "--force"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", s(&img), s(src)]);
    run_ok(&all);
    img
}

/// What `fsimg -r -o` makes of `img`.
fn restore(dir: &Path, img: &Path) -> Vec<u8> {
    let out = dir.join("restored");
    let _ = fs::remove_file(&out);
    run_ok(&["-q", "-r", "-o", s(&out), s(img)]);
    let data = fs::read(&out).unwrap();
    fs::remove_file(&out).unwrap();
    data
}

/// Each record of an image: (image offset, image length, volume extents).
struct Rec {
    offset: u64,
    len: u64,
    extents: Vec<(u64, u64)>,
}

fn records(img: &Path) -> Vec<Rec> {
    let mut r = ImageReader::new(fs::File::open(img).unwrap(), "img").unwrap();
    let mut out: Vec<Rec> = Vec::new();
    while let Some(raw) = r.next_record().unwrap() {
        if let Some(last) = out.last_mut() {
            last.len = raw.offset - last.offset;
        }
        out.push(Rec {
            offset: raw.offset,
            len: 0,
            extents: raw.extents.iter().map(|e| (e.offset, e.end())).collect(),
        });
    }
    let end = r.position() - r.trailer().unwrap().to_bytes().len() as u64;
    if let Some(last) = out.last_mut() {
        last.len = end - last.offset;
    }
    out
}

/// Volume bytes where reads are most likely to go wrong: every record's
/// and extent's start and end.
fn boundaries(recs: &[Rec]) -> Vec<u64> {
    recs.iter()
        .flat_map(|r| r.extents.iter().flat_map(|&(a, b)| [a, b]))
        .collect()
}

fn read(src: &dyn Source, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0xa5u8; len];
    src.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads `src` whole in odd-sized chunks and at `n` random places (many
/// across the `edges`), comparing with `want`; reads past the end fail
/// with `UnexpectedEof`.
fn check(what: &str, src: &dyn Source, want: &[u8], edges: &[u64], n: usize, seed: u64) {
    let size = want.len() as u64;
    assert_eq!(src.size(), size, "{what}: size");
    let step = (1 << 20) + 513;
    let mut at = 0u64;
    while at < size {
        let len = step.min(size - at) as usize;
        let got = read(src, at, len).unwrap_or_else(|e| panic!("{what}: at {at}: {e}"));
        assert!(
            got == want[at as usize..at as usize + len],
            "{what}: chunk at {at}"
        );
        at += len as u64;
    }
    let mut rng = Rng::new(seed);
    for i in 0..n {
        let len = match rng.below(4) {
            0 => rng.below(16) + 1,
            1 => rng.below(8192) + 1,
            2 => rng.below(1 << 20) + 1,
            _ => rng.below(3 << 20) + 1,
        };
        let offset = match i % 8 {
            // Ending exactly at the end.
            0 => size.saturating_sub(len),
            // Across a record or extent boundary.
            1..=4 if !edges.is_empty() => {
                let e = edges[rng.below(edges.len() as u64) as usize];
                e.saturating_sub(rng.below(len + 1)).min(size)
            }
            _ => rng.below(size),
        };
        let end = offset + len;
        let got = read(src, offset, len as usize);
        if end > size {
            let e = got.expect_err(&format!("{what}: read {offset}+{len} past the end"));
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{what}: {e}");
        } else {
            let got = got.unwrap_or_else(|e| panic!("{what}: {offset}+{len}: {e}"));
            assert!(
                got == want[offset as usize..end as usize],
                "{what}: read {offset}+{len}"
            );
        }
    }
    // Past the end, by one byte and far.
    for (offset, len) in [(size, 1), (size - 1, 2), (size + (1 << 40), 4)] {
        let e = read(src, offset, len).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{what}");
    }
    assert_eq!(read(src, size, 0).unwrap(), Vec::<u8>::new());
}

/// Every volume of testdata/KIND, saved plain and with zstd.
fn volumes_of(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (k, name) in images(kind).iter().enumerate() {
        let vol = dir.path().join(format!("{name}.img"));
        fs::write(&vol, image(kind, name)).unwrap();
        for (z, args) in [("plain", &[][..]), ("zstd", &["-z"][..])] {
            let img = save(dir.path(), &vol, &format!("{name}.{z}.fsimg"), args);
            let want = restore(dir.path(), &img);
            let edges = boundaries(&records(&img));
            let w = Warnings::default();
            let src = access::open(&img, None, &w).unwrap();
            assert_eq!(src.name(), img.display().to_string());
            check(
                &format!("{name} {z}"),
                src.as_ref(),
                &want,
                &edges,
                2000,
                k as u64 + 1,
            );
            assert_eq!(w.take(), Vec::<String>::new());
            fs::remove_file(&img).unwrap();
        }
        // The raw volume reads as itself.
        let src = access::open(&vol, None, &fsimg::report::Silent).unwrap();
        let want = fs::read(&vol).unwrap();
        check(&format!("{name} raw"), src.as_ref(), &want, &[], 200, 99);
        fs::remove_file(&vol).unwrap();
    }
}

#[test]
fn ext_volumes() {
    volumes_of("ext");
}

#[test]
fn fat_volumes() {
    volumes_of("fat");
}

#[test]
fn ntfs_volumes() {
    volumes_of("ntfs");
}

#[test]
fn whole_disks_and_their_partitions() {
    let dir = tempfile::tempdir().unwrap();
    for name in images("disk") {
        let raw = dir.path().join(format!("{name}.img"));
        fs::write(&raw, image("disk", &name)).unwrap();
        let img = save(dir.path(), &raw, &format!("{name}.fsimg"), &["-z"]);
        let want = restore(dir.path(), &img);
        let edges = boundaries(&records(&img));
        let w = Warnings::default();
        let src = access::open(&img, None, &w).unwrap();
        check(&name, src.as_ref(), &want, &edges, 500, 7);
        let parts = ImageSource::open(fs::File::open(&img).unwrap(), "x", &w)
            .unwrap()
            .disk()
            .unwrap()
            .partitions
            .clone();
        assert!(!parts.is_empty(), "{name}");
        let raw_disk = fs::read(&raw).unwrap();
        for p in &parts {
            let (a, b) = (p.start as usize, (p.start + p.len) as usize);
            let part = access::open(&img, Some(p.number), &w).unwrap();
            assert_eq!(
                part.name(),
                format!("{} partition {}", img.display(), p.number)
            );
            let what = format!("{name} partition {}", p.number);
            let edges: Vec<u64> = edges
                .iter()
                .filter_map(|&e| e.checked_sub(p.start))
                .filter(|&e| e <= p.len)
                .collect();
            check(&what, part.as_ref(), &want[a..b], &edges, 200, 8);
            // The raw disk with --partition: its own table.
            let part = access::open(&raw, Some(p.number), &w).unwrap();
            check(
                &format!("{what} raw"),
                part.as_ref(),
                &raw_disk[a..b],
                &[],
                50,
                9,
            );
        }
        assert_eq!(w.take(), Vec::<String>::new());
        let have: Vec<String> = parts.iter().map(|p| p.number.to_string()).collect();
        for path in [&img, &raw] {
            let e = access::open(path, Some(99), &w).err().unwrap();
            assert_eq!(
                e.to_string(),
                format!(
                    "{} has no partition 99 (its partitions: {})",
                    path.display(),
                    have.join(", ")
                )
            );
        }
        fs::remove_file(&raw).unwrap();
        fs::remove_file(&img).unwrap();
    }
}

#[test]
fn a_volume_image_has_no_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v.img");
    fs::write(&vol, image("fat", "fat16")).unwrap();
    let img = save(dir.path(), &vol, "v.fsimg", &[]);
    let e = access::open(&img, Some(1), &fsimg::report::Silent)
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "--partition needs an image of a whole disk; {} holds one volume",
            img.display()
        )
    );
}

/// An ext volume saved with `args` in a new directory under `dir`, with
/// its records and what it restores to.
fn ext_image(dir: &Path, args: &[&str]) -> (PathBuf, Vec<Rec>, Vec<u8>) {
    let dir = tempfile::tempdir_in(dir).unwrap().keep();
    let vol = dir.join("vol.img");
    fs::write(&vol, image("ext", "ext4-default")).unwrap();
    let img = save(&dir, &vol, "vol.fsimg", args);
    let dir = dir.as_path();
    let recs = records(&img);
    assert!(recs.len() >= 5, "{} records", recs.len());
    let want = restore(dir, &img);
    (img, recs, want)
}

#[test]
fn truncated_images_are_indexed_by_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&[][..], &["-z"][..]] {
        let (img, recs, want) = ext_image(dir.path(), args);
        let bytes = fs::read(&img).unwrap();
        let k = recs.len() / 2;
        let trailer_at = recs.last().map(|r| r.offset + r.len).unwrap();
        // In the middle of record k's data, and after the last record.
        let mid = recs[k].offset + recs[k].len / 2 + 40;
        for (cut, found, why) in [
            (
                mid,
                k,
                format!(
                    "image is truncated: it ends at byte {mid}, inside the record data that starts at byte {}",
                    recs[k].offset
                ),
            ),
            (
                trailer_at,
                recs.len(),
                format!(
                    "image is truncated: it ends at byte {trailer_at}, inside the record or trailer that starts at byte {trailer_at}"
                ),
            ),
        ] {
            let cut_img = dir.path().join("cut.fsimg");
            fs::write(&cut_img, &bytes[..cut as usize]).unwrap();
            let w = Warnings::default();
            let src = access::open(&cut_img, None, &w).unwrap();
            assert_eq!(
                w.take(),
                vec![format!(
                    "{}: the image is incomplete ({why}): {found} records found by scanning it; \
                     the volume's bytes in no record read as zeros",
                    cut_img.display()
                )]
            );
            // What the records present hold, and zeros after them.
            let present_end = recs[found - 1].extents.last().unwrap().1 as usize;
            let mut expect = want.clone();
            expect[present_end..].fill(0);
            let edges = boundaries(&recs);
            check("truncated", src.as_ref(), &expect, &edges, 500, 3);
        }
    }
}

#[test]
fn a_damaged_trailer_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let (img, recs, want) = ext_image(dir.path(), &[]);
    let mut bytes = fs::read(&img).unwrap();
    let n = bytes.len();
    bytes[n - 30] ^= 0x40; // inside the index, under the trailer's CRC
    fs::write(&img, &bytes).unwrap();
    let w = Warnings::default();
    let src = access::open(&img, None, &w).unwrap();
    let warnings = w.take();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!(
            "{}: the image is incomplete (image trailer checksum mismatch at byte",
            img.display()
        )),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains(&format!("): {} records found by scanning it", recs.len())),
        "{warnings:?}"
    );
    check(
        "damaged trailer",
        src.as_ref(),
        &want,
        &boundaries(&recs),
        300,
        4,
    );
}

#[test]
fn a_damaged_record_fails_only_its_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (img, recs, want) = ext_image(dir.path(), &[]);
    let mut bytes = fs::read(&img).unwrap();
    let k = recs.len() / 2;
    let r = &recs[k];
    bytes[(r.offset + r.len - 100) as usize] ^= 1; // in its data
    fs::write(&img, &bytes).unwrap();
    let w = Warnings::default();
    let src = access::open(&img, None, &w).unwrap();
    assert_eq!(w.take(), Vec::<String>::new());
    let (first, last) = (r.extents[0].0, r.extents.last().unwrap().1);
    let prefix = format!(
        "{}: image record at byte {} (volume byte {first}): data checksum mismatch: stored 0x",
        img.display(),
        r.offset
    );
    for (offset, len) in [(first, 1), (last - 1, 1), (first.saturating_sub(10), 4096)] {
        let e = read(src.as_ref(), offset, len).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().starts_with(&prefix), "{e}");
    }
    // Every other record still reads (and the damaged one fails again).
    for (i, r) in recs.iter().enumerate() {
        let (a, b) = (r.extents[0].0, r.extents.last().unwrap().1);
        let got = read(src.as_ref(), a, (b - a) as usize);
        if i == k {
            assert!(got.unwrap_err().to_string().starts_with(&prefix));
        } else {
            assert!(got.unwrap() == want[a as usize..b as usize], "record {i}");
        }
    }
}

#[test]
fn pipes_and_standard_input_are_refused() {
    let w = Warnings::default();
    let e = access::open(Path::new("-"), None, &w).err().unwrap();
    assert_eq!(
        e.to_string(),
        "standard input: random access needs a seekable file; save the image to a file first"
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let e = access::open(&fifo, None, &w).err().unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: random access needs a seekable file; save the image to a file first",
            fifo.display()
        )
    );
    let e = access::open(&dir.path().join("none"), None, &w)
        .err()
        .unwrap();
    assert!(e.to_string().starts_with("cannot open "), "{e}");
}

#[test]
fn the_record_cache_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&[][..], &["-z"][..]] {
        let (img, recs, want) = ext_image(dir.path(), args);
        let limit = 3 << 20;
        let w = Warnings::default();
        let src =
            ImageSource::open_with_cache(fs::File::open(&img).unwrap(), "img", &w, limit).unwrap();
        let mut rng = Rng::new(5);
        for pass in 0..4 {
            let mut at = 0u64;
            while at < want.len() as u64 {
                let len = ((700 << 10) + rng.below(1 << 20)).min(want.len() as u64 - at);
                let got = read(&src, at, len as usize).unwrap();
                assert!(got == want[at as usize..(at + len) as usize], "pass {pass}");
                assert!(src.cached_bytes() <= limit, "{}", src.cached_bytes());
                at += len;
            }
            assert!(src.cached_bytes() > 0);
        }
        // Every record was decoded again on each pass: the cache is
        // smaller than the volume's records.
        assert!(src.records_decoded() >= 4 * recs.len() as u64 - 4);
        // Read from several threads at once.
        let edges = boundaries(&recs);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (src, want, edges) = (&src, &want, &edges);
                s.spawn(move || check("threads", src, want, edges, 300, 10 + t));
            }
        });
        assert!(src.cached_bytes() <= limit);
        // The default bound.
        let src = ImageSource::open(fs::File::open(&img).unwrap(), "img", &w).unwrap();
        check("default", &src, &want, &edges, 100, 6);
        assert!(src.cached_bytes() <= CACHE_BYTES);
        // Offsets that overflow are past the end too.
        let e = read(&src, u64::MAX - 1, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(w.take(), Vec::<String>::new());
    }
}

/// Fails reads touching `bad`.
struct Failing {
    data: Vec<u8>,
    bad: (u64, u64),
}

impl Source for Failing {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if offset < self.bad.1 && self.bad.0 < end {
            return Err(io::Error::from_raw_os_error(5));
        }
        buf.copy_from_slice(&self.data[offset as usize..end as usize]);
        Ok(())
    }
    fn name(&self) -> &str {
        "failing"
    }
}

#[test]
fn a_rescue_image_reads_its_bad_sectors_as_the_marker() {
    use fsimg::allocmap::AllocationMap;
    use fsimg::copier::{BAD_SECTOR_MARKER, CopyOptions, copy};
    use fsimg::image::{Header, ImageWriter, header};
    use fsimg::sink::Sink;

    let data: Vec<u8> = (0..(256u32 << 10))
        .map(|i| (i * 7 + i / 977) as u8)
        .collect();
    let src = Failing {
        data: data.clone(),
        bad: (40_000, 41_000),
    };
    let mut map = AllocationMap::new(4096, data.len() as u64);
    map.mark_used(0, 20);
    map.mark_used(24, 30);
    let h = Header {
        minor: header::MINOR,
        fs: 1,
        flags: header::FLAG_RESCUE,
        cluster_size: 4096,
        device_size: data.len() as u64,
        total_clusters: map.total_clusters(),
        used_clusters: map.used_clusters(),
        used_bytes: map.used_bytes(),
        compression: header::COMPRESSION_ZSTD,
        max_record: 16 << 10,
        writer: "test".into(),
    };
    let mut wr = ImageWriter::new(Vec::new(), "mem", &h, Some(1), 1).unwrap();
    let opts = CopyOptions {
        chunk_bytes: 16 << 10,
        rescue: true,
        ..CopyOptions::default()
    };
    let stats = copy(&src, &map, &mut wr, &opts, &fsimg::report::Silent).unwrap();
    assert!(!stats.bad.is_empty());
    wr.set_bad_ranges(stats.bad.clone());
    wr.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("rescue.fsimg");
    fs::write(&img, wr.into_inner()).unwrap();
    let want = restore(dir.path(), &img);
    let w = Warnings::default();
    let src = access::open(&img, None, &w).unwrap();
    check(
        "rescue",
        src.as_ref(),
        &want,
        &boundaries(&records(&img)),
        300,
        11,
    );
    // The first bad sector starts with the marker, as -r writes it.
    let first_bad = stats.bad[0].offset;
    let got = read(src.as_ref(), first_bad, 512).unwrap();
    assert_eq!(&got[..BAD_SECTOR_MARKER.len()], BAD_SECTOR_MARKER);
    assert!(got[BAD_SECTOR_MARKER.len()..].iter().all(|&b| b == b'?'));
    assert_eq!(w.take(), Vec::<String>::new());
}

#[test]
fn testdata_is_there() {
    assert!(testdata("ext").is_dir());
}

#[test]
fn an_index_that_disagrees_with_the_records_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (img, recs, want) = ext_image(dir.path(), &[]);
    let mut bytes = fs::read(&img).unwrap();
    let at = (recs.last().map(|r| r.offset + r.len).unwrap()) as usize;
    let mut t =
        fsimg::image::Trailer::from_bytes(at as u64, &bytes[at..], want.len() as u64).unwrap();
    assert_eq!(t.stride, 1);
    // Record 1 said to start one cluster later than it does.
    let stored = t.index[1].1 + 1;
    assert!(stored < t.index[2].1);
    t.index[1].1 = stored;
    bytes.truncate(at);
    bytes.extend(t.to_bytes());
    fs::write(&img, &bytes).unwrap();
    let w = Warnings::default();
    let src = access::open(&img, None, &w).unwrap();
    assert_eq!(w.take(), Vec::<String>::new());
    let first = recs[1].extents[0].0;
    let e = read(src.as_ref(), first, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: image trailer at byte {at}: index entry first cluster is {stored} but the records give {}",
            img.display(),
            stored - 1
        )
    );
    // Record 0 still reads.
    let (a, b) = (recs[0].extents[0].0, recs[0].extents[0].1);
    assert!(read(src.as_ref(), a, (b - a) as usize).unwrap() == want[a as usize..b as usize]);
}
