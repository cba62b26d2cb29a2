//! [`FrameError`]: why a frame could not be read. The one error type of the frame format:
//! [`ConnectionError`](crate::ConnectionError) converts from it, and the pool's channels report
//! it as the reason they refuse a frame.

use std::error::Error;
use std::fmt;
use std::io;

/// Why a frame could not be read.
///
/// Python's `Connection.recv_bytes` raises `EOFError` at the end of the stream and
/// `OSError('bad message length')` for a message over `maxlength`; [`read_frame`] returns
/// [`FrameError::Eof`] and [`FrameError::TooLong`] instead (and a frame cut short is
/// [`FrameError::Truncated`], never misread). Every 8-byte header is a valid length: the only
/// bad header is one whose length is over a limit, which is `TooLong`.
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, FrameError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut wire = Vec::new();
/// codec::write_frame(&mut wire, b"hello")?;
/// codec::write_frame(&mut wire, b"bye")?;
///
/// let mut r = &wire[..];
/// match codec::read_frame(&mut r, Some(4)) {
///     Err(FrameError::TooLong { len, max }) => {
///         assert_eq!((len, max), (5, 4));
///         codec::discard_frame_payload(&mut r, len)?; // skip it, stay in sync
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(codec::read_frame(&mut r, Some(4))?, b"bye");
/// assert!(matches!(codec::read_frame(&mut r, None), Err(FrameError::Eof)));
///
/// // The first frame cut off after 2 of its 5 payload bytes.
/// let mut cut = &wire[..10];
/// assert!(matches!(
///     codec::read_frame(&mut cut, None),
///     Err(FrameError::Truncated { expected: 13, received: 10 })
/// ));
/// # Ok(())
/// # }
/// ```
///
/// [`read_frame`]: super::read_frame
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream ended cleanly, before the first byte of a frame.
    Eof,
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes the frame needed, header included (the header's 8 when the header itself
        /// was cut short).
        expected: u64,
        /// Bytes of it that arrived, header included.
        received: u64,
    },
    /// The header announced a payload longer than the caller's `maxlength` (or than this
    /// process can address). The header has been consumed, the payload has not: discard it
    /// with [`discard_frame_payload`](super::discard_frame_payload) to stay in sync, or stop
    /// reading the stream.
    TooLong {
        /// The announced payload length.
        len: u64,
        /// The limit it broke.
        max: u64,
    },
    /// The underlying reader failed (other than with [`io::ErrorKind::Interrupted`], which is
    /// retried).
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Eof => f.write_str("end of stream"),
            FrameError::Truncated { expected, received } => {
                write!(f, "stream ended inside a frame: {received} of {expected} bytes")
            }
            FrameError::TooLong { len, max } => {
                write!(f, "bad message length: {len} bytes, limit {max}")
            }
            FrameError::Io(e) => write!(f, "reading a frame: {e}"),
        }
    }
}

impl Error for FrameError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl From<FrameError> for io::Error {
    /// `Eof` and `Truncated` map to [`io::ErrorKind::UnexpectedEof`], `TooLong` to
    /// [`io::ErrorKind::InvalidData`]; `Io` is unwrapped.
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => e,
            FrameError::Eof | FrameError::Truncated { .. } => {
                io::Error::new(io::ErrorKind::UnexpectedEof, e)
            }
            FrameError::TooLong { .. } => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}
