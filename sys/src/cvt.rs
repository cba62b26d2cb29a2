//! Return-value conventions, handled in one place.
//!
//! C calls report failure in one of two ways: `-1` with the code in `errno` (most syscalls and
//! `sem_*`), or the code as the return value (`pthread_*`). These helpers turn both into
//! [`Result`], and [`retry_eintr`] loops a call that `EINTR` interrupted.
//!
//! All of them are async-signal-safe: they read `errno` and nothing else.

use crate::errno::{Errno, Result};

/// Reads the calling thread's `errno`.
///
/// Async-signal-safe.
#[inline]
pub fn errno() -> Errno {
    // SAFETY: `__errno_location` returns a valid pointer to the calling thread's errno on every
    // Linux libc (glibc, musl, bionic); reading it has no other effect.
    let raw = unsafe { *libc::__errno_location() };
    Errno::from_raw_os_error(raw)
}

/// `-1 + errno` convention: `ret == -1` means failure, anything else is the result.
///
/// Async-signal-safe.
#[inline]
pub fn cvt(ret: libc::c_int) -> Result<libc::c_int> {
    if ret == -1 { Err(errno()) } else { Ok(ret) }
}

/// `-1 + errno` convention for calls returning `c_long` (`syscall(2)`).
///
/// Async-signal-safe.
#[inline]
pub fn cvt_long(ret: libc::c_long) -> Result<libc::c_long> {
    if ret == -1 { Err(errno()) } else { Ok(ret) }
}

/// Returned-error-code convention (`pthread_*`): `0` is success, anything else is the error.
///
/// Async-signal-safe.
#[inline]
pub fn cvt_nz(ret: libc::c_int) -> Result<()> {
    if ret == 0 { Ok(()) } else { Err(Errno::from_raw_os_error(ret)) }
}

/// Calls `f` again as long as it fails with `EINTR`.
///
/// For calls with a deadline, pass a closure that recomputes what it needs from the deadline
/// (an absolute deadline needs nothing), so a retry waits only for the time that is left.
///
/// Async-signal-safe if `f` is.
#[inline]
pub fn retry_eintr<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}
