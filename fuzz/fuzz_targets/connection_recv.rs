//! Writes arbitrary bytes into one end of a real `Pipe` (a socketpair or a pipe), closes it,
//! and receives from the other end with every receiving call of `Connection`, comparing each
//! result with a naive model of the connection's frames (an 8-byte length, the payload, zeros
//! up to 64 bytes).
//!
//! Input layout: byte 0 picks the pipe kind (bit 0) and how many call bytes follow (bits 1..,
//! at most 31); each call byte picks a call (bits 0-1) and its argument (the rest). The rest
//! of the input is the stream.

#![no_main]

use std::os::fd::AsRawFd;

use libfuzzer_sys::fuzz_target;
use multiproc::codec::{self, DecodeError};
use multiproc::{ConnectionError, pipe};

const HEADER: usize = 8;
const MIN_FRAME: usize = 64;

/// The stream the model reads, and where it is.
struct Model<'a> {
    stream: &'a [u8],
    pos: usize,
}

/// What the model says a call returns.
#[derive(Debug, PartialEq)]
enum Want {
    Bytes(Vec<u8>),
    Into(usize, Vec<u8>),
    Decoded(Result<Vec<u8>, DecodeError>),
    Eof,
    Truncated { expected: u64, received: u64 },
    TooLong { len: u64, max: usize },
    BufferTooShort(Vec<u8>),
}

impl Model<'_> {
    /// The payload of the next frame, its length and the end of its bytes on the wire; or the
    /// error a reader gets (the stream is then at its end).
    fn frame(&mut self) -> Result<(u64, &[u8], usize), Want> {
        let rest = &self.stream[self.pos..];
        if rest.is_empty() {
            return Err(Want::Eof);
        }
        let truncated = |expected: u64| {
            let received = rest.len() as u64;
            Want::Truncated { expected, received }
        };
        if rest.len() < HEADER {
            self.pos = self.stream.len();
            return Err(truncated(HEADER as u64));
        }
        let len = u64::from_le_bytes(rest[..HEADER].try_into().unwrap());
        let wire = (HEADER as u64).saturating_add(len).max(MIN_FRAME as u64);
        if (rest.len() as u64) < wire {
            self.pos = self.stream.len();
            return Err(truncated(wire));
        }
        let payload = &rest[HEADER..HEADER + len as usize];
        Ok((len, payload, self.pos + wire as usize))
    }

    fn recv_bytes(&mut self, max: Option<usize>) -> Want {
        let start = self.pos;
        let rest_len = self.stream.len() - start;
        // A frame over `max` is skipped once its first 64 bytes are in, whether or not the
        // rest of it arrives.
        if let Some(max) = max
            && rest_len >= MIN_FRAME
        {
            let len = u64::from_le_bytes(self.stream[start..start + HEADER].try_into().unwrap());
            if len > max as u64 {
                let wire = (HEADER as u64).saturating_add(len).max(MIN_FRAME as u64);
                self.pos = start + wire.min(rest_len as u64) as usize;
                return Want::TooLong { len, max };
            }
        }
        match self.frame() {
            Ok((_, payload, end)) => {
                let payload = payload.to_vec();
                self.pos = end;
                Want::Bytes(payload)
            }
            Err(e) => e,
        }
    }

    fn recv_into(&mut self, size: usize, offset: usize) -> Want {
        match self.frame() {
            Ok((_, payload, end)) => {
                let payload = payload.to_vec();
                self.pos = end;
                if payload.len() > size - offset {
                    Want::BufferTooShort(payload)
                } else {
                    Want::Into(payload.len(), payload)
                }
            }
            // Cut short, whether it fits the buffer or is read whole for `BufferTooShort`.
            Err(e) => e,
        }
    }

    fn recv(&mut self) -> Want {
        match self.recv_bytes(None) {
            Want::Bytes(payload) => Want::Decoded(codec::from_bytes::<Vec<u8>>(&payload)),
            other => other,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else { return };
    let n_calls = usize::from(opts >> 1).min(rest.len());
    let (calls, stream) = rest.split_at(n_calls);
    // Everything must fit in the OS buffer, so that the writer never waits for the reader.
    let stream = &stream[..stream.len().min(48 * 1024)];

    let (rx, tx) = pipe(opts & 1 == 1).unwrap();
    let mut written = 0;
    while written < stream.len() {
        // SAFETY: write(2) from a live buffer to the writer's open descriptor.
        let n = unsafe {
            libc::write(tx.as_raw_fd(), stream[written..].as_ptr().cast(), stream.len() - written)
        };
        assert!(n > 0, "write: {}", std::io::Error::last_os_error());
        written += n as usize;
    }
    drop(tx);

    let mut model = Model { stream, pos: 0 };
    for &call in calls {
        let arg = usize::from(call >> 2);
        let (got, want) = match call & 3 {
            0 => (rx.recv_bytes().map(Want::Bytes), model.recv_bytes(None)),
            1 => {
                let max = arg * arg;
                (rx.recv_bytes_max(max).map(Want::Bytes), model.recv_bytes(Some(max)))
            }
            2 => {
                let mut buf = vec![0u8; arg * 3];
                let offset = arg % 7 % (buf.len() + 1);
                let got = rx.recv_bytes_into(&mut buf, offset).map(|n| {
                    let bytes = buf[offset..offset + n].to_vec();
                    Want::Into(n, bytes)
                });
                (got, model.recv_into(buf.len(), offset))
            }
            _ => {
                let got = match rx.recv::<Vec<u8>>() {
                    Ok(v) => Ok(Want::Decoded(Ok(v))),
                    Err(ConnectionError::Decode(e)) => Ok(Want::Decoded(Err(e))),
                    Err(e) => Err(e),
                };
                (got, model.recv())
            }
        };
        let got = match got {
            Ok(w) => w,
            Err(ConnectionError::Eof) => Want::Eof,
            Err(ConnectionError::Truncated { expected, received }) => {
                Want::Truncated { expected, received }
            }
            Err(ConnectionError::TooLong { len, max }) => Want::TooLong { len, max },
            Err(ConnectionError::BufferTooShort(whole)) => Want::BufferTooShort(whole),
            Err(e) => panic!("an unclear error: {e:?}"),
        };
        assert_eq!(got, want, "call {call:#x}");
    }
});
