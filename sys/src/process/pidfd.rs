//! Process file descriptors: a handle on one process that a later process reusing its id can
//! never be mistaken for (Linux 5.3+), and whether the running kernel has them.
//!
//! A [`Pidfd`] is readable once its process has exited, so
//! [`wait_deadline`](super::wait::wait_deadline) sleeps in `poll` on it; it also sends signals
//! ([`Pidfd::send_signal`]) without the pid-reuse race of [`kill`](super::signal::kill).
//! Everything here is async-signal-safe and allocation-free.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd, from_rx, rx};
use rustix::process::PidfdFlags;

use crate::errno::{Errno, IntoErrno, Result};
use crate::{Pid, Signal};

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
        rustix::process::pidfd_send_signal(rx(self.0.as_fd()), signal.to_rustix()).errno()
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
/// [`fork`](super::fork::fork) in the parent. A pidfd opened for a child that has already exited
/// but is not yet reaped is readable at once.
///
/// Async-signal-safe.
///
/// # Errors
///
/// - [`Errno::NOSYS`] (or [`Errno::PERM`] from a seccomp filter): the kernel has no pidfds
///   (before Linux 5.3); [`is_pidfd_available`] then returns `false` from now on. Use
///   [`wait_deadline`](super::wait::wait_deadline) with `None`.
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
            Ok(Pidfd(from_rx(fd)))
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
/// exists. When this is `false`, pass `None` to [`wait_deadline`](super::wait::wait_deadline).
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
