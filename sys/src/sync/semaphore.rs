//! POSIX unnamed semaphores that live in shared memory.
//!
//! [`RawSemaphore`] is a `sem_t` initialised in place with `pshared = 1`, so every process that
//! maps the memory holding it can post and wait. It is the OS object only: no ownership, no
//! guard, no bookkeeping of who initialised it (the `multiproc` crate builds `Semaphore` and
//! `BoundedSemaphore` on top).
//!
//! # Invariants
//!
//! This module uses `unsafe` for the `sem_*` calls. They are sound because every
//! `&RawSemaphore` refers to a semaphore that:
//!
//! - was initialised in place by [`RawSemaphore::init`] and not yet destroyed;
//! - has not moved since (POSIX: operating on a *copy* of a `sem_t` is undefined), which is why
//!   the type is `!Unpin` and is only ever reached through a pointer into the memory it was
//!   initialised in;
//! - sits in memory that every process using it maps `MAP_SHARED` (a `MAP_PRIVATE` page would be
//!   copied on the first write after `fork`, and each process would then see its own copy).
//!
//! Creating that reference (from a raw pointer into the segment) is the caller's `unsafe` step,
//! and where the obligations above are discharged. The operations themselves are safe.
//!
//! # Placing one in a shared segment
//!
//! Reserve `size_of::<RawSemaphore>()` bytes, aligned to `align_of::<RawSemaphore>()`, in a
//! `MAP_SHARED` mapping (a `mmap::Segment`, a memfd, or `MAP_SHARED | MAP_ANONYMOUS` memory as
//! below). One process initialises it, before any other can reach it (typically before `fork`,
//! or before publishing the segment with a `Release` store that users load with `Acquire`).
//! Every process then borrows it at that address, and the last user destroys it before the
//! memory goes away.
//!
//! ```
//! # use multiproc_sys::sync::semaphore::RawSemaphore;
//! # use multiproc_sys::time::Deadline;
//! # use multiproc_sys::Errno;
//! # fn main() -> Result<(), Errno> {
//! use core::mem::size_of;
//!
//! // One shared page (the crate's `Segment` does this for you).
//! // SAFETY: a fresh anonymous mapping; no address hint, no fd.
//! let page = unsafe {
//!     libc::mmap(
//!         core::ptr::null_mut(),
//!         4096,
//!         libc::PROT_READ | libc::PROT_WRITE,
//!         libc::MAP_SHARED | libc::MAP_ANONYMOUS,
//!         -1,
//!         0,
//!     )
//! };
//! assert_ne!(page, libc::MAP_FAILED);
//! assert!(size_of::<RawSemaphore>() <= 4096);
//! let slot = page.cast::<RawSemaphore>(); // page-aligned, hence aligned for `sem_t`
//!
//! // SAFETY: `slot` is valid, aligned, shared memory that nothing else uses yet.
//! unsafe { RawSemaphore::init(slot, 1)? };
//! // SAFETY: initialised just above; it stays at `slot` until destroyed below.
//! let sem = unsafe { &*slot };
//!
//! sem.wait(Deadline::FOREVER)?; // 1 -> 0
//! assert!(!sem.try_wait()?); // would block
//! sem.post()?; // 0 -> 1; a forked child could now take it
//! assert_eq!(sem.value()?, 1);
//!
//! // SAFETY: no process uses the semaphore any more; then the page goes.
//! unsafe {
//!     RawSemaphore::destroy(slot);
//!     libc::munmap(page, 4096);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Timeouts
//!
//! [`RawSemaphore::wait`] takes a [`Deadline`] on `CLOCK_MONOTONIC`. On glibc it calls
//! `sem_clockwait(CLOCK_MONOTONIC)` (glibc 2.30 and later), so a wall-clock step changes
//! nothing. Elsewhere (musl) only `sem_timedwait`, which counts on `CLOCK_REALTIME`, exists: the
//! deadline is converted to the wall clock before every attempt, and a timeout is reported only
//! once the *monotonic* deadline has passed, so a wall-clock step forward never makes the wait
//! end early (a step backward can make it end late).
//!
//! # Signal safety
//!
//! POSIX lists only `sem_post` as async-signal-safe. glibc and musl implement every `sem_*` call
//! used here with atomics and the `futex` system call, taking no lock and allocating nothing, so
//! all of them may be called in a forked child of a multithreaded parent.
//!
//! # References
//! - [POSIX `sem_init`]
//! - [Linux `sem_overview(7)`]
//!
//! [POSIX `sem_init`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sem_init.html
//! [Linux `sem_overview(7)`]: https://man7.org/linux/man-pages/man7/sem_overview.7.html
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomPinned;

use static_assertions::{assert_eq_align, assert_eq_size, assert_impl_all, assert_not_impl_any};

use crate::cvt::{cvt, retry_eintr};
use crate::errno::{Errno, Result};
use crate::time::{Deadline, to_libc};

/// `SEM_VALUE_MAX` — the largest value a semaphore can hold (`INT_MAX` on glibc and musl).
///
/// [`RawSemaphore::init`] refuses a larger initial value and [`RawSemaphore::post`] fails with
/// `EOVERFLOW` rather than go past it.
///
/// # References
/// - [POSIX `<limits.h>`]
/// - [Linux `sem_post(3)`]
///
/// [POSIX `<limits.h>`]: https://pubs.opengroup.org/onlinepubs/9799919799/basedefs/limits.h.html
/// [Linux `sem_post(3)`]: https://man7.org/linux/man-pages/man3/sem_post.3.html
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

#[cfg(multiproc_glibc)]
unsafe extern "C" {
    /// `int sem_clockwait(sem_t *sem, clockid_t clockid, const struct timespec *abstime)`,
    /// glibc 2.30 and later; the `libc` crate does not bind it.
    fn sem_clockwait(
        sem: *mut libc::sem_t,
        clockid: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// A process-shared POSIX unnamed semaphore (`sem_t` with `pshared = 1`), initialised in place.
///
/// It has exactly the size and alignment of `sem_t`, contains no pointers, and is shared by
/// reference: create it with [`init`](Self::init) where it will stay (a `MAP_SHARED` segment),
/// borrow it from there, and [`destroy`](Self::destroy) it when no process uses it any more.
/// See the [module docs](self#placing-one-in-a-shared-segment) for an example and for the
/// invariants every `&RawSemaphore` carries.
///
/// It is `Sync` (the `sem_*` calls are thread- and process-safe) and `!Unpin` (it must never be
/// moved: a copy of a `sem_t` is not a semaphore).
#[repr(C)]
pub struct RawSemaphore {
    sem: UnsafeCell<libc::sem_t>,
    _pin: PhantomPinned,
}

// SAFETY: every operation goes through `sem_*` calls on the pointer from `UnsafeCell::get`, and
// POSIX semaphores are safe to use from many threads (and, with `pshared`, processes) at once.
unsafe impl Sync for RawSemaphore {}

assert_eq_size!(RawSemaphore, libc::sem_t);
assert_eq_align!(RawSemaphore, libc::sem_t);
assert_impl_all!(RawSemaphore: Sync);
assert_not_impl_any!(RawSemaphore: Unpin, Clone, Copy);

impl RawSemaphore {
    /// `sem_init(this, 1, value)` — initialises a process-shared semaphore in place, with
    /// `value` permits.
    ///
    /// After it returns, any process that maps the memory at `this` (at any address) may borrow
    /// it as `&RawSemaphore` and use it.
    ///
    /// Safe to call between `fork` and `exec` on glibc and musl (see the
    /// [module docs](self#signal-safety)).
    ///
    /// # Errors
    ///
    /// - [`Errno::INVAL`]: `value > SEM_VALUE_MAX`.
    /// - [`Errno::NOSYS`]: the libc does not support process-shared semaphores.
    ///
    /// # Safety
    ///
    /// - `this` is non-null, aligned for `RawSemaphore` and valid for reads and writes of
    ///   `size_of::<RawSemaphore>()` bytes, for as long as any process uses the semaphore.
    /// - The memory is mapped `MAP_SHARED` by every process that will use the semaphore (or
    ///   only one process ever uses it).
    /// - No process or thread uses the memory at `this` during the call, and it does not hold a
    ///   live semaphore that anybody still uses (re-initialising a semaphore in use is undefined
    ///   behaviour).
    /// - Every later use of the semaphore happens after this call (for instance it runs before
    ///   `fork`, or is published with a `Release` store that users read with `Acquire`), and at
    ///   this same location: the bytes are never moved or copied elsewhere to be used.
    ///
    /// # References
    /// - [POSIX `sem_init`]
    /// - [Linux `sem_init(3)`]
    ///
    /// [POSIX `sem_init`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sem_init.html
    /// [Linux `sem_init(3)`]: https://man7.org/linux/man-pages/man3/sem_init.3.html
    pub unsafe fn init(this: *mut RawSemaphore, value: u32) -> Result<()> {
        if value > SEM_VALUE_MAX {
            return Err(Errno::INVAL);
        }
        // SAFETY: the caller guarantees `this` is valid and aligned, so projecting to the field
        // (without creating a reference) is in bounds.
        let sem = UnsafeCell::raw_get(unsafe { &raw const (*this).sem });
        // SAFETY: `sem` points to writable, aligned `sem_t` storage that nobody else uses during
        // the call (caller's obligations); `value` fits in `c_uint` and is at most SEM_VALUE_MAX.
        cvt(unsafe { libc::sem_init(sem, 1, value) })?;
        Ok(())
    }

    /// `sem_destroy(this)` — destroys a semaphore made by [`init`](Self::init).
    ///
    /// On glibc and musl this releases nothing (the semaphore owns no resource outside its
    /// bytes), so a segment that is unmapped with a live semaphore in it leaks nothing; call it
    /// anyway where one party knows it is the last user.
    ///
    /// Safe to call between `fork` and `exec` on glibc and musl (see the
    /// [module docs](self#signal-safety)).
    ///
    /// # Safety
    ///
    /// - `this` points to a semaphore initialised by [`init`](Self::init) and not yet destroyed.
    /// - No thread of any process is blocked on it, and none will use it (or a reference to it)
    ///   after this call, except to [`init`](Self::init) it again.
    ///
    /// # References
    /// - [POSIX `sem_destroy`]
    /// - [Linux `sem_destroy(3)`]
    ///
    /// [POSIX `sem_destroy`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sem_destroy.html
    /// [Linux `sem_destroy(3)`]: https://man7.org/linux/man-pages/man3/sem_destroy.3.html
    pub unsafe fn destroy(this: *mut Self) {
        // SAFETY: `this` points to a live semaphore (caller's obligation), so the field
        // projection is in bounds.
        let sem = UnsafeCell::raw_get(unsafe { &raw const (*this).sem });
        // SAFETY: `sem` is an initialised semaphore that nobody waits on or uses any more.
        let ret = unsafe { libc::sem_destroy(sem) };
        // It can only fail with EINVAL (not a semaphore), which the caller ruled out.
        debug_assert_eq!(ret, 0, "sem_destroy on a semaphore that was not initialised");
    }

    /// The `sem_t` pointer, for calls this type does not wrap.
    ///
    /// The pointer is valid while `self` is (see the [module docs](self#invariants)).
    #[inline]
    pub(crate) fn as_raw(&self) -> *mut libc::sem_t {
        self.sem.get()
    }

    /// `sem_post(self)` — adds one permit, waking one waiter if any (in any process).
    ///
    /// Async-signal-safe.
    ///
    /// # Errors
    ///
    /// - [`Errno::OVERFLOW`]: the value is already [`SEM_VALUE_MAX`]; it is left unchanged.
    ///
    /// # References
    /// - [POSIX `sem_post`]
    /// - [Linux `sem_post(3)`]
    ///
    /// [POSIX `sem_post`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sem_post.html
    /// [Linux `sem_post(3)`]: https://man7.org/linux/man-pages/man3/sem_post.3.html
    #[inline]
    pub fn post(&self) -> Result<()> {
        // SAFETY: `self` is an initialised semaphore that has not moved (type invariant).
        cvt(unsafe { libc::sem_post(self.as_raw()) })?;
        Ok(())
    }

    /// `sem_trywait(self)` — takes a permit if one is available, without blocking; returns
    /// whether it took one.
    ///
    /// Safe to call between `fork` and `exec` on glibc and musl (see the
    /// [module docs](self#signal-safety)).
    ///
    /// # Errors
    ///
    /// None expected: `EAGAIN` (no permit) is `Ok(false)` and `EINTR` is retried.
    ///
    /// # References
    /// - [POSIX `sem_trywait`]
    /// - [Linux `sem_wait(3)`]
    ///
    /// [POSIX `sem_trywait`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sem_trywait.html
    /// [Linux `sem_wait(3)`]: https://man7.org/linux/man-pages/man3/sem_wait.3.html
    #[inline]
    pub fn try_wait(&self) -> Result<bool> {
        // SAFETY: `self` is an initialised semaphore that has not moved (type invariant).
        match retry_eintr(|| cvt(unsafe { libc::sem_trywait(self.as_raw()) })) {
            Ok(_) => Ok(true),
            Err(Errno::AGAIN) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `sem_clockwait(self, CLOCK_MONOTONIC, deadline)` — takes a permit, blocking until one is
    /// posted (from any process) or `deadline` passes.
    ///
    /// [`Deadline::FOREVER`] calls `sem_wait`. A deadline that has already passed (a zero
    /// timeout) tries once without blocking. `EINTR` is retried with the same deadline. Without
    /// `sem_clockwait` (musl) it uses `sem_timedwait` as described in the
    /// [module docs](self#timeouts).
    ///
    /// Safe to call between `fork` and `exec` on glibc and musl (see the
    /// [module docs](self#signal-safety)).
    ///
    /// # Errors
    ///
    /// - [`Errno::TIMEDOUT`]: no permit came before the deadline, which has passed.
    /// - [`Errno::INVAL`]: a deadline built with [`Deadline::at`] from a malformed `timespec`.
    ///
    /// # References
    /// - [POSIX `sem_clockwait`]
    /// - [Linux `sem_wait(3)`]
    ///
    /// [POSIX `sem_clockwait`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sem_clockwait.html
    /// [Linux `sem_wait(3)`]: https://man7.org/linux/man-pages/man3/sem_wait.3.html
    #[doc(alias = "sem_wait", alias = "sem_timedwait", alias = "sem_clockwait")]
    pub fn wait(&self, deadline: Deadline) -> Result<()> {
        if deadline.is_forever() {
            // SAFETY: `self` is an initialised semaphore that has not moved (type invariant).
            retry_eintr(|| cvt(unsafe { libc::sem_wait(self.as_raw()) }))?;
            return Ok(());
        }
        self.wait_until(deadline)
    }

    /// The timed wait with a finite deadline: `sem_clockwait` on the monotonic clock.
    #[cfg(multiproc_glibc)]
    fn wait_until(&self, deadline: Deadline) -> Result<()> {
        let Some(at) = deadline.as_timespec() else {
            // Not reached: `wait` handles "forever". Be correct anyway.
            return self.wait(Deadline::FOREVER);
        };
        let abstime = to_libc(at);
        loop {
            // SAFETY: `self` is an initialised semaphore that has not moved (type invariant);
            // `abstime` is a valid timespec that outlives the call.
            match cvt(unsafe { sem_clockwait(self.as_raw(), libc::CLOCK_MONOTONIC, &abstime) }) {
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => continue,
                // Only a deadline that has really passed is a timeout.
                Err(Errno::TIMEDOUT) if !deadline.has_expired() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The timed wait with a finite deadline, without `sem_clockwait`: `sem_timedwait` on the
    /// wall clock, recomputed before every attempt, with the timeout confirmed on the monotonic
    /// clock.
    #[cfg(not(multiproc_glibc))]
    fn wait_until(&self, deadline: Deadline) -> Result<()> {
        loop {
            let Some(at) = deadline.to_realtime() else {
                // Not reached: `wait` handles "forever". Be correct anyway.
                return self.wait(Deadline::FOREVER);
            };
            let abstime = to_libc(&at);
            // SAFETY: `self` is an initialised semaphore that has not moved (type invariant);
            // `abstime` is a valid timespec that outlives the call.
            match cvt(unsafe { libc::sem_timedwait(self.as_raw(), &abstime) }) {
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => continue,
                // The wall clock may have been stepped forward: time is up only when the
                // monotonic deadline says so.
                Err(Errno::TIMEDOUT) if !deadline.has_expired() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `sem_getvalue(self)` — the number of permits available right now.
    ///
    /// Only a snapshot: other processes may change it before the caller looks at it. While
    /// threads are blocked, POSIX lets an implementation report a negative count of waiters;
    /// this returns 0 then.
    ///
    /// Safe to call between `fork` and `exec` on glibc and musl (see the
    /// [module docs](self#signal-safety)).
    ///
    /// # Errors
    ///
    /// None expected.
    ///
    /// # References
    /// - [POSIX `sem_getvalue`]
    /// - [Linux `sem_getvalue(3)`]
    ///
    /// [POSIX `sem_getvalue`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sem_getvalue.html
    /// [Linux `sem_getvalue(3)`]: https://man7.org/linux/man-pages/man3/sem_getvalue.3.html
    #[inline]
    pub fn value(&self) -> Result<u32> {
        let mut value: libc::c_int = 0;
        // SAFETY: `self` is an initialised semaphore that has not moved (type invariant);
        // `value` is a valid out-pointer for the duration of the call.
        cvt(unsafe { libc::sem_getvalue(self.as_raw(), &mut value) })?;
        Ok(u32::try_from(value).unwrap_or(0))
    }
}

impl fmt::Debug for RawSemaphore {
    /// Prints no value: reading it would be a system call, and racy anyway.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSemaphore").finish_non_exhaustive()
    }
}
