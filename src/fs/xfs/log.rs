//! The internal log: whether it is clean. Like the kernel's
//! `xlog_find_head` / `xlog_find_tail`, the head is found from the cycle
//! number stamped in the first word of every 512-byte log block, the last
//! record header is searched backwards from it, and the log is clean when
//! that record is an unmount record (one log operation carrying
//! `XLOG_UNMOUNT_TRANS`) that ends at the head. Reads are of one block
//! for the binary search and 64 KiB for the backward search.

use super::superblock::Superblock;
use crate::error::Result;
use crate::source::Source;

/// Magic of a log record header.
const HEADER_MAGIC: u32 = 0xFEED_BABE;
/// Log basic block.
const BB: u64 = 512;
/// Bytes one header block's cycle data covers.
const HEADER_CYCLE_SIZE: u32 = 32768;
/// `oh_flags` bit of the unmount record's operation.
const UNMOUNT_TRANS: u8 = 0x20;
/// Blocks read at once in the backward search.
const CHUNK_BBS: u64 = 128;

/// What the log says about the last unmount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogState {
    /// The log holds no record at all (zeroed, e.g. by `xfs_repair -L`).
    Empty,
    /// The last record is an unmount record ending at the head.
    Clean {
        /// The head, in 512-byte blocks from the log start.
        head: u64,
    },
    /// Transactions to replay, or a log that cannot be understood.
    Dirty {
        /// Why.
        reason: String,
    },
}

struct Log<'a> {
    src: &'a dyn Source,
    start: u64,
    bbs: u64,
}

impl Log<'_> {
    fn cycle(&self, bb: u64) -> Result<u32> {
        let b = self.src.read_vec(self.start + bb * BB, 8)?;
        let w0 = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        Ok(if w0 == HEADER_MAGIC {
            u32::from_be_bytes([b[4], b[5], b[6], b[7]])
        } else {
            w0
        })
    }

    /// The first block in `lo+1..=hi` whose cycle is not `cycle(lo)`, given
    /// cycle(lo) != cycle(hi) (`xlog_find_cycle_start`).
    fn cycle_start(&self, mut lo: u64, mut hi: u64, hi_cycle: u32) -> Result<u64> {
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.cycle(mid)? == hi_cycle {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }

    /// The last block before `head` (wrapping) that starts with the
    /// record header magic.
    fn last_header(&self, head: u64) -> Result<Option<u64>> {
        let mut end = head + self.bbs; // exclusive, in unwrapped blocks
        let stop = head;
        while end > stop {
            let n = CHUNK_BBS.min(end - stop);
            let first = end - n;
            // A chunk must not cross the wrap point.
            let (first, n) = if first / self.bbs != (end - 1) / self.bbs {
                let wrap = (end - 1) / self.bbs * self.bbs;
                (wrap, end - wrap)
            } else {
                (first, n)
            };
            let at = first % self.bbs;
            let buf = self.src.read_vec(self.start + at * BB, (n * BB) as usize)?;
            for k in (0..n).rev() {
                let o = (k * BB) as usize;
                if u32::from_be_bytes(buf[o..o + 4].try_into().expect("4 bytes")) == HEADER_MAGIC {
                    return Ok(Some(at + k));
                }
            }
            end = first;
        }
        Ok(None)
    }
}

/// Reads the state of the internal log of `sb`, which starts at linear
/// block `log_block`.
pub fn state(src: &dyn Source, sb: &Superblock, log_block: u64) -> Result<LogState> {
    let log = Log {
        src,
        start: log_block * u64::from(sb.block_size),
        bbs: u64::from(sb.logblocks) * u64::from(sb.block_size) / BB,
    };
    if log.bbs < 2 {
        return Ok(LogState::Dirty {
            reason: format!("the log is only {} blocks long", sb.logblocks),
        });
    }
    let first = log.cycle(0)?;
    if first == 0 {
        return Ok(LogState::Empty);
    }
    let last_bb = log.bbs - 1;
    let last = log.cycle(last_bb)?;
    let head = if last == 0 {
        // Partly written log: the head is the first unwritten block.
        log.cycle_start(0, last_bb, 0)?
    } else if first == last {
        // Every block is of the same cycle: the head is at the wrap point.
        0
    } else if first == last.wrapping_add(1) {
        log.cycle_start(0, last_bb, last)?
    } else {
        return Ok(LogState::Dirty {
            reason: format!(
                "the log's cycle numbers do not make sense (first block {first}, last {last})"
            ),
        });
    };
    let Some(rhead) = log.last_header(head)? else {
        return Ok(LogState::Dirty {
            reason: "no log record header found".into(),
        });
    };
    let h = src.read_vec(log.start + rhead * BB, BB as usize)?;
    let be32 = |o: usize| u32::from_be_bytes(h[o..o + 4].try_into().expect("4 bytes"));
    let version = be32(8);
    let len = u64::from(be32(12));
    let num_logops = be32(40);
    let size = be32(320);
    let hblks = if version & 2 != 0 && size > HEADER_CYCLE_SIZE {
        u64::from(size.div_ceil(HEADER_CYCLE_SIZE))
    } else {
        1
    };
    let after = (rhead + hblks + len.div_ceil(BB)) % log.bbs;
    if after != head || num_logops != 1 {
        return Ok(LogState::Dirty {
            reason: format!(
                "the last log record (block {rhead} of the log) is not an unmount record"
            ),
        });
    }
    let op = src.read_vec(log.start + ((rhead + hblks) % log.bbs) * BB, 16)?;
    if op[9] & UNMOUNT_TRANS == 0 {
        return Ok(LogState::Dirty {
            reason: format!(
                "the last log record (block {rhead} of the log) is not an unmount record"
            ),
        });
    }
    Ok(LogState::Clean { head })
}
