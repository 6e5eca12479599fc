//! Any bytes (up to 2 MiB) as a btrfs volume: superblock and mirrors, the
//! chunk tree from sys_chunk_array, the root, extent, block group and log
//! tree walks, the allocation map and the metadata-only map.
//!
//! mkfs.btrfs makes volumes of at least ~114 MiB, so the input is a sparse
//! volume (`fsimg::fuzz::SparseSource`): the device size (u64 LE, at most
//! 1 GiB), then pieces (offset u64 LE, length u32 LE, bytes), zeros
//! elsewhere. fuzz/seed.sh encodes the metadata-only copies of
//! testdata/btrfs this way (their non-zero 4 KiB blocks, ~100-300 KiB).
//! The promise and its checks live in `fsimg::fuzz::sparse_volume`, which
//! the stable test suite (tests/fuzz.rs) also runs over seeds and
//! mutations.

#![no_main]

use fsimg::fs::FsChoice;
use fsimg::fuzz::MAX_FUZZ_VOLUME;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= MAX_FUZZ_VOLUME {
        fsimg::fuzz::sparse_volume(data, FsChoice::Btrfs);
    }
});
