//! [`Future`]: the pending result of one call submitted to a
//! [`ProcessPoolExecutor`](super::ProcessPoolExecutor) — Python's `concurrent.futures.Future`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use multiproc_sys::time::Deadline;

use crate::codec::Decode;
use crate::pool::engine::{self, BatchId, ChunkOut, Completed, Shared};
use crate::pool::error::PoolError;
use crate::pool::handle::BatchHandle;
use crate::pool::proto::ITEM_OK;
use crate::pool::results::finish_one;

/// The pending result of a call submitted to a
/// [`ProcessPoolExecutor`](crate::ProcessPoolExecutor) — Python's `concurrent.futures.Future`.
///
/// Clones refer to the same call. Every future resolves: with its value, its error,
/// [`PoolError::Cancelled`], or a broken-pool error.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// use multiproc::ProcessPoolExecutor;
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(1)?;
/// // Python: f = ex.submit(total, 100)
/// let f = ex.submit(|n: u64| (1..=n).sum::<u64>(), 100)?;
/// let called = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&called);
/// f.add_done_callback(move |_| flag.store(true, Ordering::SeqCst));
/// assert_eq!(f.result_timeout(Duration::from_secs(10))?, 5050); // f.result(timeout=10)
/// assert!(f.done() && !f.cancelled());
/// assert!(f.exception()?.is_none());
/// assert!(called.load(Ordering::SeqCst));
/// # Ok(())
/// # }
/// ```
#[must_use = "the call runs, but its result and its error are lost unless the future is kept"]
pub struct Future<R> {
    pub(super) handle: BatchHandle,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Future<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Future").field("id", &self.handle.batch).finish_non_exhaustive()
    }
}

impl<R> Clone for Future<R> {
    fn clone(&self) -> Self {
        Future { handle: self.handle.clone(), _r: PhantomData }
    }
}

/// Futures are equal when they are the same call (clones of one future), as Python's futures
/// compare by identity; so they can key a `HashMap`, as in Python's
/// `{executor.submit(f, x): x for x in xs}` (see [`as_completed`](crate::pool::as_completed)).
///
/// Clippy's `mutable_key_type` lint flags such a map, because a future holds its executor's
/// mutable state; that is a false positive, since the hash and equality are the call's identity,
/// which never changes. Allow the lint there, or list `multiproc::Future` under
/// `ignore-interior-mutability` in `clippy.toml`.
impl<R> PartialEq for Future<R> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<R> Eq for Future<R> {}

impl<R> std::hash::Hash for Future<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// How a finished future ended, from its chunk.
pub(super) fn outcome(done: &Completed) -> (bool, bool) {
    // (cancelled, raised)
    match done.chunks.first() {
        Some(ChunkOut { result: Err(PoolError::Cancelled), .. }) => (true, false),
        None => (false, true),
        Some(c) => match done.bytes(c) {
            Err(_) => (false, true),
            Ok(bytes) => (false, bytes.first() != Some(&ITEM_OK)),
        },
    }
}

impl<R> Future<R> {
    /// The future of the call `handle` tracks.
    pub(super) fn new(handle: BatchHandle) -> Self {
        Future { handle, _r: PhantomData }
    }

    /// The call's identity: its engine and its batch.
    pub(super) fn key(&self) -> (*const Shared, BatchId) {
        self.handle.key()
    }

    /// Whether the call finished or was cancelled (collects arrived results first, without
    /// blocking).
    pub fn done(&self) -> bool {
        matches!(self.handle.wait(Deadline::after(Some(Duration::ZERO))), Ok(Some(_)))
    }

    /// Whether a worker is running the call now: true only once a worker has started it
    /// (Python also says so for calls merely queued, P18).
    pub fn running(&self) -> bool {
        !self.done() && self.handle.shared.running(self.handle.batch)
    }

    /// Whether the call was cancelled.
    pub fn cancelled(&self) -> bool {
        self.handle
            .shared
            .lock_checked()
            .is_ok_and(|g| g.done(self.handle.batch).is_some_and(|d| outcome(&d).0))
    }

    /// Cancels the call if no worker has started it (even if it was already sent to one).
    /// Returns whether the future is now cancelled (`true` also if it already was).
    pub fn cancel(&self) -> bool {
        self.handle.shared.cancel(self.handle.batch)
    }

    /// Waits for the call and returns its error (Python's `exception()`): `Ok(None)` if it
    /// succeeded, `Ok(Some(e))` if it failed.
    ///
    /// # Errors
    /// [`PoolError::Cancelled`] if it was cancelled.
    pub fn exception(&self) -> Result<Option<PoolError>, PoolError>
    where
        R: Decode,
    {
        self.exception_until(Deadline::FOREVER)
    }

    /// As [`exception`](Self::exception), waiting at most `timeout` (Python's
    /// `exception(timeout)`).
    ///
    /// # Errors
    /// As [`exception`](Self::exception); [`PoolError::Timeout`] if it is not done in time.
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<PoolError>, PoolError>
    where
        R: Decode,
    {
        self.exception_until(Deadline::after(Some(timeout)))
    }

    fn exception_until(&self, deadline: Deadline) -> Result<Option<PoolError>, PoolError>
    where
        R: Decode,
    {
        match self.result_until(deadline) {
            Ok(_) => Ok(None),
            Err(e @ (PoolError::Timeout | PoolError::Cancelled)) => Err(e),
            Err(e) => Ok(Some(e)),
        }
    }

    /// Waits for the call and returns its value (Python's `result()`); may be called again.
    ///
    /// # Errors
    /// [`PoolError::Cancelled`]; otherwise the call's own error.
    pub fn result(&self) -> Result<R, PoolError>
    where
        R: Decode,
    {
        self.result_until(Deadline::FOREVER)
    }

    /// As [`result`](Self::result), waiting at most `timeout` (Python's `result(timeout)`).
    ///
    /// # Errors
    /// As [`result`](Self::result); [`PoolError::Timeout`] if it is not done in time.
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, PoolError>
    where
        R: Decode,
    {
        self.result_until(Deadline::after(Some(timeout)))
    }

    fn result_until(&self, deadline: Deadline) -> Result<R, PoolError>
    where
        R: Decode,
    {
        match self.handle.wait(deadline)? {
            Some(done) => finish_one::<R>(&done),
            None => Err(PoolError::Timeout),
        }
    }
}

impl<R: 'static> Future<R> {
    /// Calls `f` with the future once it is done or cancelled (Python's `add_done_callback`):
    /// right away, in this thread, if it already is; otherwise in the thread that drives the
    /// executor when it finishes. Callbacks run in the order they were added. A panic in `f`
    /// is reported on stderr and ignored.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<R>) + Send + 'static) {
        let cb: engine::Callback = Box::new(move |shared, batch, _| {
            let fut = Future { handle: BatchHandle::retained(shared, batch), _r: PhantomData };
            f(&fut);
        });
        if let Some((done, cb)) = self.handle.on_done(cb) {
            let shared = self.handle.shared.clone();
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                cb(&shared, self.handle.batch, &done)
            })) {
                eprintln!(
                    "multiproc: a future's done-callback panicked (ignored): {}",
                    crate::fork_safety::panic_message(&*p)
                );
            }
        }
    }
}
