//! Any bytes as a whole disk: finding and reading its partition table (MBR,
//! EBR chain, GPT with its backup, hybrid), opening each partition, and
//! relocating the table for a smaller and a larger target must answer Ok
//! or Err, never panic, hang or allocate absurdly. Inputs are capped at
//! 1 MiB; the first byte picks the sector size (512 or 4096).

#![no_main]

use std::sync::Arc;

use fsimg::disk::open::{self, Disk};
use fsimg::disk::retarget::Retarget;
use fsimg::source::{MemSource, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, disk)) = data.split_first() else {
        return;
    };
    if disk.len() > 1 << 20 {
        return;
    }
    let sector = if pick & 1 == 0 { None } else { Some(4096) };
    let src: Arc<dyn Source> = Arc::new(MemSource::new(disk.to_vec(), "fuzz"));
    let Ok(Some(table)) = open::read(src.as_ref(), sector) else {
        return;
    };
    for p in &table.partitions {
        assert!(p.start + p.len <= table.disk_size);
    }
    let size = table.disk_size;
    let Ok(d) = Disk::open(src, table, false) else {
        return;
    };
    let _ = d.fixed_extents();
    let _ = d.unpartitioned_bytes();
    for target in [size / 2, size, size + (1 << 20)] {
        let _ = Retarget::new(&d.table, &d.pieces, target, pick & 2 != 0);
    }
});
