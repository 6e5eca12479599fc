//! Any bytes as a file opened for random access (fsimg, ntfsclone or
//! partclone image, or a raw volume), read in pieces and at ranges.
//! The promise and its checks live in `fsimg::fuzz::random_access`, which
//! the stable test suite (tests/fuzz.rs) also runs over seeds and
//! mutations.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fsimg::fuzz::random_access(data);
});
