//! [`RLock`]: a process-shared, robust, recursive lock — Python's `multiprocessing.RLock`.
//!
//! # Unsafe in this file
//!
//! One fenced spot: initialising the mutex in place in its fresh segment ([`RLock::new`]).
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::pthread::{LockOutcome, RobustMutex};
use multiproc_sys::time::Deadline;
use static_assertions::const_assert_eq;

use super::lock::{Got, Patience, current_tid, os, retype, spin_try_lock};
use super::{AcquireError, ReleaseError};
use crate::shm::ShmBox;

/// The shared state of an [`RLock`].
///
/// | field | meaning | written by |
/// |---|---|---|
/// | `mutex` | robust, process-shared, error-checking pthread mutex | libc |
/// | `owner` | kernel thread id of the owner, 0 when free | the owner, while holding `mutex` |
/// | `count` | recursion depth: acquires not yet matched by a release | the owner, while holding `mutex` |
/// | `guards` | how many of those levels belong to live guards | the owner, while holding `mutex` |
///
/// The mutex alone decides who holds the lock; a recursive acquire is recognised by the mutex
/// itself refusing the owner (`EDEADLK`), so a stale `owner` word can never let a thread in.
/// `owner` serves [`RLock::release`]'s ownership check and `Condition`. An owner that dies
/// leaves `owner` and `count` behind; the next acquirer gets `OwnerDied` and resets both.
#[repr(C)]
pub(crate) struct RLockState {
    mutex: RobustMutex,
    owner: AtomicU32,
    count: AtomicU32,
    guards: AtomicU32,
}

const_assert_eq!(
    size_of::<RLockState>(),
    (size_of::<libc::pthread_mutex_t>() + 12).next_multiple_of(align_of::<libc::pthread_mutex_t>())
);
const_assert_eq!(align_of::<RLockState>(), align_of::<libc::pthread_mutex_t>());

/// A recursive lock shared between processes — Python's `multiprocessing.RLock`.
///
/// The thread that holds it may acquire it again; it is released when every acquire has been
/// matched by a release (or its guard dropped). Other threads and processes wait meanwhile.
/// Create it before starting the processes that use it; every clone of the handle, here or in
/// a child forked after it was created, is the same lock.
///
/// ```
/// use multiproc::{AcquireError, Process, RLock};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rlock = RLock::new()?;
/// {
///     let _outer = rlock.lock().map_err(AcquireError::without_guard)?;
///     let _inner = rlock.lock().map_err(AcquireError::without_guard)?; // depth 2
/// }
///
/// // Python style: one release per acquire.
/// assert!(rlock.acquire(None)?);
/// assert!(rlock.acquire(None)?);
/// rlock.release()?;
/// rlock.release()?;
///
/// let child = {
///     let rlock = rlock.clone();
///     Process::new(move || rlock.acquire(None).expect("acquire"))
/// };
/// child.start()?;
/// assert!(child.join(None)?); // the child got it (and released it by exiting)
/// # Ok(())
/// # }
/// ```
///
/// A robust, process-shared pthread mutex plus the owner's thread id and the recursion depth,
/// in a shared segment. A recursive acquire or a release that does not free the lock costs no
/// system call.
///
/// # When a process dies
///
/// If the owner dies, at any depth and even by `SIGKILL`, the kernel releases the lock and
/// the next acquirer gets [`AcquireError::OwnerDied`] with its guard inside, at depth 1: it
/// holds the lock, should check the data it protects, and the lock then works normally.
/// Nobody ever hangs on a dead owner. A child forked while its parent held the lock does not
/// hold it.
///
/// # Differences from Python
///
/// - Release by a thread that is not the owner is [`ReleaseError::NotOwner`], and release of
///   a free lock [`ReleaseError::NotHeld`] (Python raises `AssertionError` for both).
/// - Levels taken through a guard are released by dropping the guard: [`release`](Self::release)
///   only releases levels taken with [`acquire`](Self::acquire).
#[derive(Clone)]
pub struct RLock {
    state: ShmBox<RLockState>,
}

/// The guard of one level of a held [`RLock`]; dropping it releases that level — the body of
/// Python's `with rlock:`.
///
/// Not `Send`: the lock belongs to the thread that acquired it. If its thread or process dies
/// while holding it, the kernel releases the lock and the next acquirer is told
/// ([`AcquireError::OwnerDied`]).
///
/// ```
/// # use multiproc::RLock;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rlock = RLock::new()?;
/// let outer = rlock.lock().expect("lock"); // with rlock:
/// let inner = rlock.lock().expect("lock"); //     with rlock:
/// drop(inner);
/// rlock.release().expect_err("guard levels are released by dropping the guards");
/// drop(outer);
/// # Ok(())
/// # }
/// ```
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

/// What [`RLock::unlock_for_wait`] saved, for [`RLock::relock_after_wait`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct SavedLevels {
    count: u32,
    guards: u32,
}

impl RLock {
    /// A new, unlocked recursive lock in its own shared segment.
    ///
    /// # Errors
    /// Mapping the segment failed, or the kernel has no robust futexes (`ENOTSUP`).
    pub fn new() -> io::Result<RLock> {
        // SAFETY: `init` initialises the mutex in place in the fresh, zeroed, exclusively owned
        // segment (which never moves); the other fields are atomics for which zero is valid
        // (no owner, depth 0). `RLockState` is used only through shared references and
        // process-shared objects, and needs no `Drop`.
        let state = unsafe {
            ShmBox::new(0, |p: *mut RLockState| {
                RobustMutex::init(&raw mut (*p).mutex).map_err(io::Error::from)
            })?
        };
        Ok(RLock { state })
    }

    #[inline]
    fn st(&self) -> &RLockState {
        self.state.get()
    }

    /// Acquires one level, waiting as long as it takes; the guard releases that level.
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired (the guard is inside, depth 1), but the
    ///   previous owner died holding the lock.
    /// - [`AcquireError::Os`]: an unexpected error from the mutex, or a depth beyond
    ///   `u32::MAX` (`EAGAIN`).
    #[inline]
    pub fn lock(&self) -> Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.lock_with(Patience::Until(Deadline::FOREVER))
    }

    /// Acquires one level if the lock is free or already held by the calling thread, without
    /// waiting.
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] if another thread or process holds it; otherwise as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.lock_with(Patience::Try)
    }

    /// Acquires one level, waiting at most `timeout` (`None`: forever; `Some(ZERO)`: one try).
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] once the timeout has really passed (never early); otherwise as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn lock_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.lock_with(Patience::from_timeout(timeout))
    }

    fn lock_with(
        &self,
        patience: Patience,
    ) -> Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        match self.acquire_level(patience) {
            Ok(got) => {
                let st = self.st();
                st.guards.store(st.guards.load(Relaxed) + 1, Relaxed);
                got.wrap(RLockGuard { lock: self, _not_send: PhantomData })
            }
            Err(e) => Err(retype(e)),
        }
    }

    /// Python's `acquire(block=True, timeout=None)`: `Ok(true)` once one more level is held,
    /// `Ok(false)` on a timeout (`None`: wait forever; `Some(ZERO)`: Python's `block=False`).
    /// Each successful acquire needs one [`release`](Self::release).
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired at depth 1 (release it as usual), but the
    ///   previous owner died holding the lock.
    /// - [`AcquireError::Os`]: as for [`lock`](Self::lock).
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool, AcquireError<()>> {
        match self.acquire_level(Patience::from_timeout(timeout)) {
            Ok(got) => got.wrap(true).map_err(|e| e.without_guard()),
            Err(AcquireError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Python's `release()`: releases one level taken with [`acquire`](Self::acquire); the
    /// last one frees the lock.
    ///
    /// # Errors
    /// - [`ReleaseError::NotHeld`]: nobody holds the lock.
    /// - [`ReleaseError::NotOwner`]: another thread or process holds it, or every level the
    ///   calling thread holds belongs to a guard (drop the guard instead).
    pub fn release(&self) -> Result<(), ReleaseError> {
        let st = self.st();
        let owner = st.owner.load(Relaxed);
        if owner != current_tid() {
            return Err(if owner == 0 { ReleaseError::NotHeld } else { ReleaseError::NotOwner });
        }
        let count = st.count.load(Relaxed);
        if count <= st.guards.load(Relaxed) {
            return Err(ReleaseError::NotOwner);
        }
        self.release_level().map_err(|e| match e {
            // A dead owner's stale thread id that this thread now happens to carry.
            Errno::PERM => ReleaseError::NotOwner,
            e => ReleaseError::Os(e.into()),
        })
    }

    /// Whether the calling thread owns the lock.
    #[inline]
    pub(crate) fn held_by_current_thread(&self) -> bool {
        self.st().owner.load(Relaxed) == current_tid()
    }

    /// Takes one more level: the mutex if the caller does not hold it, else depth + 1.
    fn acquire_level(&self, patience: Patience) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let outcome = match st.mutex.try_lock() {
            Ok(Some(outcome)) => outcome,
            // glibc: the caller holds it.
            Err(Errno::DEADLK) => return self.recurse(),
            Ok(None) => match self.lock_contended(patience)? {
                Some(outcome) => outcome,
                None => return self.recurse(),
            },
            Err(e) => return Err(os(e)),
        };
        self.took(outcome)
    }

    /// The mutex is busy: spin a little, then wait per `patience`. `Ok(None)` means the caller
    /// holds it already (musl's `trylock` says busy for its own lock; a timed lock says
    /// `EDEADLK`).
    #[cold]
    fn lock_contended(&self, patience: Patience) -> Result<Option<LockOutcome>, AcquireError<()>> {
        let st = self.st();
        let probably_mine = st.owner.load(Relaxed) == current_tid();
        let deadline = match patience {
            Patience::Until(deadline) => deadline,
            // One try: ask the blocking call only whether we are the owner (it checks that
            // before waiting).
            Patience::Try if probably_mine => Deadline::after(Some(Duration::ZERO)),
            Patience::Try => return Err(AcquireError::Timeout),
        };
        if !probably_mine {
            match spin_try_lock(&st.mutex, &st.owner) {
                Ok(Some(outcome)) => return Ok(Some(outcome)),
                Ok(None) => {}
                Err(Errno::DEADLK) => return Ok(None),
                Err(e) => return Err(os(e)),
            }
        }
        match st.mutex.lock(deadline) {
            Ok(outcome) => Ok(Some(outcome)),
            Err(Errno::DEADLK) => Ok(None),
            Err(Errno::TIMEDOUT) => Err(AcquireError::Timeout),
            Err(e) => Err(os(e)),
        }
    }

    /// One more level for the owner.
    fn recurse(&self) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let count = st.count.load(Relaxed);
        if count == u32::MAX {
            return Err(os(Errno::AGAIN));
        }
        st.count.store(count + 1, Relaxed);
        Ok(Got::Clean)
    }

    /// Bookkeeping right after the mutex was acquired: repair after a dead owner, depth 1.
    fn took(&self, outcome: LockOutcome) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let got = match outcome {
            LockOutcome::Acquired => Got::Clean,
            LockOutcome::OwnerDied => {
                if let Err(e) = st.mutex.consistent() {
                    // Cannot happen (we hold a mutex in the owner-died state).
                    let _ = st.mutex.unlock();
                    return Err(os(e));
                }
                Got::OwnerDied
            }
        };
        st.owner.store(current_tid(), Relaxed);
        st.count.store(1, Relaxed);
        st.guards.store(0, Relaxed);
        Ok(got)
    }

    /// Releases one level held by the caller; the last one unlocks the mutex.
    fn release_level(&self) -> Result<(), Errno> {
        let st = self.st();
        let count = st.count.load(Relaxed);
        if count > 1 {
            st.count.store(count - 1, Relaxed);
            return Ok(());
        }
        // Published to the next owner by the unlock.
        st.count.store(0, Relaxed);
        st.owner.store(0, Relaxed);
        st.mutex.unlock()
    }

    /// For `Condition::wait`: releases every level the calling thread holds (which the caller
    /// has checked) and returns them, for [`relock_after_wait`](Self::relock_after_wait).
    pub(crate) fn unlock_for_wait(&self) -> Result<SavedLevels, Errno> {
        let st = self.st();
        let saved = SavedLevels { count: st.count.load(Relaxed), guards: st.guards.load(Relaxed) };
        st.guards.store(0, Relaxed);
        st.count.store(1, Relaxed);
        self.release_level().map(|()| saved)
    }

    /// For `Condition::wait`: takes the lock back, waiting as long as it takes, and restores
    /// the depth that [`unlock_for_wait`](Self::unlock_for_wait) saved.
    pub(crate) fn relock_after_wait(&self, saved: SavedLevels) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let outcome = match st.mutex.try_lock() {
            Ok(Some(outcome)) => outcome,
            Ok(None) | Err(Errno::DEADLK) => {
                match self.lock_contended(Patience::Until(Deadline::FOREVER))? {
                    Some(outcome) => outcome,
                    None => return Err(AcquireError::WouldDeadlock),
                }
            }
            Err(e) => return Err(os(e)),
        };
        let got = self.took(outcome)?;
        st.count.store(saved.count, Relaxed);
        st.guards.store(saved.guards, Relaxed);
        Ok(got)
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.st();
        let owner = st.owner.load(Relaxed);
        f.debug_struct("RLock")
            .field("owner_tid", &(owner != 0).then_some(owner))
            .field("count", &st.count.load(Relaxed))
            .finish()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let st = self.lock.st();
        // The guard proves the calling thread owns the lock (except after a `Condition` wait
        // whose re-acquire failed with an OS error, which robust mutexes we always make
        // consistent do not produce; then the unlock fails with EPERM).
        st.guards.store(st.guards.load(Relaxed).saturating_sub(1), Relaxed);
        let _ = self.lock.release_level();
    }
}

impl RLockGuard<'_> {
    /// The lock this guard holds a level of.
    pub fn lock(&self) -> &RLock {
        self.lock
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}
