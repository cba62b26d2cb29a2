//! [`Condition`]: a process-shared condition variable — Python's `multiprocessing.Condition`.
//!
//! # Algorithm
//!
//! A futex sequence counter, after Rust std's futex condvar
//! (`library/std/src/sys/sync/condvar/futex.rs`), made process-shared (the futex is *not*
//! private), with a brief spin before sleeping and a sleeper count, so that a notify whose
//! waiters are all still spinning (or that has no waiters) makes no system call.
//!
//! | word | meaning | changed by |
//! |---|---|---|
//! | `seq` | bumped by every notify; the word waiters spin on, then sleep on | notifiers, holding the lock |
//! | `sleepers` | waits that are (about to be) asleep in the kernel on `seq` | waiters |
//!
//! - `wait`: with the lock held, read `seq`; release the lock; spin briefly ([`Spin::WAKE`]
//!   polls of `seq`); then increment `sleepers`, sleep while `seq` is unchanged (until the
//!   deadline), and decrement `sleepers`; take the lock back.
//! - `notify(n)`: with the lock held, bump `seq`, and if `sleepers` is not 0 wake up to `n`
//!   sleepers.
//!
//! The two words are on separate cache lines, and a waiter that is woken while still spinning
//! writes neither: in a ping-pong between two processes only `seq` travels, not a counter of
//! waiters that each side would update on its way in and out.
//!
//! Reading `seq` before releasing the lock, and notifying only while holding it, means a
//! notify that comes after a waiter released the lock always changes the value that waiter
//! spins or sleeps on: no wake-up is lost. The sleeper's "increment `sleepers`, then let the
//! kernel compare `seq`" and the notifier's "bump `seq`, then load `sleepers`" are `SeqCst`
//! read-modify-writes and loads (and the kernel orders its compare after a full barrier): either
//! the notifier sees the sleeper and wakes it, or the kernel sees the new `seq` and does not
//! let the sleeper sleep. Nothing here waits for a waiter to acknowledge anything, so a waiter
//! that dies (even by `SIGKILL`) can never block a notifier; at most it leaves `sleepers` one
//! too high, which costs later notifies a (harmless) wake system call.
//!
//! This is deliberately not a process-shared `pthread_cond_t`: with glibc's condvar, a waiter
//! killed inside `pthread_cond_wait` can make later signals and broadcasts block (its group
//! switch waits for every waiter of the old group to confirm).
//!
//! Apart from that pair, `Relaxed` orderings on `seq` are enough: it is read and written only
//! while holding the lock (whose acquire/release orders them), except by the spinning or
//! woken waiter, whose reads only decide whether to return or to sleep again.

#![allow(unsafe_code)] // Only `ShmBox::new`, whose initialiser leaves the zeroed words.

use std::fmt;
use std::io;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::sync::futex::{futex_wait, futex_wake};
use multiproc_sys::time::Deadline;
use static_assertions::const_assert_eq;

use super::api::{Guard, RawAcquire, Via};
use super::error::{AcquireError, ReleaseError};
use super::lock::Lock;
use super::raw::Got;
use super::rlock::RLock;
use crate::shm::ShmBox;
use crate::wait::{Patience, Spin};

/// The shared state of a [`Condition`] (see the module docs for the protocol).
///
/// `seq`, which spinning waiters poll, has a cache line of its own (the segment starts on a
/// page boundary), away from `sleepers`.
#[repr(C)]
struct ConditionState {
    seq: AtomicU32,
    _pad: [u32; 15],
    sleepers: AtomicU32,
}

const_assert_eq!(size_of::<ConditionState>(), 68);
const_assert_eq!(align_of::<ConditionState>(), 4);

/// The lock under a [`Condition`]: a [`Lock`] or an [`RLock`] — the `lock` argument of
/// Python's `Condition(lock)`, which accepts either.
///
/// ```
/// use multiproc::{Condition, ConditionLock, Lock};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = Lock::new()?;
/// let cond = Condition::with_lock(lock.clone())?; // Condition(lock)
/// assert!(matches!(cond.get_lock(), ConditionLock::Lock(_)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub enum ConditionLock {
    /// A non-recursive [`Lock`].
    Lock(Lock),
    /// A recursive [`RLock`] (the default, as in Python).
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(lock: Lock) -> Self {
        ConditionLock::Lock(lock)
    }
}

impl From<RLock> for ConditionLock {
    fn from(lock: RLock) -> Self {
        ConditionLock::RLock(lock)
    }
}

impl ConditionLock {
    fn held_by_current_thread(&self) -> bool {
        match self {
            ConditionLock::Lock(l) => l.held_by_current_thread(),
            ConditionLock::RLock(l) => l.held_by_current_thread(),
        }
    }
}

impl RawAcquire for ConditionLock {
    #[inline]
    fn acquire_via(&self, patience: Patience, via: Via) -> Result<Got, AcquireError<()>> {
        match self {
            ConditionLock::Lock(l) => l.acquire_via(patience, via),
            ConditionLock::RLock(l) => l.acquire_via(patience, via),
        }
    }

    #[inline]
    fn unlock_guard(&self) {
        match self {
            ConditionLock::Lock(l) => l.unlock_guard(),
            ConditionLock::RLock(l) => l.unlock_guard(),
        }
    }

    fn release_call(&self) -> Result<(), ReleaseError> {
        match self {
            ConditionLock::Lock(l) => l.release_call(),
            ConditionLock::RLock(l) => l.release_call(),
        }
    }
}

/// Why [`Condition::wait`] or [`Condition::wait_for`] failed.
///
/// Python raises `AssertionError` for a wait without the lock, and has no way to report a
/// holder that died; here `wait` returns a `WaitError`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{AcquireError, Condition, Lock, Value, WaitError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cond = Condition::new()?;
/// // Python: AssertionError('must acquire() condition before using wait()')
/// match cond.wait_timeout(Duration::from_millis(1)) {
///     Err(WaitError::NotOwner) => {}
///     other => panic!("unexpected {other:?}"),
/// }
///
/// // A lock shared with a `Value` cannot be released under the `Value`'s guard.
/// let lock = Lock::new()?;
/// let value = Value::with_lock(0u32, lock.clone())?;
/// let cond = Condition::with_lock(lock)?;
/// let guard = value.lock().map_err(AcquireError::without_guard)?;
/// assert!(matches!(cond.wait_timeout(Duration::ZERO), Err(WaitError::LockedForData)));
/// drop(guard);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum WaitError {
    /// The calling thread does not hold the condition's lock (Python: "must acquire()
    /// condition before using wait()"). Nothing happened.
    NotOwner,
    /// The lock is held through the guard of a `Value` or `Array` (which hands out `&mut` to
    /// the shared data, so the lock may not be released under it). Nothing happened. Hold the
    /// lock through the condition ([`Condition::lock`]) instead.
    LockedForData,
    /// The wait ended and the lock was taken back, but a process or thread that held it in the
    /// meantime died holding it: the protected data may be half-updated. The caller holds the
    /// lock again, as after a normal return (count it as a wake-up).
    OwnerDied,
    /// An operating-system error. If it came from taking the lock back, the caller no longer
    /// holds it.
    Os(io::Error),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::NotOwner => f.write_str("must acquire() condition before using wait()"),
            WaitError::LockedForData => {
                f.write_str("cannot wait while the lock is held by a Value or Array guard")
            }
            WaitError::OwnerDied => f.write_str(
                "the lock was taken back, but a holder died holding it while this thread waited",
            ),
            WaitError::Os(e) => write!(f, "condition wait failed: {e}"),
        }
    }
}

impl std::error::Error for WaitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WaitError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Condition::notify`] or [`Condition::notify_all`] failed.
///
/// Python raises `AssertionError('lock is not owned')`; here `notify` returns a
/// `NotifyError`.
///
/// # Examples
///
/// ```
/// use multiproc::{AcquireError, Condition, NotifyError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cond = Condition::new()?;
/// match cond.notify(1) {
///     Err(NotifyError::NotOwner) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// let _guard = cond.lock().map_err(AcquireError::without_guard)?;
/// cond.notify_all()?; // with the lock held: fine, even with nobody waiting
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum NotifyError {
    /// The calling thread does not hold the condition's lock (Python: "lock is not owned").
    /// Nobody was woken.
    NotOwner,
    /// An operating-system error from the wake-up.
    Os(io::Error),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::NotOwner => f.write_str("lock is not owned"),
            NotifyError::Os(e) => write!(f, "condition notify failed: {e}"),
        }
    }
}

impl std::error::Error for NotifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotifyError::Os(e) => Some(e),
            NotifyError::NotOwner => None,
        }
    }
}

/// A condition variable shared between processes — Python's `multiprocessing.Condition`.
///
/// Waiters hold the condition's lock, check their condition and call [`wait`](Self::wait),
/// which releases the lock while sleeping and takes it back before returning; a process that
/// changes the state notifies them while holding the lock. The lock is a new [`RLock`] by
/// default, or the [`Lock`]/[`RLock`] given to [`with_lock`](Self::with_lock). Create the
/// condition before starting the processes that use it; clones of the handle, here or in a
/// forked child, are the same condition.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{AcquireError, Condition, Process, RawValue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cond = Condition::new()?;
/// let ready = RawValue::new(0u32)?;
///
/// let waiter = {
///     let (cond, ready) = (cond.clone(), ready.clone());
///     Process::new(move || {
///         let _guard = cond.lock().expect("lock");
///         // Python: cond.wait_for(lambda: ready.value == 1)
///         cond.wait_for(|| ready.load() == 1).expect("wait")
///     })
/// };
/// waiter.start()?;
///
/// {
///     let _guard = cond.lock().map_err(AcquireError::without_guard)?;
///     ready.store(1);
///     cond.notify_all()?;
/// }
/// waiter.join()?;
///
/// // A wait that nobody notifies times out (and is never early).
/// let _guard = cond.lock().map_err(AcquireError::without_guard)?;
/// assert!(!cond.wait_timeout(Duration::from_millis(10))?);
/// # Ok(())
/// # }
/// ```
///
/// # When a process dies
///
/// A waiter that dies inside [`wait`](Self::wait), even by `SIGKILL`, never blocks anyone:
/// notifiers do not wait for waiters, and other waiters keep waiting and waking as before. A
/// process that dies holding the lock releases it (the lock is robust), and the next process
/// to take it (an acquirer, or a waiter taking it back) is told: [`AcquireError::OwnerDied`]
/// or [`WaitError::OwnerDied`]. Every timed wait honours its timeout (only taking the lock back
/// afterwards may wait, for a live holder, as in Python).
///
/// # Differences from Python
///
/// - Spurious wake-ups: besides the waiters `notify(n)` wakes, a waiter that had released the
///   lock but not yet gone to sleep when the notify came (a wait spins for a few microseconds
///   before it sleeps) also returns `true`. Python allows spurious wake-ups too; loop, or use
///   [`wait_for`](Self::wait_for).
/// - Misuse (`wait` or `notify` without holding the lock) is an error value, not an
///   `AssertionError`.
/// - A condition on a lock that a [`Value`](crate::Value) shares refuses to wait while the
///   lock is held through the `Value`'s guard ([`WaitError::LockedForData`]).
#[derive(Clone)]
pub struct Condition {
    state: ShmBox<ConditionState>,
    lock: ConditionLock,
}

/// The guard of a [`Condition`]'s lock; dropping it releases the lock (one level of an
/// [`RLock`]) — the body of Python's `with cond:`.
///
/// [`Condition::wait`] may be called while it is alive: the wait releases the lock and takes
/// it back before returning, so the guard still holds it afterwards. If its thread or process
/// dies while holding it, the kernel releases the lock and the next acquirer is told.
///
/// ```
/// # use std::time::Duration;
/// # use multiproc::Condition;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cond = Condition::new()?;
/// let guard = cond.lock().expect("lock"); // with cond:
/// cond.wait_timeout(Duration::from_millis(1))?; //  cond.wait(0.001)
/// drop(guard);
/// # Ok(())
/// # }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    inner: Guard<'a, ConditionLock>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Prints `Lock(LockGuard { .. })` or `RLock(RLockGuard { .. })`.
        struct Inner<'a>(&'a ConditionLock);
        impl fmt::Debug for Inner<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                struct Named(&'static str);
                impl fmt::Debug for Named {
                    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.debug_struct(self.0).finish_non_exhaustive()
                    }
                }
                let (kind, guard) = match self.0 {
                    ConditionLock::Lock(_) => ("Lock", "LockGuard"),
                    ConditionLock::RLock(_) => ("RLock", "RLockGuard"),
                };
                f.debug_tuple(kind).field(&Named(guard)).finish()
            }
        }
        f.debug_struct("ConditionGuard").field("_inner", &Inner(self.inner.lock())).finish()
    }
}

impl Condition {
    /// A new condition with a new [`RLock`] (Python's default).
    ///
    /// # Errors
    /// Mapping a shared segment failed, or the kernel has no robust futexes.
    pub fn new() -> io::Result<Condition> {
        Condition::with_lock(RLock::new()?)
    }

    /// A new condition using `lock` (a [`Lock`] or an [`RLock`]), which other code may hold
    /// too: Python's `Condition(lock)`.
    ///
    /// # Errors
    /// Mapping the shared segment failed.
    pub fn with_lock(lock: impl Into<ConditionLock>) -> io::Result<Condition> {
        // SAFETY: `ConditionState` is two atomics and padding, valid when zeroed (sequence 0,
        // no sleepers),
        // used only through shared references, with no `Drop`.
        let state = unsafe { ShmBox::new(0, |_: *mut ConditionState| Ok(()))? };
        Ok(Condition { state, lock: lock.into() })
    }

    /// The condition's lock.
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Acquires the lock, waiting as long as it takes (Python's `with cond:`).
    ///
    /// # Errors
    /// As [`Lock::lock`] or [`RLock::lock`].
    pub fn lock(&self) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        self.lock.guarded(Patience::FOREVER, Via::Guard, |inner| ConditionGuard { inner })
    }

    /// Acquires the lock if it is free (or, for an [`RLock`], held by the calling thread),
    /// without waiting.
    ///
    /// # Errors
    /// As [`Lock::try_lock`] or [`RLock::try_lock`].
    pub fn try_lock(&self) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        self.lock.guarded(Patience::Try, Via::Guard, |inner| ConditionGuard { inner })
    }

    /// Acquires the lock, waiting at most `timeout` (`Duration::ZERO`: one try).
    ///
    /// # Errors
    /// As [`Lock::lock_timeout`] or [`RLock::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ConditionGuard<'_>, AcquireError<ConditionGuard<'_>>> {
        let patience = Patience::from_timeout(Some(timeout));
        self.lock.guarded(patience, Via::Guard, |inner| ConditionGuard { inner })
    }

    /// Python's `acquire()` on the lock, waiting as long as needed. With a [`Lock`] the
    /// calling thread holds already, this is [`AcquireError::WouldDeadlock`] (Python hangs).
    ///
    /// # Errors
    /// As [`Lock::acquire`] or [`RLock::acquire`].
    pub fn acquire(&self) -> Result<(), AcquireError<()>> {
        self.lock.acquire_call(Patience::FOREVER).map(drop)
    }

    /// Python's `acquire(timeout=t)` on the lock: `Ok(false)` if the timeout passed first.
    /// With a [`Lock`] the calling thread holds already, it waits out its timeout and returns
    /// `Ok(false)` (`Duration::ZERO`: at once), as Python's does.
    ///
    /// # Errors
    /// As [`Lock::acquire_timeout`] or [`RLock::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, AcquireError<()>> {
        self.lock.acquire_call(Patience::from_timeout(Some(timeout)))
    }

    /// Python's `release()` on the lock.
    ///
    /// # Errors
    /// As [`Lock::release`] or [`RLock::release`].
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.lock.release_call()
    }

    /// Python's `wait()`: releases the lock (fully, for an [`RLock`] at any depth), sleeps
    /// until notified, and takes the lock back (at the same depth) before returning.
    ///
    /// A wake-up may be spurious (see the type's docs), so check the condition in a loop or
    /// use [`wait_for`](Self::wait_for).
    ///
    /// # Errors
    /// - [`WaitError::NotOwner`]: the calling thread does not hold the lock.
    /// - [`WaitError::LockedForData`]: the lock is held through a `Value`/`Array` guard.
    /// - [`WaitError::OwnerDied`]: woken, lock taken back, but a holder died meanwhile.
    /// - [`WaitError::Os`]: an unexpected system error.
    pub fn wait(&self) -> Result<(), WaitError> {
        self.wait_until(Patience::FOREVER).map(drop)
    }

    /// Python's `wait(timeout)`: as [`wait`](Self::wait), sleeping at most `timeout`.
    ///
    /// Returns `Ok(false)` if the timeout passed (never early), `Ok(true)` otherwise: notified,
    /// or woken spuriously. `Duration::ZERO` releases the lock, takes it back and returns
    /// `false` unless a notify came in between.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, WaitError> {
        self.wait_until(Patience::lazy(Some(timeout)))
    }

    /// Python's `wait_for(predicate)`: checks `predicate` first, then waits and re-checks until
    /// it returns `true`.
    ///
    /// The lock must be held; `predicate` runs with it held.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_for(&self, predicate: impl FnMut() -> bool) -> Result<(), WaitError> {
        self.wait_for_until(predicate, Deadline::FOREVER).map(drop)
    }

    /// Python's `wait_for(predicate, timeout)`: as [`wait_for`](Self::wait_for), until
    /// `timeout` (which covers the whole call) has passed. Returns the predicate's last value:
    /// `false` only after a timeout.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_for_timeout(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, WaitError> {
        self.wait_for_until(predicate, Deadline::after(Some(timeout)))
    }

    fn wait_for_until(
        &self,
        mut predicate: impl FnMut() -> bool,
        deadline: Deadline,
    ) -> Result<bool, WaitError> {
        if !self.lock.held_by_current_thread() {
            return Err(WaitError::NotOwner);
        }
        let mut result = predicate();
        while !result {
            if deadline.has_expired() {
                break;
            }
            self.wait_until(Patience::Until(deadline))?;
            result = predicate();
        }
        Ok(result)
    }

    fn wait_until(&self, patience: Patience) -> Result<bool, WaitError> {
        let st = self.state.get();
        // Release the lock, after reading the sequence.
        let saved = match &self.lock {
            ConditionLock::Lock(l) => {
                if !l.held_by_current_thread() {
                    return Err(WaitError::NotOwner);
                }
                if l.current_mode() == Via::Data as u32 {
                    return Err(WaitError::LockedForData);
                }
                let seq = st.seq.load(Relaxed);
                match l.unlock_for_wait() {
                    Ok(how) => (seq, Saved::Lock(how)),
                    Err(e) => return Err(unlock_failed(e)),
                }
            }
            ConditionLock::RLock(l) => {
                if !l.held_by_current_thread() {
                    return Err(WaitError::NotOwner);
                }
                if l.held_for_data() {
                    return Err(WaitError::LockedForData);
                }
                let seq = st.seq.load(Relaxed);
                match l.unlock_for_wait() {
                    Ok(levels) => (seq, Saved::RLock(levels)),
                    Err(e) => return Err(unlock_failed(e)),
                }
            }
        };
        let (seq, saved) = saved;

        // No spinning for a zero timeout (Python's `wait(0)` just looks).
        let spun = !patience.is_try()
            && Spin::WAKE.run(patience, || (st.seq.load(Relaxed) != seq).then_some(())).is_some();
        let woken = if spun {
            Ok(true)
        } else {
            let deadline = patience.deadline();
            // SeqCst: pairs with the notifier's bump of `seq` and load of `sleepers`.
            st.sleepers.fetch_add(1, SeqCst);
            let woken = loop {
                match futex_wait(&st.seq, seq, deadline) {
                    // Woken, or the value had changed already, or a spurious wake-up: only a
                    // changed sequence counts.
                    Ok(()) if st.seq.load(Relaxed) != seq => break Ok(true),
                    Ok(()) => continue,
                    Err(Errno::TIMEDOUT) => break Ok(st.seq.load(Relaxed) != seq),
                    Err(e) => break Err(e),
                }
            };
            st.sleepers.fetch_sub(1, Relaxed);
            woken
        };

        let relocked = match (&self.lock, saved) {
            (ConditionLock::Lock(l), Saved::Lock(how)) => l.relock_after_wait(how),
            (ConditionLock::RLock(l), Saved::RLock(levels)) => l.relock_after_wait(levels),
            _ => unreachable!("the saved state matches the lock kind"),
        };
        match relocked {
            Ok(Got::Clean) => woken.map_err(|e| WaitError::Os(e.into())),
            Ok(Got::OwnerDied) => Err(WaitError::OwnerDied),
            Err(e) => Err(WaitError::Os(match e {
                AcquireError::Os(e) => e,
                other => io::Error::other(other.to_string()),
            })),
        }
    }

    /// Wakes up to `n` of the processes and threads waiting on the condition (a no-op if
    /// nobody waits, or for `n == 0`). Never blocks.
    ///
    /// # Errors
    /// - [`NotifyError::NotOwner`]: the calling thread does not hold the lock.
    /// - [`NotifyError::Os`]: an unexpected system error.
    pub fn notify(&self, n: usize) -> Result<(), NotifyError> {
        if !self.lock.held_by_current_thread() {
            return Err(NotifyError::NotOwner);
        }
        let st = self.state.get();
        if n == 0 {
            return Ok(());
        }
        // SeqCst, and the load below: pairs with a sleeper's increment of `sleepers` (module docs).
        st.seq.fetch_add(1, SeqCst);
        if st.sleepers.load(SeqCst) == 0 {
            // Nobody waits, or every waiter is still spinning and will see the new sequence.
            return Ok(());
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        futex_wake(&st.seq, n).map(drop).map_err(|e| NotifyError::Os(e.into()))
    }

    /// Wakes every process and thread waiting on the condition. Never blocks.
    ///
    /// # Errors
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self) -> Result<(), NotifyError> {
        self.notify(usize::MAX)
    }
}

/// The error of a wait whose lock release failed (nothing else happened).
fn unlock_failed(e: Errno) -> WaitError {
    match e {
        // The `owner` word named this thread but the mutex did not: a dead holder's stale
        // thread id.
        Errno::PERM => WaitError::NotOwner,
        e => WaitError::Os(e.into()),
    }
}

/// What a wait saved of the lock's state, to restore it.
enum Saved {
    Lock(u32),
    RLock(super::rlock::SavedLevels),
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("sleepers", &self.state.get().sleepers.load(Relaxed))
            .finish()
    }
}
