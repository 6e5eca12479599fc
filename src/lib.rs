//! fsimg: a filesystem-aware disk imager.
//!
//! The pipeline is `Source -> Filesystem -> AllocationMap -> copier -> Sink`:
//!
//! * a [`source::Source`] is a read-only volume (a regular file or a block
//!   device), read with positioned reads;
//! * a [`fs::Filesystem`] answers questions about the volume (geometry,
//!   state, which clusters are in use) and never writes;
//! * an [`allocmap::AllocationMap`] holds one bit per cluster and yields the
//!   runs of used clusters;
//! * the [`copier`] turns runs into large reads on one thread while the
//!   [`sink::Sink`] writes on another;
//! * sinks write a sparse file, a device, zero-filled standard output, or the
//!   special image format ([`image`]).
//!
//! Library code never prints and never exits: it reports through
//! [`report::Report`] and returns [`error::Error`].

// The `unsafe` blocks are the global allocator's (page_alloc.rs), which
// must implement an unsafe trait, and the vmsplice of immutable zero pages
// into a pipe (pipe.rs); everything else is safe code.
#![deny(unsafe_code)]

pub mod access;
pub mod allocmap;
pub mod bytes;
pub mod copier;
pub mod disk;
pub mod error;
pub mod extent;
pub mod files;
pub mod foreign;
pub mod fs;
pub mod fuzz;
pub mod image;
pub mod mapfile;
pub mod mount;
pub mod ops;
#[allow(unsafe_code)]
pub mod page_alloc;
pub mod pipe;
pub mod pool;
pub mod report;
pub mod safety;
pub mod sink;
pub mod source;

pub use error::{Error, Result};

/// Large buffers page-aligned: the kernel copies into them faster (see
/// [`page_alloc`]).
#[global_allocator]
static ALLOCATOR: page_alloc::PageAligned = page_alloc::PageAligned;
