//! [`Value`]: a `T` in shared memory behind an [`RLock`] (or a [`Lock`](crate::Lock)) — Python's
//! `multiprocessing.Value`.
//!
//! # Unsafe in this file
//!
//! The element accesses: each dereferences a pointer into a live shared segment, and the
//! lock or atomicity argument of the type docs is restated at each `unsafe` block.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use multiproc_sys::mem::shm_safe::ShmSafe;

use super::{DataCell, new_cell};
use crate::shm::ShmBox;
use crate::sync::{AcquireError, DataGuard, DataLock, RLock, lock_data};
use crate::wait::Patience;

/// A `T` in shared memory, protected by a process-shared lock — Python's
/// `multiprocessing.Value`.
///
/// Read and write it through the guard of [`lock`](Self::lock), which derefs to `T` (Python's
/// `with v.get_lock(): v.value += 1`), or with [`load`](Self::load)/[`store`](Self::store),
/// which take the lock for one access (Python's `v.value`). The lock is a new recursive
/// [`RLock`], as in Python, or a [`Lock`](crate::Lock) or [`RLock`] shared with other objects, given to
/// [`with_lock`](Self::with_lock) (Python's `lock=` argument); `L` is its type (see
/// [`DataLock`] for what each allows). Python's `lock=False` is [`RawValue`](super::RawValue).
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
///     c.join()?;
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
/// # The lock and the guard
///
/// As in Python, the holder of the lock ([`get_lock`](Self::get_lock)) may use the value
/// while holding it: with the default [`RLock`], `v.get_lock().acquire()` then
/// [`load`](Self::load), [`store`](Self::store) or [`lock`](Self::lock) works, and the lock's
/// own acquires and releases nest. What Rust adds: the guard hands out `&mut T`, so **one
/// guard of the data at a time**, in every process and in the holding thread too. Locking the
/// value again (or any object sharing its lock) while a guard of it lives is refused as a
/// relock of a held [`Lock`](crate::Lock) is: [`AcquireError::WouldDeadlock`] without a timeout,
/// [`AcquireError::Timeout`] after a bounded one's timeout (the same holds for
/// `load`/`store`, which take a guard for one access).
///
/// # Why no atomics
///
/// The guard hands out `&mut T`, and it is the only way to the data: it excludes every other
/// guard of the lock, in every process, and nothing else can release a lock it holds
/// ([`release`](RLock::release) and a [`Condition`](crate::Condition) wait refuse). Atomic operations
/// next to it would race with that `&mut T`, so there are none: for a lock-free counter use a
/// [`RawValue`](super::RawValue); for fields that must change together, a `Value` of a `#[repr(C)]` struct.
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
/// - The lock is an [`RLock`] by default, as in Python, but only one guard of the data (which
///   derefs to `&mut T`) may live at a time, also in the holding thread: a second one is
///   refused (see "The lock and the guard") rather than handing out two `&mut T` to the same
///   data, which Rust forbids. Nesting the lock itself (`get_lock()`) works as in Python.
/// - `lock=` takes a [`Lock`](crate::Lock) or an [`RLock`] ([`with_lock`](Self::with_lock), typed by `L`);
///   Python's `lock=False` (a bare shared object) is [`RawValue`](super::RawValue).
pub struct Value<T: ShmSafe, L: DataLock = RLock> {
    data: ShmBox<DataCell<T>>,
    lock: L,
}

/// The guard of a [`Value`]'s lock: derefs to the shared `T`; dropping it releases the lock —
/// Python's `with v.get_lock(): v.value ...`.
///
/// Not `Send`: the lock belongs to the thread that acquired it. While it lives, nothing else
/// can release the lock's level it holds (the lock's `release` and
/// [`Condition::wait`](crate::Condition::wait) refuse), and no other guard of the value (or
/// of an object sharing its lock) can be had, in this thread either. If its process dies
/// while holding it, the next locker gets [`AcquireError::OwnerDied`] with its own guard.
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
    slot: &'a DataCell<T>,
    _guard: DataGuard<'a>,
}

impl<T: ShmSafe, L: DataLock> Clone for Value<T, L> {
    fn clone(&self) -> Self {
        Value { data: self.data.clone(), lock: self.lock.clone() }
    }
}

impl<T: ShmSafe> Value<T> {
    /// A new shared value, with a new [`RLock`] (Python: `Value(typecode, value)`).
    ///
    /// # Errors
    /// Mapping a shared segment failed, or the kernel has no robust futexes.
    pub fn new(value: T) -> io::Result<Value<T>> {
        Value::with_lock(value, RLock::new()?)
    }

    /// A new shared value protected by `lock`, a [`Lock`](crate::Lock) or an [`RLock`], which
    /// may also protect other objects (Python: `Value(typecode, value, lock=lock)`); `L` is its
    /// type.
    ///
    /// # Errors
    /// Mapping the shared segment failed.
    pub fn with_lock<L: DataLock>(value: T, lock: L) -> io::Result<Value<T, L>> {
        Ok(Value { data: new_cell(value)?, lock })
    }
}

impl<T: ShmSafe, L: DataLock> Value<T, L> {
    /// The lock that protects the value (Python's `get_lock()`). Holding it (with the default
    /// [`RLock`]) does not stop this thread from using the value: see the type docs.
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// Locks the value, waiting as long as it takes; the guard derefs to it. With an
    /// [`RLock`] that the calling thread holds already (through [`get_lock`](Self::get_lock)),
    /// this takes one more level.
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: locked (the guard is inside), but the previous holder
    ///   died holding the lock.
    /// - [`AcquireError::WouldDeadlock`]: the calling thread holds a guard of the value (or
    ///   of an object sharing its lock), or holds the lock, a [`Lock`](crate::Lock), through
    ///   [`get_lock`](Self::get_lock).
    /// - [`AcquireError::Os`]: as for [`RLock::lock`] or [`Lock::lock`](crate::Lock::lock).
    #[inline]
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Patience::FOREVER)
    }

    /// Locks the value if the lock is free (or, an [`RLock`], held by the calling thread
    /// without a guard of the data), without waiting.
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] if another thread or process holds the lock, or if the calling
    /// thread may not take a guard (where [`lock`](Self::lock) says
    /// [`WouldDeadlock`](AcquireError::WouldDeadlock)); otherwise as [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Patience::Try)
    }

    /// Locks the value, waiting at most `timeout` (`Duration::ZERO`: one try).
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] once the timeout has really passed (never early); that
    /// includes the cases where [`lock`](Self::lock) says
    /// [`WouldDeadlock`](AcquireError::WouldDeadlock), which wait out the timeout, as Python
    /// would; otherwise as [`lock`](Self::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        self.lock_with(Patience::from_timeout(Some(timeout)))
    }

    #[inline]
    fn lock_with(
        &self,
        patience: Patience,
    ) -> Result<ValueGuard<'_, T>, AcquireError<ValueGuard<'_, T>>> {
        let slot = self.data.get();
        lock_data(&self.lock, patience, |guard| ValueGuard { slot, _guard: guard })
    }

    /// Reads the value under the lock (Python: `v.value`), which may be held by the calling
    /// thread already (an [`RLock`]: see the type docs).
    ///
    /// # Errors
    /// As [`lock`](Self::lock); [`AcquireError::OwnerDied`] carries the value read.
    pub fn load(&self) -> Result<T, AcquireError<T>> {
        self.lock().map(|g| *g).map_err(|e| e.map_guard(|g| *g))
    }

    /// Writes the value under the lock (Python: `v.value = x`), which may be held by the
    /// calling thread already (an [`RLock`]: see the type docs).
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
        // such a guard of the same lock, of which at most one lives at a time (in the holding
        // thread too: a data acquire by the holder of a data level is refused, see
        // `sync::data`), so no write races with this borrow. The slot is a
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

impl<T: ShmSafe, L: DataLock> fmt::Debug for Value<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Reading would take the lock (and could swallow an owner-died report): print none.
        f.debug_struct("Value").field("lock", &self.lock).finish_non_exhaustive()
    }
}
