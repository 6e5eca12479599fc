//! The global allocator: the system's, with every block of 64 KiB or more
//! aligned to a page.
//!
//! glibc hands out large blocks from `mmap`, 16 bytes past a page boundary.
//! A `read` into such a buffer makes the kernel's copy store across cache
//! lines: reading the 1.9 GB used by the ext4 benchmark volume from tmpfs in
//! 1 MiB reads took 0.26 s into buffers at page + 16 and 0.17 s into
//! page-aligned ones (64-byte alignment is enough), and fsimg's save of that
//! volume to /dev/null went from 0.33 s to 0.22 s. Every buffer the copier
//! reads into, and every record buffer of an image, is such a large block,
//! so aligning them here fixes them all.
//!
//! glibc maps and unmaps every aligned large block afresh (no reuse through
//! its heap), so large buffers must be reused, not allocated per record: the
//! image writer and reader keep theirs.

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, aligning large blocks to [`PAGE`].
pub struct PageAligned;

/// Blocks at least this large are page-aligned.
pub const LARGE: usize = 64 << 10;

/// The alignment of large blocks.
pub const PAGE: usize = 4096;

/// The layout a block of `layout` is really allocated with. A pure function
/// of `layout`, so `dealloc` and `realloc` see the layout `alloc` used.
fn actual(layout: Layout) -> Layout {
    if layout.size() >= LARGE && layout.align() < PAGE {
        // Fails only if the size rounded up to a page overflows isize;
        // such a block keeps its own alignment.
        Layout::from_size_align(layout.size(), PAGE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every method forwards to `System` with the layout `actual` gives,
// which has the caller's size and an alignment at least the caller's (a
// multiple of it: both are powers of two), so each block satisfies the
// caller's layout. `dealloc` and `realloc` are given the caller's layout of
// the block, from which `actual` computes the very layout `System` allocated
// it with, as `System` requires. `realloc` keeps `System`'s contract: when
// the old and new layouts have the same alignment it forwards (System then
// keeps the alignment); otherwise it allocates the new block, copies the
// bytes both blocks hold, and frees the old one only if that succeeded, the
// old block staying valid on failure as `GlobalAlloc::realloc` requires.
unsafe impl GlobalAlloc for PageAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `actual(layout)` has a non-zero size, as `layout` has.
        unsafe { System.alloc(actual(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(actual(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` or `realloc` with this `layout`,
        // so `System` allocated it with `actual(layout)`.
        unsafe { System.dealloc(ptr, actual(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = actual(layout);
        let Ok(new) = Layout::from_size_align(new_size, layout.align()).map(actual) else {
            return std::ptr::null_mut();
        };
        if old.align() == new.align() {
            // SAFETY: `ptr` was allocated by `System` with `old`; the caller
            // guarantees `new_size` is non-zero and fits `layout.align()`.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // SAFETY: `new` has a non-zero size.
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the smaller size, they are
            // distinct allocations, and `ptr` was allocated with `old`.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned(p: *const u8) -> bool {
        (p as usize).is_multiple_of(PAGE)
    }

    #[test]
    fn large_buffers_are_page_aligned() {
        // The allocator is the global one (lib.rs), so plain Vecs show it.
        for size in [LARGE, 1 << 20, (1 << 20) + 17, 8 << 20] {
            let v = vec![7u8; size];
            assert!(aligned(v.as_ptr()), "{size} bytes at {:p}", v.as_ptr());
        }
        let mut v: Vec<u8> = Vec::with_capacity(1 << 20);
        v.resize(1 << 20, 1);
        assert!(aligned(v.as_ptr()));
    }

    #[test]
    fn growing_across_the_threshold_keeps_the_bytes() {
        let mut v: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        v.reserve_exact(LARGE * 3);
        assert!(aligned(v.as_ptr()));
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
        v.extend(std::iter::repeat_n(9, LARGE * 3));
        v.truncate(100);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
        let mut big = vec![5u8; 2 * LARGE];
        big.resize(4 * LARGE, 6);
        assert!(aligned(big.as_ptr()));
        assert_eq!((big[2 * LARGE - 1], big[2 * LARGE]), (5, 6));
    }
}
