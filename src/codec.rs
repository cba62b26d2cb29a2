//! The message codec, and the frame format used by [`Connection`]s and queues.
//!
//! A message is any type that implements [`Encode`] (turn a value into bytes) and [`Decode`]
//! (rebuild it from bytes); [`Message`] is the name for "both", and is implemented automatically.
//! The crate implements both traits for the std types a program usually sends: integers, floats,
//! `bool`, `char`, `()`, `String`, `Vec`, `VecDeque`, `Box`, `Option`, `Result`, tuples up to 12,
//! arrays, the four std maps and sets, and [`Duration`]. `str`, `[T]` and `&T` are encode-only: a
//! `&str` encodes exactly like a `String`, a `&[T]` exactly like a `Vec<T>`, so the receiving side
//! decodes the owned type.
//!
//! Nothing here depends on anything beyond std, and no serialization framework is required.
//!
//! With the optional `serde` feature, `codec::Serde<T>` makes any `Serialize + DeserializeOwned`
//! type a message too, in this same wire format: `conn.send(&Serde(&value))`, then
//! `let Serde(value): Serde<MyType> = conn.recv()?`. It is a wrapper because a blanket impl for
//! every serde type would overlap with the impls above. Its documentation gives the mapping of
//! the serde data model onto the format and the (unchanged) hostile-input guarantees.
//!
//! # Wire format
//!
//! The format is not self-describing: both sides must agree on the type.
//!
//! | type | bytes |
//! |---|---|
//! | `u8`..`u128`, `i8`..`i128` | fixed width, little-endian |
//! | `usize`, `isize` | as `u64`, `i64` (decoding checks the value fits) |
//! | `f32`, `f64` | the IEEE 754 bit pattern as `u32`, `u64` (NaN payloads are kept) |
//! | `bool` | one byte, `0` or `1`; anything else is [`DecodeError::InvalidBool`] |
//! | `char` | its scalar value as `u32`; surrogates and values past `0x10FFFF` are rejected |
//! | `()`, `PhantomData` | nothing |
//! | `String`, `str` | length (`u64`) then the UTF-8 bytes (checked on decode) |
//! | `Vec<T>`, `[T]`, `VecDeque<T>`, sets | element count (`u64`) then each element |
//! | maps | entry count (`u64`) then key, value, key, value, ... |
//! | `[T; N]`, tuples | each element in order, no count |
//! | `Option<T>` | `0` for `None`; `1` then the value for `Some` |
//! | `Result<T, E>` | `0` then the value for `Ok`; `1` then the error for `Err` |
//! | `Box<T>`, `Rc<T>`, `Arc<T>`, `&T` | the same as `T` |
//! | [`Duration`] | seconds (`u64`) then nanoseconds (`u32`, below 10^9) |
//!
//! `Vec<u8>`, `[u8]` and `[u8; N]` are copied in bulk, and slices of the other fixed-width
//! primitives are converted in one tight loop, so encoding a 1 KiB `Vec<u8>` is one length and one
//! `memcpy`. Map and set entries are written in iteration order; decoding rejects duplicate keys
//! ([`DecodeError::DuplicateKey`]), so an encoded map never silently loses an entry.
//!
//! # Decoding untrusted bytes
//!
//! Decoding never panics and never trusts a length before checking it:
//!
//! - A sequence length is checked against the bytes that are left before anything is allocated:
//!   `len * T::MIN_ENCODED_LEN` must fit in [`Decoder::remaining`], otherwise the result is
//!   [`DecodeError::LengthTooLarge`]. Capacity reserved up front never exceeds the bytes that
//!   are left (or 4 KiB), so a hostile length prefix cannot make the decoder allocate gigabytes.
//! - Elements whose encoding took no input bytes at all (such as `()`) draw from a per-decoder
//!   budget ([`EMPTY_ELEMENT_BUDGET`]), so `Vec<()>` with a length of `u64::MAX` fails quickly
//!   instead of looping forever.
//! - Every heap indirection (`Box`, `Rc`, `Arc`, `Vec`, `VecDeque`, maps, sets) counts one level of
//!   nesting, and more than [`MAX_DEPTH`] levels is [`DecodeError::DepthLimitExceeded`]. Since a
//!   recursive type has to go through such an indirection, decoding a recursive type cannot
//!   overflow the stack however deep the input claims to be. A hand-written container that
//!   recurses on its own should wrap its recursion in [`Decoder::nested`].
//! - [`from_bytes`] rejects trailing bytes ([`DecodeError::TrailingBytes`]).
//!
//! # Frames
//!
//! On a pipe, a socket or a queue, each message travels as one frame: an 8-byte little-endian
//! `u64` payload length ([`FRAME_HEADER_LEN`], [`encode_frame_header`], [`decode_frame_header`])
//! followed by the payload. There is no size limit beyond memory. [`read_frame`] reads one frame
//! from any [`Read`], checking the length against the caller's `maxlength` and growing its buffer
//! only as fast as bytes really arrive, so a header that claims 2^63 bytes followed by EOF costs
//! nothing. [`encode_framed`] writes a whole frame into one buffer, ready for a single `write`.
//!
//! A [`Connection`] adds one rule on top: a frame shorter than 64 bytes (header included) is
//! zero-padded to 64 bytes on the wire, so that the receiver gets a small message in a single
//! `read` without ever reading ahead into the next one.
//!
//! # Examples
//!
//! Implementing the traits for a struct of your own by hand: encode the fields in order, decode
//! them in the same order.
//!
//! ```
//! use multiproc::codec::{self, Decode, DecodeError, Decoder, Encode};
//!
//! #[derive(Debug, PartialEq)]
//! struct Job {
//!     id: u64,
//!     name: String,
//!     args: Vec<i32>,
//!     deadline: Option<std::time::Duration>,
//! }
//!
//! impl Encode for Job {
//!     fn encode(&self, out: &mut Vec<u8>) {
//!         self.id.encode(out);
//!         self.name.encode(out);
//!         self.args.encode(out);
//!         self.deadline.encode(out);
//!     }
//! }
//!
//! impl Decode for Job {
//!     // Optional: the fewest bytes any `Job` encodes to (8 + 8 + 8 + 1). It lets a hostile
//!     // `Vec<Job>` length be rejected before any allocation. 0 (the default) is always correct.
//!     const MIN_ENCODED_LEN: usize = 25;
//!
//!     fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
//!         Ok(Job {
//!             id: input.decode()?,
//!             name: input.decode()?,
//!             args: input.decode()?,
//!             deadline: input.decode()?,
//!         })
//!     }
//! }
//!
//! # fn main() -> Result<(), DecodeError> {
//! let job = Job { id: 7, name: "résumé".into(), args: vec![1, -2, 3], deadline: None };
//! let bytes = codec::to_bytes(&job);
//! assert_eq!(codec::from_bytes::<Job>(&bytes)?, job);
//!
//! // An enum: a tag byte, then the variant's fields.
//! enum Shape { Circle(f64), Rect(f64, f64) }
//! impl Encode for Shape {
//!     fn encode(&self, out: &mut Vec<u8>) {
//!         match self {
//!             Shape::Circle(r) => { 0u8.encode(out); r.encode(out) }
//!             Shape::Rect(w, h) => { 1u8.encode(out); (w, h).encode(out) }
//!         }
//!     }
//! }
//! impl Decode for Shape {
//!     fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
//!         match input.decode::<u8>()? {
//!             0 => Ok(Shape::Circle(input.decode()?)),
//!             1 => Ok(Shape::Rect(input.decode()?, input.decode()?)),
//!             tag => Err(DecodeError::InvalidTag { tag, ty: "Shape" }),
//!         }
//!     }
//! }
//! let shapes: Vec<Shape> = codec::from_bytes(&codec::to_bytes(&vec![Shape::Rect(2.0, 3.0)]))?;
//! assert!(matches!(shapes[..], [Shape::Rect(w, h)] if w == 2.0 && h == 3.0));
//! # Ok(())
//! # }
//! ```
//!
//! Frames over any `Read`/`Write`:
//!
//! ```
//! use multiproc::codec::{self, FrameError};
//!
//! let mut wire = Vec::new();
//! codec::encode_framed(&("hello", 42u32), &mut wire);
//! codec::encode_framed("bye", &mut wire);
//!
//! let mut r = &wire[..];
//! let first = codec::read_frame(&mut r, None).unwrap();
//! assert_eq!(codec::from_bytes::<(String, u32)>(&first).unwrap(), ("hello".to_string(), 42));
//! // A limit smaller than the next frame is an error, not an allocation.
//! assert!(matches!(codec::read_frame(&mut r, Some(2)), Err(FrameError::TooLong { len: 11, max: 2 })));
//! ```
//!
//! [`Connection`]: crate::Connection
//! [`Read`]: std::io::Read

// The optional `serde` feature: `Serde<T>` through a serde `Serializer`/`Deserializer` that
// writes this same wire format.
#[cfg(feature = "serde")]
mod serde_impl;
#[cfg(feature = "serde")]
pub use serde_impl::{Serde, SerializeError};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::error::Error;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Traits and entry points
// ---------------------------------------------------------------------------------------------

/// A value that can be written in the codec's wire format.
///
/// Python pickles whatever object it is given; here a type says how it is written, by
/// implementing `Encode` (and [`Decode`] for the way back) instead of relying on `pickle`.
///
/// Implement [`encode`](Encode::encode) by appending the encoding of each field, in order, to
/// `out` (see the [module docs](self) for a fuller example). Encoding cannot fail: everything
/// that can go wrong is found when decoding.
///
/// Implemented for the std types listed in the [module docs](self), including the unsized `str`
/// and `[T]`, so `to_bytes("text")` and `to_bytes(&v[..])` work.
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, Encode};
///
/// struct Point {
///     x: i32,
///     y: i32,
/// }
///
/// impl Encode for Point {
///     fn encode(&self, out: &mut Vec<u8>) {
///         self.x.encode(out);
///         self.y.encode(out);
///     }
/// }
///
/// let bytes = codec::to_bytes(&Point { x: 1, y: -1 });
/// assert_eq!(bytes, [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
/// // A struct written field by field encodes exactly like the tuple of its fields.
/// assert_eq!(bytes, codec::to_bytes(&(1i32, -1i32)));
/// ```
pub trait Encode {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Appends the encoding of every item of `items` to `out`, in order, with no count.
    ///
    /// The default calls [`encode`](Encode::encode) on each item. Fixed-width primitives
    /// override it with a bulk conversion (a single copy for `u8`). There is rarely a reason to
    /// override it in your own types.
    #[doc(hidden)]
    fn encode_slice(items: &[Self], out: &mut Vec<u8>)
    where
        Self: Sized,
    {
        for item in items {
            item.encode(out);
        }
    }

    /// The bytes of a value whose encoding is a byte string (a `u64` length, then the bytes:
    /// `[u8]`, `Vec<u8>`, `str`, `String`), so a transport can send them without encoding
    /// them into a buffer first. `None` (the default) for every other type.
    #[doc(hidden)]
    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        None
    }

    /// The bytes of a slice of `Self` when they are its encoding (`u8`): the element-level
    /// half of [`as_byte_string`](Encode::as_byte_string).
    #[doc(hidden)]
    #[inline]
    fn slice_as_bytes(items: &[Self]) -> Option<&[u8]>
    where
        Self: Sized,
    {
        let _ = items;
        None
    }
}

/// A value that can be rebuilt from the codec's wire format.
///
/// Python unpickles, and bad bytes raise whatever `pickle.loads` raises; here a type rebuilds
/// itself field by field, and bad bytes are a [`DecodeError`] value.
///
/// Implement [`decode`](Decode::decode) by decoding each field, in the order
/// [`Encode::encode`] wrote them, from the [`Decoder`] (see the [module docs](self) for a
/// fuller example). Return an error for any input that is not a valid encoding; never panic.
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, Decode, DecodeError, Decoder};
///
/// #[derive(Debug, PartialEq)]
/// struct Point {
///     x: i32,
///     y: i32,
/// }
///
/// impl Decode for Point {
///     // Optional: the fewest bytes a `Point` encodes to (two `i32`s).
///     const MIN_ENCODED_LEN: usize = 8;
///
///     fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
///         Ok(Point { x: input.decode()?, y: input.decode()? })
///     }
/// }
///
/// # fn main() -> Result<(), DecodeError> {
/// let bytes = codec::to_bytes(&(3i32, 4i32)); // encodes like a `Point`
/// assert_eq!(codec::from_bytes::<Point>(&bytes)?, Point { x: 3, y: 4 });
/// // Input cut short is an error, never a panic.
/// assert_eq!(
///     codec::from_bytes::<Point>(&bytes[..5]),
///     Err(DecodeError::Truncated { needed: 4, available: 1 })
/// );
/// # Ok(())
/// # }
/// ```
pub trait Decode: Sized {
    /// A lower bound on the number of bytes any value of this type encodes to.
    ///
    /// Decoding a sequence of `len` elements first checks that `len * MIN_ENCODED_LEN` bytes
    /// are left, so an impossible length is rejected before anything is allocated. `0` (the
    /// default) is always correct; a larger value gives earlier errors on hostile input. A value
    /// larger than the real minimum makes valid input fail to decode.
    const MIN_ENCODED_LEN: usize = 0;

    /// Decodes one value from `input`, consuming exactly the bytes its encoding used.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] when the bytes are not a valid encoding of `Self`; what is left in
    /// `input` is then unspecified.
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    /// Decodes `len` consecutive values into a `Vec`.
    ///
    /// `len` has already been checked against `MIN_ENCODED_LEN`. The default decodes one
    /// element at a time; fixed-width primitives override it with a bulk conversion.
    #[doc(hidden)]
    fn decode_vec(len: usize, input: &mut Decoder<'_>) -> Result<Vec<Self>, DecodeError> {
        let mut v = Vec::with_capacity(input.prealloc_len::<Self>(len));
        for _ in 0..len {
            let before = input.remaining();
            v.push(Self::decode(input)?);
            input.note_element::<Self>(before, len)?;
        }
        Ok(v)
    }

    /// Whether `Self` is encoded as a byte string (a `u64` length, then the bytes), so a
    /// transport may receive the bytes straight into a buffer and hand it to
    /// [`from_byte_string`](Decode::from_byte_string) instead of decoding a copy.
    #[doc(hidden)]
    const BYTE_STRING: bool = false;

    /// Whether `Self` is `u8` (the element-level half of `BYTE_STRING`).
    #[doc(hidden)]
    const IS_BYTE: bool = false;

    /// The value whose encoding is the byte string `bytes` (its length prefix stripped). The
    /// default decodes it as if it had come with its prefix; byte-string types take the buffer
    /// over.
    ///
    /// # Errors
    ///
    /// As [`decode`](Decode::decode) on the same bytes.
    #[doc(hidden)]
    fn from_byte_string(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        decode_byte_string(bytes)
    }

    /// `bytes` as a `Vec<Self>` when `Self` is `u8`; every other type hands them back.
    #[doc(hidden)]
    #[inline]
    fn vec_from_bytes(bytes: Vec<u8>) -> Result<Vec<Self>, Vec<u8>> {
        Err(bytes)
    }

    /// Decodes `N` consecutive values into an array (no count on the wire).
    #[doc(hidden)]
    fn decode_array<const N: usize>(input: &mut Decoder<'_>) -> Result<[Self; N], DecodeError> {
        let mut err = None;
        let slots: [Option<Self>; N] = std::array::from_fn(|_| {
            if err.is_some() {
                return None;
            }
            match Self::decode(input) {
                Ok(v) => Some(v),
                Err(e) => {
                    err = Some(e);
                    None
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        // Every slot is `Some` when no error was recorded.
        Ok(slots.map(|slot| slot.expect("every slot is filled when no error was recorded")))
    }
}

/// A type that can be both sent and received: [`Encode`] + [`Decode`].
///
/// Python sends any picklable object; here the bound `T: Message` marks what may travel
/// through a [`Connection`](crate::Connection), a [`Queue`](crate::Queue), a
/// [`Pool`](crate::Pool) or back from a [`Process`](crate::Process).
///
/// Implemented automatically for every such type; implement the two traits instead.
///
/// # Examples
///
/// ```
/// use multiproc::{Message, pipe};
///
/// /// Sends `value` through a pipe and receives it back.
/// fn through_pipe<T: Message>(value: &T) -> Result<T, Box<dyn std::error::Error>> {
///     let (a, b) = pipe(true)?;
///     a.send(value)?;
///     Ok(b.recv()?)
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let v = vec![(1u8, "one".to_string()), (2, "two".to_string())];
/// assert_eq!(through_pipe(&v)?, v);
/// # Ok(())
/// # }
/// ```
pub trait Message: Encode + Decode {}

impl<T: Encode + Decode> Message for T {}

/// Encodes `value` into a new buffer.
///
/// # Examples
///
/// ```
/// assert_eq!(multiproc::codec::to_bytes(&0x0102u16), [2, 1]);
/// assert_eq!(multiproc::codec::to_bytes("hi"), [2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']);
/// ```
pub fn to_bytes<T: Encode + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// Decodes a `T` that must take up all of `bytes`.
///
/// # Errors
///
/// Any [`DecodeError`] from `T`'s decoding, or [`DecodeError::TrailingBytes`] when bytes are
/// left over after the value.
///
/// # Examples
///
/// ```
/// use multiproc::codec::{from_bytes, DecodeError};
/// assert_eq!(from_bytes::<Option<u8>>(&[1, 9]), Ok(Some(9)));
/// assert_eq!(from_bytes::<u8>(&[1, 9]), Err(DecodeError::TrailingBytes { count: 1 }));
/// ```
pub fn from_bytes<T: Decode>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut input = Decoder::new(bytes);
    let value = T::decode(&mut input)?;
    input.finish()?;
    Ok(value)
}

/// Decodes the byte string `bytes` (length prefix stripped) the slow way: prefix put back, then
/// an ordinary decode.
fn decode_byte_string<T: Decode>(bytes: Vec<u8>) -> Result<T, DecodeError> {
    let mut wire = Vec::with_capacity(8 + bytes.len());
    encode_len(bytes.len(), &mut wire);
    wire.extend_from_slice(&bytes);
    from_bytes(&wire)
}

/// Appends the encoding of a sequence length to `out` (as a `u64`).
///
/// Use it when writing a container of your own; decode it with [`Decoder::decode_seq_len`].
pub fn encode_len(len: usize, out: &mut Vec<u8>) {
    // usize is at most 64 bits on every supported target.
    (len as u64).encode(out);
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// The most nested heap indirections (`Box`, `Vec`, maps, ...) one decode may go through.
///
/// Deeper input is [`DecodeError::DepthLimitExceeded`]; this bounds the stack a hostile input
/// can make a recursive type use.
pub const MAX_DEPTH: u32 = 128;

/// How many zero-byte elements one decode may produce, weighted by their in-memory size.
///
/// An element that consumed no input (a `()`, an empty user struct) costs
/// `max(size_of::<T>(), 1)` units of this budget. Running out is
/// [`DecodeError::LengthTooLarge`]. With 1 Mi units, a `Vec<()>` may hold about a million
/// elements, which decode in about a millisecond, and zero-byte elements can make one decode
/// allocate at most 1 MiB; anything whose encoding takes at least one byte per element is
/// bounded by the input instead.
pub const EMPTY_ELEMENT_BUDGET: usize = 1 << 20;

/// The largest capacity reserved up front when little input is left (in bytes).
const MIN_PREALLOC_BYTES: usize = 4096;

/// A cursor over the bytes being decoded.
///
/// Python's `pickle.Unpickler` reads a self-describing stream and builds whatever it finds;
/// a `Decoder` is a plain cursor from which each [`Decode`] impl reads the fields it expects.
///
/// [`Decode`] implementations read from it: [`decode`](Decoder::decode) for a field,
/// [`take`](Decoder::take) and [`take_array`](Decoder::take_array) for raw bytes,
/// [`decode_seq_len`](Decoder::decode_seq_len) for the length of a sequence of their own. It
/// also carries the limits that keep hostile input cheap ([`MAX_DEPTH`],
/// [`EMPTY_ELEMENT_BUDGET`]).
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, DecodeError, Decoder};
///
/// # fn main() -> Result<(), DecodeError> {
/// let bytes = codec::to_bytes(&(7u16, "hi", [9u8; 2]));
/// let mut input = Decoder::new(&bytes);
/// assert_eq!(input.decode::<u16>()?, 7);
/// let len = input.decode_seq_len::<u8>()?; // the string's length prefix, checked
/// assert_eq!(input.take(len)?, b"hi");
/// assert_eq!(input.take_array::<2>()?, [9, 9]);
/// assert!(input.is_empty());
/// input.finish()?; // no trailing bytes
/// # Ok(())
/// # }
/// ```
pub struct Decoder<'a> {
    input: &'a [u8],
    depth: u32,
    empty_budget: usize,
}

impl fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("remaining", &self.input.len())
            .field("depth", &self.depth)
            .field("empty_budget", &self.empty_budget)
            .finish()
    }
}

impl<'a> Decoder<'a> {
    /// Creates a decoder reading `input` from its start.
    #[must_use]
    pub fn new(input: &'a [u8]) -> Self {
        Decoder { input, depth: 0, empty_budget: EMPTY_ELEMENT_BUDGET }
    }

    /// Returns the number of bytes not consumed yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// Returns `true` when every byte has been consumed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Returns the bytes not consumed yet, without consuming them.
    #[must_use]
    pub fn rest(&self) -> &'a [u8] {
        self.input
    }

    /// Consumes the next `n` bytes and returns them.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] when fewer than `n` bytes are left (nothing is consumed).
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.input.split_at_checked(n) {
            Some((head, rest)) => {
                self.input = rest;
                Ok(head)
            }
            None => Err(DecodeError::Truncated { needed: n, available: self.input.len() }),
        }
    }

    /// Consumes the next `N` bytes and returns them as an array.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] when fewer than `N` bytes are left (nothing is consumed).
    #[inline]
    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        match self.input.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.input = rest;
                Ok(*head)
            }
            None => Err(DecodeError::Truncated { needed: N, available: self.input.len() }),
        }
    }

    /// Decodes one `T`; shorthand for `T::decode(self)`.
    ///
    /// # Errors
    ///
    /// Whatever `T::decode` returns.
    #[inline]
    pub fn decode<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }

    /// Checks that every byte has been consumed.
    ///
    /// # Errors
    ///
    /// [`DecodeError::TrailingBytes`] when bytes are left.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { count: self.input.len() })
        }
    }

    /// Decodes a sequence length (written by [`encode_len`]) for elements of type `T`.
    ///
    /// The length is checked before it is returned: it must fit in `usize`, and `len` elements
    /// of at least `T::MIN_ENCODED_LEN` bytes each must fit in what is left.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Truncated`] when the length itself is cut short;
    /// [`DecodeError::LengthTooLarge`] when the elements cannot fit in the input.
    pub fn decode_seq_len<T: Decode>(&mut self) -> Result<usize, DecodeError> {
        let len = u64::decode(self)?;
        let available = self.remaining();
        let too_large = DecodeError::LengthTooLarge { len, available };
        let len = usize::try_from(len).map_err(|_| too_large.clone())?;
        if T::MIN_ENCODED_LEN > 0 {
            match len.checked_mul(T::MIN_ENCODED_LEN) {
                Some(bytes) if bytes <= available => {}
                _ => return Err(too_large),
            }
        }
        Ok(len)
    }

    /// Runs `f` one nesting level deeper.
    ///
    /// The std containers already do this; call it in a hand-written [`Decode`] that recurses
    /// without going through one of them, so that [`MAX_DEPTH`] bounds the recursion.
    ///
    /// # Errors
    ///
    /// [`DecodeError::DepthLimitExceeded`] when already [`MAX_DEPTH`] levels deep, or what `f`
    /// returns.
    #[inline]
    pub fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError::DepthLimitExceeded);
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// How many `T` to reserve up front for a sequence of `len`: never more memory than the
    /// bytes left (or [`MIN_PREALLOC_BYTES`]), never more elements than could fit in the input.
    #[inline]
    fn prealloc_len<T: Decode>(&self, len: usize) -> usize {
        let by_input = self.remaining() / T::MIN_ENCODED_LEN.max(1);
        let by_memory = self.remaining().max(MIN_PREALLOC_BYTES) / size_of::<T>().max(1);
        len.min(by_input).min(by_memory)
    }

    /// Charges the empty-element budget when decoding an element consumed no input; `before`
    /// is [`remaining`](Self::remaining) before the element, `len` the sequence length (for the
    /// error).
    #[inline]
    fn note_element<T: Decode>(&mut self, before: usize, len: usize) -> Result<(), DecodeError> {
        if T::MIN_ENCODED_LEN == 0 && self.remaining() == before {
            let cost = size_of::<T>().max(1);
            match self.empty_budget.checked_sub(cost) {
                Some(left) => self.empty_budget = left,
                None => {
                    return Err(DecodeError::LengthTooLarge {
                        len: len as u64,
                        available: self.remaining(),
                    });
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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
    /// for elements that take no bytes, there were more than [`EMPTY_ELEMENT_BUDGET`] of them).
    LengthTooLarge {
        /// The length read.
        len: u64,
        /// Bytes that were left after it.
        available: usize,
    },
    /// A map or set held the same key twice.
    DuplicateKey,
    /// A value was out of range for its type (a `usize` past `usize::MAX` on this target, a
    /// [`Duration`] with 10^9 or more nanoseconds).
    OutOfRange {
        /// The type being decoded.
        ty: &'static str,
    },
    /// More than [`MAX_DEPTH`] nested containers.
    DepthLimitExceeded,
    /// [`from_bytes`] decoded a value but `count` bytes were left after it.
    TrailingBytes {
        /// The number of unread bytes.
        count: usize,
    },
    /// An error raised by a hand-written [`Decode`] implementation.
    Custom(&'static str),
    /// A value was rejected with a message built at run time: under the `serde` feature, the
    /// errors a `Deserialize` impl raises (`invalid value`, `invalid length`, `missing field`,
    /// `de::Error::custom`, ...); also usable by a hand-written [`Decode`] implementation.
    Invalid(String),
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

// ---------------------------------------------------------------------------------------------
// Primitive implementations
// ---------------------------------------------------------------------------------------------

/// Copies a chunk known to be `N` bytes long into an array.
#[inline(always)]
fn chunk_array<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(chunk);
    a
}

/// Fixed-width little-endian numbers: `$to`/`$from` convert to and from the byte array.
macro_rules! fixed_width {
    ($($ty:ty => $n:literal, |$v:ident| $to:expr, |$b:ident| $from:expr;)*) => {$(
        impl Encode for $ty {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                let $v = *self;
                out.extend_from_slice(&$to);
            }

            #[inline]
            fn encode_slice(items: &[Self], out: &mut Vec<u8>) {
                let start = out.len();
                out.resize(start + items.len() * $n, 0);
                for (chunk, &$v) in out[start..].chunks_exact_mut($n).zip(items) {
                    chunk.copy_from_slice(&$to);
                }
            }
        }

        impl Decode for $ty {
            const MIN_ENCODED_LEN: usize = $n;

            #[inline]
            fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                let $b = input.take_array::<$n>()?;
                Ok($from)
            }

            fn decode_vec(len: usize, input: &mut Decoder<'_>) -> Result<Vec<Self>, DecodeError> {
                // `len * $n <= remaining` was checked by `decode_seq_len`; `take` checks again.
                let bytes = input.take(len.checked_mul($n).unwrap_or(usize::MAX))?;
                Ok(bytes.chunks_exact($n).map(|c| { let $b = chunk_array::<$n>(c); $from }).collect())
            }
        }
    )*};
}

fixed_width! {
    u16 => 2, |v| v.to_le_bytes(), |b| u16::from_le_bytes(b);
    u32 => 4, |v| v.to_le_bytes(), |b| u32::from_le_bytes(b);
    u64 => 8, |v| v.to_le_bytes(), |b| u64::from_le_bytes(b);
    u128 => 16, |v| v.to_le_bytes(), |b| u128::from_le_bytes(b);
    i8 => 1, |v| v.to_le_bytes(), |b| i8::from_le_bytes(b);
    i16 => 2, |v| v.to_le_bytes(), |b| i16::from_le_bytes(b);
    i32 => 4, |v| v.to_le_bytes(), |b| i32::from_le_bytes(b);
    i64 => 8, |v| v.to_le_bytes(), |b| i64::from_le_bytes(b);
    i128 => 16, |v| v.to_le_bytes(), |b| i128::from_le_bytes(b);
    f32 => 4, |v| v.to_bits().to_le_bytes(), |b| f32::from_bits(u32::from_le_bytes(b));
    f64 => 8, |v| v.to_bits().to_le_bytes(), |b| f64::from_bits(u64::from_le_bytes(b));
}

// `u8` is its own encoding: slices and vectors are one copy.
impl Encode for u8 {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }

    #[inline]
    fn encode_slice(items: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(items);
    }

    #[inline]
    fn slice_as_bytes(items: &[Self]) -> Option<&[u8]> {
        Some(items)
    }
}

impl Decode for u8 {
    const MIN_ENCODED_LEN: usize = 1;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(input.take_array::<1>()?[0])
    }

    #[inline]
    fn decode_vec(len: usize, input: &mut Decoder<'_>) -> Result<Vec<Self>, DecodeError> {
        Ok(input.take(len)?.to_vec())
    }

    const IS_BYTE: bool = true;

    #[inline]
    fn vec_from_bytes(bytes: Vec<u8>) -> Result<Vec<Self>, Vec<u8>> {
        Ok(bytes)
    }

    #[inline]
    fn decode_array<const N: usize>(input: &mut Decoder<'_>) -> Result<[Self; N], DecodeError> {
        input.take_array::<N>()
    }
}

impl Encode for usize {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out);
    }
}

impl Decode for usize {
    const MIN_ENCODED_LEN: usize = 8;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        usize::try_from(u64::decode(input)?).map_err(|_| DecodeError::OutOfRange { ty: "usize" })
    }
}

impl Encode for isize {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as i64).encode(out);
    }
}

impl Decode for isize {
    const MIN_ENCODED_LEN: usize = 8;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        isize::try_from(i64::decode(input)?).map_err(|_| DecodeError::OutOfRange { ty: "isize" })
    }
}

impl Encode for bool {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Decode for bool {
    const MIN_ENCODED_LEN: usize = 1;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match u8::decode(input)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::InvalidBool(b)),
        }
    }
}

impl Encode for char {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode(out);
    }
}

impl Decode for char {
    const MIN_ENCODED_LEN: usize = 4;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let v = u32::decode(input)?;
        char::from_u32(v).ok_or(DecodeError::InvalidChar(v))
    }
}

impl Encode for () {
    #[inline]
    fn encode(&self, _out: &mut Vec<u8>) {}
}

impl Decode for () {
    #[inline]
    fn decode(_input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(())
    }
}

impl<T: ?Sized> Encode for PhantomData<T> {
    #[inline]
    fn encode(&self, _out: &mut Vec<u8>) {}
}

impl<T: ?Sized> Decode for PhantomData<T> {
    #[inline]
    fn decode(_input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PhantomData)
    }
}

impl Encode for Duration {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_secs().encode(out);
        self.subsec_nanos().encode(out);
    }
}

impl Decode for Duration {
    const MIN_ENCODED_LEN: usize = 12;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let secs = u64::decode(input)?;
        let nanos = u32::decode(input)?;
        if nanos >= 1_000_000_000 {
            return Err(DecodeError::OutOfRange { ty: "Duration" });
        }
        Ok(Duration::new(secs, nanos))
    }
}

// ---------------------------------------------------------------------------------------------
// Strings and sequences
// ---------------------------------------------------------------------------------------------

impl Encode for str {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl Encode for String {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_str().encode(out);
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl Decode for String {
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let len = input.decode_seq_len::<u8>()?;
        let bytes = input.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(DecodeError::InvalidUtf8 { valid_up_to: e.valid_up_to() }),
        }
    }

    const BYTE_STRING: bool = true;

    fn from_byte_string(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        String::from_utf8(bytes)
            .map_err(|e| DecodeError::InvalidUtf8 { valid_up_to: e.utf8_error().valid_up_to() })
    }
}

impl Decode for Box<str> {
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        String::decode(input).map(String::into_boxed_str)
    }
}

impl<T: Encode> Encode for [T] {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        T::encode_slice(self, out);
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        T::slice_as_bytes(self)
    }
}

impl<T: Encode> Encode for Vec<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_slice().encode(out);
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        self.as_slice().as_byte_string()
    }
}

impl<T: Decode> Decode for Vec<T> {
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        input.nested(|input| {
            let len = input.decode_seq_len::<T>()?;
            T::decode_vec(len, input)
        })
    }

    const BYTE_STRING: bool = T::IS_BYTE;

    fn from_byte_string(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        match T::vec_from_bytes(bytes) {
            Ok(v) => Ok(v),
            Err(bytes) => decode_byte_string(bytes),
        }
    }
}

impl<T: Decode> Decode for Box<[T]> {
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Vec::<T>::decode(input).map(Vec::into_boxed_slice)
    }
}

impl<T: Encode> Encode for VecDeque<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        let (a, b) = self.as_slices();
        T::encode_slice(a, out);
        T::encode_slice(b, out);
    }
}

impl<T: Decode> Decode for VecDeque<T> {
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Vec::<T>::decode(input).map(VecDeque::from)
    }
}

impl<T: Encode, const N: usize> Encode for [T; N] {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        T::encode_slice(self, out);
    }
}

impl<T: Decode, const N: usize> Decode for [T; N] {
    const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN.saturating_mul(N);

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        T::decode_array::<N>(input)
    }
}

// ---------------------------------------------------------------------------------------------
// Pointers, Option, Result
// ---------------------------------------------------------------------------------------------

impl<T: Encode + ?Sized> Encode for &T {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        (**self).as_byte_string()
    }
}

impl<T: Encode + ?Sized> Encode for Box<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        (**self).as_byte_string()
    }
}

impl<T: Decode> Decode for Box<T> {
    const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        input.nested(|input| T::decode(input).map(Box::new))
    }

    const BYTE_STRING: bool = T::BYTE_STRING;

    fn from_byte_string(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        T::from_byte_string(bytes).map(Box::new)
    }
}

impl<T: Encode + ?Sized> Encode for Rc<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        (**self).as_byte_string()
    }
}

impl<T: Decode> Decode for Rc<T> {
    const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        input.nested(|input| T::decode(input).map(Rc::new))
    }

    const BYTE_STRING: bool = T::BYTE_STRING;

    fn from_byte_string(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        T::from_byte_string(bytes).map(Rc::new)
    }
}

impl<T: Encode + ?Sized> Encode for Arc<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }

    #[inline]
    fn as_byte_string(&self) -> Option<&[u8]> {
        (**self).as_byte_string()
    }
}

impl<T: Decode> Decode for Arc<T> {
    const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        input.nested(|input| T::decode(input).map(Arc::new))
    }

    const BYTE_STRING: bool = T::BYTE_STRING;

    fn from_byte_string(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        T::from_byte_string(bytes).map(Arc::new)
    }
}

impl<T: Encode> Encode for Option<T> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    const MIN_ENCODED_LEN: usize = 1;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match u8::decode(input)? {
            0 => Ok(None),
            1 => T::decode(input).map(Some),
            tag => Err(DecodeError::InvalidTag { tag, ty: "Option" }),
        }
    }
}

impl<T: Encode, E: Encode> Encode for Result<T, E> {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Ok(v) => {
                out.push(0);
                v.encode(out);
            }
            Err(e) => {
                out.push(1);
                e.encode(out);
            }
        }
    }
}

impl<T: Decode, E: Decode> Decode for Result<T, E> {
    const MIN_ENCODED_LEN: usize = 1;

    #[inline]
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match u8::decode(input)? {
            0 => T::decode(input).map(Ok),
            1 => E::decode(input).map(Err),
            tag => Err(DecodeError::InvalidTag { tag, ty: "Result" }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tuples
// ---------------------------------------------------------------------------------------------

macro_rules! tuples {
    ($( ($($name:ident . $idx:tt),+) )*) => {$(
        impl<$($name: Encode),+> Encode for ($($name,)+) {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                $( self.$idx.encode(out); )+
            }
        }

        impl<$($name: Decode),+> Decode for ($($name,)+) {
            const MIN_ENCODED_LEN: usize = 0usize $( .saturating_add($name::MIN_ENCODED_LEN) )+;

            #[inline]
            fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                Ok(($( $name::decode(input)?, )+))
            }
        }
    )*};
}

tuples! {
    (A.0)
    (A.0, B.1)
    (A.0, B.1, C.2)
    (A.0, B.1, C.2, D.3)
    (A.0, B.1, C.2, D.3, E.4)
    (A.0, B.1, C.2, D.3, E.4, F.5)
    (A.0, B.1, C.2, D.3, E.4, F.5, G.6)
    (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7)
    (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8)
    (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9)
    (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10)
    (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11)
}

// ---------------------------------------------------------------------------------------------
// Maps and sets
// ---------------------------------------------------------------------------------------------

/// Decodes a map or set: a count of `T` entries, then each entry through `insert`, which adds
/// it to the collection made by `with_capacity` and returns `false` for a duplicate.
fn decode_entries<T: Decode, C>(
    input: &mut Decoder<'_>,
    with_capacity: impl FnOnce(usize) -> C,
    mut insert: impl FnMut(&mut C, &mut Decoder<'_>) -> Result<bool, DecodeError>,
) -> Result<C, DecodeError> {
    input.nested(|input| {
        let len = input.decode_seq_len::<T>()?;
        let mut collection = with_capacity(input.prealloc_len::<T>(len));
        for _ in 0..len {
            let before = input.remaining();
            if !insert(&mut collection, input)? {
                return Err(DecodeError::DuplicateKey);
            }
            input.note_element::<T>(before, len)?;
        }
        Ok(collection)
    })
}

impl<K: Encode, V: Encode, S> Encode for HashMap<K, V, S> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        for (k, v) in self {
            k.encode(out);
            v.encode(out);
        }
    }
}

impl<K, V, S> Decode for HashMap<K, V, S>
where
    K: Decode + Eq + Hash,
    V: Decode,
    S: BuildHasher + Default,
{
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_entries::<(K, V), _>(
            input,
            |n| HashMap::with_capacity_and_hasher(n, S::default()),
            |map, input| {
                let k = K::decode(input)?;
                let v = V::decode(input)?;
                Ok(map.insert(k, v).is_none())
            },
        )
    }
}

impl<K: Encode, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        for (k, v) in self {
            k.encode(out);
            v.encode(out);
        }
    }
}

impl<K: Decode + Ord, V: Decode> Decode for BTreeMap<K, V> {
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_entries::<(K, V), _>(
            input,
            |_| BTreeMap::new(),
            |map, input| {
                let k = K::decode(input)?;
                let v = V::decode(input)?;
                Ok(map.insert(k, v).is_none())
            },
        )
    }
}

impl<T: Encode, S> Encode for HashSet<T, S> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        for v in self {
            v.encode(out);
        }
    }
}

impl<T, S> Decode for HashSet<T, S>
where
    T: Decode + Eq + Hash,
    S: BuildHasher + Default,
{
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_entries::<T, _>(
            input,
            |n| HashSet::with_capacity_and_hasher(n, S::default()),
            |set, input| Ok(set.insert(T::decode(input)?)),
        )
    }
}

impl<T: Encode> Encode for BTreeSet<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_len(self.len(), out);
        for v in self {
            v.encode(out);
        }
    }
}

impl<T: Decode + Ord> Decode for BTreeSet<T> {
    const MIN_ENCODED_LEN: usize = 8;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decode_entries::<T, _>(
            input,
            |_| BTreeSet::new(),
            |set, input| Ok(set.insert(T::decode(input)?)),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Unit tests: round trips of every implemented type
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Debug;

    /// Encodes, checks the expected length, decodes, compares.
    fn round_trip<T: Encode + Decode + PartialEq + Debug>(v: T) -> Vec<u8> {
        let bytes = to_bytes(&v);
        let back: T = from_bytes(&bytes).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(back, v);
        // Every strict prefix fails to decode.
        for cut in 0..bytes.len() {
            assert!(from_bytes::<T>(&bytes[..cut]).is_err(), "{v:?} decoded from {cut} bytes");
        }
        assert!(bytes.len() >= T::MIN_ENCODED_LEN, "{v:?} shorter than MIN_ENCODED_LEN");
        bytes
    }

    #[test]
    fn integers_round_trip_at_their_extremes() {
        macro_rules! ints {
            ($($t:ty),*) => {$(
                for v in [<$t>::MIN, <$t>::MAX, 0 as $t, 1 as $t, <$t>::MAX / 3] {
                    assert_eq!(round_trip(v).len(), size_of::<$t>());
                }
            )*};
        }
        ints!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);
        for v in [usize::MIN, usize::MAX, 12345] {
            assert_eq!(round_trip(v).len(), 8);
        }
        for v in [isize::MIN, isize::MAX, -1] {
            assert_eq!(round_trip(v).len(), 8);
        }
        assert_eq!(to_bytes(&i128::MIN), {
            let mut b = [0u8; 16];
            b[15] = 0x80;
            b
        });
        assert_eq!(to_bytes(&0x0102_0304u32), [4, 3, 2, 1]);
    }

    #[test]
    fn floats_keep_their_exact_bit_patterns() {
        for bits in
            [0u64, 1 << 63, 0x7ff8_0000_0000_0001, 0xfff0_0000_0000_0abc, 0x7ff0_0000_0000_0000]
        {
            let v = f64::from_bits(bits);
            let back: f64 = from_bytes(&to_bytes(&v)).unwrap();
            assert_eq!(back.to_bits(), bits);
        }
        for bits in [0u32, 0x7fc0_0001, 0xffa0_0003, 0x0000_0001] {
            let v = f32::from_bits(bits);
            let back: f32 = from_bytes(&to_bytes(&v)).unwrap();
            assert_eq!(back.to_bits(), bits);
        }
        round_trip(f64::INFINITY);
        round_trip(f32::MIN_POSITIVE);
        round_trip(-0.0f64);
        let v = vec![f64::NAN, 1.5, f64::NEG_INFINITY];
        let back: Vec<f64> = from_bytes(&to_bytes(&v)).unwrap();
        assert!(back.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn bool_char_unit_and_duration_round_trip() {
        round_trip(true);
        round_trip(false);
        for c in ['\0', 'a', 'é', '€', '🦀', char::MAX, '\u{d7ff}', '\u{e000}'] {
            round_trip(c);
        }
        assert!(round_trip(()).is_empty());
        assert!(round_trip(PhantomData::<String>).is_empty());
        for d in [Duration::ZERO, Duration::new(u64::MAX, 999_999_999), Duration::from_nanos(1)] {
            assert_eq!(round_trip(d).len(), 12);
        }
    }

    #[test]
    fn strings_round_trip_and_str_encodes_like_string() {
        for s in ["", "a", "héllo wörld", "日本語テキスト", "🦀🦀\u{10ffff}", "nul\0inside"]
        {
            let bytes = round_trip(s.to_string());
            assert_eq!(to_bytes(s), bytes);
            assert_eq!(from_bytes::<Box<str>>(&bytes).unwrap(), Box::from(s));
        }
        round_trip("x".repeat(100_000));
    }

    #[test]
    fn sequences_round_trip_and_slices_encode_like_vecs() {
        round_trip(Vec::<u8>::new());
        round_trip(Vec::<()>::new());
        round_trip(vec![(); 1000]);
        let bytes: Vec<u8> = (0..=255).collect();
        let enc = round_trip(bytes.clone());
        assert_eq!(enc.len(), 8 + 256);
        assert_eq!(&enc[8..], &bytes[..]);
        assert_eq!(to_bytes(&bytes[..]), enc);
        round_trip(vec![i16::MIN, -1, 0, i16::MAX]);
        round_trip(vec![u128::MAX, 0]);
        round_trip(vec![usize::MAX, 0]);
        round_trip(vec![true, false, true]);
        round_trip(vec!['a', '🦀']);
        round_trip(vec![String::new(), "two".into()]);
        round_trip(vec![vec![1u32, 2], vec![], vec![3]]);
        round_trip(VecDeque::from(vec![1u64, 2, 3]));
        let mut dq: VecDeque<i32> = (0..10).collect();
        dq.rotate_left(4); // make it wrap around, so as_slices() returns two parts
        dq.push_back(99);
        dq.pop_front();
        let enc = round_trip(dq.clone());
        assert_eq!(enc, to_bytes(&dq.iter().copied().collect::<Vec<_>>()));
        round_trip(Box::<[u16]>::from([1, 2, 3]));
        assert_eq!(to_bytes(&vec!["a", "bc"]), to_bytes(&vec!["a".to_string(), "bc".to_string()]));
    }

    #[test]
    fn arrays_round_trip_without_a_count() {
        assert_eq!(round_trip([7u8; 32]), [7u8; 32]);
        assert_eq!(round_trip([1u32, 2, 3]).len(), 12);
        round_trip([String::from("a"), String::from("b")]);
        round_trip([[1i8, -1], [2, -2]]);
        round_trip::<[u64; 0]>([]);
        round_trip([Some(1u8), None, Some(3)]);
        assert_eq!(<[u32; 3]>::MIN_ENCODED_LEN, 12);
    }

    #[test]
    fn pointers_options_and_results_round_trip() {
        round_trip(Box::new(5u8));
        round_trip(Box::new(Box::new(String::from("boxed"))));
        round_trip(Rc::new(3i64));
        round_trip(Arc::new(vec![1u8]));
        assert_eq!(to_bytes(&&&7u16), to_bytes(&7u16));
        round_trip(None::<u32>);
        assert_eq!(round_trip(Some(0x55u8)), [1, 0x55]);
        round_trip(Some(None::<u8>));
        round_trip(Some(Some(())));
        round_trip(Ok::<u8, String>(1));
        round_trip(Err::<u8, String>("failed".into()));
        round_trip(Ok::<(), ()>(()));
        round_trip(Some(Ok::<Vec<u8>, i32>(vec![])));
    }

    #[test]
    fn tuples_round_trip_up_to_twelve() {
        round_trip((1u8,));
        round_trip((1u8, -2i64));
        round_trip((1u8, String::from("x"), 3.5f64));
        round_trip((1u8, 2u16, 3u32, 4u64, 5u128, 6i8, 7i16, 8i32, 9i64, 10i128, 'k', true));
        assert_eq!(<(u8, u64, ())>::MIN_ENCODED_LEN, 9);
        assert_eq!(
            <(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, char, bool)>::MIN_ENCODED_LEN,
            67
        );
    }

    #[test]
    fn maps_and_sets_round_trip() {
        round_trip(HashMap::<u32, String>::new());
        round_trip(BTreeMap::<String, Vec<u8>>::new());
        let hm: HashMap<String, Option<u32>> =
            [("a".into(), Some(1)), ("bb".into(), None), ("日本".into(), Some(3))].into();
        round_trip(hm);
        let bm: BTreeMap<i32, (bool, char)> = [(-1, (true, 'x')), (5, (false, '🦀'))].into();
        let enc = round_trip(bm.clone());
        // A BTreeMap decodes from a HashMap's encoding (and the reverse).
        let hm: HashMap<i32, (bool, char)> = from_bytes(&enc).unwrap();
        assert_eq!(hm.len(), 2);
        assert_eq!(from_bytes::<BTreeMap<i32, (bool, char)>>(&to_bytes(&hm)).unwrap(), bm);
        round_trip(HashSet::<u8>::from([1, 2, 3]));
        round_trip(BTreeSet::from([String::from("z"), String::from("a")]));
        round_trip(BTreeSet::<()>::from([()]));
        round_trip(vec![BTreeMap::from([(1u8, vec![HashSet::from([2u16])])])]);
    }

    #[test]
    fn nested_values_round_trip() {
        type Deep = Vec<(u32, Option<Box<(String, Vec<Option<i64>>)>>, Result<char, Vec<u8>>)>;
        let v: Deep = vec![
            (0, None, Ok('a')),
            (u32::MAX, Some(Box::new(("s".into(), vec![Some(i64::MIN), None]))), Err(vec![0, 1])),
            (7, Some(Box::new((String::new(), vec![]))), Err(vec![])),
        ];
        round_trip(v);
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let mut bytes = to_bytes(&2u64);
        bytes.extend(to_bytes(&(1u8, 10u8)));
        bytes.extend(to_bytes(&(1u8, 20u8)));
        assert_eq!(from_bytes::<BTreeMap<u8, u8>>(&bytes), Err(DecodeError::DuplicateKey));
        assert_eq!(from_bytes::<HashMap<u8, u8>>(&bytes), Err(DecodeError::DuplicateKey));
        let set = [to_bytes(&2u64), vec![4, 4]].concat();
        assert_eq!(from_bytes::<BTreeSet<u8>>(&set), Err(DecodeError::DuplicateKey));
        assert_eq!(from_bytes::<HashSet<u8>>(&set), Err(DecodeError::DuplicateKey));
    }

    #[test]
    fn invalid_primitives_are_rejected() {
        assert_eq!(from_bytes::<bool>(&[2]), Err(DecodeError::InvalidBool(2)));
        assert_eq!(
            from_bytes::<char>(&0xd800u32.to_le_bytes()),
            Err(DecodeError::InvalidChar(0xd800))
        );
        assert_eq!(
            from_bytes::<char>(&0x11_0000u32.to_le_bytes()),
            Err(DecodeError::InvalidChar(0x11_0000))
        );
        assert_eq!(
            from_bytes::<Option<u8>>(&[2, 0]),
            Err(DecodeError::InvalidTag { tag: 2, ty: "Option" })
        );
        assert_eq!(
            from_bytes::<Result<u8, u8>>(&[9, 0]),
            Err(DecodeError::InvalidTag { tag: 9, ty: "Result" })
        );
        let bad = [to_bytes(&3u64), vec![b'a', 0xff, b'b']].concat();
        assert_eq!(from_bytes::<String>(&bad), Err(DecodeError::InvalidUtf8 { valid_up_to: 1 }));
        let bad_nanos = [to_bytes(&1u64), to_bytes(&1_000_000_000u32)].concat();
        assert_eq!(
            from_bytes::<Duration>(&bad_nanos),
            Err(DecodeError::OutOfRange { ty: "Duration" })
        );
        assert_eq!(
            from_bytes::<u32>(&[1, 2]),
            Err(DecodeError::Truncated { needed: 4, available: 2 })
        );
        assert_eq!(from_bytes::<()>(&[0]), Err(DecodeError::TrailingBytes { count: 1 }));
    }

    #[test]
    fn hostile_lengths_fail_before_allocating() {
        let huge = to_bytes(&u64::MAX);
        let err = |r: Result<(), DecodeError>| r.unwrap_err();
        assert!(matches!(
            err(from_bytes::<Vec<u8>>(&huge).map(drop)),
            DecodeError::LengthTooLarge { len: u64::MAX, available: 0 }
        ));
        assert!(matches!(
            err(from_bytes::<String>(&huge).map(drop)),
            DecodeError::LengthTooLarge { .. }
        ));
        assert!(matches!(
            err(from_bytes::<Vec<u64>>(&huge).map(drop)),
            DecodeError::LengthTooLarge { .. }
        ));
        assert!(matches!(
            err(from_bytes::<HashMap<u8, u8>>(&huge).map(drop)),
            DecodeError::LengthTooLarge { .. }
        ));
        // Zero-sized elements have no input to be checked against: the budget stops them.
        assert!(matches!(
            err(from_bytes::<Vec<()>>(&huge).map(drop)),
            DecodeError::LengthTooLarge { .. }
        ));
        // A length that fits exactly is fine; one more element is not.
        let bytes = [to_bytes(&3u64), vec![1, 2, 3]].concat();
        assert_eq!(from_bytes::<Vec<u8>>(&bytes).unwrap(), [1, 2, 3]);
        let bytes = [to_bytes(&4u64), vec![1, 2, 3]].concat();
        assert_eq!(
            from_bytes::<Vec<u8>>(&bytes),
            Err(DecodeError::LengthTooLarge { len: 4, available: 3 })
        );
    }

    #[test]
    fn preallocation_is_bounded_by_the_input() {
        let d = Decoder::new(&[0; 100]);
        assert_eq!(d.prealloc_len::<u8>(usize::MAX), 100);
        assert_eq!(d.prealloc_len::<u64>(usize::MAX), 12);
        // Elements of unknown minimum size: no more memory than 4 KiB.
        assert_eq!(d.prealloc_len::<[u8; 0]>(usize::MAX), 100);
        struct Big {
            _bytes: [u8; 1024],
        }
        impl Decode for Big {
            fn decode(_: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                Ok(Big { _bytes: [0; 1024] })
            }
        }
        assert_eq!(d.prealloc_len::<Big>(usize::MAX), 4);
        assert_eq!(d.prealloc_len::<Big>(2), 2);
    }

    #[test]
    fn depth_is_limited() {
        fn nest(depth: usize) -> Vec<u8> {
            // `depth` nested Vec<Vec<...>> with one element each, innermost empty.
            let mut bytes = Vec::new();
            for _ in 0..depth {
                bytes.extend(to_bytes(&1u64));
            }
            bytes.extend(to_bytes(&0u64));
            bytes
        }
        #[derive(Debug, PartialEq)]
        struct Tree(Vec<Tree>);
        impl Encode for Tree {
            fn encode(&self, out: &mut Vec<u8>) {
                self.0.encode(out);
            }
        }
        impl Decode for Tree {
            const MIN_ENCODED_LEN: usize = 8;
            fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                input.decode().map(Tree)
            }
        }
        let ok = nest(MAX_DEPTH as usize - 1);
        let tree: Tree = from_bytes(&ok).unwrap();
        assert_eq!(to_bytes(&tree), ok);
        assert_eq!(
            from_bytes::<Tree>(&nest(MAX_DEPTH as usize)),
            Err(DecodeError::DepthLimitExceeded)
        );
        assert_eq!(from_bytes::<Tree>(&nest(1_000_000)), Err(DecodeError::DepthLimitExceeded));
        // The depth is given back after each container.
        let wide = Tree((0..200).map(|_| Tree(vec![Tree(vec![])])).collect());
        round_trip(wide);
    }

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
        let e = DecodeError::Truncated { needed: 4, available: 1 };
        assert_eq!(e.to_string(), "message truncated: needed 4 more bytes, 1 left");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidData);
        let f = FrameError::TooLong { len: 10, max: 3 };
        assert_eq!(f.to_string(), "bad message length: 10 bytes, limit 3");
        assert_eq!(io::Error::from(f).kind(), io::ErrorKind::InvalidData);
        assert_eq!(io::Error::from(FrameError::Eof).kind(), io::ErrorKind::UnexpectedEof);
        let io_err = FrameError::from(io::Error::other("boom"));
        assert!(io_err.source().is_some());
    }
}
