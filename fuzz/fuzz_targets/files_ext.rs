//! Any bytes (up to 2 MiB) as a Ext volume read file by file, as `fsimg ls -R`,
//! `cat` and `extract` read it: directories, inodes or records, file data,
//! symlinks, streams. The promise and its checks live in
//! `fsimg::fuzz::files`, which the stable test suite (tests/fuzz.rs) also
//! runs over seeds and mutations.

#![no_main]

use fsimg::fs::FsChoice;
use fsimg::fuzz::MAX_FUZZ_VOLUME;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= MAX_FUZZ_VOLUME {
        fsimg::fuzz::files(data, FsChoice::Ext);
    }
});
