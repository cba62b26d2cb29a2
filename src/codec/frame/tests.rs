//! The frame format: headers, the incremental parser, padding, and reading from a stream cut
//! into arbitrary pieces, in both layouts.

use std::error::Error as _;
use std::io::{self, Read};

use super::*;
use crate::codec::{encode_framed, from_bytes};

/// The connection's layout.
type Padded = Layout<64>;

#[test]
fn frames_encode_and_decode() {
    assert_eq!(encode_frame_header(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode_frame_header([5, 0, 0, 0, 0, 0, 0, 0], Some(5)).unwrap(), 5);
    assert!(matches!(
        decode_frame_header([6, 0, 0, 0, 0, 0, 0, 0], Some(5)),
        Err(FrameError::TooLong { len: 6, max: 5 })
    ));
    assert_eq!(decode_frame_header([0xff; 8], None).unwrap(), u64::MAX);
    let mut wire = vec![0xaa];
    encode_framed(&vec![1u8, 2, 3], &mut wire);
    assert_eq!(wire, [0xaa, 11, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
    let mut r = &wire[1..];
    let payload = read_frame(&mut r, None).unwrap();
    assert_eq!(from_bytes::<Vec<u8>>(&payload).unwrap(), [1, 2, 3]);
    assert!(matches!(read_frame(&mut r, None), Err(FrameError::Eof)));
}

#[test]
fn errors_display_and_convert() {
    let f = FrameError::TooLong { len: 10, max: 3 };
    assert_eq!(f.to_string(), "bad message length: 10 bytes, limit 3");
    assert_eq!(io::Error::from(f).kind(), io::ErrorKind::InvalidData);
    assert_eq!(io::Error::from(FrameError::Eof).kind(), io::ErrorKind::UnexpectedEof);
    let io_err = FrameError::from(io::Error::other("boom"));
    assert!(io_err.source().is_some());
}

/// Frames of payloads of `lens` bytes in layout `MIN`, one after the other, and the payloads.
fn stream<const MIN: usize>(lens: &[usize]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut wire = Vec::new();
    let mut payloads = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8 | 1).collect();
        let at = Layout::<MIN>::begin(&mut wire);
        wire.extend_from_slice(&payload);
        Layout::<MIN>::end(&mut wire, at);
        assert_eq!((wire.len() - at) as u64, Layout::<MIN>::wire_len(len as u64));
        if let Some(small) = Layout::<MIN>::small(&payload) {
            assert_eq!(small[..], wire[at..], "len {len}");
        } else {
            assert!(len > Layout::<MIN>::INLINE);
        }
        payloads.push(payload);
    }
    (wire, payloads)
}

/// Parses every prefix of `wire`'s first frame, then the frames one by one.
fn parse_all<const MIN: usize>(lens: &[usize]) {
    let (wire, payloads) = stream::<MIN>(lens);
    let mut at = 0;
    for payload in &payloads {
        let wire_len = Layout::<MIN>::wire_len(payload.len() as u64) as usize;
        for cut in 0..wire_len {
            let got = Layout::<MIN>::parse(&wire[at..at + cut]).unwrap();
            if cut < FRAME_HEADER_LEN {
                assert_eq!(got, Parsed::NoHeader);
            } else {
                assert_eq!(got, Parsed::Partial { wire_len });
            }
        }
        // Whole, with or without the next frame's bytes after it.
        for end in [at + wire_len, wire.len()] {
            let got = Layout::<MIN>::parse(&wire[at..end]).unwrap();
            assert_eq!(got, Parsed::Whole { payload, wire_len });
        }
        at += wire_len;
    }
    assert_eq!(at, wire.len());
}

#[test]
fn the_parser_sees_a_frame_only_when_it_is_whole() {
    let lens = [0, 1, 55, 56, 57, 63, 64, 65, 300, 0];
    parse_all::<FRAME_HEADER_LEN>(&lens);
    parse_all::<64>(&lens);
    // A length no buffer can hold is refused as soon as the header is in.
    for claim in [u64::MAX, MAX_PAYLOAD + 1] {
        let mut wire = claim.to_le_bytes().to_vec();
        wire.push(0);
        let e = Plain::parse(&wire).unwrap_err();
        assert!(
            matches!(e, FrameError::TooLong { len, max } if len == claim && max == MAX_PAYLOAD)
        );
        assert!(matches!(Padded::parse(&wire), Err(FrameError::TooLong { .. })));
    }
    let mut big = MAX_PAYLOAD.to_le_bytes().to_vec();
    big.extend_from_slice(&[0; 100]);
    let wire_len = FRAME_HEADER_LEN + MAX_PAYLOAD as usize;
    assert_eq!(Padded::parse(&big).unwrap(), Parsed::Partial { wire_len });
}

#[test]
fn a_stream_that_ends_is_eof_or_truncated() {
    assert!(matches!(Plain::ended(&[]), FrameError::Eof));
    assert!(matches!(
        Padded::ended(&[1, 2, 3]),
        FrameError::Truncated { expected: 8, received: 3 }
    ));
    let mut short = 3u64.to_le_bytes().to_vec();
    short.extend_from_slice(b"xyz");
    assert!(matches!(Plain::ended(&short), FrameError::Truncated { expected: 11, received: 11 }));
    assert!(matches!(Padded::ended(&short), FrameError::Truncated { expected: 64, received: 11 }));
    let huge = u64::MAX.to_le_bytes();
    assert!(matches!(
        Padded::ended(&huge),
        FrameError::Truncated { expected: u64::MAX, received: 8 }
    ));
    assert_eq!(check_max(5, Some(5)).unwrap(), 5);
    assert!(matches!(check_max(6, Some(5)), Err(FrameError::TooLong { len: 6, max: 5 })));
    assert_eq!(payload_len(MAX_PAYLOAD).unwrap(), isize::MAX as usize);
}

/// A reader handing out the stream in pieces of 1 to `step` bytes, with `Interrupted` now and
/// then.
struct Choppy<'a> {
    data: &'a [u8],
    step: usize,
    calls: usize,
}

impl Read for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(5) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.data.len()).min(1 + self.calls % self.step);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Reads `wire` cut at every point through `read_start` and `read_payload` in layout `MIN`:
/// the frames before the cut come whole, the one it falls in is truncated with the right
/// counts, then the stream is at its end.
fn read_all<const MIN: usize>(lens: &[usize]) {
    let (wire, payloads) = stream::<MIN>(lens);
    // Every cut point natively; under Miri (which interprets each of these reads) a sample
    // that still cuts inside headers, payloads and padding, and the whole stream.
    let sampled = |cut: &usize| !cfg!(miri) || cut.is_multiple_of(13) || *cut == wire.len();
    for cut in (0..=wire.len()).filter(sampled) {
        for step in [1, 7, 64, 1000] {
            let mut r = Choppy { data: &wire[..cut], step, calls: 0 };
            let mut src = ReadSource(&mut r);
            let mut at = 0;
            let mut out = Vec::new();
            for payload in &payloads {
                let wire_len = Layout::<MIN>::wire_len(payload.len() as u64) as usize;
                let got = Layout::<MIN>::read_start(&mut src)
                    .and_then(|start| read_payload(&mut src, &start, &mut out));
                if at + wire_len <= cut {
                    got.unwrap();
                    assert_eq!(out, *payload);
                    at += wire_len;
                    continue;
                }
                let expected = if cut - at < FRAME_HEADER_LEN { 8 } else { wire_len as u64 };
                match got {
                    Err(FrameError::Eof) => assert_eq!(cut, at),
                    Err(FrameError::Truncated { expected: e, received }) => {
                        assert_eq!((e, received), (expected, (cut - at) as u64), "cut {cut}");
                    }
                    other => panic!("cut {cut}: {other:?}"),
                }
                break;
            }
            assert!(matches!(Layout::<MIN>::read_start(&mut src), Err(FrameError::Eof)));
        }
    }
}

#[test]
fn frames_read_from_a_choppy_stream_come_whole_or_truncated() {
    let lens = [0, 5, 56, 57, 200, 3];
    read_all::<FRAME_HEADER_LEN>(&lens);
    read_all::<64>(&lens);
}

#[test]
fn a_hostile_length_costs_only_what_arrives() {
    for claim in [1u64 << 40, MAX_PAYLOAD + 1, u64::MAX] {
        let mut wire = claim.to_le_bytes().to_vec();
        wire.extend_from_slice(&[7; 100]);
        let mut r = &wire[..];
        let mut src = ReadSource(&mut r);
        let start = Padded::read_start(&mut src).unwrap();
        let mut out = Vec::new();
        match read_payload(&mut src, &start, &mut out) {
            Err(FrameError::Truncated { expected, received }) => {
                assert_eq!((expected, received), (claim.saturating_add(8), 108));
            }
            other => panic!("{other:?}"),
        }
        assert!(out.capacity() <= out.len() + 64 + GROW_AHEAD, "{}", out.capacity());
        // The public reader refuses what cannot be held before reading the payload.
        let e = read_frame(&mut &wire[..], None).unwrap_err();
        if claim > MAX_PAYLOAD {
            assert!(matches!(e, FrameError::TooLong { max: MAX_PAYLOAD, .. }), "{e:?}");
        } else {
            assert!(matches!(e, FrameError::Truncated { received: 108, .. }), "{e:?}");
        }
    }
    let mut wire = 100u64.to_le_bytes().to_vec();
    wire.extend_from_slice(&[1; 30]);
    let mut r = &wire[8..];
    assert!(matches!(
        discard_frame_payload(&mut r, 100),
        Err(FrameError::Truncated { expected: 100, received: 30 })
    ));
}
