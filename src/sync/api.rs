//! The safe half of the `lock_api` split (STYLE.md §9), written once: the guard, the
//! guard-returning acquire (`lock`, `try_lock`, `lock_timeout` of every lock-like type), and
//! Python's `acquire(block, timeout)`/`release`, over any [`RawAcquire`] — [`Lock`], [`RLock`]
//! and [`ConditionLock`], whose raw operations rest on the one raw robust lock
//! ([`RawLock`](super::raw::RawLock)). `Value` and `Array` use it through their lock's data
//! level ([`data`](super::data)).
//!
//! [`Lock`]: super::Lock
//! [`RLock`]: super::RLock
//! [`ConditionLock`]: super::ConditionLock

use std::fmt;
use std::io;
use std::marker::PhantomData;

use super::error::{AcquireError, ReleaseError};
use super::raw::Got;
use crate::wait::Patience;

/// How a level of a lock is held, and so what may release it. Stored in a `Lock`'s `mode`
/// word (hence the explicit values).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Via {
    /// Through a guard (`lock`, `try_lock`, `lock_timeout`, a `Condition`'s guard): dropping
    /// the guard releases it.
    Guard = 0,
    /// Through Python's `acquire`: `release` releases it.
    Call = 1,
    /// Through the guard of a `Value` or `Array`, which hands out `&mut` to shared data:
    /// nothing but that guard may release it (not `release`, not a `Condition` wait), and the
    /// holder may not take a second such level (see [`data`](super::data)).
    Data = 2,
}

/// The raw operations of a lock-like handle (`lock_api`'s `RawMutex`): what [`Guard`],
/// [`RawAcquire::guarded`] and [`RawAcquire::acquire_call`] are written over.
pub(crate) trait RawAcquire {
    /// Takes the lock (one more level of a recursive one) as `patience` says, held `via`.
    /// A dead previous holder is `Ok(Got::OwnerDied)`, never an error.
    fn acquire_via(&self, patience: Patience, via: Via) -> Result<Got, AcquireError<()>>;

    /// Releases what one [`Guard`] of the calling thread holds (its drop: errors are
    /// ignored there, see [`Guard`]).
    fn unlock_guard(&self);

    /// Python's `release()`: releases a level taken with `acquire`.
    fn release_call(&self) -> Result<(), ReleaseError>;

    /// Acquires as `patience` says and wraps the [`Guard`] with `wrap`: the body of every
    /// `lock`, `try_lock` and `lock_timeout`.
    #[inline(always)]
    fn guarded<'a, G>(
        &'a self,
        patience: Patience,
        via: Via,
        wrap: impl FnOnce(Guard<'a, Self>) -> G,
    ) -> Result<G, AcquireError<G>>
    where
        Self: Sized,
    {
        match self.acquire_via(patience, via) {
            Ok(got) => got.wrap(wrap(Guard { lock: self, _not_send: PhantomData })),
            Err(e) => Err(retype(e)),
        }
    }

    /// Python's `acquire(block=True, timeout=None)`: `Ok(true)` once acquired, `Ok(false)` when
    /// `patience` ran out.
    #[inline]
    fn acquire_call(&self, patience: Patience) -> Result<bool, AcquireError<()>> {
        match self.acquire_via(patience, Via::Call) {
            Ok(got) => got.wrap(true).map_err(AcquireError::without_guard),
            Err(AcquireError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A held lock (or one level of it), released on drop: the inside of `LockGuard`,
/// `RLockGuard`, `ConditionGuard` and the `Value`/`Array` guards.
///
/// Not `Send`: the lock belongs to the thread that acquired it.
pub(crate) struct Guard<'a, L: RawAcquire> {
    lock: &'a L,
    _not_send: PhantomData<*const ()>,
}

impl<'a, L: RawAcquire> Guard<'a, L> {
    /// The lock this guard holds.
    #[inline]
    pub(crate) fn lock(&self) -> &'a L {
        self.lock
    }
}

impl<L: RawAcquire> Drop for Guard<'_, L> {
    #[inline]
    fn drop(&mut self) {
        // The guard proves the calling thread holds the lock. (The one exception: a
        // `Condition` wait whose re-acquire failed with an OS error, which a robust mutex we
        // always make consistent does not produce; the unlock then fails with EPERM and only
        // the `holder` hint is lost. No data is at stake: `Condition` refuses to wait on a
        // lock held by a `Value`/`Array` guard.)
        self.lock.unlock_guard();
    }
}

impl<L: RawAcquire> fmt::Debug for Guard<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

/// Retypes an acquire error whose `OwnerDied` arm cannot occur (the acquire paths report a
/// dead owner as `Ok(Got::OwnerDied)`, never as an error).
#[inline]
pub(crate) fn retype<G>(e: AcquireError<()>) -> AcquireError<G> {
    match e {
        AcquireError::Timeout => AcquireError::Timeout,
        AcquireError::WouldDeadlock => AcquireError::WouldDeadlock,
        AcquireError::Os(e) => AcquireError::Os(e),
        AcquireError::OwnerDied(()) => {
            AcquireError::Os(io::Error::other("internal error: owner-died without a guard"))
        }
    }
}
