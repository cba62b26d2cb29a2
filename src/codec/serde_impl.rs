//! The `serde` bridge (feature `serde`): a compact, non-self-describing serde `Serializer` and
//! `Deserializer` over the codec's wire format, and the [`Serde`] wrapper that makes any serde
//! type a message. The format and its guarantees are documented on [`Serde`], the public face
//! of this module.

use std::error::Error;
use std::fmt;
use std::ops::{Deref, DerefMut};

use ::serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use ::serde::ser::{self, Serialize};
use ::serde::{Deserialize, Deserializer, Serializer};

use super::{Decode, DecodeError, Decoder, Encode};

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

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a value could not be serialized: its `Serialize` impl failed, or skipped a struct field.
///
/// Python's `pickle` raises `PicklingError` (or the object's own exception) for an object it
/// cannot pickle; here [`Serde::try_encode`] and [`Serde::try_to_bytes`] return a
/// `SerializeError` (a plain `send` of such a value panics instead, see [`Serde`]).
///
/// # Examples
///
/// ```
/// use multiproc::codec::Serde;
///
/// #[derive(serde::Serialize)]
/// struct Note {
///     // Skipping a field cannot be expressed in a positional format.
///     #[serde(skip_serializing_if = "Option::is_none")]
///     text: Option<String>,
/// }
///
/// match Serde(Note { text: None }).try_to_bytes() {
///     Err(e) => assert!(!e.message().is_empty()),
///     Ok(bytes) => panic!("unexpectedly encoded as {bytes:?}"),
/// }
/// assert!(Serde(Note { text: Some("kept".into()) }).try_to_bytes().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerializeError {
    message: String,
}

impl SerializeError {
    /// Returns the message, as the `Serialize` impl gave it.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SerializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for SerializeError {}

impl ser::Error for SerializeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerializeError { message: msg.to_string() }
    }
}

/// Errors raised by `Deserialize` impls (`invalid_type`, `missing_field`, `custom`, ...)
/// become [`DecodeError::Invalid`] with serde's message.
impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::Invalid(msg.to_string())
    }
}

/// What `deserialize_any` returns.
const NOT_SELF_DESCRIBING: &str = "deserialize_any is not supported: the codec's format is not \
     self-describing, so #[serde(untagged)], internally tagged enums, #[serde(flatten)] and \
     types such as serde_json::Value cannot be decoded from it";

/// What `deserialize_identifier` returns.
const NO_IDENTIFIERS: &str = "deserialize_identifier is not supported: the codec's format has \
     no field or variant names (struct fields are positional, variants are tags)";

/// What `deserialize_ignored_any` returns.
const NO_IGNORED_ANY: &str = "deserialize_ignored_any is not supported: the codec's format is \
     not self-describing, so a value of unknown type cannot be skipped";

/// What a skipped struct field (`skip_serializing_if`) raises.
const NO_SKIPPED_FIELDS: &str = "a struct field was skipped (#[serde(skip_serializing_if)]), \
     which the codec's positional format cannot express; the receiver would misread the fields \
     that follow";

// ---------------------------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------------------------

/// The tag byte that announces a `u32` variant index (of 255 or more) after it.
const LONG_TAG: u8 = 255;

/// Writes the codec's wire format into a caller's buffer.
struct Ser<'o> {
    out: &'o mut Vec<u8>,
}

impl Ser<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A variant index: one byte below 255, else `255` and the index as a `u32`.
    #[inline]
    fn tag(&mut self, index: u32) {
        match u8::try_from(index) {
            Ok(short) if short != LONG_TAG => self.out.push(short),
            _ => {
                self.out.push(LONG_TAG);
                self.put(&index.to_le_bytes());
            }
        }
    }

    /// Reserves a `u64` count, to be written by [`Counted::end`]; returns its offset.
    #[inline]
    fn count_slot(&mut self) -> usize {
        let at = self.out.len();
        self.put(&[0; 8]);
        at
    }
}

/// A sequence or map being written: the count is patched in at the end, so a length the
/// `Serialize` impl did not know (or got wrong) still gives a correct encoding.
struct Counted<'a, 'o> {
    ser: &'a mut Ser<'o>,
    /// Offset of the count in the output.
    at: usize,
    /// Elements (or entries) written so far.
    count: u64,
}

impl Counted<'_, '_> {
    fn end(self) {
        self.ser.out[self.at..self.at + 8].copy_from_slice(&self.count.to_le_bytes());
    }
}

impl<'a, 'o> Serializer for &'a mut Ser<'o> {
    type Ok = ();
    type Error = SerializeError;
    type SerializeSeq = Counted<'a, 'o>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Counted<'a, 'o>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), SerializeError> {
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), SerializeError> {
        self.out.push(v);
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), SerializeError> {
        self.put(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), SerializeError> {
        self.put(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), SerializeError> {
        self.put(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), SerializeError> {
        self.put(&u32::from(v).to_le_bytes());
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), SerializeError> {
        self.serialize_bytes(v.as_bytes())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), SerializeError> {
        self.put(&(v.len() as u64).to_le_bytes());
        self.put(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), SerializeError> {
        self.out.push(0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerializeError> {
        self.out.push(1);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), SerializeError> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), SerializeError> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
    ) -> Result<(), SerializeError> {
        self.tag(variant_index);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), SerializeError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), SerializeError> {
        self.tag(variant_index);
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Counted<'a, 'o>, SerializeError> {
        let at = self.count_slot();
        Ok(Counted { ser: self, at, count: 0 })
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, SerializeError> {
        Ok(self)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self, SerializeError> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, SerializeError> {
        self.tag(variant_index);
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Counted<'a, 'o>, SerializeError> {
        let at = self.count_slot();
        Ok(Counted { ser: self, at, count: 0 })
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, SerializeError> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, SerializeError> {
        self.tag(variant_index);
        Ok(self)
    }
}

impl ser::SerializeSeq for Counted<'_, '_> {
    type Ok = ();
    type Error = SerializeError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.count += 1;
        value.serialize(&mut *self.ser)
    }

    fn end(self) -> Result<(), SerializeError> {
        Counted::end(self);
        Ok(())
    }
}

impl ser::SerializeMap for Counted<'_, '_> {
    type Ok = ();
    type Error = SerializeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.count += 1;
        key.serialize(&mut *self.ser)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
        value.serialize(&mut *self.ser)
    }

    fn end(self) -> Result<(), SerializeError> {
        Counted::end(self);
        Ok(())
    }
}

/// Tuples, structs and their variants: the fields in order, nothing else.
macro_rules! positional {
    ($($trait:ident :: $method:ident;)*) => {$(
        impl ser::$trait for &mut Ser<'_> {
            type Ok = ();
            type Error = SerializeError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerializeError> {
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), SerializeError> {
                Ok(())
            }
        }
    )*};
}

positional! {
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
}

impl ser::SerializeStruct for &mut Ser<'_> {
    type Ok = ();
    type Error = SerializeError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), SerializeError> {
        value.serialize(&mut **self)
    }

    fn skip_field(&mut self, _key: &'static str) -> Result<(), SerializeError> {
        Err(ser::Error::custom(NO_SKIPPED_FIELDS))
    }

    fn end(self) -> Result<(), SerializeError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Ser<'_> {
    type Ok = ();
    type Error = SerializeError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), SerializeError> {
        value.serialize(&mut **self)
    }

    fn skip_field(&mut self, _key: &'static str) -> Result<(), SerializeError> {
        Err(ser::Error::custom(NO_SKIPPED_FIELDS))
    }

    fn end(self) -> Result<(), SerializeError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Deserializer
// ---------------------------------------------------------------------------------------------

/// Reads the codec's wire format from a [`Decoder`], sharing its depth and empty-element
/// limits.
struct De<'a, 'de> {
    input: &'a mut Decoder<'de>,
}

impl<'de> De<'_, 'de> {
    /// Runs `f` one nesting level deeper ([`Decoder::nested`]).
    #[inline]
    fn nested<R>(
        &mut self,
        f: impl FnOnce(&mut De<'_, 'de>) -> Result<R, DecodeError>,
    ) -> Result<R, DecodeError> {
        self.input.nested(|input| f(&mut De { input }))
    }

    /// Reads a sequence or map count. It is not checked against the input here (the minimum
    /// size of a serde element is unknown): each element is, as it is read.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let len = self.input.decode::<u64>()?;
        usize::try_from(len)
            .map_err(|_| DecodeError::LengthTooLarge { len, available: self.input.remaining() })
    }

    /// Reads a length-prefixed run of bytes (a string or a byte buffer), checking the length
    /// against the input first.
    fn bytes(&mut self) -> Result<&'de [u8], DecodeError> {
        let len = self.input.decode_seq_len::<u8>()?;
        self.input.take(len)
    }

    /// Charges the empty-element budget for an element (or map entry) of `size` bytes in
    /// memory that consumed no input; `before` is what was left before it, `len` the count of
    /// the sequence (for the error).
    #[inline]
    fn note_element(&mut self, before: usize, size: usize, len: usize) -> Result<(), DecodeError> {
        let input = &mut *self.input;
        if input.remaining() == before {
            match input.empty_budget.checked_sub(size.max(1)) {
                Some(left) => input.empty_budget = left,
                None => {
                    return Err(DecodeError::LengthTooLarge {
                        len: len as u64,
                        available: input.remaining(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Hands `len` elements to `visitor` as a sequence and checks that it read them all.
    fn visit_elements<V: Visitor<'de>>(
        &mut self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let mut access = Elements { de: De { input: &mut *self.input }, len, left: len };
        let value = visitor.visit_seq(&mut access)?;
        unread(access.left, len)?;
        Ok(value)
    }
}

/// The error for a visitor that returned before reading all `len` elements.
fn unread(left: usize, len: usize) -> Result<(), DecodeError> {
    if left == 0 {
        Ok(())
    } else {
        Err(DecodeError::Invalid(format!(
            "only {} of {len} encoded elements were read; the rest would be misread as what \
             follows",
            len - left
        )))
    }
}

macro_rules! primitive {
    ($($method:ident => $visit:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            visitor.$visit(self.input.decode::<$ty>()?)
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut De<'_, 'de> {
    type Error = DecodeError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DecodeError> {
        Err(DecodeError::Custom(NOT_SELF_DESCRIBING))
    }

    primitive! {
        deserialize_bool => visit_bool(bool);
        deserialize_i8 => visit_i8(i8);
        deserialize_i16 => visit_i16(i16);
        deserialize_i32 => visit_i32(i32);
        deserialize_i64 => visit_i64(i64);
        deserialize_i128 => visit_i128(i128);
        deserialize_u8 => visit_u8(u8);
        deserialize_u16 => visit_u16(u16);
        deserialize_u32 => visit_u32(u32);
        deserialize_u64 => visit_u64(u64);
        deserialize_u128 => visit_u128(u128);
        deserialize_f32 => visit_f32(f32);
        deserialize_f64 => visit_f64(f64);
        deserialize_char => visit_char(char);
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let bytes = self.bytes()?;
        match std::str::from_utf8(bytes) {
            Ok(s) => visitor.visit_borrowed_str(s),
            Err(e) => Err(DecodeError::InvalidUtf8 { valid_up_to: e.valid_up_to() }),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.input.decode::<u8>()? {
            0 => visitor.visit_none(),
            1 => self.nested(|de| visitor.visit_some(de)),
            tag => Err(DecodeError::InvalidTag { tag, ty: "Option" }),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.nested(|de| visitor.visit_newtype_struct(de))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.nested(|de| {
            let len = de.count()?;
            de.visit_elements(len, visitor)
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.nested(|de| de.visit_elements(len, visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.nested(|de| {
            let len = de.count()?;
            let mut access = Entries {
                de: De { input: &mut *de.input },
                len,
                left: len,
                entry_start: 0,
                key_size: 0,
            };
            let value = visitor.visit_map(&mut access)?;
            unread(access.left, len)?;
            Ok(value)
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.nested(|de| visitor.visit_enum(Variant { de: De { input: &mut *de.input }, name }))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DecodeError> {
        Err(DecodeError::Custom(NO_IDENTIFIERS))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        _visitor: V,
    ) -> Result<V::Value, DecodeError> {
        Err(DecodeError::Custom(NO_IGNORED_ANY))
    }
}

/// The elements of a sequence, tuple or struct.
struct Elements<'a, 'de> {
    de: De<'a, 'de>,
    /// The count announced (or the tuple's length).
    len: usize,
    /// Elements not read yet.
    left: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let before = self.de.input.remaining();
        let value = seed.deserialize(&mut self.de)?;
        self.de.note_element(before, size_of::<T::Value>(), self.len)?;
        Ok(Some(value))
    }

    /// At most one element per byte left: what serde's impls reserve up front never exceeds
    /// what the input could fill (elements that take no bytes reserve nothing).
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.remaining()))
    }
}

/// The entries of a map.
struct Entries<'a, 'de> {
    de: De<'a, 'de>,
    /// The count announced.
    len: usize,
    /// Entries not read yet.
    left: usize,
    /// Bytes left before the current entry's key.
    entry_start: usize,
    /// In-memory size of the current entry's key.
    key_size: usize,
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.entry_start = self.de.input.remaining();
        self.key_size = size_of::<K::Value>();
        seed.deserialize(&mut self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let value = seed.deserialize(&mut self.de)?;
        let size = self.key_size.saturating_add(size_of::<V::Value>());
        self.de.note_element(self.entry_start, size, self.len)?;
        Ok(value)
    }

    /// At most one entry per byte left (see [`Elements::size_hint`]).
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.remaining()))
    }
}

/// An enum value: its tag, then its variant's fields.
struct Variant<'a, 'de> {
    de: De<'a, 'de>,
    /// The enum's name, for errors.
    name: &'static str,
}

impl<'a, 'de> EnumAccess<'de> for Variant<'a, 'de> {
    type Error = DecodeError;
    type Variant = De<'a, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, De<'a, 'de>), DecodeError> {
        let tag = self.de.input.decode::<u8>()?;
        let index = if tag == LONG_TAG {
            let index = self.de.input.decode::<u32>()?;
            if index < u32::from(LONG_TAG) {
                return Err(DecodeError::Invalid(format!(
                    "variant index {index} of enum {} in the 5-byte form, which only indices \
                     of 255 or more use",
                    self.name
                )));
            }
            index
        } else {
            u32::from(tag)
        };
        // The variant's own visitor knows how many variants there are (serde's `variants`
        // list also holds aliases, so it cannot tell): an index it rejects is a bad tag.
        let deserializer: de::value::U32Deserializer<DecodeError> = index.into_deserializer();
        match seed.deserialize(deserializer) {
            Ok(value) => Ok((value, self.de)),
            Err(_) if tag != LONG_TAG => Err(DecodeError::InvalidTag { tag, ty: self.name }),
            Err(_) => Err(DecodeError::Invalid(format!(
                "invalid variant index {index} for enum {}",
                self.name
            ))),
        }
    }
}

impl<'de> VariantAccess<'de> for De<'_, 'de> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<(), DecodeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        mut self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        seed.deserialize(&mut self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        mut self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.visit_elements(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.visit_elements(fields.len(), visitor)
    }
}
