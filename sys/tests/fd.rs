//! Descriptor ownership: `multiproc_sys::fd`'s types close on drop, convert to and from raw
//! descriptors, and are std's own with the `std` feature.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use multiproc_sys::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use multiproc_sys::io::{pipe::pipe, stream};

/// Held by every test here that opens descriptors: a number closed by one test must not be
/// reused by another's `pipe` before it is checked.
static FDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn is_open(fd: RawFd) -> bool {
    (unsafe { libc::fcntl(fd, libc::F_GETFD) }) >= 0
}

#[test]
fn an_owned_fd_closes_on_drop_and_not_after_into_raw_fd() {
    let _fds = FDS.lock().unwrap_or_else(|e| e.into_inner());
    let (r, w) = pipe().unwrap();
    let (rr, wr) = (r.as_raw_fd(), w.as_raw_fd());
    assert!(is_open(rr) && is_open(wr));
    drop(r);
    assert!(!is_open(rr), "dropping the OwnedFd closed it");

    let raw = w.into_raw_fd();
    assert_eq!(raw, wr);
    assert!(is_open(raw), "into_raw_fd handed ownership over without closing");
    let w = unsafe { OwnedFd::from_raw_fd(raw) };
    drop(w);
    assert!(!is_open(raw));
}

#[test]
fn a_borrowed_fd_reaches_the_same_descriptor() {
    let _fds = FDS.lock().unwrap_or_else(|e| e.into_inner());
    let (r, w) = pipe().unwrap();
    let borrowed: BorrowedFd<'_> = w.as_fd();
    assert_eq!(borrowed.as_raw_fd(), w.as_raw_fd());
    assert_eq!(unsafe { BorrowedFd::borrow_raw(w.as_raw_fd()) }.as_raw_fd(), w.as_raw_fd());
    // `AsFd` through references, as generic callers use it.
    fn send<F: AsFd>(fd: &F) {
        stream::write_all(fd.as_fd(), b"hi").unwrap();
    }
    send(&&w);
    let mut buf = [0u8; 2];
    assert_eq!(stream::read_full(r.as_fd(), &mut buf).unwrap(), 2);
    assert_eq!(&buf, b"hi");
}

/// With `std`, the types are std's: a pipe end becomes a `File` without a raw-fd round trip.
#[cfg(feature = "std")]
#[test]
fn with_std_the_types_are_stds_own() {
    use std::io::{Read, Write};
    let _fds = FDS.lock().unwrap_or_else(|e| e.into_inner());
    let (r, w) = pipe().unwrap();
    let mut w = std::fs::File::from(w);
    let mut r = std::fs::File::from(r);
    w.write_all(b"std").unwrap();
    drop(w);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "std");
}
