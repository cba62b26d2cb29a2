//! [`Value`]: a `T` in shared memory behind a [`Lock`] — Python's `multiprocessing.Value`.
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

use multiproc_sys::shm_safe::ShmSafe;

use super::{Slot, new_slot};
use crate::shm::ShmBox;
use crate::sync::{AcquireError, Lock, LockGuard};
use crate::wait::Patience;

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
/// # Why no atomics
///
/// The guard hands out `&mut T`, and it is the only way to the data: it excludes every other
/// guard of the lock, in every process, and nothing else can release a lock it holds
/// ([`Lock::release`] and a [`Condition`](crate::Condition) wait refuse). Atomic operations
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
/// - The default lock is a [`Lock`], not an `RLock`: locking again from the thread that holds
///   it is [`AcquireError::WouldDeadlock`] rather than a second `&mut T` (which Rust forbids).
/// - Python's `lock=False` (a bare shared object) is [`RawValue`](super::RawValue).
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

    /// Locks the value, waiting at most `timeout` (`Duration::ZERO`: one try).
    ///
    /// # Errors
    /// As [`Lock::lock_timeout`].
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
