//! Objects that live in shared memory.
//!
//! Every multiproc object that crosses a fork (locks, events, barriers, values, queues) lives
//! at the start of its own `MAP_SHARED` [`Segment`], followed optionally by a tail of bytes (an
//! array's elements, a queue's ring). The Rust handle is a reference-counted mapping; clones of
//! a handle, and the copies a forked child inherits, all point at the same memory. The segment
//! is anonymous, so the kernel frees it when the last process holding a mapping is gone:
//! nothing leaks when a process is killed, and no resource tracker is needed.
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::Arc;

use multiproc_sys::mem::mmap::Segment;

/// Alignment of the tail that follows the header: a cache line, so a ring's hot indices and its
/// data do not share one.
const TAIL_ALIGN: usize = 64;

/// A `T` at the start of its own shared segment, plus `tail_len` bytes after it.
pub(crate) struct ShmBox<T> {
    seg: Arc<Segment>,
    tail_len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for ShmBox<T> {
    fn clone(&self) -> Self {
        ShmBox { seg: Arc::clone(&self.seg), tail_len: self.tail_len, _t: PhantomData }
    }
}

// SAFETY: the handle is a mapping plus an offset; `T: Sync` is what makes `&T` usable from
// several threads (and processes) at once, and the mapping itself may move between threads.
unsafe impl<T: Sync> Send for ShmBox<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for ShmBox<T> {}

impl<T> ShmBox<T> {
    /// Offset of the tail from the start of the segment.
    const fn tail_offset() -> usize {
        size_of::<T>().div_ceil(TAIL_ALIGN) * TAIL_ALIGN
    }

    /// Maps a zero-filled segment for a `T` and `tail_len` more bytes, and runs `init` on the
    /// `T`'s (zeroed) memory before anyone else can see it.
    ///
    /// # Safety
    /// - After `init` returns `Ok`, the memory must hold a valid `T`; all-zero memory already
    ///   counts if it is a valid `T` (atomics, integers).
    /// - `T` must be usable through a shared reference from several processes at once: all its
    ///   mutation goes through atomics or process-shared OS objects, it holds no pointers into
    ///   private memory, and it never needs `Drop` (the segment is simply unmapped).
    pub(crate) unsafe fn new(
        tail_len: usize,
        init: impl FnOnce(*mut T) -> io::Result<()>,
    ) -> io::Result<Self> {
        // SAFETY: this function's contract, passed on.
        unsafe { Self::new_in(tail_len, false, init) }
    }

    /// As [`new`](Self::new), in a memfd whose descriptor ([`fd`](Self::fd)) can be passed to
    /// a process that was not forked from this one.
    ///
    /// # Safety
    /// As for [`new`](Self::new).
    pub(crate) unsafe fn new_passable(
        tail_len: usize,
        init: impl FnOnce(*mut T) -> io::Result<()>,
    ) -> io::Result<Self> {
        // SAFETY: this function's contract, passed on.
        unsafe { Self::new_in(tail_len, true, init) }
    }

    /// Maps the object another process made with [`new_passable`](Self::new_passable).
    ///
    /// # Safety
    /// - `fd` must come from `new_passable` for the same `T` and `tail_len`, made by a process
    ///   this one trusts to have initialised it.
    pub(crate) unsafe fn from_fd(fd: std::os::fd::OwnedFd, tail_len: usize) -> io::Result<Self> {
        let total = Self::tail_offset().checked_add(tail_len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "shared object too large")
        })?;
        let seg = Segment::from_fd(fd, total.max(1))?;
        Ok(ShmBox { seg: Arc::new(seg), tail_len, _t: PhantomData })
    }

    /// A new descriptor of the segment, for one made by [`new_passable`](Self::new_passable).
    pub(crate) fn fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        match self.seg.fd() {
            Some(fd) => Ok(fd.try_clone_to_owned()?),
            None => Err(io::Error::new(io::ErrorKind::Unsupported, "an anonymous segment")),
        }
    }

    /// # Safety
    /// As for [`new`](Self::new).
    unsafe fn new_in(
        tail_len: usize,
        passable: bool,
        init: impl FnOnce(*mut T) -> io::Result<()>,
    ) -> io::Result<Self> {
        const { assert!(align_of::<T>() <= TAIL_ALIGN) };
        let total = Self::tail_offset().checked_add(tail_len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "shared object too large")
        })?;
        let seg = if passable {
            Segment::memfd(c"multiproc", total.max(1))?
        } else {
            Segment::anonymous(total.max(1))?
        };
        // The segment is page-aligned, which satisfies `align_of::<T>() <= 64`.
        init(seg.as_ptr().cast::<T>())?;
        Ok(ShmBox { seg: Arc::new(seg), tail_len, _t: PhantomData })
    }

    /// The shared `T`.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `new` initialised a valid `T` at the start of the (aligned) segment, which
        // lives as long as `self`; `T` is designed for shared access (the contract of `new`).
        unsafe { &*self.seg.as_ptr().cast::<T>() }
    }

    /// The start of the tail (64-byte aligned), valid for `tail_len()` bytes.
    #[inline]
    pub(crate) fn tail_ptr(&self) -> *mut u8 {
        // SAFETY: `new` sized the segment for the tail offset plus `tail_len`.
        unsafe { self.seg.as_ptr().add(Self::tail_offset()) }
    }

    /// Length of the tail in bytes.
    #[inline]
    pub(crate) fn tail_len(&self) -> usize {
        self.tail_len
    }

    /// Whether two handles refer to the same shared object.
    pub(crate) fn same_as(&self, other: &ShmBox<T>) -> bool {
        self.seg.as_ptr() == other.seg.as_ptr()
    }
}
