//! Unix stream sockets: a connected pair, one non-blocking vectored send, the send buffer's
//! size, and telling a socket from other descriptors.
//!
//! For whole-buffer sends see [`stream`](super::stream); for passing descriptors and
//! record-oriented pairs see [`scm`](super::scm). Async-signal-safe; nothing allocates.

use crate::fd::{BorrowedFd, OwnedFd, pair_from_rx, rx};
use rustix::fs::FileType;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::cvt::cvt_long;
use crate::errno::{IntoErrno, Result};
use crate::fd::AsRawFd;

#[cfg(feature = "std")]
pub use std::io::IoSlice;

#[cfg(not(feature = "std"))]
pub use own::IoSlice;

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
        .map(pair_from_rx)
        .errno()
}

/// `sendmsg(fd, bufs, MSG_NOSIGNAL | MSG_DONTWAIT)` on a socket, once: the number of bytes
/// sent. Never blocks and never raises `SIGPIPE`.
///
/// # Errors
/// As `sendmsg(2)`: `EAGAIN` when the socket buffer is full, `EPIPE` when the peer is gone,
/// `EINTR`.
#[inline]
#[allow(unsafe_code)]
pub fn send_vectored_nonblocking(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> Result<usize> {
    // SAFETY: an all-zero `msghdr` is valid: no address, no control data, no iovecs.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `struct iovec` (std guarantees it for its own; ours is
    // `repr(transparent)` over one); the kernel only reads through the pointer.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
    // The length type differs between libcs (`size_t` on glibc, `int` on musl), hence the
    // clamp and the cast; more buffers than `IOV_MAX` (1024) is `EMSGSIZE` either way.
    msg.msg_iovlen = bufs.len().min(libc::c_int::MAX as usize) as _;
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: `msg` points to `bufs`, which are borrowed for the call; `fd` is open.
    let sent = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    // `sendmsg` returns at most the total length of `bufs`, which fits in `usize`.
    cvt_long(sent as libc::c_long).map(|n| n as usize)
}

/// `setsockopt(fd, SOL_SOCKET, SO_SNDBUF, size)`.
///
/// # Errors
/// As `setsockopt(2)`.
#[inline]
pub fn set_send_buffer_size(fd: BorrowedFd<'_>, size: usize) -> Result<()> {
    rustix::net::sockopt::set_socket_send_buffer_size(rx(fd), size).errno()
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
    match rustix::fs::fstat(rx(fd)).errno() {
        Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::Socket,
        Err(_) => false,
    }
}

#[cfg(not(feature = "std"))]
#[allow(unsafe_code)]
mod own {
    use core::fmt;
    use core::marker::PhantomData;
    use core::ops::Deref;

    /// A buffer for a vectored write: C's `struct iovec` borrowing `&'a [u8]` (as
    /// `std::io::IoSlice`, which it is with the `std` feature).
    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub struct IoSlice<'a> {
        vec: libc::iovec,
        _buf: PhantomData<&'a [u8]>,
    }

    // SAFETY: an `IoSlice` is a shared borrow of bytes (`&[u8]` is `Send` and `Sync`); the raw
    // pointer inside is never written through.
    unsafe impl Send for IoSlice<'_> {}
    // SAFETY: as above.
    unsafe impl Sync for IoSlice<'_> {}

    impl<'a> IoSlice<'a> {
        /// Wraps `buf`.
        #[inline]
        #[must_use]
        pub fn new(buf: &'a [u8]) -> IoSlice<'a> {
            IoSlice {
                vec: libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() },
                _buf: PhantomData,
            }
        }
    }

    impl Deref for IoSlice<'_> {
        type Target = [u8];

        #[inline]
        fn deref(&self) -> &[u8] {
            // SAFETY: `vec` was made from a `&'a [u8]` that is still borrowed.
            unsafe { core::slice::from_raw_parts(self.vec.iov_base.cast::<u8>(), self.vec.iov_len) }
        }
    }

    impl fmt::Debug for IoSlice<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(&**self, f)
        }
    }
}
