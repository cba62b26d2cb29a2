//! [`RawQueue`]: a handle to one ring — the mapping, and this handle's private copy of the
//! configuration, against which the shared one is validated.
//!
//! # Unsafe in this file
//!
//! Creating the segment ([`RawQueue::new`]): mapping it and initialising its mutexes in place.
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use multiproc_sys::sync::pthread::RobustMutex;

use super::fail::{RingResult, corrupt};
use super::layout::{MAGIC, MAX_CAPACITY, MIN_CAPACITY, NONE, RingHeader, RingSegment};
use crate::shm::ShmBox;

/// A handle to one shared ring: the mapping plus this handle's private copy of the
/// configuration (used for all index arithmetic, so a garbled header cannot steer an access out
/// of bounds).
///
/// (`pub` in a private module, so the queue types' sealed constructor may take it.)
pub struct RawQueue {
    pub(super) shm: ShmBox<RingSegment>,
    pub(super) cap: u64,
    pub(super) mask: u64,
    pub(super) maxsize: u64,
}

impl std::fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawQueue")
            .field("capacity", &self.cap)
            .field("maxsize", &self.maxsize)
            .finish()
    }
}

impl Clone for RawQueue {
    fn clone(&self) -> Self {
        RawQueue { shm: self.shm.clone(), cap: self.cap, mask: self.mask, maxsize: self.maxsize }
    }
}

impl RawQueue {
    /// Maps and initialises a new ring. `capacity` must be a power of two within
    /// [`MIN_CAPACITY`, `MAX_CAPACITY`] (the builder rounds it).
    pub(crate) fn new(capacity: u64, maxsize: u64) -> io::Result<RawQueue> {
        debug_assert!(capacity.is_power_of_two());
        debug_assert!((MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity));
        let tail_len = usize::try_from(capacity)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "capacity too large"))?;
        let init = |p: *mut RingSegment| -> io::Result<()> {
            // SAFETY: `p` is the start of a fresh, zeroed, page-aligned MAP_SHARED segment large
            // enough for `RingSegment` that nobody else can see yet; the mutexes are initialised
            // once, in place, and never move (the segment stays mapped while any handle exists).
            unsafe {
                RobustMutex::init(&raw mut (*p).put_lock.v).map_err(io::Error::from)?;
                RobustMutex::init(&raw mut (*p).get_lock.v).map_err(io::Error::from)?;
            }
            // SAFETY: zeroed memory is a valid `RingHeader` (only atomics); nobody else sees it
            // yet.
            let h = unsafe { &(*p).hdr };
            h.cfg.v.magic.store(MAGIC, Relaxed);
            h.cfg.v.capacity.store(capacity, Relaxed);
            h.cfg.v.maxsize.store(maxsize, Relaxed);
            h.cfg.v.abort_seq.store(NONE, Relaxed);
            h.prod.v.stream_start.store(NONE, Relaxed);
            h.cons.v.rec_start.store(NONE, Relaxed);
            Ok(())
        };
        // SAFETY: `init` leaves a valid `RingSegment` (initialised mutexes, atomics); it is used
        // only through shared references, all mutation goes through atomics or the
        // process-shared mutexes, and it needs no `Drop`.
        let shm = unsafe { ShmBox::new(tail_len, init)? };
        // Every ring access relies on it (see `access`).
        debug_assert_eq!(shm.tail_len() as u64, capacity);
        Ok(RawQueue { shm, cap: capacity, mask: capacity - 1, maxsize })
    }

    #[inline]
    pub(super) fn hdr(&self) -> &RingHeader {
        &self.shm.get().hdr
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    pub(crate) fn same_as(&self, other: &RawQueue) -> bool {
        self.shm.same_as(&other.shm)
    }

    /// Records larger than this stream (if they do not fit in the free space), and consumers
    /// free big records in pieces of this size.
    #[inline]
    pub(super) fn chunk(&self) -> u64 {
        self.cap / 4
    }

    /// The header and the ring, as raw bytes: for tests that garble them.
    #[cfg(any(test, feature = "__test-hooks"))]
    pub(crate) fn raw_parts(&self) -> (*mut u8, usize, *mut u8, usize) {
        let hdr = std::ptr::from_ref(self.hdr()).cast_mut().cast::<u8>();
        (hdr, size_of::<RingHeader>(), self.shm.tail_ptr(), self.shm.tail_len())
    }

    /// `(head, tail)`, for tests that watch a producer's progress.
    #[cfg(any(test, feature = "__test-hooks"))]
    pub(crate) fn positions(&self) -> (u64, u64) {
        let h = self.hdr();
        (h.cons.v.head.load(Acquire), h.prod.v.tail.load(Acquire))
    }

    /// Checks the words fixed at creation against this handle's copy.
    #[inline]
    pub(super) fn check_config(&self) -> RingResult<()> {
        let c = &self.hdr().cfg.v;
        if c.magic.load(Relaxed) != MAGIC {
            return corrupt("bad magic number");
        }
        if c.capacity.load(Relaxed) != self.cap {
            return corrupt("capacity changed");
        }
        if c.maxsize.load(Relaxed) != self.maxsize {
            return corrupt("maxsize changed");
        }
        Ok(())
    }

    /// Whether the queue is closed (the `closed` word).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.hdr().cfg.v.closed.load(Acquire) != 0
    }
}
