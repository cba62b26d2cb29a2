//! [`RobustMutex`]: a robust, process-shared, error-checking `pthread_mutex_t`.
//!
//! # Invariants this file relies on
//!
//! - A `RobustMutex` is only ever reached through a pointer into memory that holds an
//!   initialised mutex: the type has no constructor, [`RobustMutex::init`] is the only way to
//!   make one usable, and its `# Safety` section makes the caller promise that the memory stays
//!   mapped and the object never moves afterwards. Every safe method therefore passes libc a
//!   pointer to a live, initialised `pthread_mutex_t`.
//! - The mutex type is `PTHREAD_MUTEX_ERRORCHECK` and the mutex is robust, so libc checks
//!   ownership on unlock (POSIX requires `EPERM` for both) and on relock (`EDEADLK`). That check
//!   is what makes [`RobustMutex::unlock`] a safe function.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomPinned;
use core::mem::MaybeUninit;
#[cfg(multiproc_glibc)]
use core::sync::atomic::{AtomicU32, Ordering};

use static_assertions::{assert_eq_align, assert_eq_size, assert_impl_all, assert_not_impl_any};

use super::attr::MutexAttr;
use crate::cvt::cvt_nz;
use crate::errno::{Errno, Result};
use crate::time::{Deadline, to_libc};

/// The longest a [`RobustMutex::lock`] sleeps in the kernel before it tries again (see there).
const WAKE_SLICE: core::time::Duration = core::time::Duration::from_millis(50);

/// How a lock call that succeeded got the mutex.
///
/// Both arms mean the caller now holds the mutex. Ignoring [`OwnerDied`](Self::OwnerDied) is a
/// bug (the data the mutex protects may be half-updated), hence `#[must_use]`.
#[must_use = "`OwnerDied` means the protected data may be inconsistent and `consistent()` must be called"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockOutcome {
    /// The mutex was free, or released normally by its previous owner.
    Acquired,
    /// `EOWNERDEAD`: the previous owner died while holding the mutex. The caller now holds it,
    /// the data it protects may be inconsistent, and the caller must repair that data and call
    /// [`RobustMutex::consistent`] **before** [`RobustMutex::unlock`]. Unlocking without
    /// `consistent()` makes the mutex permanently unusable: every later lock fails with
    /// [`Errno::NOTRECOVERABLE`].
    OwnerDied,
}

/// A robust, process-shared, error-checking pthread mutex, for memory shared between processes.
///
/// Set up with [`init`](Self::init) in place (in a `MAP_SHARED` segment), then used through
/// `&RobustMutex` from every process that maps the segment. Attributes:
///
/// | attribute | value | why |
/// |-----------|-------|-----|
/// | pshared   | `PTHREAD_PROCESS_SHARED` | lockable from every process that maps it (the futex is not private) |
/// | robust    | `PTHREAD_MUTEX_ROBUST`   | an owner that dies holding it is reported ([`LockOutcome::OwnerDied`]), never a hang |
/// | type      | `PTHREAD_MUTEX_ERRORCHECK` | relocking by the owner is [`Errno::DEADLK`], unlocking by a non-owner is [`Errno::PERM`] |
///
/// **Why `ERRORCHECK` rather than `NORMAL`:** POSIX requires `EPERM` from an unlock by a
/// non-owner for robust mutexes of any type, and glibc and musl check the owner's thread id for
/// every robust type, so either would make [`unlock`](Self::unlock) safe. `NORMAL` would make a
/// relock by the owner a self-deadlock (forever, or until the deadline) instead of an immediate
/// `EDEADLK`; the price of `ERRORCHECK` is nothing measurable, since the robust path already
/// reads the owner's thread id.
///
/// Ownership belongs to a *thread*, identified by its kernel thread id: another thread of the
/// same process is a non-owner too, and a child forked while the parent holds the mutex does
/// not hold it. (Thread ids are compared as seen in the locker's PID namespace: do not share a
/// mutex between processes in different PID namespaces.)
///
/// # Trust
///
/// Unlike the crate's own shared-memory structures, a pthread mutex cannot validate its bytes:
/// glibc threads a linked list of the robust mutexes a thread holds through the mutexes
/// themselves. A peer process that writes over a mutex it does not own (instead of calling these
/// methods) can make libc follow garbage pointers. Every process that maps the mutex must access
/// it only through this type.
///
/// # Not async-signal-safe
///
/// No `pthread_mutex_*` function is on the POSIX async-signal-safe list: do not call these
/// methods from a signal handler (a handler that interrupts a lock or unlock of the same thread
/// would corrupt that thread's robust list). In a freshly forked child of a multithreaded
/// parent they work on glibc (they take no libc-internal lock and allocate nothing, and the
/// child starts with an empty robust list), but POSIX does not promise it; see the
/// [module docs](super).
///
/// # References
/// - [POSIX `pthread_mutex_lock`]
/// - [POSIX `pthread_mutexattr_setrobust`]
/// - [Linux `pthread_mutexattr_setrobust(3)`]
/// - [Linux `pthread_mutex_lock(3p)`]
///
/// [POSIX `pthread_mutex_lock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_lock.html
/// [POSIX `pthread_mutexattr_setrobust`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutexattr_setrobust.html
/// [Linux `pthread_mutexattr_setrobust(3)`]: https://man7.org/linux/man-pages/man3/pthread_mutexattr_setrobust.3.html
/// [Linux `pthread_mutex_lock(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_lock.3p.html
#[repr(C)]
pub struct RobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
    _pin: PhantomPinned,
}

assert_eq_size!(RobustMutex, libc::pthread_mutex_t);
assert_eq_align!(RobustMutex, libc::pthread_mutex_t);
assert_impl_all!(RobustMutex: Sync, Send);
assert_not_impl_any!(RobustMutex: Unpin, Clone, Copy);

/// glibc's private layout of a robust mutex, which [`RobustMutex::looks_locked`] and
/// [`RobustMutex::try_lock_quiet`] rely on.
///
/// The lock word is the `int` at offset 0 of `pthread_mutex_t` (`__data.__lock`), fixed by
/// glibc's ABI (static initialisers write it), in the robust futex format the kernel defines
/// (`get_robust_list(2)`): the owner's thread id in the low 30 bits, "owner died" in bit 30,
/// "waiters" in bit 31. glibc and the kernel access it atomically. The offset is checked at
/// run time by `tests::glibc_lock_word_names_the_holder` (the `libc` crate declares
/// `pthread_mutex_t` opaque, so it cannot be asserted at compile time).
#[cfg(multiproc_glibc)]
mod glibc {
    /// The owner's thread id in a robust futex word (the kernel's `FUTEX_TID_MASK`).
    pub(super) const TID_MASK: u32 = 0x3fff_ffff;
    /// "Someone sleeps on the word" (the kernel's `FUTEX_WAITERS`).
    pub(super) const WAITERS: u32 = 0x8000_0000;
    /// Byte offset of the lock word in `pthread_mutex_t`.
    pub(super) const LOCK_WORD_OFFSET: usize = 0;
}

#[cfg(multiproc_glibc)]
static_assertions::const_assert!(
    glibc::LOCK_WORD_OFFSET + core::mem::size_of::<u32>()
        <= core::mem::size_of::<libc::pthread_mutex_t>()
);
#[cfg(multiproc_glibc)]
static_assertions::const_assert_eq!(
    glibc::LOCK_WORD_OFFSET % core::mem::align_of::<AtomicU32>(),
    0
);
#[cfg(multiproc_glibc)]
assert_eq_size!(libc::c_int, u32);

// SAFETY: a pthread mutex is designed to be operated on concurrently, through a pointer, by many
// threads (and, being PTHREAD_PROCESS_SHARED, many processes); libc synchronises every access to
// its bytes. The `UnsafeCell` is only there to hand libc a `*mut` from `&self`.
unsafe impl Sync for RobustMutex {}
// SAFETY: nothing in the mutex is tied to the thread that initialised it: ownership is recorded
// by thread id in the lock word, and every thread may lock and unlock it.
unsafe impl Send for RobustMutex {}

impl fmt::Debug for RobustMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state cannot be read without racing with libc: print nothing of it.
        f.debug_struct("RobustMutex").finish_non_exhaustive()
    }
}

/// Maps a `pthread_mutex_*lock` return code to the crate's outcome.
#[inline]
fn lock_outcome(ret: libc::c_int) -> Result<LockOutcome> {
    match ret {
        0 => Ok(LockOutcome::Acquired),
        libc::EOWNERDEAD => Ok(LockOutcome::OwnerDied),
        e => Err(Errno::from_raw_os_error(e)),
    }
}

#[cfg(multiproc_glibc)]
unsafe extern "C" {
    /// `pthread_mutex_clocklock(3)`, glibc >= 2.30 (POSIX.1-2024). The `libc` crate does not bind
    /// it. Declared with `libc::timespec`, which is the ABI glibc's plain symbol expects on every
    /// target unless `libc` is built with its opt-in 64-bit `time_t` on 32-bit glibc (then the
    /// symbol would be `__pthread_mutex_clocklock64`).
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clockid: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

impl RobustMutex {
    /// `pthread_mutex_init(this, {pshared, robust, errorcheck})` — initialises a mutex in place.
    ///
    /// Every attribute call is checked; the attribute object is destroyed on every path.
    ///
    /// # Errors
    /// - [`Errno::NOTSUP`]: the kernel has no robust futex list (`set_robust_list`), so glibc
    ///   refuses robust mutexes.
    /// - [`Errno::NOMEM`], [`Errno::AGAIN`], [`Errno::INVAL`]: as `pthread_mutex_init`.
    ///
    /// # Safety
    /// - `this` is valid for writes of a `RobustMutex` and suitably aligned.
    /// - The caller has exclusive access to `*this` for the duration of the call: no other
    ///   thread or process touches it until `init` has returned `Ok`.
    /// - The memory stays mapped, at the same place, for as long as any thread of any process
    ///   uses the mutex, and the mutex is never moved or copied afterwards (each process reaches
    ///   it through its own mapping of the same shared memory).
    /// - For use from several processes the memory is a shared mapping (`MAP_SHARED`): with
    ///   `MAP_PRIVATE` each process would silently get its own copy.
    /// - The mutex is initialised exactly once (or again only after [`destroy`](Self::destroy)
    ///   returned `Ok`): re-initialising a live mutex breaks its current holder and waiters.
    ///
    /// # References
    /// - [POSIX `pthread_mutex_init`]
    /// - [Linux `pthread_mutex_init(3p)`]
    ///
    /// [POSIX `pthread_mutex_init`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_init.html
    /// [Linux `pthread_mutex_init(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_init.3p.html
    pub unsafe fn init(this: *mut RobustMutex) -> Result<()> {
        let mut slot = MaybeUninit::uninit();
        let mut attr = MutexAttr::init(&mut slot)?;
        attr.set_process_shared()?;
        attr.set_robust()?;
        attr.set_type(libc::PTHREAD_MUTEX_ERRORCHECK)?;
        // SAFETY: the caller promises `this` is valid for writes and aligned; `&raw mut` makes a
        // pointer to the field without creating a reference to uninitialised memory.
        let raw = UnsafeCell::raw_get(unsafe { &raw mut (*this).inner });
        // SAFETY: `raw` points to writable memory we have exclusive access to (caller's
        // promise); `attr` is an initialised attribute object that outlives the call.
        cvt_nz(unsafe { libc::pthread_mutex_init(raw, attr.as_ptr()) })
    }

    /// `pthread_mutex_destroy(this)` — destroys a mutex nobody holds; leaks one that is held.
    ///
    /// The mutex is first tried with `pthread_mutex_trylock`. If that fails because someone
    /// holds it (including the calling thread), it is **left as it is** and
    /// [`Errno::BUSY`] is returned: destroying a locked mutex is undefined behaviour in POSIX,
    /// and leaking a few dozen bytes of a segment is harmless (std's pthread mutex does the same).
    /// A mutex whose owner died, or that is not recoverable, is destroyed.
    ///
    /// # Errors
    /// - [`Errno::BUSY`]: the mutex is held; it was left untouched and may still be used.
    /// - [`Errno::INVAL`]: as `pthread_mutex_destroy`.
    ///
    /// # Safety
    /// - `this` points to a mutex initialised with [`init`](Self::init) and not destroyed since.
    /// - No other thread or process uses the mutex during or after this call (until it is
    ///   initialised again), and no [`Condvar`](super::Condvar) is waiting with it.
    ///
    /// # References
    /// - [POSIX `pthread_mutex_destroy`]
    /// - [Linux `pthread_mutex_destroy(3p)`]
    ///
    /// [POSIX `pthread_mutex_destroy`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_destroy.html
    /// [Linux `pthread_mutex_destroy(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_destroy.3p.html
    pub unsafe fn destroy(this: *mut RobustMutex) -> Result<()> {
        // SAFETY: the caller promises an initialised mutex that nobody else uses; a shared
        // reference to it for the duration of the trylock is therefore sound.
        let mutex = unsafe { &*this };
        match mutex.try_lock() {
            // We hold it now; release it (a dead owner's mutex becomes not recoverable, which is
            // fine: destroying is the one operation allowed on it).
            Ok(Some(_)) => {
                mutex.unlock()?;
            }
            // Held by someone, possibly a live process or ourselves: leak.
            Ok(None) | Err(Errno::DEADLK) => return Err(Errno::BUSY),
            // Destroying is the only thing left to do with it.
            Err(Errno::NOTRECOVERABLE) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: initialised, unlocked, and (caller's promise) used by nobody else.
        cvt_nz(unsafe { libc::pthread_mutex_destroy(mutex.raw()) })
    }

    /// The mutex, for libc.
    #[inline]
    pub(crate) fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.inner.get()
    }

    /// `pthread_mutex_lock(self)` / `pthread_mutex_clocklock(self, CLOCK_MONOTONIC, deadline)` —
    /// locks the mutex, waiting until `deadline`.
    ///
    /// It waits in slices of at most 50 ms (`pthread_mutex_clocklock` each time), so a wake-up
    /// lost with a waiter killed right after it is made up for within a slice. A finite deadline is an absolute
    /// `CLOCK_MONOTONIC` time, so stepping the wall clock changes nothing; an expired deadline
    /// (a zero timeout) tries once. On glibc this is `pthread_mutex_clocklock`. Elsewhere (musl)
    /// it is `pthread_mutex_timedlock` with the deadline converted to `CLOCK_REALTIME` anew
    /// before each attempt, and a timeout is reported only after the monotonic deadline has
    /// passed (a wall clock stepped forward does not cut the wait short; one stepped backward
    /// can still lengthen a single attempt).
    ///
    /// On [`LockOutcome::OwnerDied`] the caller holds the mutex and must call
    /// [`consistent`](Self::consistent) before [`unlock`](Self::unlock).
    ///
    /// # Errors
    /// - [`Errno::TIMEDOUT`]: the deadline passed (on the monotonic clock) before the mutex was
    ///   free. The mutex is not held.
    /// - [`Errno::DEADLK`]: the calling thread already holds the mutex.
    /// - [`Errno::NOTRECOVERABLE`]: an earlier holder unlocked it after
    ///   [`LockOutcome::OwnerDied`] without calling [`consistent`](Self::consistent); the mutex
    ///   can only be destroyed.
    /// - [`Errno::AGAIN`], [`Errno::INVAL`]: as `pthread_mutex_lock`.
    ///
    /// # References
    /// - [POSIX `pthread_mutex_lock`]
    /// - [POSIX `pthread_mutex_clocklock`]
    /// - [Linux `pthread_mutex_lock(3p)`]
    /// - [Linux `pthread_mutex_timedlock(3p)`]
    ///
    /// [POSIX `pthread_mutex_lock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_lock.html
    /// [POSIX `pthread_mutex_clocklock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_clocklock.html
    /// [Linux `pthread_mutex_lock(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_lock.3p.html
    /// [Linux `pthread_mutex_timedlock(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_timedlock.3p.html
    #[doc(alias = "pthread_mutex_lock", alias = "pthread_mutex_clocklock")]
    pub fn lock(&self, deadline: Deadline) -> Result<LockOutcome> {
        // Sleep in slices of at most `WAKE_SLICE`, trying again after each. An unlock, and the
        // kernel's cleanup of a holder that died (robust list), each wake *one* sleeper; a
        // sleeper killed after that wake-up and before it takes the mutex takes the wake-up
        // with it, and the other sleepers would sleep on, up to their whole timeout, while the
        // mutex is free (issue 19, item 6). A retry finds the mutex free (or owner-died).
        loop {
            let slice = deadline.min(Deadline::after(Some(WAKE_SLICE)));
            if slice.as_timespec().is_none() {
                // SAFETY: `raw()` is an initialised mutex (type invariant, see the module docs).
                return lock_outcome(unsafe { libc::pthread_mutex_lock(self.raw()) });
            }
            match self.lock_until(slice) {
                Err(Errno::TIMEDOUT) if !deadline.has_expired() => continue,
                other => return other,
            }
        }
    }

    /// The timed path of [`lock`](Self::lock): `pthread_mutex_clocklock` on `CLOCK_MONOTONIC`.
    #[cfg(multiproc_glibc)]
    fn lock_until(&self, deadline: Deadline) -> Result<LockOutcome> {
        let Some(at) = deadline.as_timespec() else {
            return self.lock(Deadline::FOREVER);
        };
        let abstime = to_libc(at);
        loop {
            // SAFETY: an initialised mutex (type invariant) and a valid timespec that outlives
            // the call.
            let ret =
                unsafe { pthread_mutex_clocklock(self.raw(), libc::CLOCK_MONOTONIC, &abstime) };
            match lock_outcome(ret) {
                // Neither is expected from a mutex wait (POSIX forbids EINTR), but a timeout is
                // reported only once the deadline has really passed.
                Err(Errno::INTR) => continue,
                Err(Errno::TIMEDOUT) if !deadline.has_expired() => continue,
                other => return other,
            }
        }
    }

    /// The timed path of [`lock`](Self::lock) where `pthread_mutex_clocklock` is not available:
    /// `pthread_mutex_timedlock` with a `CLOCK_REALTIME` deadline recomputed before each attempt.
    #[cfg_attr(multiproc_glibc, allow(dead_code))]
    fn lock_until_realtime(&self, deadline: Deadline) -> Result<LockOutcome> {
        loop {
            let Some(at) = deadline.to_realtime() else {
                return self.lock(Deadline::FOREVER);
            };
            let abstime = to_libc(&at);
            // SAFETY: an initialised mutex (type invariant) and a valid timespec that outlives
            // the call.
            let ret = unsafe { libc::pthread_mutex_timedlock(self.raw(), &abstime) };
            match lock_outcome(ret) {
                Err(Errno::INTR) => continue,
                // The wall clock was stepped forward: the monotonic deadline has not passed.
                Err(Errno::TIMEDOUT) if !deadline.has_expired() => continue,
                other => return other,
            }
        }
    }

    #[cfg(not(multiproc_glibc))]
    fn lock_until(&self, deadline: Deadline) -> Result<LockOutcome> {
        self.lock_until_realtime(deadline)
    }

    /// `pthread_mutex_trylock(self)` — locks the mutex if nobody holds it, without waiting.
    ///
    /// `Ok(None)` means another thread (of this or another process) holds it (`EBUSY`).
    /// On `Ok(Some(LockOutcome::OwnerDied))` the caller holds the mutex and must call
    /// [`consistent`](Self::consistent) before [`unlock`](Self::unlock).
    ///
    /// On glibc this is `pthread_mutex_clocklock` with a deadline in the past, not
    /// `pthread_mutex_trylock`: glibc's (2.36) `pthread_mutex_trylock` on a robust mutex that is
    /// not recoverable returns `ENOTRECOVERABLE` but leaves the lock word owned by the caller
    /// (it unlocks only `if (oldval == id)`, and `oldval` is 0 after its successful
    /// compare-and-swap), so every later locker in every process blocks forever and no unlock
    /// can undo it safely. The timed path releases the word before returning
    /// `ENOTRECOVERABLE`, and with an expired deadline it tries exactly once: on a busy mutex it
    /// sets the futex's "waiters" bit and returns at once (the holder's unlock then makes one
    /// `futex` wake call it would otherwise skip).
    ///
    /// # Errors
    /// - [`Errno::DEADLK`]: the calling thread already holds the mutex (glibc; musl's
    ///   `pthread_mutex_trylock` reports this case as busy, `Ok(None)`; [`lock`](Self::lock)
    ///   with an expired deadline says `EDEADLK` on both).
    /// - [`Errno::NOTRECOVERABLE`]: as for [`lock`](Self::lock).
    /// - [`Errno::AGAIN`], [`Errno::INVAL`]: as `pthread_mutex_trylock`.
    ///
    /// # References
    /// - [POSIX `pthread_mutex_trylock`]
    /// - [Linux `pthread_mutex_trylock(3p)`]
    ///
    /// [POSIX `pthread_mutex_trylock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_trylock.html
    /// [Linux `pthread_mutex_trylock(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_trylock.3p.html
    #[doc(alias = "pthread_mutex_trylock")]
    pub fn try_lock(&self) -> Result<Option<LockOutcome>> {
        match self.try_lock_raw() {
            Ok(outcome) => Ok(Some(outcome)),
            Err(Errno::BUSY) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One attempt at the mutex; `Err(BUSY)` if someone holds it.
    #[cfg(multiproc_glibc)]
    fn try_lock_raw(&self) -> Result<LockOutcome> {
        /// Long past on every clock: the call makes exactly one attempt.
        const PAST: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        loop {
            // SAFETY: an initialised mutex (type invariant) and a valid timespec that outlives
            // the call.
            let ret = unsafe { pthread_mutex_clocklock(self.raw(), libc::CLOCK_MONOTONIC, &PAST) };
            match lock_outcome(ret) {
                Err(Errno::INTR) => continue,
                Err(Errno::TIMEDOUT) => return Err(Errno::BUSY),
                other => return other,
            }
        }
    }

    /// One attempt at the mutex; `Err(BUSY)` if someone holds it.
    #[cfg(not(multiproc_glibc))]
    fn try_lock_raw(&self) -> Result<LockOutcome> {
        // SAFETY: `raw()` is an initialised mutex (type invariant).
        lock_outcome(unsafe { libc::pthread_mutex_trylock(self.raw()) })
    }

    /// `pthread_mutex_trylock(self)` — one attempt that leaves no trace when the mutex is busy.
    ///
    /// [`try_lock`](Self::try_lock) is, on glibc, `pthread_mutex_clocklock` with an expired
    /// deadline. On a busy mutex that makes a `futex` system call and sets the futex's "waiters"
    /// bit, so the holder's next unlock makes a wake-up system call as well. That is fine for
    /// one try, but a spinning acquirer would pay two system calls per failed attempt (and slow
    /// the holder down). `pthread_mutex_trylock` fails with a plain compare-and-swap instead.
    ///
    /// [`try_lock`](Self::try_lock) avoids `pthread_mutex_trylock` because glibc's leaves a
    /// mutex that is *not recoverable* owned by the caller (see there). A mutex becomes not
    /// recoverable only when a holder that got [`LockOutcome::OwnerDied`] unlocks it without
    /// [`consistent`](Self::consistent); use this method on mutexes whose every locker calls
    /// `consistent` before anything else (a holder killed before that leaves the mutex "owner
    /// died" again, through the kernel's robust list, not unrecoverable). If
    /// `pthread_mutex_trylock` reports `ENOTRECOVERABLE` all the same (a peer scribbled over the
    /// segment), this method gives the lock word back the way glibc's own unlock would (clears
    /// it if it names the calling thread, and wakes its sleepers; `pthread_mutex_unlock` must
    /// not be called, since the mutex is not on the thread's robust list), so the other
    /// processes keep getting the error instead of hanging.
    ///
    /// Elsewhere (musl) this is [`try_lock`](Self::try_lock), which already is
    /// `pthread_mutex_trylock`.
    ///
    /// # Errors
    /// As [`try_lock`](Self::try_lock).
    ///
    /// # References
    /// - [POSIX `pthread_mutex_trylock`]
    /// - [Linux `pthread_mutex_trylock(3p)`]
    ///
    /// [POSIX `pthread_mutex_trylock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_trylock.html
    /// [Linux `pthread_mutex_trylock(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_trylock.3p.html
    #[doc(alias = "pthread_mutex_trylock")]
    #[inline]
    pub fn try_lock_quiet(&self) -> Result<Option<LockOutcome>> {
        #[cfg(multiproc_glibc)]
        {
            // SAFETY: `raw()` is an initialised mutex (type invariant).
            match unsafe { libc::pthread_mutex_trylock(self.raw()) } {
                0 => Ok(Some(LockOutcome::Acquired)),
                libc::EBUSY => Ok(None),
                libc::EOWNERDEAD => Ok(Some(LockOutcome::OwnerDied)),
                libc::ENOTRECOVERABLE => {
                    self.release_unrecoverable();
                    Err(Errno::NOTRECOVERABLE)
                }
                e => Err(Errno::from_raw_os_error(e)),
            }
        }
        #[cfg(not(multiproc_glibc))]
        {
            self.try_lock()
        }
    }

    /// Whether the mutex looks held: a hint read without locking, for the "test" of test and
    /// test-and-set (the lock attempt that follows decides). `None` where the libc's layout is
    /// not known (only glibc's is; see the `glibc` layout notes in this file).
    ///
    /// On glibc this reads the owner field of the lock word, which turns free exactly when the
    /// holder's unlock is done, so a spinner that tries only when this says `Some(false)` tries
    /// exactly when a `trylock` can succeed. A holder that died leaves its thread id out of the
    /// word (the kernel sets "owner died" instead), so the mutex then looks free and the lock
    /// attempt reports [`LockOutcome::OwnerDied`]. A relaxed load: no system call, no write.
    #[inline]
    #[must_use]
    pub fn looks_locked(&self) -> Option<bool> {
        #[cfg(multiproc_glibc)]
        {
            Some(self.lock_word().load(Ordering::Relaxed) & glibc::TID_MASK != 0)
        }
        #[cfg(not(multiproc_glibc))]
        {
            None
        }
    }

    /// glibc's lock word (see the `glibc` layout notes in this file).
    #[cfg(multiproc_glibc)]
    #[inline]
    fn lock_word(&self) -> &AtomicU32 {
        // SAFETY: `self.inner` is an `UnsafeCell<pthread_mutex_t>` (the whole of this
        // `repr(C)` type), initialised (type invariant), and glibc keeps its `int` lock word at
        // `LOCK_WORD_OFFSET`, in bounds and aligned for an `AtomicU32` (asserted above); the
        // `UnsafeCell` makes shared mutation through it sound, it lives as long as `&self`, and
        // every access to that word (glibc's, the kernel's, ours) is atomic.
        unsafe {
            AtomicU32::from_ptr(self.raw().cast::<u8>().add(glibc::LOCK_WORD_OFFSET).cast::<u32>())
        }
    }

    /// After glibc's `pthread_mutex_trylock` returned `ENOTRECOVERABLE` (see
    /// [`try_lock_quiet`](Self::try_lock_quiet)): if the lock word still names the calling
    /// thread, clears it and wakes its sleepers, as glibc's unlock of a robust mutex does.
    #[cfg(multiproc_glibc)]
    #[cold]
    fn release_unrecoverable(&self) {
        let word = self.lock_word();
        let me = crate::process::thread::gettid().as_raw_nonzero().get() as u32;
        let mut old = word.load(Ordering::Relaxed);
        while old & glibc::TID_MASK == me {
            match word.compare_exchange(old, 0, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    if old & glibc::WAITERS != 0 {
                        let _ = crate::sync::futex::futex_wake_all(word);
                    }
                    return;
                }
                Err(now) => old = now,
            }
        }
    }

    /// `pthread_mutex_consistent(self)` — marks the state protected by the mutex as repaired
    /// after [`LockOutcome::OwnerDied`].
    ///
    /// Call it while holding the mutex, after a lock call returned
    /// [`LockOutcome::OwnerDied`] and the protected data has been checked or repaired; then
    /// [`unlock`](Self::unlock) releases the mutex normally. Without it, unlocking leaves the
    /// mutex not recoverable. (glibc does not check that the caller is the holder: calling it on
    /// a mutex another thread recovered is a logic error that glibc does not catch; musl
    /// refuses it with [`Errno::PERM`].)
    ///
    /// # Errors
    /// - [`Errno::INVAL`]: the mutex is not in the "owner died" state (no previous owner died,
    ///   or `consistent()` was already called), or (glibc) it is not recoverable.
    /// - [`Errno::PERM`] (musl): the mutex is in the "owner died" state but the calling thread
    ///   does not hold it, or it is not recoverable (musl marks such a mutex as held by no live
    ///   thread, and checks the holder before the state). POSIX names only `EINVAL`; the
    ///   error differs between libcs, so treat any error as "nothing to make consistent".
    ///
    /// # References
    /// - [POSIX `pthread_mutex_consistent`]
    /// - [Linux `pthread_mutex_consistent(3)`]
    ///
    /// [POSIX `pthread_mutex_consistent`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_consistent.html
    /// [Linux `pthread_mutex_consistent(3)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_consistent.3.html
    #[doc(alias = "pthread_mutex_consistent")]
    pub fn consistent(&self) -> Result<()> {
        // SAFETY: `raw()` is an initialised mutex (type invariant).
        cvt_nz(unsafe { libc::pthread_mutex_consistent(self.raw()) })
    }

    /// `pthread_mutex_unlock(self)` — releases the mutex held by the calling thread.
    ///
    /// Safe to call at any time: the mutex is robust and error-checking, and for such mutexes
    /// POSIX requires libc to refuse an unlock by a thread that does not hold it (glibc and musl
    /// compare the lock word's owner thread id with the caller's). A non-owner's unlock is
    /// therefore an error, never undefined behaviour, and leaves the mutex as it was.
    ///
    /// After [`LockOutcome::OwnerDied`], call [`consistent`](Self::consistent) first: unlocking
    /// without it succeeds but makes the mutex not recoverable.
    ///
    /// # Errors
    /// - [`Errno::PERM`]: the calling thread does not hold the mutex (it is free, or another
    ///   thread or process holds it).
    ///
    /// # References
    /// - [POSIX `pthread_mutex_unlock`]
    /// - [Linux `pthread_mutex_unlock(3p)`]
    ///
    /// [POSIX `pthread_mutex_unlock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutex_unlock.html
    /// [Linux `pthread_mutex_unlock(3p)`]: https://man7.org/linux/man-pages/man3/pthread_mutex_unlock.3p.html
    #[doc(alias = "pthread_mutex_unlock")]
    pub fn unlock(&self) -> Result<()> {
        // SAFETY: `raw()` is an initialised robust error-checking mutex (type invariant), for
        // which libc checks ownership instead of assuming it.
        cvt_nz(unsafe { libc::pthread_mutex_unlock(self.raw()) })
    }
}

#[cfg(test)]
mod tests {
    //! In-process checks of the `pthread_mutex_timedlock` fallback, which only musl builds use
    //! (and so the cross-process suite on glibc never reaches).
    extern crate std;

    use core::time::Duration;
    use std::boxed::Box;
    use std::sync::mpsc;

    use super::*;

    /// A heap-allocated, initialised mutex (threads of one process share the heap).
    fn new_mutex() -> &'static RobustMutex {
        let slot: &'static mut MaybeUninit<RobustMutex> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        // SAFETY: fresh, exclusively owned, leaked (never moves, never freed) memory.
        unsafe { RobustMutex::init(slot.as_mut_ptr()) }.unwrap();
        // SAFETY: initialised just above.
        unsafe { slot.assume_init_ref() }
    }

    #[test]
    fn quiet_trylock_takes_a_free_mutex_and_reports_a_busy_or_own_one() {
        let m = new_mutex();
        assert_eq!(m.try_lock_quiet(), Ok(Some(LockOutcome::Acquired)));
        // glibc: the owner's relock is EDEADLK; musl: busy.
        assert!(matches!(m.try_lock_quiet(), Err(Errno::DEADLK) | Ok(None)));
        let (held_tx, held_rx) = mpsc::channel();
        std::thread::spawn(move || {
            held_tx.send(m.try_lock_quiet()).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(held_rx.recv().unwrap(), Ok(None));
        m.unlock().unwrap();
    }

    #[cfg(multiproc_glibc)]
    #[test]
    fn glibc_lock_word_names_the_holder() {
        let m = new_mutex();
        assert_eq!(m.looks_locked(), Some(false));
        assert_eq!(m.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
        assert_eq!(m.looks_locked(), Some(true));
        let me = crate::process::thread::gettid().as_raw_nonzero().get() as u32;
        assert_eq!(m.lock_word().load(Ordering::Relaxed) & glibc::TID_MASK, me);
        m.unlock().unwrap();
        assert_eq!(m.looks_locked(), Some(false));
        assert_eq!(m.lock_word().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn realtime_fallback_locks_a_free_mutex_and_times_out_on_a_held_one() {
        let m = new_mutex();
        let d = Deadline::after(Some(Duration::from_millis(50)));
        assert_eq!(m.lock_until_realtime(d), Ok(LockOutcome::Acquired));
        assert_eq!(m.lock_until_realtime(d), Err(Errno::DEADLK));

        let (held_tx, held_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        m.unlock().unwrap();
        let t = std::thread::spawn(move || {
            assert_eq!(m.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            m.unlock().unwrap();
        });
        held_rx.recv().unwrap();
        let start = std::time::Instant::now();
        let d = Deadline::after(Some(Duration::from_millis(100)));
        assert_eq!(m.lock_until_realtime(d), Err(Errno::TIMEDOUT));
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(d.has_expired());
        let zero = Deadline::after(Some(Duration::ZERO));
        assert_eq!(m.lock_until_realtime(zero), Err(Errno::TIMEDOUT));
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(m.lock_until_realtime(zero), Ok(LockOutcome::Acquired));
        m.unlock().unwrap();
    }
}
