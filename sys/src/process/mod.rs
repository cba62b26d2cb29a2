//! Processes: creating, identifying, signalling, waiting for and ending them.
//!
//! | module | what it holds |
//! |---|---|
//! | [`fork`] | [`fork`](fork::fork), the only `unsafe` entry point, and its [`ForkOutcome`](fork::ForkOutcome) |
//! | [`exit`] | ending the caller at once ([`exit_now`](exit::exit_now), `_exit`) and [`at_exit`](exit::at_exit) handlers |
//! | [`pid`] | the [`Pid`](pid::Pid) type, [`getpid`](pid::getpid), and the fork-detecting [`current_pid`](pid::current_pid) |
//! | [`parent`] | [`getppid`](parent::getppid) and the parent-death signal (`PR_SET_PDEATHSIG`) |
//! | [`thread`] | [`gettid`](thread::gettid) and [`thread_count`](thread::thread_count) |
//! | [`wait`] | reaping a child and decoding its [`ExitStatus`](wait::ExitStatus), with or without a deadline |
//! | [`pidfd`] | [`Pidfd`](pidfd::Pidfd): a handle on a process that pid reuse cannot fool |
//! | [`procfs`] | what `/proc` tells that no system call does: [`is_running`](procfs::is_running) (alive and not a zombie) |
//! | [`signal`] | the [`Signal`](signal::Signal) type, [`kill`](signal::kill), and dispositions (`sigaction`) |
//!
//! Nothing here allocates. Each item says whether it is async-signal-safe (usable in a freshly
//! forked child of a multithreaded parent): all are, except [`fork`](fork::fork) itself,
//! [`at_exit`](exit::at_exit), and the first call of [`current_pid`](pid::current_pid) in a
//! process (which maps its page).

pub mod exit;
pub mod fork;
pub mod parent;
pub mod pid;
pub mod pidfd;
pub mod procfs;
pub mod signal;
pub mod thread;
pub mod wait;
