//! [`wait`] and [`as_completed`] over [`Future`]s — Python's `concurrent.futures.wait` and
//! `as_completed`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use multiproc_sys::time::Deadline;

use crate::pool::engine::{BatchId, Core, Shared};
use crate::pool::error::PoolError;

use super::future::{Future, outcome};

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::futures::{ProcessPoolExecutor, ReturnWhen, wait};
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(2)?;
/// let fs: Vec<_> = (1..=3u32).map(|i| ex.submit(|i: u32| i * 2, i)).collect::<Result<_, _>>()?;
/// // Python: wait(fs, timeout=10, return_when=FIRST_COMPLETED)
/// let r = wait(&fs, Some(Duration::from_secs(10)), ReturnWhen::FirstCompleted)?;
/// assert!(!r.done.is_empty());
/// assert_eq!(r.done.len() + r.not_done.len(), 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled.
    FirstCompleted,
    /// As soon as any future fails (a cancellation is not a failure); like `AllCompleted` if
    /// none does.
    FirstException,
    /// When every future has finished or was cancelled.
    AllCompleted,
}

/// What [`wait`] returns: the futures that are done, and the others (Python's named tuple of
/// sets; duplicates appear once).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::futures::{ProcessPoolExecutor, ReturnWhen, wait};
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(2)?;
/// let fs: Vec<_> = (1..=3u32).map(|i| ex.submit(|i: u32| i * 10, i)).collect::<Result<_, _>>()?;
/// // Python: done, not_done = wait(fs, timeout=10)
/// let r = wait(&fs, Some(Duration::from_secs(10)), ReturnWhen::AllCompleted)?;
/// assert!(r.not_done.is_empty());
/// let mut values: Vec<u32> = r.done.iter().map(|f| f.result()).collect::<Result<_, _>>()?;
/// values.sort();
/// assert_eq!(values, [10, 20, 30]);
/// # Ok(())
/// # }
/// ```
pub struct WaitResult<'a, R> {
    /// Finished or cancelled futures.
    pub done: Vec<&'a Future<R>>,
    /// The others.
    pub not_done: Vec<&'a Future<R>>,
}

impl<R> fmt::Debug for WaitResult<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitResult")
            .field("done", &self.done.len())
            .field("not_done", &self.not_done.len())
            .finish()
    }
}

/// The distinct futures of `fs`, in order.
fn dedup<'a, R: 'a>(fs: impl IntoIterator<Item = &'a Future<R>>) -> Vec<&'a Future<R>> {
    let mut seen = std::collections::HashSet::new();
    fs.into_iter().filter(|f| seen.insert(f.key())).collect()
}

/// State of a future seen from its core: `None` if not done, else (cancelled, raised).
fn state_in(core: &Core, batch: BatchId) -> Option<(bool, bool)> {
    if !core.has_batch(batch) {
        return Some((false, true));
    }
    core.done(batch).map(|d| outcome(&d))
}

/// Drives the engines of `fs` until `cond(states)` holds or the deadline passes. `states[i]` is
/// `state_in` for `fs[i]`. Returns the last states.
fn drive_until<R>(
    fs: &[&Future<R>],
    deadline: Deadline,
    mut cond: impl FnMut(&[Option<(bool, bool)>]) -> bool,
) -> Result<Vec<Option<(bool, bool)>>, PoolError> {
    let mut engines: Vec<&Arc<Shared>> = Vec::new();
    for f in fs {
        if !engines.iter().any(|e| Arc::ptr_eq(e, &f.handle.shared)) {
            engines.push(&f.handle.shared);
        }
    }
    let snapshot = |fs: &[&Future<R>]| -> Result<Vec<Option<(bool, bool)>>, PoolError> {
        fs.iter().map(|f| Ok(state_in(&*f.handle.shared.lock_checked()?, f.handle.batch))).collect()
    };
    if engines.len() == 1 {
        let engine = engines[0];
        let mut states = vec![None; fs.len()];
        engine.wait_until(deadline, |core| {
            for (s, f) in states.iter_mut().zip(fs) {
                if s.is_none() {
                    *s = state_in(core, f.handle.batch);
                }
            }
            cond(&states)
        })?;
        return Ok(states);
    }
    // Futures from several executors: drive each in turn in short slices.
    loop {
        for e in &engines {
            e.wait_until(Deadline::after(Some(Duration::ZERO)), |_| false)?;
        }
        let states = snapshot(fs)?;
        if cond(&states) || deadline.has_expired() || engines.is_empty() {
            return Ok(states);
        }
        let slice = Deadline::after(Some(Duration::from_millis(2))).min(deadline);
        engines[0].wait_until(slice, |_| false)?;
    }
}

/// Waits for the futures `fs` (Python's `concurrent.futures.wait`): returns when
/// `return_when` is met or `timeout` passes (then with the partial sets; a timeout is not an
/// error). Futures already done count at once.
///
/// `fs` is any iterator of futures: `&Vec<Future<R>>`, a slice, a `HashMap`'s `keys()`, ...
/// (Python takes any iterable); a future given twice counts once.
///
/// ```
/// use multiproc::futures::{ProcessPoolExecutor, ReturnWhen, wait};
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(2)?;
/// let fs = vec![ex.submit(|x: u8| x, 1)?, ex.submit(|x: u8| x, 2)?];
/// let r = wait(&fs, None, ReturnWhen::AllCompleted)?;
/// assert_eq!((r.done.len(), r.not_done.len()), (2, 0));
/// # Ok(())
/// # }
/// ```
pub fn wait<'a, R: 'a>(
    fs: impl IntoIterator<Item = &'a Future<R>>,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> Result<WaitResult<'a, R>, PoolError> {
    let fs = dedup(fs);
    let deadline = Deadline::after(timeout);
    let states = drive_until(&fs, deadline, |states| {
        let done = states.iter().filter(|s| s.is_some()).count();
        match return_when {
            ReturnWhen::FirstCompleted => done > 0 || states.is_empty(),
            ReturnWhen::FirstException => {
                done == states.len() || states.iter().any(|s| matches!(s, Some((_, true))))
            }
            ReturnWhen::AllCompleted => done == states.len(),
        }
    })?;
    let mut r = WaitResult { done: Vec::new(), not_done: Vec::new() };
    for (f, s) in fs.into_iter().zip(states) {
        if s.is_some() { r.done.push(f) } else { r.not_done.push(f) }
    }
    Ok(r)
}

/// An iterator over futures as they finish (Python's `concurrent.futures.as_completed`):
/// futures already done come first, each future appears once, and after `timeout` (counted
/// from the call) the next item is `Err(PoolError::Unfinished { .. })` and the iteration ends.
///
/// `fs` is any iterator of futures: `&Vec<Future<R>>`, a slice, a `HashMap`'s `keys()`, ...
/// (Python takes any iterable). Waiting on it drives the executors the futures belong to.
///
/// ```
/// use std::collections::HashMap;
/// use multiproc::{ProcessPoolExecutor, as_completed};
///
/// # #[allow(clippy::mutable_key_type)] // a false positive: see `Future`'s `Hash`
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(2)?;
/// // Python: futures = {ex.submit(square, n): n for n in range(4)}
/// let futures: HashMap<_, u64> =
///     (0..4).map(|n| Ok((ex.submit(|n: u64| n * n, n)?, n))).collect::<Result<_, multiproc::PoolError>>()?;
/// for f in as_completed(futures.keys(), None) {
///     let f = f?;
///     let n = futures[f];
///     assert_eq!(f.result()?, n * n);
/// }
/// # Ok(())
/// # }
/// ```
pub fn as_completed<'a, R: 'a>(
    fs: impl IntoIterator<Item = &'a Future<R>>,
    timeout: Option<Duration>,
) -> AsCompleted<'a, R> {
    let fs = dedup(fs);
    let total = fs.len();
    let deadline = Deadline::after(timeout);
    let mut ready = VecDeque::new();
    let mut pending = Vec::new();
    // Already finished ones come first (collecting what has arrived, without blocking).
    let states = drive_until(&fs, Deadline::after(Some(Duration::ZERO)), |_| false)
        .unwrap_or_else(|_| vec![None; fs.len()]);
    for (f, s) in fs.into_iter().zip(states) {
        if s.is_some() { ready.push_back(f) } else { pending.push(f) }
    }
    AsCompleted { ready, pending, total, deadline, ended: false }
}

/// The iterator of [`as_completed`] — the generator Python's
/// `concurrent.futures.as_completed` returns.
///
/// Each item is a future that has finished (or was cancelled); once the deadline passes, the
/// next item is `Err(PoolError::Unfinished { .. })` (Python's `TimeoutError('N (of M) futures
/// unfinished')`) and the iteration ends.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{ProcessPoolExecutor, as_completed};
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(2)?;
/// let fs: Vec<_> =
///     [3u64, 1, 2].into_iter().map(|n| ex.submit(|n: u64| n * n, n)).collect::<Result<_, _>>()?;
/// // Python: for f in as_completed(fs, timeout=10): total += f.result()
/// let mut total = 0;
/// for f in as_completed(&fs, Some(Duration::from_secs(10))) {
///     total += f?.result()?;
/// }
/// assert_eq!(total, 14);
/// # Ok(())
/// # }
/// ```
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct AsCompleted<'a, R> {
    ready: VecDeque<&'a Future<R>>,
    pending: Vec<&'a Future<R>>,
    total: usize,
    deadline: Deadline,
    ended: bool,
}

impl<R> fmt::Debug for AsCompleted<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("ready", &self.ready.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<'a, R> Iterator for AsCompleted<'a, R> {
    type Item = Result<&'a Future<R>, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(f) = self.ready.pop_front() {
            return Some(Ok(f));
        }
        if self.ended || self.pending.is_empty() {
            return None;
        }
        let states =
            match drive_until(&self.pending, self.deadline, |s| s.iter().any(Option::is_some)) {
                Ok(states) => states,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            };
        let mut still = Vec::with_capacity(self.pending.len());
        for (f, s) in self.pending.drain(..).zip(states) {
            if s.is_some() { self.ready.push_back(f) } else { still.push(f) }
        }
        self.pending = still;
        match self.ready.pop_front() {
            Some(f) => Some(Ok(f)),
            None => {
                self.ended = true;
                Some(Err(PoolError::Unfinished {
                    unfinished: self.pending.len(),
                    total: self.total,
                }))
            }
        }
    }
}
