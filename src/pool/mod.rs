//! Process pools — Python's `multiprocessing.Pool` and `concurrent.futures.ProcessPoolExecutor`,
//! built so that they never hang.
//!
//! ```
//! use multiproc::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), multiproc::PoolError> {
//! let pool = Pool::new(4)?; // Python: Pool(4)
//! assert_eq!(pool.map(square, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! // apply_async, as in the tutorial: five tasks on four workers.
//! let results: Vec<_> = (1..=5).map(|i| pool.apply_async(|i: u32| i * 100, i)).collect::<Result<_, _>>()?;
//! pool.close()?;
//! pool.join()?;
//! assert_eq!(results.iter().map(|r| r.get()).collect::<Result<Vec<_>, _>>()?, [100, 200, 300, 400, 500]);
//! # Ok(())
//! # }
//! ```
//!
//! # What a pool runs
//!
//! Work is a function of one argument: a function item, a closure that captures nothing, or a
//! `fn` pointer (see [`Work`]); arguments and results are [`Message`]s. Functions are sent to
//! the workers *by address*, which is valid because every worker is a fork of the program as it
//! was when the pool was created (the reasoning is in [`Work`]'s module). A closure that
//! captures data cannot be sent (passing one is a compile error); it is registered with
//! [`PoolBuilder::register`] before the pool starts, so every worker inherits it (and what it
//! captured) through `fork`:
//!
//! ```
//! use multiproc::Pool;
//!
//! # fn main() -> Result<(), multiproc::PoolError> {
//! let table: Vec<u64> = (0..1000).map(|i| i * 3).collect(); // built once, in the parent
//! let mut builder = Pool::builder().processes(2);
//! let lookup = builder.register(move |i: usize| table[i]); // inherited, never sent
//! let pool = builder.build()?;
//! assert_eq!(pool.map(lookup, [1, 10, 100])?, [3, 30, 300]);
//! # Ok(())
//! # }
//! ```
//!
//! Data known only at the call is sent with it: [`partial`]`(f, data)` (Python's
//! `functools.partial`) runs `f(&data, x)` on each item `x`, under every start method:
//!
//! ```
//! use multiproc::{Pool, pool::partial};
//!
//! fn lookup(table: &[u64], i: usize) -> u64 {
//!     table[i]
//! }
//!
//! # fn main() -> Result<(), multiproc::PoolError> {
//! let pool = Pool::new(2)?;
//! let table: Vec<u64> = (0..10).map(|i| i * 3).collect(); // made after the pool started
//! assert_eq!(pool.map(partial(lookup, table), [1, 9])?, [3, 27]);
//! # Ok(())
//! # }
//! ```
//!
//! # Crash-proof by design
//!
//! - **A fork server forks the workers.** [`Pool::new`] forks one single-threaded server right
//!   away; the server forks every worker, including replacements, so a worker is never forked
//!   from a multithreaded parent (whatever threads the program starts later). The server dies
//!   with the parent (even one killed by `SIGKILL`), and the workers die with the server.
//! - **One channel per worker.** The parent sends each task to a chosen worker and knows which
//!   tasks each worker holds; no lock is shared between workers or held across a task. A worker
//!   that dies (`SIGKILL`, the OOM killer, `abort`, `exit`) fails exactly the task it was
//!   running, with [`PoolError::WorkerLost`] naming the signal or exit code; the tasks it had
//!   not started go to other workers, a replacement is forked, and the pool goes on.
//! - A task that panics fails with [`PoolError::Panicked`], which says where it panicked
//!   (and carries the worker's backtrace when `RUST_BACKTRACE` is set, Python's
//!   `RemoteTraceback`: see [`RemotePanic`]), and the worker lives on; a result that cannot be
//!   encoded fails that task only. An argument whose `Encode` panics is
//!   [`PoolError::EncodeArgument`] from the call that submits it, and nothing of that call is
//!   sent (see below). A task that outlives
//!   [`PoolBuilder::task_timeout`] has its worker killed and fails with
//!   [`PoolError::TaskTimeout`]. An initializer that fails breaks the pool at once
//!   ([`PoolError::InitializerFailed`] for every pending and later task), with no restart loop.
//! - [`terminate`](Pool::terminate) is bounded: `SIGTERM`, a grace period, `SIGKILL`, reap.
//!   Every worker is reaped by the server, and the server by the parent: no zombies.
//! - **Ctrl-C** leaves nothing running: `SIGINT` to the parent alone ends it (default
//!   disposition) and the workers die with the server, which dies with the parent; a terminal's
//!   Ctrl-C reaches them all. In a parent that installed a `SIGINT` handler and lives on, a wait
//!   on a pool whose server or workers died of the `SIGINT` (those started by the fork server)
//!   returns an error; a pool built with [`StartMethod::Fork`]
//!   inherited the handler and runs on until [`terminate`](Pool::terminate)d. See the crate
//!   docs' "Ctrl-C".
//!
//! # Throughput: pipelining and rebalancing
//!
//! Tiny tasks are pipelined: each worker is sent up to 64 tasks at a time (the depth adapts to
//! the measured task duration: about 100 µs of work queued per worker, a single task when tasks
//! are long), so one write carries many tasks and workers never wait for the parent. A task
//! queued behind a long one is never stranded there: when a worker falls idle, the tasks that a
//! busy worker has not started are taken back (cancelled in that worker's shared claim ring, so
//! it skips them) and sent to the idle one. A worker claims each task in the ring before
//! running it, which is also how the parent knows exactly which task a dead worker was running.
//!
//! # No helper threads
//!
//! A pool starts no thread in the parent. The thread that waits — in [`Pool::map`],
//! [`IMap`]'s `next`, [`AsyncResult::get`], [`Future::result`], [`wait`], [`Pool::join`] —
//! drives the pool while it waits: it sends tasks, collects results, notices dead workers and
//! runs callbacks. Several threads may wait at once; one drives and the others sleep until
//! their result is in. Work submitted without anyone waiting still starts at once (each worker
//! is sent tasks when they are submitted) and the workers run it, but its results are collected
//! and callbacks run only when some thread next waits on the pool (or calls
//! [`AsyncResult::ready`], [`Future::done`], ...).
//!
//! # Dropping a pool
//!
//! Dropping a [`Pool`] **terminates** it, as Python's `with Pool() as p:` does on exit:
//! unfinished tasks fail with [`PoolError::Terminated`] and the workers are stopped (bounded
//! wait). To let submitted work finish, call [`close`](Pool::close) and
//! [`join`](Pool::join) first. Dropping a [`ProcessPoolExecutor`] is
//! [`shutdown(true, false)`](ProcessPoolExecutor::shutdown): it waits for the submitted work,
//! as Python's `with ProcessPoolExecutor() as ex:` does.
//!
//! # Differences from Python
//!
//! - A worker that dies fails only its own task and is replaced (Python's `Pool` hangs
//!   forever, gh-66587, P1). The executor does the same unless built with
//!   [`break_on_worker_death`](ExecutorBuilder::break_on_worker_death) (Python's
//!   `BrokenProcessPool`).
//! - Every future and every result always resolves (P8): with its value, its error,
//!   [`PoolError::Cancelled`], or a broken-pool error. A result that cannot be encoded is an
//!   error for that task only; `max_tasks_per_child` works with fork and never strands work
//!   (gh-115634).
//! - A failing initializer breaks the pool instead of restarting workers forever; `terminate`
//!   is bounded and may be called from a callback (P9).
//! - [`Pool::imap`], [`Pool::imap_unordered`] and [`ProcessPoolExecutor::map`] read their
//!   input lazily with bounded read-ahead, so endless inputs work (P13). `map` still reads
//!   its whole input first, to choose the chunk size.
//! - [`Future::running`] is true only once a worker has started the task, and
//!   [`Future::cancel`] succeeds until then, even for a task already sent to a worker (P18).
//! - With `chunksize > 1`, a panic fails only its own item; a dead worker fails the whole
//!   chunk it was running. `map` reports the first error in input order.
//! - An argument that cannot be encoded (its `Encode` panics, Python's pickling error) is
//!   returned as [`PoolError::EncodeArgument`] by the call that encodes it: `apply`,
//!   `apply_async`, `map`, `map_async`, `starmap*` and [`ProcessPoolExecutor::submit`] submit
//!   nothing then (Python fails the task, and raises the error from `get` or `result`). The
//!   lazy [`Pool::imap`], [`Pool::imap_unordered`] and [`ProcessPoolExecutor::map`] yield it
//!   in that item's place and go on, even within a chunk. The pool is unaffected either way.
//! - [`PoolError::Panicked`] carries the panic's message, its location (`file:line:col`) and
//!   the worker's backtrace when one was captured ([`RemotePanic`]), where Python re-raises
//!   the exception with the remote traceback as its cause.
//! - Callbacks run in a thread that waits on the pool, not in a handler thread (see above).
//! - The default pool size is [`process_cpu_count`](crate::process_cpu_count) (P14), as in
//!   Python 3.13.
//! - Work must be a function, a registered closure or a [`partial`], not any picklable
//!   callable; a pool can only be used by the process that created it (as in Python).
//! - A function from a library loaded (`dlopen`) after the pool was created does not exist in
//!   the workers.
//! - Create pools early, before the program starts threads if it can: the fork server is a
//!   fork of the whole process at that moment, so a lock another thread held then (a `Mutex` of
//!   yours, a logger's) stays locked in every worker. The pool holds stdout's and stderr's
//!   locks across that fork, so printing from tasks is safe.
//! - A process forked later inherits copies of this pool's descriptors (Linux has no
//!   close-on-fork). The processes the crate forks (a [`Process`](crate::Process) child,
//!   another pool's fork server and its workers) close them before anything else runs; a child
//!   of a plain `fork` (`libc::fork`, `nix::unistd::fork`) keeps them until it exits or `exec`s
//!   (they are close-on-exec). Such a child still
//!   cannot make a worker run anything: every frame carries a per-worker secret that no forked
//!   child has, and a worker that receives a frame without it runs nothing and exits, and the
//!   pool fails with [`PoolError::BrokenPool`] saying so. It could only disturb the pool (read
//!   a worker's results, or break it). Nothing relies on end-of-file for the same reason: the
//!   parent learns of every worker's death from the server, and the server watches a pidfd of
//!   the parent, not only its control socket.

mod args;
#[cfg(doctest)]
mod capture_errors;
mod config;
mod engine;
mod error;
mod executor;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod partial;
mod proto;
mod results;
mod secret;
mod server;
mod slots;
mod work;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{Encode, Message};
use multiproc_sys::Pid;

pub(crate) use self::args::encode_one as encode_argument;
use self::config::Config;
use self::engine::{Mode, Shared};
pub(crate) use self::proto::{ITEM_OK, ITEM_PANIC};
use self::results::{finish_list, finish_one};
use self::work::runner;
pub(crate) use self::work::{Job, Prepared};
use crate::start::StartMethod;

pub use self::error::{PoolError, RemotePanic};
pub use self::executor::{
    AsCompleted, ExecutorBuilder, ExecutorMap, Future, ProcessPoolExecutor, ReturnWhen, WaitResult,
    as_completed, wait,
};
pub use self::partial::{Partial, partial};
pub use self::results::{AsyncResult, IMap};
pub use self::work::{StarWork, Task, Work};

/// How long [`Pool::terminate`] waits after `SIGTERM` before it sends `SIGKILL`, by default.
pub const DEFAULT_TERMINATE_GRACE: Duration = Duration::from_millis(100);

/// A source of unique pool ids (so a [`Task`] is only accepted by its own pool).
static POOL_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What an initializer may return: `()` (a panic is the failure) or `Result<(), E>`.
///
/// Python's `initializer` returns nothing and fails by raising (after which Python restarts
/// the worker forever, gh-87472); here it returns `()` and fails by panicking, or returns a
/// `Result<(), E>` whose `Err` breaks the pool: every task then fails with
/// [`PoolError::InitializerFailed`] and no worker is restarted.
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, PoolError};
///
/// # fn main() -> Result<(), PoolError> {
/// let pool = Pool::builder()
///     .processes(1)
///     .initializer(|| -> Result<(), String> { Ok(()) })
///     .build()?;
/// assert_eq!(pool.apply(|x: u8| x + 1, 1)?, 2);
///
/// let broken = Pool::builder()
///     .processes(1)
///     .initializer(|| -> Result<(), String> { Err("no config file".into()) })
///     .build()?;
/// match broken.apply(|x: u8| x + 1, 1) {
///     Err(PoolError::InitializerFailed(msg)) => assert!(msg.contains("no config file")),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub trait InitResult {
    /// `Err` with a message if the initializer failed.
    fn into_result(self) -> Result<(), String>;
}

impl InitResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> InitResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Options for a [`Pool`] — Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild)`, plus CPU pinning, a per-task timeout and registered closures.
///
/// ```
/// use std::time::Duration;
/// use multiproc::Pool;
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = Pool::builder()
///     .processes(2)
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(60))
///     .initializer(|| println!("worker {} ready", std::process::id()))
///     .build()?;
/// assert_eq!(pool.apply(|x: i32| -x, 5)?, -5);
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
    max_tasks_per_child: Option<usize>,
    cpus: Vec<usize>,
    task_timeout: Option<Duration>,
    terminate_grace: Duration,
    registered: Vec<work::Runner>,
    pool_id: u64,
    break_on_worker_death: bool,
    executor: bool,
    method: Option<StartMethod>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("cpus", &self.cpus)
            .field("task_timeout", &self.task_timeout)
            .field("registered", &self.registered.len())
            .finish_non_exhaustive()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolBuilder {
    /// Default options: [`process_cpu_count`](crate::process_cpu_count) workers, no
    /// initializer, workers never recycled, not pinned, no task timeout, a 100 ms terminate
    /// grace period.
    pub fn new() -> Self {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: None,
            cpus: Vec::new(),
            task_timeout: None,
            terminate_grace: DEFAULT_TERMINATE_GRACE,
            registered: Vec::new(),
            pool_id: POOL_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            break_on_worker_death: false,
            executor: false,
            method: None,
        }
    }

    /// The number of worker processes (at least 1).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f` once in every worker when it starts, before any task (Python's
    /// `initializer(*initargs)`: capture the arguments in the closure). It may set up
    /// per-process state (a `static`, a `thread_local!`) that tasks then use.
    ///
    /// If it panics or returns `Err`, the pool is broken: pending and later tasks fail with
    /// [`PoolError::InitializerFailed`] carrying the message.
    pub fn initializer<F, T>(mut self, f: F) -> Self
    where
        F: Fn() -> T + Send + Sync + 'static,
        T: InitResult,
    {
        self.initializer = Some(Box::new(move || f().into_result()));
        self
    }

    /// Replaces a worker after it has run `n` tasks (Python's `maxtasksperchild`; a chunk
    /// counts as one task). `0` is rejected by [`build`](Self::build).
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Pins worker `i` to CPU `cpus[i % cpus.len()]` (`sched_setaffinity`). A CPU that cannot
    /// be used breaks the pool with [`PoolError::InitializerFailed`].
    pub fn cpus(mut self, cpus: impl IntoIterator<Item = usize>) -> Self {
        self.cpus = cpus.into_iter().collect();
        self
    }

    /// Kills a worker whose task (a whole chunk) runs longer than `timeout`; the task fails
    /// with [`PoolError::TaskTimeout`] and the worker is replaced.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// How long [`Pool::terminate`] waits for workers after `SIGTERM` before `SIGKILL`
    /// (default [`DEFAULT_TERMINATE_GRACE`]).
    pub fn terminate_grace(mut self, grace: Duration) -> Self {
        self.terminate_grace = grace;
        self
    }

    /// How the pool's processes start (default: [`get_start_method`](crate::get_start_method),
    /// except that a pool with closures — [`register`](Self::register),
    /// [`initializer`](Self::initializer) — is forked when no method was chosen). With
    /// `forkserver` and `spawn` the workers come from a clean single-threaded process, safe in
    /// a multithreaded program; work must then be functions (see [`context`](crate::context)).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Registers a closure that every worker of the pool will have, and returns the handle to
    /// pass as work to [`Pool::map`], [`Pool::apply`] and the others.
    ///
    /// The closure is captured now, in the parent, and inherited by the fork server and the
    /// workers when the pool is built: what it captures (a large table, a configuration) is
    /// never sent. Only the pool built from this builder accepts the handle. For data known
    /// only at the call, use [`partial`] instead.
    pub fn register<A, R, F>(&mut self, f: F) -> Task<A, R>
    where
        A: Message + 'static,
        R: Message + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.registered.push(runner(f));
        Task::new(self.pool_id, self.registered.len() - 1)
    }

    fn config(self) -> Result<Config, PoolError> {
        let processes = self.processes.unwrap_or_else(crate::process_cpu_count);
        if processes < 1 {
            return Err(PoolError::InvalidArgument(if self.executor {
                "max_workers must be greater than 0"
            } else {
                "Number of processes must be at least 1"
            }));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(PoolError::InvalidArgument(if self.executor {
                "max_tasks_per_child must be >= 1"
            } else {
                "maxtasksperchild must be a positive int or None"
            }));
        }
        Ok(Config {
            processes,
            max_tasks_per_child: self.max_tasks_per_child.map(|n| n as u64),
            task_timeout: self.task_timeout,
            cpus: self.cpus,
            initializer: self.initializer,
            registered: self.registered,
            terminate_grace: self.terminate_grace,
            break_on_worker_death: self.break_on_worker_death,
            executor: self.executor,
            pool_id: self.pool_id,
            reloc: Default::default(),
        })
    }

    /// Starts the pool: forks the fork server, which starts the workers.
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] for 0 processes or `max_tasks_per_child(0)`;
    /// [`PoolError::Os`] if the server cannot be forked.
    pub fn build(self) -> Result<Pool, PoolError> {
        let method = self.method;
        let cfg = self.config()?;
        Ok(Pool { shared: engine::start(cfg, method)? })
    }
}

/// A pool of worker processes — Python's `multiprocessing.Pool`.
///
/// See the [module docs](self) for what it runs, how it survives crashes, and what dropping it
/// does (it terminates).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::Pool;
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = Pool::new(2)?; // Python: pool = Pool(2)
/// assert_eq!(pool.map(|x: i64| x * x, [1, 2, 3])?, [1, 4, 9]);
/// assert_eq!(pool.starmap(|a: i64, b: u32| a.pow(b), [(2, 3), (3, 2)])?, [8, 9]);
/// let r = pool.apply_async(|s: String| s.to_uppercase(), "hi".to_string())?;
/// assert_eq!(r.get_timeout(Duration::from_secs(10))?, "HI");
/// // Python: pool.close(); pool.join()
/// pool.close()?;
/// pool.join_timeout(Duration::from_secs(10))?;
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a pool terminates its workers at once"]
pub struct Pool {
    shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shared, f)
    }
}

/// Python's default chunk size for `map`: `ceil(len / (4 * workers))`.
fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
}

impl Pool {
    /// A pool of `processes` workers with default options (Python's `Pool(processes)`).
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] if `processes` is 0; [`PoolError::Os`] if the fork
    /// server cannot be started.
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        PoolBuilder::new().processes(processes).build()
    }

    /// Options for a pool: `Pool::builder().processes(4).initializer(..).build()`.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.cfg.processes
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

    /// The pid of the pool's fork server.
    pub fn server_pid(&self) -> Pid {
        self.shared.server
    }

    /// Runs `f(arg)` in a worker and waits for the result (Python's `apply`).
    pub fn apply<A, R, W>(&self, f: W, arg: A) -> Result<R, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
    {
        let () = W::SENDABLE; // a capturing closure: a compile error here (see `Work`)
        self.apply_async(f, arg)?.get()
    }

    /// Submits `f(arg)` and returns at once (Python's `apply_async`). Attach callbacks with
    /// [`AsyncResult::on_success`] and [`AsyncResult::on_error`].
    pub fn apply_async<A, R, W>(&self, f: W, arg: A) -> Result<AsyncResult<R>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
    {
        let () = W::SENDABLE;
        let work = f.job()?;
        let payload = args::encode_one(&work, &arg)?;
        let len = payload.len();
        let batch =
            self.shared.submit(Mode::Collect, work.job, payload, vec![(0..len, 1)], true)?;
        Ok(AsyncResult::new(self.shared.clone(), batch, finish_one::<R>))
    }

    /// Runs `f` on every item and returns the results in order (Python's `map`), with Python's
    /// default chunk size, `ceil(len / (4 × processes))`.
    ///
    /// The input is read whole first (to choose the chunk size; use [`imap`](Self::imap) for
    /// an endless one). If some item fails, the error of the first failed item (in input
    /// order) is returned once every chunk has finished.
    pub fn map<A, R, W>(&self, f: W, iter: impl IntoIterator<Item = A>) -> Result<Vec<R>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
    {
        let () = W::SENDABLE;
        self.map_async(f, iter, None)?.get()
    }

    /// [`map`](Self::map) with `chunksize` items per task (Python's `map(f, it, chunksize)`).
    pub fn map_chunksize<A, R, W>(
        &self,
        f: W,
        iter: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
    {
        let () = W::SENDABLE;
        self.map_async(f, iter, Some(chunksize))?.get()
    }

    /// Submits a [`map`](Self::map) and returns at once (Python's `map_async`); `None` uses
    /// the default chunk size. The result is the whole list.
    pub fn map_async<A, R, W>(
        &self,
        f: W,
        iter: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
    {
        let () = W::SENDABLE;
        self.collect_batch(f.job()?, iter, chunksize)
    }

    // The starmap family mirrors the map family above (Python's parallel API; `StarWork` in
    // place of `Work`); both end in the one `collect_batch`.

    /// Like [`map`](Self::map), but each item is a tuple whose fields are passed as separate
    /// arguments (Python's `starmap`).
    pub fn starmap<Args, R, W>(
        &self,
        f: W,
        iter: impl IntoIterator<Item = Args>,
    ) -> Result<Vec<R>, PoolError>
    where
        Args: Message,
        R: Message + 'static,
        W: StarWork<Args, R>,
    {
        let () = W::SENDABLE;
        self.starmap_async(f, iter, None)?.get()
    }

    /// [`starmap`](Self::starmap) with `chunksize` items per task.
    pub fn starmap_chunksize<Args, R, W>(
        &self,
        f: W,
        iter: impl IntoIterator<Item = Args>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        Args: Message,
        R: Message + 'static,
        W: StarWork<Args, R>,
    {
        let () = W::SENDABLE;
        self.starmap_async(f, iter, Some(chunksize))?.get()
    }

    /// Submits a [`starmap`](Self::starmap) and returns at once (Python's `starmap_async`).
    pub fn starmap_async<Args, R, W>(
        &self,
        f: W,
        iter: impl IntoIterator<Item = Args>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        Args: Message,
        R: Message + 'static,
        W: StarWork<Args, R>,
    {
        let () = W::SENDABLE;
        self.collect_batch(f.job()?, iter, chunksize)
    }

    fn collect_batch<A: Encode, R: Message + 'static>(
        &self,
        work: Prepared,
        iter: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError> {
        self.shared.check_creator()?;
        if chunksize == Some(0) {
            return Err(PoolError::InvalidArgument("Chunksize must be 1+, not 0"));
        }
        let items: Vec<A> = iter.into_iter().collect();
        let cs = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes()));
        let (buf, chunks) = args::encode_batch(&work, &items, cs)?;
        drop(items);
        let batch = self.shared.submit(Mode::Collect, work.job, buf, chunks, true)?;
        Ok(AsyncResult::new(self.shared.clone(), batch, finish_list::<R>))
    }

    /// A lazy iterator of the results of `f` on each item, in input order (Python's `imap`;
    /// Python's default `chunksize` is 1).
    ///
    /// The input is read as results are consumed, with about `2 × processes` chunks of
    /// read-ahead, so it may be endless:
    ///
    /// ```
    /// # fn main() -> Result<(), multiproc::PoolError> {
    /// let pool = multiproc::Pool::new(2)?;
    /// let firsts: Vec<u64> = pool.imap(|x: u64| x * 2, 0.., 1)?.take(5).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4, 6, 8]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn imap<A, R, W, I>(
        &self,
        f: W,
        iter: I,
        chunksize: usize,
    ) -> Result<IMap<I::IntoIter, R>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
        I: IntoIterator<Item = A>,
    {
        let () = W::SENDABLE;
        self.stream(f.job()?, iter, chunksize, true)
    }

    /// Like [`imap`](Self::imap), but results come in completion order (Python's
    /// `imap_unordered`).
    pub fn imap_unordered<A, R, W, I>(
        &self,
        f: W,
        iter: I,
        chunksize: usize,
    ) -> Result<IMap<I::IntoIter, R>, PoolError>
    where
        A: Message,
        R: Message + 'static,
        W: Work<A, R>,
        I: IntoIterator<Item = A>,
    {
        let () = W::SENDABLE;
        self.stream(f.job()?, iter, chunksize, false)
    }

    fn stream<A: Encode, R: Message, I: IntoIterator<Item = A>>(
        &self,
        work: Prepared,
        iter: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMap<I::IntoIter, R>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::InvalidArgument("Chunksize must be 1+, not 0"));
        }
        IMap::new(self.shared.clone(), work, iter.into_iter(), chunksize, ordered)
    }

    /// Stops accepting tasks (Python's `close`); the workers exit once the submitted work is
    /// done. Later submissions fail with [`PoolError::NotRunning`].
    pub fn close(&self) -> Result<(), PoolError> {
        self.shared.close()
    }

    /// Waits for the workers and the fork server to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) (Python's `join`). Drives the pool while it waits, so
    /// the submitted work gets done.
    ///
    /// # Errors
    /// [`PoolError::InvalidState`] if the pool is still running (Python: `ValueError('Pool is
    /// still running')`).
    pub fn join(&self) -> Result<(), PoolError> {
        self.shared.join_within(None)
    }

    /// As [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`join`](Self::join); [`PoolError::Timeout`] if the pool did not finish in time.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.shared.join_within(Some(timeout))
    }

    /// Stops the workers now (Python's `terminate`): every unfinished task fails with
    /// [`PoolError::Terminated`]; workers get `SIGTERM`, then `SIGKILL` after the grace period
    /// ([`PoolBuilder::terminate_grace`]), and are reaped. Returns within about the grace
    /// period plus a few milliseconds, even if tasks are stuck in endless loops. Safe to call
    /// from a callback, and more than once.
    pub fn terminate(&self) -> Result<(), PoolError> {
        self.shared.terminate()
    }
}

impl Drop for Pool {
    /// Terminates the pool (Python's `with Pool() as p:` exit): see the [module docs](self).
    fn drop(&mut self) {
        if self.shared.is_creator() {
            let _ = self.shared.terminate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chunksize_follows_python() {
        assert_eq!(default_chunksize(100_000, 2), 12_500);
        assert_eq!(default_chunksize(10, 4), 1);
        assert_eq!(default_chunksize(17, 2), 3);
        assert_eq!(default_chunksize(0, 2), 1);
    }
}
