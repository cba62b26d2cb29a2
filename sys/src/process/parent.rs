//! The parent process: its id, and the signal the kernel sends the caller when it dies.

use crate::errno::IntoErrno;
use crate::errno::{Errno, Result};
use crate::{Pid, Signal};

/// `getppid()` — returns the parent process's id.
///
/// `None` when the parent is outside the caller's PID namespace (the kernel reports 0), as for
/// the init process of a container. A process whose parent died has been reparented: this then
/// returns the new parent (init or the nearest `PR_SET_CHILD_SUBREAPER` ancestor), which is how
/// [`set_parent_death_signal`] detects that it came too late.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/getppid.html
/// [Linux]: https://man7.org/linux/man-pages/man2/getppid.2.html
#[inline]
#[must_use]
pub fn getppid() -> Option<Pid> {
    rustix::process::getppid().map(Pid::from_rustix)
}

/// `prctl(PR_SET_PDEATHSIG, signal)` — asks the kernel to send `signal` to the caller when its
/// parent dies, then checks that the parent is still `expected_parent`.
///
/// Called in a child right after [`fork`](super::fork::fork), with `expected_parent` the
/// parent's id captured *before* the fork (the parent's [`getpid`](super::pid::getpid)). The
/// check closes the race in which the parent died between `fork` and this call: the setting
/// would then never fire, because the child has already been reparented. That case returns
/// [`Errno::SRCH`] and the caller should exit.
///
/// **Linux semantics:** the signal is sent when the *thread* that forked the child exits, not
/// only when the whole parent process does. A child forked from a short-lived worker thread of a
/// long-lived process is killed when that thread ends. Fork from a thread that outlives the
/// child (the main thread, or a dedicated fork-server process) when this matters.
///
/// The setting is cleared in children forked by the caller, and by an `execve` of a set-user-ID
/// or set-group-ID program; it survives other `execve`s. After an `Err(SRCH)` it stays in place
/// (the signal would go to nobody: the original parent is already gone).
///
/// Async-signal-safe (raw system calls only).
///
/// # Errors
///
/// - [`Errno::SRCH`]: the parent is no longer `expected_parent` (it died, or a wrong id was
///   given).
/// - [`Errno::INVAL`]: `signal` is not a valid signal number.
///
/// # References
/// - [Linux `prctl(2)`]
///
/// [Linux `prctl(2)`]: https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html
#[doc(alias = "PR_SET_PDEATHSIG")]
pub fn set_parent_death_signal(signal: Signal, expected_parent: Pid) -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(signal.to_rustix())).errno()?;
    if getppid() == Some(expected_parent) { Ok(()) } else { Err(Errno::SRCH) }
}

/// `prctl(PR_SET_PDEATHSIG, 0)` — stops the kernel from signalling the caller when its parent
/// dies.
///
/// Async-signal-safe (raw system calls only).
///
/// # Errors
///
/// None expected; the kernel's error is returned as is.
///
/// # References
/// - [Linux `prctl(2)`]
///
/// [Linux `prctl(2)`]: https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html
#[doc(alias = "PR_SET_PDEATHSIG")]
pub fn clear_parent_death_signal() -> Result<()> {
    rustix::process::set_parent_process_death_signal(None).errno()
}
