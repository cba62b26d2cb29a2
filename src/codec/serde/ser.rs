//! The serializer: serde's data model written in the codec's wire format.

use ::serde::ser::{self, Serialize, Serializer};

use super::LONG_TAG;
use super::error::SerializeError;

/// What a skipped struct field (`skip_serializing_if`) raises.
const NO_SKIPPED_FIELDS: &str = "a struct field was skipped (#[serde(skip_serializing_if)]), \
     which the codec's positional format cannot express; the receiver would misread the fields \
     that follow";

/// Writes the codec's wire format into a caller's buffer.
pub(super) struct Ser<'o> {
    pub(super) out: &'o mut Vec<u8>,
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
}

/// A sequence or map being written: the count is patched in at the end, so a length the
/// `Serialize` impl did not know (or got wrong) still gives a correct encoding.
pub(super) struct Counted<'a, 'o> {
    ser: &'a mut Ser<'o>,
    /// Offset of the count in the output.
    at: usize,
    /// Elements (or entries) written so far.
    count: u64,
}

impl<'a, 'o> Counted<'a, 'o> {
    /// Starts a sequence or map: reserves its `u64` count, written by [`Counted::end`].
    #[inline]
    fn begin(ser: &'a mut Ser<'o>) -> Self {
        let at = ser.out.len();
        ser.put(&[0; 8]);
        Counted { ser, at, count: 0 }
    }

    fn end(self) {
        self.ser.out[self.at..self.at + 8].copy_from_slice(&self.count.to_le_bytes());
    }
}

/// Fixed-size values: their little-endian bytes (a float's bits, a `char`'s scalar value, a
/// `bool` as `0` or `1`), as the codec's own impls write them.
macro_rules! le_bytes {
    ($($method:ident($v:ident: $ty:ty) => $bytes:expr;)*) => {$(
        #[inline]
        fn $method(self, $v: $ty) -> Result<(), SerializeError> {
            self.put(&$bytes);
            Ok(())
        }
    )*};
}

/// Tuple and struct variants: the variant's tag; the fields follow (`positional!`,
/// `named_fields!`).
macro_rules! variant_start {
    ($($method:ident;)*) => {$(
        fn $method(
            self,
            _name: &'static str,
            variant_index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self, SerializeError> {
            self.tag(variant_index);
            Ok(self)
        }
    )*};
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

    le_bytes! {
        serialize_bool(v: bool) => [u8::from(v)];
        serialize_i8(v: i8) => v.to_le_bytes();
        serialize_i16(v: i16) => v.to_le_bytes();
        serialize_i32(v: i32) => v.to_le_bytes();
        serialize_i64(v: i64) => v.to_le_bytes();
        serialize_i128(v: i128) => v.to_le_bytes();
        serialize_u8(v: u8) => [v];
        serialize_u16(v: u16) => v.to_le_bytes();
        serialize_u32(v: u32) => v.to_le_bytes();
        serialize_u64(v: u64) => v.to_le_bytes();
        serialize_u128(v: u128) => v.to_le_bytes();
        serialize_f32(v: f32) => v.to_bits().to_le_bytes();
        serialize_f64(v: f64) => v.to_bits().to_le_bytes();
        serialize_char(v: char) => u32::from(v).to_le_bytes();
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
        Ok(Counted::begin(self))
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

    fn serialize_map(self, _len: Option<usize>) -> Result<Counted<'a, 'o>, SerializeError> {
        Ok(Counted::begin(self))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, SerializeError> {
        Ok(self)
    }

    variant_start! {
        serialize_tuple_variant;
        serialize_struct_variant;
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

/// Structs and struct variants: the fields in order, without their names; a skipped field is
/// an error (the receiver could not tell it was skipped).
macro_rules! named_fields {
    ($($trait:ident;)*) => {$(
        impl ser::$trait for &mut Ser<'_> {
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
    )*};
}

named_fields! {
    SerializeStruct;
    SerializeStructVariant;
}
