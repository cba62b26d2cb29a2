//! The deserializer: the codec's wire format read into serde's data model, with the codec's
//! hostile-input limits.

use ::serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::LONG_TAG;
use crate::codec::{DecodeError, Decoder};

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

/// Reads the codec's wire format from a [`Decoder`], sharing its depth and empty-element
/// limits.
pub(super) struct De<'a, 'de> {
    pub(super) input: &'a mut Decoder<'de>,
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
