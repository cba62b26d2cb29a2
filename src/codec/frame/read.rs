//! Reading frames from a byte stream, one `read` at a time: the start of a frame, its payload
//! (grown only as fast as bytes arrive), and skipping a payload. [`read_frame`](super::read_frame)
//! runs it over any [`Read`]; a [`Connection`](crate::Connection) over its descriptor.

use std::io::{self, Read};

use super::{FRAME_HEADER_LEN, FrameError, GROW_AHEAD, Layout, header_len, payload_len};

/// A byte stream frames are read from.
pub(crate) trait Source {
    /// Reads once into `buf`: the bytes read, 0 at the end of the stream. What should be retried
    /// (`EINTR`, a descriptor someone made non-blocking) is retried here.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, FrameError>;

    /// Appends at most `max` bytes to `out`, whose spare capacity is at least `max`, without
    /// initialising that memory first: the bytes appended, at least 1 unless the stream has
    /// ended (then 0).
    fn append(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, FrameError>;
}

/// Any [`Read`] as a [`Source`]; `Interrupted` is retried.
pub(crate) struct ReadSource<'a, R: ?Sized>(pub(crate) &'a mut R);

impl<R: Read + ?Sized> Source for ReadSource<'_, R> {
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, FrameError> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Ok(r?),
            }
        }
    }

    fn append(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, FrameError> {
        // `read_to_end` on a `Take` reads into the spare capacity without zeroing it first.
        Ok((&mut *self.0).take(max as u64).read_to_end(out)?)
    }
}

/// The first `MIN` bytes of a frame of [`Layout<MIN>`]: its header and the start of its
/// payload (none for the plain layout).
pub(crate) struct FrameStart<const MIN: usize> {
    bytes: [u8; MIN],
    len: u64,
}

impl<const MIN: usize> FrameStart<MIN> {
    /// The payload length from the header.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The payload bytes that came with the start.
    #[inline]
    pub(crate) fn inline(&self) -> &[u8] {
        let n = self.len.min(Layout::<MIN>::INLINE as u64) as usize;
        &self.bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + n]
    }

    /// How many payload bytes are still to be read.
    #[inline]
    pub(crate) fn rest(&self) -> u64 {
        self.len - self.inline().len() as u64
    }

    /// The error for a stream that ended after `payload` bytes of this frame's payload.
    #[inline]
    pub(crate) fn truncated(&self, payload: u64) -> FrameError {
        Layout::<MIN>::truncated(self.len, FRAME_HEADER_LEN as u64 + payload)
    }
}

impl<const MIN: usize> Layout<MIN> {
    /// Reads the first `MIN` bytes of a frame, which never reach into the next one.
    ///
    /// # Errors
    ///
    /// [`FrameError::Eof`] when the stream ends before the first byte,
    /// [`FrameError::Truncated`] inside these bytes, what `src` returns.
    #[inline]
    pub(crate) fn read_start<S: Source>(src: &mut S) -> Result<FrameStart<MIN>, FrameError> {
        let mut bytes = [0u8; MIN];
        let n = read_full(src, &mut bytes)?;
        match header_len(&bytes[..n]) {
            Some(len) if n == MIN => Ok(FrameStart { bytes, len }),
            _ => Err(Self::ended(&bytes[..n])),
        }
    }
}

/// Puts the whole payload of the frame that `start` began in `out` (cleared first, its
/// capacity reused), growing `out` no further than [`GROW_AHEAD`] (or the size received so
/// far) past the bytes that have arrived, so a hostile length costs only what really comes.
///
/// # Errors
///
/// [`FrameError::Truncated`] when the stream ends first, what `src` returns. A length no buffer
/// can hold is read out to the end of the stream and reported as `Truncated`: callers that
/// prefer [`FrameError::TooLong`] check [`payload_len`] first. On error `out` holds an
/// unspecified prefix of the payload.
pub(crate) fn read_payload<S: Source, const MIN: usize>(
    src: &mut S,
    start: &FrameStart<MIN>,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    out.clear();
    let Ok(len) = payload_len(start.len) else {
        let got = skip(src, start.rest())?;
        return Err(start.truncated(start.inline().len() as u64 + got));
    };
    out.reserve_exact(len.min(MIN + GROW_AHEAD));
    out.extend_from_slice(start.inline());
    while out.len() < len {
        let want = (len - out.len()).min(out.len().max(GROW_AHEAD));
        out.reserve_exact(want);
        let spare = out.capacity().min(len) - out.len();
        if src.append(out, spare)? == 0 {
            return Err(start.truncated(out.len() as u64));
        }
    }
    Ok(())
}

/// Fills `buf`, stopping early only at the end of the stream; returns how many bytes arrived.
#[inline]
pub(crate) fn read_full<S: Source>(src: &mut S, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut done = 0;
    while done < buf.len() {
        match src.read_some(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Reads and drops `len` bytes; returns how many arrived before the end of the stream.
pub(crate) fn skip<S: Source>(src: &mut S, len: u64) -> Result<u64, FrameError> {
    let mut sink = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(sink.len() as u64) as usize;
        match src.read_some(&mut sink[..want])? {
            0 => break,
            n => left -= n as u64,
        }
    }
    Ok(len - left)
}
