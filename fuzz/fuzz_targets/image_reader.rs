//! Any bytes as a special image: the reader must answer Ok or Err, never
//! panic, and an accepted image must deliver consistent chunks.

#![no_main]

use std::io::Cursor;

use fsimg::copier::Chunk;
use fsimg::image::ImageReader;
use fsimg::report::Silent;
use libfuzzer_sys::fuzz_target;

fn check(c: &Chunk, device_size: u64) {
    let len: u64 = c.extents.iter().map(|e| e.len).sum();
    assert_eq!(c.data.len() as u64, len, "chunk data matches its extents");
    for e in &c.extents {
        assert!(e.end() <= device_size, "extent inside the volume");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = ImageReader::new(Cursor::new(data), "fuzz") else {
        return;
    };
    let device_size = reader.header().device_size;
    // The consumer hands each chunk back, as sinks do, for reuse.
    let _ = fsimg::ops::read_records(reader, 1, &Silent, |c| {
        check(&c, device_size);
        Ok(Some(c))
    });
});
