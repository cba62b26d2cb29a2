//! Frames: an 8-byte little-endian length, then the payload; reading them from any [`Read`]
//! with a length limit checked before anything is allocated.

use super::Encode;
use std::error::Error;
use std::fmt;
use std::io::{self, Read, Write};

/// The size of a frame header: the payload length as a little-endian `u64`.
pub const FRAME_HEADER_LEN: usize = 8;

/// How far ahead of the bytes received [`read_frame`] grows its buffer, at most (1 MiB, or the
/// size already received when that is larger).
const FRAME_CHUNK: usize = 1 << 20;

/// Why a frame could not be read.
///
/// Python's `Connection.recv_bytes` raises `EOFError` at the end of the stream and
/// `OSError('bad message length')` for a message over `maxlength`; [`read_frame`] returns
/// [`FrameError::Eof`] and [`FrameError::TooLong`] instead (and a frame cut short is
/// [`FrameError::Truncated`], never misread).
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
    /// with [`discard_frame_payload`] to stay in sync, or stop reading the stream.
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

/// Returns the header of a frame whose payload is `len` bytes long.
#[inline]
#[must_use]
pub fn encode_frame_header(len: u64) -> [u8; FRAME_HEADER_LEN] {
    len.to_le_bytes()
}

/// Reads the payload length from a frame header and checks it against `maxlength`.
///
/// # Errors
///
/// [`FrameError::TooLong`] when `maxlength` is `Some(max)` and the length exceeds `max`.
#[inline]
pub fn decode_frame_header(
    header: [u8; FRAME_HEADER_LEN],
    maxlength: Option<u64>,
) -> Result<u64, FrameError> {
    let len = u64::from_le_bytes(header);
    match maxlength {
        Some(max) if len > max => Err(FrameError::TooLong { len, max }),
        _ => Ok(len),
    }
}

/// Appends a whole frame (header, then the encoding of `value`) to `out`, ready to be written
/// with one `write`.
pub fn encode_framed<T: Encode + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    value.encode(out);
    let len = (out.len() - start - FRAME_HEADER_LEN) as u64;
    out[start..start + FRAME_HEADER_LEN].copy_from_slice(&encode_frame_header(len));
}

/// Writes one frame carrying `payload` to `w` (a header, then the payload).
///
/// # Errors
///
/// What [`Write::write_all`] returns.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode_frame_header(payload.len() as u64))?;
    w.write_all(payload)
}

/// Reads one frame from `r` and returns its payload.
///
/// The announced length is checked against `maxlength` before any payload byte is read. The
/// buffer grows only as bytes arrive (at most 1 MiB, or the size received so far, ahead of
/// them), so a header claiming an enormous length followed by EOF allocates almost nothing.
/// Reads interrupted by a signal are retried. `r` should be blocking: on
/// [`io::ErrorKind::WouldBlock`] the part of the frame already read is lost.
///
/// # Errors
///
/// - [`FrameError::Eof`]: the stream ended before the first header byte (a clean end).
/// - [`FrameError::Truncated`]: the stream ended inside the header or the payload.
/// - [`FrameError::TooLong`]: the payload is longer than `maxlength`; see its docs for how to
///   stay in sync.
/// - [`FrameError::Io`]: `r` failed.
pub fn read_frame<R: Read + ?Sized>(
    r: &mut R,
    maxlength: Option<u64>,
) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::new();
    read_frame_into(r, &mut buf, maxlength)?;
    Ok(buf)
}

/// Like [`read_frame`], but reads the payload into `buf` (cleared first), reusing its capacity.
///
/// On error `buf` holds an unspecified prefix of the payload.
///
/// # Errors
///
/// As [`read_frame`].
pub fn read_frame_into<R: Read + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    maxlength: Option<u64>,
) -> Result<(), FrameError> {
    buf.clear();
    let mut header = [0u8; FRAME_HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Err(FrameError::Eof);
    }
    if got < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated {
            expected: FRAME_HEADER_LEN as u64,
            received: got as u64,
        });
    }
    let len = decode_frame_header(header, maxlength)?;
    let len = match usize::try_from(len) {
        Ok(n) if n <= isize::MAX as usize => n,
        _ => return Err(FrameError::TooLong { len, max: isize::MAX as u64 }),
    };
    let truncated = |received: usize| FrameError::Truncated {
        expected: FRAME_HEADER_LEN as u64 + len as u64,
        received: (FRAME_HEADER_LEN + received) as u64,
    };
    while buf.len() < len {
        let step = buf.len().max(FRAME_CHUNK).min(len - buf.len());
        if buf.capacity() - buf.len() < step {
            buf.reserve_exact(step);
        }
        let read = r.take(step as u64).read_to_end(buf)?;
        if read < step {
            return Err(truncated(buf.len()));
        }
    }
    Ok(())
}

/// Reads and drops `len` payload bytes from `r`: the way to stay in sync after
/// [`FrameError::TooLong`].
///
/// # Errors
///
/// [`FrameError::Truncated`] when the stream ends first (`expected` and `received` count only
/// the payload bytes here), [`FrameError::Io`] when `r` fails.
pub fn discard_frame_payload<R: Read + ?Sized>(r: &mut R, len: u64) -> Result<(), FrameError> {
    let copied = io::copy(&mut r.take(len), &mut io::sink())?;
    if copied < len {
        return Err(FrameError::Truncated { expected: len, received: copied });
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns the bytes read. Retries EINTR.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
