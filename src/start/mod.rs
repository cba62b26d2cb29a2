//! The start methods' machinery: choosing a method, [`init`], the fork server (`zygote`), `spawn`,
//! and the launch protocol they share (`launch`). It knows nothing of pools or processes: a
//! launch names the function the child runs (an [`launch::EntryFn`]) by address. The public
//! face, with Python's names and the [`Context`](crate::Context) constructors, is
//! [`context`](crate::context).

#![allow(unsafe_code)] // the leaked fork-server handle (`zygote`).

pub(crate) mod launch;
pub(crate) mod spawn;
pub(crate) mod zygote;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

pub use spawn::set_executable;

use launch::{EntryFn, LaunchHeader, Launched};
use zygote::Zygote;

/// How a child process is started — Python's start methods, with Python's names.
///
/// See the [module docs](crate::context) for which to use when.
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
        if multiproc_sys::process::thread::thread_count() == Some(1)
            && let Ok(z) = Zygote::fork_now()
        {
            ZYGOTE.store(Box::into_raw(Box::new(z)), Ordering::Release);
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

/// This process's fork server, once made (leaked: one per process, for its lifetime). A child
/// forked from this process sees its parent's here, with a different owner, and makes its own:
/// the parent's request socket is closed in every child the crate forks.
static ZYGOTE: AtomicPtr<Zygote> = AtomicPtr::new(std::ptr::null_mut());

/// The fork server, made now if this process has none: by `fork` if this process is
/// single-threaded, else by `spawn`.
fn zygote() -> io::Result<&'static Zygote> {
    let me = multiproc_sys::process::pid::getpid();
    let current = ZYGOTE.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was leaked from a `Box<Zygote>` below and is never freed.
    if let Some(z) = unsafe { current.as_ref() }
        && z.owner == me
    {
        return Ok(z);
    }
    static MAKING: Mutex<()> = Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let current = ZYGOTE.load(Ordering::Acquire);
    // SAFETY: as above.
    if let Some(z) = unsafe { current.as_ref() }
        && z.owner == me
    {
        return Ok(z);
    }
    let z = if multiproc_sys::process::thread::thread_count() == Some(1) {
        Zygote::fork_now()?
    } else {
        Zygote::spawn_now()?
    };
    let z: &'static Zygote = Box::leak(Box::new(z));
    ZYGOTE.store(std::ptr::from_ref(z).cast_mut(), Ordering::Release);
    Ok(z)
}

/// Starts a child running `entry(payload, fds)` by `method` (`forkserver` or `spawn`).
pub(crate) fn launch(
    method: StartMethod,
    entry: EntryFn,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> io::Result<Launched> {
    match method {
        StartMethod::Forkserver => zygote()?.launch(Some(entry), payload, &fds),
        StartMethod::Spawn => spawn::launch(Some(entry), payload, fds),
        StartMethod::Fork => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the fork start method forks the caller; it launches nothing",
        )),
    }
}

/// In a launched child (forked by the fork server, or a spawned program inside `init`): runs
/// the entry. Never returns.
pub(crate) fn run_entry(header: LaunchHeader, payload: &[u8], mut fds: Vec<OwnedFd>) -> ! {
    crate::fork_safety::before_clean_fork();
    match header.entry_fn() {
        Some(entry) => entry(header.relocation(), payload, fds),
        None if fds.len() == 1 => zygote::serve(fds.remove(0)),
        None => multiproc_sys::process::exit::exit_now(127),
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
