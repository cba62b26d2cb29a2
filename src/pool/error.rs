//! The error type of [`Pool`](super::Pool) and
//! [`ProcessPoolExecutor`](super::ProcessPoolExecutor).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use multiproc_sys::Pid;
use multiproc_sys::process::signal::signal_name;

/// What can go wrong with a pool, a task, or a wait for a task.
///
/// Errors that belong to one task ([`Panicked`](Self::Panicked),
/// [`WorkerLost`](Self::WorkerLost), [`TaskTimeout`](Self::TaskTimeout),
/// [`Encode`](Self::Encode), [`EncodeArgument`](Self::EncodeArgument),
/// [`Decode`](Self::Decode), [`Cancelled`](Self::Cancelled)) fail that task only; the pool goes
/// on. [`InitializerFailed`](Self::InitializerFailed) and
/// [`BrokenPool`](Self::BrokenPool) mean the pool is unusable: every pending task and every later
/// submission fails with them. The error is `Clone` so that a result can be fetched more than
/// once, as in Python.
///
/// Python raises a different exception for each of these: the task's own exception re-raised
/// from the worker, `multiprocessing.TimeoutError`, `ValueError('Pool not running')`,
/// `concurrent.futures.CancelledError`, `BrokenProcessPool`, ...; here each is a variant of
/// `PoolError`, and each variant's docs name the Python exception it stands for.
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, PoolError};
///
/// # fn main() -> Result<(), PoolError> {
/// let pool = Pool::new(1)?;
/// let divide = |x: u32| -> u32 {
///     if x == 0 {
///         panic!("division by zero");
///     }
///     100 / x
/// };
/// // Python re-raises the worker's ZeroDivisionError; here the task fails with its panic.
/// match pool.apply(divide, 0) {
///     Err(PoolError::Panicked(p)) => {
///         assert_eq!(p.message(), "division by zero");
///         assert!(p.location().is_some_and(|at| at.contains(".rs:")));
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(pool.apply(divide, 4)?, 25); // the worker survived
///
/// pool.close()?;
/// match pool.apply(divide, 4) {
///     Err(e @ PoolError::NotRunning) => assert_eq!(e.to_string(), "Pool not running"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PoolError {
    /// The task panicked in the worker: its message, where it panicked, and the worker's
    /// backtrace if one was captured (see [`RemotePanic`]; Python re-raises the remote exception
    /// with its `RemoteTraceback`). The worker survives and goes on with other tasks.
    Panicked(RemotePanic),
    /// The worker running the task died before sending its result: killed by a signal (the
    /// OOM killer's `SIGKILL`, an `abort`, a `kill` from outside) or exited (a `process::exit`
    /// in the task). Only the task it was running fails; the worker is replaced.
    ///
    /// Python's `Pool` hangs forever here (gh-66587); its executor breaks (see
    /// [`BrokenPool`](Self::BrokenPool), which an executor built with
    /// [`break_on_worker_death`](super::ExecutorBuilder::break_on_worker_death) reports instead).
    WorkerLost {
        /// The worker's pid.
        pid: Pid,
        /// Its exit code, Python-style: `-N` for death by signal `N`, the code for an exit;
        /// `None` if unknown.
        exitcode: Option<i32>,
    },
    /// The task ran longer than the pool's per-task timeout
    /// ([`PoolBuilder::task_timeout`](super::PoolBuilder::task_timeout)); its worker was killed
    /// and replaced.
    TaskTimeout {
        /// The worker that was killed.
        pid: Pid,
        /// The timeout it exceeded.
        timeout: Duration,
    },
    /// The task's return value could not be encoded in the worker (its `Encode`
    /// implementation panicked; Python's `MaybeEncodingError`): the panic message. The task
    /// fails, the worker survives.
    Encode(String),
    /// An argument could not be encoded in the parent (its `Encode` implementation panicked;
    /// Python raises the pickling error): the panic message. Nothing of the call is sent. The
    /// calls that encode their input at once ([`Pool::apply_async`](super::Pool::apply_async),
    /// [`Pool::map`](super::Pool::map), [`ProcessPoolExecutor::submit`](super::ProcessPoolExecutor::submit),
    /// ...) return it; the lazy iterators ([`Pool::imap`](super::Pool::imap),
    /// [`ProcessPoolExecutor::map`](super::ProcessPoolExecutor::map)) yield it in that item's
    /// place and go on. The pool goes on, as a [`Queue::put`](crate::Queue::put) of such an
    /// item returns [`PutError::Encode`](crate::PutError::Encode) and leaves the queue as it
    /// was.
    EncodeArgument(String),
    /// An argument could not be decoded in the worker, or a result in the parent: the `Encode`
    /// and `Decode` implementations of the type do not agree.
    Decode(String),
    /// A worker's initializer failed (or the worker could not be pinned to its CPU, or died
    /// before it was ready): the pool is broken. Pending and later tasks fail with this error,
    /// and no worker is restarted (Python restarts it forever, gh-87472).
    InitializerFailed(String),
    /// The pool is unusable: its fork server died, or (for an executor built with
    /// [`break_on_worker_death`](super::ExecutorBuilder::break_on_worker_death)) a worker died
    /// abruptly — Python's `BrokenProcessPool`.
    BrokenPool(String),
    /// The pool was terminated (by [`Pool::terminate`](super::Pool::terminate) or by dropping
    /// it) before the task finished.
    Terminated,
    /// The pool no longer accepts tasks: it was closed or terminated (Python's
    /// `ValueError('Pool not running')`).
    NotRunning,
    /// The executor was shut down (Python's `RuntimeError('cannot schedule new futures after
    /// shutdown')`).
    Shutdown,
    /// The future was cancelled (Python's `CancelledError`).
    Cancelled,
    /// A wait ran out of time (Python's `TimeoutError`). The task is still pending: asking
    /// again later may succeed.
    Timeout,
    /// [`as_completed`](super::as_completed)'s deadline passed with futures unfinished (Python:
    /// `TimeoutError('N (of M) futures unfinished')`).
    Unfinished {
        /// Futures not finished.
        unfinished: usize,
        /// Futures given.
        total: usize,
    },
    /// An argument is out of range (Python's `ValueError`); the text says which.
    InvalidArgument(&'static str),
    /// The call is not allowed in the current state (Python's `ValueError`); the text says why.
    InvalidState(&'static str),
    /// An operating-system error while creating or running the pool.
    Os(Arc<io::Error>),
}

/// A panic in a pool worker, as the parent receives it: the message, where the task panicked,
/// and the worker's backtrace when one was captured — Python's re-raised exception with its
/// `RemoteTraceback` (see [`PoolError::Panicked`]).
///
/// The location is known when the crate's panic hook (or one installed before the pool's first
/// process was forked, which it wraps) saw the panic in the worker; a `resume_unwind` does not
/// call hooks, and a panic hook installed later replaces the crate's. The backtrace is
/// captured as [`std::backtrace::Backtrace::capture`] does: when `RUST_BACKTRACE` (or
/// `RUST_LIB_BACKTRACE`) is set in the worker, and not at all in a worker of a `fork`-method
/// pool created while the program ran other threads (capturing one takes a lock such a worker
/// may have inherited locked).
///
/// It displays as `panicked at <file>:<line>:<col>: <message>` (or `panicked: <message>`);
/// the alternate form (`{:#}`) adds the backtrace on the following lines.
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, PoolError};
///
/// # fn main() -> Result<(), PoolError> {
/// let pool = Pool::new(1)?;
/// match pool.apply(|x: u32| -> u32 { panic!("bad input {x}") }, 7) {
///     Err(PoolError::Panicked(p)) => {
///         assert_eq!(p.message(), "bad input 7");
///         let at = p.location().expect("the crate's hook saw it");
///         assert!(at.contains(".rs:"), "{at}");
///         assert!(p.to_string().starts_with("panicked at "));
///         // p.backtrace() is Some(..) when the worker ran with RUST_BACKTRACE=1.
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RemotePanic(Arc<PanicParts>);

#[derive(PartialEq, Eq)]
struct PanicParts {
    message: String,
    location: Option<String>,
    backtrace: Option<String>,
}

impl RemotePanic {
    pub(crate) fn new(
        message: String,
        location: Option<String>,
        backtrace: Option<String>,
    ) -> Self {
        RemotePanic(Arc::new(PanicParts { message, location, backtrace }))
    }

    /// The panic message (`"<non-string panic payload>"` for a payload that is neither a
    /// `&str` nor a `String`).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Where the task panicked, as `file:line:column`, if known.
    pub fn location(&self) -> Option<&str> {
        self.0.location.as_deref()
    }

    /// The worker's backtrace of the panic, as [`std::backtrace::Backtrace`] displays it, if
    /// one was captured (see the type's docs).
    pub fn backtrace(&self) -> Option<&str> {
        self.0.backtrace.as_deref()
    }
}

impl fmt::Debug for RemotePanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePanic")
            .field("message", &self.0.message)
            .field("location", &self.0.location)
            .field("backtrace", &self.0.backtrace)
            .finish()
    }
}

impl fmt::Display for RemotePanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.location {
            Some(at) => write!(f, "panicked at {at}: {}", self.0.message)?,
            None => write!(f, "panicked: {}", self.0.message)?,
        }
        match &self.0.backtrace {
            Some(bt) if f.alternate() => write!(f, "\n\nworker stack backtrace:\n{bt}"),
            _ => Ok(()),
        }
    }
}

impl PoolError {
    /// Whether this error means the whole pool is unusable (not just one task).
    pub fn is_broken(&self) -> bool {
        matches!(self, PoolError::InitializerFailed(_) | PoolError::BrokenPool(_))
    }
}

/// Writes "exit code N" or "killed by signal N (SIGX)" for a Python-style exit code.
pub(crate) fn describe_exitcode(f: &mut fmt::Formatter<'_>, exitcode: Option<i32>) -> fmt::Result {
    match exitcode {
        None => f.write_str("exit status unknown"),
        Some(code) if code < 0 => {
            write!(f, "killed by signal {}", -code)?;
            match signal_name(-code) {
                Some(name) => write!(f, " ({name})"),
                None => Ok(()),
            }
        }
        Some(code) => write!(f, "exit code {code}"),
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Panicked(p) if f.alternate() => write!(f, "the task {p:#}"),
            PoolError::Panicked(p) => write!(f, "the task {p}"),
            PoolError::WorkerLost { pid, exitcode } => {
                write!(f, "worker {} died while running the task: ", pid.as_raw_nonzero())?;
                describe_exitcode(f, *exitcode)
            }
            PoolError::TaskTimeout { pid, timeout } => write!(
                f,
                "the task ran longer than its {timeout:?} timeout; worker {} was killed",
                pid.as_raw_nonzero()
            ),
            PoolError::Encode(msg) => write!(f, "cannot encode the task's result: {msg}"),
            PoolError::EncodeArgument(msg) => write!(f, "cannot encode the task's argument: {msg}"),
            PoolError::Decode(msg) => write!(f, "cannot decode a task message: {msg}"),
            PoolError::InitializerFailed(msg) => {
                write!(f, "a worker's initializer failed, the pool is broken: {msg}")
            }
            PoolError::BrokenPool(msg) => f.write_str(msg),
            PoolError::Terminated => {
                f.write_str("the pool was terminated before the task finished")
            }
            PoolError::NotRunning => f.write_str("Pool not running"),
            PoolError::Shutdown => f.write_str("cannot schedule new futures after shutdown"),
            PoolError::Cancelled => f.write_str("the task was cancelled"),
            PoolError::Timeout => f.write_str("timed out waiting for the result"),
            PoolError::Unfinished { unfinished, total } => {
                write!(f, "{unfinished} (of {total}) futures unfinished")
            }
            PoolError::InvalidArgument(what) | PoolError::InvalidState(what) => f.write_str(what),
            PoolError::Os(e) => write!(f, "pool error: {e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Os(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<io::Error> for PoolError {
    fn from(e: io::Error) -> Self {
        PoolError::Os(Arc::new(e))
    }
}

impl From<multiproc_sys::Errno> for PoolError {
    fn from(e: multiproc_sys::Errno) -> Self {
        PoolError::Os(Arc::new(e.into()))
    }
}
