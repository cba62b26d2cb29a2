//! The manager's wire protocol: one request, one response, each one message in Python's
//! `multiprocessing.connection` framing (a [`SocketConnection`](crate::connection::SocketConnection)).
//!
//! | message | bytes |
//! |---|---|
//! | request | object id (`u64` LE), method id (`u16` LE), then the arguments: the codec's encoding of the method's argument (see the method list below) |
//! | response | `0` then the result's encoding, or `1` then a [`RemoteError`] (kind byte, message) |
//!
//! Object 0 is the manager itself ([`CREATE`], [`SHUTDOWN`], [`PING`]). Values cross as the
//! codec's bytes: the server keeps them as bytes and never needs the user's types, so keys of a
//! `dict` are equal when their encodings are equal.
//!
//! [`decode_request`] is the one parser of client input in the server (the fuzz target
//! `manager_request` drives it): it borrows, never panics, and rejects anything shorter than a
//! header.

use std::fmt;

use super::error::RemoteError;
use crate::codec::{Decode, DecodeError, Decoder, Encode};

/// The object id of the manager itself.
pub const MANAGER: u64 = 0;

/// Object 0: creates an object. Args: `(typeid: String, init: Vec<u8>, name: Option<String>)`;
/// result: its id (`u64`). With a name, returns the object already made under that name (of
/// the same typeid), if any.
pub const CREATE: u16 = 1;
/// Object 0: stops the server (after answering).
pub const SHUTDOWN: u16 = 2;
/// Object 0: answers the server's pid (`u32`): a connection check.
pub const PING: u16 = 3;

/// Read one item: dict `get(k) -> Option<V>`, list/array `[i] -> V`, `Value` `get() -> V`,
/// `Namespace` attribute `-> V`.
pub const GET: u16 = 10;
/// `d[k]` (a missing key is a `KeyError`).
pub const GET_ITEM: u16 = 11;
/// Write one item: dict `(k, v)`, list/array `(i, v)`, `Value` `v`, `Namespace` `(name, v)`.
pub const SET: u16 = 12;
/// Delete one item: dict `k`, list `i`, `Namespace` name.
pub const DEL: u16 = 13;
/// `k in d`, `name in ns`.
pub const CONTAINS: u16 = 14;
/// `len()`.
pub const LEN: u16 = 15;
/// Dict keys (`Vec<Vec<u8>>`), `Namespace` names (`Vec<String>`).
pub const KEYS: u16 = 16;
/// Dict values.
pub const VALUES: u16 = 17;
/// Dict items.
pub const ITEMS: u16 = 18;
/// Empties a dict or list.
pub const CLEAR: u16 = 19;
/// Dict `pop(k) -> V`; list `pop(Option<i64>) -> V`.
pub const POP: u16 = 20;
/// Dict `(k, delta: i64) -> i64`, `Value` `delta -> i64`: adds to an `i64` (0 if missing), atomically.
pub const INCR: u16 = 21;
/// List `append(v)`.
pub const APPEND: u16 = 22;
/// List `insert(i, v)`.
pub const INSERT: u16 = 23;
/// List `extend(Vec<v>)`, dict `update(Vec<(k, v)>)`.
pub const EXTEND: u16 = 24;
/// The whole list or array (`Vec<Vec<u8>>`).
pub const TO_VEC: u16 = 25;
/// Dict `setdefault(k, v) -> V`.
pub const SET_DEFAULT: u16 = 26;

/// `acquire(timeout: Option<Duration>) -> bool` (`None` waits forever).
pub const ACQUIRE: u16 = 40;
/// `release()`.
pub const RELEASE: u16 = 41;
/// `Lock.locked() -> bool`.
pub const LOCKED: u16 = 42;
/// `Semaphore.get_value() -> u64`.
pub const GET_VALUE: u16 = 43;
/// `wait(timeout: Option<Duration>)`: Event and Condition `-> bool`, Barrier `-> u64`.
pub const WAIT: u16 = 44;
/// `Event.set()`.
pub const EVENT_SET: u16 = 45;
/// `Event.clear()`.
pub const EVENT_CLEAR: u16 = 46;
/// `Event.is_set() -> bool`.
pub const IS_SET: u16 = 47;
/// `Condition.notify(n: u64)`.
pub const NOTIFY: u16 = 48;
/// `Condition.notify_all()`.
pub const NOTIFY_ALL: u16 = 49;
/// `Barrier.abort()`.
pub const ABORT: u16 = 50;
/// `Barrier.reset()`.
pub const RESET: u16 = 51;
/// `Barrier.parties -> u64`.
pub const PARTIES: u16 = 52;
/// `Barrier.n_waiting -> u64`.
pub const N_WAITING: u16 = 53;
/// `Barrier.broken -> bool`.
pub const BROKEN: u16 = 54;

/// `Queue.put((timeout: Option<Duration>, item: Vec<u8>))`.
pub const PUT: u16 = 60;
/// `Queue.get(timeout: Option<Duration>) -> Vec<u8>`.
pub const QUEUE_GET: u16 = 61;
/// `Queue.qsize() -> u64`.
pub const QSIZE: u16 = 62;
/// `Queue.full() -> bool`.
pub const FULL: u16 = 63;
/// `JoinableQueue.task_done()`.
pub const TASK_DONE: u16 = 64;
/// `JoinableQueue.join(timeout: Option<Duration>) -> bool`.
pub const JOIN: u16 = 65;

/// A custom object's method: `(name: String, args: Vec<u8>) -> Vec<u8>`.
pub const CALL: u16 = 80;

/// The length of a request's header (object and method ids).
pub const HEADER_LEN: usize = 10;

/// One request, borrowed from the message it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The object it is for (0: the manager).
    pub object: u64,
    /// The method id (the constants of this module).
    pub method: u16,
    /// The encoded argument.
    pub args: &'a [u8],
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Shorter than a request header.
    Short(usize),
    /// A frame header with a negative length other than `-1`.
    BadLength(i32),
    /// A frame longer than the server accepts.
    TooLong {
        /// The length announced.
        len: u64,
        /// The limit.
        max: u64,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Short(n) => {
                write!(f, "a request of {n} bytes is shorter than its {HEADER_LEN}-byte header")
            }
            ProtocolError::BadLength(n) => {
                write!(f, "invalid message header: length {n} (only -1 may be negative)")
            }
            ProtocolError::TooLong { len, max } => {
                write!(f, "a request of {len} bytes is longer than the limit of {max}")
            }
        }
    }
}

/// Reads a frame header in Python's framing from `bytes` (4 bytes, or 12 when the first four
/// are `-1`): `Ok(None)` if more bytes are needed, else the payload's length and the header's.
/// A length over `max` or a negative one other than `-1` is an error: the connection cannot be
/// resynchronised, and the server answers the error and closes it.
pub fn parse_frame_header(bytes: &[u8], max: u64) -> Result<Option<(u64, usize)>, ProtocolError> {
    let Some(short) = bytes.get(..4) else { return Ok(None) };
    let n = i32::from_be_bytes([short[0], short[1], short[2], short[3]]);
    let (len, header) = match n {
        0.. => (n as u64, 4),
        -1 => {
            let Some(long) = bytes.get(4..12) else { return Ok(None) };
            let mut b = [0u8; 8];
            b.copy_from_slice(long);
            (u64::from_be_bytes(b), 12)
        }
        bad => return Err(ProtocolError::BadLength(bad)),
    };
    if len > max {
        return Err(ProtocolError::TooLong { len, max });
    }
    Ok(Some((len, header)))
}

impl std::error::Error for ProtocolError {}

/// Reads a request from one message. Never panics; the arguments are checked by the method
/// that decodes them.
pub fn decode_request(bytes: &[u8]) -> Result<Request<'_>, ProtocolError> {
    if bytes.len() < HEADER_LEN {
        return Err(ProtocolError::Short(bytes.len()));
    }
    let (head, args) = bytes.split_at(HEADER_LEN);
    let mut object = [0u8; 8];
    object.copy_from_slice(&head[..8]);
    let method = u16::from_le_bytes([head[8], head[9]]);
    Ok(Request { object: u64::from_le_bytes(object), method, args })
}

/// Encodes a request into `out` (cleared first).
pub fn encode_request(object: u64, method: u16, args: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_LEN + args.len());
    out.extend_from_slice(&object.to_le_bytes());
    out.extend_from_slice(&method.to_le_bytes());
    out.extend_from_slice(args);
}

/// A successful response's tag.
pub const OK: u8 = 0;
/// A failed response's tag.
pub const ERR: u8 = 1;

/// Encodes a response into `out` (cleared first).
pub fn encode_response(result: &Result<Vec<u8>, RemoteError>, out: &mut Vec<u8>) {
    out.clear();
    match result {
        Ok(value) => {
            out.push(OK);
            out.extend_from_slice(value);
        }
        Err(e) => {
            out.push(ERR);
            e.encode(out);
        }
    }
}

/// Reads a response: the result's bytes, or the server's error.
pub fn decode_response(bytes: &[u8]) -> Result<Result<&[u8], RemoteError>, DecodeError> {
    match bytes.split_first() {
        Some((&OK, rest)) => Ok(Ok(rest)),
        Some((&ERR, rest)) => {
            let mut d = Decoder::new(rest);
            let e = RemoteError::decode(&mut d)?;
            d.finish()?;
            Ok(Err(e))
        }
        Some((&tag, _)) => Err(DecodeError::InvalidTag { tag, ty: "manager response" }),
        None => Err(DecodeError::Truncated { needed: 1, available: 0 }),
    }
}

/// Decodes a whole argument as a `T` (trailing bytes are an error).
pub fn args<T: Decode>(bytes: &[u8]) -> Result<T, RemoteError> {
    crate::codec::from_bytes(bytes).map_err(RemoteError::bad_args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let mut out = Vec::new();
        encode_request(7, GET, b"abc", &mut out);
        let r = decode_request(&out).unwrap();
        assert_eq!(r, Request { object: 7, method: GET, args: b"abc" });
        assert_eq!(decode_request(&out[..9]), Err(ProtocolError::Short(9)));
    }

    #[test]
    fn frame_headers() {
        assert_eq!(parse_frame_header(&[0, 0, 1], 10), Ok(None));
        assert_eq!(parse_frame_header(&[0, 0, 0, 5], 10), Ok(Some((5, 4))));
        assert_eq!(
            parse_frame_header(&[0, 0, 0, 11], 10),
            Err(ProtocolError::TooLong { len: 11, max: 10 })
        );
        assert_eq!(
            parse_frame_header(&[0xff, 0xff, 0xff, 0xfe], 10),
            Err(ProtocolError::BadLength(-2))
        );
        assert_eq!(parse_frame_header(&[0xff; 8], 10), Ok(None));
        let mut long = vec![0xff; 4];
        long.extend_from_slice(&3u64.to_be_bytes());
        assert_eq!(parse_frame_header(&long, 10), Ok(Some((3, 12))));
    }

    #[test]
    fn response_round_trip() {
        let mut out = Vec::new();
        encode_response(&Ok(vec![1, 2]), &mut out);
        assert_eq!(decode_response(&out).unwrap(), Ok(&[1u8, 2][..]));
        let e = RemoteError::new(super::super::ErrorKind::Index, "list index out of range");
        encode_response(&Err(e.clone()), &mut out);
        assert_eq!(decode_response(&out).unwrap(), Err(e));
        assert!(decode_response(&[9]).is_err());
        assert!(decode_response(&[]).is_err());
    }
}
