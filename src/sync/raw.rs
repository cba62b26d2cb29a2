//! [`RawLock`]: the one raw robust lock under [`Lock`](super::Lock), [`RLock`](super::RLock)
//! (and so `Condition`, `Value` and `Array`) — the "raw lock" half of the `lock_api` split
//! (STYLE.md §9): lock with a deadline, try, unlock, repair after a holder that died. The safe
//! half (guards, `lock`, `try_lock`, `lock_timeout`, Python's `acquire`/`release`) is written
//! once in [`api`](super::api).
//!
//! # Unsafe in this file
//!
//! One spot: initialising the mutex in place ([`RawLock::init`]), whose contract is
//! [`RobustMutex::init`]'s.
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::sync::pthread::{LockOutcome, RobustMutex};
use multiproc_sys::time::Deadline;

use super::error::{AcquireError, ReleaseError};
use super::tid::current_tid;
use crate::wait::{Patience, Spin, sleep_until};

/// What an acquire got: the lock, either cleanly or from a holder that died.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Got {
    Clean,
    OwnerDied,
}

impl Got {
    /// `Ok(value)` for a clean acquire, `Err(OwnerDied(value))` otherwise.
    #[inline]
    pub(crate) fn wrap<G>(self, value: G) -> Result<G, AcquireError<G>> {
        match self {
            Got::Clean => Ok(value),
            Got::OwnerDied => Err(AcquireError::OwnerDied(value)),
        }
    }
}

/// A robust lock in shared memory, plus the bookkeeping `B` of the lock kind built on it.
///
/// | field | meaning | written by |
/// |---|---|---|
/// | `mutex` | robust, process-shared, error-checking pthread mutex | libc |
/// | `holder` | kernel thread id of the holder, 0 when free | the holder, while holding `mutex` |
/// | `book` | the lock kind's own words (a `Lock`'s mode, an `RLock`'s depth) | the holder, while holding `mutex` |
///
/// `holder` is a hint, for error reports, `Condition`'s ownership check and the spinner's
/// "is it me?"; the mutex alone decides who holds the lock. A holder that dies leaves its
/// thread id in `holder` until the next acquirer overwrites it.
///
/// Every acquire path makes a mutex whose holder died consistent before anything else, so the
/// mutex never becomes unrecoverable and the quiet `trylock`
/// ([`RobustMutex::try_lock_quiet`]) is safe to use.
#[repr(C)]
pub(crate) struct RawLock<B> {
    mutex: RobustMutex,
    holder: AtomicU32,
    /// The lock kind's bookkeeping (atomics, valid when zeroed).
    pub(crate) book: B,
}

impl<B> RawLock<B> {
    /// Initialises the mutex in place; `holder` and `book` keep their (zeroed) bytes.
    ///
    /// # Errors
    /// As [`RobustMutex::init`] (no robust futexes: `ENOTSUP`).
    ///
    /// # Safety
    /// As [`RobustMutex::init`], for the `RawLock` at `this`; its other fields are zeroed
    /// memory, which must be a valid `B`.
    pub(crate) unsafe fn init(this: *mut RawLock<B>) -> io::Result<()> {
        // SAFETY: the caller's promise covers the mutex field (in bounds of `*this`, aligned as
        // a field of a `repr(C)` struct).
        unsafe { RobustMutex::init(&raw mut (*this).mutex) }.map_err(io::Error::from)
    }

    /// The holder's thread id, 0 when free (a hint: see the type docs).
    #[inline]
    pub(crate) fn holder(&self) -> u32 {
        self.holder.load(Relaxed)
    }

    /// Whether the calling thread holds the lock (per the `holder` hint).
    #[inline]
    pub(crate) fn held_by_current_thread(&self) -> bool {
        self.holder() == current_tid()
    }

    /// For a `release`: `Ok` if the `holder` hint names the calling thread, else why not:
    /// [`ReleaseError::NotHeld`] (free) or [`ReleaseError::NotOwner`] (another holder).
    #[inline]
    pub(crate) fn check_holder(&self) -> Result<(), ReleaseError> {
        let holder = self.holder();
        if holder == current_tid() {
            Ok(())
        } else if holder == 0 {
            Err(ReleaseError::NotHeld)
        } else {
            Err(ReleaseError::NotOwner)
        }
    }

    /// One attempt, which leaves no trace when the lock is busy. `Ok(None)`: busy.
    ///
    /// # Errors
    /// [`Errno::DEADLK`] when the calling thread holds the lock (on every libc: see
    /// [`busy_or_own`](Self::busy_or_own)); otherwise as [`RobustMutex::try_lock_quiet`], or
    /// the errno of a failed repair.
    #[inline(always)]
    pub(crate) fn try_lock(&self) -> Result<Option<Got>, Errno> {
        match self.mutex.try_lock_quiet() {
            Ok(Some(LockOutcome::Acquired)) => {
                // The common case, as `took` does it.
                self.holder.store(current_tid(), Relaxed);
                Ok(Some(Got::Clean))
            }
            Ok(Some(outcome)) => self.took(outcome).map(Some),
            Ok(None) => self.busy_or_own(),
            Err(e) => Err(e),
        }
    }

    /// [`try_lock`](Self::try_lock) found the mutex busy: is it ours? glibc's trylock reports
    /// the caller's own lock as `EDEADLK`, musl's as busy. When the `holder` hint names the
    /// calling thread (a hint: a dead holder's thread id may have been reused), one timed lock
    /// with an expired deadline decides: libc checks ownership before waiting (`EDEADLK`), and
    /// otherwise it is one more attempt (taken, or `ETIMEDOUT`: busy).
    #[cold]
    fn busy_or_own(&self) -> Result<Option<Got>, Errno> {
        if !self.held_by_current_thread() {
            return Ok(None);
        }
        match self.mutex.lock(Deadline::after(Some(Duration::ZERO))) {
            Ok(outcome) => self.took(outcome).map(Some),
            Err(Errno::TIMEDOUT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The contended path: spin as `spin` says (unless the `holder` hint names the calling
    /// thread), then sleep in the kernel until `deadline`.
    ///
    /// # Errors
    /// [`Errno::TIMEDOUT`] once the deadline has passed; [`Errno::DEADLK`] when the calling
    /// thread holds the lock; otherwise as [`RobustMutex::lock`], or the errno of a failed
    /// repair.
    #[cold]
    pub(crate) fn lock_contended(&self, deadline: Deadline, spin: Spin) -> Result<Got, Errno> {
        // musl's trylock reports our own lock as busy; the blocking call below then says
        // EDEADLK, so do not spin for nothing.
        if !self.held_by_current_thread() {
            let patience = Patience::Until(deadline);
            let spun = spin.run(patience, || {
                if self.mutex.looks_locked().unwrap_or_else(|| self.holder() != 0) {
                    return None;
                }
                self.mutex.try_lock_quiet().transpose()
            });
            if let Some(first) = spun {
                return self.took(first?);
            }
        }
        self.took(self.mutex.lock(deadline)?)
    }

    /// Bookkeeping right after the mutex was acquired: repair after a dead holder, record the
    /// holder.
    #[inline]
    fn took(&self, outcome: LockOutcome) -> Result<Got, Errno> {
        let got = made_consistent(&self.mutex, outcome)?;
        self.holder.store(current_tid(), Relaxed);
        Ok(got)
    }

    /// Clears the `holder` hint and unlocks. The caller holds the lock (the mutex refuses
    /// otherwise: [`Errno::PERM`]).
    #[inline]
    pub(crate) fn unlock(&self) -> Result<(), Errno> {
        // Published to the next holder by the unlock (as the caller's `book` stores are).
        self.holder.store(0, Relaxed);
        self.mutex.unlock()
    }
}

/// Locks `mutex` until `deadline`, for robust mutexes with bookkeeping of their own (such as
/// `Barrier`'s). After a holder that died ([`Got::OwnerDied`]) the mutex is held but not yet
/// consistent: the caller repairs what it protects, then calls [`finish_repair`]. In that
/// order, a caller that dies half-way through the repair leaves the mutex owner-dead, and the
/// next one repairs again (so the repair must be idempotent).
///
/// # Errors
/// As [`RobustMutex::lock`] ([`Errno::TIMEDOUT`] once the deadline has passed).
pub(crate) fn lock_for_repair(mutex: &RobustMutex, deadline: Deadline) -> Result<Got, Errno> {
    Ok(match mutex.lock(deadline)? {
        LockOutcome::Acquired => Got::Clean,
        LockOutcome::OwnerDied => Got::OwnerDied,
    })
}

/// Marks a mutex that [`lock_for_repair`] found owner-dead consistent, once the caller has
/// repaired what it protects.
///
/// # Errors
/// The errno of `pthread_mutex_consistent` (the mutex is then unlocked, not held).
#[cold]
pub(crate) fn finish_repair(mutex: &RobustMutex) -> Result<(), Errno> {
    repair(mutex).map(|_| ())
}

/// The repair step of every acquire of a robust mutex, right after it: after a dead holder,
/// `pthread_mutex_consistent`.
#[inline]
fn made_consistent(mutex: &RobustMutex, outcome: LockOutcome) -> Result<Got, Errno> {
    match outcome {
        LockOutcome::Acquired => Ok(Got::Clean),
        LockOutcome::OwnerDied => repair(mutex),
    }
}

/// Marks the mutex of a dead holder consistent.
#[cold]
fn repair(mutex: &RobustMutex) -> Result<Got, Errno> {
    if let Err(e) = mutex.consistent() {
        // Cannot happen (we hold a mutex in the owner-died state). Do not keep a lock the
        // caller will not know it holds.
        let _ = mutex.unlock();
        return Err(e);
    }
    Ok(Got::OwnerDied)
}

/// The outcome of an acquire that finds the calling thread already holding the lock, where no
/// other thread or process can release it: a [`Lock`](super::Lock), or the data level of a
/// `Value`/`Array`'s lock. As in Python, a bounded acquire waits out its timeout and fails
/// ([`AcquireError::Timeout`], which Python-style `acquire` returns as `Ok(false)`;
/// [`Patience::Try`] fails at once); an acquire without a limit would never return, and is
/// [`AcquireError::WouldDeadlock`] at once (Python hangs forever).
#[cold]
pub(crate) fn held_by_caller(patience: Patience) -> AcquireError<()> {
    if patience.is_try() {
        return AcquireError::Timeout;
    }
    let deadline = patience.deadline();
    if deadline.is_forever() {
        return AcquireError::WouldDeadlock;
    }
    // Nothing can release the lock before then: only this thread could.
    sleep_until(deadline);
    AcquireError::Timeout
}

/// Maps a raw lock error to the acquire error type: [`Errno::TIMEDOUT`] is
/// [`AcquireError::Timeout`], [`Errno::DEADLK`] [`AcquireError::WouldDeadlock`].
#[cold]
pub(crate) fn acquire_error(e: Errno) -> AcquireError<()> {
    match e {
        Errno::TIMEDOUT => AcquireError::Timeout,
        Errno::DEADLK => AcquireError::WouldDeadlock,
        e => AcquireError::Os(e.into()),
    }
}

/// Maps the error of a failed unlock in a `release` to the release error type.
#[cold]
pub(crate) fn release_error(e: Errno) -> ReleaseError {
    match e {
        // A dead holder's stale thread id that this thread now happens to carry.
        Errno::PERM => ReleaseError::NotOwner,
        e => ReleaseError::Os(e.into()),
    }
}
