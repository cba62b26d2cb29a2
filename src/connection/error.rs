//! [`ConnectionError`]: what can go wrong on a [`Connection`](crate::Connection), and how the
//! frame format's [`FrameError`] and the OS's [`Errno`] become one.

use std::fmt;
use std::io;

use multiproc_sys::Errno;

use crate::codec::{DecodeError, FrameError};

/// What can go wrong on a [`Connection`](crate::Connection).
///
/// Python raises `EOFError`, `BrokenPipeError`, `OSError`, `BufferTooShort` or `ValueError`
/// from a `Connection`'s methods; here they all return a `ConnectionError`, whose variants name
/// the Python exception they stand for.
///
/// # Examples
///
/// ```
/// use multiproc::{ConnectionError, pipe};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = pipe(true)?;
/// a.send_bytes(b"a long message")?;
/// // Python: OSError('bad message length'); here the message is skipped and `b` stays usable.
/// match b.recv_bytes_max(4) {
///     Err(ConnectionError::TooLong { len, max }) => assert_eq!((len, max), (14, 4)),
///     other => panic!("unexpected {other:?}"),
/// }
/// drop(a); // the peer closes its end
/// match b.recv::<u32>() {
///     Err(ConnectionError::Eof) => {} // Python: EOFError
///     other => panic!("unexpected {other:?}"),
/// }
/// assert!(matches!(b.send(&1u32), Err(ConnectionError::BrokenPipe))); // BrokenPipeError
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer closed its end and nothing is left to read (Python's `EOFError`).
    Eof,
    /// The peer closed its end; nothing can be sent (Python's `BrokenPipeError`).
    BrokenPipe,
    /// The peer died (or closed) in the middle of a frame: the stream is cut short.
    Truncated {
        /// Bytes the frame should have had (header included).
        expected: u64,
        /// Bytes that arrived.
        received: u64,
    },
    /// This end of a simplex pipe only receives (Python: "connection is read-only").
    ReadOnly,
    /// This end of a simplex pipe only sends (Python: "connection is write-only").
    WriteOnly,
    /// The message is longer than the `maxlength` given to `recv_bytes` (Python: "bad message
    /// length"). It was skipped: the connection is still in sync.
    TooLong {
        /// The message's length.
        len: u64,
        /// The limit that was given.
        max: usize,
    },
    /// `recv_bytes_into`'s buffer is too short; this is the whole message, which has been
    /// consumed (Python's `BufferTooShort`).
    BufferTooShort(Vec<u8>),
    /// The message arrived but is not a valid encoding of the requested type: usually the
    /// sender sent another type (a `Vec<i32>` read as a `Vec<i64>` is
    /// [`DecodeError::LengthTooLarge`], say). The message has been consumed and the
    /// connection stays in sync: the next `recv` reads the next message. With
    /// [`typed_pipe`](crate::typed_pipe), a mismatch between the two ends is a compile error
    /// instead.
    Decode(DecodeError),
    /// An argument is out of range (Python's `ValueError`): the text says which.
    InvalidArgument(&'static str),
    /// Any other OS error.
    Io(io::Error),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Eof => f.write_str("end of file: the peer closed the connection"),
            ConnectionError::BrokenPipe => {
                f.write_str("broken pipe: the peer closed the connection")
            }
            ConnectionError::Truncated { expected, received } => {
                write!(f, "truncated message: the peer closed after {received} of {expected} bytes")
            }
            ConnectionError::ReadOnly => f.write_str("connection is read-only"),
            ConnectionError::WriteOnly => f.write_str("connection is write-only"),
            ConnectionError::TooLong { len, max } => {
                write!(f, "bad message length: {len} bytes exceeds maxlength {max}")
            }
            ConnectionError::BufferTooShort(m) => {
                write!(f, "buffer too short for a {}-byte message", m.len())
            }
            ConnectionError::Decode(e) => write!(
                f,
                "cannot decode the message as the type asked for (does the sender send another type?): {e}"
            ),
            ConnectionError::InvalidArgument(what) => f.write_str(what),
            ConnectionError::Io(e) => write!(f, "connection error: {e}"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectionError::Decode(e) => Some(e),
            ConnectionError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Errno> for ConnectionError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::PIPE | Errno::CONNRESET => ConnectionError::BrokenPipe,
            e => ConnectionError::Io(e.into()),
        }
    }
}

impl From<FrameError> for ConnectionError {
    /// The frame format's errors are the connection's: `Eof`, `Truncated` and `TooLong` keep
    /// their counts (a `TooLong` limit is a `maxlength` given as a `usize`), `Io` its error.
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Eof => ConnectionError::Eof,
            FrameError::Truncated { expected, received } => {
                ConnectionError::Truncated { expected, received }
            }
            FrameError::TooLong { len, max } => {
                ConnectionError::TooLong { len, max: usize::try_from(max).unwrap_or(usize::MAX) }
            }
            FrameError::Io(e) => ConnectionError::Io(e),
        }
    }
}

impl From<ConnectionError> for io::Error {
    fn from(e: ConnectionError) -> Self {
        let kind = match &e {
            ConnectionError::Eof | ConnectionError::Truncated { .. } => {
                io::ErrorKind::UnexpectedEof
            }
            ConnectionError::BrokenPipe => io::ErrorKind::BrokenPipe,
            ConnectionError::Io(e) => e.kind(),
            ConnectionError::Decode(_) => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}
