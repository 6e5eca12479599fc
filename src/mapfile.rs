//! GNU ddrescue's mapfile format, so that ddrescuelog and ddrescueview
//! read what a rescue run did, and a rerun can resume it.
//!
//! After comment lines (`#`), a status line `current_pos current_status
//! current_pass`, then one line per block, `pos size status`, in order and
//! covering the whole volume. Statuses used here: `?` not tried (or not
//! needed: fsimg never reads unused clusters), `+` copied, `-` unreadable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::copier::Extent;
use crate::error::{Error, Result};

/// Not tried.
pub const NON_TRIED: u8 = b'?';
/// Copied.
pub const FINISHED: u8 = b'+';
/// Unreadable.
pub const BAD: u8 = b'-';

/// The state of every byte of a volume, as ddrescue records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapfile {
    /// (pos, size, status) blocks, in order, covering the volume.
    blocks: Vec<(u64, u64, u8)>,
    size: u64,
}

impl Mapfile {
    /// A volume of `size` bytes, nothing tried.
    pub fn new(size: u64) -> Self {
        Mapfile {
            blocks: vec![(0, size, NON_TRIED)],
            size,
        }
    }

    /// Parses a mapfile of a volume of `size` bytes.
    pub fn parse(text: &str, size: u64, path: &Path) -> Result<Self> {
        let bad = |line: usize, why: &str| {
            Error::Usage(format!("{}: line {line}: {why}", path.display()))
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        lines.next().ok_or_else(|| bad(1, "no status line"))?;
        let mut blocks = Vec::new();
        let mut next = 0u64;
        for (n, line) in lines {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 3 || f[2].len() != 1 {
                return Err(bad(n, "expected `pos size status`"));
            }
            let pos = number(f[0]).ok_or_else(|| bad(n, "bad position"))?;
            let len = number(f[1]).ok_or_else(|| bad(n, "bad size"))?;
            let st = f[2].as_bytes()[0];
            if !b"?*/-+".contains(&st) {
                return Err(bad(n, "unknown status"));
            }
            if pos != next || len == 0 {
                return Err(bad(n, "blocks must be contiguous and non-empty"));
            }
            // ddrescue's other failure states are retried like bad ones.
            let st = if st == b'*' || st == b'/' { BAD } else { st };
            blocks.push((pos, len, st));
            next = pos.checked_add(len).ok_or_else(|| bad(n, "overflow"))?;
        }
        if next != size {
            return Err(Error::Usage(format!(
                "{} describes a volume of {next} bytes, but this one has {size}; is it the mapfile of another volume?",
                path.display()
            )));
        }
        let mut m = Mapfile {
            blocks: Vec::new(),
            size,
        };
        for (p, l, s) in blocks {
            m.set(p, l, s);
        }
        Ok(m)
    }

    /// Reads `path`, or starts afresh if it does not exist.
    pub fn load(path: &Path, size: u64) -> Result<Self> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, size, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new(size)),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }

    /// Sets the status of `len` bytes at `pos` (clamped to the volume).
    /// Only the blocks around the range are touched, so the ascending
    /// updates of a copy cost a binary search and a splice near the end,
    /// not a pass over the whole map.
    pub fn set(&mut self, pos: u64, len: u64, status: u8) {
        let end = pos.saturating_add(len).min(self.size);
        if pos >= end {
            return;
        }
        // Blocks i..j overlap [pos, end).
        let i = self.blocks.partition_point(|&(p, l, _)| p + l <= pos);
        let j = self.blocks.partition_point(|&(p, _, _)| p < end);
        let mut new = Vec::with_capacity(3);
        if i < j {
            let (p, _, s) = self.blocks[i];
            if p < pos {
                new.push((p, pos - p, s));
            }
        }
        new.push((pos, end - pos, status));
        if i < j {
            let (p, l, s) = self.blocks[j - 1];
            if p + l > end {
                new.push((end, p + l - end, s));
            }
        }
        let added = new.len();
        self.blocks.splice(i..j, new);
        // Merge equal neighbours around what changed.
        let mut k = i.saturating_sub(1);
        while k < i + added && k + 1 < self.blocks.len() {
            let (a, b) = (self.blocks[k], self.blocks[k + 1]);
            if a.2 == b.2 && a.0 + a.1 == b.0 {
                self.blocks[k].1 += b.1;
                self.blocks.remove(k + 1);
            } else {
                k += 1;
            }
        }
    }

    /// The ranges with `status`, in order.
    pub fn ranges(&self, status: u8) -> impl Iterator<Item = Extent> + '_ {
        self.blocks
            .iter()
            .filter(move |b| b.2 == status)
            .map(|&(offset, len, _)| Extent { offset, len })
    }

    /// The text of the mapfile.
    pub fn to_text(&self, finished: bool) -> String {
        let mut s = String::from("# Mapfile. Created by fsimg ");
        s.push_str(env!("CARGO_PKG_VERSION"));
        s.push_str(" (GNU ddrescue format)\n");
        if finished {
            s.push_str("# Finished\n");
        }
        s.push_str("# current_pos  current_status  current_pass\n");
        let status = if finished { '+' } else { '?' };
        s.push_str(&format!("0x{:08X}     {status}               1\n", 0));
        s.push_str("#      pos        size  status\n");
        for &(p, l, st) in &self.blocks {
            s.push_str(&format!("0x{p:08X}  0x{l:08X}  {}\n", st as char));
        }
        s
    }

    /// Writes the mapfile atomically: a new file beside it, then a rename.
    pub fn save(&self, path: &Path, finished: bool) -> Result<()> {
        let tmp: PathBuf = {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".fsimg-new");
            path.with_file_name(name)
        };
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(self.to_text(finished).as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::io("cannot write the mapfile", path, e))
    }
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A sink that records, in a mapfile, what it has been given: extents as
/// copied, bad ranges as unreadable. It rewrites the mapfile at most once a
/// second while running, when dropped early, and when finished, so an
/// interrupted run can be resumed.
pub struct MapfileSink<'a> {
    inner: &'a mut dyn crate::sink::Sink,
    map: Mapfile,
    /// Where to save it (`None`: keep it in memory only, for retries).
    path: Option<PathBuf>,
    last_save: std::time::Instant,
    finished: bool,
}

impl<'a> MapfileSink<'a> {
    /// Wraps `inner`, recording into `map`, saved at `path` if given.
    pub fn new(inner: &'a mut dyn crate::sink::Sink, map: Mapfile, path: Option<&Path>) -> Self {
        MapfileSink {
            inner,
            map,
            path: path.map(Path::to_path_buf),
            last_save: std::time::Instant::now(),
            finished: false,
        }
    }

    /// The mapfile as recorded so far.
    pub fn mapfile(&self) -> &Mapfile {
        &self.map
    }

    /// Saves the mapfile now.
    pub fn save(&mut self, finished: bool) -> Result<()> {
        self.last_save = std::time::Instant::now();
        match &self.path {
            Some(p) => self.map.save(p, finished),
            None => Ok(()),
        }
    }
}

impl crate::sink::Sink for MapfileSink<'_> {
    fn write_chunk(&mut self, chunk: crate::copier::Chunk) -> Result<Option<crate::copier::Chunk>> {
        let extents = chunk.extents.clone();
        let bad = chunk.bad.clone();
        let back = self.inner.write_chunk(chunk)?;
        for e in extents {
            self.map.set(e.offset, e.len, FINISHED);
        }
        for e in bad {
            self.map.set(e.offset, e.len, BAD);
        }
        if self.last_save.elapsed() >= std::time::Duration::from_secs(1) {
            self.save(false)?;
        }
        Ok(back)
    }

    fn finish(&mut self) -> Result<()> {
        self.inner.finish()?;
        self.save(true)?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for MapfileSink<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: what was written is recorded for the next run.
            let _ = self.save(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_splits_and_merges() {
        let mut m = Mapfile::new(100);
        m.set(10, 20, FINISHED);
        m.set(30, 10, FINISHED);
        m.set(15, 5, BAD);
        assert_eq!(
            m.blocks,
            vec![
                (0, 10, NON_TRIED),
                (10, 5, FINISHED),
                (15, 5, BAD),
                (20, 20, FINISHED),
                (40, 60, NON_TRIED)
            ]
        );
        m.set(0, 100, FINISHED);
        assert_eq!(m.blocks, vec![(0, 100, FINISHED)]);
    }

    /// The ascending updates of a fragmented copy: every other 4 KiB
    /// copied, then one bad sector inside an early block.
    #[test]
    fn many_ascending_updates() {
        let n = 100_000u64;
        let mut m = Mapfile::new(n * 8192);
        for k in 0..n {
            m.set(k * 8192, 4096, FINISHED);
        }
        assert_eq!(m.blocks.len(), 2 * n as usize);
        assert_eq!(m.ranges(FINISHED).count(), n as usize);
        m.set(8192 + 512, 512, BAD);
        assert_eq!(
            &m.blocks[..5],
            &[
                (0, 4096, FINISHED),
                (4096, 4096, NON_TRIED),
                (8192, 512, FINISHED),
                (8704, 512, BAD),
                (9216, 3072, FINISHED)
            ]
        );
        m.set(0, n * 8192, FINISHED);
        assert_eq!(m.blocks, vec![(0, n * 8192, FINISHED)]);
    }

    #[test]
    fn text_round_trips_and_is_checked() {
        let mut m = Mapfile::new(0x10000);
        m.set(0x1000, 0x2000, FINISHED);
        m.set(0x1200, 0x200, BAD);
        let p = Path::new("x.map");
        assert_eq!(Mapfile::parse(&m.to_text(false), 0x10000, p).unwrap(), m);
        let err = Mapfile::parse(&m.to_text(false), 0x20000, p).unwrap_err();
        assert!(
            err.to_string()
                .contains("describes a volume of 65536 bytes"),
            "{err}"
        );
        let gap = "0 ? 1\n0x0 0x10 +\n0x20 0x10 -\n";
        assert!(
            Mapfile::parse(gap, 0x30, p)
                .unwrap_err()
                .to_string()
                .contains("line 3")
        );
        // ddrescue's own mapfile, with its failure states.
        let dd = "# Mapfile. Created by GNU ddrescue version 1.27\n0x00000000 + 1\n0x00000000 0x00000200 +\n0x00000200 0x00000200 *\n0x00000400 0x00000200 -\n";
        let m = Mapfile::parse(dd, 0x600, p).unwrap();
        assert_eq!(
            m.ranges(BAD).collect::<Vec<_>>(),
            vec![Extent {
                offset: 0x200,
                len: 0x400
            }]
        );
    }
}
