//! Any bytes as a volume: recognising the filesystem and reading its
//! allocation map and its metadata (-m) must answer Ok or Err, never panic,
//! hang or allocate absurdly. Inputs are capped at 1 MiB.

#![no_main]

use fsimg::fs::{self, FsChoice};
use fsimg::source::{MemSource, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 1 << 20 {
        return;
    }
    let src = MemSource::new(data.to_vec(), "fuzz");
    let Ok(fs) = fs::open(&src, FsChoice::Auto) else {
        return;
    };
    let _ = fs.cluster_size();
    let _ = fs.device_size();
    let _ = fs.unclean();
    let _ = fs.describe();
    if let Ok(alloc) = fs.allocation(&src) {
        assert_eq!(alloc.map.device_size(), fs.device_size());
        assert!(alloc.map.used_clusters() <= alloc.map.total_clusters());
    }
    // The metadata walk (inode tables, extent trees, directory chains)
    // and its scrubber over every metadata piece.
    if let Ok(m) = fs.metadata(&src) {
        assert_eq!(m.allocation.map.device_size(), fs.device_size());
        if let Some(scrub) = &m.scrub {
            for run in m.allocation.map.runs() {
                let (at, len) = m.allocation.map.run_bytes(run);
                let mut buf = vec![0u8; len as usize];
                if src.read_exact_at(&mut buf, at).is_ok() {
                    scrub.scrub(&src, at, &mut buf);
                }
            }
        }
    }
});
