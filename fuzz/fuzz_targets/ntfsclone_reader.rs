//! Any bytes as an ntfsclone image (the first byte: read front to back).
//! The promise and its checks live in `fsimg::fuzz::ntfsclone_reader`, which the stable
//! test suite (tests/fuzz.rs) also runs over seeds and mutations.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fsimg::fuzz::ntfsclone_reader(data);
});
