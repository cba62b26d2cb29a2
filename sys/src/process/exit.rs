//! Ending the calling process: at once ([`exit_now`], what a forked child does), and what runs
//! when it ends normally ([`at_exit`]).
#![allow(unsafe_code)]

use crate::errno::{Errno, Result};

/// `_exit(code)` — ends the calling process at once.
///
/// Runs no `atexit` handlers, no destructors and no stdio flushes: this is how a forked child
/// ends without repeating the parent's cleanup. Open descriptors are closed by the kernel, the
/// parent receives `SIGCHLD`, and [`waitpid`](super::wait::waitpid) reports
/// [`ExitStatus::Exited`](super::wait::ExitStatus::Exited) with `code & 0xff`.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/_exit.html
/// [Linux]: https://man7.org/linux/man-pages/man2/_exit.2.html
#[doc(alias = "_exit")]
#[inline]
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` accepts any status and never returns; ending the process without running
    // destructors is memory-safe (leaking is safe).
    unsafe { libc::_exit(code) }
}

/// `atexit(handler)` — runs `handler` when the process ends through `exit` (returning from
/// `main`, or `std::process::exit`), after handlers registered later. Never on `_exit`
/// ([`exit_now`]) or death by a signal, so a forked child that ends with [`exit_now`] does not
/// run the handlers it inherited.
///
/// # Errors
/// [`Errno::NOMEM`] if the handler table is full.
///
/// # References
/// - [POSIX]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/atexit.html
pub fn at_exit(handler: extern "C" fn()) -> Result<()> {
    // SAFETY: `handler` is a valid `extern "C" fn()` for the life of the program (a function
    // item); `atexit` only stores it.
    if unsafe { libc::atexit(handler) } == 0 { Ok(()) } else { Err(Errno::NOMEM) }
}
