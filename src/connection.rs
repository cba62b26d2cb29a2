//! `pipe()` and `Connection` — Python's `multiprocessing.Pipe` and `Connection` — plus
//! [`wait`] over connections and process sentinels (`multiprocessing.connection.wait`).
//!
//! ```
//! use multiproc::{Process, pipe};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (parent_end, child_end) = pipe(true)?;
//! let p = Process::new(move || {
//!     child_end.send(&"hello from the child".to_string()).unwrap();
//!     let reply: String = child_end.recv().unwrap();
//!     reply.len()
//! });
//! p.start()?; // the parent's copy of `child_end` is closed here, with the closure
//! let greeting: String = parent_end.recv()?;
//! assert_eq!(greeting, "hello from the child");
//! parent_end.send(&"hi!".to_string())?;
//! assert_eq!(p.join()?, 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Typed connections
//!
//! [`typed_pipe`] (and [`typed_simplex_pipe`] for one direction) declares the message types
//! when the pipe is made: its ends, [`TypedConnection`]s (or a [`Receiver`] and a [`Sender`]),
//! send and receive only those types, so a message of the wrong type is a compile error where
//! the untyped [`Connection::recv`] would report it at run time in the peer
//! ([`ConnectionError::Decode`]). The bytes on the wire are the same, and each typed end hands
//! back its untyped [`Connection`].
//!
//! ```
//! use multiproc::{Process, typed_pipe};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (parent_end, child_end) = typed_pipe::<Vec<i64>, String>()?;
//! let p = Process::new(move || {
//!     let numbers = child_end.recv().unwrap(); // Vec<i64>, as declared
//!     child_end.send(&format!("{} numbers", numbers.len())).unwrap();
//! });
//! p.start()?;
//! parent_end.send(&vec![1, 2, 3])?; // `vec![1, 2, 3]` is a Vec<i64> here
//! assert_eq!(parent_end.recv()?, "3 numbers");
//! p.join()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Wire format
//!
//! Each message is one frame of the [codec's frame format](crate::codec#frames), read and
//! written by the same code as [`codec::read_frame`]: an 8-byte little-endian length, then
//! that many bytes (a [`Message`] encoding for [`send`](Connection::send), raw bytes for
//! [`send_bytes`](Connection::send_bytes)); a frame shorter than 64 bytes is padded with zeros
//! to 64 bytes, so that a receiver gets a small message in a single `read` (it reads 64 bytes
//! first, which never reach into the next frame) and nothing is read ahead, so `poll`, [`wait`]
//! and an epoll loop on the fd always see a queued message. There is no size limit but memory;
//! a reader never allocates more than the bytes that actually arrived, so a hostile length
//! prefix costs nothing, and a frame cut short by the peer's death is reported as
//! [`ConnectionError::Truncated`], never misread.
//!
//! # End of file and `fork`
//!
//! A child gets a copy of **every** descriptor its parent had when it was forked, including
//! the parent's own end of a pipe made earlier. While the child holds that copy, the child
//! never sees end-of-file when the parent drops its end (the same holds in Python, where the
//! child must `close()` the parent's end itself). Do not make a child wait for end-of-file
//! from its parent; send it an explicit "stop" message instead.
//!
//! # Differences from Python
//!
//! - `close` consumes the connection: using a closed connection is a compile error.
//! - Messages are typed: each `recv` names the type it expects, and a message of another type
//!   is [`ConnectionError::Decode`] (consumed; the connection stays in sync), where Python
//!   unpickles whatever arrives. [`typed_pipe`] goes further: its ends carry their message
//!   types, and a mismatch does not compile.
//! - A message longer than `maxlength` is skipped and reported ([`ConnectionError::TooLong`]);
//!   the connection stays in sync and usable (Python closes it for reading).
//! - Writes to a dead peer are [`ConnectionError::BrokenPipe`], never a `SIGPIPE`.
//! - A peer that exits leaving our messages unread still reads as end-of-file
//!   ([`ConnectionError::Eof`]; Linux reports `ECONNRESET` once, Python would raise
//!   `ConnectionResetError`).
//! - Receiving works on a descriptor someone made non-blocking (an event loop, a child sharing
//!   the open file description): it waits instead of failing with `EAGAIN` halfway through a
//!   frame.
//! - `send` may block while the OS buffer is full (as in Python): read from the other end, or
//!   use [`Queue`](crate::Queue) whose `put` never waits for a reader.
//! - A `Connection` may be moved to another thread but not shared (`!Sync`): two writers on one
//!   end would interleave their frames.

#![allow(unsafe_code)] // `close(2)` on a released fd, `set_len` after a read.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::io::poll::{self, PollFlags};
use multiproc_sys::io::socket::socketpair;
use multiproc_sys::io::{fd, stream};
use multiproc_sys::time::Deadline;

use crate::codec::frame::{self, FrameError, Layout, Source};
use crate::codec::{self, Encode, Message};

mod error;
mod typed;
pub use error::ConnectionError;
pub use typed::{Receiver, Sender, TypedConnection, typed_pipe, typed_simplex_pipe};
mod address;
#[cfg(feature = "auth")]
mod auth;
mod listener;
mod socket;
pub use address::Address;
#[cfg(feature = "auth")]
pub use auth::{
    answer_challenge, answer_challenge_timeout, deliver_challenge, deliver_challenge_timeout,
};
#[cfg(feature = "auth")]
pub use listener::DEFAULT_HANDSHAKE_TIMEOUT;
pub use listener::{AuthenticationError, Client, Listener, ListenerBuilder, ListenerError};
pub use socket::SocketConnection;

/// The smallest frame on the wire: shorter ones are padded with zeros up to this size. A
/// receiver can then always read this many bytes first without ever reading into the next
/// frame, which gets a small message (header and payload) in one `read`, with no read-ahead
/// buffer that would hide a queued message from `poll`, `wait` or an epoll loop.
const MIN_FRAME: usize = 64;

/// The frame layout of a connection (see [`Layout`]).
type Wire = Layout<MIN_FRAME>;

/// Creates a connected pair of [`Connection`]s — Python's `multiprocessing.Pipe(duplex)`.
///
/// With `duplex = true` both ends send and receive (an `AF_UNIX` socketpair). With
/// `duplex = false` it returns `(reader, writer)` over a pipe: the first end only receives, the
/// second only sends. Both fds are close-on-exec.
///
/// Create the pair before starting the child; each process then uses one end and drops (or
/// [`close`](Connection::close)s) the other, so that `recv` sees end-of-file when the last
/// writer goes away.
///
/// A forked child inherits every fd of its parent, the parent's end included, and its closure
/// cannot drop an end it did not capture. So a child that reads until end-of-file never sees it
/// while it still holds the writing end; send an explicit last message instead (`None` at the
/// end of a stream of `Option<T>`), as with Python's `fork` start method, where the child must
/// `close()` its inherited copy. The other direction works as expected: the parent drops its
/// copy of the writing end, and sees end-of-file once the child exits or drops its own.
///
/// The ends send and receive any [`Message`], chosen at each call; [`typed_pipe`] and
/// [`typed_simplex_pipe`] make ends whose message types are fixed, so that a mismatch between
/// what one side sends and the other receives does not compile.
#[doc(alias = "Pipe")]
pub fn pipe(duplex: bool) -> io::Result<(Connection, Connection)> {
    if duplex {
        let (a, b) = socketpair()?;
        Ok((
            Connection::new(a, Kind::Socket, true, true),
            Connection::new(b, Kind::Socket, true, true),
        ))
    } else {
        let (r, w) = multiproc_sys::io::pipe::pipe()?;
        Ok((
            Connection::new(r, Kind::Pipe, true, false),
            Connection::new(w, Kind::Pipe, false, true),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Socket,
    Pipe,
}

/// One end of a [`pipe`] — Python's `multiprocessing.connection.Connection`.
///
/// Sends and receives whole messages: typed ones ([`send`](Self::send)/[`recv`](Self::recv),
/// any [`Message`]) or raw bytes ([`send_bytes`](Self::send_bytes)/[`recv_bytes`](Self::recv_bytes)).
/// Implements [`AsFd`], so it plugs into [`wait`], `poll`, epoll, mio or tokio.
///
/// # Examples
///
/// In one process, for brevity (the [module docs](self) talk to a child):
///
/// ```
/// use std::time::Duration;
/// use multiproc::{ConnectionError, pipe};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Python: reader, writer = Pipe(duplex=False)
/// let (reader, writer) = pipe(false)?;
/// writer.send(&("job", 42u32))?; // Python: writer.send(("job", 42))
/// assert!(reader.poll_timeout(Duration::ZERO)?);
/// let (name, n): (String, u32) = reader.recv()?;
/// assert_eq!((name.as_str(), n), ("job", 42));
///
/// writer.send_bytes(b"raw bytes")?;
/// assert_eq!(reader.recv_bytes()?, b"raw bytes");
/// assert!(!reader.poll_timeout(Duration::from_millis(1))?); // nothing left
/// // Python: OSError('connection is read-only')
/// assert!(matches!(reader.send(&1u8), Err(ConnectionError::ReadOnly)));
/// # Ok(())
/// # }
/// ```
pub struct Connection {
    fd: OwnedFd,
    kind: Kind,
    readable: bool,
    writable: bool,
    /// `!Sync`: concurrent writers on one end would interleave frames.
    _not_sync: PhantomData<Cell<()>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_raw_fd())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

impl Connection {
    fn new(fd: OwnedFd, kind: Kind, readable: bool, writable: bool) -> Self {
        Connection { fd, kind, readable, writable, _not_sync: PhantomData }
    }

    /// Wraps a connected `AF_UNIX` stream socket (for example one end of a socketpair made
    /// elsewhere) as a duplex connection speaking this module's framing.
    pub fn from_socket(fd: OwnedFd) -> Self {
        Connection::new(fd, Kind::Socket, true, true)
    }

    /// Whether this end can receive (Python's `readable`).
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send (Python's `writable`).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Sends one message: `value` encoded with [`Encode`] (any [`Message`], or a borrowed
    /// `str`/slice).
    ///
    /// May block while the OS buffer is full (until the peer reads).
    pub fn send<T: Encode + ?Sized>(&self, value: &T) -> Result<(), ConnectionError> {
        self.check_writable()?;
        let mut frame = Vec::with_capacity(MIN_FRAME);
        let at = Wire::begin(&mut frame);
        value.encode(&mut frame);
        Wire::end(&mut frame, at);
        self.write_frame(&[&frame])
    }

    /// Receives one message and decodes it as a `T`. Blocks until a whole message arrives.
    ///
    /// # Errors
    /// [`ConnectionError::Eof`] once the peer has closed and everything was read;
    /// [`ConnectionError::Decode`] if the message is not a `T`, as when the sender sent another
    /// type: the message is consumed and the next `recv` reads the next one. Whatever bytes
    /// arrive, `recv` returns an error rather than panicking ([`TypedConnection`] rules out the
    /// type mismatch at compile time).
    pub fn recv<T: Message>(&self) -> Result<T, ConnectionError> {
        self.check_readable()?;
        let mut src = self.source();
        let start = Wire::read_start(&mut src)?;
        let decoded = if start.rest() == 0 {
            codec::from_bytes(start.inline())
        } else {
            let mut bytes = Vec::new();
            frame::read_payload(&mut src, &start, &mut bytes)?;
            codec::from_bytes(&bytes)
        };
        decoded.map_err(ConnectionError::Decode)
    }

    /// Sends `buf` as one message (Python's `send_bytes(buf)`; slice it for `offset`/`size`,
    /// or see [`send_bytes_range`](Self::send_bytes_range)). Empty messages are legal.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<(), ConnectionError> {
        self.check_writable()?;
        if let Some(frame) = Wire::small(buf) {
            return self.write_frame(&[&frame]);
        }
        self.write_frame(&[&codec::encode_frame_header(buf.len() as u64), buf])
    }

    /// Python's `send_bytes(buf, offset, size)`: sends `buf[offset..offset + size]` (to the end
    /// when `size` is `None`), with Python's argument checks as [`ConnectionError::InvalidArgument`].
    pub fn send_bytes_range(
        &self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), ConnectionError> {
        self.send_bytes(byte_range(buf, offset, size)?)
    }

    /// Receives one whole message as bytes (Python's `recv_bytes()`). Blocks until it has
    /// arrived.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, ConnectionError> {
        self.recv_bytes_within(None)
    }

    /// As [`recv_bytes`](Self::recv_bytes), refusing a message longer than `maxlength` bytes
    /// (Python's `recv_bytes(maxlength)`): it is skipped and reported as
    /// [`ConnectionError::TooLong`], and the connection stays usable.
    pub fn recv_bytes_max(&self, maxlength: usize) -> Result<Vec<u8>, ConnectionError> {
        self.recv_bytes_within(Some(maxlength))
    }

    fn recv_bytes_within(&self, maxlength: Option<usize>) -> Result<Vec<u8>, ConnectionError> {
        self.check_readable()?;
        let mut src = self.source();
        let start = Wire::read_start(&mut src)?;
        if let Err(too_long) = frame::check_max(start.len(), maxlength.map(|max| max as u64)) {
            // Skip it: the connection stays in sync.
            frame::skip(&mut src, start.rest())?;
            return Err(too_long.into());
        }
        let mut out = Vec::new();
        frame::read_payload(&mut src, &start, &mut out)?;
        Ok(out)
    }

    /// Receives one message into `buf[offset..]` and returns its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    /// [`ConnectionError::InvalidArgument`] if `offset > buf.len()` (checked before reading:
    /// the message stays queued); [`ConnectionError::BufferTooShort`] with the whole message
    /// (consumed) if it does not fit.
    pub fn recv_bytes_into(&self, buf: &mut [u8], offset: usize) -> Result<usize, ConnectionError> {
        self.check_readable()?;
        if offset > buf.len() {
            return Err(ConnectionError::InvalidArgument("offset too large"));
        }
        let mut src = self.source();
        let start = Wire::read_start(&mut src)?;
        let room = (buf.len() - offset) as u64;
        if start.len() > room {
            let mut whole = Vec::new();
            frame::read_payload(&mut src, &start, &mut whole)?;
            return Err(ConnectionError::BufferTooShort(whole));
        }
        let len = start.len() as usize; // fits: len <= room <= usize::MAX
        let inline = start.inline();
        buf[offset..offset + inline.len()].copy_from_slice(inline);
        let dst = &mut buf[offset + inline.len()..offset + len];
        let got = frame::read_full(&mut src, dst)?;
        if got < dst.len() {
            return Err(start.truncated((inline.len() + got) as u64).into());
        }
        Ok(len)
    }

    /// Whether a message (or end-of-file) is ready to be received right now, without blocking
    /// (Python's `poll()`, whose timeout defaults to 0).
    ///
    /// Never consumes anything. A `true` may mean only the first bytes of a message have
    /// arrived; `recv` then waits for the rest.
    pub fn poll(&self) -> Result<bool, ConnectionError> {
        self.poll_timeout(Duration::ZERO)
    }

    /// As [`poll`](Self::poll), waiting at most `timeout` for a message (Python's
    /// `poll(timeout)`; `Duration::MAX` waits as long as needed, Python's `poll(None)`).
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool, ConnectionError> {
        self.check_readable()?;
        Ok(poll::wait_readable(self.fd.as_fd(), Deadline::after(Some(timeout)))?)
    }

    /// Closes this end (Python's `close`). Dropping the connection does the same; `close`
    /// reports an error from `close(2)` instead of ignoring it.
    pub fn close(self) -> io::Result<()> {
        fd::close(self.fd).map_err(io::Error::from)
    }

    fn check_writable(&self) -> Result<(), ConnectionError> {
        if self.writable { Ok(()) } else { Err(ConnectionError::ReadOnly) }
    }

    fn check_readable(&self) -> Result<(), ConnectionError> {
        if self.readable { Ok(()) } else { Err(ConnectionError::WriteOnly) }
    }

    fn write_frame(&self, parts: &[&[u8]]) -> Result<(), ConnectionError> {
        let fd = self.fd.as_fd();
        let r = match (self.kind, parts) {
            (Kind::Socket, [one]) => stream::send_all(fd, one),
            (Kind::Socket, _) => stream::write_all_vectored(fd, parts),
            (Kind::Pipe, _) => stream::writev_all(fd, parts),
        };
        Ok(r?)
    }

    /// This end's descriptor as a [`Source`] of frames.
    fn source(&self) -> FdSource<'_> {
        FdSource(self.fd.as_fd())
    }
}

/// A connection's descriptor, read the way every receive path must: `EINTR` is retried;
/// `EAGAIN` (someone made the shared open file description non-blocking: an event loop, a
/// child) is waited out with `poll`, so a frame is never abandoned half-read; and `ECONNRESET`
/// (an `AF_UNIX` peer that closed with data of ours unread) is end of file, like a plain close.
struct FdSource<'a>(BorrowedFd<'a>);

impl FdSource<'_> {
    fn retrying(
        &self,
        mut op: impl FnMut() -> multiproc_sys::Result<usize>,
    ) -> Result<usize, FrameError> {
        loop {
            match op() {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    poll::wait_readable(self.0, Deadline::FOREVER)
                        .map_err(|e| FrameError::Io(e.into()))?;
                }
                Err(Errno::CONNRESET) => return Ok(0),
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
    }
}

impl Source for FdSource<'_> {
    #[inline]
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, FrameError> {
        self.retrying(|| fd::read_once(self.0, buf))
    }

    fn append(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, FrameError> {
        let n = self.retrying(|| {
            let spare = &mut out.spare_capacity_mut()[..max];
            fd::read_uninit(self.0, spare)
        })?;
        // SAFETY: `read_uninit` initialised the first `n` bytes of the spare capacity.
        unsafe { out.set_len(out.len() + n) };
        Ok(n)
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until some of `objects` are ready, at most `timeout` — Python's
/// `multiprocessing.connection.wait`.
///
/// An object is ready when its fd is readable or hung up: a [`Connection`] with a message or
/// end-of-file, a [`Process`](crate::Process) [`sentinel`](crate::Process::sentinel) whose
/// child has ended, any other fd. Returns the **indices** of the ready objects, in order;
/// empty after a timeout. `EINTR` is retried with the time that is left.
///
/// ```
/// use std::time::Duration;
/// use std::os::fd::AsFd;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = multiproc::pipe(true)?;
/// let (c, d) = multiproc::pipe(true)?;
/// b.send(&1u8)?;
/// let ready = multiproc::wait(&[&a as &dyn AsFd, &c], Some(Duration::from_secs(1)))?;
/// assert_eq!(ready, vec![0]);
/// # drop(d);
/// # Ok(())
/// # }
/// ```
pub fn wait(objects: &[&dyn AsFd], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let mut fds: Vec<poll::PollFd<'_>> =
        objects.iter().map(|o| poll::PollFd::from_borrowed_fd(o.as_fd(), PollFlags::IN)).collect();
    let n = poll::poll(&mut fds, Deadline::after(timeout))?;
    if n == 0 {
        return Ok(Vec::new());
    }
    Ok(fds.iter().enumerate().filter(|(_, f)| !f.revents().is_empty()).map(|(i, _)| i).collect())
}

/// `buf[offset..offset + size]` (to the end when `size` is `None`), with the argument checks of
/// Python's `send_bytes(buf, offset, size)`: the one implementation of `send_bytes_range`.
fn byte_range(buf: &[u8], offset: usize, size: Option<usize>) -> Result<&[u8], ConnectionError> {
    if offset > buf.len() {
        return Err(ConnectionError::InvalidArgument("buffer length < offset"));
    }
    let end = match size {
        None => buf.len(),
        Some(size) => match offset.checked_add(size) {
            Some(end) if end <= buf.len() => end,
            _ => return Err(ConnectionError::InvalidArgument("buffer length < offset + size")),
        },
    };
    Ok(&buf[offset..end])
}
