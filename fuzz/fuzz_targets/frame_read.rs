//! Reads frames from arbitrary bytes and compares every outcome with a naive model of the
//! frame format. `read_frame` runs the crate's one frame reader (the one a `Connection` runs
//! over its descriptor, see `connection_recv`).
//!
//! Input layout: byte 0 picks the options (bit 0: a `maxlength` is given; bit 1: after
//! `TooLong`, discard the payload and go on; bit 2: reuse one buffer with `read_frame_into`;
//! bits 3..: how the reader splits its reads). When a `maxlength` is given, bytes 1..9 hold it
//! (shifted right by byte 9's low 6 bits, so small limits are common). The rest is the stream.

#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use multiproc::codec::{
    FRAME_HEADER_LEN, FrameError, discard_frame_payload, read_frame, read_frame_into,
};

/// A reader that hands out the stream in short pieces and sometimes fails with `Interrupted`,
/// following a pattern taken from the input.
struct Choppy<'a> {
    data: &'a [u8],
    pattern: u8,
    calls: u32,
}

impl Read for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls = self.calls.wrapping_add(1);
        let p = u32::from(self.pattern);
        if p & 1 == 1 && self.calls.is_multiple_of(2 + (p >> 1) % 5) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let limit =
            if p & 2 == 2 { 1 + (self.calls.wrapping_mul(p) % 17) as usize } else { usize::MAX };
        let n = buf.len().min(self.data.len()).min(limit);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What the model says the next read returns.
#[derive(Debug, PartialEq)]
enum Expected<'a> {
    Frame(&'a [u8]),
    Eof,
    Truncated { expected: u64, received: u64 },
    TooLong { len: u64, max: u64 },
}

/// The frame format, read naively from a slice at `*pos`.
fn model<'a>(stream: &'a [u8], pos: &mut usize, max: Option<u64>) -> Expected<'a> {
    let rest = &stream[*pos..];
    if rest.is_empty() {
        return Expected::Eof;
    }
    if rest.len() < FRAME_HEADER_LEN {
        return Expected::Truncated { expected: 8, received: rest.len() as u64 };
    }
    let len = u64::from_le_bytes(rest[..8].try_into().unwrap());
    *pos += FRAME_HEADER_LEN;
    if let Some(max) = max.filter(|&max| len > max) {
        return Expected::TooLong { len, max };
    }
    if len > isize::MAX as u64 {
        // No buffer can be that long.
        return Expected::TooLong { len, max: isize::MAX as u64 };
    }
    let body = &rest[8..];
    if (body.len() as u64) < len {
        return Expected::Truncated { expected: 8 + len, received: rest.len() as u64 };
    }
    *pos += len as usize;
    Expected::Frame(&body[..len as usize])
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else { return };
    let (maxlength, stream) = if opts & 1 == 1 {
        if rest.len() < 9 {
            return;
        }
        let raw = u64::from_le_bytes(rest[..8].try_into().unwrap());
        (Some(raw >> (rest[8] & 63)), &rest[9..])
    } else {
        (None, rest)
    };
    let discard = opts & 2 == 2;
    let reuse = opts & 4 == 4;

    let mut reader = Choppy { data: stream, pattern: opts >> 3, calls: 0 };
    let mut buf = Vec::new();
    let mut pos = 0;
    loop {
        let expected = model(stream, &mut pos, maxlength);
        let got = if reuse {
            read_frame_into(&mut reader, &mut buf, maxlength).map(|()| buf.clone())
        } else {
            read_frame(&mut reader, maxlength)
        };
        match (&expected, got) {
            (Expected::Frame(f), Ok(g)) => assert_eq!(*f, &g[..]),
            (Expected::Eof, Err(FrameError::Eof)) => return,
            (
                Expected::Truncated { expected: e, received: r },
                Err(FrameError::Truncated { expected, received }),
            ) => {
                assert_eq!((*e, *r), (expected, received));
                return;
            }
            (Expected::TooLong { len: l, max: m }, Err(FrameError::TooLong { len, max })) => {
                assert_eq!((*l, *m), (len, max));
                if !discard {
                    return;
                }
                // Skip the payload, in the model and in the stream, and go on.
                let available = (stream.len() - pos) as u64;
                match discard_frame_payload(&mut reader, len) {
                    Ok(()) => {
                        assert!(available >= len);
                        pos += len as usize;
                    }
                    Err(FrameError::Truncated { expected, received }) => {
                        assert!(available < len);
                        assert_eq!((expected, received), (len, available));
                        return;
                    }
                    Err(e) => panic!("discard failed: {e:?}"),
                }
            }
            (e, g) => panic!("model says {e:?}, reader says {g:?}"),
        }
    }
});
