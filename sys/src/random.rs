//! Random bytes from the kernel.
//!
//! # References
//! - [Linux `getrandom(2)`]
//!
//! [Linux `getrandom(2)`]: https://man7.org/linux/man-pages/man2/getrandom.2.html
#![allow(unsafe_code)]

use crate::cvt::errno;
use crate::errno::{Errno, Result};

/// `getrandom(buf, len, 0)` — fills `buf` with random bytes from the kernel's CSPRNG, waiting
/// (only at early boot) until it is seeded.
///
/// Retries on `EINTR` and on short reads until `buf` is full. Async-signal-safe (a raw system
/// call).
///
/// # Errors
/// - [`Errno::NOSYS`] before Linux 3.17;
/// - whatever else `getrandom` reports.
///
/// # References
/// - [Linux]
///
/// [Linux]: https://man7.org/linux/man-pages/man2/getrandom.2.html
pub fn getrandom(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes; flags 0 is valid.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = errno();
            if e == Errno::INTR {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}
