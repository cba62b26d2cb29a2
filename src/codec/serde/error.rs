//! [`SerializeError`], and serde's error traits for the codec's errors.

use std::error::Error;
use std::fmt;

use ::serde::{de, ser};

#[cfg(doc)]
use super::Serde;
use crate::codec::DecodeError;

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
