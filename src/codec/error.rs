//! [`DecodeError`]: why bytes did not decode.

use std::error::Error;
use std::fmt;
use std::io;

use super::MAX_DEPTH;

/// Why bytes could not be decoded as the requested type.
///
/// Python raises whatever `pickle.loads` raises on bad bytes (`UnpicklingError`, `EOFError`,
/// ...); here decoding returns a `DecodeError`, and a [`Connection`](crate::Connection) wraps
/// it in [`ConnectionError::Decode`](crate::ConnectionError::Decode).
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, DecodeError};
///
/// // A `Vec<u8>` and a `String` share an encoding, but not every byte string is UTF-8.
/// let bytes = codec::to_bytes(&vec![b'o', b'k', 0xff]);
/// match codec::from_bytes::<String>(&bytes) {
///     Err(DecodeError::InvalidUtf8 { valid_up_to }) => assert_eq!(valid_up_to, 2),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(codec::from_bytes::<bool>(&[2]), Err(DecodeError::InvalidBool(2)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended early: `needed` more bytes were required but only `available` were left.
    Truncated {
        /// Bytes the next read required.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A tag byte (of an `Option`, a `Result` or a user enum) had no meaning.
    InvalidTag {
        /// The tag byte read.
        tag: u8,
        /// The type being decoded.
        ty: &'static str,
    },
    /// A string was not valid UTF-8.
    InvalidUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// A `char` was a surrogate or past `0x10FFFF`.
    InvalidChar(u32),
    /// A `bool` byte was neither `0` nor `1`.
    InvalidBool(u8),
    /// A sequence length cannot be right: its elements could not fit in the bytes left (or,
    /// for elements that take no bytes, there were more than [`EMPTY_ELEMENT_BUDGET`](super::EMPTY_ELEMENT_BUDGET) of them).
    LengthTooLarge {
        /// The length read.
        len: u64,
        /// Bytes that were left after it.
        available: usize,
    },
    /// A map or set held the same key twice.
    DuplicateKey,
    /// A value was out of range for its type (a `usize` past `usize::MAX` on this target, a
    /// [`Duration`](std::time::Duration) with 10^9 or more nanoseconds).
    OutOfRange {
        /// The type being decoded.
        ty: &'static str,
    },
    /// More than [`MAX_DEPTH`] nested containers.
    DepthLimitExceeded,
    /// [`from_bytes`](super::from_bytes) decoded a value but `count` bytes were left after it.
    TrailingBytes {
        /// The number of unread bytes.
        count: usize,
    },
    /// An error raised by a hand-written [`Decode`](super::Decode) implementation.
    Custom(&'static str),
    /// A value was rejected with a message built at run time: under the `serde` feature, the
    /// errors a `Deserialize` impl raises (`invalid value`, `invalid length`, `missing field`,
    /// `de::Error::custom`, ...); also usable by a hand-written [`Decode`](super::Decode) implementation.
    Invalid(String),
    /// A [`Decode`](super::Decode) implementation panicked (the panic's message). The
    /// crate's receiving calls ([`from_bytes`](super::from_bytes), and through it
    /// `Queue::get`, `Connection::recv`, a pool's results) catch the panic and report it as
    /// this error, so the caller gets it back like any other bad message.
    Panicked(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { needed, available } => {
                write!(f, "message truncated: needed {needed} more bytes, {available} left")
            }
            DecodeError::InvalidTag { tag, ty } => write!(f, "invalid tag {tag} for {ty}"),
            DecodeError::InvalidUtf8 { valid_up_to } => {
                write!(f, "string is not valid UTF-8 (valid up to byte {valid_up_to})")
            }
            DecodeError::InvalidChar(v) => write!(f, "invalid char value {v:#x}"),
            DecodeError::InvalidBool(b) => write!(f, "invalid bool byte {b}"),
            DecodeError::LengthTooLarge { len, available } => {
                write!(f, "sequence length {len} is too large for the {available} bytes left")
            }
            DecodeError::DuplicateKey => f.write_str("duplicate key in map or set"),
            DecodeError::OutOfRange { ty } => write!(f, "value out of range for {ty}"),
            DecodeError::DepthLimitExceeded => {
                write!(f, "more than {MAX_DEPTH} nested containers")
            }
            DecodeError::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the message")
            }
            DecodeError::Custom(msg) => f.write_str(msg),
            DecodeError::Invalid(msg) => f.write_str(msg),
            DecodeError::Panicked(msg) => write!(f, "the type's Decode panicked: {msg}"),
        }
    }
}

impl Error for DecodeError {}

impl From<DecodeError> for io::Error {
    /// Maps to an [`io::ErrorKind::InvalidData`] error carrying the `DecodeError`.
    fn from(e: DecodeError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}
