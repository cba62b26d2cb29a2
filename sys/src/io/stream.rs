//! Whole-buffer reads and writes on byte streams (pipes and stream sockets), never raising
//! `SIGPIPE`.
//!
//! Everything here is **async-signal-safe**: it makes raw system calls (rustix's `linux_raw`
//! backend) or calls the thin libc wrappers `pthread_sigmask`, `sigpending` and `sigtimedwait`,
//! so a freshly forked child of a multithreaded parent may use it. Nothing allocates.
//!
//! # Invariants
//!
//! - **No `SIGPIPE`, ever**: writing to a pipe or socket whose reader is gone fails with
//!   [`Errno::PIPE`]; it never raises `SIGPIPE`, whatever the process's disposition for it (a
//!   library cannot assume the program ignores it). Sockets get `MSG_NOSIGNAL`; other fds are
//!   written with `SIGPIPE` blocked in the calling thread and a `SIGPIPE` the write raised is
//!   consumed before the mask is restored (see [`write_all`]).
//! - **`EINTR` is retried** everywhere.
//! - **Whole buffers**: [`write_all`], [`send_all`] and [`write_all_vectored`] loop over short
//!   writes (a signal, a non-blocking fd, a full socket buffer) until everything is out;
//!   [`read_full`] loops until the buffer is full or the writer has gone. On a non-blocking fd
//!   they wait for readiness with `poll` instead of failing with `EAGAIN`.
//! - **Blocking**: they block until done, as `read(2)`/`write(2)` do: wait for readiness with
//!   [`wait_readable`] or [`poll`](super::poll::poll) first when you
//!   need a bound.
//!
//! Writes of at most [`PIPE_BUF`] bytes to a pipe are atomic; larger ones, and writes to stream
//! sockets at any size, may interleave with other writers' (see
//! [`pipe`](super::pipe#atomicity-pipe_buf)).
//!
//! [`PIPE_BUF`]: super::pipe::PIPE_BUF
//!
//! # References
//! - [POSIX `read`], [POSIX `write`], [POSIX `send`]
//! - [Linux `pipe(7)`], [Linux `unix(7)`]
//!
//! [POSIX `read`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html
//! [POSIX `write`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/write.html
//! [POSIX `send`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/send.html
//! [Linux `pipe(7)`]: https://man7.org/linux/man-pages/man7/pipe.7.html
//! [Linux `unix(7)`]: https://man7.org/linux/man-pages/man7/unix.7.html
#![allow(unsafe_code)]

use core::mem::MaybeUninit;
use core::ptr;

use crate::fd::{BorrowedFd, rx};
use rustix::io::IoSlice;
use rustix::net::{SendAncillaryBuffer, SendFlags};

use super::poll::{wait_readable, wait_writable};
use crate::cvt::{cvt, cvt_nz, retry_eintr};
use crate::errno::{Errno, IntoErrno, Result};
use crate::time::Deadline;

/// How many buffers [`write_all_vectored`] hands to one `sendmsg`/`writev` call.
const MAX_IOV: usize = 16;

/// `read(fd, buf, len)` — reads what is available, at most `buf.len()` bytes.
///
/// Blocks (on a blocking fd) until at least one byte is available or the writer has gone;
/// `Ok(0)` means end of file (every write end is closed) or an empty `buf`. `EINTR` is retried;
/// a non-blocking fd with nothing to read gives [`Errno::AGAIN`]. Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html
/// [Linux]: https://man7.org/linux/man-pages/man2/read.2.html
#[inline]
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    retry_eintr(|| rustix::io::read(rx(fd), &mut *buf).errno())
}

/// `read(fd, buf, len)` in a loop — fills `buf`, stopping early only at end of file.
///
/// Returns the number of bytes read: `buf.len()`, or fewer only if every write end was closed
/// first (`0` if there was nothing at all). `EINTR` is retried. On a non-blocking fd it waits
/// with `poll` instead of failing with `EAGAIN`, so the count is never lost. On an error the
/// bytes already read are in `buf` but their count is not returned. Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/read.html
/// [Linux]: https://man7.org/linux/man-pages/man2/read.2.html
pub fn read_full(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read(fd, &mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::AGAIN) => {
                wait_readable(fd, Deadline::FOREVER)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `send(fd, buf, len, MSG_NOSIGNAL)` in a loop — writes all of `buf` to a socket.
///
/// A peer that has closed its end gives [`Errno::PIPE`] (or [`Errno::CONNRESET`]), never a
/// `SIGPIPE`. Short writes and `EINTR` are retried; on a non-blocking socket it waits with
/// `poll` for room. A non-socket fd gives [`Errno::NOTSOCK`]: use [`write_all`] for fds that may
/// be pipes. On an error, an unknown prefix of `buf` may already have been sent.
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/send.html
/// [Linux]: https://man7.org/linux/man-pages/man2/send.2.html
#[inline]
pub fn send_all(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<()> {
    write_loop(fd, &[buf], Target::Socket)
}

/// `send(fd, buf, len, MSG_NOSIGNAL)`, or `write(fd, buf, len)` with `SIGPIPE` blocked — writes
/// all of `buf` to any fd, without ever raising `SIGPIPE`.
///
/// It tries `send` with `MSG_NOSIGNAL` first; on [`Errno::NOTSOCK`] (a pipe, a file, a tty) it
/// falls back to `write(2)` with `SIGPIPE` suppressed for the calling thread:
///
/// 1. `SIGPIPE` is blocked with `pthread_sigmask`; if it was blocked already, `sigpending`
///    records whether one was already pending (sent by someone else: that one is left alone;
///    while it was unblocked, none can have been pending for this thread);
/// 2. the writes run; a write to a pipe without readers fails with `EPIPE` and leaves a
///    thread-directed `SIGPIPE` pending instead of delivering it;
/// 3. if a write got `EPIPE` and no `SIGPIPE` was pending before, the new one is consumed with
///    `sigtimedwait` and a zero timeout;
/// 4. the previous mask is restored.
///
/// The mask is per thread, so other threads are unaffected. A reader that has gone gives
/// [`Errno::PIPE`], never a signal. Short writes and `EINTR` are retried; on a non-blocking fd
/// it waits with `poll` for room. On an error, an unknown prefix of `buf` may already have been
/// written. Writes of at most [`PIPE_BUF`] bytes to a pipe are atomic (see
/// [`pipe`](super::pipe#atomicity-pipe_buf)). Async-signal-safe.
///
/// # References
/// - [POSIX `send`], [POSIX `write`], [POSIX `pthread_sigmask`], [POSIX `sigtimedwait`]
/// - [Linux `send(2)`], [Linux `write(2)`], [Linux `pthread_sigmask(3)`], [Linux `sigtimedwait(2)`]
///
/// [POSIX `send`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/send.html
/// [POSIX `write`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/write.html
/// [POSIX `pthread_sigmask`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_sigmask.html
/// [POSIX `sigtimedwait`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigtimedwait.html
/// [Linux `send(2)`]: https://man7.org/linux/man-pages/man2/send.2.html
/// [Linux `write(2)`]: https://man7.org/linux/man-pages/man2/write.2.html
/// [Linux `pthread_sigmask(3)`]: https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html
/// [Linux `sigtimedwait(2)`]: https://man7.org/linux/man-pages/man2/sigtimedwait.2.html
/// [`PIPE_BUF`]: super::pipe::PIPE_BUF
#[inline]
pub fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<()> {
    write_loop(fd, &[buf], Target::Any)
}

/// `sendmsg(fd, {iov}, MSG_NOSIGNAL)`, or `writev(fd, iov, n)` with `SIGPIPE` blocked — writes
/// the concatenation of `bufs` to any fd, in as few system calls as possible.
///
/// Up to 16 buffers go out in each call, so a frame header and its payload leave in a single
/// `sendmsg`/`writev` when the fd has room for both (on a pipe, one call of at most
/// [`PIPE_BUF`] bytes in total is atomic). Short writes are resumed exactly where they stopped,
/// in the middle of a buffer if need be. Everything else is as for [`write_all`]: no `SIGPIPE`,
/// [`Errno::PIPE`] for a dead peer, `EINTR` retried, `poll` on a non-blocking fd.
/// Async-signal-safe.
///
/// # References
/// - [POSIX `sendmsg`], [POSIX `writev`]
/// - [Linux `sendmsg(2)`], [Linux `writev(2)`]
///
/// [POSIX `sendmsg`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sendmsg.html
/// [POSIX `writev`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/writev.html
/// [Linux `sendmsg(2)`]: https://man7.org/linux/man-pages/man2/sendmsg.2.html
/// [Linux `writev(2)`]: https://man7.org/linux/man-pages/man2/writev.2.html
/// [`PIPE_BUF`]: super::pipe::PIPE_BUF
#[doc(alias = "writev")]
#[doc(alias = "sendmsg")]
#[inline]
pub fn write_all_vectored(fd: BorrowedFd<'_>, bufs: &[&[u8]]) -> Result<()> {
    write_loop(fd, bufs, Target::Any)
}

/// `writev(fd, iov, n)` with `SIGPIPE` blocked — [`write_all_vectored`] for an fd known not to
/// be a socket (a pipe).
///
/// It skips the `sendmsg` that [`write_all_vectored`] tries first, which on a pipe always fails
/// with `ENOTSOCK` (a wasted system call per write), and goes straight to `writev` with
/// `SIGPIPE` suppressed as described on [`write_all`]. It is correct on any fd, sockets included
/// (the blocked `SIGPIPE` covers them too), only slower there than `sendmsg` with
/// `MSG_NOSIGNAL`. No `SIGPIPE`, [`Errno::PIPE`] for a dead peer, `EINTR` retried, `poll` on a
/// non-blocking fd; one call of at most [`PIPE_BUF`] bytes in total is atomic on a pipe.
/// Async-signal-safe.
///
/// # References
/// - [POSIX `writev`], [POSIX `pthread_sigmask`]
/// - [Linux `writev(2)`], [Linux `pthread_sigmask(3)`]
///
/// [POSIX `writev`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/writev.html
/// [POSIX `pthread_sigmask`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_sigmask.html
/// [Linux `writev(2)`]: https://man7.org/linux/man-pages/man2/writev.2.html
/// [Linux `pthread_sigmask(3)`]: https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html
/// [`PIPE_BUF`]: super::pipe::PIPE_BUF
#[doc(alias = "writev")]
#[inline]
pub fn writev_all(fd: BorrowedFd<'_>, bufs: &[&[u8]]) -> Result<()> {
    write_loop(fd, bufs, Target::NotSocket)
}

/// Which system calls [`write_loop`] may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A socket: `sendmsg(MSG_NOSIGNAL)` only; `ENOTSOCK` is the caller's error.
    Socket,
    /// Anything: `sendmsg(MSG_NOSIGNAL)`, falling back to `writev` under a [`SigpipeBlock`] on
    /// `ENOTSOCK`.
    Any,
    /// Not a socket: `writev` under a [`SigpipeBlock`] from the start.
    NotSocket,
}

/// Where [`write_loop`] has got to: byte `off` of buffer `idx`.
#[derive(Clone, Copy)]
struct Cursor {
    idx: usize,
    off: usize,
}

impl Cursor {
    /// Moves past `n` written bytes, then past any finished or empty buffers.
    fn advance(&mut self, bufs: &[&[u8]], mut n: usize) {
        while let Some(buf) = bufs.get(self.idx) {
            let left = buf.len() - self.off;
            if n < left {
                self.off += n;
                return;
            }
            n -= left;
            self.idx += 1;
            self.off = 0;
        }
    }
}

/// Writes all of `bufs`, retrying short writes, `EINTR` and `EAGAIN` (after `poll`), without
/// ever raising `SIGPIPE`.
fn write_loop(fd: BorrowedFd<'_>, bufs: &[&[u8]], target: Target) -> Result<()> {
    let mut at = Cursor { idx: 0, off: 0 };
    at.advance(bufs, 0);
    // `Some` once `sendmsg` said ENOTSOCK (or from the start for a non-socket): we then use
    // `writev` with SIGPIPE blocked.
    let mut sigpipe: Option<SigpipeBlock> = match target {
        Target::NotSocket => Some(SigpipeBlock::begin()?),
        Target::Socket | Target::Any => None,
    };
    let result = loop {
        if at.idx >= bufs.len() {
            break Ok(());
        }
        // The next up-to-MAX_IOV buffers, the first one from where the last write stopped.
        let iov: [IoSlice<'_>; MAX_IOV] = core::array::from_fn(|k| {
            let slice: &[u8] = match bufs.get(at.idx + k) {
                Some(buf) if k == 0 => &buf[at.off..],
                Some(buf) => buf,
                None => &[],
            };
            IoSlice::new(slice)
        });
        let count = MAX_IOV.min(bufs.len() - at.idx);
        let iov = &iov[..count];
        let written = if sigpipe.is_none() {
            rustix::net::sendmsg(
                rx(fd),
                iov,
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )
            .errno()
        } else {
            rustix::io::writev(rx(fd), iov).errno()
        };
        match written {
            // The first buffer is never empty (the cursor skips empty ones), so a zero-byte
            // write of a non-empty request is an OS oddity; report it rather than spin.
            Ok(0) => break Err(Errno::IO),
            Ok(n) => at.advance(bufs, n),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if let Err(e) = wait_writable(fd, Deadline::FOREVER) {
                    break Err(e);
                }
            }
            Err(Errno::NOTSOCK) if target == Target::Any && sigpipe.is_none() => {
                match SigpipeBlock::begin() {
                    Ok(block) => sigpipe = Some(block),
                    Err(e) => break Err(e),
                }
            }
            Err(e) => break Err(e),
        }
    };
    match sigpipe {
        Some(block) => {
            let restored = block.end(result == Err(Errno::PIPE));
            result.and(restored)
        }
        None => result,
    }
}

/// `SIGPIPE` blocked in the calling thread, with the mask to restore and whether a `SIGPIPE`
/// was pending before we started.
struct SigpipeBlock {
    old_mask: libc::sigset_t,
    was_pending: bool,
}

/// `{SIGPIPE}` as a `sigset_t`.
fn sigpipe_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the whole set through a valid pointer; `sigaddset` with
    // a valid signal number on an initialised set cannot fail. Both only touch `set`.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

impl SigpipeBlock {
    /// Blocks `SIGPIPE` in the calling thread and records whether one is already pending.
    fn begin() -> Result<SigpipeBlock> {
        let set = sigpipe_set();
        let mut old_mask = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `set` is initialised; `old_mask` is a valid out-pointer that
        // `pthread_sigmask` fills completely on success (checked before `assume_init`).
        let old_mask = unsafe {
            cvt_nz(libc::pthread_sigmask(libc::SIG_BLOCK, &set, old_mask.as_mut_ptr()))?;
            old_mask.assume_init()
        };
        // While this thread did not block SIGPIPE, none can be pending for it: a pending,
        // unblocked signal is delivered (or, ignored, discarded) before the thread runs user
        // code again. So the system call that asks is needed only when it was blocked already.
        // (A process-directed SIGPIPE waits in another queue, which `sigtimedwait` reads after
        // this thread's own: consuming ours never takes it.)
        // SAFETY: `old_mask` is an initialised set.
        let was_blocked = unsafe { libc::sigismember(&old_mask, libc::SIGPIPE) } == 1;
        let was_pending = was_blocked && {
            let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: `pending` is a valid out-pointer that `sigpending` fills on success; on
            // failure (only EFAULT, impossible here) we assume "pending" so we consume nothing.
            unsafe {
                cvt(libc::sigpending(pending.as_mut_ptr()))
                    .map(|_| libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1)
                    .unwrap_or(true)
            }
        };
        Ok(SigpipeBlock { old_mask, was_pending })
    }

    /// Consumes the `SIGPIPE` our own `EPIPE` raised (if `got_epipe` and none was pending
    /// before), then restores the caller's mask.
    fn end(self, got_epipe: bool) -> Result<()> {
        if got_epipe && !self.was_pending {
            let set = sigpipe_set();
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `set` and `zero` are initialised and outlive the call; a null `info` is
            // allowed. EAGAIN (nothing pending: SIGPIPE was ignored and discarded) is fine.
            let _ =
                retry_eintr(|| unsafe { cvt(libc::sigtimedwait(&set, ptr::null_mut(), &zero)) });
        }
        // SAFETY: `old_mask` was filled by `pthread_sigmask` in `begin`; a null old-set pointer
        // is allowed.
        cvt_nz(unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, ptr::null_mut()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_skips_empty_buffers_and_stops_mid_buffer() {
        let bufs: [&[u8]; 4] = [b"", b"abc", b"", b"de"];
        let mut at = Cursor { idx: 0, off: 0 };
        at.advance(&bufs, 0);
        assert_eq!((at.idx, at.off), (1, 0));
        at.advance(&bufs, 2);
        assert_eq!((at.idx, at.off), (1, 2));
        at.advance(&bufs, 2);
        assert_eq!((at.idx, at.off), (3, 1));
        at.advance(&bufs, 1);
        assert_eq!(at.idx, 4);
        // Advancing past the end is harmless.
        at.advance(&bufs, 7);
        assert_eq!(at.idx, 4);
    }
}
