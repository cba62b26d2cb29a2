//! Data in shared memory — Python's `multiprocessing.Value`, `Array`, `RawValue` and
//! `RawArray`.
//!
//! | type | Python | access |
//! |---|---|---|
//! | [`Value<T>`] | `Value(typecode, v)` | through its [`Lock`]: a guard that derefs to `T`, or `load`/`store` |
//! | [`Array<T>`] | `Array(typecode, n or seq)` | through its [`Lock`]: a guard that derefs to `[T]`, or `to_vec` |
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
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr;
use std::slice;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use multiproc_sys::shm_safe::{AtomicInteger, AtomicOps, ShmSafe};

use crate::shm::ShmBox;
use crate::sync::{AcquireError, Lock, LockGuard};
use crate::wait::Patience;

/// Alignment of an array's elements in its segment (see `ShmBox`'s tail).
const TAIL_ALIGN: usize = 64;

/// A `T` in shared memory, mutated only under the rules of the module docs.
#[repr(transparent)]
struct Slot<T>(UnsafeCell<T>);

// SAFETY: a `Slot` is only read or written through a guard of the lock that protects it, or
// atomically, or through `unsafe` methods whose callers promise the absence of races (module
// docs); `T: ShmSafe` is `Send + Sync` plain data.
unsafe impl<T: ShmSafe> Sync for Slot<T> {}

/// The (empty) header of an array's segment; the elements are its tail.
#[repr(C)]
struct ArrayHeader {}

/// Maps a fresh segment holding `value`.
fn new_slot<T: ShmSafe>(value: T) -> io::Result<ShmBox<Slot<T>>> {
    // SAFETY: `init` writes a valid `T` into the fresh, exclusively owned segment (aligned for
    // `Slot<T>`, which `ShmBox::new` checks); `Slot<T>` is used only through shared references
    // under the module's access rules, and needs no `Drop` (`T: Copy`).
    unsafe {
        ShmBox::new(0, |p: *mut Slot<T>| {
            p.cast::<T>().write(value);
            Ok(())
        })
    }
}

/// Maps a fresh, zero-filled segment for `len` elements and copies `init` into it, if given.
fn new_elements<T: ShmSafe>(len: usize, init: Option<&[T]>) -> io::Result<ShmBox<ArrayHeader>> {
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

// ---------------------------------------------------------------------------------------------
// Value

/// A `T` in shared memory, protected by a process-shared [`Lock`] — Python's
/// `multiprocessing.Value`.
///
/// Read and write it through the guard of [`lock`](Self::lock), which derefs to `T` (Python's
/// `with v.get_lock(): v.value += 1`), or with [`load`](Self::load)/[`store`](Self::store),
/// which take the lock for one access (Python's `v.value`). A new [`Lock`] is created with the
/// value, or one is shared with other objects through [`with_lock`](Self::with_lock) (Python's
/// `lock=` argument).
///
/// ```
/// use multiproc::{Process, Value};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let counter = Value::new(0i32)?; // Python: Value('i', 0)
/// let children: Vec<_> = (0..4)
///     .map(|_| {
///         let counter = counter.clone();
///         Process::new(move || {
///             for _ in 0..50 {
///                 *counter.lock().expect("lock") += 1; // with counter.get_lock(): ...
///             }
///         })
///     })
///     .collect();
/// for c in &children {
///     c.start()?;
/// }
/// for c in &children {
///     c.join(None)?;
/// }
/// assert_eq!(counter.load()?, 200);
/// # Ok(())
/// # }
/// ```
///
/// # Which `T`
///
/// `T` is [`ShmSafe`]: plain data (integers, floats, arrays of them, or your `#[repr(C)]`
/// struct of such fields, with an `unsafe impl ShmSafe`) whose every bit pattern is a valid
/// value, with no pointers or file descriptors. Python's typecodes map to `i8`/`u8` (`'b'`,
/// `'B'`), `i16`/`u16`, `i32`/`u32`, `i64`/`u64` and `f32`/`f64` (`'f'`, `'d'`); Python's
/// silent wrap-around of out-of-range integers cannot happen with a typed `T`.
///
/// `bool` and `char` are deliberately **not** `ShmSafe`: a `bool` must be 0 or 1 and a `char`
/// a Unicode scalar value, so a byte garbled by a peer that crashed mid-write (or is buggy)
/// would be an invalid value, which is undefined behaviour as soon as it is read. Store a `u8`
/// or `u32` and convert with a check (`x != 0`, `char::from_u32`).
///
/// # Why no atomics
///
/// The guard hands out `&mut T`, and it is the only way to the data: it excludes every other
/// guard of the lock, in every process, and nothing else can release a lock it holds
/// ([`Lock::release`] and a [`Condition`](crate::Condition) wait refuse). Atomic operations
/// next to it would race with that `&mut T`, so there are none: for a lock-free counter use a
/// [`RawValue`]; for fields that must change together, a `Value` of a `#[repr(C)]` struct.
///
/// # When a process dies
///
/// The lock is robust: if a process dies while holding it, even by `SIGKILL` in the middle of
/// an update, the next locker gets [`AcquireError::OwnerDied`] with the guard (or, from
/// [`load`](Self::load), the value) inside. The value may be half-updated, but it is always a
/// valid `T` (every bit pattern is); check it or repair it, then carry on: the lock keeps
/// working. Nobody hangs.
///
/// # Differences from Python
///
/// - The default lock is a [`Lock`], not an `RLock`: locking again from the thread that holds
///   it is [`AcquireError::WouldDeadlock`] rather than a second `&mut T` (which Rust forbids).
/// - Python's `lock=False` (a bare shared object) is [`RawValue`].
pub struct Value<T: ShmSafe> {
    data: ShmBox<Slot<T>>,
    lock: Lock,
}

/// The guard of a [`Value`]'s lock: derefs to the shared `T`; dropping it releases the lock —
/// Python's `with v.get_lock(): v.value ...`.
///
/// Not `Send`: the lock belongs to the thread that acquired it. While it lives, nothing else
/// can release the lock ([`Lock::release`] and [`Condition::wait`](crate::Condition::wait)
/// refuse). If its process dies while holding it, the next locker gets
/// [`AcquireError::OwnerDied`] with its own guard.
///
/// ```
/// # use multiproc::Value;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let v = Value::new(1u64)?;
/// let mut g = v.lock().expect("lock"); // with v.get_lock():
/// *g *= 10; //                             v.value *= 10
/// drop(g);
/// assert_eq!(v.load()?, 10);
/// # Ok(())
/// # }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: ShmSafe> {
    slot: &'a Slot<T>,
    _guard: LockGuard<'a>,
}

impl<T: ShmSafe> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value { data: self.data.clone(), lock: self.lock.clone() }
    }
}

impl<T: ShmSafe> Value<T> {
    /// A new shared value, with a new [`Lock`] (Python: `Value(typecode, value)`).
    ///
    /// # Errors
    /// Mapping a shared segment failed, or the kernel has no robust futexes.
    pub fn new(value: T) -> io::Result<Value<T>> {
        Value::with_lock(value, Lock::new()?)
    }

    /// A new shared value protected by `lock`, which may also protect other objects (Python:
    /// `Value(typecode, value, lock=lock)`).
    ///
    /// # Errors
    /// Mapping the shared segment failed.
    pub fn with_lock(value: T, lock: Lock) -> io::Result<Value<T>> {
        Ok(Value { data: new_slot(value)?, lock })
    }

    /// The lock that protects the value (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Locks the value, waiting as long as it takes; the guard derefs to it.
    ///
    /// # Errors
    /// As [`Lock::lock`]: [`AcquireError::OwnerDied`] still carries the guard.
    #[inline]
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Patience::FOREVER)
    }

    /// Locks the value if nobody holds the lock, without waiting.
    ///
    /// # Errors
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Patience::Try)
    }

    /// Locks the value, waiting at most `timeout` (`None`: forever; `Some(ZERO)`: one try).
    ///
    /// # Errors
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Patience::from_timeout(timeout))
    }

    #[inline]
    fn lock_with(
        &self,
        patience: Patience,
    ) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        let slot = self.data.get();
        self.lock.lock_data(patience, |guard| ValueGuard { slot, _guard: guard })
    }

    /// Reads the value under the lock (Python: `v.value`).
    ///
    /// # Errors
    /// As [`lock`](Self::lock); [`AcquireError::OwnerDied`] carries the value read.
    pub fn load(&self) -> Result<T, AcquireError<T>> {
        self.lock().map(|g| *g).map_err(|e| e.map_guard(|g| *g))
    }

    /// Writes the value under the lock (Python: `v.value = x`).
    ///
    /// # Errors
    /// As [`lock`](Self::lock); after [`AcquireError::OwnerDied`] the value *was* written.
    pub fn store(&self, value: T) -> Result<(), AcquireError<()>> {
        match self.lock() {
            Ok(mut g) => {
                *g = value;
                Ok(())
            }
            Err(AcquireError::OwnerDied(mut g)) => {
                *g = value;
                Err(AcquireError::OwnerDied(()))
            }
            Err(e) => Err(e.without_guard()),
        }
    }
}

impl<T: ShmSafe> Deref for ValueGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the value's lock in data mode, which nothing but this guard
        // releases (module docs); every other access to the slot, in any process, goes through
        // such a guard of the same lock, so no write races with this borrow. The slot is a
        // valid `T` (initialised, and every bit pattern is one).
        unsafe { &*self.slot.0.get() }
    }
}

impl<T: ShmSafe> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow from this guard.
        unsafe { &mut *self.slot.0.get() }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ShmSafe> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Reading would take the lock (and could swallow an owner-died report): print none.
        f.debug_struct("Value").field("lock", &self.lock).finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Array

/// A fixed-length array of `T` in shared memory, protected by a process-shared [`Lock`] —
/// Python's `multiprocessing.Array`.
///
/// Access it through the guard of [`lock`](Self::lock), which derefs to `[T]`: indexing,
/// slices, iteration and slice methods all work (Python's `with arr.get_lock(): arr[i] = x`).
/// [`to_vec`](Self::to_vec) copies it out under the lock (Python's `arr[:]`). `T` and the
/// access rules are as for [`Value`] (see its "Which `T`" and "Why no atomics").
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
/// child.join(None)?;
/// assert_eq!(num.load()?, 3.1415927);
/// assert_eq!(arr.to_vec()?, [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
/// assert_eq!(arr.lock().map_err(AcquireError::without_guard)?[2..5], [-2, -3, -4]);
/// # Ok(())
/// # }
/// ```
///
/// # When a process dies
///
/// As for [`Value`]: the lock is robust, and the next locker after a holder's death gets
/// [`AcquireError::OwnerDied`] with the guard inside. Elements may be half-updated, but each
/// is a valid `T`. Nobody hangs.
///
/// # Differences from Python
///
/// - The default lock is a [`Lock`], not an `RLock` (see [`Value`]).
/// - Indexing out of range panics, as for any Rust slice (Python raises `IndexError`); use
///   `get`. Slices are borrowed views, not copies.
pub struct Array<T: ShmSafe> {
    data: ShmBox<ArrayHeader>,
    len: usize,
    lock: Lock,
    _t: PhantomData<T>,
}

/// The guard of an [`Array`]'s lock: derefs to the shared `[T]`; dropping it releases the lock
/// — Python's `with arr.get_lock(): arr[i] ...`.
///
/// Not `Send`: the lock belongs to the thread that acquired it. While it lives, nothing else
/// can release the lock. If its process dies while holding it, the next locker gets
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
    _guard: LockGuard<'a>,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: ShmSafe> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { data: self.data.clone(), len: self.len, lock: self.lock.clone(), _t: PhantomData }
    }
}

impl<T: ShmSafe> Array<T> {
    /// A new shared array of `len` zeroes, with a new [`Lock`] (Python: `Array(typecode, len)`).
    ///
    /// # Errors
    /// The size overflows, mapping a shared segment failed, or the kernel has no robust
    /// futexes.
    pub fn new(len: usize) -> io::Result<Array<T>> {
        Array::with_lock(len, Lock::new()?)
    }

    /// A new shared array holding a copy of `values`, with a new [`Lock`] (Python:
    /// `Array(typecode, sequence)`).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_slice(values: &[T]) -> io::Result<Array<T>> {
        Array::from_slice_with_lock(values, Lock::new()?)
    }

    /// [`new`](Self::new) with a given lock (Python's `lock=` argument).
    ///
    /// # Errors
    /// The size overflows or mapping the shared segment failed.
    pub fn with_lock(len: usize, lock: Lock) -> io::Result<Array<T>> {
        Ok(Array { data: new_elements::<T>(len, None)?, len, lock, _t: PhantomData })
    }

    /// [`from_slice`](Self::from_slice) with a given lock (Python's `lock=` argument).
    ///
    /// # Errors
    /// As [`with_lock`](Self::with_lock).
    pub fn from_slice_with_lock(values: &[T], lock: Lock) -> io::Result<Array<T>> {
        let data = new_elements(values.len(), Some(values))?;
        Ok(Array { data, len: values.len(), lock, _t: PhantomData })
    }

    /// The number of elements (Python's `len(arr)`), fixed at creation.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lock that protects the array (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Locks the array, waiting as long as it takes; the guard derefs to `[T]`.
    ///
    /// # Errors
    /// As [`Lock::lock`]: [`AcquireError::OwnerDied`] still carries the guard.
    #[inline]
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Patience::FOREVER)
    }

    /// Locks the array if nobody holds the lock, without waiting.
    ///
    /// # Errors
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Patience::Try)
    }

    /// Locks the array, waiting at most `timeout` (`None`: forever; `Some(ZERO)`: one try).
    ///
    /// # Errors
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        self.lock_with(Patience::from_timeout(timeout))
    }

    #[inline]
    fn lock_with(
        &self,
        patience: Patience,
    ) -> Result<ArrayGuard<'_, T>, AcquireError<ArrayGuard<'_, T>>> {
        let (ptr, len) = (self.data.tail_ptr().cast::<T>(), self.len);
        self.lock.lock_data(patience, |guard| ArrayGuard {
            ptr,
            len,
            _guard: guard,
            _t: PhantomData,
        })
    }

    /// Copies the elements out under the lock (Python: `arr[:]`).
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
        // to the elements goes through such a guard of the same lock, so no write races.
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

impl<T: ShmSafe> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

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
/// writes. `T` is as for [`Value`] (see its "Which `T`").
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
///     c.join(None)?;
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
/// them, or because an external [`Lock`] orders the accesses.
///
/// # When a process dies
///
/// An atomic operation is indivisible: a process that dies completes it or does not start
/// it, and nothing is ever held, so nobody else is affected. A plain [`write`](Self::write)
/// cut short may leave a half-written value, which is still a valid `T`.
pub struct RawValue<T: ShmSafe> {
    data: ShmBox<Slot<T>>,
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
        Ok(RawValue { data: new_slot(value)? })
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
    ///   order the accesses by other means, for example a [`Lock`] that every writer holds,
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
///     c.join(None)?;
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
