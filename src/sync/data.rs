//! [`DataLock`]: the lock of a `Value` or an `Array` — an [`RLock`] (the default, as in
//! Python) or a [`Lock`] — and the data level that their guards hold.
//!
//! A guard of a `Value` or an `Array` hands out `&mut` to the shared data, so at most one may
//! live at a time per lock, in every process *and in the holding thread*: the lock is taken
//! [`Via::Data`]. Under a [`Lock`] that is what the lock does anyway (a second acquire by the
//! holder is refused). Under an [`RLock`] the owner may nest levels freely (Python's
//! `with v.get_lock():` around `v.value += 1`), but only one of them may be a data level: the
//! `data` word of its bookkeeping says one lives, and a data acquire by the owner while it is
//! set is refused exactly as a relock of a held [`Lock`] is
//! ([`held_by_caller`](super::raw::held_by_caller)).

use std::fmt;
use std::marker::PhantomData;

use super::api::{Guard, RawAcquire, Via, retype};
use super::error::AcquireError;
use super::lock::Lock;
use super::rlock::RLock;
use crate::wait::Patience;
use sealed::Kind;

/// The lock of a [`Value`](crate::Value) or an [`Array`](crate::Array): an [`RLock`] (the
/// default, as Python's `lock=True`) or a [`Lock`] (Python's `lock=Lock()`). Implemented by
/// those two types only (the trait is sealed).
///
/// Under either, at most one guard of the data (the `lock()` of a `Value`/`Array`, or one
/// access by `load`/`store`/`to_vec`) holds the lock at a time, in every process and in the
/// holding thread too, since each guard hands out `&mut` to the data. What differs is what the
/// holder may do besides:
///
/// | | [`RLock`] (default) | [`Lock`] |
/// |---|---|---|
/// | `get_lock().acquire(..)` / `lock()` again, while holding it | nests, as in Python | [`AcquireError::WouldDeadlock`], or `Ok(false)`/`Timeout` for a bounded acquire |
/// | `load`/`store`/`to_vec`/the data guard, while holding it through `get_lock()` | works (Python's `with v.get_lock(): v.value += 1`) | as above (Python hangs) |
/// | the data guard, while a data guard of the same lock lives | refused as a relock of a held [`Lock`] is | the same |
///
/// ```
/// use multiproc::{AcquireError, Lock, Value};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let v = Value::new(0i32)?; // Python: Value('i', 0), its lock an RLock
/// v.get_lock().acquire()?; //  with v.get_lock():
/// v.store(v.load()? + 1)?; //                    v.value += 1
/// v.get_lock().release()?;
///
/// let w = Value::with_lock(0i32, Lock::new()?)?; // Value('i', 0, lock=Lock())
/// w.get_lock().acquire()?;
/// assert!(matches!(w.load(), Err(AcquireError::WouldDeadlock))); // Python hangs here
/// w.get_lock().release()?;
/// # Ok(())
/// # }
/// ```
pub trait DataLock: sealed::Sealed + Clone + fmt::Debug + Send + Sync + 'static {}

impl DataLock for Lock {}
impl DataLock for RLock {}

pub(crate) mod sealed {
    use super::{Lock, RLock};

    /// The crate's side of [`DataLock`](super::DataLock): which lock it is.
    pub trait Sealed {
        /// The lock, by kind.
        fn kind(&self) -> Kind<'_>;
    }

    /// A [`DataLock`](super::DataLock), by kind.
    #[derive(Debug)]
    pub enum Kind<'a> {
        /// A non-recursive lock.
        Lock(&'a Lock),
        /// A recursive lock.
        RLock(&'a RLock),
    }

    impl Sealed for Lock {
        #[inline(always)]
        fn kind(&self) -> Kind<'_> {
            Kind::Lock(self)
        }
    }

    impl Sealed for RLock {
        #[inline(always)]
        fn kind(&self) -> Kind<'_> {
            Kind::RLock(self)
        }
    }
}

/// Acquires a data level of `lock` as `patience` says and wraps its guard with `wrap`: the
/// body of every `lock`, `try_lock`, `lock_timeout` (and so `load`, `store`, `to_vec`) of a
/// `Value` or an `Array`.
#[inline(always)]
pub(crate) fn lock_data<'a, L: DataLock, G>(
    lock: &'a L,
    patience: Patience,
    wrap: impl FnOnce(DataGuard<'a>) -> G,
) -> Result<G, AcquireError<G>> {
    match lock.kind() {
        Kind::Lock(lock) => {
            lock.guarded(patience, Via::Data, |g| wrap(DataGuard::Lock { _held: g }))
        }
        Kind::RLock(lock) => match lock.acquire_via(patience, Via::Data) {
            Ok(got) => {
                let held = RLockData { lock, _not_send: PhantomData };
                got.wrap(wrap(DataGuard::RLock { _held: held }))
            }
            Err(e) => Err(retype(e)),
        },
    }
}

/// A held data level of a `Value`/`Array`'s lock, released on drop: the inside of their guards.
///
/// Not `Send`: the lock belongs to the thread that acquired it.
pub(crate) enum DataGuard<'a> {
    /// A [`Lock`] held [`Via::Data`] (released by the drop of `_held`).
    Lock { _held: Guard<'a, Lock> },
    /// The data level of an [`RLock`] (released by the drop of `_held`).
    RLock { _held: RLockData<'a> },
}

/// The data level of an [`RLock`]: its drop releases the level and clears the `data` word.
pub(crate) struct RLockData<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for RLockData<'_> {
    #[inline]
    fn drop(&mut self) {
        // The guard proves the calling thread owns the lock and that this is its one data
        // level (a `Condition` refuses to wait while a data level lives).
        self.lock.unlock_data();
    }
}

impl fmt::Debug for DataGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataGuard").finish_non_exhaustive()
    }
}
