//! Any bytes (up to 2 MiB) as an exFAT volume: boot regions, FAT, allocation
//! bitmap, directory tree.
//! The promise and its checks live in `fsimg::fuzz::volume`, which the stable
//! test suite (tests/fuzz.rs) also runs over seeds and mutations.

#![no_main]

use fsimg::fs::FsChoice;
use fsimg::fuzz::MAX_FUZZ_VOLUME;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= MAX_FUZZ_VOLUME {
        fsimg::fuzz::volume(data, FsChoice::Exfat);
    }
});
