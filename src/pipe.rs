//! Standard output, written the way a pipe rewards.
//!
//! fsimg's headline use is a pipe (`fsimg -s -o - /dev/sda1 | zstd`), and a
//! pipe punishes the obvious way of writing. Measured on a 2-vCPU VM, 900 MB
//! through `| cat` (tools/bench.sh's pipe rows; issue 23's notes):
//!
//! * A pipe holds 64 KiB by default. A writer that fills it sleeps until
//!   the reader, on another CPU, empties it, and wakes it again: one
//!   cross-CPU wake-up per 64 KiB, which costs more than the copy. 1 MiB
//!   writes into a default pipe took 0.77 s, 4 KiB writes 0.13 s (the writer
//!   rarely finds the pipe full). Enlarging the pipe to 1 MiB
//!   (`F_SETPIPE_SZ`, allowed to any user up to `/proc/sys/fs/pipe-max-size`)
//!   makes every write size fast: 1 MiB writes 0.31 s, 64 KiB 0.26 s. Data
//!   goes out in [`PIPE_WRITE`] pieces.
//! * Zeros need not be copied at all: `vmsplice` hands the pipe references
//!   to the pages of one immutable zero buffer, and the reader copies from
//!   them. 1.2 GB of zeros took 0.08 s that way against 0.94 s for `dd
//!   if=/dev/zero bs=64K | cat`. Zero-filled raw streams (`-o -`, `-r -o -`)
//!   are mostly zeros.
//!
//! Data buffers are still written with `write`: `vmsplice` would leave the
//! pipe referencing pages fsimg reuses for the next chunk, and a consumer
//! that splices them on (`pv` does) would see them change.
//!
//! Anything that is not a pipe (a file, a device, a socket, /dev/null) is
//! written exactly as before.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

/// The pipe size asked for; the kernel rounds it to a power of two of pages.
/// Larger gained nothing measurable and takes more unswappable memory.
pub const PIPE_SIZE: usize = 1 << 20;

/// The largest `write` into a pipe: a 1 MiB write into a 1 MiB pipe leaves
/// the writer asleep until the reader has drained all of it; a sixteenth of
/// it lets both run. Measured (900 MB of data, 1 MiB pipe, `| cat`, best of
/// 7 on the loaded 2-vCPU VM): 4 KiB writes 0.34 s, 64 KiB 0.20 s, 256 KiB
/// 0.21 s, 1 MiB 0.22 s; medians 0.43, 0.25, 0.28, 0.30 s.
pub const PIPE_WRITE: usize = 64 << 10;

/// Bytes of the shared zero buffer: one `vmsplice` moves up to this much.
const ZERO_LEN: usize = 1 << 20;

/// An immutable, page-aligned run of zeros: the pages whose references the
/// pipe gets for zero runs.
#[repr(C, align(4096))]
struct ZeroPages([u8; ZERO_LEN]);

/// Never written: a non-`mut` static with no interior mutability, so its
/// pages hold zeros for the whole life of the process (and of any pipe
/// buffer referencing them: the kernel holds its own page references).
static ZERO_PAGES: ZeroPages = ZeroPages([0; ZERO_LEN]);

/// Standard output (or any file), with zero runs and pipe sizing done the
/// fast way when it is a pipe.
pub struct StreamOut {
    file: File,
    pipe: bool,
}

impl StreamOut {
    /// Wraps `file`; if it is a pipe, enlarges it to [`PIPE_SIZE`] (a
    /// refusal, e.g. a user over their pipe quota, keeps the pipe as it is).
    pub fn new(file: File) -> Self {
        let fifo = file
            .metadata()
            .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
            .unwrap_or(false);
        // The write end: vmsplice on a descriptor open for writing always
        // moves memory into the pipe; on a read-only one it would move pipe
        // data into the (immutable) zero pages.
        let pipe = fifo && writable(&file);
        if pipe {
            enlarge(&file);
        }
        StreamOut { file, pipe }
    }

    /// Whether the output is a pipe.
    pub fn is_pipe(&self) -> bool {
        self.pipe
    }

    /// Writes `n` zero bytes.
    pub fn write_zeros(&mut self, mut n: u64) -> io::Result<()> {
        if self.pipe {
            while n > 0 {
                let len = n.min(ZERO_LEN as u64) as usize;
                match splice_zeros(&self.file, len) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(done) => n -= done as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Not a pipe after all (vmsplice refused it): write.
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BADF.raw_os_error()) => {
                        self.pipe = false;
                        return self.write_zeros(n);
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        while n > 0 {
            let len = n.min(ZERO_LEN as u64) as usize;
            self.file.write_all(&ZERO_PAGES.0[..len])?;
            n -= len as u64;
        }
        Ok(())
    }

    /// The file, for syncing and the like.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Write for StreamOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = if self.pipe {
            buf.len().min(PIPE_WRITE)
        } else {
            buf.len()
        };
        self.file.write(&buf[..n])
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.pipe {
            for piece in buf.chunks(PIPE_WRITE) {
                self.file.write_all(piece)?;
            }
            return Ok(());
        }
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Whether `file` was opened for writing.
fn writable(file: &File) -> bool {
    use rustix::fs::OFlags;
    rustix::fs::fcntl_getfl(file.as_fd()).is_ok_and(|f| {
        let mode = f & OFlags::RWMODE;
        mode == OFlags::WRONLY || mode == OFlags::RDWR
    })
}

/// Asks for a [`PIPE_SIZE`] pipe, unless it is already at least that large.
fn enlarge(pipe: &File) {
    let now = rustix::pipe::fcntl_getpipe_size(pipe.as_fd()).unwrap_or(0);
    if now < PIPE_SIZE {
        // EPERM (over the per-user pipe quota, or above pipe-max-size for an
        // unprivileged user) leaves the pipe as it was: still correct.
        let _ = rustix::pipe::fcntl_setpipe_size(pipe.as_fd(), PIPE_SIZE);
    }
}

/// Hands the pipe references to the first `len` bytes of [`ZERO_PAGES`];
/// returns how many it took.
#[allow(unsafe_code)]
fn splice_zeros(pipe: &File, len: usize) -> io::Result<usize> {
    let iov = [rustix::pipe::IoSliceRaw::from_slice(&ZERO_PAGES.0[..len])];
    // SAFETY: vmsplice is unsafe for two reasons. On a descriptor not open
    // for writing it would copy pipe data into the buffer: `pipe` is open
    // for writing (`StreamOut::new` checked its access mode), and the kernel
    // then always moves the buffer into the pipe, never the reverse. And the
    // pipe keeps referencing the pages after the call returns, so the caller
    // must keep them alive and unchanged until every reader is done with
    // them. ZERO_PAGES is a
    // `static` (alive until the process ends; a pipe buffer outliving the
    // process holds its own reference to the page, as it does for any
    // vmspliced page) and immutable (not `static mut`, no interior
    // mutability: nothing in the program can write it), so the referenced
    // bytes are zeros forever. No SPLICE_F_GIFT: the pages stay ours.
    let n =
        unsafe { rustix::pipe::vmsplice(pipe.as_fd(), &iov, rustix::pipe::SpliceFlags::empty()) }?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn zeros_through_a_pipe_are_zeros() {
        let (mut r, w) = std::io::pipe().unwrap();
        let mut out = StreamOut::new(File::from(std::os::fd::OwnedFd::from(w)));
        assert!(out.is_pipe());
        let t = std::thread::spawn(move || {
            out.write_all(b"head").unwrap();
            out.write_zeros(3 * ZERO_LEN as u64 + 12345).unwrap();
            out.write_all(b"tail").unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got.len(), 8 + 3 * ZERO_LEN + 12345);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[got.len() - 4..], b"tail");
        assert!(got[4..got.len() - 4].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_pipe_is_enlarged() {
        let (_r, w) = std::io::pipe().unwrap();
        let out = StreamOut::new(File::from(std::os::fd::OwnedFd::from(w)));
        let size = rustix::pipe::fcntl_getpipe_size(out.file().as_fd()).unwrap();
        assert!(size >= PIPE_SIZE, "{size}");
    }

    #[test]
    fn zeros_to_a_file() {
        let mut f = tempfile::tempfile().unwrap();
        let mut out = StreamOut::new(f.try_clone().unwrap());
        assert!(!out.is_pipe());
        out.write_zeros(ZERO_LEN as u64 + 7).unwrap();
        let mut got = Vec::new();
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got, vec![0; ZERO_LEN + 7]);
    }
}
