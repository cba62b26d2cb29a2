//! [`Condvar`]: a process-shared `pthread_cond_t` on `CLOCK_MONOTONIC`, used with a
//! [`RobustMutex`].
//!
//! # Invariants this file relies on
//!
//! As for [`RobustMutex`]: a `Condvar` has no constructor, is reached only through a pointer to
//! memory that [`Condvar::init`] initialised in place, and never moves afterwards, so every safe
//! method hands libc a live, initialised `pthread_cond_t`. Waiting is safe because the mutex is
//! robust and error-checking: libc refuses (`EPERM`) a wait by a thread that does not hold it.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomPinned;
use core::mem::MaybeUninit;

use static_assertions::{assert_eq_align, assert_eq_size, assert_impl_all, assert_not_impl_any};

use super::attr::CondAttr;
use super::mutex::{LockOutcome, RobustMutex};
use crate::cvt::cvt_nz;
use crate::errno::{Errno, Result};
use crate::time::{Deadline, to_libc};

/// A process-shared pthread condition variable whose timed waits run on `CLOCK_MONOTONIC`.
///
/// Set up with [`init`](Self::init) in place (in a `MAP_SHARED` segment), then used through
/// `&Condvar` from every process that maps the segment, always together with a
/// [`RobustMutex`] that protects the predicate being waited for.
///
/// # Only for processes that do not die while waiting
///
/// glibc's condition variable (the algorithm of glibc 2.25 and later) keeps per-waiter counts
/// inside the `pthread_cond_t` that a waiter undoes only when it leaves
/// `pthread_cond_wait`. A waiter that is killed inside the wait never undoes them, and then:
///
/// - a later [`notify_one`](Self::notify_one) or [`notify_all`](Self::notify_all) can block
///   **forever**: once the dead waiter's group of waiters is the one being signalled, the next
///   notification that must switch groups waits for the dead waiter's reference to go away. The
///   blocked notifier also holds the condvar's internal lock, so every later notification blocks
///   too, and live waiters are never woken. Observed on this crate's test machine (glibc 2.36,
///   Debian 12): a waiter SIGKILLed in `pthread_cond_wait`, one `pthread_cond_broadcast`, a new
///   waiter, then `pthread_cond_broadcast` or `pthread_cond_signal` never returns (see the
///   ignored test `glibc_notify_hangs_after_a_waiter_was_killed` in `tests/pthread_condvar.rs`).
/// - [`destroy`](Self::destroy) blocks forever: `pthread_cond_destroy` waits for every waiter
///   to acknowledge its wake-up.
///
/// Nothing in the POSIX API can repair this. That is why `multiproc`'s `Condition`, which must
/// survive a waiter being killed, is built on a futex sequence counter instead, and this wrapper
/// is for cooperating processes that do not die in the middle of a wait. The mutex side stays
/// robust: a *holder* of the mutex that dies is reported by [`wait`](Self::wait) as
/// [`LockOutcome::OwnerDied`].
///
/// # Not async-signal-safe
///
/// No `pthread_cond_*` function is on the POSIX async-signal-safe list; see the
/// [module docs](super) for what that means after `fork`.
///
/// # References
/// - [POSIX `pthread_cond_wait`]
/// - [POSIX `pthread_condattr_setclock`]
/// - [Linux `pthread_cond_init(3)`]
/// - [Linux `pthread_cond_wait(3p)`]
///
/// [POSIX `pthread_cond_wait`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_cond_wait.html
/// [POSIX `pthread_condattr_setclock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_condattr_setclock.html
/// [Linux `pthread_cond_init(3)`]: https://man7.org/linux/man-pages/man3/pthread_cond_init.3.html
/// [Linux `pthread_cond_wait(3p)`]: https://man7.org/linux/man-pages/man3/pthread_cond_wait.3p.html
#[repr(C)]
pub struct Condvar {
    inner: UnsafeCell<libc::pthread_cond_t>,
    _pin: PhantomPinned,
}

assert_eq_size!(Condvar, libc::pthread_cond_t);
assert_eq_align!(Condvar, libc::pthread_cond_t);
assert_impl_all!(Condvar: Sync, Send);
assert_not_impl_any!(Condvar: Unpin, Clone, Copy);

// SAFETY: a pthread condition variable is designed to be operated on concurrently, through a
// pointer, by many threads (and, being PTHREAD_PROCESS_SHARED, many processes); libc
// synchronises every access to its bytes. The `UnsafeCell` only hands libc a `*mut` from `&self`.
unsafe impl Sync for Condvar {}
// SAFETY: nothing in the condvar is tied to the thread that initialised it.
unsafe impl Send for Condvar {}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

impl Condvar {
    /// `pthread_cond_init(this, {pshared, CLOCK_MONOTONIC})` — initialises a condition variable
    /// in place.
    ///
    /// Every attribute call is checked; the attribute object is destroyed on every path.
    ///
    /// # Errors
    /// - [`Errno::NOMEM`], [`Errno::AGAIN`], [`Errno::INVAL`]: as `pthread_cond_init`.
    ///
    /// # Safety
    /// - `this` is valid for writes of a `Condvar` and suitably aligned.
    /// - The caller has exclusive access to `*this` for the duration of the call: no other
    ///   thread or process touches it until `init` has returned `Ok`.
    /// - The memory stays mapped, at the same place, for as long as any thread of any process
    ///   uses the condvar, and the condvar is never moved or copied afterwards.
    /// - For use from several processes the memory is a shared mapping (`MAP_SHARED`).
    /// - The condvar is initialised exactly once (or again only after
    ///   [`destroy`](Self::destroy) returned `Ok`).
    ///
    /// # References
    /// - [POSIX `pthread_cond_init`]
    /// - [Linux `pthread_cond_init(3p)`]
    ///
    /// [POSIX `pthread_cond_init`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_cond_init.html
    /// [Linux `pthread_cond_init(3p)`]: https://man7.org/linux/man-pages/man3/pthread_cond_init.3p.html
    pub unsafe fn init(this: *mut Condvar) -> Result<()> {
        let mut slot = MaybeUninit::uninit();
        let mut attr = CondAttr::init(&mut slot)?;
        attr.set_process_shared()?;
        attr.set_clock(libc::CLOCK_MONOTONIC)?;
        // SAFETY: the caller promises `this` is valid for writes and aligned; `&raw mut` makes a
        // pointer to the field without creating a reference to uninitialised memory.
        let raw = UnsafeCell::raw_get(unsafe { &raw mut (*this).inner });
        // SAFETY: `raw` points to writable memory we have exclusive access to (caller's
        // promise); `attr` is an initialised attribute object that outlives the call.
        cvt_nz(unsafe { libc::pthread_cond_init(raw, attr.as_ptr()) })
    }

    /// `pthread_cond_destroy(this)` — destroys a condition variable nobody waits on.
    ///
    /// **Blocks forever** on glibc if a waiter was killed inside
    /// [`wait`](Self::wait): see the [type docs](Self). If that may have happened, do not call
    /// `destroy`; just unmap the memory (nothing outside the segment refers to the condvar).
    ///
    /// # Errors
    /// - [`Errno::BUSY`], [`Errno::INVAL`]: as `pthread_cond_destroy` (glibc always returns 0).
    ///
    /// # Safety
    /// - `this` points to a condvar initialised with [`init`](Self::init) and not destroyed
    ///   since.
    /// - No thread or process is waiting on it, is about to, or will use it after this call
    ///   (until it is initialised again).
    ///
    /// # References
    /// - [POSIX `pthread_cond_destroy`]
    /// - [Linux `pthread_cond_destroy(3p)`]
    ///
    /// [POSIX `pthread_cond_destroy`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_cond_destroy.html
    /// [Linux `pthread_cond_destroy(3p)`]: https://man7.org/linux/man-pages/man3/pthread_cond_destroy.3p.html
    pub unsafe fn destroy(this: *mut Condvar) -> Result<()> {
        // SAFETY: the caller promises an initialised condvar that nobody else uses.
        let raw = UnsafeCell::raw_get(unsafe { &raw mut (*this).inner });
        // SAFETY: as above; nobody waits on it, so libc has no waiter to account for.
        cvt_nz(unsafe { libc::pthread_cond_destroy(raw) })
    }

    /// The condvar, for libc.
    #[inline]
    fn raw(&self) -> *mut libc::pthread_cond_t {
        self.inner.get()
    }

    /// `pthread_cond_wait(self, mutex)` / `pthread_cond_timedwait(self, mutex, deadline)` —
    /// atomically releases `mutex`, waits for a notification, and re-locks `mutex`.
    ///
    /// The calling thread must hold `mutex` (otherwise [`Errno::PERM`], and nothing happens).
    /// On return with `Ok(_)` or `Err(TIMEDOUT)` it holds `mutex` again. Like every condition
    /// variable this one may wake up without a notification: call it in a loop that re-checks
    /// the predicate (and the deadline) under the mutex.
    ///
    /// [`Deadline::FOREVER`] calls `pthread_cond_wait`; a finite deadline is passed to
    /// `pthread_cond_timedwait` as an absolute `CLOCK_MONOTONIC` time (the condvar was created
    /// on that clock), so stepping the wall clock changes nothing; an expired deadline releases
    /// and re-takes the mutex once.
    ///
    /// Returns [`LockOutcome::OwnerDied`] when re-locking found that a holder of the mutex died
    /// while this thread waited: the caller holds the mutex and must repair the protected data
    /// and call [`RobustMutex::consistent`] before unlocking. libc reports this in preference
    /// to a timeout, so after `OwnerDied` check the deadline yourself.
    ///
    /// All the waiters of one condvar must use the same mutex at the same time (POSIX leaves
    /// the contrary undefined; glibc's condvar (2.25+) keeps no reference to the mutex, so
    /// there it is a logic error rather than memory corruption).
    ///
    /// # Errors
    /// - [`Errno::TIMEDOUT`]: the deadline passed on the monotonic clock. The caller holds the
    ///   mutex again (re-check the predicate: it may have become true meanwhile).
    /// - [`Errno::PERM`]: the calling thread does not hold `mutex`. Nothing was done.
    /// - [`Errno::NOTRECOVERABLE`]: re-locking failed because the mutex is not recoverable. The
    ///   caller does **not** hold the mutex.
    /// - [`Errno::INVAL`]: as `pthread_cond_timedwait`.
    ///
    /// # References
    /// - [POSIX `pthread_cond_wait`]
    /// - [POSIX `pthread_cond_timedwait`]
    /// - [Linux `pthread_cond_wait(3p)`]
    /// - [Linux `pthread_cond_timedwait(3p)`]
    ///
    /// [POSIX `pthread_cond_wait`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_cond_wait.html
    /// [POSIX `pthread_cond_timedwait`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_cond_timedwait.html
    /// [Linux `pthread_cond_wait(3p)`]: https://man7.org/linux/man-pages/man3/pthread_cond_wait.3p.html
    /// [Linux `pthread_cond_timedwait(3p)`]: https://man7.org/linux/man-pages/man3/pthread_cond_timedwait.3p.html
    #[doc(alias = "pthread_cond_wait", alias = "pthread_cond_timedwait")]
    pub fn wait(&self, mutex: &RobustMutex, deadline: Deadline) -> Result<LockOutcome> {
        let ret = match deadline.as_timespec() {
            None => {
                // SAFETY: `raw()` is an initialised condvar and `mutex.raw()` an initialised
                // robust error-checking mutex (type invariants); libc checks that the caller
                // holds the mutex.
                unsafe { libc::pthread_cond_wait(self.raw(), mutex.raw()) }
            }
            Some(at) => {
                let abstime = to_libc(at);
                // SAFETY: as above, plus a valid timespec on the condvar's clock
                // (CLOCK_MONOTONIC) that outlives the call.
                unsafe { libc::pthread_cond_timedwait(self.raw(), mutex.raw(), &abstime) }
            }
        };
        match ret {
            0 => Ok(LockOutcome::Acquired),
            libc::EOWNERDEAD => Ok(LockOutcome::OwnerDied),
            // The mutex is held again. A timeout before the deadline (not expected on the
            // monotonic clock) is reported as the spurious wake-up it is.
            libc::ETIMEDOUT if !deadline.has_expired() => Ok(LockOutcome::Acquired),
            e => Err(Errno::from_raw_os_error(e)),
        }
    }

    /// `pthread_cond_signal(self)` — wakes at least one thread waiting on the condvar, if any.
    ///
    /// May be called with or without the mutex held; call it with the mutex held (or after
    /// changing the predicate under it) so a waiter cannot miss the change.
    ///
    /// # Errors
    /// - [`Errno::INVAL`]: as `pthread_cond_signal` (glibc always returns 0).
    ///
    /// # References
    /// - [POSIX `pthread_cond_signal`]
    /// - [Linux `pthread_cond_signal(3p)`]
    ///
    /// [POSIX `pthread_cond_signal`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_cond_signal.html
    /// [Linux `pthread_cond_signal(3p)`]: https://man7.org/linux/man-pages/man3/pthread_cond_signal.3p.html
    #[doc(alias = "pthread_cond_signal")]
    pub fn notify_one(&self) -> Result<()> {
        // SAFETY: `raw()` is an initialised condvar (type invariant).
        cvt_nz(unsafe { libc::pthread_cond_signal(self.raw()) })
    }

    /// `pthread_cond_broadcast(self)` — wakes every thread waiting on the condvar.
    ///
    /// # Errors
    /// - [`Errno::INVAL`]: as `pthread_cond_broadcast` (glibc always returns 0).
    ///
    /// # References
    /// - [POSIX `pthread_cond_broadcast`]
    /// - [Linux `pthread_cond_broadcast(3p)`]
    ///
    /// [POSIX `pthread_cond_broadcast`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_cond_broadcast.html
    /// [Linux `pthread_cond_broadcast(3p)`]: https://man7.org/linux/man-pages/man3/pthread_cond_broadcast.3p.html
    #[doc(alias = "pthread_cond_broadcast")]
    pub fn notify_all(&self) -> Result<()> {
        // SAFETY: `raw()` is an initialised condvar (type invariant).
        cvt_nz(unsafe { libc::pthread_cond_broadcast(self.raw()) })
    }
}
