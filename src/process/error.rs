//! The errors of `Process` operations.

use std::fmt;
use std::io;

use multiproc_sys::Errno;

use crate::codec::DecodeError;

/// Why [`Process::start`](super::Process::start) failed.
///
/// Python raises `AssertionError` for a misused `start` (and `OSError` when `fork` fails); here
/// `start` returns a `StartError`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Process, StartError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = Process::new(|| 7u8);
/// p.start()?;
/// // Python: AssertionError('cannot start a process twice')
/// match p.start() {
///     Err(StartError::AlreadyStarted) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(p.join_timeout(Duration::from_secs(10))?, 7);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// `start` was already called on this object (Python: "cannot start a process twice").
    AlreadyStarted,
    /// A daemonic process may not create children (Python's rule, kept for fidelity).
    DaemonicParent,
    /// The handle was created in another process; only its creator may start it.
    NotCreator,
    /// Other threads exist and the builder asked for a single-threaded parent
    /// ([`ProcessBuilder::require_single_threaded`](super::ProcessBuilder::require_single_threaded)).
    MultiThreaded {
        /// How many threads the process had.
        threads: usize,
    },
    /// `fork`, `memfd_create` or another system call failed.
    Os(io::Error),
    /// The `forkserver` or `spawn` start method could not start the child: the fork server is
    /// gone, the program did not call [`init`](crate::init), or a different executable refused
    /// to run it (the message says which).
    Launch(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::AlreadyStarted => f.write_str("cannot start a process twice"),
            StartError::DaemonicParent => {
                f.write_str("daemonic processes are not allowed to have children")
            }
            StartError::NotCreator => f.write_str("a process can only be started by its creator"),
            StartError::MultiThreaded { threads } => write!(
                f,
                "refusing to fork: the process has {threads} threads and fork copies only one \
                 (locks held by the others would stay locked in the child)"
            ),
            StartError::Os(e) => write!(f, "cannot start process: {e}"),
            StartError::Launch(e) => write!(f, "cannot launch process: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Os(e) | StartError::Launch(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Errno> for StartError {
    fn from(e: Errno) -> Self {
        StartError::Os(e.into())
    }
}

/// Why [`Process::join`](super::Process::join) did not produce the closure's return value.
///
/// Python's `join` returns `None` whatever happened (the caller then checks `exitcode`, which
/// is `None` after a timeout); here `join` returns the closure's value, or a `JoinError` that
/// says why there is none.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{JoinError, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = Process::new(|| std::thread::sleep(Duration::from_secs(10)));
/// assert!(matches!(p.join(), Err(JoinError::NotStarted)));
/// p.start()?;
/// // Python: p.join(0.01) returns with the child still running.
/// assert!(matches!(p.join_timeout(Duration::from_millis(10)), Err(JoinError::Timeout)));
/// p.kill()?;
/// match p.join_timeout(Duration::from_secs(10)) {
///     Err(JoinError::Signaled(signal)) => assert_eq!(signal, 9), // SIGKILL
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(p.exitcode(), Some(-9)); // as in Python
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The timeout passed and the child is still running; `join` may be called again.
    Timeout,
    /// `join` was called before `start` (Python: "can only join a started process").
    NotStarted,
    /// The handle belongs to another process (Python: "can only join a child process").
    NotCreator,
    /// An earlier `join` already returned the child's value.
    ResultTaken,
    /// [`close`](super::Process::close) was called (Python: "process object is closed").
    Closed,
    /// The closure panicked (exit code 1); this is the panic message.
    Panicked(String),
    /// The child exited with this non-zero code without returning a value (for example
    /// through `std::process::exit`).
    Exited(i32),
    /// The child exited with code 0 but sent no value (it called `std::process::exit(0)`).
    NoResult,
    /// The child was killed by this signal (its exit code is `-signal`).
    Signaled(i32),
    /// The child failed before running the closure: setting its CPU affinity or its
    /// parent-death signal failed with this error.
    Setup(io::Error),
    /// The child's value arrived but could not be decoded.
    Decode(DecodeError),
    /// The child was reaped by someone else (`waitpid(-1)`, `SIGCHLD` ignored): it has exited,
    /// with an unknown status.
    StatusUnknown,
    /// A system call failed while waiting.
    Os(io::Error),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Timeout => f.write_str("timed out waiting for the process"),
            JoinError::NotStarted => f.write_str("can only join a started process"),
            JoinError::NotCreator => f.write_str("can only join a child process"),
            JoinError::ResultTaken => f.write_str("the process's result was already taken"),
            JoinError::Closed => f.write_str("process object is closed"),
            JoinError::Panicked(msg) => write!(f, "the process panicked: {msg}"),
            JoinError::Exited(code) => write!(f, "the process exited with code {code}"),
            JoinError::NoResult => f.write_str("the process exited with code 0 but sent no result"),
            JoinError::Signaled(sig) => write!(f, "the process was killed by signal {sig}"),
            JoinError::Setup(e) => write!(f, "the process failed to set up: {e}"),
            JoinError::Decode(e) => write!(f, "the process's result is corrupt: {e}"),
            JoinError::StatusUnknown => {
                f.write_str("the process was reaped elsewhere; its exit status is unknown")
            }
            JoinError::Os(e) => write!(f, "waiting for the process failed: {e}"),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JoinError::Setup(e) | JoinError::Os(e) => Some(e),
            JoinError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Errno> for JoinError {
    fn from(e: Errno) -> Self {
        JoinError::Os(e.into())
    }
}

/// Misuse of a process handle (Python raises `ValueError`/`AssertionError` for these).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Process, ProcessStateError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = Process::new(|| std::thread::sleep(Duration::from_secs(10)));
/// assert_eq!(p.terminate(), Err(ProcessStateError::NotStarted));
/// p.start()?;
/// // Python: ValueError('Cannot close a process while it is still running. ...')
/// assert_eq!(p.close(), Err(ProcessStateError::StillRunning));
/// p.kill()?;
/// p.join_timeout(Duration::from_secs(10)).unwrap_err(); // killed: no value
/// p.close()?;
/// // Python: ValueError('process object is closed')
/// assert_eq!(p.sentinel().err(), Some(ProcessStateError::Closed));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessStateError {
    /// The process was not started.
    NotStarted,
    /// The handle belongs to another process.
    NotCreator,
    /// The process is still running (Python: "Cannot close a process while it is still running").
    StillRunning,
    /// The handle was closed.
    Closed,
}

impl fmt::Display for ProcessStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProcessStateError::NotStarted => "process not started",
            ProcessStateError::NotCreator => "can only use a process handle in its creator",
            ProcessStateError::StillRunning => {
                "cannot close a process while it is still running; join() or terminate() it first"
            }
            ProcessStateError::Closed => "process object is closed",
        })
    }
}

impl std::error::Error for ProcessStateError {}
