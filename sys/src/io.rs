//! Plain file-descriptor I/O: one-call reads and writes (for callers with their own retry
//! policy, such as non-blocking loops), positioned reads and writes, sizes, anonymous files,
//! `eventfd`, and the `stat` identity of a path.
//!
//! Each function is one system call (or two, for a fallback), reports failure as [`Errno`](crate::Errno)
//! and does not retry `EINTR` unless its docs say so. Async-signal-safe; nothing allocates.

use core::ffi::CStr;
use core::mem::MaybeUninit;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{MemfdFlags, Mode, OFlags};
use rustix::io::IoSlice;

use crate::errno::{IntoErrno, Result};

/// `read(fd, buf)`, once: the number of bytes read, 0 at end of file.
///
/// # Errors
/// As `read(2)`, including `EINTR` and `EAGAIN`.
#[inline]
pub fn read_once(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    rustix::io::read(fd, buf).errno()
}

/// `read(fd, buf)` into uninitialised memory, once: the number of bytes read (the first that
/// many of `buf` are then initialised), 0 at end of file.
///
/// # Errors
/// As `read(2)`, including `EINTR` and `EAGAIN`.
#[inline]
pub fn read_uninit(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> Result<usize> {
    rustix::io::read(fd, buf).map(|(init, _)| init.len()).errno()
}

/// `write(fd, buf)`, once: the number of bytes written.
///
/// # Errors
/// As `write(2)`, including `EINTR`, `EAGAIN` and `EPIPE` (a pipe's `SIGPIPE` is not
/// suppressed: use [`pipe::write_all`](crate::pipe::write_all) for pipes and sockets).
#[inline]
pub fn write_once(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize> {
    rustix::io::write(fd, buf).errno()
}

/// `sendmsg(fd, bufs, MSG_NOSIGNAL | MSG_DONTWAIT)` on a socket, once: the number of bytes
/// sent. Never blocks and never raises `SIGPIPE`.
///
/// # Errors
/// As `sendmsg(2)`: `EAGAIN` when the socket buffer is full, `EPIPE` when the peer is gone,
/// `EINTR`.
#[inline]
pub fn send_vectored_nonblocking(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> Result<usize> {
    rustix::net::sendmsg(
        fd,
        bufs,
        &mut rustix::net::SendAncillaryBuffer::default(),
        rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT,
    )
    .errno()
}

/// `setsockopt(fd, SOL_SOCKET, SO_SNDBUF, size)`.
///
/// # Errors
/// As `setsockopt(2)`.
#[inline]
pub fn set_send_buffer_size(fd: BorrowedFd<'_>, size: usize) -> Result<()> {
    rustix::net::sockopt::set_socket_send_buffer_size(fd, size).errno()
}

/// `pread(fd, buf, offset)`, once: the number of bytes read, 0 at end of file.
///
/// # Errors
/// As `pread(2)`, including `EINTR`.
#[inline]
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize> {
    rustix::io::pread(fd, buf, offset).errno()
}

/// `pread(fd, buf, offset)` into uninitialised memory, once: the number of bytes read (the
/// first that many of `buf` are then initialised).
///
/// # Errors
/// As `pread(2)`, including `EINTR`.
#[inline]
pub fn pread_uninit(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>], offset: u64) -> Result<usize> {
    rustix::io::pread(fd, buf, offset).map(|(init, _)| init.len()).errno()
}

/// `pwrite(fd, buf, offset)`, once: the number of bytes written.
///
/// # Errors
/// As `pwrite(2)`, including `EINTR`.
#[inline]
pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> Result<usize> {
    rustix::io::pwrite(fd, buf, offset).errno()
}

/// `ftruncate(fd, len)`.
///
/// # Errors
/// As `ftruncate(2)`.
#[inline]
pub fn truncate(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    rustix::fs::ftruncate(fd, len).errno()
}

/// The size of the file `fd` refers to (`fstat`'s `st_size`; 0 if negative).
///
/// # Errors
/// As `fstat(2)`.
#[inline]
pub fn file_size(fd: BorrowedFd<'_>) -> Result<u64> {
    rustix::fs::fstat(fd).map(|st| u64::try_from(st.st_size).unwrap_or(0)).errno()
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
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).errno()
}

/// An anonymous read-write file that vanishes with its last descriptor: a close-on-exec
/// `memfd_create(name)`, or an unnamed `O_TMPFILE` in `/dev/shm` or `/tmp` where memfds are
/// not available (the memfd's error is reported if neither works).
///
/// # Errors
/// As `memfd_create(2)`.
pub fn anonymous_file(name: &CStr) -> Result<OwnedFd> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC).errno().or_else(|e| {
        [c"/dev/shm", c"/tmp"]
            .into_iter()
            .find_map(|dir| {
                rustix::fs::open(
                    dir,
                    OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                    Mode::RUSR | Mode::WUSR,
                )
                .ok()
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
    .errno()
}
