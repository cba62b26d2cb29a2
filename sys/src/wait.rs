//! Waiting for children, signalling them, and pidfds.
//!
//! - [`waitpid`] reaps one specific child and decodes how it ended into an [`ExitStatus`]
//!   (`Exited(code)` or `Signaled(signal)`, with Python's `exitcode` convention available as
//!   [`ExitStatus::exitcode`]).
//! - [`wait_deadline`] waits for one child until a [`Deadline`]: on a [`Pidfd`] where the kernel
//!   has them (Linux 5.3+), by `WNOHANG` polling with a short exponential backoff otherwise.
//! - [`kill`] and [`Pidfd::send_signal`] send signals; [`signal_from_raw`] and [`signal_name`]
//!   translate signal numbers.
//!
//! # Invariants kept by this module
//!
//! - Only a specific child is ever waited for: never `waitpid(-1)`, which would steal the
//!   statuses of children that other code owns.
//! - `EINTR` is retried, with the remaining time for timed waits.
//! - `ECHILD` is returned as [`Errno::CHILD`]; callers treat it as "exited, status unknown" (the
//!   child was reaped elsewhere, or `SIGCHLD` is ignored so the kernel reaps it).
//! - Stopped and continued children are not exits: they are never reported as one.
//! - Everything here is async-signal-safe and allocation-free, so a fork server forked from a
//!   multithreaded process may use it.
#![allow(unsafe_code)]

use crate::errno::IntoErrno;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};
use core::time::Duration;

use crate::time::Timespec;
use crate::{Pid, Signal};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use rustix::process::{PidfdFlags, WaitId, WaitIdOptions, WaitOptions};
use rustix::thread::{ClockId, clock_nanosleep_relative};

use crate::cvt::retry_eintr;
use crate::errno::{Errno, Result};
use crate::time::Deadline;

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
                if let Some(name) = signal_name(signal) {
                    write!(f, " ({name})")
                } else if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&signal) {
                    write!(f, " (SIGRTMIN+{})", signal - libc::SIGRTMIN())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The standard signals by name. Numbers differ between architectures, so the table is built
/// from libc's constants rather than indexed by number.
static SIGNAL_NAMES: [(i32, &str); 30] = [
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGCHLD, "SIGCHLD"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGSTOP, "SIGSTOP"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
    (libc::SIGURG, "SIGURG"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSYS, "SIGSYS"),
];

/// The C name of a standard signal number (`9` -> `"SIGKILL"`), or `None` for real-time and
/// unknown numbers.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX `<signal.h>`]
/// - [Linux `signal(7)`]
///
/// [POSIX `<signal.h>`]: https://pubs.opengroup.org/onlinepubs/9799919799/basedefs/signal.h.html
/// [Linux `signal(7)`]: https://man7.org/linux/man-pages/man7/signal.7.html
#[must_use]
pub fn signal_name(signal: i32) -> Option<&'static str> {
    SIGNAL_NAMES.iter().find(|&&(n, _)| n == signal).map(|&(_, name)| name)
}

/// `Signal` from a raw number: [`Signal::from_raw`].
#[must_use]
pub fn signal_from_raw(n: i32) -> Option<Signal> {
    Signal::from_raw(n)
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
/// - [`Errno::CHILD`]: `pid` is not an unreaped child of the caller. For a child the caller did
///   create, read this as **"exited, status unknown"**: it was reaped by other code (a
///   `waitpid(-1)` elsewhere), or `SIGCHLD` is set to `SIG_IGN` so the kernel reaped it.
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
/// - [`Errno::CHILD`]: `pid` is not an unreaped child of the caller ("exited, status unknown",
///   as for [`waitpid`]).
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

/// `kill(pid, signal)` — sends `signal` to the process `pid`.
///
/// Safe against pid reuse only while `pid` is an unreaped child of the caller (a zombie keeps its
/// id); for any other process prefer [`Pidfd::send_signal`].
///
/// Async-signal-safe.
///
/// # Errors
///
/// - [`Errno::SRCH`]: no such process (a zombie still counts as existing).
/// - [`Errno::PERM`]: the caller may not signal it.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/kill.html
/// [Linux]: https://man7.org/linux/man-pages/man2/kill.2.html
#[inline]
pub fn kill(pid: Pid, signal: Signal) -> Result<()> {
    rustix::process::kill_process(pid.to_rustix(), signal.to_rustix()).errno()
}

/// `kill(pid, 0)` — checks that process `pid` exists (a zombie does) and may be signalled,
/// sending nothing.
///
/// # Errors
/// `ESRCH` if there is no such process; `EPERM` if it exists but this process may not signal
/// it.
#[inline]
pub fn probe(pid: Pid) -> Result<()> {
    rustix::process::test_kill_process(pid.to_rustix()).errno()
}

/// A process file descriptor: a handle to one process that cannot be confused with a later
/// process reusing its id.
///
/// Readable (`POLLIN`) once the process has exited, so it can sit in a `poll`/`epoll` set (or a
/// mio/tokio registration) next to pipes. Made by [`pidfd_open`]; closed on drop.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Adopts a descriptor as a pidfd: one received from another process (`SCM_RIGHTS`) that
    /// opened it with [`pidfd_open`]. A descriptor that is not a pidfd makes every call on it
    /// fail (`EBADF` or `EINVAL`); it is never undefined behaviour.
    #[inline]
    #[must_use]
    pub fn from_owned(fd: OwnedFd) -> Pidfd {
        Pidfd(fd)
    }

    /// `pidfd_send_signal(pidfd, signal, NULL, 0)` — sends `signal` to the process this pidfd
    /// refers to, never to a process that reused its id.
    ///
    /// Async-signal-safe.
    ///
    /// # Errors
    ///
    /// - [`Errno::SRCH`]: the process has exited (before or after being reaped).
    /// - [`Errno::PERM`]: the caller may not signal it.
    ///
    /// # References
    /// - [Linux]
    ///
    /// [Linux]: https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html
    #[inline]
    pub fn send_signal(&self, signal: Signal) -> Result<()> {
        rustix::process::pidfd_send_signal(&self.0, signal.to_rustix()).errno()
    }
}

impl AsFd for Pidfd {
    #[inline]
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Pidfd {
    #[inline]
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl From<Pidfd> for OwnedFd {
    #[inline]
    fn from(pidfd: Pidfd) -> OwnedFd {
        pidfd.0
    }
}

/// [`PIDFD_AVAILABLE`] before the first probe.
const PIDFD_UNKNOWN: u8 = 0;
/// [`PIDFD_AVAILABLE`] once `pidfd_open` has been seen to exist.
const PIDFD_YES: u8 = 1;
/// [`PIDFD_AVAILABLE`] once `pidfd_open` has been seen to be missing.
const PIDFD_NO: u8 = 2;

/// Whether the running kernel has `pidfd_open`: one of `PIDFD_UNKNOWN`, `PIDFD_YES`,
/// `PIDFD_NO`. Relaxed ordering suffices: every thread that probes computes the same answer, and
/// the value guards no other memory.
static PIDFD_AVAILABLE: AtomicU8 = AtomicU8::new(PIDFD_UNKNOWN);

/// Whether an error from `pidfd_open` means the call does not exist here: `ENOSYS` from a kernel
/// before 5.3, or `EPERM` from a seccomp filter that blocks unknown system calls (older
/// container runtimes); `pidfd_open` itself never fails with `EPERM`.
fn means_unavailable(e: Errno) -> bool {
    e == Errno::NOSYS || e == Errno::PERM
}

/// `pidfd_open(pid, 0)` — opens a [`Pidfd`] for the process `pid`.
///
/// The descriptor is close-on-exec: the kernel always sets `O_CLOEXEC` on pidfds. For a child,
/// open it before reaping the child (while the id cannot be reused), typically right after
/// [`fork`](crate::fork::fork) in the parent. A pidfd opened for a child that has already exited
/// but is not yet reaped is readable at once.
///
/// Async-signal-safe.
///
/// # Errors
///
/// - [`Errno::NOSYS`] (or [`Errno::PERM`] from a seccomp filter): the kernel has no pidfds
///   (before Linux 5.3); [`is_pidfd_available`] then returns `false` from now on. Use
///   [`wait_deadline`] with `None`.
/// - [`Errno::SRCH`]: no such process.
/// - [`Errno::INVAL`]: `pid` is a thread, not a process.
/// - [`Errno::MFILE`], [`Errno::NFILE`]: descriptor limits.
///
/// # References
/// - [Linux]
///
/// [Linux]: https://man7.org/linux/man-pages/man2/pidfd_open.2.html
pub fn pidfd_open(pid: Pid) -> Result<Pidfd> {
    match rustix::process::pidfd_open(pid.to_rustix(), PidfdFlags::empty()).errno() {
        Ok(fd) => {
            // Store only on the first success: a store on every call would make each one
            // write the cache line that all threads read.
            if PIDFD_AVAILABLE.load(Ordering::Relaxed) != PIDFD_YES {
                PIDFD_AVAILABLE.store(PIDFD_YES, Ordering::Relaxed);
            }
            Ok(Pidfd(fd))
        }
        Err(e) => {
            if means_unavailable(e) {
                PIDFD_AVAILABLE.store(PIDFD_NO, Ordering::Relaxed);
            }
            Err(e)
        }
    }
}

/// `pidfd_open(getpid(), 0)` — tells whether the running kernel supports pidfds (Linux 5.3+).
///
/// The first call probes by opening (and closing) a pidfd for the caller itself; the answer is
/// cached, and [`pidfd_open`] also records what it learns. `ENOSYS`
/// (or `EPERM` from a seccomp filter) means unavailable; any other error means the system call
/// exists. When this is `false`, pass `None` to [`wait_deadline`].
///
/// Async-signal-safe.
///
/// # References
/// - [Linux]
///
/// [Linux]: https://man7.org/linux/man-pages/man2/pidfd_open.2.html
#[must_use]
pub fn is_pidfd_available() -> bool {
    match PIDFD_AVAILABLE.load(Ordering::Relaxed) {
        PIDFD_YES => true,
        PIDFD_NO => false,
        _ => {
            let available =
                match rustix::process::pidfd_open(rustix::process::getpid(), PidfdFlags::empty())
                    .errno()
                {
                    Ok(_fd) => true,
                    Err(e) => !means_unavailable(e),
                };
            let state = if available { PIDFD_YES } else { PIDFD_NO };
            PIDFD_AVAILABLE.store(state, Ordering::Relaxed);
            available
        }
    }
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
/// time that is left. Without one (on kernels before 5.3, see [`is_pidfd_available`]), polls
/// `waitpid(WNOHANG)` with an exponential backoff sleep from 50 µs up to 10 ms, never sleeping
/// past the deadline; an exit is then noticed up to 10 ms late.
///
/// Async-signal-safe (`poll`, `clock_nanosleep`, `waitpid`, `clock_gettime`).
///
/// # Errors
///
/// - [`Errno::CHILD`]: `pid` is not an unreaped child of the caller; for a child the caller did
///   create, read it as "exited, status unknown" (see [`waitpid`]).
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
        let timeout = to_timespec(left);
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout.to_rustix())).errno() {
            // Timed out (or woke early): the loop re-reads the clock.
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) => {
                if let Some(status) = waitpid(pid, false)? {
                    return Ok(Some(status));
                }
                // Readable but not (yet) reapable: not expected, but never spin on it.
                sleep(backoff.min(left));
                backoff = backoff.saturating_mul(2).min(BACKOFF_MAX);
            }
            Err(e) => return Err(e),
        }
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
    fn signal_numbers_translate() {
        assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_from_raw(libc::SIGTERM), Some(Signal::TERM));
        assert_eq!(signal_from_raw(0), None);
        assert_eq!(signal_from_raw(-9), None);
        assert_eq!(signal_from_raw(libc::SIGRTMAX() + 1), None);
        let rt = signal_from_raw(libc::SIGRTMIN()).map(Signal::as_raw);
        assert_eq!(rt, Some(libc::SIGRTMIN()));
        if libc::SIGRTMIN() > 32 {
            // glibc and musl reserve the first real-time signals for themselves.
            assert_eq!(signal_from_raw(32), None);
        }
    }

    #[test]
    fn timespec_conversion_saturates() {
        let ts = to_timespec(Duration::new(3, 5));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 5));
        assert_eq!(to_timespec(Duration::MAX).tv_sec, i64::MAX);
    }
}
