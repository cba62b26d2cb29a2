//! Error numbers.
//!
//! The layer reports every failure as an [`Errno`]: rustix's newtype over the C `errno` value.
//! It is a plain integer with associated constants (`Errno::INTR`, `Errno::TIMEDOUT`, ...), so an
//! unknown value read from the kernel is never undefined behaviour, and it prints a readable
//! message without `std`. With the `std` feature it converts into `std::io::Error`.
//!
//! Conventions used throughout the crate:
//! - a timed operation that ran out of time reports [`Errno::TIMEDOUT`], and only then;
//! - a non-blocking attempt that would have blocked reports [`Errno::AGAIN`] (or a `false`/`None`
//!   where the item's docs say so);
//! - `EINTR` is retried with the remaining time and never reported as a timeout.

pub use rustix::io::Errno;

/// The crate's result type: a value or the [`Errno`] the call failed with.
pub type Result<T> = core::result::Result<T, Errno>;
