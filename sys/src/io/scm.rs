//! Passing file descriptors between processes over Unix sockets (`SCM_RIGHTS`), and
//! record-oriented socketpairs to carry them.
//!
//! A file descriptor sent with [`send_fds`] arrives in the receiving process as a new
//! descriptor referring to the same open file description (like `dup`, across processes). This
//! is how a fork server hands the parent one end of a channel to a worker it has just forked:
//! the parent never forks, yet ends up holding a socket to the new process.
//!
//! # Invariants kept by this module
//!
//! - **No allocation**: the control-message buffers live on the stack, sized for [`MAX_FDS`]
//!   descriptors.
//! - **Close-on-exec**: [`recv_fds`] receives with `MSG_CMSG_CLOEXEC`, so a received descriptor
//!   is close-on-exec atomically, and [`seqpacket_pair`] creates its sockets with
//!   `SOCK_CLOEXEC`.
//! - **Nothing leaks**: descriptors that arrive beyond the caller's room are closed, and the
//!   result says so ([`Received::truncated`]).
//! - **No `SIGPIPE`**: [`send_fds`] sends with `MSG_NOSIGNAL`; a dead peer is [`Errno::PIPE`].
//! - `EINTR` is retried. Blocking follows the socket: on a non-blocking socket a call that would
//!   wait fails with [`Errno::AGAIN`].
//!
//! Everything here is async-signal-safe: raw system calls on stack buffers.
//!
//! # References
//! - [POSIX `sendmsg`], [POSIX `recvmsg`]
//! - [Linux `unix(7)`] (`SCM_RIGHTS`), [Linux `cmsg(3)`]
//!
//! [POSIX `sendmsg`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sendmsg.html
//! [POSIX `recvmsg`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/recvmsg.html
//! [Linux `unix(7)`]: https://man7.org/linux/man-pages/man7/unix.7.html
//! [Linux `cmsg(3)`]: https://man7.org/linux/man-pages/man3/cmsg.3.html

use crate::errno::IntoErrno;
use core::mem::MaybeUninit;

use crate::fd::{BorrowedFd, OwnedFd, from_rx, pair_from_rx, rx};
use rustix::io::{IoSlice, IoSliceMut};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::cvt::retry_eintr;
use crate::errno::{Errno, Result};

/// The most descriptors one [`send_fds`] or [`recv_fds`] call carries.
///
/// The control buffers are on the stack, sized for this many.
pub const MAX_FDS: usize = 16;

/// Bytes of control buffer for [`MAX_FDS`] descriptors.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS));

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds)` — creates a connected pair of
/// record-oriented Unix sockets.
///
/// A `SOCK_SEQPACKET` socket keeps message boundaries: each `send` is received by exactly one
/// `recv`, whole (or cut to the receiver's buffer, which [`Received::truncated`] reports), and
/// descriptors sent with a message arrive with that message. End of file is a zero-length
/// receive once the peer has closed. Both ends are close-on-exec and blocking.
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/socketpair.html
/// [Linux]: https://man7.org/linux/man-pages/man2/socketpair.2.html
#[doc(alias = "socketpair")]
#[inline]
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .map(pair_from_rx)
        .errno()
}

/// `sendmsg(sock, {data, SCM_RIGHTS(fds)}, MSG_NOSIGNAL)` — sends `data` and passes `fds` to
/// the peer.
///
/// Returns the number of bytes of `data` sent. On a `SOCK_SEQPACKET` or datagram socket the
/// message goes whole or not at all; on a stream socket a short send is possible, and the
/// descriptors travel with its first byte. The caller keeps its own descriptors: the peer
/// receives duplicates.
///
/// # Errors
/// - [`Errno::INVAL`] if `fds` has more than [`MAX_FDS`] entries, or if `fds` is non-empty but
///   `data` is empty (descriptors must ride on at least one byte).
/// - [`Errno::PIPE`] if the peer has closed (never a `SIGPIPE`).
/// - [`Errno::AGAIN`] on a non-blocking socket whose buffer is full.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sendmsg.html
/// [Linux]: https://man7.org/linux/man-pages/man2/sendmsg.2.html
#[doc(alias = "sendmsg")]
#[doc(alias = "SCM_RIGHTS")]
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
    if fds.len() > MAX_FDS || (!fds.is_empty() && data.is_empty()) {
        return Err(Errno::INVAL);
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    // rustix's borrowed type for each descriptor; the slots past `fds.len()` are never read.
    let mut passed = [rx(sock); MAX_FDS];
    for (slot, fd) in passed.iter_mut().zip(fds) {
        *slot = rx(*fd);
    }
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&passed[..fds.len()])) {
        // Cannot happen: the buffer is sized for MAX_FDS descriptors.
        return Err(Errno::INVAL);
    }
    let iov = [IoSlice::new(data)];
    retry_eintr(|| rustix::net::sendmsg(rx(sock), &iov, &mut control, SendFlags::NOSIGNAL).errno())
}

/// What one [`recv_fds`] call received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes of data written to the buffer; `0` with no descriptors means end of file.
    pub bytes: usize,
    /// How many descriptors were stored, in `fds[..fds]`.
    pub fds: usize,
    /// Something did not fit: the record was longer than the buffer (`MSG_TRUNC`, on record
    /// sockets; the rest of the record is lost), or more descriptors arrived than the caller had
    /// room for (those were closed).
    pub truncated: bool,
}

/// `recvmsg(sock, {buf, control}, MSG_CMSG_CLOEXEC)` — receives data and any descriptors sent
/// with it.
///
/// Stores the received descriptors, close-on-exec, in the first slots of `fds` (overwriting
/// them); descriptors beyond `fds.len()` (or beyond [`MAX_FDS`]) are closed and reported as
/// [`Received::truncated`]. Blocks on a blocking socket until something arrives or the peer
/// closes.
///
/// # Errors
/// [`Errno::AGAIN`] on a non-blocking socket with nothing to receive; any other `recvmsg`
/// error.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/recvmsg.html
/// [Linux]: https://man7.org/linux/man-pages/man2/recvmsg.2.html
#[doc(alias = "recvmsg")]
#[doc(alias = "SCM_RIGHTS")]
pub fn recv_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut [Option<OwnedFd>],
) -> Result<Received> {
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = retry_eintr(|| {
        rustix::net::recvmsg(rx(sock), &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).errno()
    })?;
    let mut stored = 0;
    let mut truncated = msg.flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC);
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            for fd in received {
                match fds.get_mut(stored) {
                    Some(slot) => {
                        *slot = Some(from_rx(fd));
                        stored += 1;
                    }
                    None => {
                        drop(fd);
                        truncated = true;
                    }
                }
            }
        }
    }
    Ok(Received { bytes: msg.bytes, fds: stored, truncated })
}
