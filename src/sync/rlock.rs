//! [`RLock`]: a process-shared, robust, recursive lock — Python's `multiprocessing.RLock`.
//!
//! A [`RawLock`] whose bookkeeping is the recursion depth, with the safe API of
//! [`api`](super::api).
//!
//! # Unsafe in this file
//!
//! One fenced spot: initialising the lock in place in its fresh segment ([`RLock::new`]).
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::sync::pthread::RobustMutex;
use static_assertions::const_assert_eq;

use super::api::{Guard, RawAcquire, Via};
use super::error::{AcquireError, ReleaseError};
use super::raw::{Got, RawLock, acquire_error, held_by_caller, release_error};
use crate::shm::ShmBox;
use crate::wait::{Patience, Spin};

/// The bookkeeping of an [`RLock`] in its [`RawLock`] (whose `holder` is the owner).
///
/// | field | meaning | written by |
/// |---|---|---|
/// | `levels` | the levels the owner holds, packed in one word (below) | the owner, while holding the mutex |
///
/// | bits of `levels` | meaning |
/// |---|---|
/// | 0..32 ([`COUNT`]) | recursion depth: acquires not yet matched by a release |
/// | 32..63 ([`GUARDS`]) | how many of those levels belong to live guards (a data guard included) |
/// | 63 ([`DATA`]) | set while a `Value`/`Array` guard (which hands out `&mut` to the data) holds a level |
///
/// One word, so that taking or releasing a level is one store (plus a load) on the lock's
/// contended cache line, as a [`Lock`](super::Lock)'s `mode` is.
///
/// The mutex alone decides who holds the lock; a recursive acquire is recognised by the mutex
/// itself refusing the owner (`EDEADLK`), so a stale `holder` word can never let a thread in.
/// `holder` serves [`RLock::release`]'s ownership check and `Condition`. An owner that dies
/// leaves `holder` and `levels` behind; the next acquirer gets `OwnerDied` and resets them.
///
/// [`DATA`] keeps a `Value`/`Array` sound under a recursive lock: the owner may nest levels
/// freely, but a second data level while one lives would be a second `&mut` to the data, so a
/// data acquire by the owner while it is set is refused as a non-recursive lock's would be
/// ([`held_by_caller`]).
#[repr(C)]
pub(crate) struct RLockBook {
    levels: AtomicU64,
}

/// The depth bits of `levels`.
const COUNT: u64 = 0xFFFF_FFFF;
/// One guard level in `levels`.
const GUARD: u64 = 1 << 32;
/// The guard-count bits of `levels`.
const GUARDS: u64 = 0x7FFF_FFFF << 32;
/// The data-level bit of `levels`.
const DATA: u64 = 1 << 63;

/// What one level taken `via` adds to `levels`.
#[inline(always)]
const fn level(via: Via) -> u64 {
    match via {
        Via::Call => 1,
        Via::Guard => 1 + GUARD,
        Via::Data => 1 + GUARD + DATA,
    }
}

/// `levels` less one level taken `via` (the depth is above 1; a guard count that is already 0
/// stays 0).
#[inline(always)]
const fn less(levels: u64, via: Via) -> u64 {
    let count = (levels & COUNT) - 1;
    let guards = match via {
        Via::Call => levels & GUARDS,
        Via::Guard | Via::Data if levels & GUARDS == 0 => 0,
        Via::Guard | Via::Data => (levels & GUARDS) - GUARD,
    };
    let data = if matches!(via, Via::Data) { 0 } else { levels & DATA };
    count | guards | data
}

/// The shared state of an [`RLock`].
pub(crate) type RLockState = RawLock<RLockBook>;

const_assert_eq!(size_of::<RLockState>(), (size_of::<RobustMutex>() + 4).next_multiple_of(8) + 8);
const_assert_eq!(align_of::<RLockState>(), max(align_of::<RobustMutex>(), 8));

/// `max` for the layout assertions.
const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

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
/// rlock.acquire()?;
/// rlock.acquire()?;
/// rlock.release()?;
/// rlock.release()?;
///
/// let child = {
///     let rlock = rlock.clone();
///     Process::new(move || rlock.acquire().expect("acquire"))
/// };
/// child.start()?;
/// child.join()?; // the child got it (and released it by exiting)
/// # Ok(())
/// # }
/// ```
///
/// It is the default lock of a [`Value`](crate::Value) or an [`Array`](crate::Array), as in
/// Python: the owner may use the data while holding it, but only through one guard of the data
/// at a time (see [`DataLock`](crate::DataLock)).
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
    inner: Guard<'a, RLock>,
}

/// What [`RLock::unlock_for_wait`] saved (the `levels` word), for
/// [`RLock::relock_after_wait`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct SavedLevels(u64);

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
        let state = unsafe { ShmBox::new(0, |p: *mut RLockState| RawLock::init(p))? };
        Ok(RLock { state })
    }

    #[inline]
    fn st(&self) -> &RLockState {
        self.state.get()
    }

    // `lock`, `try_lock`, `lock_timeout` and the `acquire` forms mirror `Lock`'s (Python's
    // API, documented per type); each is one call into the shared `sync::api` (`guarded`).

    /// Acquires one level, waiting as long as it takes; the guard releases that level.
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired (the guard is inside, depth 1), but the
    ///   previous owner died holding the lock.
    /// - [`AcquireError::Os`]: an unexpected error from the mutex, or a depth beyond
    ///   `u32::MAX` (`EAGAIN`).
    #[inline]
    pub fn lock(&self) -> Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.guarded(Patience::FOREVER, Via::Guard, |inner| RLockGuard { inner })
    }

    /// Acquires one level if the lock is free or already held by the calling thread, without
    /// waiting.
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] if another thread or process holds it; otherwise as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.guarded(Patience::Try, Via::Guard, |inner| RLockGuard { inner })
    }

    /// Acquires one level, waiting at most `timeout` (`Duration::ZERO`: one try).
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] once the timeout has really passed (never early); otherwise as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, AcquireError<RLockGuard<'_>>> {
        self.guarded(Patience::from_timeout(Some(timeout)), Via::Guard, |inner| RLockGuard {
            inner,
        })
    }

    /// Python's `acquire()`: takes one more level, waiting as long as needed. Each acquire
    /// needs one [`release`](Self::release).
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired at depth 1 (release it as usual), but the
    ///   previous owner died holding the lock.
    /// - [`AcquireError::Os`]: as for [`lock`](Self::lock).
    pub fn acquire(&self) -> Result<(), AcquireError<()>> {
        self.acquire_call(Patience::FOREVER).map(drop)
    }

    /// Python's `acquire(timeout=t)`: `Ok(true)` once one more level is held, `Ok(false)` if
    /// the timeout passed first (`Duration::ZERO`: Python's `block=False`).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, AcquireError<()>> {
        self.acquire_call(Patience::from_timeout(Some(timeout)))
    }

    /// Python's `release()`: releases one level taken with [`acquire`](Self::acquire); the
    /// last one frees the lock.
    ///
    /// # Errors
    /// - [`ReleaseError::NotHeld`]: nobody holds the lock.
    /// - [`ReleaseError::NotOwner`]: another thread or process holds it, or every level the
    ///   calling thread holds belongs to a guard (drop the guard instead).
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_call()
    }

    /// Whether the calling thread owns the lock.
    #[inline]
    pub(crate) fn held_by_current_thread(&self) -> bool {
        self.st().held_by_current_thread()
    }

    /// Takes the mutex, or finds that the caller holds it already (`Ok(None)`).
    #[inline]
    fn take_mutex(&self, patience: Patience) -> Result<Option<Got>, AcquireError<()>> {
        match self.st().try_lock() {
            Ok(Some(got)) => Ok(Some(got)),
            // The caller holds it (`RawLock::try_lock` says so on every libc).
            Err(Errno::DEADLK) => Ok(None),
            Ok(None) => self.lock_contended(patience),
            Err(e) => Err(acquire_error(e)),
        }
    }

    /// The mutex is busy (held by another thread: `RawLock::try_lock` reports the caller's own
    /// lock as `EDEADLK`): spin a little, then wait per `patience`. `Ok(None)` means the caller
    /// holds it after all (the timed lock says `EDEADLK`).
    #[cold]
    fn lock_contended(&self, patience: Patience) -> Result<Option<Got>, AcquireError<()>> {
        let st = self.st();
        let deadline = match patience {
            Patience::Try => return Err(AcquireError::Timeout),
            p => p.deadline(),
        };
        match st.lock_contended(deadline, Spin::LOCK) {
            Ok(got) => Ok(Some(got)),
            Err(Errno::DEADLK) => Ok(None),
            Err(e) => Err(acquire_error(e)),
        }
    }

    /// One more level for the owner, taken `via` (which the caller has checked is not a second
    /// data level).
    #[inline]
    fn recurse(&self, via: Via) -> Result<Got, AcquireError<()>> {
        let book = &self.st().book;
        let levels = book.levels.load(Relaxed);
        if levels & COUNT == COUNT || (via != Via::Call && levels & GUARDS == GUARDS) {
            return Err(AcquireError::Os(Errno::AGAIN.into()));
        }
        book.levels.store(levels + level(via), Relaxed);
        Ok(Got::Clean)
    }

    /// Bookkeeping right after the mutex was acquired (and repaired): depth 1, taken `via`.
    /// Whatever a dead owner left is overwritten.
    #[inline]
    fn took(&self, got: Got, via: Via) -> Got {
        self.st().book.levels.store(level(via), Relaxed);
        got
    }

    /// Whether a `Value`/`Array` guard holds a level (meaningful to the owner only).
    #[inline]
    pub(crate) fn held_for_data(&self) -> bool {
        self.st().book.levels.load(Relaxed) & DATA != 0
    }

    /// Releases the level of a `Value`/`Array` guard (its drop).
    #[inline]
    pub(crate) fn unlock_data(&self) {
        let _ = self.release_level(Via::Data);
    }

    /// Releases one level taken `via` by the caller; the last one unlocks the mutex.
    #[inline]
    fn release_level(&self, via: Via) -> Result<(), Errno> {
        let st = self.st();
        let levels = st.book.levels.load(Relaxed);
        if levels & COUNT > 1 {
            st.book.levels.store(less(levels, via), Relaxed);
            return Ok(());
        }
        // Published to the next owner by the unlock.
        st.book.levels.store(0, Relaxed);
        st.unlock()
    }

    /// For `Condition::wait`: releases every level the calling thread holds (which the caller
    /// has checked) and returns them, for [`relock_after_wait`](Self::relock_after_wait).
    pub(crate) fn unlock_for_wait(&self) -> Result<SavedLevels, Errno> {
        let book = &self.st().book;
        let saved = SavedLevels(book.levels.load(Relaxed));
        book.levels.store(level(Via::Call), Relaxed);
        self.release_level(Via::Call).map(|()| saved)
    }

    /// For `Condition::wait`: takes the lock back, waiting as long as it takes, and restores
    /// the depth that [`unlock_for_wait`](Self::unlock_for_wait) saved.
    pub(crate) fn relock_after_wait(&self, saved: SavedLevels) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let got = match st.try_lock() {
            Ok(Some(got)) => got,
            Ok(None) | Err(Errno::DEADLK) => match self.lock_contended(Patience::FOREVER)? {
                Some(got) => got,
                None => return Err(AcquireError::WouldDeadlock),
            },
            Err(e) => return Err(acquire_error(e)),
        };
        st.book.levels.store(saved.0, Relaxed);
        Ok(got)
    }
}

impl RawAcquire for RLock {
    #[inline]
    fn acquire_via(&self, patience: Patience, via: Via) -> Result<Got, AcquireError<()>> {
        match self.take_mutex(patience)? {
            Some(got) => Ok(self.took(got, via)),
            // A second data level would be a second `&mut` to the data.
            None if via == Via::Data && self.held_for_data() => Err(held_by_caller(patience)),
            None => self.recurse(via),
        }
    }

    #[inline]
    fn unlock_guard(&self) {
        // The guard proves the calling thread owns the lock (except after a `Condition` wait
        // whose re-acquire failed with an OS error, which robust mutexes we always make
        // consistent do not produce; then the unlock fails with EPERM).
        let _ = self.release_level(Via::Guard);
    }

    fn release_call(&self) -> Result<(), ReleaseError> {
        let st = self.st();
        st.check_holder()?;
        // Every level this thread holds belongs to a guard: drop the guard instead.
        let levels = st.book.levels.load(Relaxed);
        if levels & COUNT <= (levels & GUARDS) >> 32 {
            return Err(ReleaseError::NotOwner);
        }
        self.release_level(Via::Call).map_err(release_error)
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.st();
        let owner = st.holder();
        f.debug_struct("RLock")
            .field("owner_tid", &(owner != 0).then_some(owner))
            .field("count", &(st.book.levels.load(Relaxed) & COUNT))
            .finish()
    }
}

impl RLockGuard<'_> {
    /// The lock this guard holds a level of.
    pub fn lock(&self) -> &RLock {
        self.inner.lock()
    }
}

impl Drop for RLockGuard<'_> {
    // Releases the lock (its inner `Guard` does, right after this body). Kept as an explicit
    // impl so that the guard's public surface stays what it always was.
    #[inline]
    fn drop(&mut self) {}
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}
