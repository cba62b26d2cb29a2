//! Plain file-descriptor calls: one-call reads and writes (for callers with their own retry
//! policy, such as non-blocking loops), positioned reads and writes, sizes, descriptor flags,
//! closing, anonymous files, `eventfd`, and the `stat` identity of a path.
//!
//! Each function is one system call (or two, for a fallback or a read-modify-write of flags),
//! reports failure as [`Errno`](crate::Errno) and does not retry `EINTR` unless its docs say
//! so. Async-signal-safe; nothing allocates.
#![allow(unsafe_code)]

use core::ffi::CStr;
use core::mem::MaybeUninit;

use crate::fd::{BorrowedFd, IntoRawFd, OwnedFd, RawFd, from_rx, rx};
use rustix::fs::{MemfdFlags, Mode, OFlags};

use crate::cvt::cvt;
use crate::errno::{IntoErrno, Result};

/// `read(fd, buf)`, once: the number of bytes read, 0 at end of file.
///
/// # Errors
/// As `read(2)`, including `EINTR` and `EAGAIN`.
#[inline]
pub fn read_once(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    rustix::io::read(rx(fd), buf).errno()
}

/// `read(fd, buf)` into uninitialised memory, once: the number of bytes read (the first that
/// many of `buf` are then initialised), 0 at end of file.
///
/// # Errors
/// As `read(2)`, including `EINTR` and `EAGAIN`.
#[inline]
pub fn read_uninit(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> Result<usize> {
    rustix::io::read(rx(fd), buf).map(|(init, _)| init.len()).errno()
}

/// `write(fd, buf)`, once: the number of bytes written.
///
/// # Errors
/// As `write(2)`, including `EINTR`, `EAGAIN` and `EPIPE` (a pipe's `SIGPIPE` is not
/// suppressed: use [`stream::write_all`](super::stream::write_all) for pipes and sockets).
#[inline]
pub fn write_once(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize> {
    rustix::io::write(rx(fd), buf).errno()
}

/// `pread(fd, buf, offset)`, once: the number of bytes read, 0 at end of file.
///
/// # Errors
/// As `pread(2)`, including `EINTR`.
#[inline]
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize> {
    rustix::io::pread(rx(fd), buf, offset).errno()
}

/// `pread(fd, buf, offset)` into uninitialised memory, once: the number of bytes read (the
/// first that many of `buf` are then initialised).
///
/// # Errors
/// As `pread(2)`, including `EINTR`.
#[inline]
pub fn pread_uninit(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>], offset: u64) -> Result<usize> {
    rustix::io::pread(rx(fd), buf, offset).map(|(init, _)| init.len()).errno()
}

/// `pwrite(fd, buf, offset)`, once: the number of bytes written.
///
/// # Errors
/// As `pwrite(2)`, including `EINTR`.
#[inline]
pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> Result<usize> {
    rustix::io::pwrite(rx(fd), buf, offset).errno()
}

/// `ftruncate(fd, len)`.
///
/// # Errors
/// As `ftruncate(2)`.
#[inline]
pub fn truncate(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    rustix::fs::ftruncate(rx(fd), len).errno()
}

/// The size of the file `fd` refers to (`fstat`'s `st_size`; 0 if negative).
///
/// # Errors
/// As `fstat(2)`.
#[inline]
pub fn file_size(fd: BorrowedFd<'_>) -> Result<u64> {
    rustix::fs::fstat(rx(fd)).map(|st| u64::try_from(st.st_size).unwrap_or(0)).errno()
}

/// The `(st_dev, st_ino)` identity of the file at `path` (following symlinks).
///
/// # Errors
/// As `stat(2)`.
#[inline]
pub fn file_identity(path: &CStr) -> Result<(u64, u64)> {
    rustix::fs::stat(path).map(|st| (st.st_dev, st.st_ino)).errno()
}

/// `open(path, O_RDONLY | O_CLOEXEC)`.
///
/// # Errors
/// As `open(2)`.
#[inline]
pub fn open_read_only(path: &CStr) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map(from_rx).errno()
}

/// An anonymous read-write file that vanishes with its last descriptor: a close-on-exec
/// `memfd_create(name)`, or an unnamed `O_TMPFILE` in `/dev/shm` or `/tmp` where memfds are
/// not available (the memfd's error is reported if neither works).
///
/// # Errors
/// As `memfd_create(2)`.
pub fn anonymous_file(name: &CStr) -> Result<OwnedFd> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC).map(from_rx).errno().or_else(|e| {
        [c"/dev/shm", c"/tmp"]
            .into_iter()
            .find_map(|dir| {
                rustix::fs::open(
                    dir,
                    OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                    Mode::RUSR | Mode::WUSR,
                )
                .ok()
                .map(from_rx)
            })
            .ok_or(e)
    })
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: a counter to wake a `poll`er with.
///
/// # Errors
/// As `eventfd(2)`.
#[inline]
pub fn eventfd_nonblocking() -> Result<OwnedFd> {
    rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )
    .map(from_rx)
    .errno()
}

/// `fcntl(fd, F_SETFL, flags | O_NONBLOCK)` — switches `fd` to non-blocking (`true`) or
/// blocking (`false`) mode.
///
/// The flag belongs to the open file description: it is shared with every duplicate of the fd,
/// including the copies a forked child inherited. Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/fcntl.html
/// [Linux]: https://man7.org/linux/man-pages/man2/fcntl.2.html
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> Result<()> {
    let flags = rustix::fs::fcntl_getfl(rx(fd)).errno()?;
    let wanted = if nonblocking { flags | OFlags::NONBLOCK } else { flags - OFlags::NONBLOCK };
    if wanted != flags { rustix::fs::fcntl_setfl(rx(fd), wanted).errno() } else { Ok(()) }
}

/// `fcntl(fd, F_SETFD, FD_CLOEXEC or 0)` — whether `fd` is closed when this process runs
/// `execve`.
///
/// Unlike the non-blocking flag, close-on-exec belongs to this descriptor alone, not to its
/// duplicates. Clearing it is how a descriptor is handed to a program started with `execve`.
/// Async-signal-safe (so usable between `fork` and `execve`).
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/fcntl.html
/// [Linux]: https://man7.org/linux/man-pages/man2/fcntl.2.html
pub fn set_cloexec(fd: BorrowedFd<'_>, cloexec: bool) -> Result<()> {
    let flags = if cloexec { rustix::io::FdFlags::CLOEXEC } else { rustix::io::FdFlags::empty() };
    rustix::io::fcntl_setfd(rx(fd), flags).errno()
}

/// `close(fd)` — closes `fd` and reports what `close(2)` said (dropping an `OwnedFd` ignores
/// it). The descriptor is gone whatever the result: on Linux, `close` releases it even when it
/// reports `EINTR` or `EIO`, so it is never retried. Async-signal-safe.
///
/// # Errors
/// The error of `close(2)`, such as [`Errno::IO`](crate::Errno::IO) from a file system that
/// failed to write back.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/close.html
/// [Linux]: https://man7.org/linux/man-pages/man2/close.2.html
pub fn close(fd: OwnedFd) -> Result<()> {
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` was just released by an `OwnedFd`, so it is open and owned by nobody else.
    cvt(unsafe { libc::close(raw) }).map(drop)
}

/// `close(fd)` — closes a descriptor the calling process inherited and must not keep,
/// ignoring errors.
///
/// Meant for a freshly forked child that drops, before running anything else, descriptors its
/// parent registered as its own (Linux has no `O_CLOFORK`). An error changes nothing worth
/// reporting: `EBADF` means the descriptor was not open, and on Linux the descriptor is
/// released even when `close` reports `EINTR` or `EIO`, so it is never retried (a retry could
/// close a descriptor another thread just opened under the same number).
///
/// Async-signal-safe.
///
/// # Safety
/// - Nothing in the calling process may use or close `fd` afterwards under the belief that it
///   still refers to the same open file: the number may be reused by the next `open`.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/close.html
/// [Linux]: https://man7.org/linux/man-pages/man2/close.2.html
#[doc(alias = "close")]
#[inline]
pub unsafe fn close_inherited(fd: RawFd) {
    // SAFETY: closing a descriptor number is memory-safe; that nothing else relies on the
    // number afterwards is this function's contract, passed to the caller.
    let _ = unsafe { libc::close(fd) };
}

/// `ioctl(fd, FIONREAD, &n)` — the number of bytes that can be read from `fd` without blocking.
///
/// Works on pipes and sockets (where it is also called `SIOCINQ`). The answer may be stale by
/// the time it is used if other processes read or write the same fd. Not in POSIX.
/// Async-signal-safe.
///
/// # References
/// - POSIX: none (`FIONREAD` is a Linux and BSD extension)
/// - [Linux `ioctl(2)`], [Linux `unix(7)`] (`SIOCINQ`)
///
/// [Linux `ioctl(2)`]: https://man7.org/linux/man-pages/man2/ioctl.2.html
/// [Linux `unix(7)`]: https://man7.org/linux/man-pages/man7/unix.7.html
#[doc(alias = "FIONREAD")]
pub fn bytes_available(fd: BorrowedFd<'_>) -> Result<usize> {
    let n = rustix::io::ioctl_fionread(rx(fd)).errno()?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
