//! Any bytes as a partclone 0001/0002 image (the last byte: --ignore-checksums).
//! The promise and its checks live in `fsimg::fuzz::partclone_reader`, which the stable
//! test suite (tests/fuzz.rs) also runs over seeds and mutations.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fsimg::fuzz::partclone_reader(data);
});
