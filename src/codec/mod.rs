//! The message codec (the bytes of every message a [`Connection`], a queue or a pool sends), and
//! the frame format (an 8-byte length, then the payload) of a [`Connection`] and of the pool's
//! worker channels.
//!
//! A message is any type that implements [`Encode`] (turn a value into bytes) and [`Decode`]
//! (rebuild it from bytes); [`Message`] is the name for "both", and is implemented automatically.
//! The crate implements both traits for the std types a program usually sends: integers, floats,
//! `bool`, `char`, `()`, `String`, `Vec`, `VecDeque`, `Box`, `Option`, `Result`, tuples up to 12,
//! arrays, the four std maps and sets, and [`Duration`](std::time::Duration). `str`, `[T]` and `&T` are encode-only: a
//! `&str` encodes exactly like a `String`, a `&[T]` exactly like a `Vec<T>`, so the receiving side
//! decodes the owned type.
//!
//! Nothing here depends on anything beyond std, and no serialization framework is required.
//! Your own types implement the traits by hand (see the examples below) or, with the `derive`
//! feature, by `#[derive(Encode, Decode)]` ([below](#deriving)).
//!
//! With the optional `serde` feature, `codec::Serde<T>` makes any `Serialize + DeserializeOwned`
//! type a message too, in this same wire format: `conn.send(&Serde(&value))`, then
//! `let Serde(value): Serde<MyType> = conn.recv()?`. It is a wrapper because a blanket impl for
//! every serde type would overlap with the impls above. Its documentation gives the mapping of
//! the serde data model onto the format and the (unchanged) hostile-input guarantees.
//!
//! # Deriving
//!
//! With the optional `derive` feature, `#[derive(Encode, Decode)]` writes both impls for a
//! struct or an enum, generic or not (`multiproc::Encode` and `multiproc::Decode` then name the
//! derive macros as well as the traits, as serde does). A struct (named, tuple or unit) encodes
//! exactly like the tuple of its fields, in declaration order. An enum writes its variant index
//! (its position in the declaration, from 0) as one byte, then the variant's fields; enums of
//! more than 255 variants write indices of 255 or more as the byte `255` then the index as a
//! little-endian `u32`. That is the tag of `Option` and `Result`, and of `Serde<T>` for a
//! serde-derived enum, so either derive gives the same bytes. An unknown tag decodes to
//! [`DecodeError::InvalidTag`] (or [`DecodeError::Invalid`] for the 5-byte form), and all the
//! limits below apply to derived types unchanged. `MIN_ENCODED_LEN` is the sum of the fields'
//! (for an enum, one byte plus its smallest variant's). Each type parameter gets an `Encode`
//! (resp. `Decode`) bound; lifetimes and const generics pass through. See the
//! `multiproc-derive` crate's documentation for the details, including
//! `#[multiproc(crate = "...")]` for a renamed crate.
//!
//! ```
//! # #[cfg(feature = "derive")]
//! # fn main() -> Result<(), multiproc::codec::DecodeError> {
//! use multiproc::{Decode, Encode, codec};
//!
//! #[derive(Debug, PartialEq, Encode, Decode)]
//! struct Job {
//!     id: u64,
//!     name: String,
//!     args: Vec<i32>,
//! }
//!
//! #[derive(Debug, PartialEq, Encode, Decode)]
//! enum Reply<T> {
//!     Done(T),
//!     Failed { job: u64, reason: String },
//!     Cancelled,
//! }
//!
//! let job = Job { id: 7, name: "résumé".into(), args: vec![1, -2, 3] };
//! assert_eq!(codec::to_bytes(&job), codec::to_bytes(&(7u64, "résumé", vec![1i32, -2, 3])));
//! assert_eq!(codec::from_bytes::<Job>(&codec::to_bytes(&job))?, job);
//!
//! let reply: Reply<i64> = Reply::Failed { job: 7, reason: "timeout".into() };
//! assert_eq!(codec::to_bytes(&reply), codec::to_bytes(&(1u8, 7u64, "timeout")));
//! assert_eq!(codec::from_bytes::<Reply<i64>>(&codec::to_bytes(&reply))?, reply);
//! assert_eq!(
//!     codec::from_bytes::<Reply<i64>>(&[3]),
//!     Err(codec::DecodeError::InvalidTag { tag: 3, ty: "Reply" })
//! );
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "derive"))]
//! # fn main() {}
//! ```
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
//! | [`Duration`](std::time::Duration) | seconds (`u64`) then nanoseconds (`u32`, below 10^9) |
//! | `#[derive(Encode, Decode)]` struct | each field in order, as a tuple of the fields |
//! | `#[derive(Encode, Decode)]` enum | the variant index (one byte; `255` then a `u32` past 254), then the variant's fields |
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
//! `read` without ever reading ahead into the next one. A [`Pool`](crate::Pool) talks to its
//! workers in these frames too. All of them share one implementation of the format, its
//! limits and its errors ([`FrameError`]).
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
mod serde;
#[cfg(feature = "serde")]
pub use self::serde::{Serde, SerializeError};

mod decoder;
mod error;
pub(crate) mod frame;
mod impls;
#[cfg(test)]
mod tests;

pub use decoder::{Decoder, EMPTY_ELEMENT_BUDGET, MAX_DEPTH};
pub use error::DecodeError;
pub use frame::{
    FRAME_HEADER_LEN, FrameError, decode_frame_header, discard_frame_payload, encode_frame_header,
    read_frame, read_frame_into, write_frame,
};

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

/// Appends a whole frame (header, then the encoding of `value`) to `out`, ready to be written
/// with one `write`.
pub fn encode_framed<T: Encode + ?Sized>(value: &T, out: &mut Vec<u8>) {
    let at = frame::Plain::begin(out);
    value.encode(out);
    frame::Plain::end(out, at);
}

/// Decodes a `T` that must take up all of `bytes`.
///
/// # Errors
///
/// Any [`DecodeError`] from `T`'s decoding, [`DecodeError::TrailingBytes`] when bytes are
/// left over after the value, or [`DecodeError::Panicked`] when `T`'s `Decode` panicked (the
/// panic is caught; the panic hook has already reported it).
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
    let value = decode_caught::<T>(&mut input)?;
    input.finish()?;
    Ok(value)
}

/// `T::decode`, with a panic in it (a user's `Decode` impl) caught and returned as
/// [`DecodeError::Panicked`]: the entry point of every decode of a received message.
pub(crate) fn decode_caught<T: Decode>(input: &mut Decoder<'_>) -> Result<T, DecodeError> {
    // Unwind safety: on a panic the decoder's position is meaningless, and every caller
    // discards the decoder along with the error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::decode(input))).unwrap_or_else(
        |panic| Err(DecodeError::Panicked(crate::fork_safety::panic_message(panic.as_ref()))),
    )
}

/// Decodes the byte string `bytes` (length prefix stripped) the slow way: prefix put back, then
/// an ordinary decode.
pub(super) fn decode_byte_string<T: Decode>(bytes: Vec<u8>) -> Result<T, DecodeError> {
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
