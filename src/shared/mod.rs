//! Data in shared memory — Python's `multiprocessing.Value`, `Array`, `RawValue` and
//! `RawArray`.
//!
//! | type | Python | access |
//! |---|---|---|
//! | [`Value<T>`] | `Value(typecode, v)` | through its lock (an [`RLock`](crate::RLock), or a [`Lock`](crate::Lock)): a guard that derefs to `T`, or `load`/`store` |
//! | [`Array<T>`] | `Array(typecode, n or seq)` | through its lock (an [`RLock`](crate::RLock), or a [`Lock`](crate::Lock)): a guard that derefs to `[T]`, or `to_vec` |
//! | [`RawValue<T>`] | `RawValue(typecode, v)` | no lock: atomic operations for integers, `unsafe` reads and writes for the rest |
//! | [`RawArray<T>`] | `RawArray(typecode, n or seq)` | no lock: element-wise atomic operations for integers, `unsafe` access for the rest |
//!
//! Each object lives in its own `MAP_SHARED` segment: create it before starting the processes
//! that use it; clones of the handle, here or in a forked child, are the same memory.
//!
//! The user-facing rules (which `T`, why the locked types have no atomics and the raw ones
//! only `unsafe` plain access) are in the docs of [`Value`] and [`RawValue`], since this module
//! is private.
//!
//! # Unsafe in this file
//!
//! The element accesses: each dereferences a pointer into a live shared segment, and the
//! lock or atomicity argument of those docs is restated at each `unsafe` block.

// Layout (for maintainers; not in the public docs): `value` (`Value`, `ValueGuard`), `array`
// (`Array`, `ArrayGuard`) and `raw` (`RawValue`, `RawArray`); this file holds the
// shared-memory slot they are built on. "This file" in the docs above means the module.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::io;
use std::mem::{align_of, size_of};
use std::ptr;

use multiproc_sys::mem::shm_safe::ShmSafe;

use crate::shm::ShmBox;

mod array;
mod raw;
mod value;

pub use crate::sync::DataLock;
pub use array::{Array, ArrayGuard};
pub use raw::{RawArray, RawValue};
pub use value::{Value, ValueGuard};

/// Alignment of an array's elements in its segment (see `ShmBox`'s tail).
pub(crate) const TAIL_ALIGN: usize = 64;

/// A `T` in shared memory, mutated only under the rules of the module docs.
#[repr(transparent)]
pub(super) struct DataCell<T>(pub(super) UnsafeCell<T>);

// SAFETY: a `DataCell` is only read or written through a guard of the lock that protects it, or
// atomically, or through `unsafe` methods whose callers promise the absence of races (module
// docs); `T: ShmSafe` is `Send + Sync` plain data.
unsafe impl<T: ShmSafe> Sync for DataCell<T> {}

/// The (empty) header of an array's segment; the elements are its tail.
#[repr(C)]
pub(super) struct ArrayHeader {}

/// Maps a fresh segment holding `value`.
pub(super) fn new_cell<T: ShmSafe>(value: T) -> io::Result<ShmBox<DataCell<T>>> {
    // SAFETY: `init` writes a valid `T` into the fresh, exclusively owned segment (aligned for
    // `DataCell<T>`, which `ShmBox::new` checks); `DataCell<T>` is used only through shared references
    // under the module's access rules, and needs no `Drop` (`T: Copy`).
    unsafe {
        ShmBox::new(0, |p: *mut DataCell<T>| {
            p.cast::<T>().write(value);
            Ok(())
        })
    }
}

/// Maps a fresh, zero-filled segment for `len` elements and copies `init` into it, if given.
pub(super) fn new_elements<T: ShmSafe>(
    len: usize,
    init: Option<&[T]>,
) -> io::Result<ShmBox<ArrayHeader>> {
    const { assert!(align_of::<T>() <= TAIL_ALIGN, "Array element alignment above 64") };
    let bytes = len
        .checked_mul(size_of::<T>())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "array too large"))?;
    // SAFETY: `ArrayHeader` is empty (valid as it is), used only through shared references,
    // with no `Drop`.
    let data = unsafe { ShmBox::new(bytes, |_: *mut ArrayHeader| Ok(()))? };
    if let Some(init) = init {
        debug_assert_eq!(init.len(), len);
        // SAFETY: the tail holds `len` elements of `T` (64-aligned, and `T`'s alignment is at
        // most 64); the segment is fresh and no other handle to it exists yet; `init` is a
        // separate (private) allocation.
        unsafe { ptr::copy_nonoverlapping(init.as_ptr(), data.tail_ptr().cast::<T>(), len) };
    }
    // A zero-filled tail is `len` valid elements: every bit pattern is a valid `ShmSafe`.
    Ok(data)
}
