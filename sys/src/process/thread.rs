//! The calling thread, and how many threads the calling process has.
//!
//! No allocation, no locks: [`thread_count`] parses `/proc/self/status` through a buffer on the
//! stack, with a close-on-exec descriptor that it closes before returning.

use crate::Pid;
use crate::cvt::retry_eintr;
use crate::errno::IntoErrno;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};

/// `gettid()` — returns the calling thread's id.
///
/// Equal to [`getpid`](super::pid::getpid) in the main thread (and so in a freshly forked
/// child). Linux-specific.
///
/// Async-signal-safe.
///
/// # References
/// - [Linux]
///
/// [Linux]: https://man7.org/linux/man-pages/man2/gettid.2.html
#[inline]
#[must_use]
pub fn gettid() -> Pid {
    Pid::from_rustix(rustix::thread::gettid())
}

/// `open("/proc/self/status")` + `read` — returns the number of threads in the calling process,
/// or `None` if it cannot be read (no `/proc`, descriptor limit reached).
///
/// Call it before [`fork`](super::fork::fork): anything above 1 means the child will be
/// restricted to async-signal-safe calls. It is a snapshot: another thread may start or end
/// right after.
///
/// Parses the `Threads:` line through a buffer on the stack; the close-on-exec descriptor it
/// opens is closed before it returns. Async-signal-safe (`open`, `read` and `close` only).
///
/// # References
/// - [Linux `proc_pid_status(5)`]
///
/// [Linux `proc_pid_status(5)`]: https://man7.org/linux/man-pages/man5/proc_pid_status.5.html
#[must_use]
pub fn thread_count() -> Option<usize> {
    let fd: OwnedFd = retry_eintr(|| {
        rustix::fs::open(
            c"/proc/self/status",
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .errno()
    })
    .ok()?;
    let mut scanner = ThreadsScanner::new();
    let mut buf = [0u8; 256];
    loop {
        let n = retry_eintr(|| rustix::io::read(&fd, &mut buf[..]).errno()).ok()?;
        if n == 0 {
            return scanner.finish();
        }
        if let Some(count) = scanner.feed(&buf[..n]) {
            return Some(count);
        }
    }
}

/// Finds the `Threads:` line in `/proc/<pid>/status` text fed in arbitrary chunks.
///
/// Keeps at most [`ThreadsScanner::LINE`] bytes of the current line; longer lines (such as a
/// long `Groups:` list) are marked truncated and skipped.
struct ThreadsScanner {
    line: [u8; Self::LINE],
    len: usize,
    truncated: bool,
}

impl ThreadsScanner {
    /// Longest line kept: `Threads:` plus a tab and the 20 digits of `u64::MAX` fit.
    const LINE: usize = 40;

    const fn new() -> Self {
        ThreadsScanner { line: [0; Self::LINE], len: 0, truncated: false }
    }

    /// Feeds the next chunk; returns the count once the `Threads:` line is complete.
    fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        for &b in chunk {
            if b == b'\n' {
                if let Some(count) = self.end_line() {
                    return Some(count);
                }
            } else if self.len < Self::LINE {
                self.line[self.len] = b;
                self.len += 1;
            } else {
                self.truncated = true;
            }
        }
        None
    }

    /// At end of input: the last line may lack its newline.
    fn finish(&mut self) -> Option<usize> {
        self.end_line()
    }

    fn end_line(&mut self) -> Option<usize> {
        let found = if self.truncated { None } else { parse_threads_line(&self.line[..self.len]) };
        self.len = 0;
        self.truncated = false;
        found
    }
}

/// `"Threads:\t12"` -> `Some(12)`; any other line -> `None`.
fn parse_threads_line(line: &[u8]) -> Option<usize> {
    let value = line.strip_prefix(b"Threads:")?.trim_ascii();
    if value.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &d in value {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &[u8] = b"Name:\tcargo\nUmask:\t0022\nState:\tS (sleeping)\n\
        Groups:\t4 24 27 30 46 100 118 1000 1001 1002 1003 1004 1005 1006 1007 1008 1009 1010\n\
        VmRSS:\t  1234 kB\nThreads:\t17\nSigQ:\t0/63382\n";

    fn scan_in_chunks(text: &[u8], chunk: usize) -> Option<usize> {
        let mut s = ThreadsScanner::new();
        for part in text.chunks(chunk) {
            if let Some(n) = s.feed(part) {
                return Some(n);
            }
        }
        s.finish()
    }

    #[test]
    fn threads_line_is_found_whatever_the_chunking() {
        for chunk in 1..=STATUS.len() {
            assert_eq!(scan_in_chunks(STATUS, chunk), Some(17), "chunk size {chunk}");
        }
    }

    #[test]
    fn last_line_without_newline_counts() {
        assert_eq!(scan_in_chunks(b"Name:\tx\nThreads:\t3", 4), Some(3));
    }

    #[test]
    fn bad_or_missing_values_give_none() {
        assert_eq!(scan_in_chunks(b"Name:\tx\n", 3), None);
        assert_eq!(scan_in_chunks(b"Threads:\t\n", 3), None);
        assert_eq!(scan_in_chunks(b"Threads:\t1x\n", 3), None);
        assert_eq!(scan_in_chunks(b"Threads:\t99999999999999999999999999\n", 3), None);
        // A long line that merely starts like the key is skipped, not misparsed.
        assert_eq!(scan_in_chunks(b"Threads:\t1                                     9\n", 5), None);
        // "Threads" inside another line does not count.
        assert_eq!(scan_in_chunks(b"Name:\tThreads:\t4\n", 5), None);
    }
}
