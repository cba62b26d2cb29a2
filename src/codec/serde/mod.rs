//! The `serde` bridge (feature `serde`): a compact, non-self-describing serde `Serializer` and
//! `Deserializer` over the codec's wire format, and the [`Serde`] wrapper that makes any serde
//! type a message. The format and its guarantees are documented on [`Serde`], the public face
//! of this module.
//!
//! `ser` writes the format (serde's `Serializer`), `de` reads it (serde's `Deserializer`),
//! `error` holds [`SerializeError`] and the serde error impls.

mod de;
mod error;
mod ser;

pub use error::SerializeError;

use std::ops::{Deref, DerefMut};

use ::serde::Deserialize;
use ::serde::de::DeserializeOwned;
use ::serde::ser::Serialize;

use super::{Decode, DecodeError, Decoder, Encode};
use de::De;
use ser::Ser;

/// The tag byte that announces a `u32` variant index (of 255 or more) after it.
const LONG_TAG: u8 = 255;

// ---------------------------------------------------------------------------------------------
// The wrapper
// ---------------------------------------------------------------------------------------------

/// A serde value as a message: [`Encode`] for `T: Serialize`, [`Decode`] for
/// `T: DeserializeOwned`, so `Serde<T>` is a [`Message`](super::Message).
///
/// Python pickles any object it is given; `Serde` is the closest thing here: any
/// `Serialize + DeserializeOwned` type becomes a message without a hand-written
/// [`Encode`]/[`Decode`] impl.
///
/// Wrap the value when sending and unwrap it when receiving; the wrapper adds no bytes (the
/// format is [below](#wire-format)). `T` may be a reference, so sending needs no clone:
/// `conn.send(&Serde(&value))`, and the peer receives a `Serde<Value>`.
///
/// It also works anywhere a [`Message`](super::Message) does: as the return value of a
/// [`Process`](crate::Process), in a queue, inside native containers (`Vec<Serde<T>>`), and from
/// a hand-written [`Decode`] impl (`input.decode::<Serde<T>>()?`).
///
/// # Examples
///
/// ```
/// use multiproc::codec::Serde;
/// use multiproc::{Process, pipe};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Shape {
///     Circle { r: f64 },
///     Rect(f64, f64),
/// }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Job {
///     id: u64,
///     name: String,
///     shapes: Vec<Shape>,
///     deadline: Option<std::time::Duration>,
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (parent_end, child_end) = pipe(true)?;
/// let child = Process::new(move || {
///     // The child receives a Job, answers with its total area, and returns the Job's name.
///     let Serde(job): Serde<Job> = child_end.recv().unwrap();
///     let area: f64 = job
///         .shapes
///         .iter()
///         .map(|s| match s {
///             Shape::Circle { r } => 3.0 * r * r,
///             Shape::Rect(w, h) => w * h,
///         })
///         .sum();
///     child_end.send(&area).unwrap();
///     Serde(job.name)
/// });
/// child.start()?;
///
/// let job = Job {
///     id: 7,
///     name: "résumé".into(),
///     shapes: vec![Shape::Circle { r: 1.0 }, Shape::Rect(2.0, 3.0)],
///     deadline: None,
/// };
/// parent_end.send(&Serde(&job))?; // a reference: no clone needed
/// assert_eq!(parent_end.recv::<f64>()?, 9.0);
/// let Serde(name) = child.join()?;
/// assert_eq!(name, "résumé");
///
/// // Without a connection: to bytes and back.
/// let bytes = multiproc::codec::to_bytes(&Serde(&job));
/// let Serde(back): Serde<Job> = multiproc::codec::from_bytes(&bytes)?;
/// assert_eq!(back, job);
/// # Ok(())
/// # }
/// ```
///
/// # Why a wrapper
///
/// A blanket `impl<T: Serialize> Encode for T` is impossible: it would overlap with the
/// codec's own impls (`u32`, `String`, `Vec<T>`, ...), and Rust's coherence rules reject
/// overlapping impls. So serde types travel inside `Serde`: `conn.send(&Serde(&value))`,
/// `let Serde(value): Serde<MyType> = conn.recv()?`. The wrapper adds no bytes.
///
/// # Wire format
///
/// The serde data model maps onto the [native format](super#wire-format), so `Serde<T>` and a
/// natively encoded `T` are the same bytes for every std type the codec implements (integers,
/// strings, `Vec`, maps, sets, tuples, arrays, `Option`, `Result`, `Duration`, ...): either side
/// may use either. A struct encodes like the tuple of its fields.
///
/// | serde data model | bytes |
/// |---|---|
/// | `bool` | one byte, `0` or `1` |
/// | `i8`..`i128`, `u8`..`u128` | fixed width, little-endian (`usize`, `isize`: as `u64`, `i64`) |
/// | `f32`, `f64` | the IEEE 754 bit pattern, little-endian |
/// | `char` | its scalar value as a `u32` |
/// | string, bytes | length (`u64`) then the bytes (strings are checked to be UTF-8) |
/// | `None` / `Some(v)` | `0` / `1` then `v` |
/// | unit, unit struct | nothing |
/// | newtype struct | its field |
/// | sequence (`Vec`, sets, ...) | element count (`u64`) then each element |
/// | map | entry count (`u64`) then key, value, key, value, ... |
/// | tuple, tuple struct, struct | each field in order, no count and no names |
/// | enum variant | the variant index as a tag, then the variant's fields as above |
///
/// A variant index below 255 is one tag byte; an index of 255 or more (enums with more than
/// 255 variants) is the byte `255` followed by the index as a `u32`. So `Result` and
/// `Option`-like enums cost one byte, exactly as in the native codec, and a hand-written
/// native `Decode` that reads a `u8` tag can decode a serde enum of up to 255 variants.
///
/// Because fields are positional and nothing describes itself:
///
/// - `deserialize_any` (and so `#[serde(untagged)]`, internally tagged enums, `#[serde(flatten)]`
///   and self-describing values such as `serde_json::Value`) is not supported: decoding returns
///   [`DecodeError::Custom`] saying so. `deserialize_identifier` and `deserialize_ignored_any`
///   fail the same way (the format never needs them: structs are sequences, variants are tags).
/// - `#[serde(skip_serializing_if = "...")]` would make the receiver read the wrong field, so
///   skipping a field makes serialization fail. `#[serde(skip)]` on a field is fine (both sides
///   agree on it); on an enum variant, put skipped variants last, since serde numbers the
///   remaining variants differently when serializing and deserializing.
/// - Sequences and maps of unknown length (`Serializer::collect_seq` over an iterator) are
///   fine: the count is patched in afterwards.
///
/// # Decoding untrusted bytes
///
/// The native decoder's [guarantees](super#decoding-untrusted-bytes) hold:
///
/// - It never panics (unless a `Deserialize` impl itself does).
/// - A string or byte length is checked against the bytes left before anything is allocated.
///   A sequence or map reports a size hint of at most one element per byte left (serde's std
///   impls further cap what they reserve at 1 MiB), so a hostile count reserves nothing it could
///   not fill. Elements that take no bytes at all draw from the same budget
///   ([`EMPTY_ELEMENT_BUDGET`](super::EMPTY_ELEMENT_BUDGET)), so `Vec<()>` with a count of
///   `u64::MAX` fails quickly.
/// - Every `Some`, newtype struct, sequence, tuple, struct, map and enum is one level of
///   nesting, and more than [`MAX_DEPTH`](super::MAX_DEPTH) levels is
///   [`DecodeError::DepthLimitExceeded`], so a recursive type cannot overflow the stack.
/// - A bad tag is [`DecodeError::InvalidTag`] (naming the enum), a bad `bool`, `char` or string
///   is the same error as in the native codec, and the errors serde impls raise (`invalid
///   value`, `invalid length`, [`serde::de::Error::custom`], ...) become
///   [`DecodeError::Invalid`] with serde's message.
/// - A visitor that stops before the end of a sequence is an error rather than a silent
///   misread of what follows.
///
/// One difference: duplicate map keys are not detected (serde's std map impls keep the last
/// value), where the native codec rejects them.
///
/// # Panics
///
/// [`Encode::encode`] cannot report an error, so it panics if `T`'s `Serialize` impl fails
/// (a `Mutex` that is poisoned, a `PathBuf` that is not UTF-8, a `skip_serializing_if` field
/// that is skipped). [`try_encode`](Serde::try_encode) and [`try_to_bytes`](Serde::try_to_bytes)
/// return that error instead; send their bytes with `Connection::send_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serde<T>(pub T);

impl<T> Serde<T> {
    /// Returns the wrapped value.
    #[must_use]
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Serde<T> {
    fn from(value: T) -> Self {
        Serde(value)
    }
}

impl<T> Deref for Serde<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Serde<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Serialize> Serde<T> {
    /// Appends the encoding of the wrapped value to `out`, or returns the error its
    /// `Serialize` impl raised (`out` is then left as it was).
    ///
    /// # Errors
    ///
    /// A [`SerializeError`] when `T`'s `Serialize` impl fails, or when it skips a struct field
    /// (`#[serde(skip_serializing_if = "...")]`), which this positional format cannot express.
    pub fn try_encode(&self, out: &mut Vec<u8>) -> Result<(), SerializeError> {
        let start = out.len();
        let result = self.0.serialize(&mut Ser { out: &mut *out });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Encodes the wrapped value into a new buffer, or returns the error its `Serialize` impl
    /// raised.
    ///
    /// # Errors
    ///
    /// As [`try_encode`](Self::try_encode).
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, SerializeError> {
        let mut out = Vec::new();
        self.try_encode(&mut out)?;
        Ok(out)
    }
}

impl<'de, T: Deserialize<'de>> Serde<T> {
    /// Decodes a `T` that must take up all of `bytes`, borrowing from them where `T` does
    /// (`&str` and `&[u8]` fields, `Cow`s marked `#[serde(borrow)]`).
    ///
    /// For owned types, [`codec::from_bytes::<Serde<T>>`](super::from_bytes) does the same.
    ///
    /// # Errors
    ///
    /// Any [`DecodeError`] (see [`Serde`](Serde#decoding-untrusted-bytes)), or
    /// [`DecodeError::TrailingBytes`] when bytes are left over after the value.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::codec::Serde;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct View<'a> {
    ///     key: &'a str,
    ///     blob: &'a [u8],
    /// }
    ///
    /// let bytes = Serde(View { key: "k", blob: &[1, 2, 3] }).try_to_bytes().unwrap();
    /// let Serde(view) = Serde::<View<'_>>::from_slice(&bytes).unwrap();
    /// assert_eq!((view.key, view.blob), ("k", &[1u8, 2, 3][..])); // both point into `bytes`
    /// ```
    pub fn from_slice(bytes: &'de [u8]) -> Result<Self, DecodeError> {
        let mut input = Decoder::new(bytes);
        let value = Self::deserialize_from(&mut input)?;
        input.finish()?;
        Ok(value)
    }

    /// Decodes one `T` from `input`, consuming exactly the bytes its encoding used, and
    /// borrowing from the input where `T` does.
    ///
    /// # Errors
    ///
    /// Any [`DecodeError`] (see [`Serde`](Serde#decoding-untrusted-bytes)); what is left in
    /// `input` is then unspecified.
    pub fn deserialize_from(input: &mut Decoder<'de>) -> Result<Self, DecodeError> {
        T::deserialize(&mut De { input }).map(Serde)
    }
}

impl<T: Serialize> Encode for Serde<T> {
    /// Appends the encoding of the wrapped value to `out`.
    ///
    /// # Panics
    ///
    /// If `T`'s `Serialize` impl fails (see [`Serde::try_encode`]).
    fn encode(&self, out: &mut Vec<u8>) {
        if let Err(e) = self.try_encode(out) {
            panic!("cannot encode a Serde<{}>: {e}", std::any::type_name::<T>());
        }
    }
}

impl<T: DeserializeOwned> Decode for Serde<T> {
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Self::deserialize_from(input)
    }
}
