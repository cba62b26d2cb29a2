//! Frames: an 8-byte little-endian payload length, then the payload; reading them from any
//! [`Read`] with a length limit checked before anything is allocated.
//!
//! This is the one implementation of the frame format. The public functions below (and
//! [`encode_framed`](super::encode_framed)) read and write it over any [`Read`]/[`Write`]; a
//! [`Connection`](crate::Connection) and the pool's worker channels use the same header,
//! limits, parser, reader and [`FrameError`], each with its [`Layout`]. It knows nothing of the
//! codec: a payload is bytes.

mod error;
mod read;

pub use error::FrameError;
pub(crate) use read::{ReadSource, Source, read_full, read_payload, skip};

use std::io::{self, Read, Write};

/// The size of a frame header: the payload length as a little-endian `u64`.
pub const FRAME_HEADER_LEN: usize = 8;

/// How far ahead of the bytes received a payload buffer grows, at most (1 MiB, or the size
/// already received when that is larger): the allocation a hostile length can cause before its
/// bytes arrive.
const GROW_AHEAD: usize = 1 << 20;

/// The longest payload a frame can carry: what a buffer can hold.
const MAX_PAYLOAD: u64 = isize::MAX as u64;

/// How one kind of stream lays its frames out: the header, the payload, then zeros up to
/// `MIN` bytes when the frame is shorter.
///
/// A reader can always read `MIN` bytes first without reaching into the next frame. With
/// `MIN = 64`, [`Connection`](crate::Connection)'s layout, a small message (header and payload)
/// then arrives in one `read`, with no read-ahead buffer that would hide a queued message from
/// `poll`, `wait` or an epoll loop. [`Plain`] (`MIN` = the header) is the public functions' and
/// the pool channels' layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout<const MIN: usize>;

/// Header, then payload, nothing else.
pub(crate) type Plain = Layout<FRAME_HEADER_LEN>;

/// What is at the front of a buffer of received bytes (see [`Layout::parse`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// Not the whole header yet.
    NoHeader,
    /// The header is in: the frame takes `wire_len` bytes, more than the buffer holds.
    Partial {
        /// The frame's bytes on the wire, header and padding included.
        wire_len: usize,
    },
    /// The whole frame.
    Whole {
        /// Its payload.
        payload: &'a [u8],
        /// Its bytes on the wire, header and padding included.
        wire_len: usize,
    },
}

impl<const MIN: usize> Layout<MIN> {
    /// Payload bytes that arrive with the first `MIN` bytes of a frame, at most.
    pub(crate) const INLINE: usize = {
        assert!(MIN >= FRAME_HEADER_LEN, "a frame holds at least its header");
        MIN - FRAME_HEADER_LEN
    };

    /// The bytes on the wire of a frame carrying `len` payload bytes (saturating: a hostile
    /// header may claim up to `u64::MAX`).
    #[inline]
    pub(crate) fn wire_len(len: u64) -> u64 {
        (FRAME_HEADER_LEN as u64).saturating_add(len).max(MIN as u64)
    }

    /// The error for a stream that ended inside a frame with a `len`-byte payload after
    /// `received` of its bytes (header included).
    #[inline]
    pub(crate) fn truncated(len: u64, received: u64) -> FrameError {
        FrameError::Truncated { expected: Self::wire_len(len), received }
    }

    /// The error for a stream that ended with `received` at the front of a frame:
    /// [`FrameError::Eof`] when nothing, [`FrameError::Truncated`] otherwise.
    pub(crate) fn ended(received: &[u8]) -> FrameError {
        if received.is_empty() {
            return FrameError::Eof;
        }
        let n = received.len() as u64;
        match header_len(received) {
            None => FrameError::Truncated { expected: FRAME_HEADER_LEN as u64, received: n },
            Some(len) => Self::truncated(len, n),
        }
    }

    /// What is at the front of `buf`, the bytes received so far: the header and the whole
    /// frame once they are in. Reads nothing past the frame.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLong`] when the header claims a payload no buffer can hold.
    #[inline]
    pub(crate) fn parse(buf: &[u8]) -> Result<Parsed<'_>, FrameError> {
        let Some(len) = header_len(buf) else { return Ok(Parsed::NoHeader) };
        let len = payload_len(len)?;
        // No overflow: `len` is at most `isize::MAX`.
        let wire_len = (FRAME_HEADER_LEN + len).max(MIN);
        Ok(match buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) {
            Some(payload) if buf.len() >= wire_len => Parsed::Whole { payload, wire_len },
            _ => Parsed::Partial { wire_len },
        })
    }

    /// Starts a frame in `out`: a header to be filled in by [`end`](Self::end), which this
    /// returns the position of.
    #[inline]
    pub(crate) fn begin(out: &mut Vec<u8>) -> usize {
        let at = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        at
    }

    /// Ends the frame [`begin`](Self::begin) started at `at`: everything after its header is
    /// the payload. Writes the header, then pads the frame to `MIN` bytes.
    #[inline]
    pub(crate) fn end(out: &mut Vec<u8>, at: usize) {
        let len = (out.len() - at - FRAME_HEADER_LEN) as u64;
        out[at..at + FRAME_HEADER_LEN].copy_from_slice(&encode_frame_header(len));
        if out.len() - at < MIN {
            out.resize(at + MIN, 0);
        }
    }

    /// The whole frame carrying `payload`, when it fits in `MIN` bytes.
    #[inline]
    pub(crate) fn small(payload: &[u8]) -> Option<[u8; MIN]> {
        if payload.len() > Self::INLINE {
            return None;
        }
        let mut frame = [0u8; MIN];
        frame[..FRAME_HEADER_LEN].copy_from_slice(&encode_frame_header(payload.len() as u64));
        frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + payload.len()].copy_from_slice(payload);
        Some(frame)
    }
}

/// The payload length in the header at the front of `buf`, once the whole header is there.
#[inline]
pub(crate) fn header_len(buf: &[u8]) -> Option<u64> {
    let header: [u8; FRAME_HEADER_LEN] = buf.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(header))
}

/// `len`, unless it is over the caller's `maxlength`.
///
/// # Errors
///
/// [`FrameError::TooLong`] when `maxlength` is `Some(max)` and `len` exceeds `max`.
#[inline]
pub(crate) fn check_max(len: u64, maxlength: Option<u64>) -> Result<u64, FrameError> {
    match maxlength {
        Some(max) if len > max => Err(FrameError::TooLong { len, max }),
        _ => Ok(len),
    }
}

/// `len` as a buffer size, unless no buffer can hold it.
///
/// # Errors
///
/// [`FrameError::TooLong`] (with `max` = `isize::MAX`) when `len` is past what this process
/// can address.
#[inline]
pub(crate) fn payload_len(len: u64) -> Result<usize, FrameError> {
    match usize::try_from(len) {
        Ok(n) if len <= MAX_PAYLOAD => Ok(n),
        _ => Err(FrameError::TooLong { len, max: MAX_PAYLOAD }),
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
    check_max(u64::from_le_bytes(header), maxlength)
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
    let mut src = ReadSource(r);
    let start = Plain::read_start(&mut src)?;
    payload_len(check_max(start.len(), maxlength)?)?;
    read_payload(&mut src, &start, buf)
}

/// Reads and drops `len` payload bytes from `r`: the way to stay in sync after
/// [`FrameError::TooLong`].
///
/// # Errors
///
/// [`FrameError::Truncated`] when the stream ends first (`expected` and `received` count only
/// the payload bytes here), [`FrameError::Io`] when `r` fails.
pub fn discard_frame_payload<R: Read + ?Sized>(r: &mut R, len: u64) -> Result<(), FrameError> {
    let received = skip(&mut ReadSource(r), len)?;
    if received < len {
        return Err(FrameError::Truncated { expected: len, received });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
