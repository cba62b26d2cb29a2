//! [`Decoder`]: a cursor over the bytes of one message, with the limits that keep hostile
//! input from allocating or recursing without bound.

use super::{Decode, DecodeError};
use std::fmt;

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
    pub(super) empty_budget: usize,
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

    /// Decodes a sequence length (written by [`encode_len`](super::encode_len)) for elements of type `T`.
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
    pub(super) fn prealloc_len<T: Decode>(&self, len: usize) -> usize {
        let by_input = self.remaining() / T::MIN_ENCODED_LEN.max(1);
        let by_memory = self.remaining().max(MIN_PREALLOC_BYTES) / size_of::<T>().max(1);
        len.min(by_input).min(by_memory)
    }

    /// Charges the empty-element budget when decoding an element consumed no input; `before`
    /// is [`remaining`](Self::remaining) before the element, `len` the sequence length (for the
    /// error).
    #[inline]
    pub(super) fn note_element<T: Decode>(
        &mut self,
        before: usize,
        len: usize,
    ) -> Result<(), DecodeError> {
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
