//! Any bytes (up to 2 MiB) as a whole disk: its partition table, partitions and relocation.
//! The promise and its checks live in `fsimg::fuzz::disk_table`, which the stable
//! test suite (tests/fuzz.rs) also runs over seeds and mutations.

#![no_main]

use fsimg::fuzz::MAX_FUZZ_VOLUME;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= MAX_FUZZ_VOLUME + 1 {
        fsimg::fuzz::disk_table(data);
    }
});
