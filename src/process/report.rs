//! The child's report: a file the child writes its return value (or panic message, or setup
//! error) to, and the parent reads once the child has ended; and waiting for the child.
#![allow(unsafe_code)] // `set_len` after `pread` fills a buffer.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use multiproc_sys::Errno;
use multiproc_sys::io::fd::{anonymous_file, file_size, pread_uninit, pwrite, truncate};
use multiproc_sys::process::pidfd::Pidfd;
use multiproc_sys::process::wait::{ExitStatus, wait_deadline, waitpid};
use multiproc_sys::time::Deadline;

use super::{JoinError, Running};
use crate::codec::{Decode, Message};

/// Waits until the child ends or the deadline passes, and reaps it. Returns `Ok(None)` on
/// timeout; `Ok(Some(None))` if the child was reaped elsewhere.
///
/// Only the child's exit is waited for (the pidfd, or a blocking `waitpid` without a
/// deadline): the child writes its report to a file and never blocks on it, so the parent
/// sleeps once, like a plain `waitpid`. (Waking the parent for the report and then again for
/// the exit costs a context switch and, typically, a CPU migration per child.)
pub(super) fn wait_child<R>(
    run: &Running<R>,
    pidfd: Option<&Pidfd>,
    deadline: Deadline,
) -> Result<Option<Option<ExitStatus>>, Errno> {
    if let Some(l) = &run.launched {
        return l.wait(deadline);
    }
    let status = if deadline.is_forever() {
        waitpid(run.pid, true)
    } else {
        wait_deadline(run.pid, pidfd, deadline)
    };
    match status {
        Ok(Some(status)) => Ok(Some(Some(status))),
        Ok(None) => Ok(None),
        Err(Errno::CHILD) => Ok(Some(None)),
        Err(e) => Err(e),
    }
}

/// Creates the file a child writes its report (return value, panic message or setup error)
/// to: an anonymous, close-on-exec memfd, or an unnamed `O_TMPFILE` where `memfd_create` is
/// not available. Unlike a pipe, it never makes the child block or wake the parent, whatever
/// the size of the value; it vanishes with its last descriptor.
pub(super) fn report_file() -> Result<OwnedFd, Errno> {
    anonymous_file(c"multiproc-result")
}

/// Reads the report of a child that has ended (an unreadable file reads as empty: "no
/// result"). A large report's pages are released at once, even if a grandchild still holds a
/// copy of the descriptor.
pub(super) fn read_report(fd: BorrowedFd<'_>, mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    loop {
        if buf.len() == buf.capacity() {
            let size = file_size(fd).map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
            buf.reserve(size.saturating_sub(buf.len()).max(buf.len()));
        }
        let (len, want) = (buf.len(), buf.capacity() - buf.len());
        match pread_uninit(fd, buf.spare_capacity_mut(), len as u64) {
            Ok(n) => {
                // SAFETY: `pread` initialised the first `n` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                // A short read of a regular file is its end.
                if n < want {
                    break;
                }
            }
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    if buf.len() > 64 * 1024 {
        let _ = truncate(fd, 0);
    }
    buf
}

pub(super) fn decode_outcome<R: Message>(
    status: Option<ExitStatus>,
    buf: &[u8],
) -> Result<R, JoinError> {
    let Some(status) = status else { return Err(JoinError::StatusUnknown) };
    if let ExitStatus::Signaled(sig) = status {
        return Err(JoinError::Signaled(sig));
    }
    let code = status.exitcode();
    match buf.split_first() {
        Some((&TAG_VALUE, payload)) if code == 0 => {
            crate::codec::from_bytes::<R>(payload).map_err(JoinError::Decode)
        }
        // The message; a launched child's report has the pool's panic item after it (the
        // location and backtrace, not recorded there), which is not read.
        Some((&TAG_PANIC, payload)) => Err(JoinError::Panicked(
            String::decode(&mut crate::codec::Decoder::new(payload))
                .unwrap_or_else(|e| format!("<{e}>")),
        )),
        Some((&TAG_SETUP, payload)) if payload.len() == 4 => {
            let errno = i32::from_le_bytes(payload.try_into().unwrap_or([0; 4]));
            Err(JoinError::Setup(io::Error::from_raw_os_error(errno)))
        }
        Some((&TAG_LOST, payload)) if payload.len() == 4 => {
            let errno = i32::from_le_bytes(payload.try_into().unwrap_or([0; 4]));
            Err(JoinError::Os(io::Error::from_raw_os_error(errno)))
        }
        _ if code == 0 => Err(JoinError::NoResult),
        _ => Err(JoinError::Exited(code)),
    }
}

/// Capacity of the report buffer allocated before the fork: enough for small values.
pub(super) const REPORT_BUF: usize = 256;

/// Tags of the child's report: the first byte of the report file.
pub(super) const TAG_VALUE: u8 = 0;
pub(super) const TAG_PANIC: u8 = 1;
pub(super) const TAG_SETUP: u8 = 2;
/// Writing the report failed (followed by the errno); the value is lost.
pub(super) const TAG_LOST: u8 = 3;

/// Writes the whole report at the start of the report file.
pub(super) fn write_report(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < bytes.len() {
        match pwrite(fd, &bytes[done..], done as u64) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Replaces the report with `tag` and an errno (allocation-free).
pub(super) fn write_error_report(fd: BorrowedFd<'_>, tag: u8, e: Errno) {
    let mut msg = [tag, 0, 0, 0, 0];
    msg[1..].copy_from_slice(&e.raw_os_error().to_le_bytes());
    let _ = truncate(fd, 0);
    let _ = write_report(fd, &msg);
}
