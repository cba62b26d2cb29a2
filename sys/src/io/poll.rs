//! `poll(2)` with deadlines, over the crate's own [`PollFd`] and [`PollFlags`] types (so that no
//! dependency's version leaks into this API), and the one-descriptor waits built on it
//! ([`wait_readable`], [`wait_writable`]).
//!
//! Async-signal-safe: one `ppoll` system call per attempt, no allocation.
#![allow(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;
use core::ops::{BitAnd, BitOr, BitOrAssign};

use crate::errno::{Errno, Result};
use crate::fd::{AsFd, AsRawFd, BorrowedFd};
use crate::time::{Deadline, Timespec, to_libc};

/// The events of a [`PollFd`]: what to wait for, and what happened (`revents`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct PollFlags(i16);

impl PollFlags {
    /// `POLLIN`: there is data to read (or end of file).
    pub const IN: PollFlags = PollFlags(libc::POLLIN);
    /// `POLLPRI`: there is urgent data to read.
    pub const PRI: PollFlags = PollFlags(libc::POLLPRI);
    /// `POLLOUT`: a write would not block.
    pub const OUT: PollFlags = PollFlags(libc::POLLOUT);
    /// `POLLRDHUP`: the peer closed its writing half (stream sockets).
    pub const RDHUP: PollFlags = PollFlags(libc::POLLRDHUP);
    /// `POLLERR` (only in `revents`): an error condition.
    pub const ERR: PollFlags = PollFlags(libc::POLLERR);
    /// `POLLHUP` (only in `revents`): hang up, e.g. every writer of a pipe has gone.
    pub const HUP: PollFlags = PollFlags(libc::POLLHUP);
    /// `POLLNVAL` (only in `revents`): the fd is not open.
    pub const NVAL: PollFlags = PollFlags(libc::POLLNVAL);

    /// No event.
    #[inline]
    #[must_use]
    pub const fn empty() -> PollFlags {
        PollFlags(0)
    }

    /// Whether no bit is set.
    #[inline]
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is set here.
    #[inline]
    #[must_use]
    pub const fn contains(self, other: PollFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set here.
    #[inline]
    #[must_use]
    pub const fn intersects(self, other: PollFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// The raw `short` of `struct pollfd`.
    #[inline]
    #[must_use]
    pub const fn bits(self) -> i16 {
        self.0
    }
}

impl BitOr for PollFlags {
    type Output = PollFlags;
    #[inline]
    fn bitor(self, rhs: PollFlags) -> PollFlags {
        PollFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for PollFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: PollFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for PollFlags {
    type Output = PollFlags;
    #[inline]
    fn bitand(self, rhs: PollFlags) -> PollFlags {
        PollFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for PollFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(PollFlags, &str); 7] = [
            (PollFlags::IN, "IN"),
            (PollFlags::PRI, "PRI"),
            (PollFlags::OUT, "OUT"),
            (PollFlags::RDHUP, "RDHUP"),
            (PollFlags::ERR, "ERR"),
            (PollFlags::HUP, "HUP"),
            (PollFlags::NVAL, "NVAL"),
        ];
        f.write_str("PollFlags(")?;
        let mut first = true;
        let mut rest = self.0;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest:#x}")?;
        }
        f.write_str(")")
    }
}

/// One entry of a [`poll`] call: C's `struct pollfd`, borrowing its fd for `'fd`.
#[repr(transparent)]
pub struct PollFd<'fd> {
    raw: libc::pollfd,
    _fd: PhantomData<BorrowedFd<'fd>>,
}

static_assertions::assert_eq_size!(PollFd<'static>, libc::pollfd);

impl<'fd> PollFd<'fd> {
    /// Waits for `events` on `fd`.
    #[inline]
    pub fn new<F: AsFd>(fd: &'fd F, events: PollFlags) -> PollFd<'fd> {
        PollFd::from_borrowed_fd(fd.as_fd(), events)
    }

    /// Waits for `events` on a borrowed fd.
    #[inline]
    pub fn from_borrowed_fd(fd: BorrowedFd<'fd>, events: PollFlags) -> PollFd<'fd> {
        PollFd {
            raw: libc::pollfd { fd: fd.as_raw_fd(), events: events.0, revents: 0 },
            _fd: PhantomData,
        }
    }

    /// What happened to the fd in the last [`poll`] (empty before any).
    #[inline]
    #[must_use]
    pub fn revents(&self) -> PollFlags {
        PollFlags(self.raw.revents)
    }
}

impl fmt::Debug for PollFd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollFd")
            .field("fd", &self.raw.fd)
            .field("events", &PollFlags(self.raw.events))
            .field("revents", &self.revents())
            .finish()
    }
}

/// `poll(fds, n, timeout)` — waits until one of `fds` is ready or the deadline passes.
///
/// Returns how many entries have non-empty `revents` (read them with [`PollFd::revents`]);
/// `Ok(0)` means the deadline has really passed (checked on `CLOCK_MONOTONIC`; an early return
/// from the kernel is retried). `EINTR` is retried with the remaining time. A zero deadline
/// polls once; [`Deadline::FOREVER`] waits without limit. Async-signal-safe.
///
/// # Errors
/// `EINVAL` if there are more entries than `RLIMIT_NOFILE`, `ENOMEM`.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/poll.html
/// [Linux]: https://man7.org/linux/man-pages/man2/poll.2.html
#[doc(alias = "ppoll")]
pub fn poll(fds: &mut [PollFd<'_>], deadline: Deadline) -> Result<usize> {
    loop {
        let timeout = deadline.remaining().map(|left| {
            to_libc(&Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            })
        });
        let timeout_ptr = timeout.as_ref().map_or(core::ptr::null(), core::ptr::from_ref);
        // SAFETY: `PollFd` is `repr(transparent)` over `libc::pollfd` (size asserted above), so
        // `fds` is a valid, writable array of `fds.len()` pollfds whose fds are borrowed for the
        // call; the timeout pointer is null or points to a live timespec; a null sigmask leaves
        // the signal mask alone.
        let ret = unsafe {
            libc::ppoll(
                fds.as_mut_ptr().cast::<libc::pollfd>(),
                fds.len() as libc::nfds_t,
                timeout_ptr,
                core::ptr::null(),
            )
        };
        match crate::cvt::cvt(ret) {
            Ok(0) if !deadline.has_expired() => continue,
            Err(Errno::INTR) => continue,
            // `ret >= 0` here.
            Ok(n) => return Ok(n as usize),
            Err(e) => return Err(e),
        }
    }
}

/// `poll({fd, POLLIN}, 1, timeout)` — waits until `fd` is readable or the deadline passes.
///
/// Returns `true` when a read would not block: data is available, every writer has gone (the
/// read returns end of file), or the fd has an error (the read reports it); `false` when the
/// deadline has really passed. Retries as [`poll`] does. Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/poll.html
/// [Linux]: https://man7.org/linux/man-pages/man2/poll.2.html
pub fn wait_readable(fd: BorrowedFd<'_>, deadline: Deadline) -> Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    Ok(poll(&mut fds, deadline)? > 0)
}

/// `poll({fd, POLLOUT}, 1, timeout)` — waits until a write to `fd` would not block.
///
/// Returns `true` when there is room, the reader has gone (the write reports `EPIPE`), or the fd
/// has an error; `false` when the deadline has really passed. Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/poll.html
/// [Linux]: https://man7.org/linux/man-pages/man2/poll.2.html
pub fn wait_writable(fd: BorrowedFd<'_>, deadline: Deadline) -> Result<bool> {
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    Ok(poll(&mut fds, deadline)? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_combine_and_print() {
        let f = PollFlags::IN | PollFlags::HUP;
        assert!(f.contains(PollFlags::IN) && f.intersects(PollFlags::HUP | PollFlags::OUT));
        assert!(!f.contains(PollFlags::IN | PollFlags::OUT));
        assert!(PollFlags::empty().is_empty());
        extern crate alloc;
        assert_eq!(alloc::format!("{f:?}"), "PollFlags(IN | HUP)");
    }
}
