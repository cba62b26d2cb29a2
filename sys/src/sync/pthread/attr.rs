//! RAII guards over `pthread_mutexattr_t` and `pthread_condattr_t`.
//!
//! An attribute object is initialised on the caller's stack, configured with checked calls, used
//! once by `pthread_mutex_init`/`pthread_cond_init`, and destroyed when the guard drops, on the
//! error paths too. The guard borrows the caller's `MaybeUninit` slot, so the attribute object
//! never moves between its `init` and its `destroy`.
//!
//! # References
//! - [POSIX `pthread_mutexattr_init`]
//! - [POSIX `pthread_condattr_init`]
//! - [Linux `pthread_mutexattr_init(3)`]
//! - [Linux `pthread_condattr_init(3p)`]
//!
//! [POSIX `pthread_mutexattr_init`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutexattr_init.html
//! [POSIX `pthread_condattr_init`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_condattr_init.html
//! [Linux `pthread_mutexattr_init(3)`]: https://man7.org/linux/man-pages/man3/pthread_mutexattr_init.3.html
//! [Linux `pthread_condattr_init(3p)`]: https://man7.org/linux/man-pages/man3/pthread_condattr_init.3p.html
#![allow(unsafe_code)]

use core::mem::MaybeUninit;

use crate::cvt::cvt_nz;
use crate::errno::Result;

/// An initialised `pthread_mutexattr_t`, destroyed on drop.
pub(crate) struct MutexAttr<'a>(&'a mut MaybeUninit<libc::pthread_mutexattr_t>);

impl<'a> MutexAttr<'a> {
    /// `pthread_mutexattr_init(slot)` — initialises the attribute object in `slot`.
    pub(crate) fn init(slot: &'a mut MaybeUninit<libc::pthread_mutexattr_t>) -> Result<Self> {
        // SAFETY: `slot` is valid, writable memory for a `pthread_mutexattr_t`; init writes it.
        cvt_nz(unsafe { libc::pthread_mutexattr_init(slot.as_mut_ptr()) })?;
        // The guard is built only once init succeeded, so Drop destroys only initialised objects.
        Ok(MutexAttr(slot))
    }

    /// `pthread_mutexattr_setpshared(attr, PTHREAD_PROCESS_SHARED)` — usable from any process
    /// that maps the mutex.
    pub(crate) fn set_process_shared(&mut self) -> Result<()> {
        // SAFETY: `self.0` holds an attribute object initialised by `init` and not yet destroyed.
        cvt_nz(unsafe {
            libc::pthread_mutexattr_setpshared(self.0.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED)
        })
    }

    /// `pthread_mutexattr_setrobust(attr, PTHREAD_MUTEX_ROBUST)` — a dead owner is reported to
    /// the next locker (`EOWNERDEAD`) instead of hanging it.
    pub(crate) fn set_robust(&mut self) -> Result<()> {
        // SAFETY: as in `set_process_shared`.
        cvt_nz(unsafe {
            libc::pthread_mutexattr_setrobust(self.0.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST)
        })
    }

    /// `pthread_mutexattr_settype(attr, kind)` — the relock/unlock checking behaviour.
    pub(crate) fn set_type(&mut self, kind: libc::c_int) -> Result<()> {
        // SAFETY: as in `set_process_shared`.
        cvt_nz(unsafe { libc::pthread_mutexattr_settype(self.0.as_mut_ptr(), kind) })
    }

    /// The attribute object, for `pthread_mutex_init`.
    pub(crate) fn as_ptr(&self) -> *const libc::pthread_mutexattr_t {
        self.0.as_ptr()
    }
}

impl Drop for MutexAttr<'_> {
    fn drop(&mut self) {
        // SAFETY: the object was initialised by `init` (the guard exists only then) and is
        // destroyed exactly once, here. The call cannot fail on Linux libcs; there is nothing to
        // do if it did.
        unsafe { libc::pthread_mutexattr_destroy(self.0.as_mut_ptr()) };
    }
}

/// An initialised `pthread_condattr_t`, destroyed on drop.
pub(crate) struct CondAttr<'a>(&'a mut MaybeUninit<libc::pthread_condattr_t>);

impl<'a> CondAttr<'a> {
    /// `pthread_condattr_init(slot)` — initialises the attribute object in `slot`.
    pub(crate) fn init(slot: &'a mut MaybeUninit<libc::pthread_condattr_t>) -> Result<Self> {
        // SAFETY: `slot` is valid, writable memory for a `pthread_condattr_t`; init writes it.
        cvt_nz(unsafe { libc::pthread_condattr_init(slot.as_mut_ptr()) })?;
        Ok(CondAttr(slot))
    }

    /// `pthread_condattr_setpshared(attr, PTHREAD_PROCESS_SHARED)` — usable from any process
    /// that maps the condition variable.
    pub(crate) fn set_process_shared(&mut self) -> Result<()> {
        // SAFETY: `self.0` holds an attribute object initialised by `init` and not yet destroyed.
        cvt_nz(unsafe {
            libc::pthread_condattr_setpshared(self.0.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED)
        })
    }

    /// `pthread_condattr_setclock(attr, clock)` — the clock timed waits' deadlines are read on.
    pub(crate) fn set_clock(&mut self, clock: libc::clockid_t) -> Result<()> {
        // SAFETY: as in `set_process_shared`.
        cvt_nz(unsafe { libc::pthread_condattr_setclock(self.0.as_mut_ptr(), clock) })
    }

    /// The attribute object, for `pthread_cond_init`.
    pub(crate) fn as_ptr(&self) -> *const libc::pthread_condattr_t {
        self.0.as_ptr()
    }
}

impl Drop for CondAttr<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised by `init`, destroyed exactly once, here.
        unsafe { libc::pthread_condattr_destroy(self.0.as_mut_ptr()) };
    }
}
