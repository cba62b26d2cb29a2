//! [`RawValue`] and [`RawArray`]: data in shared memory without a lock — Python's
//! `multiprocessing.RawValue` and `RawArray`.
//!
//! # Unsafe in this file
//!
//! The element accesses: each dereferences a pointer into a live shared segment, and the
//! lock or atomicity argument of the type docs is restated at each `unsafe` block.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::slice;
use std::sync::atomic::Ordering::SeqCst;

use multiproc_sys::mem::shm_safe::{AtomicInteger, AtomicOps, ShmSafe};

use super::{ArrayHeader, DataCell, new_cell, new_elements};
use crate::shm::ShmBox;

// ---------------------------------------------------------------------------------------------
// RawValue

/// A `T` in shared memory with no lock — Python's `multiprocessing.RawValue` (and
/// `Value(..., lock=False)`).
///
/// For integer `T` (`u8`..`u64`, `i8`..`i64`, `usize`, `isize`) every safe method is an atomic
/// operation: [`load`](Self::load), [`store`](Self::store), [`fetch_add`](Self::fetch_add),
/// [`compare_exchange`](Self::compare_exchange), ..., all `SeqCst`; [`atomic`](Self::atomic)
/// gives the `core` atomic for other orderings. Any other `T` is read and written with the
/// `unsafe` [`read`](Self::read)/[`write`](Self::write), whose caller rules out concurrent
/// writes. `T` is as for [`Value`](super::Value) (see its "Which `T`").
///
/// ```
/// use multiproc::{Process, RawValue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hits = RawValue::new(0u64)?; // Python: RawValue('Q', 0)
/// let children: Vec<_> = (0..4)
///     .map(|_| {
///         let hits = hits.clone();
///         Process::new(move || {
///             for _ in 0..50 {
///                 hits.fetch_add(1); // atomic: no lock needed
///             }
///         })
///     })
///     .collect();
/// for c in &children {
///     c.start()?;
/// }
/// for c in &children {
///     c.join()?;
/// }
/// assert_eq!(hits.load(), 200);
/// # Ok(())
/// # }
/// ```
///
/// # Soundness: why plain access is `unsafe`
///
/// Without a lock, nothing can stop two threads (of one process or of several) from writing
/// the bytes at once, and a plain write racing with another access is a data race. So every
/// safe method is an atomic operation, and they may race freely; a plain access is `unsafe`,
/// and its caller promises that no write (atomic or not) happens at the same time, for
/// example because the parent writes before starting the children and reads after joining
/// them, or because an external [`Lock`](crate::Lock) orders the accesses.
///
/// # When a process dies
///
/// An atomic operation is indivisible: a process that dies completes it or does not start
/// it, and nothing is ever held, so nobody else is affected. A plain [`write`](Self::write)
/// cut short may leave a half-written value, which is still a valid `T`.
pub struct RawValue<T: ShmSafe> {
    data: ShmBox<DataCell<T>>,
}

impl<T: ShmSafe> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue { data: self.data.clone() }
    }
}

impl<T: ShmSafe> RawValue<T> {
    /// A new shared value (Python: `RawValue(typecode, value)`).
    ///
    /// # Errors
    /// Mapping the shared segment failed.
    pub fn new(value: T) -> io::Result<RawValue<T>> {
        Ok(RawValue { data: new_cell(value)? })
    }

    /// A pointer to the shared value, valid (and page-aligned) as long as this handle or a
    /// clone of it lives. Reading or writing through it is subject to the same rule as
    /// [`read`](Self::read) and [`write`](Self::write).
    pub fn as_ptr(&self) -> *mut T {
        self.data.get().0.get()
    }

    /// Reads the value with a plain (non-atomic) load.
    ///
    /// # Safety
    /// - No thread of any process writes the value during the call (atomic writes included):
    ///   order the accesses by other means, for example a [`Lock`](crate::Lock) that every writer holds,
    ///   or writes that happen before the reading process is started or after it is joined.
    pub unsafe fn read(&self) -> T {
        // SAFETY: a valid `T` (initialised; every bit pattern is one) at an aligned address in
        // a live segment; the caller rules out concurrent writes.
        unsafe { self.as_ptr().read() }
    }

    /// Writes the value with a plain (non-atomic) store.
    ///
    /// # Safety
    /// - No thread of any process reads or writes the value during the call (atomic
    ///   accesses included); see [`read`](Self::read).
    pub unsafe fn write(&self, value: T) {
        // SAFETY: an aligned address in a live segment; the caller rules out concurrent
        // accesses; `T: Copy` has no destructor to skip.
        unsafe { self.as_ptr().write(value) }
    }
}

impl<T: AtomicInteger> RawValue<T> {
    /// The value as a `core` atomic (`AtomicU64` for `u64`), for operations with other
    /// orderings.
    pub fn atomic(&self) -> &T::Atomic {
        // SAFETY: the slot is page-aligned (the start of its segment), which satisfies any
        // atomic's alignment, and stays mapped while `self` lives. Every safe access to it is
        // atomic and of this size; the plain accesses are `unsafe` and their callers rule out
        // races with these.
        unsafe { T::atomic_from_ptr(self.as_ptr()) }
    }

    /// Atomically loads the value (`SeqCst`).
    pub fn load(&self) -> T {
        self.atomic().load(SeqCst)
    }

    /// Atomically stores `value` (`SeqCst`).
    pub fn store(&self, value: T) {
        self.atomic().store(value, SeqCst)
    }

    /// Atomically replaces the value, returning the previous one (`SeqCst`).
    pub fn swap(&self, value: T) -> T {
        self.atomic().swap(value, SeqCst)
    }

    /// Atomically stores `new` if the value is `current`; returns the previous value, `Ok` if
    /// it was `current` (`SeqCst`).
    ///
    /// # Errors
    /// `Err(actual)` if the value was not `current`; nothing was stored.
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        self.atomic().compare_exchange(current, new, SeqCst, SeqCst)
    }

    /// Atomically adds `delta` (wrapping), returning the previous value (`SeqCst`).
    pub fn fetch_add(&self, delta: T) -> T {
        self.atomic().fetch_add(delta, SeqCst)
    }

    /// Atomically subtracts `delta` (wrapping), returning the previous value (`SeqCst`).
    pub fn fetch_sub(&self, delta: T) -> T {
        self.atomic().fetch_sub(delta, SeqCst)
    }

    /// Atomic bitwise and, returning the previous value (`SeqCst`).
    pub fn fetch_and(&self, bits: T) -> T {
        self.atomic().fetch_and(bits, SeqCst)
    }

    /// Atomic bitwise or, returning the previous value (`SeqCst`).
    pub fn fetch_or(&self, bits: T) -> T {
        self.atomic().fetch_or(bits, SeqCst)
    }

    /// Atomic bitwise xor, returning the previous value (`SeqCst`).
    pub fn fetch_xor(&self, bits: T) -> T {
        self.atomic().fetch_xor(bits, SeqCst)
    }

    /// Atomically stores the maximum of the value and `other`, returning the previous value.
    pub fn fetch_max(&self, other: T) -> T {
        self.atomic().fetch_max(other, SeqCst)
    }

    /// Atomically stores the minimum of the value and `other`, returning the previous value.
    pub fn fetch_min(&self, other: T) -> T {
        self.atomic().fetch_min(other, SeqCst)
    }
}

impl<T: ShmSafe> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A plain read could race with a writer: print nothing of the value.
        f.debug_struct("RawValue").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// RawArray

/// A fixed-length array of `T` in shared memory with no lock — Python's
/// `multiprocessing.RawArray` (and `Array(..., lock=False)`).
///
/// For integer `T` (`u8`..`u64`, `i8`..`i64`, `usize`, `isize`) every safe method is an
/// element-wise atomic operation ([`load`](Self::load), [`store`](Self::store),
/// [`fetch_add`](Self::fetch_add), ..., `SeqCst`; [`atomic`](Self::atomic) for other
/// orderings). Any other `T` is accessed with the `unsafe` [`read`](Self::read),
/// [`write`](Self::write) and [`as_mut_slice`](Self::as_mut_slice), whose caller rules out
/// concurrent writes (see [`RawValue`]'s "Soundness").
///
/// ```
/// use multiproc::{Process, RawArray};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let slots = RawArray::<u32>::new(4)?; // Python: RawArray('I', 4)
/// let children: Vec<_> = (0..4)
///     .map(|i| {
///         let slots = slots.clone();
///         Process::new(move || slots.store(i, (i as u32 + 1) * 100))
///     })
///     .collect();
/// for c in &children {
///     c.start()?;
/// }
/// for c in &children {
///     c.join()?;
/// }
/// assert_eq!(slots.to_vec(), [100, 200, 300, 400]);
/// # Ok(())
/// # }
/// ```
///
/// # When a process dies
///
/// As for [`RawValue`]: atomic operations are indivisible and nothing is ever held. A plain
/// write cut short may leave a half-written element, which is still a valid `T`.
pub struct RawArray<T: ShmSafe> {
    data: ShmBox<ArrayHeader>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray { data: self.data.clone(), len: self.len, _t: PhantomData }
    }
}

impl<T: ShmSafe> RawArray<T> {
    /// A new shared array of `len` zeroes (Python: `RawArray(typecode, len)`).
    ///
    /// # Errors
    /// The size overflows or mapping the shared segment failed.
    pub fn new(len: usize) -> io::Result<RawArray<T>> {
        Ok(RawArray { data: new_elements::<T>(len, None)?, len, _t: PhantomData })
    }

    /// A new shared array holding a copy of `values` (Python: `RawArray(typecode, sequence)`).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_slice(values: &[T]) -> io::Result<RawArray<T>> {
        let data = new_elements(values.len(), Some(values))?;
        Ok(RawArray { data, len: values.len(), _t: PhantomData })
    }

    /// The number of elements, fixed at creation.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A pointer to the first element (64-byte aligned), valid for `len()` elements as long
    /// as this handle or a clone of it lives. Accesses through it follow the rule of
    /// [`read`](Self::read) and [`write`](Self::write).
    pub fn as_ptr(&self) -> *mut T {
        self.data.tail_ptr().cast::<T>()
    }

    /// Reads element `index` with a plain (non-atomic) load.
    ///
    /// # Panics
    /// If `index >= len()`.
    ///
    /// # Safety
    /// - No thread of any process writes that element during the call (atomic writes
    ///   included); see [`RawValue::read`].
    pub unsafe fn read(&self, index: usize) -> T {
        assert!(index < self.len, "index {index} out of range for RawArray of length {}", self.len);
        // SAFETY: in bounds of the live tail, aligned, a valid `T`; the caller rules out
        // concurrent writes.
        unsafe { self.as_ptr().add(index).read() }
    }

    /// Writes element `index` with a plain (non-atomic) store.
    ///
    /// # Panics
    /// If `index >= len()`.
    ///
    /// # Safety
    /// - No thread of any process reads or writes that element during the call (atomic
    ///   accesses included); see [`RawValue::read`].
    pub unsafe fn write(&self, index: usize, value: T) {
        assert!(index < self.len, "index {index} out of range for RawArray of length {}", self.len);
        // SAFETY: in bounds of the live tail, aligned; the caller rules out concurrent
        // accesses.
        unsafe { self.as_ptr().add(index).write(value) }
    }

    /// The elements as a slice.
    ///
    /// # Safety
    /// - No thread of any process writes any element while the slice is alive (atomic writes
    ///   included).
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: `len` valid, aligned elements in a segment that lives as long as `self`; the
        // caller rules out writes for the slice's lifetime.
        unsafe { slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    /// - No other thread of any process reads or writes any element while the slice is alive,
    ///   and no other slice or reference to the elements (from this or another handle) is
    ///   alive meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as `as_slice`; the caller guarantees exclusive access for the slice's
        // lifetime.
        unsafe { slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl<T: AtomicInteger> RawArray<T> {
    /// Element `index` as a `core` atomic (`AtomicU64` for `u64`), for other orderings.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn atomic(&self, index: usize) -> &T::Atomic {
        assert!(index < self.len, "index {index} out of range for RawArray of length {}", self.len);
        // SAFETY: in bounds of the live tail. The tail is 64-aligned and elements are
        // `size_of::<T>()` apart; the atomic of an integer has its size (checked in
        // multiproc-sys) and an alignment that divides it, so each element is aligned for it.
        // Every safe access is atomic and of this size; plain accesses are `unsafe` and their
        // callers rule out races with these.
        unsafe { T::atomic_from_ptr(self.as_ptr().add(index)) }
    }

    /// Atomically loads element `index` (`SeqCst`).
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn load(&self, index: usize) -> T {
        self.atomic(index).load(SeqCst)
    }

    /// Atomically stores `value` into element `index` (`SeqCst`).
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn store(&self, index: usize, value: T) {
        self.atomic(index).store(value, SeqCst)
    }

    /// Atomically replaces element `index`, returning the previous value (`SeqCst`).
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn swap(&self, index: usize, value: T) -> T {
        self.atomic(index).swap(value, SeqCst)
    }

    /// Atomically stores `new` into element `index` if it is `current` (`SeqCst`).
    ///
    /// # Errors
    /// `Err(actual)` if the element was not `current`; nothing was stored.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn compare_exchange(&self, index: usize, current: T, new: T) -> Result<T, T> {
        self.atomic(index).compare_exchange(current, new, SeqCst, SeqCst)
    }

    /// Atomically adds `delta` (wrapping) to element `index`, returning the previous value.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn fetch_add(&self, index: usize, delta: T) -> T {
        self.atomic(index).fetch_add(delta, SeqCst)
    }

    /// Atomically subtracts `delta` (wrapping) from element `index`, returning the previous
    /// value.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn fetch_sub(&self, index: usize, delta: T) -> T {
        self.atomic(index).fetch_sub(delta, SeqCst)
    }

    /// The elements, each loaded atomically (`SeqCst`; not a snapshot of the whole array).
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len).map(|i| self.load(i)).collect()
    }
}

impl<T: ShmSafe> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray").field("len", &self.len).finish_non_exhaustive()
    }
}
