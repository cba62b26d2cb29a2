//! Waiting for children: reaping one and decoding how it ended.
//!
//! - [`waitpid`] reaps one specific child and decodes how it ended into an [`ExitStatus`]
//!   (`Exited(code)` or `Signaled(signal)`, with Python's `exitcode` convention available as
//!   [`ExitStatus::exitcode`]); [`peek_exit`] looks without reaping.
//! - [`wait_deadline`] waits for one child until a [`Deadline`]: on a [`Pidfd`] where the kernel
//!   has them (Linux 5.3+), by `WNOHANG` polling with a short exponential backoff otherwise.
//!
//! # Invariants kept by this module
//!
//! - Only a specific child is ever waited for: never `waitpid(-1)`, which would steal the
//!   statuses of children that other code owns.
//! - `EINTR` is retried, with the remaining time for timed waits.
//! - `ECHILD` is returned as [`Errno::CHILD`](crate::Errno::CHILD); callers treat it as
//!   "exited, status unknown" (the child was reaped elsewhere, or `SIGCHLD` is ignored so the
//!   kernel reaps it).
//! - Stopped and continued children are not exits: they are never reported as one.
//! - Everything here is async-signal-safe and allocation-free, so a fork server forked from a
//!   multithreaded process may use it.

use core::fmt;
use core::time::Duration;

use rustix::process::{WaitId, WaitIdOptions, WaitOptions};
use rustix::thread::{ClockId, clock_nanosleep_relative};

use super::pidfd::Pidfd;
use crate::cvt::retry_eintr;
use crate::errno::{IntoErrno, Result};
use crate::fd::AsFd;
use crate::io::poll::wait_readable;
use crate::time::{Deadline, Timespec};
use crate::{Pid, Signal};

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit`/`_exit` with this code (only the low 8 bits reach the parent: 0..=255).
    Exited(i32),
    /// It was killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// Decodes a raw `wait` status word; `None` for "stopped" and "continued", which are not
    /// exits.
    ///
    /// Async-signal-safe.
    #[must_use]
    pub const fn from_raw(status: i32) -> Option<ExitStatus> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ExitStatus::Signaled(libc::WTERMSIG(status)))
        } else {
            None
        }
    }

    /// Python's `Process.exitcode`: the exit code, or `-signal` for a child killed by a signal
    /// (`-9` for `SIGKILL`).
    ///
    /// Async-signal-safe.
    #[must_use]
    pub const fn exitcode(&self) -> i32 {
        match *self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => -signal,
        }
    }

    /// Whether the child exited with code 0.
    ///
    /// Async-signal-safe.
    #[must_use]
    pub const fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }
}

/// `exit code 3`, `killed by signal 9 (SIGKILL)`; no allocation.
impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(signal) => {
                write!(f, "killed by signal {signal}")?;
                // `SIGKILL`, `SIGRTMIN+2`: the name as `Signal` prints it.
                match Signal::from_raw(signal) {
                    Some(signal) => write!(f, " ({signal})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// `waitpid(pid, &status, block ? 0 : WNOHANG)` — reaps the child `pid` if it has exited.
///
/// Returns `Ok(Some(status))` once the child has ended (it is then reaped: its id may be reused
/// at once), `Ok(None)` if it is still running and `block` is false. With `block`, waits until it
/// ends. `EINTR` is retried. A child that stops or continues (job control, or a ptrace stop when
/// the caller traces it) is not an exit: a blocking call keeps waiting, a non-blocking one
/// returns `Ok(None)`.
///
/// `pid` is always one specific child: this never waits for "any child".
///
/// Async-signal-safe.
///
/// # Errors
///
/// - [`Errno::CHILD`](crate::Errno::CHILD): `pid` is not an unreaped child of the caller. For a
///   child the caller did create, read this as **"exited, status unknown"**: it was reaped by
///   other code (a `waitpid(-1)` elsewhere), or `SIGCHLD` is set to `SIG_IGN` so the kernel
///   reaped it.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/waitpid.html
/// [Linux]: https://man7.org/linux/man-pages/man2/waitpid.2.html
pub fn waitpid(pid: Pid, block: bool) -> Result<Option<ExitStatus>> {
    let options = if block { WaitOptions::empty() } else { WaitOptions::NOHANG };
    loop {
        match retry_eintr(|| rustix::process::waitpid(Some(pid.to_rustix()), options).errno())? {
            None => return Ok(None),
            Some((_, status)) => {
                if let Some(exit) = ExitStatus::from_raw(status.as_raw()) {
                    return Ok(Some(exit));
                }
                // Stopped or continued: not an exit.
                if !block {
                    return Ok(None);
                }
            }
        }
    }
}

/// `waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT)` — whether the child `pid` has
/// ended, **without reaping it**: a later [`waitpid`] still collects its status.
///
/// Returns the exit status the child would report (`Some`), or `None` while it is still
/// running. Async-signal-safe.
///
/// # Errors
///
/// - [`Errno::CHILD`](crate::Errno::CHILD): `pid` is not an unreaped child of the caller
///   ("exited, status unknown", as for [`waitpid`]).
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/waitid.html
/// [Linux]: https://man7.org/linux/man-pages/man2/waitid.2.html
#[doc(alias = "waitid")]
pub fn peek_exit(pid: Pid) -> Result<Option<ExitStatus>> {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    let Some(status) =
        retry_eintr(|| rustix::process::waitid(WaitId::Pid(pid.to_rustix()), options).errno())?
    else {
        return Ok(None);
    };
    if let Some(code) = status.exit_status() {
        return Ok(Some(ExitStatus::Exited(code)));
    }
    Ok(status.terminating_signal().map(ExitStatus::Signaled))
}

/// First sleep of the polling fallback in [`wait_deadline`].
const BACKOFF_MIN: Duration = Duration::from_micros(50);
/// Longest sleep of the polling fallback: the worst extra latency in noticing an exit.
const BACKOFF_MAX: Duration = Duration::from_millis(10);

/// `poll(pidfd)` + `waitpid(pid, WNOHANG)` — waits for the child `pid` to exit until `deadline`,
/// and reaps it if it did.
///
/// Returns `Ok(Some(status))` if the child ended in time (it is then reaped), `Ok(None)` if the
/// deadline passed first: the child is then **not** reaped and may still be running. A zero
/// deadline checks once; [`Deadline::FOREVER`] is a blocking [`waitpid`].
///
/// With `pidfd` (which must refer to `pid`), sleeps in `poll` on it, retrying `EINTR` with the
/// time that is left. Without one (on kernels before 5.3, see
/// [`is_pidfd_available`](super::pidfd::is_pidfd_available)), polls `waitpid(WNOHANG)` with an
/// exponential backoff sleep from 50 µs up to 10 ms, never sleeping past the deadline; an exit
/// is then noticed up to 10 ms late.
///
/// Async-signal-safe (`poll`, `clock_nanosleep`, `waitpid`, `clock_gettime`).
///
/// # Errors
///
/// - [`Errno::CHILD`](crate::Errno::CHILD): `pid` is not an unreaped child of the caller; for a
///   child the caller did create, read it as "exited, status unknown" (see [`waitpid`]).
///
/// # References
/// - [POSIX `waitpid`]
/// - [Linux `pidfd_open(2)`] (polling a pidfd)
/// - [Linux `waitpid(2)`]
///
/// [POSIX `waitpid`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/waitpid.html
/// [Linux `pidfd_open(2)`]: https://man7.org/linux/man-pages/man2/pidfd_open.2.html
/// [Linux `waitpid(2)`]: https://man7.org/linux/man-pages/man2/waitpid.2.html
pub fn wait_deadline(
    pid: Pid,
    pidfd: Option<&Pidfd>,
    deadline: Deadline,
) -> Result<Option<ExitStatus>> {
    if let Some(status) = waitpid(pid, false)? {
        return Ok(Some(status));
    }
    if deadline.is_forever() {
        return waitpid(pid, true);
    }
    match pidfd {
        Some(pidfd) => wait_pidfd(pid, pidfd, deadline),
        None => wait_polling(pid, deadline),
    }
}

/// The pidfd half of [`wait_deadline`]; `deadline` is finite.
fn wait_pidfd(pid: Pid, pidfd: &Pidfd, deadline: Deadline) -> Result<Option<ExitStatus>> {
    let mut backoff = BACKOFF_MIN;
    loop {
        let left = deadline.remaining().unwrap_or(Duration::MAX);
        if left.is_zero() {
            // Time is up: one last look, so an exit right at the deadline is not missed.
            return waitpid(pid, false);
        }
        // `poll` retries `EINTR` and early wake-ups itself: `false` means time is up.
        if !wait_readable(pidfd.as_fd(), deadline)? {
            continue;
        }
        if let Some(status) = waitpid(pid, false)? {
            return Ok(Some(status));
        }
        // Readable but not (yet) reapable: not expected, but never spin on it.
        sleep(backoff.min(left));
        backoff = backoff.saturating_mul(2).min(BACKOFF_MAX);
    }
}

/// The fallback half of [`wait_deadline`]: `WNOHANG` polling with backoff; `deadline` is finite.
fn wait_polling(pid: Pid, deadline: Deadline) -> Result<Option<ExitStatus>> {
    let mut backoff = BACKOFF_MIN;
    loop {
        let left = deadline.remaining().unwrap_or(Duration::MAX);
        if left.is_zero() {
            return waitpid(pid, false);
        }
        sleep(backoff.min(left));
        if let Some(status) = waitpid(pid, false)? {
            return Ok(Some(status));
        }
        backoff = backoff.saturating_mul(2).min(BACKOFF_MAX);
    }
}

/// Sleeps for about `d` on `CLOCK_MONOTONIC`; an interrupted sleep just returns early (callers
/// loop and re-read the clock).
fn sleep(d: Duration) {
    let ts = to_timespec(d);
    let result = clock_nanosleep_relative(ClockId::Monotonic, &ts.to_rustix());
    debug_assert!(!matches!(result, rustix::thread::NanosleepRelativeResult::Err(_)));
}

/// A relative `Duration` as a `timespec`, saturating at the largest one.
fn to_timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_status_words_decode() {
        // Exit code 3: (3 << 8); SIGKILL: 9; stopped by SIGSTOP: 0x137f; continued: 0xffff.
        assert_eq!(ExitStatus::from_raw(3 << 8), Some(ExitStatus::Exited(3)));
        assert_eq!(ExitStatus::from_raw(9), Some(ExitStatus::Signaled(9)));
        assert_eq!(ExitStatus::from_raw(9 | 0x80), Some(ExitStatus::Signaled(9)));
        assert_eq!(ExitStatus::from_raw((libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(ExitStatus::from_raw(0xffff), None);
    }

    #[test]
    fn statuses_print_with_signal_names() {
        extern crate alloc;
        use alloc::format;
        assert_eq!(format!("{}", ExitStatus::Exited(3)), "exit code 3");
        let kill = ExitStatus::Signaled(libc::SIGKILL);
        assert_eq!(format!("{kill}"), format!("killed by signal {} (SIGKILL)", libc::SIGKILL));
        let rt = ExitStatus::Signaled(libc::SIGRTMIN() + 2);
        assert_eq!(
            format!("{rt}"),
            format!("killed by signal {} (SIGRTMIN+2)", libc::SIGRTMIN() + 2)
        );
        assert_eq!(format!("{}", ExitStatus::Signaled(1000)), "killed by signal 1000");
    }

    #[test]
    fn timespec_conversion_saturates() {
        let ts = to_timespec(Duration::new(3, 5));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 5));
        assert_eq!(to_timespec(Duration::MAX).tv_sec, i64::MAX);
    }
}
