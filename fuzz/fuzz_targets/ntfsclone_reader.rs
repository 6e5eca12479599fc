//! Any bytes as an ntfsclone image: the reader must answer Ok or Err, never
//! panic or hang, and every chunk it yields must match its extents and lie
//! inside the device.

#![no_main]

use std::io::Cursor;

use fsimg::foreign::{ForeignReader, NtfscloneReader};
use fsimg::report::Silent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = NtfscloneReader::new(Cursor::new(data), "fuzz") else {
        return;
    };
    // Odd first byte: a target written front to back (negative gaps refused).
    reader.set_sequential(data.first().is_some_and(|b| b & 1 == 1));
    let device_size = reader.device_size();
    let _ = reader.describe();
    loop {
        match reader.next_chunk(&Silent) {
            Ok(Some(c)) => {
                let len: u64 = c.extents.iter().map(|e| e.len).sum();
                assert_eq!(c.data.len() as u64, len, "chunk data matches its extents");
                for w in c.extents.windows(2) {
                    assert!(w[0].end() < w[1].offset, "extents ascend without touching");
                }
                for e in &c.extents {
                    assert!(e.len > 0 && e.end() <= device_size, "extent inside the device");
                }
            }
            Ok(None) => {
                let _ = reader.trailing();
                let _ = reader.checked();
                return;
            }
            Err(_) => return,
        }
    }
});
