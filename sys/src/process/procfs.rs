//! What `/proc` tells about a process that no system call does.

use core::ffi::CStr;

use crate::fd::AsFd;

use crate::errno::Errno;
use crate::process::pid::Pid;

/// Whether process `pid` is running: it exists and is not a zombie (a zombie is dead, only not
/// yet reaped by its parent, and `kill(pid, 0)` still succeeds on it).
///
/// Reads `/proc/<pid>/stat` into a stack buffer; falls back to `kill(pid, 0)` (which counts a
/// zombie as running) when `/proc` cannot be read. Allocation-free and async-signal-safe.
#[must_use]
pub fn is_running(pid: Pid) -> bool {
    // "/proc/" + at most 10 digits + "/stat" + NUL.
    let mut path = [0u8; 32];
    let mut n = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            path[n] = b;
            n += 1;
        }
    };
    push(b"/proc/");
    let mut digits = [0u8; 10];
    let mut d = 0;
    // A `Pid` is positive.
    let mut v = pid.as_raw().unsigned_abs();
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    digits[..d].reverse();
    push(&digits[..d]);
    push(b"/stat\0");
    let Ok(path) = CStr::from_bytes_with_nul(&path[..n]) else {
        return exists(pid);
    };
    match crate::io::fd::open_read_only(path) {
        Ok(fd) => {
            // "pid (comm) S ...": the state follows the last ')' (comm may contain one).
            let mut buf = [0u8; 256];
            match crate::io::fd::read_once(fd.as_fd(), &mut buf[..]) {
                Ok(len) => {
                    let stat = &buf[..len];
                    match stat.iter().rposition(|&c| c == b')') {
                        Some(close) => !matches!(stat.get(close + 2), Some(b'Z' | b'X' | b'x')),
                        None => exists(pid),
                    }
                }
                Err(Errno::SRCH) => false,
                Err(_) => exists(pid),
            }
        }
        Err(Errno::NOENT | Errno::SRCH) => false,
        Err(_) => exists(pid),
    }
}

/// `kill(pid, 0)`: only `ESRCH` means gone (a zombie still counts).
fn exists(pid: Pid) -> bool {
    !matches!(crate::process::signal::probe(pid), Err(Errno::SRCH))
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_an_unused_pid_does_not() {
        assert!(is_running(crate::process::pid::getpid()));
        // Above the largest pid Linux hands out (4 194 304).
        assert!(!is_running(Pid::from_raw(i32::MAX).unwrap()));
    }
}
