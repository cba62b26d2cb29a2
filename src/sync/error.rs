//! The errors of the lock-like types' `acquire`/`lock` ([`AcquireError`]) and `release`
//! ([`ReleaseError`]).

use std::fmt;
use std::io;

/// Why an acquire did not simply return a guard.
///
/// `G` is the guard type. [`AcquireError::OwnerDied`] still carries it: the caller holds the
/// lock, like a poisoned [`std::sync::Mutex`].
///
/// Python's `acquire` returns `False` on a timeout, hangs when the thread already holds a
/// `Lock` and has no timeout, and waits forever for a holder that died; here a timeout is
/// [`Timeout`](Self::Timeout) (or `Ok(false)` from the Python-style `acquire`), and the other
/// two cases are the errors [`WouldDeadlock`](Self::WouldDeadlock) and
/// [`OwnerDied`](Self::OwnerDied). A bounded acquire of a `Lock` that the calling thread holds
/// is a timeout, as in Python, once its timeout has passed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{AcquireError, Lock, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = Lock::new()?;
/// // A child takes the lock and exits without releasing it, as if it had been killed.
/// let child = {
///     let lock = lock.clone();
///     Process::new(move || std::mem::forget(lock.lock().expect("lock")))
/// };
/// child.start()?;
/// child.join_timeout(Duration::from_secs(10))?;
///
/// // Python's Lock would stay locked forever; here the next acquirer is told, and holds it.
/// match lock.lock_timeout(Duration::from_secs(10)) {
///     Err(AcquireError::OwnerDied(guard)) => drop(guard), // check the protected data here
///     Ok(_) => panic!("the dead holder was not reported"),
///     Err(e) => return Err(e.without_guard().into()),
/// }
///
/// // The lock works normally again; taking it twice in one thread is an error, not a hang.
/// let guard = lock.try_lock().map_err(AcquireError::without_guard)?;
/// assert!(matches!(lock.lock(), Err(AcquireError::WouldDeadlock)));
/// // A bounded attempt fails as in Python (`lock.acquire(False)` is `False`).
/// assert!(matches!(lock.try_lock(), Err(AcquireError::Timeout)));
/// assert!(!lock.acquire_timeout(Duration::ZERO)?);
/// drop(guard);
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub enum AcquireError<G> {
    /// The timeout passed (with a zero timeout: the lock was busy), or, for a non-recursive
    /// lock the calling thread holds itself, the timeout was waited out (nothing else could
    /// release it).
    Timeout,
    /// The lock was acquired, but the process or thread that held it before died while holding
    /// it: the data it protects may be half-updated. The guard is inside; the lock has been
    /// made consistent and keeps working.
    OwnerDied(G),
    /// The calling thread already holds this (non-recursive) lock and the acquire has no
    /// timeout: waiting would deadlock forever (Python would hang here). A bounded acquire
    /// gets [`Timeout`](Self::Timeout) instead, once its time is up.
    WouldDeadlock,
    /// An operating-system error (for example a lock whose state a buggy peer garbled).
    Os(io::Error),
}

impl<G> AcquireError<G> {
    /// The guard, if the lock was acquired after all ([`AcquireError::OwnerDied`]).
    pub fn into_guard(self) -> Option<G> {
        match self {
            AcquireError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// The same error, its guard (if any) passed through `f`.
    pub(crate) fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> AcquireError<H> {
        match self {
            AcquireError::Timeout => AcquireError::Timeout,
            AcquireError::OwnerDied(g) => AcquireError::OwnerDied(f(g)),
            AcquireError::WouldDeadlock => AcquireError::WouldDeadlock,
            AcquireError::Os(e) => AcquireError::Os(e),
        }
    }

    /// Drops the guard (if any), keeping only the kind of error: for `?` into error types that
    /// must be `'static`.
    pub fn without_guard(self) -> AcquireError<()> {
        self.map_guard(drop)
    }
}

impl<G> fmt::Debug for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Timeout => f.write_str("Timeout"),
            AcquireError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            AcquireError::WouldDeadlock => f.write_str("WouldDeadlock"),
            AcquireError::Os(e) => f.debug_tuple("Os").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Timeout => f.write_str("timed out waiting for the lock"),
            AcquireError::OwnerDied(_) => {
                f.write_str("the previous holder died while holding the lock (now acquired)")
            }
            AcquireError::WouldDeadlock => f.write_str(
                "the calling thread already holds this lock: acquiring it would deadlock",
            ),
            AcquireError::Os(e) => write!(f, "lock error: {e}"),
        }
    }
}

impl<G> std::error::Error for AcquireError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Misuse of a `release` (Python raises `ValueError`, `AssertionError` or `RuntimeError`).
///
/// # Examples
///
/// ```
/// use multiproc::{BoundedSemaphore, Lock, ReleaseError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = Lock::new()?;
/// // Python: ValueError('semaphore or lock released too many times')
/// match lock.release() {
///     Err(ReleaseError::NotHeld) => {}
///     other => panic!("unexpected {other:?}"),
/// }
///
/// let sem = BoundedSemaphore::new(1)?;
/// match sem.release() {
///     Err(ReleaseError::TooManyReleases) => assert_eq!(sem.get_value(), 1),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The lock is not held (Python: "semaphore or lock released too many times").
    NotHeld,
    /// The lock is held by another process or thread (Python: "attempt to release recursive
    /// lock not owned by thread").
    NotOwner,
    /// A `BoundedSemaphore` would go above its initial value (Python: "semaphore or lock
    /// released too many times"); the value is unchanged.
    TooManyReleases,
    /// An operating-system error.
    Os(io::Error),
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseError::NotHeld => f.write_str("release of a lock that is not held"),
            ReleaseError::NotOwner => {
                f.write_str("release of a lock held by another process or thread")
            }
            ReleaseError::TooManyReleases => f.write_str("semaphore released too many times"),
            ReleaseError::Os(e) => write!(f, "release failed: {e}"),
        }
    }
}

impl std::error::Error for ReleaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReleaseError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Barrier::wait`](super::Barrier::wait) did not return an arrival index.
///
/// Python raises `threading.BrokenBarrierError` in every case; here the party whose own
/// timeout passed gets [`Timeout`](Self::Timeout), the others [`Broken`](Self::Broken).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Barrier, BarrierError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let barrier = Barrier::new(2)?;
/// // Nobody else comes: the wait times out, and the barrier breaks.
/// match barrier.wait_timeout(Duration::from_millis(10)) {
///     Err(BarrierError::Timeout) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// // Broken for everyone until reset (Python: BrokenBarrierError).
/// assert!(matches!(barrier.wait_timeout(Duration::from_millis(10)), Err(BarrierError::Broken)));
/// barrier.reset()?;
/// assert!(!barrier.broken());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken, or was broken or reset while this party waited — Python's
    /// `BrokenBarrierError`. It stays broken until [`Barrier::reset`](super::Barrier::reset).
    Broken,
    /// This party's timeout passed before the others arrived. The barrier is now broken for
    /// everyone (Python raises `BrokenBarrierError` here too; this variant tells the party
    /// whose timeout it was).
    Timeout,
    /// An operating-system error, or a barrier whose shared state a buggy peer overwrote
    /// ([`io::ErrorKind::InvalidData`]).
    Os(io::Error),
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("the barrier is broken"),
            BarrierError::Timeout => {
                f.write_str("timed out waiting at the barrier (the barrier is now broken)")
            }
            BarrierError::Os(e) => write!(f, "barrier error: {e}"),
        }
    }
}

impl std::error::Error for BarrierError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BarrierError::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for BarrierError {
    fn from(e: io::Error) -> Self {
        BarrierError::Os(e)
    }
}
