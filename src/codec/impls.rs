//! [`Encode`] and [`Decode`] for the std types: integers, floats, `bool`, `char`, strings,
//! sequences, pointers, `Option`, `Result`, tuples, maps and sets. The wire format is in the
//! [module docs](super#wire-format).

use super::{Decode, DecodeError, Decoder, Encode, decode_byte_string, encode_len};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

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

/// `usize` and `isize`: as `u64` and `i64`, so the bytes do not depend on the pointer width; a
/// value that does not fit this machine's width is [`DecodeError::OutOfRange`].
macro_rules! pointer_sized {
    ($($ty:ident as $wide:ident;)*) => {$(
        impl Encode for $ty {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                (*self as $wide).encode(out);
            }
        }

        impl Decode for $ty {
            const MIN_ENCODED_LEN: usize = 8;

            #[inline]
            fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                $ty::try_from($wide::decode(input)?)
                    .map_err(|_| DecodeError::OutOfRange { ty: stringify!($ty) })
            }
        }
    )*};
}

pointer_sized! {
    usize as u64;
    isize as i64;
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

// `&T` above is encode-only, so it is not one of the `smart_pointers!`.
/// `Box`, `Rc` and `Arc` encode and decode exactly as what they point to.
macro_rules! smart_pointers {
    ($($ptr:ident),+) => {$(
        impl<T: Encode + ?Sized> Encode for $ptr<T> {
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                (**self).encode(out);
            }

            #[inline]
            fn as_byte_string(&self) -> Option<&[u8]> {
                (**self).as_byte_string()
            }
        }

        impl<T: Decode> Decode for $ptr<T> {
            const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN;

            #[inline]
            fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                input.nested(|input| T::decode(input).map($ptr::new))
            }

            const BYTE_STRING: bool = T::BYTE_STRING;

            fn from_byte_string(bytes: Vec<u8>) -> Result<Self, DecodeError> {
                T::from_byte_string(bytes).map($ptr::new)
            }
        }
    )+};
}

smart_pointers!(Box, Rc, Arc);

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
