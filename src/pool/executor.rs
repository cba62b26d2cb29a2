//! `ProcessPoolExecutor`, `Future`, `as_completed` and `wait` — Python's `concurrent.futures`
//! for processes, on the same engine as [`Pool`](super::Pool).

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use multiproc_sys::Pid;
use multiproc_sys::time::Deadline;

use crate::codec::{Decode, Message};

use super::engine::{BatchId, ChunkOut, Completed, Core, Mode, Shared};
use super::error::PoolError;
use super::handle::BatchHandle;
use super::proto::ITEM_OK;
use super::results::{IMap, finish_one};
use super::work::{Task, Work};
use super::{InitResult, PoolBuilder};

/// Options for a [`ProcessPoolExecutor`] — Python's `ProcessPoolExecutor(max_workers,
/// initializer, initargs, max_tasks_per_child)`.
///
/// ```
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = multiproc::ProcessPoolExecutor::builder()
///     .max_workers(2)
///     .max_tasks_per_child(10) // works with fork, unlike Python
///     .break_on_worker_death(true) // Python's BrokenProcessPool behaviour
///     .build()?;
/// assert_eq!(ex.submit(|s: String| s.len(), "four".to_string())?.result()?, 4);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ExecutorBuilder {
    inner: PoolBuilder,
}

impl ExecutorBuilder {
    /// Default options: [`process_cpu_count`](crate::process_cpu_count) workers, no
    /// initializer, workers never recycled, a dead worker fails only its own futures.
    pub fn new() -> Self {
        let mut inner = PoolBuilder::new();
        inner.executor = true;
        ExecutorBuilder { inner }
    }

    /// The number of worker processes (at least 1).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.inner = self.inner.processes(n);
        self
    }

    /// Runs `f` once in every worker when it starts. If it fails, the executor is broken:
    /// pending and later futures fail with [`PoolError::InitializerFailed`].
    pub fn initializer<F, T>(mut self, f: F) -> Self
    where
        F: Fn() -> T + Send + Sync + 'static,
        T: InitResult,
    {
        self.inner = self.inner.initializer(f);
        self
    }

    /// Replaces a worker after `n` tasks (Python 3.11's `max_tasks_per_child`, which Python
    /// refuses with fork; here it works).
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.inner = self.inner.max_tasks_per_child(n);
        self
    }

    /// Pins worker `i` to CPU `cpus[i % cpus.len()]`.
    pub fn cpus(mut self, cpus: impl IntoIterator<Item = usize>) -> Self {
        self.inner = self.inner.cpus(cpus);
        self
    }

    /// `true`: a worker that dies abruptly breaks the executor, as in Python
    /// (`BrokenProcessPool`): running and pending futures fail with [`PoolError::BrokenPool`],
    /// and so does every later `submit`. `false` (the default): only the future the worker was
    /// running fails, with [`PoolError::WorkerLost`], and the worker is replaced.
    pub fn break_on_worker_death(mut self, yes: bool) -> Self {
        self.inner.break_on_worker_death = yes;
        self
    }

    /// How the workers start (see
    /// [`PoolBuilder::start_method`](super::PoolBuilder::start_method)); Python's
    /// `mp_context`.
    pub fn start_method(mut self, method: crate::start::StartMethod) -> Self {
        self.inner = self.inner.start_method(method);
        self
    }

    /// Registers a closure that every worker will have (see
    /// [`PoolBuilder::register`](super::PoolBuilder::register)).
    pub fn register<A, R, F>(&mut self, f: F) -> Task<A, R>
    where
        A: Message + 'static,
        R: Message + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.inner.register(f)
    }

    /// Starts the executor.
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] for 0 workers or `max_tasks_per_child(0)`;
    /// [`PoolError::Os`] if the fork server cannot be started.
    pub fn build(self) -> Result<ProcessPoolExecutor, PoolError> {
        let method = self.inner.method;
        let cfg = self.inner.config()?;
        Ok(ProcessPoolExecutor { shared: super::engine::start(cfg, method)? })
    }
}

/// A pool of worker processes with futures — Python's
/// `concurrent.futures.ProcessPoolExecutor`.
///
/// ```
/// use multiproc::{ProcessPoolExecutor, as_completed};
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(2)?;
/// let futures: Vec<_> = (1..=4u64).map(|n| ex.submit(|n: u64| (1..=n).product::<u64>(), n)).collect::<Result<_, _>>()?;
/// let mut total = 0;
/// for f in as_completed(&futures, None) {
///     total += f?.result()?;
/// }
/// assert_eq!(total, 1 + 2 + 6 + 24);
/// ex.shutdown(true, false)?;
/// # Ok(())
/// # }
/// ```
///
/// Dropping it shuts it down and waits for the submitted work, as Python's `with` block does
/// (see the [module docs](super#dropping-a-pool)); [`terminate_workers`](Self::terminate_workers)
/// stops running work. On Ctrl-C it behaves as a [`Pool`](crate::Pool) (see the crate docs'
/// "Ctrl-C").
#[must_use = "dropping an executor shuts it down, waiting for the submitted work"]
pub struct ProcessPoolExecutor {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shared, f)
    }
}

impl ProcessPoolExecutor {
    /// An executor with `max_workers` workers and default options.
    pub fn new(max_workers: usize) -> Result<Self, PoolError> {
        ExecutorBuilder::new().max_workers(max_workers).build()
    }

    /// Options for an executor.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::new()
    }

    /// The pids of the workers alive now, by slot (Python's `[p.pid for p in pool._pool]`).
    ///
    /// Right after creation they are the started workers' pids; later they follow replacements.
    /// The call collects what the fork server has reported (a worker's death, its replacement)
    /// and waits, briefly, for the workers it is forking at that moment, so it drives the
    /// pool like a short wait. A worker killed just before the call may still be listed until
    /// the server has reaped it. Empty once the pool has been joined or terminated.
    pub fn worker_pids(&self) -> Vec<Pid> {
        self.shared.worker_pids()
    }

    /// Schedules `f(arg)` and returns its [`Future`] (Python's `submit`).
    ///
    /// # Errors
    /// [`PoolError::Shutdown`] after [`shutdown`](Self::shutdown); the broken-pool error if
    /// the executor is broken.
    pub fn submit<A, R, W>(&self, f: W, arg: A) -> Result<Future<R>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
    {
        let () = W::SENDABLE; // a capturing closure: a compile error here (see `Work`)
        let work = f.job()?;
        let payload = super::args::encode_one(&work, &arg)?;
        let len = payload.len();
        let batch =
            self.shared.submit(Mode::Collect, work.job, payload, vec![(0..len, 1)], true)?;
        Ok(Future { handle: BatchHandle::new(self.shared.clone(), batch), _r: PhantomData })
    }

    /// The results of `f` on each item, in order (Python's `map`), as a lazy iterator with
    /// bounded read-ahead. `chunksize` items go to a worker at once. `timeout` counts from
    /// this call: once it has passed, the next item is `Err(PoolError::Timeout)` and the
    /// iteration ends.
    pub fn map<A, R, W, I>(
        &self,
        f: W,
        iter: I,
        chunksize: usize,
        timeout: Option<Duration>,
    ) -> Result<ExecutorMap<I::IntoIter, R>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
        I: IntoIterator<Item = A>,
    {
        let () = W::SENDABLE;
        if chunksize == 0 {
            return Err(PoolError::InvalidArgument("chunksize must be >= 1."));
        }
        let deadline = Deadline::after(timeout);
        let inner = IMap::new(self.shared.clone(), f.job()?, iter.into_iter(), chunksize, true)?;
        Ok(ExecutorMap { inner: Some(inner), deadline })
    }

    /// Stops accepting work (Python's `shutdown`). With `cancel_futures`, every future that no
    /// worker has started is cancelled. With `wait`, waits for the remaining futures and for
    /// the workers to exit. Idempotent.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<(), PoolError> {
        self.shared.close()?;
        if cancel_futures {
            self.shared.cancel_pending();
        }
        if wait { self.shared.join_within(None) } else { Ok(()) }
    }

    /// Stops the workers now (Python 3.14's `terminate_workers`): shuts the executor down and
    /// fails every future not done yet with [`PoolError::Terminated`], running ones included;
    /// workers get `SIGTERM`, then `SIGKILL` after the grace period, and are reaped, as in
    /// [`Pool::terminate`](crate::Pool::terminate). Bounded in time; safe to call more than
    /// once. For a program that ends its waits on Ctrl-C (see the crate docs' "Ctrl-C").
    pub fn terminate_workers(&self) -> Result<(), PoolError> {
        self.shared.terminate()
    }
}

impl Drop for ProcessPoolExecutor {
    /// `shutdown(true, false)`: waits for the submitted work, then for the workers.
    fn drop(&mut self) {
        if self.shared.is_creator() {
            let _ = self.shutdown(true, false);
        }
    }
}

/// The lazy iterator of [`ProcessPoolExecutor::map`] — the iterator Python's `Executor.map`
/// returns.
///
/// Each item is `Ok(value)` or that input's error, in input order. As in Python, `timeout`
/// counts from the `map` call: once it has passed, the next item is
/// `Err(PoolError::Timeout)` (Python's `TimeoutError`) and the iteration ends.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::ProcessPoolExecutor;
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let ex = ProcessPoolExecutor::new(2)?;
/// // Python: list(ex.map(square, range(5), timeout=10))
/// let squares: Vec<u64> =
///     ex.map(|x: u64| x * x, 0..5, 1, Some(Duration::from_secs(10)))?.collect::<Result<_, _>>()?;
/// assert_eq!(squares, [0, 1, 4, 9, 16]);
/// # Ok(())
/// # }
/// ```
#[must_use = "the results are lost unless the iterator is consumed"]
pub struct ExecutorMap<I: Iterator, R> {
    inner: Option<IMap<I, R>>,
    deadline: Deadline,
}

impl<I: Iterator, R> fmt::Debug for ExecutorMap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorMap").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl<I, R> Iterator for ExecutorMap<I, R>
where
    I: Iterator,
    I::Item: crate::codec::Encode,
    R: Decode,
{
    type Item = Result<R, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        match inner.next_deadline(self.deadline) {
            Some(Err(PoolError::Timeout)) => {
                // Python raises TimeoutError and the generator is done.
                self.inner = None;
                Some(Err(PoolError::Timeout))
            }
            None => {
                self.inner = None;
                None
            }
            item => item,
        }
    }
}

/// The pending result of a call submitted to a [`ProcessPoolExecutor`] — Python's
/// `concurrent.futures.Future`.
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
    handle: BatchHandle,
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
/// `{executor.submit(f, x): x for x in xs}` (see [`as_completed`]).
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
fn outcome(done: &Completed) -> (bool, bool) {
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
    fn key(&self) -> (*const Shared, BatchId) {
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
        let cb: super::engine::Callback = Box::new(move |shared, batch, _| {
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

// ---------------------------------------------------------------------------------------------
// wait and as_completed

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
