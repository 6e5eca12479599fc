//! Any bytes (up to 2 MiB) as an XFS volume in the sparse form of
//! `fsimg::fuzz::SparseSource`: the device size (u64 LE, up to 1 GiB),
//! then pieces (offset u64 LE, length u32 LE, bytes) on zeros. Real XFS
//! volumes are 300 MB at least; only their non-zero metadata sectors fit a
//! fuzz input, so the input lists them with their places. Superblock,
//! log head search, AGF, AGFL and free-space btree walks, and the
//! allocation map's promises (`fsimg::fuzz::volume`'s checks), which the
//! stable test suite (tests/fuzz.rs) also runs over seeds and mutations.

#![no_main]

use fsimg::fs::FsChoice;
use fsimg::fuzz::MAX_FUZZ_VOLUME;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() <= MAX_FUZZ_VOLUME {
        fsimg::fuzz::sparse_volume(data, FsChoice::Xfs);
    }
});
