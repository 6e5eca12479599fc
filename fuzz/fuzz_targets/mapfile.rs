//! Any bytes as a GNU ddrescue mapfile (the first 8 bytes: the volume size).
//! The promise and its checks live in `fsimg::fuzz::mapfile`, which the stable
//! test suite (tests/fuzz.rs) also runs over seeds and mutations.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fsimg::fuzz::mapfile(data);
});
