//! How library code tells the user what is happening, without printing.

/// Receives progress and warnings from a running operation.
pub trait Report: Sync {
    /// `done` of `total` bytes have been handled.
    fn progress(&self, _done: u64, _total: u64) {}
    /// The bytes `progress` counts fall in named stretches, in order: (the
    /// `done` count at which each ends, its name). A disk copy names its
    /// partitions so that the progress line can say which one it is in.
    fn stages(&self, _stages: Vec<(u64, String)>) {}
    /// Something the user should know; the operation goes on.
    fn warn(&self, _msg: &str) {}
    /// Something failed, and the operation goes on with the rest (a file
    /// that cannot be extracted); the run ends with a failure status.
    fn error(&self, msg: &str) {
        self.warn(msg);
    }
    /// `bytes` of the volume have been found unreadable so far (rescue).
    fn bad(&self, _bytes: u64) {}
    /// Whether the user asked to stop (Ctrl-C); checked between chunks so
    /// that a stopped run cleans up like a failed one.
    fn cancelled(&self) -> bool {
        false
    }
}

/// A report that discards everything.
pub struct Silent;

impl Report for Silent {}
