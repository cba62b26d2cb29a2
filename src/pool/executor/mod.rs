//! `ProcessPoolExecutor`, `Future`, `as_completed` and `wait` — Python's `concurrent.futures`
//! for processes, on the same engine as [`Pool`](super::Pool).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use multiproc_sys::Pid;
use multiproc_sys::time::Deadline;

use crate::codec::{Decode, Message};

use super::engine::{Mode, Shared};
use super::error::PoolError;
use super::handle::BatchHandle;
use super::results::IMap;
use super::work::{Task, Work};
use super::{InitResult, PoolBuilder};

mod future;
mod wait;

pub use future::Future;
pub use wait::{AsCompleted, ReturnWhen, WaitResult, as_completed, wait};

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

// The setters mirror `PoolBuilder`'s (Python's `ProcessPoolExecutor` takes the same arguments as
// `Pool`, under its own names), each one call into the wrapped `PoolBuilder`.
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
        Ok(Future::new(BatchHandle::new(self.shared.clone(), batch)))
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
