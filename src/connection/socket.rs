//! [`SocketConnection`]: a connection made by a [`Listener`](super::Listener) or a
//! [`Client`](super::Client), in Python's `multiprocessing.connection` framing.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::io::{fd, poll, stream};
use multiproc_sys::time::Deadline;

use super::ConnectionError;
use crate::codec::{self, Encode, Message};

/// The largest payload announced by the plain 4-byte header; longer ones use the `-1` marker
/// and an 8-byte length.
const SHORT_MAX: usize = 0x7fff_ffff;

/// Payloads up to this size are copied behind their header into one buffer on the stack, for a
/// plain `send`; longer ones go out as the header and the caller's slice in one `sendmsg`.
/// Either way a message leaves in one system call (one TCP segment when it fits, so Nagle's
/// algorithm never splits a header from its payload).
const COPY_MAX: usize = 256;

/// Payloads up to this size are read straight into a buffer of their full length; longer ones
/// grow their buffer with what actually arrives, so a hostile length costs no memory.
const DIRECT_MAX: usize = 64 * 1024;

/// A socket: `AF_UNIX` or TCP.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connection to a peer over a socket, in Python's `multiprocessing.connection` framing — what
/// [`Listener::accept`](super::Listener::accept) and [`Client::connect`](super::Client::connect)
/// return (Python's `Connection` object from `Listener.accept()` and `Client()`).
///
/// It has the methods of [`Connection`](super::Connection), but frames its messages as Python
/// does (see below), so a Python program on the other end can `send_bytes`/`recv_bytes` with
/// it. [`send`](Self::send)/[`recv`](Self::recv) carry
/// [`Message`]s in this crate's encoding (Python's `send`/`recv` pickle), so they talk only to
/// another `multiproc` program; talk to Python with bytes.
///
/// # Examples
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use multiproc::connection::SocketConnection;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = UnixStream::pair()?;
/// let (a, b) = (SocketConnection::from(a), SocketConnection::from(b));
/// a.send_bytes(b"ping")?;
/// assert_eq!(b.recv_bytes()?, b"ping");
/// b.send(&(1u32, "two".to_string()))?;
/// let (one, two): (u32, String) = a.recv()?;
/// assert_eq!((one, two.as_str()), (1, "two"));
/// # Ok(())
/// # }
/// ```
///
/// # Wire format (Python's)
///
/// Each message is a 4-byte big-endian **signed** length, then that many bytes. A message of
/// more than `0x7fffffff` bytes has the length `-1` and then an 8-byte big-endian unsigned
/// length (Python 3.8+). Nothing is padded and nothing is read ahead: the receiver reads the
/// header, then exactly the payload, so `poll`, [`wait`](super::wait) and an epoll loop on the
/// fd always see a queued message.
///
/// # Differences from Python
///
/// - A message longer than `maxlength` is skipped and reported
///   ([`ConnectionError::TooLong`]); the connection stays in sync and usable (Python closes it
///   for reading), as on [`Connection`](super::Connection).
/// - A header with a negative length other than `-1` is an [`io::ErrorKind::InvalidData`]
///   error (Python reads it as an empty message).
/// - Writes to a dead peer are [`ConnectionError::BrokenPipe`], never a `SIGPIPE`; a TCP peer
///   that resets the connection reads as end of file.
/// - TCP connections have `TCP_NODELAY` set, so back-to-back small messages are not held back
///   by Nagle's algorithm (Python leaves it off and sends each message in one write).
/// - `close` consumes the connection; `!Sync`, so two threads cannot interleave frames.
pub struct SocketConnection {
    stream: Stream,
    /// `!Sync`: concurrent writers on one connection would interleave frames.
    _not_sync: PhantomData<Cell<()>>,
}

impl fmt::Debug for SocketConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = match self.stream {
            Stream::Unix(_) => "AF_UNIX",
            Stream::Tcp(_) => "TCP",
        };
        f.debug_struct("SocketConnection")
            .field("fd", &self.as_raw_fd())
            .field("family", &family)
            .finish()
    }
}

impl From<UnixStream> for SocketConnection {
    /// Wraps a connected `AF_UNIX` stream socket. It is made blocking.
    fn from(s: UnixStream) -> Self {
        // A socket someone made non-blocking still works (reads and writes wait with `poll`),
        // so a failure here is not fatal.
        let _ = s.set_nonblocking(false);
        SocketConnection { stream: Stream::Unix(s), _not_sync: PhantomData }
    }
}

impl From<TcpStream> for SocketConnection {
    /// Wraps a connected TCP socket. It is made blocking, with `TCP_NODELAY` set.
    fn from(s: TcpStream) -> Self {
        let _ = s.set_nonblocking(false);
        let _ = s.set_nodelay(true);
        SocketConnection { stream: Stream::Tcp(s), _not_sync: PhantomData }
    }
}

/// A read that did not finish before its deadline.
#[cfg_attr(not(feature = "auth"), allow(dead_code))]
fn timed_out() -> ConnectionError {
    ConnectionError::Io(io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for the peer"))
}

/// Whether `e` is the [`timed_out`] error.
#[cfg(feature = "auth")]
pub(super) fn is_timeout(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::Io(e) if e.kind() == io::ErrorKind::TimedOut)
}

impl SocketConnection {
    /// Sends one message: `value` encoded with [`Encode`] (any [`Message`], or a borrowed
    /// `str`/slice), in Python's framing. Only a `multiproc` peer can decode it (Python's `send`
    /// pickles); use [`send_bytes`](Self::send_bytes) to talk to Python.
    ///
    /// May block while the OS buffer is full (until the peer reads).
    pub fn send<T: Encode + ?Sized>(&self, value: &T) -> Result<(), ConnectionError> {
        let mut frame = Vec::with_capacity(64);
        frame.extend_from_slice(&[0; 4]);
        value.encode(&mut frame);
        let len = frame.len() - 4;
        if len <= SHORT_MAX {
            frame[..4].copy_from_slice(&(len as i32).to_be_bytes());
            return self.write_all(&[&frame]);
        }
        let header = long_header(len);
        self.write_all(&[&header, &frame[4..]])
    }

    /// Receives one message and decodes it as a `T`. Blocks until a whole message arrives.
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes), and [`ConnectionError::Decode`] if the message is
    /// not a `T` (it is consumed; the next `recv` reads the next message).
    pub fn recv<T: Message>(&self) -> Result<T, ConnectionError> {
        let bytes = self.recv_bytes()?;
        codec::from_bytes(&bytes).map_err(ConnectionError::Decode)
    }

    /// Sends `buf` as one message (Python's `send_bytes(buf)`). Empty messages are legal.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<(), ConnectionError> {
        if buf.len() <= COPY_MAX {
            let mut frame = [0u8; 4 + COPY_MAX];
            frame[..4].copy_from_slice(&(buf.len() as i32).to_be_bytes());
            frame[4..4 + buf.len()].copy_from_slice(buf);
            return self.write_all(&[&frame[..4 + buf.len()]]);
        }
        if buf.len() <= SHORT_MAX {
            return self.write_all(&[&(buf.len() as i32).to_be_bytes(), buf]);
        }
        self.write_all(&[&long_header(buf.len()), buf])
    }

    // The same public methods as a pipe `Connection`'s (Python's `Connection` API); what they
    // share is written once in `connection` (`byte_range`, the codec, the frame reader).

    /// Python's `send_bytes(buf, offset, size)`: sends `buf[offset..offset + size]` (to the end
    /// when `size` is `None`), with Python's argument checks as
    /// [`ConnectionError::InvalidArgument`].
    pub fn send_bytes_range(
        &self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), ConnectionError> {
        self.send_bytes(super::byte_range(buf, offset, size)?)
    }

    /// Receives one whole message as bytes (Python's `recv_bytes()`). Blocks until it has
    /// arrived.
    ///
    /// # Errors
    /// [`ConnectionError::Eof`] once the peer has closed and everything was read;
    /// [`ConnectionError::Truncated`] if it closed in the middle of a message;
    /// [`io::ErrorKind::InvalidData`] for a header no Python peer sends (a negative length).
    /// The buffer never grows much beyond the bytes that actually arrived, whatever length the
    /// header claims.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, ConnectionError> {
        let (len, header) = self.read_header(Deadline::FOREVER)?;
        let mut out = Vec::new();
        self.read_payload(len, header, &mut out, Deadline::FOREVER)?;
        Ok(out)
    }

    /// As [`recv_bytes`](Self::recv_bytes), refusing a message longer than `maxlength` bytes
    /// (Python's `recv_bytes(maxlength)`): it is skipped and reported as
    /// [`ConnectionError::TooLong`], and the connection stays usable.
    pub fn recv_bytes_max(&self, maxlength: usize) -> Result<Vec<u8>, ConnectionError> {
        let (len, header) = self.read_header(Deadline::FOREVER)?;
        if len > maxlength as u64 {
            let got = self.skip(len)?;
            if got < len {
                return Err(ConnectionError::Truncated {
                    expected: header.saturating_add(len),
                    received: header + got,
                });
            }
            return Err(ConnectionError::TooLong { len, max: maxlength });
        }
        let mut out = Vec::new();
        self.read_payload(len, header, &mut out, Deadline::FOREVER)?;
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
        if offset > buf.len() {
            return Err(ConnectionError::InvalidArgument("offset too large"));
        }
        let (len, header) = self.read_header(Deadline::FOREVER)?;
        let room = &mut buf[offset..];
        if len > room.len() as u64 {
            let mut whole = Vec::new();
            self.read_payload(len, header, &mut whole, Deadline::FOREVER)?;
            return Err(ConnectionError::BufferTooShort(whole));
        }
        let dst = &mut room[..len as usize];
        let got = self.read_full(dst, Deadline::FOREVER)?;
        if got < dst.len() {
            return Err(ConnectionError::Truncated {
                expected: header + len,
                received: header + got as u64,
            });
        }
        Ok(dst.len())
    }

    /// Whether a message (or end-of-file) is ready to be received right now, without blocking
    /// (Python's `poll()`, whose timeout defaults to 0). Never consumes anything; a `true` may
    /// mean only the first bytes of a message have arrived, and `recv` then waits for the rest.
    pub fn poll(&self) -> Result<bool, ConnectionError> {
        self.poll_timeout(Duration::ZERO)
    }

    /// As [`poll`](Self::poll), waiting at most `timeout` for a message (Python's
    /// `poll(timeout)`; `Duration::MAX` waits as long as needed, Python's `poll(None)`).
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool, ConnectionError> {
        Ok(poll::wait_readable(self.as_fd(), Deadline::after(Some(timeout)))?)
    }

    /// Closes the connection (Python's `close`). Dropping it does the same; `close` reports an
    /// error from `close(2)` instead of ignoring it.
    pub fn close(self) -> io::Result<()> {
        let fd = match self.stream {
            Stream::Unix(s) => s.into(),
            Stream::Tcp(s) => s.into(),
        };
        fd::close(fd).map_err(io::Error::from)
    }

    /// Receives one message of at most `max` bytes, all of it before `deadline`: the
    /// handshake's read. A longer message is [`ConnectionError::TooLong`] and is not skipped
    /// (the handshake drops the connection); a missed deadline is an
    /// [`io::ErrorKind::TimedOut`] error ([`is_timeout`]).
    #[cfg(feature = "auth")]
    pub(super) fn recv_bytes_before(
        &self,
        max: usize,
        deadline: Deadline,
    ) -> Result<Vec<u8>, ConnectionError> {
        let (len, header) = self.read_header(deadline)?;
        if len > max as u64 {
            return Err(ConnectionError::TooLong { len, max });
        }
        let mut out = Vec::new();
        self.read_payload(len, header, &mut out, deadline)?;
        Ok(out)
    }

    fn write_all(&self, parts: &[&[u8]]) -> Result<(), ConnectionError> {
        let r = match parts {
            [one] => stream::send_all(self.as_fd(), one),
            _ => stream::write_all_vectored(self.as_fd(), parts),
        };
        Ok(r?)
    }

    /// Reads a header: the payload length and the header's own length (4 or 12 bytes).
    fn read_header(&self, deadline: Deadline) -> Result<(u64, u64), ConnectionError> {
        let mut short = [0u8; 4];
        let n = self.read_full(&mut short, deadline)?;
        if n == 0 {
            return Err(ConnectionError::Eof);
        }
        if n < 4 {
            return Err(ConnectionError::Truncated { expected: 4, received: n as u64 });
        }
        match i32::from_be_bytes(short) {
            len @ 0.. => Ok((len as u64, 4)),
            -1 => {
                let mut long = [0u8; 8];
                let n = self.read_full(&mut long, deadline)?;
                if n < 8 {
                    return Err(ConnectionError::Truncated {
                        expected: 12,
                        received: 4 + n as u64,
                    });
                }
                Ok((u64::from_be_bytes(long), 12))
            }
            bad => Err(ConnectionError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid message header: length {bad} (only -1 may be negative)"),
            ))),
        }
    }

    /// Reads a `len`-byte payload into `out` (cleared first). `header` is the header's length,
    /// for the [`ConnectionError::Truncated`] report.
    fn read_payload(
        &self,
        len: u64,
        header: u64,
        out: &mut Vec<u8>,
        deadline: Deadline,
    ) -> Result<(), ConnectionError> {
        let truncated = |got: u64| ConnectionError::Truncated {
            expected: header.saturating_add(len),
            received: header + got,
        };
        out.clear();
        if len <= DIRECT_MAX as u64 {
            out.resize(len as usize, 0);
            let got = self.read_full(out, deadline)?;
            if got < out.len() {
                return Err(truncated(got as u64));
            }
            return Ok(());
        }
        // Long: let the buffer grow with the bytes that arrive. Only the handshake has a
        // deadline, and its messages are short.
        debug_assert!(deadline.is_forever());
        let Ok(want) = usize::try_from(len) else {
            let got = self.skip(len)?;
            return Err(truncated(got));
        };
        out.reserve(DIRECT_MAX);
        loop {
            let missing = (want - out.len()) as u64;
            let r = match &self.stream {
                Stream::Unix(s) => s.take(missing).read_to_end(out),
                Stream::Tcp(s) => s.take(missing).read_to_end(out),
            };
            match r {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll::wait_readable(self.as_fd(), Deadline::FOREVER)?;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => return Err(ConnectionError::Io(e)),
            }
        }
        if out.len() < want {
            return Err(truncated(out.len() as u64));
        }
        Ok(())
    }

    /// Fills `buf`, stopping early only at end of file; returns how many bytes arrived. Waits
    /// no later than `deadline`.
    fn read_full(&self, buf: &mut [u8], deadline: Deadline) -> Result<usize, ConnectionError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_some(&mut buf[done..], deadline)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    /// One `read`, waiting no later than `deadline`: `EINTR` is retried, `EAGAIN` (someone
    /// made the socket non-blocking) waited out with `poll`, and `ECONNRESET` is end of file.
    fn read_some(&self, buf: &mut [u8], deadline: Deadline) -> Result<usize, ConnectionError> {
        let fd = self.as_fd();
        loop {
            if !deadline.is_forever() && !poll::wait_readable(fd, deadline)? {
                return Err(timed_out());
            }
            match fd::read_once(fd, buf) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if !poll::wait_readable(fd, deadline)? {
                        return Err(timed_out());
                    }
                }
                Err(Errno::CONNRESET) => return Ok(0),
                Err(e) => return Err(ConnectionError::Io(e.into())),
            }
        }
    }

    /// Reads and discards `len` bytes; returns how many arrived before end of file.
    fn skip(&self, len: u64) -> Result<u64, ConnectionError> {
        let mut sink = vec![0u8; DIRECT_MAX];
        let mut left = len;
        while left > 0 {
            let want = left.min(sink.len() as u64) as usize;
            let n = self.read_some(&mut sink[..want], Deadline::FOREVER)?;
            if n == 0 {
                break;
            }
            left -= n as u64;
        }
        Ok(len - left)
    }
}

/// The header of a payload longer than [`SHORT_MAX`]: `-1`, then the 8-byte length.
fn long_header(len: usize) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&(-1i32).to_be_bytes());
    h[4..].copy_from_slice(&(len as u64).to_be_bytes());
    h
}

impl AsFd for SocketConnection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.stream {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for SocketConnection {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
