//! Start methods and contexts — Python's `set_start_method`, `get_context` and friends — and
//! [`init`], which makes them safe in a multithreaded program.
//!
//! # Which start method, when
//!
//! | method | where children come from | safe in a multithreaded program | runs |
//! |---|---|---|---|
//! | [`Fork`](StartMethod::Fork) | a `fork` of the calling process | only if no other thread holds a lock the child needs | closures and functions |
//! | [`Forkserver`](StartMethod::Forkserver) | a `fork` of the fork server, a single-threaded process made by [`init`] (or by `spawn`) | yes | functions, with their arguments as messages |
//! | [`Spawn`](StartMethod::Spawn) | a fresh `exec` of the program, taken over by [`init`] | yes | functions, with their arguments as messages |
//!
//! `fork` copies only the calling thread: a lock that another thread held at that moment (a
//! logger's, the allocator's on some libcs, one of yours) stays locked forever in the child.
//! The crate's own code in a forked child takes none (see the fork-safety notes on
//! [`set_fork_warning`](crate::set_fork_warning)), but yours may. **A multithreaded program (one
//! using tokio, rayon, a logging thread, or the test harness) should use `forkserver`**: call
//! [`init`] first thing in `main`, and pools, executors and function processes get their
//! children from a clean single-threaded server. `spawn` is the same guarantee at the cost of an
//! `exec` per child (about a millisecond), and works even where no fork server was made early.
//!
//! Closures ([`Process::new`](crate::Process::new), [`PoolBuilder::register`],
//! [`PoolBuilder::initializer`]) exist only in the memory of the process that made them, so they
//! always run by `fork`, whatever the start method. Under the default start method a pool that
//! has closures is forked, and one that has none is started from the fork server; an explicit
//! `forkserver` or `spawn` with closures is an error.
//!
//! # The default
//!
//! As in Python 3.14 on Linux, the default is `forkserver` — once [`init`] has run (it makes the
//! fork server). Without `init` the default is `fork`, as in Python up to 3.13.
//!
//! ```
//! use multiproc::{StartMethod, get_context};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! multiproc::init(); // first line of main: the fork server is made while single-threaded
//! let ctx = get_context("forkserver")?; // Python: mp.get_context("forkserver")
//! assert_eq!(ctx.start_method(), StartMethod::Forkserver);
//! let p = ctx.process(square, 7);
//! p.start()?;
//! assert_eq!(p.join(None)?, 49);
//! let pool = ctx.pool(2)?;
//! assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
//! # Ok(())
//! # }
//! ```

pub(crate) mod launch;
pub(crate) mod spawn;
pub(crate) mod zygote;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::codec::Message;
use crate::pool::{ExecutorBuilder, Pool, PoolBuilder, PoolError, ProcessPoolExecutor, Work};
use crate::process::{Process, ProcessBuilder};
use crate::queue::{JoinableQueue, Queue, SimpleQueue};
use crate::shared::{Array, RawArray, RawValue, Value};
use crate::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
use multiproc_sys::shm_safe::ShmSafe;

pub use spawn::set_executable;

pub(crate) use launch::Entry;
use launch::{Header, Launched};
use zygote::Zygote;

/// How a child process is started — Python's start methods, with Python's names.
///
/// See the [module docs](self) for which to use when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// `fork` the calling process (Python's `'fork'`).
    Fork,
    /// `fork` a single-threaded fork server made by [`init`] (Python's `'forkserver'`).
    Forkserver,
    /// `exec` the program afresh; [`init`] turns it into the child (Python's `'spawn'`).
    Spawn,
}

impl StartMethod {
    /// Python's name: `"fork"`, `"forkserver"` or `"spawn"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Forkserver => "forkserver",
            StartMethod::Spawn => "spawn",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            StartMethod::Fork => 1,
            StartMethod::Forkserver => 2,
            StartMethod::Spawn => 3,
        }
    }

    fn from_u8(b: u8) -> Option<StartMethod> {
        match b {
            1 => Some(StartMethod::Fork),
            2 => Some(StartMethod::Forkserver),
            3 => Some(StartMethod::Spawn),
            _ => None,
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = ContextError;

    fn from_str(s: &str) -> Result<StartMethod, ContextError> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            "forkserver" => Ok(StartMethod::Forkserver),
            "spawn" => Ok(StartMethod::Spawn),
            other => Err(ContextError::UnknownMethod(other.to_owned())),
        }
    }
}

/// Why a start method could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextError {
    /// Not one of `fork`, `forkserver`, `spawn` (Python's `ValueError("cannot find context for
    /// 'x'")`).
    UnknownMethod(String),
    /// [`set_start_method`] was called before, without `force` (Python's
    /// `RuntimeError('context has already been set')`).
    AlreadySet,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::UnknownMethod(m) => write!(f, "cannot find context for {m:?}"),
            ContextError::AlreadySet => f.write_str("context has already been set"),
        }
    }
}

impl std::error::Error for ContextError {}

/// What [`set_start_method`] fixed (0: nothing yet).
static CHOSEN: AtomicU8 = AtomicU8::new(0);
/// [`init`] has run in this program image.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Fixes the start method of the crate-level constructors (Python's `set_start_method`).
///
/// # Errors
/// [`ContextError::AlreadySet`] if a method was set before and `force` is false.
///
/// ```
/// use multiproc::{StartMethod, get_start_method, set_start_method};
///
/// set_start_method(StartMethod::Spawn, false)?;
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// assert!(set_start_method(StartMethod::Fork, false).is_err()); // once, unless forced
/// set_start_method(StartMethod::Fork, true)?;
/// # Ok::<(), multiproc::ContextError>(())
/// ```
pub fn set_start_method(method: StartMethod, force: bool) -> Result<(), ContextError> {
    let new = method.to_u8();
    if force {
        CHOSEN.store(new, Ordering::Relaxed);
        return Ok(());
    }
    CHOSEN
        .compare_exchange(0, new, Ordering::Relaxed, Ordering::Relaxed)
        .map(drop)
        .map_err(|_| ContextError::AlreadySet)
}

/// The start method in use (Python's `get_start_method()`): the one set by
/// [`set_start_method`], else the default (`forkserver` once [`init`] has run, `fork` before).
pub fn get_start_method() -> StartMethod {
    chosen_start_method().unwrap_or_else(default_method)
}

/// The start method set by [`set_start_method`], if any (Python's
/// `get_start_method(allow_none=True)`).
pub fn chosen_start_method() -> Option<StartMethod> {
    StartMethod::from_u8(CHOSEN.load(Ordering::Relaxed))
}

/// Every start method, the default first (Python's `get_all_start_methods()`).
pub fn get_all_start_methods() -> Vec<StartMethod> {
    let first = default_method();
    let mut all = vec![first];
    all.extend(
        [StartMethod::Forkserver, StartMethod::Spawn, StartMethod::Fork]
            .into_iter()
            .filter(|m| *m != first),
    );
    all
}

fn default_method() -> StartMethod {
    if is_initialised() { StartMethod::Forkserver } else { StartMethod::Fork }
}

/// A context for a start method (Python's `get_context(method)`): `"fork"`, `"forkserver"` or
/// `"spawn"`.
///
/// # Errors
/// [`ContextError::UnknownMethod`] for any other name.
pub fn get_context(method: &str) -> Result<Context, ContextError> {
    Ok(Context { method: method.parse()? })
}

/// Prepares the program for the `forkserver` and `spawn` start methods. Call it as the
/// **first line of `main`**, before any thread starts:
///
/// ```no_run
/// fn main() {
///     multiproc::init(); // the first line
///     println!("the program");
/// }
/// ```
///
/// It does two things, once per program:
///
/// - in a program started by the `spawn` start method, it becomes the requested child and
///   never returns (so nothing of `main` runs twice, like Python's `if __name__ ==
///   '__main__'` guard);
/// - otherwise, if the program is still single-threaded, it forks the fork server now, while
///   no other thread can hold a lock (a later `forkserver` start in a multithreaded program
///   makes one by `spawn` instead).
///
/// A test binary cannot put a line before the test harness starts its threads: use
/// [`init_before_main!`](crate::init_before_main) there (or anywhere else that has no `main` of
/// its own).
#[allow(clippy::needless_doctest_main)]
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        INITIALISED.store(true, Ordering::Relaxed);
        spawn::take_over_if_launched();
        if multiproc_sys::fork::thread_count() == Some(1)
            && let Ok(z) = Zygote::fork_now()
        {
            let _ = ZYGOTE.set(z);
        }
    });
}

/// Whether [`init`] has run in this program.
pub(crate) fn is_initialised() -> bool {
    INITIALISED.load(Ordering::Relaxed)
}

/// Runs [`init`] before `main` (and before a test harness starts its threads), from the
/// program's `.init_array`. Write it once, at the top level of the binary's (or test file's)
/// root module.
///
/// ```
/// multiproc::init_before_main!();
/// # fn main() {}
/// ```
///
/// The function runs when the dynamic loader runs constructors, before Rust's runtime has set
/// up `main`: `init` does only what is safe there (read the environment, `fork`).
#[macro_export]
macro_rules! init_before_main {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROC_INIT_BEFORE_MAIN: extern "C" fn() = {
            extern "C" fn __multiproc_init_before_main() {
                $crate::init();
            }
            __multiproc_init_before_main
        };
    };
}

static ZYGOTE: OnceLock<Zygote> = OnceLock::new();

/// The fork server, made now if there is none: by `fork` if this process is single-threaded,
/// else by `spawn`.
fn zygote() -> io::Result<&'static Zygote> {
    if let Some(z) = ZYGOTE.get() {
        return Ok(z);
    }
    static MAKING: Mutex<()> = Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(z) = ZYGOTE.get() {
        return Ok(z);
    }
    let z = if multiproc_sys::fork::thread_count() == Some(1) {
        Zygote::fork_now()?
    } else {
        Zygote::spawn_now()?
    };
    Ok(ZYGOTE.get_or_init(|| z))
}

/// Starts a child running `entry` by `method` (`forkserver` or `spawn`).
pub(crate) fn launch(
    method: StartMethod,
    entry: Entry,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> io::Result<Launched> {
    match method {
        StartMethod::Forkserver => zygote()?.launch(entry, payload, &fds),
        StartMethod::Spawn => spawn::launch(entry, payload, fds),
        StartMethod::Fork => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the fork start method forks the caller; it launches nothing",
        )),
    }
}

/// In a launched child (forked by the fork server, or a spawned program inside `init`): runs
/// the entry. Never returns.
pub(crate) fn run_entry(header: Header, payload: &[u8], mut fds: Vec<OwnedFd>) -> ! {
    crate::fork_safety::before_clean_fork();
    match header.entry {
        Entry::Zygote if fds.len() == 1 => zygote::serve(fds.remove(0)),
        Entry::PoolServer => crate::pool::server_entry(header.relocation(), payload, fds),
        Entry::Process => crate::process::launched_entry(header.relocation(), payload, fds),
        Entry::Zygote => multiproc_sys::fork::exit_now(127),
    }
}

/// A start method and the constructors that use it — Python's context objects
/// (`multiprocessing.get_context("spawn")`).
///
/// Processes, pools and executors made through a context start their children by its method;
/// the shared objects (queues, locks, values) are the same whatever the method, and are here so
/// that code written against a context needs nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Default for Context {
    /// The context of [`get_start_method`].
    fn default() -> Context {
        Context { method: get_start_method() }
    }
}

impl Context {
    /// The context for `method`.
    pub fn new(method: StartMethod) -> Context {
        Context { method }
    }

    /// Its start method (Python's `ctx.get_start_method()`).
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that will run `f(arg)` (Python's `ctx.Process(target=f, args=(arg,))`): `f` is
    /// a function, a closure that captures nothing, or a `fn` pointer, as for
    /// [`Pool::map`]. Start it with [`Process::start`]; [`Process::join`] returns `f`'s value.
    pub fn process<A, R, W>(&self, f: W, arg: A) -> Process<R>
    where
        A: Message,
        R: Message,
        W: Work<A, R>,
    {
        self.process_builder().call(f, arg)
    }

    /// Options for a process started by this context's method.
    pub fn process_builder(&self) -> ProcessBuilder {
        ProcessBuilder::new().start_method(self.method)
    }

    /// A pool of `processes` workers started by this method (Python's `ctx.Pool(n)`).
    pub fn pool(&self, processes: usize) -> Result<Pool, PoolError> {
        self.pool_builder().processes(processes).build()
    }

    /// Options for a pool started by this method.
    pub fn pool_builder(&self) -> PoolBuilder {
        PoolBuilder::new().start_method(self.method)
    }

    /// An executor of `max_workers` workers started by this method (Python's
    /// `ProcessPoolExecutor(max_workers, mp_context=ctx)`).
    pub fn executor(&self, max_workers: usize) -> Result<ProcessPoolExecutor, PoolError> {
        self.executor_builder().max_workers(max_workers).build()
    }

    /// Options for an executor started by this method.
    pub fn executor_builder(&self) -> ExecutorBuilder {
        ExecutorBuilder::new().start_method(self.method)
    }

    /// [`Queue::new`].
    pub fn queue<T: Message>(&self) -> io::Result<Queue<T>> {
        Queue::new()
    }

    /// [`SimpleQueue::new`].
    pub fn simple_queue<T: Message>(&self) -> io::Result<SimpleQueue<T>> {
        SimpleQueue::new()
    }

    /// [`JoinableQueue::new`].
    pub fn joinable_queue<T: Message>(&self) -> io::Result<JoinableQueue<T>> {
        JoinableQueue::new()
    }

    /// [`pipe`](crate::pipe).
    pub fn pipe(&self, duplex: bool) -> io::Result<(crate::Connection, crate::Connection)> {
        crate::pipe(duplex)
    }

    /// [`Lock::new`].
    pub fn lock(&self) -> io::Result<Lock> {
        Lock::new()
    }

    /// [`RLock::new`].
    pub fn rlock(&self) -> io::Result<RLock> {
        RLock::new()
    }

    /// [`Semaphore::new`].
    pub fn semaphore(&self, value: u32) -> io::Result<Semaphore> {
        Semaphore::new(value)
    }

    /// [`BoundedSemaphore::new`].
    pub fn bounded_semaphore(&self, value: u32) -> io::Result<BoundedSemaphore> {
        BoundedSemaphore::new(value)
    }

    /// [`Condition::new`].
    pub fn condition(&self) -> io::Result<Condition> {
        Condition::new()
    }

    /// [`Event::new`].
    pub fn event(&self) -> io::Result<Event> {
        Event::new()
    }

    /// [`Barrier::new`].
    pub fn barrier(&self, parties: usize) -> io::Result<Barrier> {
        Barrier::new(parties)
    }

    /// [`Value::new`].
    pub fn value<T: ShmSafe>(&self, value: T) -> io::Result<Value<T>> {
        Value::new(value)
    }

    /// [`Array::new`].
    pub fn array<T: ShmSafe>(&self, len: usize) -> io::Result<Array<T>> {
        Array::new(len)
    }

    /// [`RawValue::new`].
    pub fn raw_value<T: ShmSafe>(&self, value: T) -> io::Result<RawValue<T>> {
        RawValue::new(value)
    }

    /// [`RawArray::new`].
    pub fn raw_array<T: ShmSafe>(&self, len: usize) -> io::Result<RawArray<T>> {
        RawArray::new(len)
    }
}

/// Chooses the method a pool or function process will actually use: the explicit one, else the
/// default, except that the default falls back to `fork` for work that has closures.
pub(crate) fn resolve(
    explicit: Option<StartMethod>,
    has_closures: bool,
) -> Result<StartMethod, &'static str> {
    match explicit.or_else(chosen_start_method) {
        Some(m) if m != StartMethod::Fork && has_closures => Err(
            "closures (a registered Task or an initializer closure) exist only in the process that \
             made them: use the 'fork' start method for them, or functions with forkserver/spawn",
        ),
        Some(m) => Ok(m),
        None if has_closures => Ok(StartMethod::Fork),
        None => Ok(default_method()),
    }
}
