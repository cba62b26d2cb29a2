//! Error numbers.
//!
//! The layer reports every failure as an [`Errno`]: the crate's own newtype over the C `errno`
//! value (not a re-export, so that no dependency's major version leaks into this API). It is a
//! plain integer with associated constants (`Errno::INTR`, `Errno::TIMEDOUT`, ...), so an
//! unknown value read from the kernel is never undefined behaviour; it prints a readable message
//! without `std` and implements [`core::error::Error`]. With the `std` feature it converts into
//! `std::io::Error`.
//!
//! Conventions used throughout the crate:
//! - a timed operation that ran out of time reports [`Errno::TIMEDOUT`], and only then;
//! - a non-blocking attempt that would have blocked reports [`Errno::AGAIN`] (or a `false`/`None`
//!   where the item's docs say so);
//! - `EINTR` is retried with the remaining time and never reported as a timeout.

use core::fmt;

/// A C `errno` value: why a system call failed.
///
/// Compare with the associated constants (`e == Errno::INTR`, or in a pattern); any other
/// value read from the kernel is kept as it is ([`raw_os_error`](Self::raw_os_error)).
///
/// ```
/// use multiproc_sys::Errno;
///
/// let e = Errno::from_raw_os_error(libc::EAGAIN);
/// assert_eq!(e, Errno::AGAIN);
/// assert_eq!(e.raw_os_error(), libc::EAGAIN);
/// assert_eq!(e.to_string(), "EAGAIN: resource temporarily unavailable");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Errno(i32);

impl Errno {
    /// `EPERM`: operation not permitted.
    pub const PERM: Errno = Errno(libc::EPERM);
    /// `ENOENT`: no such file or directory.
    pub const NOENT: Errno = Errno(libc::ENOENT);
    /// `ESRCH`: no such process.
    pub const SRCH: Errno = Errno(libc::ESRCH);
    /// `EINTR`: interrupted system call.
    pub const INTR: Errno = Errno(libc::EINTR);
    /// `EIO`: input/output error.
    pub const IO: Errno = Errno(libc::EIO);
    /// `ENXIO`: no such device or address.
    pub const NXIO: Errno = Errno(libc::ENXIO);
    /// `E2BIG`: argument list too long.
    pub const TOOBIG: Errno = Errno(libc::E2BIG);
    /// `ENOEXEC`: exec format error.
    pub const NOEXEC: Errno = Errno(libc::ENOEXEC);
    /// `EBADF`: bad file descriptor.
    pub const BADF: Errno = Errno(libc::EBADF);
    /// `ECHILD`: no child processes.
    pub const CHILD: Errno = Errno(libc::ECHILD);
    /// `EAGAIN`: resource temporarily unavailable.
    pub const AGAIN: Errno = Errno(libc::EAGAIN);
    /// `ENOMEM`: cannot allocate memory.
    pub const NOMEM: Errno = Errno(libc::ENOMEM);
    /// `EACCES`: permission denied.
    pub const ACCESS: Errno = Errno(libc::EACCES);
    /// `EFAULT`: bad address.
    pub const FAULT: Errno = Errno(libc::EFAULT);
    /// `EBUSY`: device or resource busy.
    pub const BUSY: Errno = Errno(libc::EBUSY);
    /// `EEXIST`: file exists.
    pub const EXIST: Errno = Errno(libc::EEXIST);
    /// `ENODEV`: no such device.
    pub const NODEV: Errno = Errno(libc::ENODEV);
    /// `ENOTDIR`: not a directory.
    pub const NOTDIR: Errno = Errno(libc::ENOTDIR);
    /// `EISDIR`: is a directory.
    pub const ISDIR: Errno = Errno(libc::EISDIR);
    /// `EINVAL`: invalid argument.
    pub const INVAL: Errno = Errno(libc::EINVAL);
    /// `ENFILE`: too many open files in system.
    pub const NFILE: Errno = Errno(libc::ENFILE);
    /// `EMFILE`: too many open files.
    pub const MFILE: Errno = Errno(libc::EMFILE);
    /// `ENOTTY`: inappropriate ioctl for device.
    pub const NOTTY: Errno = Errno(libc::ENOTTY);
    /// `EFBIG`: file too large.
    pub const FBIG: Errno = Errno(libc::EFBIG);
    /// `ENOSPC`: no space left on device.
    pub const NOSPC: Errno = Errno(libc::ENOSPC);
    /// `ESPIPE`: illegal seek.
    pub const SPIPE: Errno = Errno(libc::ESPIPE);
    /// `EROFS`: read-only file system.
    pub const ROFS: Errno = Errno(libc::EROFS);
    /// `EPIPE`: broken pipe.
    pub const PIPE: Errno = Errno(libc::EPIPE);
    /// `ERANGE`: numerical result out of range.
    pub const RANGE: Errno = Errno(libc::ERANGE);
    /// `EDEADLK`: resource deadlock avoided.
    pub const DEADLK: Errno = Errno(libc::EDEADLK);
    /// `ENAMETOOLONG`: file name too long.
    pub const NAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    /// `ENOLCK`: no locks available.
    pub const NOLCK: Errno = Errno(libc::ENOLCK);
    /// `ENOSYS`: function not implemented.
    pub const NOSYS: Errno = Errno(libc::ENOSYS);
    /// `EOVERFLOW`: value too large for defined data type.
    pub const OVERFLOW: Errno = Errno(libc::EOVERFLOW);
    /// `ENOTSOCK`: socket operation on non-socket.
    pub const NOTSOCK: Errno = Errno(libc::ENOTSOCK);
    /// `EMSGSIZE`: message too long.
    pub const MSGSIZE: Errno = Errno(libc::EMSGSIZE);
    /// `ENOTSUP`: operation not supported.
    pub const NOTSUP: Errno = Errno(libc::ENOTSUP);
    /// `EOPNOTSUPP`: operation not supported.
    pub const OPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    /// `EAFNOSUPPORT`: address family not supported by protocol.
    pub const AFNOSUPPORT: Errno = Errno(libc::EAFNOSUPPORT);
    /// `EADDRINUSE`: address already in use.
    pub const ADDRINUSE: Errno = Errno(libc::EADDRINUSE);
    /// `EADDRNOTAVAIL`: cannot assign requested address.
    pub const ADDRNOTAVAIL: Errno = Errno(libc::EADDRNOTAVAIL);
    /// `ECONNABORTED`: software caused connection abort.
    pub const CONNABORTED: Errno = Errno(libc::ECONNABORTED);
    /// `ECONNRESET`: connection reset by peer.
    pub const CONNRESET: Errno = Errno(libc::ECONNRESET);
    /// `ENOBUFS`: no buffer space available.
    pub const NOBUFS: Errno = Errno(libc::ENOBUFS);
    /// `EISCONN`: transport endpoint is already connected.
    pub const ISCONN: Errno = Errno(libc::EISCONN);
    /// `ENOTCONN`: transport endpoint is not connected.
    pub const NOTCONN: Errno = Errno(libc::ENOTCONN);
    /// `ETIMEDOUT`: connection timed out.
    pub const TIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    /// `ECONNREFUSED`: connection refused.
    pub const CONNREFUSED: Errno = Errno(libc::ECONNREFUSED);
    /// `EALREADY`: operation already in progress.
    pub const ALREADY: Errno = Errno(libc::EALREADY);
    /// `EINPROGRESS`: operation now in progress.
    pub const INPROGRESS: Errno = Errno(libc::EINPROGRESS);
    /// `EOWNERDEAD`: owner died.
    pub const OWNERDEAD: Errno = Errno(libc::EOWNERDEAD);
    /// `ENOTRECOVERABLE`: state not recoverable.
    pub const NOTRECOVERABLE: Errno = Errno(libc::ENOTRECOVERABLE);
    /// `ECANCELED`: operation canceled.
    pub const CANCELED: Errno = Errno(libc::ECANCELED);
    /// `ENOTEMPTY`: directory not empty.
    pub const NOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    /// `ELOOP`: too many levels of symbolic links.
    pub const LOOP: Errno = Errno(libc::ELOOP);
    /// `EWOULDBLOCK`: resource temporarily unavailable.
    pub const WOULDBLOCK: Errno = Errno(libc::EWOULDBLOCK);

    /// The error for a raw `errno` value.
    #[inline]
    pub const fn from_raw_os_error(raw: i32) -> Errno {
        Errno(raw)
    }

    /// The raw `errno` value.
    #[inline]
    pub const fn raw_os_error(self) -> i32 {
        self.0
    }

    /// Converts rustix's error (what the wrapped calls return) into the crate's own.
    #[inline]
    pub(crate) fn from_rustix(e: rustix::io::Errno) -> Errno {
        Errno(e.raw_os_error())
    }

    /// The symbolic name (`"EINTR"`) and a short description, for the values this module names.
    fn describe(self) -> Option<(&'static str, &'static str)> {
        DESCRIPTIONS.iter().find(|(e, _, _)| *e == self).map(|&(_, name, text)| (name, text))
    }
}

/// Names and messages, without `std` (and without `strerror`, which is not thread-safe).
static DESCRIPTIONS: &[(Errno, &str, &str)] = &[
    (Errno::PERM, "EPERM", "operation not permitted"),
    (Errno::NOENT, "ENOENT", "no such file or directory"),
    (Errno::SRCH, "ESRCH", "no such process"),
    (Errno::INTR, "EINTR", "interrupted system call"),
    (Errno::IO, "EIO", "input/output error"),
    (Errno::NXIO, "ENXIO", "no such device or address"),
    (Errno::TOOBIG, "E2BIG", "argument list too long"),
    (Errno::NOEXEC, "ENOEXEC", "exec format error"),
    (Errno::BADF, "EBADF", "bad file descriptor"),
    (Errno::CHILD, "ECHILD", "no child processes"),
    (Errno::AGAIN, "EAGAIN", "resource temporarily unavailable"),
    (Errno::NOMEM, "ENOMEM", "cannot allocate memory"),
    (Errno::ACCESS, "EACCES", "permission denied"),
    (Errno::FAULT, "EFAULT", "bad address"),
    (Errno::BUSY, "EBUSY", "device or resource busy"),
    (Errno::EXIST, "EEXIST", "file exists"),
    (Errno::NODEV, "ENODEV", "no such device"),
    (Errno::NOTDIR, "ENOTDIR", "not a directory"),
    (Errno::ISDIR, "EISDIR", "is a directory"),
    (Errno::INVAL, "EINVAL", "invalid argument"),
    (Errno::NFILE, "ENFILE", "too many open files in system"),
    (Errno::MFILE, "EMFILE", "too many open files"),
    (Errno::NOTTY, "ENOTTY", "inappropriate ioctl for device"),
    (Errno::FBIG, "EFBIG", "file too large"),
    (Errno::NOSPC, "ENOSPC", "no space left on device"),
    (Errno::SPIPE, "ESPIPE", "illegal seek"),
    (Errno::ROFS, "EROFS", "read-only file system"),
    (Errno::PIPE, "EPIPE", "broken pipe"),
    (Errno::RANGE, "ERANGE", "numerical result out of range"),
    (Errno::DEADLK, "EDEADLK", "resource deadlock avoided"),
    (Errno::NAMETOOLONG, "ENAMETOOLONG", "file name too long"),
    (Errno::NOLCK, "ENOLCK", "no locks available"),
    (Errno::NOSYS, "ENOSYS", "function not implemented"),
    (Errno::OVERFLOW, "EOVERFLOW", "value too large for defined data type"),
    (Errno::NOTSOCK, "ENOTSOCK", "socket operation on non-socket"),
    (Errno::MSGSIZE, "EMSGSIZE", "message too long"),
    (Errno::NOTSUP, "ENOTSUP", "operation not supported"),
    (Errno::AFNOSUPPORT, "EAFNOSUPPORT", "address family not supported by protocol"),
    (Errno::ADDRINUSE, "EADDRINUSE", "address already in use"),
    (Errno::ADDRNOTAVAIL, "EADDRNOTAVAIL", "cannot assign requested address"),
    (Errno::CONNABORTED, "ECONNABORTED", "software caused connection abort"),
    (Errno::CONNRESET, "ECONNRESET", "connection reset by peer"),
    (Errno::NOBUFS, "ENOBUFS", "no buffer space available"),
    (Errno::ISCONN, "EISCONN", "transport endpoint is already connected"),
    (Errno::NOTCONN, "ENOTCONN", "transport endpoint is not connected"),
    (Errno::TIMEDOUT, "ETIMEDOUT", "connection timed out"),
    (Errno::CONNREFUSED, "ECONNREFUSED", "connection refused"),
    (Errno::ALREADY, "EALREADY", "operation already in progress"),
    (Errno::INPROGRESS, "EINPROGRESS", "operation now in progress"),
    (Errno::OWNERDEAD, "EOWNERDEAD", "owner died"),
    (Errno::NOTRECOVERABLE, "ENOTRECOVERABLE", "state not recoverable"),
    (Errno::CANCELED, "ECANCELED", "operation canceled"),
    (Errno::NOTEMPTY, "ENOTEMPTY", "directory not empty"),
    (Errno::LOOP, "ELOOP", "too many levels of symbolic links"),
];

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.describe() {
            Some((name, _)) => write!(f, "Errno({name})"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.describe() {
            Some((name, text)) => write!(f, "{name}: {text}"),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(feature = "std")]
impl From<Errno> for std::io::Error {
    #[inline]
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// Calls that fail with rustix's error type, seen as failing with [`Errno`].
pub(crate) trait IntoErrno<T> {
    /// The same result, with the error converted.
    fn errno(self) -> Result<T>;
}

impl<T> IntoErrno<T> for core::result::Result<T, rustix::io::Errno> {
    #[inline]
    fn errno(self) -> Result<T> {
        self.map_err(Errno::from_rustix)
    }
}

/// The crate's result type: a value or the [`Errno`] the call failed with.
pub type Result<T> = core::result::Result<T, Errno>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_libc_and_print_their_names() {
        assert_eq!(Errno::INTR.raw_os_error(), libc::EINTR);
        assert_eq!(Errno::WOULDBLOCK, Errno::AGAIN);
        assert_eq!(Errno::from_rustix(rustix::io::Errno::TIMEDOUT), Errno::TIMEDOUT);
        extern crate alloc;
        use alloc::format;
        assert_eq!(format!("{:?}", Errno::PIPE), "Errno(EPIPE)");
        assert_eq!(format!("{}", Errno::PIPE), "EPIPE: broken pipe");
        assert_eq!(format!("{}", Errno::from_raw_os_error(4095)), "errno 4095");
        assert_eq!(format!("{:?}", Errno::from_raw_os_error(4095)), "Errno(4095)");
    }
}
