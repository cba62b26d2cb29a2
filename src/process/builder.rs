//! `ProcessBuilder`: the options of a process, and making the `Process` handle.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

use multiproc_sys::Signal;
use multiproc_sys::affinity::CpuSet;

use super::launched::{self, LaunchSpec};
use super::registry::{GLOBALS, my_pid, self_info};
use super::{Inner, Process, StartError, State};
use crate::codec::Message;
use crate::pool::Work;
use crate::start::StartMethod;

/// Options for a [`Process`]: name, daemon flag, CPU affinity, parent-death signal.
///
/// Python has no builder: `name` and `daemon` are the keyword arguments of
/// `Process(target, name=..., daemon=...)`; the CPU affinity, the parent-death signal and the
/// single-threaded check have no Python counterpart.
///
/// ```
/// use multiproc::ProcessBuilder;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = ProcessBuilder::new().name("adder").daemon(true).spawn(|| 2 + 2)?;
/// assert_eq!(p.join()?, 4);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `target` or `call` makes the process"]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: Option<bool>,
    affinity: Option<CpuSet>,
    death_signal: Option<Option<Signal>>,
    single_threaded: bool,
    method: Option<StartMethod>,
}

impl ProcessBuilder {
    /// Default options: name `Process-N`, daemon flag inherited from the calling process (as in
    /// Python), no affinity change, parent-death signal `SIGKILL` for daemons and none otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's name. The default is `Process-N`, numbered when the process object is
    /// created (one counter per creating process, as in Python); the `M`-th process created by
    /// `Process-N` is `Process-N:M` (a custom name does not change this numbering).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the process is a daemon: it is killed when its handle is dropped or its parent
    /// dies, and it may not start children of its own.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// Runs the child on these CPUs only (`sched_setaffinity` before the closure starts).
    pub fn cpu_affinity(mut self, cpus: CpuSet) -> Self {
        self.affinity = Some(cpus);
        self
    }

    /// Pins the child to one CPU.
    pub fn cpu(self, cpu: usize) -> Self {
        let mut set = CpuSet::new();
        // An out-of-range CPU leaves the set empty, which sched_setaffinity rejects (EINVAL):
        // the error reaches `join` as `JoinError::Setup`.
        let _ = set.set(cpu);
        self.cpu_affinity(set)
    }

    /// The signal the child gets when its parent dies (`PR_SET_PDEATHSIG`), or `None` for no
    /// signal. Default: `SIGKILL` for daemons, none otherwise.
    pub fn death_signal(mut self, signal: Option<Signal>) -> Self {
        self.death_signal = Some(signal);
        self
    }

    /// Makes [`Process::start`] fail with [`StartError::MultiThreaded`] instead of forking a
    /// process that has other threads.
    pub fn require_single_threaded(mut self, yes: bool) -> Self {
        self.single_threaded = yes;
        self
    }

    /// The start method for a process made by [`call`](Self::call) (the default:
    /// [`get_start_method`](crate::get_start_method)). A closure given to
    /// [`target`](Self::target) or [`spawn`](Self::spawn) always runs by `fork`: it exists only
    /// in this process's memory.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Creates the (not yet started) process that will run `f(arg)` (Python's
    /// `Process(target=f, args=(arg,))`), by the [start method](Self::start_method): `f` is a
    /// function, a closure that captures nothing, a `fn` pointer or a
    /// [`partial`](crate::pool::partial), as for [`Pool::map`](crate::Pool::map), and `arg`
    /// travels as a message. Under `forkserver` and
    /// `spawn` the child starts from a clean process (see [`context`](crate::context)).
    ///
    /// ```
    /// use multiproc::{ProcessBuilder, StartMethod};
    ///
    /// fn shout(s: String) -> String {
    ///     s.to_uppercase()
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let p = ProcessBuilder::new().start_method(StartMethod::Fork).call(shout, "hi".to_string());
    /// p.start()?;
    /// assert_eq!(p.join()?, "HI");
    /// # Ok(())
    /// # }
    /// ```
    pub fn call<A, R, W>(self, f: W, arg: A) -> Process<R>
    where
        A: Message,
        R: Message,
        W: Work<A, R>,
    {
        let () = W::SENDABLE; // a capturing closure: a compile error here (see `Work`)
        let method = crate::start::resolve(self.method, false).unwrap_or(StartMethod::Fork);
        let mut chunk = Vec::new();
        let code = match f.job() {
            Ok(work) => match work.job {
                // The chunk as a pool sends it (a `partial`'s data first); an `Encode` that
                // panics fails the process, never the caller.
                crate::pool::Job::Code { tramp, ctx } => crate::pool::encode_argument(&work, &arg)
                    .map(|bytes| {
                        chunk = bytes;
                        (tramp as u64, ctx as u64)
                    })
                    .map_err(|e| e.to_string()),
                crate::pool::Job::Registered { .. } => {
                    Err("a registered Task runs only in the pool it was registered with".to_owned())
                }
            },
            Err(e) => Err(e.to_string()),
        };
        let code = match code {
            Ok(code) => code,
            // Fails in the child, like a panicking target: `join` reports the reason.
            Err(why) => {
                return self.target(move || -> R { std::panic::resume_unwind(Box::new(why)) });
            }
        };
        match method {
            StartMethod::Fork => {
                self.target(move || launched::run_in_this_process::<R>(code.0, code.1, &chunk))
            }
            m => {
                let mut p =
                    self.target(|| -> R { unreachable!("a launched process has no closure") });
                p.launch = Some(LaunchSpec { method: m, tramp: code.0, ctx: code.1, chunk });
                p
            }
        }
    }

    /// Creates the (not yet started) process that will run `target`.
    pub fn target<R, F>(self, target: F) -> Process<R>
    where
        R: Message,
        F: FnOnce() -> R + Send + 'static,
    {
        let daemon = self.daemon.unwrap_or_else(|| self_info().is_some_and(|i| i.daemon));
        // Python numbers a process when the object is created, not when it starts.
        let n = GLOBALS.name_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let identity = match self_info() {
            None => n.to_string(),
            Some(me) => format!("{}:{n}", me.identity),
        };
        let name = self.name.unwrap_or_else(|| format!("Process-{identity}"));
        Process {
            name,
            identity,
            daemon,
            affinity: self.affinity,
            death_signal: self.death_signal.unwrap_or(if daemon {
                Some(Signal::KILL)
            } else {
                None
            }),
            single_threaded: self.single_threaded,
            launch: None,
            creator: my_pid(),
            pid: AtomicI32::new(0),
            pidfd: OnceLock::new(),
            inner: Mutex::new(Inner {
                target: Some(Box::new(Some(target))),
                state: State::NotStarted,
            }),
        }
    }

    /// Creates the process and starts it.
    pub fn spawn<R, F>(self, target: F) -> Result<Process<R>, StartError>
    where
        R: Message,
        F: FnOnce() -> R + Send + 'static,
    {
        let p = self.target(target);
        p.start()?;
        Ok(p)
    }
}
