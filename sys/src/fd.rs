//! File-descriptor ownership: [`OwnedFd`], [`BorrowedFd`], [`RawFd`] and the [`AsFd`],
//! [`AsRawFd`], [`FromRawFd`] and [`IntoRawFd`] traits.
//!
//! With the `std` feature these are `std::os::fd`'s own items, so descriptors move between this
//! crate and std (`File`, `UnixStream`, ...) without conversion. Without it, they are this
//! crate's equivalents with the same names, methods and guarantees (an `OwnedFd` closes its
//! descriptor on drop; a `BorrowedFd<'a>` cannot outlive the descriptor it borrows). Either way
//! no dependency's types appear in this crate's API, so a major release of one does not force a
//! major release of this crate.

#[cfg(feature = "std")]
pub use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

#[cfg(not(feature = "std"))]
pub use own::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// The descriptor as rustix's borrowed type, for calling rustix (whose fd types are its own
/// unless its `std` feature is on somewhere in the build).
#[inline]
#[allow(unsafe_code)]
pub(crate) fn rx(fd: BorrowedFd<'_>) -> rustix::fd::BorrowedFd<'_> {
    // SAFETY: `fd` is open for the lifetime `'_`, which the returned borrow carries.
    unsafe { rustix::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) }
}

/// A descriptor rustix returned, as this crate's owned type.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn from_rx(fd: rustix::fd::OwnedFd) -> OwnedFd {
    // SAFETY: `into_raw_fd` hands over sole ownership of an open descriptor.
    unsafe { OwnedFd::from_raw_fd(rustix::fd::IntoRawFd::into_raw_fd(fd)) }
}

/// Ownership of a pair of descriptors rustix returned (a pipe's or a socketpair's ends).
#[inline]
pub(crate) fn pair_from_rx(
    (a, b): (rustix::fd::OwnedFd, rustix::fd::OwnedFd),
) -> (OwnedFd, OwnedFd) {
    (from_rx(a), from_rx(b))
}

#[cfg(not(feature = "std"))]
#[allow(unsafe_code)]
mod own {
    use core::fmt;
    use core::marker::PhantomData;

    /// A raw file descriptor: the C `int` (as `std::os::fd::RawFd`).
    pub type RawFd = core::ffi::c_int;

    /// Borrowing the raw descriptor of an object (as `std::os::fd::AsRawFd`).
    pub trait AsRawFd {
        /// The raw descriptor; it stays owned by `self`.
        fn as_raw_fd(&self) -> RawFd;
    }

    /// Taking ownership of a raw descriptor (as `std::os::fd::FromRawFd`).
    pub trait FromRawFd {
        /// An owner of `fd`.
        ///
        /// # Safety
        /// `fd` must be open and owned by nobody else: the result closes it.
        unsafe fn from_raw_fd(fd: RawFd) -> Self;
    }

    /// Giving up ownership of a descriptor (as `std::os::fd::IntoRawFd`).
    pub trait IntoRawFd {
        /// The raw descriptor, which the caller now owns and must close.
        fn into_raw_fd(self) -> RawFd;
    }

    /// Borrowing a descriptor (as `std::os::fd::AsFd`).
    pub trait AsFd {
        /// A borrow of the descriptor, valid while `self` is.
        fn as_fd(&self) -> BorrowedFd<'_>;
    }

    /// An open file descriptor, closed on drop (as `std::os::fd::OwnedFd`).
    #[repr(transparent)]
    pub struct OwnedFd {
        fd: RawFd,
    }

    /// A borrowed open file descriptor (as `std::os::fd::BorrowedFd`).
    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub struct BorrowedFd<'fd> {
        fd: RawFd,
        _owner: PhantomData<&'fd OwnedFd>,
    }

    impl BorrowedFd<'_> {
        /// A borrow of the raw descriptor `fd`.
        ///
        /// # Safety
        /// `fd` must stay open for the whole lifetime of the result.
        #[inline]
        pub const unsafe fn borrow_raw(fd: RawFd) -> Self {
            BorrowedFd { fd, _owner: PhantomData }
        }
    }

    impl Drop for OwnedFd {
        #[inline]
        fn drop(&mut self) {
            // SAFETY: `self` owns the open descriptor; a failed close (EINTR, EIO) still
            // releases it on Linux, and there is nobody to report the failure to.
            unsafe {
                libc::close(self.fd);
            }
        }
    }

    impl AsRawFd for OwnedFd {
        #[inline]
        fn as_raw_fd(&self) -> RawFd {
            self.fd
        }
    }

    impl AsRawFd for BorrowedFd<'_> {
        #[inline]
        fn as_raw_fd(&self) -> RawFd {
            self.fd
        }
    }

    impl IntoRawFd for OwnedFd {
        #[inline]
        fn into_raw_fd(self) -> RawFd {
            let fd = self.fd;
            core::mem::forget(self);
            fd
        }
    }

    impl FromRawFd for OwnedFd {
        #[inline]
        unsafe fn from_raw_fd(fd: RawFd) -> Self {
            OwnedFd { fd }
        }
    }

    impl AsFd for OwnedFd {
        #[inline]
        fn as_fd(&self) -> BorrowedFd<'_> {
            // SAFETY: the descriptor is open while `self` is borrowed.
            unsafe { BorrowedFd::borrow_raw(self.fd) }
        }
    }

    impl AsFd for BorrowedFd<'_> {
        #[inline]
        fn as_fd(&self) -> BorrowedFd<'_> {
            *self
        }
    }

    impl<T: AsFd + ?Sized> AsFd for &T {
        #[inline]
        fn as_fd(&self) -> BorrowedFd<'_> {
            T::as_fd(self)
        }
    }

    impl<T: AsFd + ?Sized> AsFd for &mut T {
        #[inline]
        fn as_fd(&self) -> BorrowedFd<'_> {
            T::as_fd(self)
        }
    }

    impl fmt::Debug for OwnedFd {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("OwnedFd").field("fd", &self.fd).finish()
        }
    }

    impl fmt::Debug for BorrowedFd<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("BorrowedFd").field("fd", &self.fd).finish()
        }
    }
}
