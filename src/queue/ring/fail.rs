//! Why a ring operation did not complete ([`Fail`]); the queue types turn it into their public
//! errors.

use multiproc_sys::Errno;

/// Why a ring operation did not complete.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The deadline passed (put: full; get: empty).
    Timeout,
    /// The queue is closed (put), or closed and drained (get).
    Closed,
    /// A shared word failed validation.
    Corrupt(&'static str),
    /// An unexpected error from a lock.
    Os(Errno),
}

/// The result of a ring operation.
pub(super) type RingResult<T> = Result<T, Fail>;

/// A failed validation: `what` names the check.
pub(super) fn corrupt<T>(what: &'static str) -> RingResult<T> {
    Err(Fail::Corrupt(what))
}
