//! Handles to submitted work: [`AsyncResult`] (Python's `AsyncResult`/`MapResult`) and
//! [`IMap`] (Python's `IMapIterator`).

use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;
use std::sync::Arc;
use std::time::Duration;

use multiproc_sys::time::Deadline;

use crate::codec::{Decode, Encode};

use super::args::{Piece, encode_pieces};
use super::engine::{BatchId, Completed, Mode, Shared};
use super::error::PoolError;
use super::handle::BatchHandle;
use super::work::{Prepared, decode_chunk, decode_chunk_into};

/// Turns a collect batch's chunks into the caller's value.
pub(crate) type Finish<T> = fn(&Completed) -> Result<T, PoolError>;

/// Decodes the single item of a single-chunk batch.
pub(crate) fn finish_one<R: Decode>(done: &Completed) -> Result<R, PoolError> {
    let chunk = done.chunks.first().ok_or(PoolError::Terminated)?;
    let bytes = done.bytes(chunk)?;
    let mut items = Vec::with_capacity(1);
    decode_chunk::<R>(bytes, 1, &mut items);
    items.pop().unwrap_or_else(|| Err(PoolError::Decode("missing result".into())))
}

/// Decodes every item of a batch, in order; the first error (in input order) if any failed.
pub(crate) fn finish_list<R: Decode>(done: &Completed) -> Result<Vec<R>, PoolError> {
    let total = done.chunks.iter().map(|c| c.n).sum();
    let mut out = Vec::with_capacity(total);
    for chunk in &done.chunks {
        decode_chunk_into::<R>(done.bytes(chunk)?, chunk.n, &mut out)?;
    }
    Ok(out)
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async) or
/// [`Pool::map_async`](super::Pool::map_async) — Python's `AsyncResult`.
///
/// The result is kept: [`get`](Self::get) may be called any number of times (each call decodes
/// it anew, so `T` need not be `Clone`).
///
/// Waiting on it ([`get`](Self::get), [`wait`](Self::wait), [`ready`](Self::ready)) also drives
/// the pool: results are collected and callbacks run in the thread that waits (see the
/// [module docs](super#no-helper-threads)).
///
/// ```
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = multiproc::Pool::new(2)?;
/// let r = pool.apply_async(|x: u32| x * 10, 4)?;
/// r.on_success(|v| assert_eq!(v, 40));
/// assert_eq!(r.get()?, 40);
/// assert!(r.ready() && r.successful()?);
/// # Ok(())
/// # }
/// ```
#[must_use = "the task runs, but its result and its error are lost unless the handle is kept"]
pub struct AsyncResult<T> {
    handle: BatchHandle,
    finish: Finish<T>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("batch", &self.handle.batch).finish_non_exhaustive()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(shared: Arc<Shared>, batch: BatchId, finish: Finish<T>) -> Self {
        AsyncResult { handle: BatchHandle::new(shared, batch), finish }
    }

    /// Waits for the result and returns it, or the task's error (Python's `get()`).
    ///
    /// # Errors
    /// The task's own error ([`PoolError::Panicked`], [`PoolError::WorkerLost`], ...). For a
    /// map, the first failed item's error, in input order, once every chunk has finished.
    pub fn get(&self) -> Result<T, PoolError> {
        self.get_until(Deadline::FOREVER)
    }

    /// As [`get`](Self::get), waiting at most `timeout` (Python's `get(timeout)`).
    ///
    /// # Errors
    /// [`PoolError::Timeout`] if it is not ready in time (call again later); otherwise as
    /// [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        self.get_until(Deadline::after(Some(timeout)))
    }

    fn get_until(&self, deadline: Deadline) -> Result<T, PoolError> {
        match self.handle.wait(deadline)? {
            Some(done) => (self.finish)(&done),
            None => Err(PoolError::Timeout),
        }
    }

    /// Waits for the result to be ready (Python's `wait()`).
    pub fn wait(&self) {
        let _ = self.handle.wait(Deadline::FOREVER);
    }

    /// Waits at most `timeout` for the result to be ready; returns whether it is (Python's
    /// `wait(timeout)`, which returns nothing).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        matches!(self.handle.wait(Deadline::after(Some(timeout))), Ok(Some(_)))
    }

    /// Whether the result is ready (collects what has arrived, without blocking).
    pub fn ready(&self) -> bool {
        self.wait_timeout(Duration::ZERO)
    }

    /// Whether the call completed without error (Python's `successful`).
    ///
    /// # Errors
    /// [`PoolError::InvalidState`] if the result is not ready yet (Python raises
    /// `ValueError`).
    pub fn successful(&self) -> Result<bool, PoolError> {
        match self.handle.wait(Deadline::after(Some(Duration::ZERO)))? {
            Some(done) => Ok((self.finish)(&done).is_ok()),
            None => Err(PoolError::InvalidState("the result is not ready")),
        }
    }
}

impl<T: 'static> AsyncResult<T> {
    /// Calls `f` with the value once the call has succeeded (Python's `callback`): right away,
    /// in this thread, if it already has; otherwise in the thread that drives the pool when
    /// the result arrives. Keep it short; it may call back into the pool (even `terminate`).
    pub fn on_success(&self, f: impl FnOnce(T) + Send + 'static) {
        let finish = self.finish;
        self.on_done(Box::new(move |done: &Completed| {
            if let Ok(v) = finish(done) {
                f(v);
            }
        }));
    }

    /// Calls `f` with the error once the call has failed (Python's `error_callback`), like
    /// [`on_success`](Self::on_success).
    pub fn on_error(&self, f: impl FnOnce(PoolError) + Send + 'static) {
        let finish = self.finish;
        self.on_done(Box::new(move |done: &Completed| {
            if let Err(e) = finish(done) {
                f(e);
            }
        }));
    }

    fn on_done(&self, f: Box<dyn FnOnce(&Completed) + Send>) {
        let cb: super::engine::Callback = Box::new(move |_, _, done| f(done));
        if let Some((done, cb)) = self.handle.on_done(cb) {
            cb(&self.handle.shared, self.handle.batch, &done);
        }
    }
}

/// The lazy iterator of [`Pool::imap`](super::Pool::imap) and
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) — Python's `IMapIterator`.
///
/// It pulls its input lazily, keeping about `2 × processes` chunks in the pool ahead of what
/// has been consumed (Python reads the whole input at once, gh-84291), so an endless input
/// iterator works. Each item is the result of one input, `Ok` or the error of that input; an
/// error does not end the iteration. A wait with a timeout is
/// [`next_timeout`](Self::next_timeout).
///
/// Dropping it before the end forgets the remaining inputs: queued chunks are not run,
/// results of chunks already running are discarded.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Pool, PoolError};
///
/// # fn main() -> Result<(), PoolError> {
/// let pool = Pool::new(2)?;
/// let tenfold = |x: u32| -> u32 {
///     if x == 2 {
///         panic!("bad item");
///     }
///     x * 10
/// };
/// let t = Duration::from_secs(10);
/// // Python: it = pool.imap(tenfold, range(4)); it.next(timeout=10)
/// let mut it = pool.imap(tenfold, 0..4, 1)?;
/// assert!(matches!(it.next_timeout(t), Some(Ok(0))));
/// assert!(matches!(it.next_timeout(t), Some(Ok(10))));
/// // The failed item is an error at its position; the iteration goes on.
/// assert!(matches!(it.next_timeout(t), Some(Err(PoolError::Panicked(_)))));
/// assert!(matches!(it.next_timeout(t), Some(Ok(30))));
/// assert!(it.next_timeout(t).is_none());
/// # Ok(())
/// # }
/// ```
#[must_use = "the results are lost unless the iterator is consumed"]
pub struct IMap<I: Iterator, R> {
    shared: Arc<Shared>,
    batch: BatchId,
    work: Prepared,
    input: Option<Fuse<I>>,
    chunksize: usize,
    ahead: usize,
    submitted: usize,
    taken: usize,
    buffered: VecDeque<Result<R, PoolError>>,
    mode: Mode,
}

impl<I: Iterator, R> fmt::Debug for IMap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("chunksize", &self.chunksize)
            .field("submitted", &self.submitted)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<I, R> IMap<I, R>
where
    I: Iterator,
    I::Item: Encode,
    R: Decode,
{
    pub(crate) fn new(
        shared: Arc<Shared>,
        work: Prepared,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Self, PoolError> {
        let mode = if ordered { Mode::Ordered } else { Mode::Unordered };
        let batch = shared.submit(mode, work.job, Vec::new(), Vec::new(), false)?;
        let ahead = 2 * shared.cfg.processes;
        Ok(IMap {
            shared,
            batch,
            work,
            input: Some(input.fuse()),
            chunksize,
            ahead,
            submitted: 0,
            taken: 0,
            buffered: VecDeque::new(),
            mode,
        })
    }

    /// Tops the pool up with input chunks, up to the read-ahead bound.
    fn refill(&mut self) {
        while self.submitted - self.taken < self.ahead {
            let Some(input) = &mut self.input else { return };
            let items: Vec<I::Item> = input.by_ref().take(self.chunksize).collect();
            let exhausted = items.len() < self.chunksize;
            // An item whose `Encode` panics fails alone, in its place (its neighbours go as
            // chunks of their own).
            for piece in encode_pieces(&self.work, &items) {
                let key = self.submitted;
                self.submitted += 1;
                let r = match piece {
                    Piece::Payload(payload, n) => {
                        self.shared.add_chunk(self.batch, self.work.job, key, payload, n)
                    }
                    Piece::Failed(msg) => {
                        self.shared.add_failed_chunk(
                            self.batch,
                            key,
                            PoolError::EncodeArgument(msg),
                        );
                        Ok(())
                    }
                };
                if r.is_err() {
                    // The pool is gone: this chunk fails; stop reading input.
                    self.input = None;
                    self.shared.seal(self.batch);
                    return;
                }
            }
            if exhausted {
                self.input = None;
                self.shared.seal(self.batch);
                return;
            }
        }
    }

    /// The next result, waiting at most `timeout` for it (Python's `next(timeout)`).
    ///
    /// `None` at the end of the input. `Some(Err(PoolError::Timeout))` if it did not arrive in
    /// time: the item is still pending and a later call returns it.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, PoolError>> {
        self.next_deadline(Deadline::after(Some(timeout)))
    }

    pub(crate) fn next_deadline(&mut self, deadline: Deadline) -> Option<Result<R, PoolError>> {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                return Some(item);
            }
            self.refill();
            if self.input.is_none() && self.taken == self.submitted {
                return None;
            }
            let (batch, key) = (self.batch, self.taken);
            let mut got = None;
            match self.shared.wait_until(deadline, |c| {
                got = c.take_chunk(batch, key);
                got.is_some() || !c.has_batch(batch)
            }) {
                Err(e) => return Some(Err(e)),
                Ok(false) => return Some(Err(PoolError::Timeout)),
                Ok(true) => {}
            }
            let Some(chunk) = got else {
                // The batch is gone (cannot happen while we hold it): end.
                self.input = None;
                self.taken = self.submitted;
                return None;
            };
            self.taken += 1;
            match &chunk.result {
                Err(e) => self.buffered.extend((0..chunk.n).map(|_| Err(e.clone()))),
                Ok(bytes) => {
                    let mut items = Vec::with_capacity(chunk.n);
                    decode_chunk::<R>(bytes, chunk.n, &mut items);
                    self.buffered.extend(items);
                }
            }
        }
    }
}

impl<I, R> Iterator for IMap<I, R>
where
    I: Iterator,
    I::Item: Encode,
    R: Decode,
{
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_deadline(Deadline::FOREVER)
    }
}

impl<I: Iterator, R> Drop for IMap<I, R> {
    fn drop(&mut self) {
        let _ = self.mode;
        self.shared.release(self.batch);
    }
}
