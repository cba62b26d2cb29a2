//! [`Lock`]: a process-shared, robust, non-recursive lock — Python's `multiprocessing.Lock`.
//!
//! A [`RawLock`] whose bookkeeping is the holder's [`Via`] (the `mode` word), with the safe API
//! of [`api`](super::api).
//!
//! # Unsafe in this file
//!
//! One fenced spot: initialising the lock in place in its fresh segment ([`Lock::new`]).
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::sync::pthread::RobustMutex;
use multiproc_sys::time::Deadline;
use static_assertions::const_assert_eq;

use super::api::{Guard, RawAcquire, Via};
use super::error::{AcquireError, ReleaseError};
use super::raw::{Got, RawLock, acquire_error, held_by_caller, release_error};
use crate::shm::ShmBox;
use crate::wait::{Patience, Spin};

/// The bookkeeping of a [`Lock`] in its [`RawLock`].
///
/// | field | meaning | written by |
/// |---|---|---|
/// | `mode` | how the holder holds it ([`Via`] as `u32`) | the holder, while holding the mutex |
///
/// A hint, like `holder`: for `release`'s and `Condition`'s ownership checks.
#[repr(C)]
pub(crate) struct LockBook {
    mode: AtomicU32,
}

/// The shared state of a [`Lock`].
pub(crate) type LockState = RawLock<LockBook>;

const_assert_eq!(size_of::<LockState>(), size_of::<RobustMutex>() + 8);
const_assert_eq!(align_of::<LockState>(), align_of::<RobustMutex>());

/// A lock shared between processes — Python's `multiprocessing.Lock`.
///
/// Create it before starting the processes that use it; every clone of the handle, in this
/// process or in a child forked after it was created, is the same lock. Use the RAII guard of
/// [`lock`](Self::lock) (like `with lock:`), or Python's [`acquire`](Self::acquire) /
/// [`release`](Self::release) pair.
///
/// ```
/// use multiproc::{AcquireError, Lock, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = Lock::new()?;
/// let child = {
///     let lock = lock.clone();
///     Process::new(move || {
///         let _guard = lock.lock().expect("lock");
///         // ... only one process at a time runs here ...
///     })
/// };
/// child.start()?;
/// {
///     let _guard = match lock.lock() {
///         Ok(guard) => guard,
///         // A holder died mid-update: we hold the lock; check the shared data here.
///         Err(AcquireError::OwnerDied(guard)) => guard,
///         // The error holds a borrowing guard type: drop it to return it.
///         Err(e) => return Err(e.without_guard().into()),
///     };
///     // ... critical section ...
/// } // released here
/// child.join()?;
///
/// // Python style:
/// lock.acquire()?;
/// lock.release()?;
/// # Ok(())
/// # }
/// ```
///
/// A robust, process-shared pthread mutex in a shared segment. An uncontended lock and unlock
/// is one `pthread_mutex_trylock` and one `pthread_mutex_unlock` (no system call, no clock
/// read); a contended acquire spins briefly, then sleeps in the kernel. Timeouts run on
/// `CLOCK_MONOTONIC` (`pthread_mutex_clocklock` on glibc; musl has no such call, so there
/// each sleep is a `pthread_mutex_timedlock` on the wall clock, and a timeout is reported only
/// once the monotonic deadline has passed).
///
/// # When a process dies
///
/// If the holder dies, even by `SIGKILL`, the kernel releases the lock and the next acquirer
/// gets [`AcquireError::OwnerDied`] with the guard inside: it holds the lock, should check the
/// data the lock protects (the dead holder may have left it half-updated), and the lock then
/// keeps working normally. Nobody ever hangs on a dead holder. (Python's `Lock` stays locked
/// forever in that case.)
///
/// # Differences from Python
///
/// - **The lock has an owner.** Python's `Lock` is a semaphore that any process or thread may
///   release. Here only the thread that acquired it may release it: a release by another
///   thread or process is [`ReleaseError::NotOwner`]. That is the price of holder-death
///   detection (robust mutexes record their owner). For an ownerless lock, one process taking
///   and another releasing, use [`Semaphore::new(1)`](crate::Semaphore::new).
/// - Acquiring the lock again *without a timeout* from the thread that holds it
///   ([`lock`](Self::lock), [`acquire`](Self::acquire)) is
///   [`AcquireError::WouldDeadlock`] at once (Python hangs forever). A bounded acquire by the
///   holder behaves as Python's: nothing else can release the lock, so it waits out its
///   timeout and fails — [`acquire_timeout`](Self::acquire_timeout) returns `Ok(false)`,
///   [`try_lock`](Self::try_lock) and [`lock_timeout`](Self::lock_timeout) return
///   [`AcquireError::Timeout`] (a zero timeout at once).
/// - A lock held through a guard is released by dropping the guard: [`release`](Self::release)
///   refuses it ([`ReleaseError::NotOwner`]).
#[derive(Clone)]
pub struct Lock {
    state: ShmBox<LockState>,
}

/// The guard of a held [`Lock`]; dropping it releases the lock — the body of Python's
/// `with lock:`.
///
/// Not `Send`: the lock belongs to the thread that acquired it. If its thread or process dies
/// while holding it, the kernel releases the lock and the next acquirer is told
/// ([`AcquireError::OwnerDied`]).
///
/// ```
/// # use multiproc::Lock;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = Lock::new()?;
/// let guard = lock.lock().expect("lock"); // with lock:
/// assert!(lock.try_lock().is_err()); //         (held)
/// drop(guard); //                               end of the with block
/// assert!(lock.try_lock().is_ok());
/// # Ok(())
/// # }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    inner: Guard<'a, Lock>,
}

impl Lock {
    /// A new, unlocked lock in its own shared segment.
    ///
    /// # Errors
    /// Mapping the segment failed, or the kernel has no robust futexes (`ENOTSUP`).
    pub fn new() -> io::Result<Lock> {
        // SAFETY: `init` initialises the mutex in place in the fresh, zeroed, exclusively owned
        // segment (which never moves); `holder` and `mode` are atomics for which zero is valid
        // (free, `Via::Guard`). `LockState` is used only through shared references and process-
        // shared objects, and needs no `Drop`.
        let state = unsafe { ShmBox::new(0, |p: *mut LockState| RawLock::init(p))? };
        Ok(Lock { state })
    }

    #[inline]
    fn st(&self) -> &LockState {
        self.state.get()
    }

    /// Acquires the lock, waiting as long as it takes; the guard releases it.
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired (the guard is inside), but the previous holder
    ///   died holding it.
    /// - [`AcquireError::WouldDeadlock`]: the calling thread holds the lock already.
    /// - [`AcquireError::Os`]: an unexpected error from the mutex.
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.guarded(Patience::FOREVER, Via::Guard, |inner| LockGuard { inner })
    }

    /// Acquires the lock if it is free, without waiting.
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] if it is held: by another thread or process, or by the calling
    /// thread itself (as [`acquire_timeout(ZERO)`](Self::acquire_timeout) returns `Ok(false)`, and
    /// Python's `acquire(False)` `False`); otherwise as [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.guarded(Patience::Try, Via::Guard, |inner| LockGuard { inner })
    }

    /// Acquires the lock, waiting at most `timeout` (`Duration::ZERO`: one try).
    ///
    /// # Errors
    /// - [`AcquireError::Timeout`] once the timeout has really passed (never early). That
    ///   includes a lock the calling thread holds itself: nothing else can release it, so the
    ///   call sleeps out the timeout, as Python's `acquire(timeout=t)` does.
    /// - [`AcquireError::WouldDeadlock`]: a timeout too long to ever end (`Duration::MAX`), and
    ///   the calling thread holds the lock.
    /// - Otherwise as [`lock`](Self::lock).
    #[inline]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.guarded(Patience::from_timeout(Some(timeout)), Via::Guard, |inner| LockGuard { inner })
    }

    /// Python's `acquire()`: acquires the lock, waiting as long as needed. The caller must call
    /// [`release`](Self::release) later.
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired (release it as usual), but the previous holder
    ///   died holding it.
    /// - [`AcquireError::WouldDeadlock`]: the calling thread holds the lock already (Python
    ///   hangs forever).
    /// - [`AcquireError::Os`]: an unexpected error from the mutex.
    #[inline]
    pub fn acquire(&self) -> Result<(), AcquireError<()>> {
        self.acquire_call(Patience::FOREVER).map(drop)
    }

    /// Python's `acquire(timeout=t)`: `Ok(true)` once acquired, `Ok(false)` if the timeout
    /// passed first (`Duration::ZERO`: Python's `block=False`). The caller must call
    /// [`release`](Self::release) later.
    ///
    /// If the calling thread holds the lock already, this sleeps out the timeout and returns
    /// `Ok(false)` (`Duration::ZERO`: at once), as Python's does: nobody else can release the
    /// lock meanwhile.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); [`AcquireError::WouldDeadlock`] only for a timeout too
    /// long to ever end (`Duration::MAX`) while the calling thread holds the lock.
    #[inline]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, AcquireError<()>> {
        self.acquire_call(Patience::from_timeout(Some(timeout)))
    }

    /// Python's `release()`: releases a lock taken with [`acquire`](Self::acquire).
    ///
    /// # Errors
    /// - [`ReleaseError::NotHeld`]: nobody holds the lock (Python: "semaphore or lock released
    ///   too many times").
    /// - [`ReleaseError::NotOwner`]: another thread or process holds it, or the calling thread
    ///   holds it through a guard (drop the guard instead).
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_call()
    }

    /// Whether the calling thread holds the lock (in any mode).
    #[inline]
    pub(crate) fn held_by_current_thread(&self) -> bool {
        self.st().held_by_current_thread()
    }

    /// The holder's mode ([`Via`] as `u32`); meaningful only to the holder.
    #[inline]
    pub(crate) fn current_mode(&self) -> u32 {
        self.st().book.mode.load(Relaxed)
    }

    /// Acquires the lock and records the calling thread as holder, held `via`.
    #[inline(always)]
    fn acquire_mode(&self, patience: Patience, via: Via) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let first = st.try_lock();
        if let Ok(Some(got)) = first {
            st.book.mode.store(via as u32, Relaxed);
            return Ok(got);
        }
        self.acquire_slow(first, patience, via)
    }

    /// [`acquire_mode`](Self::acquire_mode) after a first attempt that did not succeed.
    #[cold]
    #[inline(never)]
    fn acquire_slow(
        &self,
        first: Result<Option<Got>, Errno>,
        patience: Patience,
        via: Via,
    ) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let got = match first {
            Ok(Some(got)) => Ok(got),
            Ok(None) if patience.is_try() => return Err(AcquireError::Timeout),
            // musl's trylock says busy for the caller's own lock; the blocking call says
            // EDEADLK.
            Ok(None) => st.lock_contended(patience.deadline(), Spin::LOCK),
            Err(e) => Err(e),
        };
        let got = match got {
            Ok(got) => got,
            // The calling thread holds the lock, and only it could release it.
            Err(Errno::DEADLK) => return Err(held_by_caller(patience)),
            Err(e) => return Err(acquire_error(e)),
        };
        st.book.mode.store(via as u32, Relaxed);
        Ok(got)
    }

    /// Clears the holder bookkeeping and unlocks. The caller holds the lock.
    #[inline]
    fn unlock_raw(&self) -> Result<(), Errno> {
        let st = self.st();
        // Published to the next holder by the unlock.
        st.book.mode.store(Via::Guard as u32, Relaxed);
        st.unlock()
    }

    /// For `Condition::wait`: releases the lock held by the calling thread and returns its
    /// mode, to be restored by [`relock_after_wait`](Self::relock_after_wait).
    pub(crate) fn unlock_for_wait(&self) -> Result<u32, Errno> {
        let how = self.current_mode();
        self.unlock_raw().map(|()| how)
    }

    /// For `Condition::wait`: takes the lock back (waiting as long as it takes) in mode `how`.
    pub(crate) fn relock_after_wait(&self, how: u32) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let got = match st.try_lock() {
            Ok(Some(got)) => Ok(got),
            Ok(None) => st.lock_contended(Deadline::FOREVER, Spin::RELOCK),
            Err(e) => Err(e),
        }
        .map_err(acquire_error)?;
        st.book.mode.store(how, Relaxed);
        Ok(got)
    }
}

impl RawAcquire for Lock {
    #[inline(always)]
    fn acquire_via(&self, patience: Patience, via: Via) -> Result<Got, AcquireError<()>> {
        self.acquire_mode(patience, via)
    }

    #[inline]
    fn unlock_guard(&self) {
        let _ = self.unlock_raw();
    }

    #[inline]
    fn release_call(&self) -> Result<(), ReleaseError> {
        self.st().check_holder()?;
        // Held by this thread, but through a guard: drop the guard instead.
        if self.current_mode() != Via::Call as u32 {
            return Err(ReleaseError::NotOwner);
        }
        self.unlock_raw().map_err(release_error)
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holder = self.st().holder();
        f.debug_struct("Lock").field("holder_tid", &(holder != 0).then_some(holder)).finish()
    }
}

impl LockGuard<'_> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock {
        self.inner.lock()
    }
}

impl Drop for LockGuard<'_> {
    // Releases the lock (its inner `Guard` does, right after this body). Kept as an explicit
    // impl so that the guard's public surface stays what it always was.
    #[inline]
    fn drop(&mut self) {}
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}
