//! [`Array`]: a fixed-length array of `T` in shared memory behind an [`RLock`] (or a
//! [`Lock`](crate::Lock)) — Python's `multiprocessing.Array`.
//!
//! # Unsafe in this file
//!
//! The element accesses: each dereferences a pointer into a live shared segment, and the
//! lock or atomicity argument of the type docs is restated at each `unsafe` block.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::slice;
use std::time::Duration;

use multiproc_sys::mem::shm_safe::ShmSafe;

use super::{ArrayHeader, new_elements};
use crate::shm::ShmBox;
use crate::sync::{AcquireError, DataGuard, DataLock, RLock, lock_data};
use crate::wait::Patience;

/// A fixed-length array of `T` in shared memory, protected by a process-shared lock —
/// Python's `multiprocessing.Array`.
///
/// Access it through the guard of [`lock`](Self::lock), which derefs to `[T]`: indexing,
/// slices, iteration and slice methods all work (Python's `with arr.get_lock(): arr[i] = x`).
/// [`to_vec`](Self::to_vec) copies it out under the lock (Python's `arr[:]`). The lock is a new
/// [`RLock`] (Python's default) or the [`Lock`](crate::Lock) or [`RLock`] given to
/// [`with_lock`](Self::with_lock) (Python's `lock=`), of type `L`. `T`, the lock and the
/// access rules are as for [`Value`](super::Value) (see its "Which `T`", "The lock and the
/// guard" and "Why no atomics"): the holder of [`get_lock`](Self::get_lock) (an `RLock`) may
/// use the array, but only one guard of the data lives at a time.
///
/// ```
/// use multiproc::{AcquireError, Array, Process, Value};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let num = Value::new(0.0f64)?; // Python: Value('d', 0.0)
/// let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?; // Array('i', range(10))
/// let child = {
///     let (num, arr) = (num.clone(), arr.clone());
///     Process::new(move || {
///         num.store(3.1415927).expect("store");
///         let mut a = arr.lock().expect("lock");
///         for x in a.iter_mut() {
///             *x = -*x;
///         }
///     })
/// };
/// child.start()?;
/// child.join()?;
/// assert_eq!(num.load()?, 3.1415927);
/// assert_eq!(arr.to_vec()?, [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
/// assert_eq!(arr.lock().map_err(AcquireError::without_guard)?[2..5], [-2, -3, -4]);
/// # Ok(())
/// # }
/// ```
///
/// # When a process dies
///
/// As for [`Value`](super::Value): the lock is robust, and the next locker after a holder's death gets
/// [`AcquireError::OwnerDied`] with the guard inside. Elements may be half-updated, but each
/// is a valid `T`. Nobody hangs.
///
/// # Differences from Python
///
/// - The lock is an [`RLock`] by default, as in Python, but only one guard of the data (which
///   derefs to `&mut [T]`) may live at a time, also in the holding thread; nesting the lock
///   itself works as in Python (see [`Value`](super::Value)'s "The lock and the guard").
/// - `lock=` takes a [`Lock`](crate::Lock) or an [`RLock`] ([`with_lock`](Self::with_lock));
///   Python's `lock=False` is [`RawArray`](super::RawArray).
/// - Indexing out of range panics, as for any Rust slice (Python raises `IndexError`); use
///   `get`. Slices are borrowed views, not copies.
pub struct Array<T: ShmSafe, L: DataLock = RLock> {
    data: ShmBox<ArrayHeader>,
    len: usize,
    lock: L,
    _t: PhantomData<T>,
}

/// The guard of an [`Array`]'s lock: derefs to the shared `[T]`; dropping it releases the lock
/// — Python's `with arr.get_lock(): arr[i] ...`.
///
/// Not `Send`: the lock belongs to the thread that acquired it. While it lives, nothing else
/// can release the lock's level it holds, and no other guard of the array (or of an object
/// sharing its lock) can be had, in this thread either. If its process dies while holding it, the next locker gets
/// [`AcquireError::OwnerDied`] with its own guard.
///
/// ```
/// # use multiproc::Array;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let arr = Array::from_slice(&[3u8, 1, 2])?;
/// let mut a = arr.lock().expect("lock"); // with arr.get_lock():
/// a.sort(); //                               any slice method
/// assert_eq!(a[..], [1, 2, 3]);
/// # Ok(())
/// # }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: ShmSafe> {
    ptr: *mut T,
    len: usize,
    _guard: DataGuard<'a>,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: ShmSafe, L: DataLock> Clone for Array<T, L> {
    fn clone(&self) -> Self {
        Array { data: self.data.clone(), len: self.len, lock: self.lock.clone(), _t: PhantomData }
    }
}

impl<T: ShmSafe> Array<T> {
    /// A new shared array of `len` zeroes, with a new [`RLock`] (Python:
    /// `Array(typecode, len)`).
    ///
    /// # Errors
    /// The size overflows, mapping a shared segment failed, or the kernel has no robust
    /// futexes.
    pub fn new(len: usize) -> io::Result<Array<T>> {
        Array::with_lock(len, RLock::new()?)
    }

    /// A new shared array holding a copy of `values`, with a new [`RLock`] (Python:
    /// `Array(typecode, sequence)`).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_slice(values: &[T]) -> io::Result<Array<T>> {
        Array::from_slice_with_lock(values, RLock::new()?)
    }

    /// [`new`](Array::new) with a given lock, a [`Lock`](crate::Lock) or an [`RLock`]
    /// (Python's `lock=` argument); `L` is its type.
    ///
    /// # Errors
    /// The size overflows or mapping the shared segment failed.
    pub fn with_lock<L: DataLock>(len: usize, lock: L) -> io::Result<Array<T, L>> {
        Ok(Array { data: new_elements::<T>(len, None)?, len, lock, _t: PhantomData })
    }

    /// [`from_slice`](Array::from_slice) with a given lock (Python's `lock=` argument).
    ///
    /// # Errors
    /// As [`with_lock`](Self::with_lock).
    pub fn from_slice_with_lock<L: DataLock>(values: &[T], lock: L) -> io::Result<Array<T, L>> {
        let data = new_elements(values.len(), Some(values))?;
        Ok(Array { data, len: values.len(), lock, _t: PhantomData })
    }
}

impl<T: ShmSafe, L: DataLock> Array<T, L> {
    /// The number of elements (Python's `len(arr)`), fixed at creation.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lock that protects the array (Python's `get_lock()`). Holding it (with the default
    /// [`RLock`]) does not stop this thread from using the array: see the type docs.
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// Locks the array, waiting as long as it takes; the guard derefs to `[T]`.
    ///
    /// # Errors
    /// As [`Value::lock`](super::Value::lock): [`AcquireError::OwnerDied`] still carries the
    /// guard; [`AcquireError::WouldDeadlock`] while this thread holds a guard of the array
    /// (or of an object sharing its lock) or holds the lock, a [`Lock`](crate::Lock), itself.
    #[inline]
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Patience::FOREVER)
    }

    /// Locks the array if the lock is free (or, an [`RLock`], held by the calling thread
    /// without a guard of the data), without waiting.
    ///
    /// # Errors
    /// As [`Value::try_lock`](super::Value::try_lock).
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Patience::Try)
    }

    /// Locks the array, waiting at most `timeout` (`Duration::ZERO`: one try).
    ///
    /// # Errors
    /// As [`Value::lock_timeout`](super::Value::lock_timeout).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Patience::from_timeout(Some(timeout)))
    }

    #[inline]
    fn lock_with(
        &self,
        patience: Patience,
    ) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        let (ptr, len) = (self.data.tail_ptr().cast::<T>(), self.len);
        lock_data(&self.lock, patience, |guard| ArrayGuard {
            ptr,
            len,
            _guard: guard,
            _t: PhantomData,
        })
    }

    /// Copies the elements out under the lock (Python: `arr[:]`), which may be held by the
    /// calling thread already (an [`RLock`]: see the type docs).
    ///
    /// # Errors
    /// As [`lock`](Self::lock); [`AcquireError::OwnerDied`] carries the elements read.
    pub fn to_vec(&self) -> Result<Vec<T>, AcquireError<Vec<T>>> {
        self.lock().map(|g| g.to_vec()).map_err(|e| e.map_guard(|g| g.to_vec()))
    }
}

impl<T: ShmSafe> Deref for ArrayGuard<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` is the 64-aligned tail of a live segment holding `len` valid `T`s
        // (zero-filled or copied in, and every bit pattern is valid). The guard holds the
        // array's lock in data mode, which nothing but this guard releases; every other access
        // to the elements goes through such a guard of the same lock, of which at most one
        // lives at a time (in the holding thread too, see `sync::data`), so no write races.
        unsafe { slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: ShmSafe> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow from this guard.
        unsafe { slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ShmSafe, L: DataLock> fmt::Debug for Array<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}
