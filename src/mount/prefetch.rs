//! Reading ahead of a sequential reader of a mounted fsimg image: while
//! the kernel asks for one stretch of a file, threads of their own decode
//! the records of the next stretch into the image's cache, so that a
//! `dd` of a zstd image decompresses on every core instead of one record
//! at a time on the thread that serves the read.
//!
//! A read counts as sequential when it starts within [`NEAR`] of where the
//! reads of that file have reached (the kernel's read-ahead requests
//! arrive out of order across the serving threads); from the second such
//! read on, the [`Prefetcher`] keeps the next `window` bytes queued, in
//! [`CHUNK`]s that the worker threads decode one each. A read elsewhere
//! starts over. The window is at most half the cache, so what is read
//! ahead stays cached until it is read.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::access::ImageSource;

/// The unit of work of a read-ahead thread, in bytes of a file.
pub const CHUNK: u64 = 1 << 20;

/// How far from where the reads of a file have reached a read may start
/// and still count as sequential.
pub const NEAR: u64 = 4 << 20;

/// The most read ahead of a sequential reader.
pub const MAX_WINDOW: u64 = 32 << 20;

/// Where the sequential reads of one file stand.
#[derive(Clone, Copy, Default)]
struct Stream {
    /// The furthest end of a read in this run.
    end: u64,
    /// Where what is queued for reading ahead ends.
    ahead: u64,
    /// Sequential reads in this run.
    run: u32,
}

/// A range of the image's volume to decode: (start, length).
type Job = (u64, u64);

/// Reads ahead of sequential readers of the files of one fsimg image.
pub struct Prefetcher {
    streams: Vec<Mutex<Stream>>,
    window: u64,
    queue: Mutex<Option<SyncSender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Prefetcher {
    /// A prefetcher for `files` files of `image`, with `threads` threads
    /// decoding and a cache of `cache_bytes` to fill.
    pub fn new(image: Arc<ImageSource>, files: usize, threads: usize, cache_bytes: u64) -> Self {
        let window = (cache_bytes / 2).min(MAX_WINDOW);
        let depth = (window / CHUNK) as usize + threads;
        let (tx, rx) = sync_channel::<Job>(depth.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads.max(1))
            .filter_map(|i| {
                let (image, rx) = (Arc::clone(&image), Arc::clone(&rx));
                std::thread::Builder::new()
                    .name(format!("fsimg-prefetch-{i}"))
                    .spawn(move || work(&image, &rx))
                    .ok()
            })
            .collect();
        Prefetcher {
            streams: (0..files).map(|_| Mutex::new(Stream::default())).collect(),
            window,
            queue: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
        }
    }

    /// Bytes read ahead of a sequential reader at most.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// A read of `len` bytes at `offset` of file `file` (of `size` bytes,
    /// starting at byte `base` of the image's volume) is about to be
    /// served: if it continues a sequential run, queues what follows.
    pub fn note(&self, file: usize, base: u64, size: u64, offset: u64, len: u64) {
        let Some(stream) = self.streams.get(file) else {
            return;
        };
        let end = offset.saturating_add(len).min(size);
        let mut s = stream.lock().unwrap_or_else(PoisonError::into_inner);
        let near = offset.saturating_add(NEAR) >= s.end && offset <= s.end.saturating_add(NEAR);
        if !near {
            *s = Stream {
                end,
                ahead: end,
                run: 0,
            };
            return;
        }
        s.end = s.end.max(end);
        s.ahead = s.ahead.max(s.end);
        s.run = s.run.saturating_add(1);
        let to = s.end.saturating_add(self.window).min(size);
        // Refilled by halves: a job per read would be a job per 128 KiB.
        if s.run < 2 || to.saturating_sub(s.ahead) < self.window / 2 && to < size {
            return;
        }
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = queue.as_ref() else {
            return;
        };
        let mut at = s.ahead;
        while at < to {
            let next = ((at / CHUNK + 1) * CHUNK).min(to);
            match tx.try_send((base + at, next - at)) {
                Ok(()) => at = next,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => break,
            }
        }
        s.ahead = at;
    }

    /// Stops the threads, after the jobs they have started.
    pub fn stop(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for w in workers {
            let _ = w.join();
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A read-ahead thread: decodes the ranges queued until the queue closes.
/// Errors are left for the read that needs the bytes to meet and report.
fn work(image: &ImageSource, rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((at, len)) = job else {
            return;
        };
        let _ = image.prefetch(at, len);
    }
}
