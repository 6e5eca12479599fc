//! Any bytes as a partclone image (0001 or 0002): the reader must answer Ok
//! or Err, never panic, hang or allocate beyond what the input holds, and
//! every chunk it yields must match its extents and lie inside the device.

#![no_main]

use std::io::Cursor;

use fsimg::foreign::{ForeignReader, PartcloneReader, ReadOptions};
use fsimg::report::Silent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The last byte picks --ignore-checksums, to reach past mismatches.
    let opts = ReadOptions {
        ignore_checksums: data.last().is_some_and(|b| b & 1 == 1),
    };
    let Ok(mut reader) = PartcloneReader::new(Cursor::new(data), "fuzz", opts) else {
        return;
    };
    let device_size = reader.device_size();
    let _ = reader.describe();
    let mut previous_end = 0;
    loop {
        match reader.next_chunk(&Silent) {
            Ok(Some(c)) => {
                let len: u64 = c.extents.iter().map(|e| e.len).sum();
                assert_eq!(c.data.len() as u64, len, "chunk data matches its extents");
                for e in &c.extents {
                    assert!(e.len > 0 && e.end() <= device_size, "extent inside the device");
                    assert!(e.offset >= previous_end, "blocks in ascending order");
                    previous_end = e.end();
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
