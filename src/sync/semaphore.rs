//! [`Semaphore`] and [`BoundedSemaphore`] — Python's `multiprocessing.Semaphore` and
//! `multiprocessing.BoundedSemaphore`, on a shared futex.
//!
//! # The algorithm
//!
//! Not a POSIX `sem_t`: a bounded release must check the bound and increment in one atomic
//! step (CPython checks `sem_getvalue` and then posts, which two releasers can both pass), so
//! the counter is ours. The shared state is three 32-bit words:
//!
//! | word      | meaning | who changes it |
//! |-----------|---------|----------------|
//! | `count`   | the semaphore's value; also the futex word sleepers wait on while it is `0` | `acquire` decrements it with a CAS only when it is above `0`; `release` increments it with a CAS only when it is below the bound |
//! | `waiters` | how many acquirers are registered as (about to be) asleep | each sleeper adds `1` before its last check and subtracts `1` when it leaves |
//! | `max`     | the bound of a [`BoundedSemaphore`]; `u32::MAX` for a [`Semaphore`] | written once, by the constructor |
//!
//! `acquire` first tries a CAS decrement, then spins briefly, then registers in `waiters`,
//! re-checks `count` and sleeps with `futex_wait(count, 0, deadline)`. `release` increments and
//! makes the wake-up system call only when `waiters` is non-zero, so an uncontended
//! acquire/release pair is two atomic operations and no system call.
//!
//! **Orderings.** A successful decrement is `Acquire` and an increment is (at least)
//! `Release`: whatever a process wrote before `release` is visible to the process whose
//! `acquire` took that permit. The sleeper's "add to `waiters`, then load `count`" and the
//! releaser's "increment `count`, then load `waiters`" are all `SeqCst`: in the single total
//! order one of the two loads sees the other side's write, so either the releaser sees the
//! waiter and wakes it, or the waiter sees the new value and does not sleep (and if it loaded
//! `0` just before the increment, the kernel's own compare in `futex_wait` refuses to sleep).
//!
//! # Shared memory is untrusted
//!
//! The words are re-read and validated on every use: a `BoundedSemaphore` whose value is
//! above its `max`, or a `Semaphore` whose `max` is not the "unbounded" marker, makes
//! `release` fail with an [`io::ErrorKind::InvalidData`] error; no value read from the segment
//! can cause a panic or undefined behaviour.
#![allow(unsafe_code)] // Only `ShmBox::new`, whose initialiser writes the three words.

use std::fmt;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::sync::futex::{futex_wait, futex_wake_one};
use multiproc_sys::time::Deadline;
use static_assertions::{assert_eq_align, assert_eq_size, assert_impl_all};

use super::error::{AcquireError, ReleaseError};
use crate::shm::ShmBox;
use crate::wait::{Patience, Spin};

/// `max` of a semaphore without a bound.
const UNBOUNDED: u32 = u32::MAX;

/// The state in the shared segment (see the [module docs](self)).
#[repr(C)]
struct SemState {
    /// The value, and the futex word.
    count: AtomicU32,
    /// Registered sleepers.
    waiters: AtomicU32,
    /// The bound ([`UNBOUNDED`] for a plain semaphore). Atomic only so that a buggy peer
    /// writing it is not a data race; it never changes.
    max: AtomicU32,
}

assert_eq_size!(SemState, [u32; 3]);
assert_eq_align!(SemState, u32);

/// The algorithm shared by both types; `bounded` says which one it is (the shared `max` is
/// checked against it, never trusted to decide).
#[derive(Clone)]
struct SemCore {
    shm: ShmBox<SemState>,
    bounded: bool,
}

impl SemCore {
    fn new(value: u32, max: u32, bounded: bool) -> io::Result<SemCore> {
        // SAFETY: the initialiser writes all three fields of the (zeroed, aligned, exclusively
        // owned) memory, so it holds a valid `SemState` afterwards; `SemState` is atomics only,
        // needs no `Drop` and is used only through shared references.
        let shm = unsafe {
            ShmBox::new(0, |p: *mut SemState| {
                ptr::write(
                    p,
                    SemState {
                        count: AtomicU32::new(value),
                        waiters: AtomicU32::new(0),
                        max: AtomicU32::new(max),
                    },
                );
                Ok(())
            })?
        };
        Ok(SemCore { shm, bounded })
    }

    #[inline]
    fn state(&self) -> &SemState {
        self.shm.get()
    }

    /// Takes a permit if there is one, without waiting.
    #[inline]
    fn try_take(&self) -> bool {
        let count = &self.state().count;
        let mut c = count.load(Ordering::Relaxed);
        while c > 0 {
            // Acquire on success: pairs with the releaser's increment, so its writes are ours.
            match count.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    fn acquire(&self, deadline: Deadline) -> io::Result<bool> {
        if self.try_take() {
            return Ok(true);
        }
        if deadline.has_expired() {
            // A zero timeout: we tried once.
            return Ok(false);
        }
        // Re-read `count` a while before sleeping: long enough to cover a short critical
        // section on another CPU, short enough not to matter when it does not.
        let taken = Spin::WAKE.run(Patience::Until(deadline), || {
            (self.state().count.load(Ordering::Relaxed) > 0 && self.try_take()).then_some(())
        });
        if taken.is_some() {
            return Ok(true);
        }
        self.acquire_slow(deadline)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Deadline) -> io::Result<bool> {
        let s = self.state();
        // SeqCst: see "Orderings" in the module docs (pairs with `release`'s load of `waiters`).
        s.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if s.count.load(Ordering::SeqCst) > 0 {
                if self.try_take() {
                    break Ok(true);
                }
                continue;
            }
            match futex_wait(&s.count, 0, deadline) {
                Ok(()) => continue,
                // The deadline really passed (the sys layer re-checks it); one last try, so a
                // permit released at the very end is not left behind.
                Err(Errno::TIMEDOUT) => break Ok(self.try_take()),
                Err(e) => break Err(io::Error::from(e)),
            }
        };
        // Wrapping on a garbled counter is harmless (at worst extra or missing wake-up calls).
        s.waiters.fetch_sub(1, Ordering::Relaxed);
        result
    }

    fn release(&self) -> Result<(), ReleaseError> {
        let s = self.state();
        let max = s.max.load(Ordering::Relaxed);
        if !self.bounded && max != UNBOUNDED {
            return Err(corrupt("a Semaphore's maximum is not the unbounded marker"));
        }
        let mut c = s.count.load(Ordering::Relaxed);
        loop {
            if self.bounded && c > max {
                return Err(corrupt("the semaphore's value is above its maximum"));
            }
            if c >= max {
                return Err(if self.bounded {
                    ReleaseError::TooManyReleases
                } else {
                    ReleaseError::Os(io::Error::from(Errno::OVERFLOW))
                });
            }
            // SeqCst: publishes the caller's writes (Release) and orders the increment before
            // the load of `waiters` below (see "Orderings").
            match s.count.compare_exchange_weak(c, c + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if s.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_one(&s.count).map_err(|e| ReleaseError::Os(e.into()))?;
        }
        Ok(())
    }

    #[inline]
    fn value(&self) -> u32 {
        self.state().count.load(Ordering::SeqCst)
    }
}

/// The error for a segment whose words do not make sense.
fn corrupt(what: &str) -> ReleaseError {
    ReleaseError::Os(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt semaphore: {what}"),
    ))
}

/// Turns a timeout into the acquire result (shared by both types).
fn guard_timeout(
    core: &SemCore,
    timeout: Duration,
) -> Result<SemaphoreGuard<'_>, AcquireError<SemaphoreGuard<'_>>> {
    match core.acquire(Deadline::after(Some(timeout))) {
        Ok(true) => Ok(SemaphoreGuard { core }),
        Ok(false) => Err(AcquireError::Timeout),
        Err(e) => Err(AcquireError::Os(e)),
    }
}

/// A counter of permits shared between processes — Python's `multiprocessing.Semaphore`.
///
/// [`acquire`](Self::acquire) takes a permit, waiting while there is none;
/// [`release`](Self::release) gives one back (or a new one: the value may go above its initial
/// value, without limit, as in Python). [`guard`](Self::guard) and
/// [`guard_timeout`](Self::guard_timeout) return a [`SemaphoreGuard`] that releases on drop,
/// the Rust form of Python's `with sem:`.
///
/// Create it before starting the processes that use it; clones and the copies that forked
/// children inherit all refer to the same semaphore.
///
/// ```
/// use multiproc::{Process, Semaphore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Python: sem = multiprocessing.Semaphore(2)
/// let sem = Semaphore::new(2)?;
/// let workers: Vec<Process> = (0..4)
///     .map(|_| {
///         let sem = sem.clone();
///         Process::new(move || {
///             // Python: with sem: ...
///             let _permit = sem.guard().expect("acquire");
///             // At most two processes are here at any time.
///         })
///     })
///     .collect();
/// for w in &workers {
///     w.start()?;
/// }
/// for w in &workers {
///     w.join()?;
/// }
/// assert_eq!(sem.get_value(), 2);
/// # Ok(())
/// # }
/// ```
///
/// # Differences from Python
///
/// - The value is a `u32`, so Python's `Semaphore(-1)` error (`OSError(EINVAL)`) cannot
///   happen: a negative value does not type-check.
/// - [`get_value`](Self::get_value) is exact and works everywhere (Python raises
///   `NotImplementedError` on macOS).
/// - Timeouts are measured on `CLOCK_MONOTONIC` (Python uses the wall clock), and a signal
///   never cuts a wait short: `EINTR` is retried with the time that is left.
/// - Releasing at the value `u32::MAX` fails with `EOVERFLOW` (Python: at `SEM_VALUE_MAX`,
///   `OverflowError`).
///
/// # When a process dies
///
/// - A process killed while **waiting** in `acquire` does no harm: the kernel removes it from
///   the wait queue, and it only leaves its registration in the waiter count behind, which
///   costs one unnecessary wake-up system call per later `release` (not a lost wake-up).
/// - A process killed while **holding** a permit loses that permit for good: a semaphore has no
///   owner (any process may release what another acquired, as in Python), so nobody can tell
///   that the permit should come back. If you need the resource back when its holder dies, use
///   a [`Lock`](crate::Lock), whose robust mutex reports the dead owner to the next acquirer.
#[derive(Clone)]
pub struct Semaphore {
    core: SemCore,
}

assert_impl_all!(Semaphore: Send, Sync, Clone);

impl Semaphore {
    /// A semaphore with `value` permits — Python's `Semaphore(value)` (use `1` for Python's
    /// default).
    ///
    /// # Errors
    ///
    /// Mapping the shared segment failed (`ENOMEM`, or a limit on mappings).
    pub fn new(value: u32) -> io::Result<Semaphore> {
        Ok(Semaphore { core: SemCore::new(value, UNBOUNDED, false)? })
    }

    /// Takes a permit, waiting as long as needed for one — Python's `acquire()`.
    ///
    /// # Errors
    ///
    /// An unexpected error from the futex system call (none is known to be possible).
    pub fn acquire(&self) -> io::Result<()> {
        self.core.acquire(Deadline::FOREVER).map(drop)
    }

    /// Takes a permit, waiting at most `timeout` for one — Python's `acquire(timeout=...)`.
    ///
    /// Returns `Ok(true)` with the permit taken, `Ok(false)` if the timeout passed first.
    /// `Duration::ZERO` tries once without waiting (Python's `acquire(False)` and every
    /// negative timeout). A timeout is reported only once the monotonic clock has passed the
    /// deadline, never early.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> io::Result<bool> {
        self.core.acquire(Deadline::after(Some(timeout)))
    }

    /// Takes a permit, waiting at most `timeout`, and returns a guard that gives it back when
    /// dropped.
    ///
    /// # Errors
    ///
    /// - [`AcquireError::Timeout`]: no permit became free in time.
    /// - [`AcquireError::Os`]: as for [`acquire`](Self::acquire).
    ///
    /// A semaphore has no owner, so `OwnerDied` and `WouldDeadlock` never occur.
    pub fn guard_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SemaphoreGuard<'_>, AcquireError<SemaphoreGuard<'_>>> {
        guard_timeout(&self.core, timeout)
    }

    /// Takes a permit, waiting as long as it takes, and returns a guard that gives it back when
    /// dropped — Python's `with sem:`.
    ///
    /// # Errors
    ///
    /// As for [`acquire`](Self::acquire).
    pub fn guard(&self) -> io::Result<SemaphoreGuard<'_>> {
        self.core.acquire(Deadline::FOREVER).map(|_| SemaphoreGuard { core: &self.core })
    }

    /// Gives a permit back, waking one waiter if any — Python's `release()`.
    ///
    /// Any process may release, whether or not it acquired; the value may go above the initial
    /// value (a `Semaphore::new(2)` released twice reads `4`).
    ///
    /// # Errors
    ///
    /// - [`ReleaseError::Os`] with `EOVERFLOW`: the value is already `u32::MAX`.
    /// - [`ReleaseError::Os`] with [`io::ErrorKind::InvalidData`]: the shared state was
    ///   overwritten (by a buggy peer).
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.core.release()
    }

    /// The current value (the number of free permits) — Python's `get_value()`.
    ///
    /// Exact at the moment of the read; other processes may change it right after.
    pub fn get_value(&self) -> u32 {
        self.core.value()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.get_value()).finish()
    }
}

/// A [`Semaphore`] whose value may never go above its initial value — Python's
/// `multiprocessing.BoundedSemaphore`.
///
/// A release that would exceed the bound fails with [`ReleaseError::TooManyReleases`] and leaves
/// the value unchanged. The check and the increment are one atomic step, so two processes
/// releasing at once cannot both pass it (CPython's check is racy, and on macOS absent).
///
/// ```
/// use multiproc::BoundedSemaphore;
/// use multiproc::sync::ReleaseError;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Python: sem = multiprocessing.BoundedSemaphore(1)
/// let sem = BoundedSemaphore::new(1)?;
/// sem.acquire()?;
/// sem.release()?;
/// // Python raises ValueError("semaphore or lock released too many times").
/// assert!(matches!(sem.release(), Err(ReleaseError::TooManyReleases)));
/// assert_eq!(sem.get_value(), 1);
/// # Ok(())
/// # }
/// ```
///
/// # When a process dies
///
/// As for [`Semaphore`]: a dead waiter is harmless, a dead holder's permit is lost (no owner is
/// tracked). Use a [`Lock`](crate::Lock) if the resource must come back when its holder dies.
#[derive(Clone)]
pub struct BoundedSemaphore {
    core: SemCore,
}

assert_impl_all!(BoundedSemaphore: Send, Sync, Clone);

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, which is also its maximum — Python's
    /// `BoundedSemaphore(value)`.
    ///
    /// # Errors
    ///
    /// Mapping the shared segment failed.
    pub fn new(value: u32) -> io::Result<BoundedSemaphore> {
        Ok(BoundedSemaphore { core: SemCore::new(value, value, true)? })
    }

    // The same facade as `Semaphore`'s (Python's two classes share their methods), each method
    // one call into the shared `SemCore`; only `new`, `release`'s bound and `max_value` differ.

    /// Takes a permit, waiting as long as needed; see [`Semaphore::acquire`].
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::acquire`].
    pub fn acquire(&self) -> io::Result<()> {
        self.core.acquire(Deadline::FOREVER).map(drop)
    }

    /// Takes a permit, waiting at most `timeout`; see [`Semaphore::acquire_timeout`].
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> io::Result<bool> {
        self.core.acquire(Deadline::after(Some(timeout)))
    }

    /// Takes a permit, waiting at most `timeout`, as a guard; see [`Semaphore::guard_timeout`].
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::guard_timeout`].
    pub fn guard_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SemaphoreGuard<'_>, AcquireError<SemaphoreGuard<'_>>> {
        guard_timeout(&self.core, timeout)
    }

    /// Takes a permit, waiting as long as it takes, as a guard; see [`Semaphore::guard`].
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::acquire`].
    pub fn guard(&self) -> io::Result<SemaphoreGuard<'_>> {
        self.core.acquire(Deadline::FOREVER).map(|_| SemaphoreGuard { core: &self.core })
    }

    /// Gives a permit back, waking one waiter if any — Python's `release()`.
    ///
    /// # Errors
    ///
    /// - [`ReleaseError::TooManyReleases`]: the value is already at its maximum; it is
    ///   unchanged.
    /// - [`ReleaseError::Os`] with [`io::ErrorKind::InvalidData`]: the shared state was
    ///   overwritten (by a buggy peer) and the value is above the maximum.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.core.release()
    }

    /// The current value — Python's `get_value()`; see [`Semaphore::get_value`].
    pub fn get_value(&self) -> u32 {
        self.core.value()
    }

    /// The maximum (the initial value) — Python shows it as `maxvalue` in the repr.
    pub fn max_value(&self) -> u32 {
        self.core.state().max.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.get_value())
            .field("max_value", &self.max_value())
            .finish()
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; dropping it releases the permit — the
/// body of Python's `with sem:`.
///
/// Returned by `guard` and `guard_timeout`. A release error on drop (possible only if other
/// code over-released a [`BoundedSemaphore`], or the state was garbled) is ignored: use
/// [`release`](Self::release) to see it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{AcquireError, Semaphore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sem = Semaphore::new(2)?;
/// {
///     let _permit = sem.guard()?; // Python: with sem:
///     assert_eq!(sem.get_value(), 1);
/// }
/// assert_eq!(sem.get_value(), 2);
///
/// let a = sem.guard_timeout(Duration::ZERO).map_err(AcquireError::without_guard)?;
/// let b = sem.guard_timeout(Duration::ZERO).map_err(AcquireError::without_guard)?;
/// // No permit left: Python's acquire(timeout=0) returns False.
/// assert!(matches!(sem.guard_timeout(Duration::ZERO), Err(AcquireError::Timeout)));
/// a.release()?; // reports a release error, where dropping would ignore it
/// drop(b);
/// assert_eq!(sem.get_value(), 2);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the guard releases the permit at once"]
pub struct SemaphoreGuard<'a> {
    core: &'a SemCore,
}

impl SemaphoreGuard<'_> {
    /// Releases the permit now and reports the result (dropping the guard ignores it).
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::release`] / [`BoundedSemaphore::release`].
    pub fn release(self) -> Result<(), ReleaseError> {
        let core = self.core;
        std::mem::forget(self);
        core.release()
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.core.release();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").field("value", &self.core.value()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbled_segment_is_an_error_not_a_panic() {
        let b = BoundedSemaphore::new(2).unwrap();
        // A buggy peer writes a value above the bound.
        b.core.state().count.store(7, Ordering::Relaxed);
        match b.release() {
            Err(ReleaseError::Os(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            other => panic!("expected InvalidData, got {other:?}"),
        }
        assert_eq!(b.get_value(), 7, "get_value always works");
        assert!(b.acquire_timeout(Duration::ZERO).unwrap());

        let s = Semaphore::new(1).unwrap();
        s.core.state().max.store(3, Ordering::Relaxed);
        match s.release() {
            Err(ReleaseError::Os(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            other => panic!("expected InvalidData, got {other:?}"),
        }
        assert_eq!(s.get_value(), 1);
        // A garbled waiter count only costs wake-up calls.
        s.core.state().waiters.store(u32::MAX, Ordering::Relaxed);
        s.core.state().max.store(UNBOUNDED, Ordering::Relaxed);
        s.release().unwrap();
        assert_eq!(s.get_value(), 2);
    }
}
