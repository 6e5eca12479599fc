//! Any bytes as an fsimg image, read through.
//! The promise and its checks live in `fsimg::fuzz::image_reader`, which the stable
//! test suite (tests/fuzz.rs) also runs over seeds and mutations.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fsimg::fuzz::image_reader(data);
});
