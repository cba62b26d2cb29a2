//! Unix stream sockets: a connected pair, one non-blocking vectored send, the send buffer's
//! size, and telling a socket from other descriptors.
//!
//! For whole-buffer sends see [`stream`](super::stream); for passing descriptors and
//! record-oriented pairs see [`scm`](super::scm). Async-signal-safe; nothing allocates.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::FileType;
use rustix::io::IoSlice;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::errno::{IntoErrno, Result};

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds)` — creates a connected pair of Unix
/// stream sockets.
///
/// Both ends are close-on-exec and blocking; each end reads what the other writes (a duplex
/// pipe). Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/socketpair.html
/// [Linux]: https://man7.org/linux/man-pages/man2/socketpair.2.html
#[inline]
pub fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .errno()
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

/// `fstat(fd, &st)` + `S_ISSOCK(st.st_mode)` — whether `fd` is a socket.
///
/// `false` also when `fstat` fails (which a valid `BorrowedFd` makes unlikely).
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html
/// [Linux]: https://man7.org/linux/man-pages/man2/fstat.2.html
pub fn is_socket(fd: BorrowedFd<'_>) -> bool {
    match rustix::fs::fstat(fd).errno() {
        Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::Socket,
        Err(_) => false,
    }
}
