//! Pipes: creating one, and the `PIPE_BUF` rule that makes small writes atomic.
//!
//! Read and write them with [`stream`](super::stream) (whole buffers, no `SIGPIPE`) or
//! [`fd`](super::fd) (one call); wait for them with [`poll`](super::poll).
//!
//! # Atomicity: `PIPE_BUF`
//!
//! POSIX guarantees that a write of at most [`PIPE_BUF`] bytes (4096 on Linux) to a **pipe** is
//! atomic: its bytes are never interleaved with bytes from other writers, and on a non-blocking
//! pipe it either writes everything or fails with `EAGAIN`. A larger write may be split and
//! interleaved with other writers' data, so processes that share the write end of a pipe must
//! either keep each message (header included: use
//! [`write_all_vectored`](super::stream::write_all_vectored) so header and payload go out in one
//! call) within `PIPE_BUF`, or serialise their writers with a lock. **Stream sockets give no such
//! guarantee at any size**: concurrent writers on one socket always need a lock.
//!
//! # References
//! - [POSIX `pipe`], [POSIX `write`] (the `PIPE_BUF` rules)
//! - [Linux `pipe(7)`]
//!
//! [POSIX `pipe`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pipe.html
//! [POSIX `write`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/write.html
//! [Linux `pipe(7)`]: https://man7.org/linux/man-pages/man7/pipe.7.html

use crate::fd::{OwnedFd, pair_from_rx};
use rustix::pipe::PipeFlags;

use crate::errno::{IntoErrno, Result};

/// The largest write to a pipe that POSIX guarantees to be atomic (4096 bytes on Linux).
///
/// See the [module docs](self#atomicity-pipe_buf).
///
/// # References
/// - [POSIX `write`]
/// - [Linux `pipe(7)`]
///
/// [POSIX `write`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/write.html
/// [Linux `pipe(7)`]: https://man7.org/linux/man-pages/man7/pipe.7.html
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// `pipe2(fds, O_CLOEXEC)` — creates a pipe; returns `(read end, write end)`.
///
/// Both ends are close-on-exec and blocking. Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pipe.html
/// [Linux]: https://man7.org/linux/man-pages/man2/pipe.2.html
#[doc(alias = "pipe2")]
#[inline]
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map(pair_from_rx).errno()
}
